//! Backfill: replay history through a view's transform and aggregator into the online store,
//! effectively once.
//!
//! Batches go through [`View::process`] with a [`SourceMark`], like live Kafka batches: the
//! batch's tile updates and the source's watermark are written in one atomic store write. A
//! rerun after a crash reads the watermark and resumes there, so nothing is applied twice.
//! - File sources use the source name `backfill:<file name>` (partition 0) and the event's
//!   position in the file (JSONL line index, Parquet row index) as its offset.
//! - Kafka sources (`sources::kafka::backfill`) use the topic's own `(topic, partition)`
//!   watermark, the one live consumption uses, so `wafer serve` afterwards skips exactly what
//!   the backfill applied.

use std::path::Path;

use super::event_files::{EventBatch, EventFile, EventFileError, Progress};
use crate::pipeline::View;
use crate::store::{Applied, OnlineStore, SourceMark, StoreError};

/// Failures kept in a report (the counts are always complete).
const MAX_REPORTED: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Events(#[from] EventFileError),
    #[error("online store: {0}")]
    Store(#[from] StoreError),
    #[error("source `{source_name}` was advanced to {watermark} by someone else while this backfill was at {position}; is another backfill of it running?")]
    Concurrent { source_name: String, watermark: i64, position: i64 },
}

/// What a backfill did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BackfillReport {
    /// Offset the run started from (the stored watermark; 0 for a fresh source).
    pub resumed_from: i64,
    /// Watermark after the run.
    pub next_offset: i64,
    /// Events applied by this run, and rows they produced.
    pub events: u64,
    pub rows: u64,
    /// Events that failed (invalid lines, transform errors); the first ones with their reason.
    pub failed: u64,
    pub failures: Vec<(i64, &'static str, String)>,
}

impl BackfillReport {
    pub(crate) fn fail(&mut self, offset: i64, code: &'static str, message: String) {
        self.failed += 1;
        if self.failures.len() < MAX_REPORTED {
            self.failures.push((offset, code, message));
        }
    }
}

/// The watermark source name of a file backfill: `backfill:<file name>`.
pub fn file_source_name(path: &Path) -> String {
    format!("backfill:{}", path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned()))
}

/// Backfill `path` (JSONL or Parquet) into `store` through `view`, resuming from the stored
/// watermark of `source`. `on_progress` is called after every batch.
pub async fn backfill_file(
    view: &View,
    store: &dyn OnlineStore,
    path: &Path,
    source: &str,
    topic: &str,
    batch_size: usize,
    on_progress: &mut (dyn FnMut(Progress, &BackfillReport) + Send),
) -> Result<BackfillReport, BackfillError> {
    let start = store.watermark(&view.id, source, 0).await?.unwrap_or(0);
    let mut file = EventFile::open(path, topic, start)?;
    let mut report = BackfillReport { resumed_from: start, next_offset: start, ..Default::default() };
    let mut batch = EventBatch::default();
    loop {
        let first = file.position();
        if !file.next_batch(batch_size, &mut batch)? {
            break;
        }
        // Applied even when every line was invalid, so the watermark moves past them.
        let mark = SourceMark { source: source.into(), partition: 0, first_offset: first, next_offset: batch.next_position };
        let outcome = view.process(store, &batch.events, Some(mark)).await?;
        if let Applied::Stale { watermark } = outcome.applied {
            return Err(BackfillError::Concurrent { source_name: source.into(), watermark, position: first });
        }
        for (pos, why) in batch.invalid.drain(..) {
            report.fail(pos, "invalid_event", why);
        }
        for f in outcome.failures {
            report.fail(batch.positions[f.index.min(batch.positions.len().saturating_sub(1))], f.code, f.message);
        }
        report.events += batch.events.len() as u64;
        report.rows += outcome.rows as u64;
        report.next_offset = batch.next_position;
        on_progress(file.progress(), &report);
    }
    report.failures.sort_by_key(|f| f.0);
    Ok(report)
}
