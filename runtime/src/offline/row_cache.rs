//! Transform once, reuse: a stream view's transformed rows over a set of event files, kept as
//! Parquet, so a second training-data job over the same history (other spines, other features of
//! the view) skips the Wasm step.
//!
//! The cache key is a SHA-256 of everything the rows depend on: the transform component's
//! sha256, the columns the view keeps (with their types), the topic the events are read with, and
//! each event file's canonical path, size and modification time. Any change gives a new key; an
//! edited file is never served from an old entry. Transforms are deterministic by contract (the
//! clock reads event time, random is seeded per event, whatever the batching), so cached rows are
//! the rows a new run would produce.
//!
//! An entry is `<key>.parquet` (columns `entity_key`, `event_time_ms`, then one nullable column per
//! kept feature) and `<key>.json` (events read and failed). The Parquet file is written under a
//! temporary name and renamed last, so a job killed while writing leaves no entry. Entries are
//! never deleted by Wafer: remove the directory to reclaim the space.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sha2::{Digest, Sha256};

use super::parquet_out::{arrow_type, to_array};
use crate::bindings::types::{Feature, FeatureRow, Value, ValueType};
use crate::pipeline::StreamView;

#[derive(Debug, thiserror::Error)]
pub enum RowCacheError {
    #[error("row cache {path}: {message}")]
    Io { path: PathBuf, message: String },
}

fn io(path: &Path, e: impl std::fmt::Display) -> RowCacheError {
    RowCacheError::Io { path: path.into(), message: e.to_string() }
}

/// A directory of cached rows.
#[derive(Debug, Clone)]
pub struct RowCache {
    dir: PathBuf,
}

/// The columns a view keeps, with their types, in the transform's declared order.
fn kept_columns(view: &StreamView) -> Vec<(String, ValueType)> {
    view.transform
        .schema()
        .outputs()
        .iter()
        .filter(|o| view.uses_column(&o.name))
        .map(|o| (o.name.clone(), o.value_type))
        .collect()
}

/// Counts stored beside an entry.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// Events transformed, events the transform failed, lines that were not events.
    pub events: u64,
    pub failed: u64,
    pub invalid: u64,
}

impl RowCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The key of `view`'s rows over `files` read with `topic`.
    pub fn key(view: &StreamView, topic: &str, files: &[PathBuf]) -> Result<String, RowCacheError> {
        let mut h = Sha256::new();
        h.update(b"wafer-rows-v1\n");
        h.update(view.transform.load_stats().sha256.as_bytes());
        for (name, ty) in kept_columns(view) {
            h.update(format!("\ncolumn {name} {}", ty.as_str()).as_bytes());
        }
        h.update(format!("\ntopic {topic}").as_bytes());
        for f in files {
            let path = f.canonicalize().map_err(|e| io(f, e))?;
            let meta = std::fs::metadata(&path).map_err(|e| io(f, e))?;
            let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            h.update(format!("\nfile {} {} {:?}", path.display(), meta.len(), mtime).as_bytes());
        }
        Ok(hex::encode(h.finalize()))
    }

    fn paths(&self, key: &str) -> (PathBuf, PathBuf) {
        (self.dir.join(format!("{key}.parquet")), self.dir.join(format!("{key}.json")))
    }

    /// The entry's counts, if it is complete.
    pub fn counts(&self, key: &str) -> Option<Counts> {
        let (rows, counts) = self.paths(key);
        if !rows.is_file() {
            return None;
        }
        serde_json::from_slice(&std::fs::read(counts).ok()?).ok()
    }

    /// Stream the entry's rows to `each`, a batch at a time.
    pub fn read(
        &self,
        key: &str,
        view: &StreamView,
        mut each: impl FnMut(Vec<FeatureRow>),
    ) -> Result<(), RowCacheError> {
        let (path, _) = self.paths(key);
        let file = File::open(&path).map_err(|e| io(&path, e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| io(&path, e))?
            .with_batch_size(8192)
            .build()
            .map_err(|e| io(&path, e))?;
        let columns = kept_columns(view);
        for batch in reader {
            let batch = batch.map_err(|e| io(&path, e))?;
            each(rows_of(&batch, &columns).map_err(|e| io(&path, e))?);
        }
        Ok(())
    }

    /// A writer for a new entry of `view`'s rows.
    pub fn writer(&self, key: &str, view: &StreamView) -> Result<RowWriter, RowCacheError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        let (path, counts) = self.paths(key);
        let tmp = self.dir.join(format!("{key}.parquet.{}.tmp", std::process::id()));
        let columns = kept_columns(view);
        let mut fields =
            vec![Field::new("entity_key", DataType::Utf8, false), Field::new("event_time_ms", DataType::Int64, false)];
        fields.extend(columns.iter().map(|(n, t)| Field::new(n, arrow_type(*t), true)));
        let schema = Arc::new(Schema::new(fields));
        let file = File::create(&tmp).map_err(|e| io(&tmp, e))?;
        let writer = ArrowWriter::try_new(file, schema.clone(), None).map_err(|e| io(&tmp, e))?;
        Ok(RowWriter { writer, schema, columns, tmp, path, counts_path: counts, counts: Counts::default() })
    }
}

/// Rows of a batch, back as feature rows (absent features are left out, as the transform did).
fn rows_of(batch: &RecordBatch, columns: &[(String, ValueType)]) -> Result<Vec<FeatureRow>, String> {
    let col = |name: &str| batch.column_by_name(name).ok_or_else(|| format!("no column `{name}`"));
    let keys = col("entity_key")?.as_any().downcast_ref::<StringArray>().ok_or("entity_key is not text")?.clone();
    let times =
        col("event_time_ms")?.as_any().downcast_ref::<Int64Array>().ok_or("event_time_ms is not int64")?.clone();
    let arrays: Vec<(&str, ArrayRef)> =
        columns.iter().map(|(n, _)| Ok((n.as_str(), col(n)?.clone()))).collect::<Result<_, String>>()?;
    let mut rows = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let mut features = Vec::with_capacity(arrays.len());
        for (name, a) in &arrays {
            if let Some(value) = super::columns::value_cell(a, i)? {
                features.push(Feature { name: (*name).to_string(), value });
            }
        }
        rows.push(FeatureRow { entity_key: keys.value(i).to_string(), event_time_ms: times.value(i), features });
    }
    Ok(rows)
}

/// Writes one entry; [`RowWriter::finish`] makes it visible.
pub struct RowWriter {
    writer: ArrowWriter<File>,
    schema: Arc<Schema>,
    columns: Vec<(String, ValueType)>,
    tmp: PathBuf,
    path: PathBuf,
    counts_path: PathBuf,
    counts: Counts,
}

impl RowWriter {
    /// Add one transformed batch: its rows (features not kept are ignored) and its counts.
    pub fn add(&mut self, rows: &[FeatureRow], counts: Counts) -> Result<(), RowCacheError> {
        self.counts.events += counts.events;
        self.counts.failed += counts.failed;
        self.counts.invalid += counts.invalid;
        if rows.is_empty() {
            return Ok(());
        }
        let keys: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.entity_key.as_str())));
        let times: ArrayRef = Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.event_time_ms)));
        let mut arrays = vec![keys, times];
        for (name, ty) in &self.columns {
            let values: Vec<Value> = rows
                .iter()
                .map(|r| r.features.iter().find(|f| &f.name == name).map_or(Value::Null, |f| f.value.clone()))
                .collect();
            arrays.push(to_array(name, *ty, &values).map_err(|e| io(&self.tmp, e))?);
        }
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| io(&self.tmp, e))?;
        self.writer.write(&batch).map_err(|e| io(&self.tmp, e))
    }

    /// Close the file and publish the entry (counts first, the Parquet file last).
    pub fn finish(self) -> Result<(), RowCacheError> {
        self.writer.close().map_err(|e| io(&self.tmp, e))?;
        let counts = serde_json::to_vec(&self.counts).map_err(|e| io(&self.counts_path, e))?;
        std::fs::write(&self.counts_path, counts).map_err(|e| io(&self.counts_path, e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| io(&self.path, e))
    }
}
