//! Batch materialization (`wafer materialize`): load a batch view's file (Parquet, CSV, JSONL)
//! into the online store.
//!
//! - Rows are folded with the streaming path's own [`fold`] into latest-value ops, so the newest
//!   event time wins per entity and feature (re-loading older rows never overwrites newer ones).
//! - Writes go in chunks (one atomic store write each), while the next chunk is decoded on a
//!   blocking thread.
//! - **Resumable**: each chunk carries a [`SourceMark`] for source `materialize:<file>@<sha256>`
//!   with row numbers as offsets; a rerun of the same file content skips rows already loaded,
//!   and a changed file is a new source.
//! - Bad rows (missing key, unparseable time, wrong type) are skipped and reported with their
//!   row number; they never stop the load.

pub mod cell;
pub mod csv;
pub mod jsonl;
pub mod parquet;
pub mod source;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::aggregate::fold::{FoldPlan, fold};
use crate::aggregate::ops::EntityOps;
use crate::bindings::types::FeatureRow;
use crate::store::quota::EntityQuota;
use crate::store::{Applied, OnlineStore, Outcome, SourceMark, StoreError, WriteBatch};
use crate::view::{BatchViewConfig, ViewError, ViewSpec};
pub use source::{Chunk, Columns, RowError, RowSource};

#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: no column `{column}`")]
    MissingColumn { path: PathBuf, column: String },
    #[error(transparent)]
    View(#[from] ViewError),
    #[error("online store: {0}")]
    Store(#[from] StoreError),
    /// The view names no `source` and no file was given.
    #[error("batch view `{0}` has no `source`: give the file to load (`wafer materialize --from FILE`)")]
    NoSource(String),
}

/// What a load did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The resume source name.
    pub source: String,
    /// Rows skipped because an earlier run loaded them.
    pub resumed_from: u64,
    /// Rows read in this run (good and bad).
    pub rows_read: u64,
    /// Rows written.
    pub rows_loaded: u64,
    /// Bad rows, and the first few of them.
    pub bad_rows: u64,
    pub first_errors: Vec<RowError>,
    pub elapsed: Duration,
}

const KEEP_ERRORS: usize = 20;

/// Write already-parsed rows of the batch view `view_id` (`tenant/view`, e.g. pushed over HTTP)
/// in one store write, folded as a load folds them: per entity and feature the newest event time
/// wins, and a row older than what is stored never overwrites it. Within the tenant's `quota`,
/// entities new to the store are refused at the quota ([`Outcome::refused`]).
pub async fn write_rows(
    store: &dyn OnlineStore,
    view_id: &str,
    spec: &ViewSpec,
    rows: &[FeatureRow],
    quota: Option<&Arc<EntityQuota>>,
) -> Result<(Outcome, Vec<EntityOps>), StoreError> {
    let plan = FoldPlan::new(spec.latest.iter().map(|(n, _)| n.clone()).collect(), &[]);
    let (ops, fold_errors) = fold(&plan, rows);
    debug_assert!(fold_errors.is_empty(), "latest-only plans cannot fail to fold");
    let batch = WriteBatch {
        view: view_id,
        mark: None,
        entities: &ops,
        keep_ms: spec.ttl_ms,
        retention: &[],
        idempotency_key: None,
        quota,
    };
    let outcome = store.write(&batch).await?;
    Ok((outcome, ops))
}

/// The resume source name of a file: its name and a content hash.
pub fn source_name(path: &Path) -> Result<String, MaterializeError> {
    let io = |e| MaterializeError::Io { path: path.into(), source: e };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(io)?;
    let name = path.file_name().map_or_else(|| "source".into(), |n| n.to_string_lossy().into_owned());
    Ok(format!("materialize:{name}@{}", &hex::encode(h.finalize())[..16]))
}

/// Load `path` (default: the view's configured source) into `store` as the batch view `view_id`
/// (`tenant/view`) of `spec`. `progress(rows_done, total)` is called after every chunk.
pub async fn materialize(
    store: &dyn OnlineStore,
    view_id: &str,
    spec: &ViewSpec,
    cfg: &BatchViewConfig,
    path: Option<&Path>,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<Report, MaterializeError> {
    let started = Instant::now();
    let path =
        path.or(cfg.source.as_deref()).ok_or_else(|| MaterializeError::NoSource(cfg.name.clone()))?.to_path_buf();
    let format = cfg.format_of(&path)?;
    let source = source_name(&path)?;
    let resumed_from = store.watermark(view_id, &source, 0).await?.unwrap_or(0).max(0) as u64;
    let mut rows = source::open(&path, format, Columns::of_view(cfg, spec))?;
    let total = rows.total_rows();
    let plan = FoldPlan::new(spec.latest.iter().map(|(n, _)| n.clone()).collect(), &[]);
    let batch_size = cfg.batch_size;

    // Decode on a blocking thread, one chunk ahead of the writer.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Chunk, MaterializeError>>(2);
    let reader = tokio::task::spawn_blocking(move || {
        loop {
            let next = rows.next_chunk(batch_size).transpose();
            let Some(item) = next else { return };
            let stop = item.is_err();
            if tx.blocking_send(item).is_err() || stop {
                return;
            }
        }
    });

    let mut report = Report { source: source.clone(), resumed_from, ..Report::default() };
    let mut done = 0u64;
    while let Some(chunk) = rx.recv().await {
        let mut chunk = chunk?;
        let end = chunk.first_row + chunk.len;
        done = end;
        if end <= resumed_from {
            progress(done, total);
            continue;
        }
        if chunk.first_row < resumed_from {
            // Part of this chunk was loaded before: keep the rest (rows are in file order).
            let skip = (resumed_from - chunk.first_row) as usize;
            let loaded_before = chunk.errors.iter().filter(|e| e.row < resumed_from).count();
            chunk.rows.drain(..skip.saturating_sub(loaded_before).min(chunk.rows.len()));
            chunk.errors.retain(|e| e.row >= resumed_from);
            chunk.first_row = resumed_from;
        }
        report.rows_read += end - chunk.first_row;
        report.bad_rows += chunk.errors.len() as u64;
        for e in chunk.errors.drain(..) {
            if report.first_errors.len() < KEEP_ERRORS {
                report.first_errors.push(e);
            }
        }
        let (ops, fold_errors) = fold(&plan, &chunk.rows);
        debug_assert!(fold_errors.is_empty(), "latest-only plans cannot fail to fold");
        let mark = SourceMark {
            source: source.clone(),
            partition: 0,
            first_offset: chunk.first_row as i64,
            next_offset: end as i64,
        };
        let batch = WriteBatch {
            view: view_id,
            mark: Some(mark),
            entities: &ops,
            keep_ms: spec.ttl_ms,
            retention: &[],
            idempotency_key: None,
            quota: None,
        };
        match store.apply(&batch).await? {
            Applied::Applied => report.rows_loaded += chunk.rows.len() as u64,
            // Another run loaded it concurrently: nothing to do.
            Applied::Stale { .. } => {}
        }
        progress(done, total);
    }
    let _ = reader.await;
    let _ = done;
    report.elapsed = started.elapsed();
    Ok(report)
}
