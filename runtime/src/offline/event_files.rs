//! Streaming readers for historical event files: JSONL (the format of [`crate::events`]) and
//! Parquet. Both hand out bounded batches, so a file of any size is read in constant memory.
//!
//! Every event has a stable **position** in its file, used as its offset for resumable
//! backfills: the 0-based line index for JSONL (blank and comment lines count), the 0-based row
//! index for Parquet.
//!
//! Parquet event files have one row per event:
//! - `timestamp_ms` (required): `Int64` ms since the Unix epoch, or any `Timestamp` type;
//! - `value` (required): the payload, `Binary` (bytes as-is) or `Utf8` (its UTF-8 bytes);
//! - `key` (optional): `Binary` or `Utf8`; `topic` (optional `Utf8`), `partition` (optional
//!   `Int32`), `offset` (optional `Int64`, default: the row index).
//!
//! Other columns are ignored. The same columns in memory ([`EventFile::from_batches`]: an Arrow
//! table handed over by the Python package) are read by the same code.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::ArrowError;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::columns::{BytesColumn, TextColumn, TimeColumn, int_column};
use crate::bindings::types::Event;
use crate::events::{is_blank, parse_line};

#[derive(Debug, thiserror::Error)]
pub enum EventFileError {
    #[error("opening {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{path}: reading line {line}: {source}")]
    Read { path: PathBuf, line: u64, source: std::io::Error },
    #[error("{path}: not a readable Parquet file: {message}")]
    Parquet { path: PathBuf, message: String },
    #[error("{path}: column `{column}` {message}")]
    Column { path: PathBuf, column: String, message: String },
}

/// Events of one batch with their positions, plus the positions of lines that are not events.
#[derive(Default)]
pub struct EventBatch {
    pub events: Vec<Event>,
    /// Position of each event (same length as `events`).
    pub positions: Vec<i64>,
    /// Positions and reasons of invalid events in this batch.
    pub invalid: Vec<(i64, String)>,
    /// One past the last position this batch covered (the resume point after it).
    pub next_position: i64,
}

impl EventBatch {
    fn clear(&mut self) {
        self.events.clear();
        self.positions.clear();
        self.invalid.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.invalid.is_empty()
    }
}

/// How far through its input a reader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Bytes read of a total (JSONL).
    Bytes { done: u64, total: u64 },
    /// Rows read of a total (Parquet, in-memory batches).
    Rows { done: u64, total: u64 },
}

/// A JSONL or Parquet event file (or in-memory Arrow batches), read batch by batch.
pub struct EventFile {
    path: PathBuf,
    topic: String,
    inner: Inner,
    /// Position of the next unread event.
    position: i64,
}

enum Inner {
    Jsonl {
        reader: BufReader<File>,
        line: String,
        bytes_read: u64,
        total: u64,
    },
    /// Parquet files and in-memory batches: record batches with the Parquet event columns.
    Arrow {
        reader: BatchIter,
        pending: Option<(RecordBatch, usize)>,
        rows_read: u64,
        total: u64,
    },
}

type BatchIter = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>;

impl EventFile {
    /// Open `path` (Parquet if it ends in `.parquet`, JSONL otherwise), skipping positions below
    /// `start` (a resumed backfill). `topic` is the default topic of JSONL events.
    pub fn open(path: &Path, topic: &str, start: i64) -> Result<Self, EventFileError> {
        let file = File::open(path).map_err(|source| EventFileError::Open { path: path.into(), source })?;
        let total = file.metadata().map(|m| m.len()).unwrap_or(0);
        let is_parquet = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
        let inner = if is_parquet {
            let perr = |e: parquet::errors::ParquetError| EventFileError::Parquet {
                path: path.into(),
                message: e.to_string(),
            };
            let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(perr)?;
            let total = builder.metadata().file_metadata().num_rows().max(0) as u64;
            let skip = start.clamp(0, total as i64) as usize;
            let reader = builder.with_batch_size(4096).with_offset(skip).build().map_err(perr)?;
            Inner::Arrow { reader: Box::new(reader), pending: None, rows_read: skip as u64, total }
        } else {
            Inner::Jsonl { reader: BufReader::with_capacity(1 << 20, file), line: String::new(), bytes_read: 0, total }
        };
        let mut f = Self { path: path.into(), topic: topic.into(), inner, position: 0 };
        match &mut f.inner {
            Inner::Jsonl { reader, line, bytes_read, .. } => {
                while f.position < start {
                    line.clear();
                    let n = reader.read_line(line).map_err(|source| EventFileError::Read {
                        path: path.into(),
                        line: f.position as u64 + 1,
                        source,
                    })?;
                    if n == 0 {
                        break;
                    }
                    *bytes_read += n as u64;
                    f.position += 1;
                }
            }
            Inner::Arrow { rows_read, .. } => f.position = *rows_read as i64,
        }
        Ok(f)
    }

    /// Events already in memory as Arrow record batches with the columns of a Parquet event file
    /// (positions are row indices across the batches). `name` stands for the path in errors.
    pub fn from_batches(name: &str, batches: Vec<RecordBatch>, topic: &str) -> Self {
        let total = batches.iter().map(|b| b.num_rows() as u64).sum();
        let reader: BatchIter = Box::new(batches.into_iter().map(Ok));
        let inner = Inner::Arrow { reader, pending: None, rows_read: 0, total };
        Self { path: name.into(), topic: topic.into(), inner, position: 0 }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Position of the next unread event.
    pub fn position(&self) -> i64 {
        self.position
    }

    pub fn progress(&self) -> Progress {
        match &self.inner {
            Inner::Jsonl { bytes_read, total, .. } => Progress::Bytes { done: *bytes_read, total: *total },
            Inner::Arrow { rows_read, total, .. } => Progress::Rows { done: *rows_read, total: *total },
        }
    }

    /// Fill `batch` with up to `max` events (fewer at the end). Returns false when the file is
    /// exhausted and the batch is empty.
    pub fn next_batch(&mut self, max: usize, batch: &mut EventBatch) -> Result<bool, EventFileError> {
        batch.clear();
        let max = max.max(1);
        match &mut self.inner {
            Inner::Jsonl { reader, line, bytes_read, .. } => {
                while batch.events.len() < max {
                    line.clear();
                    let n = reader.read_line(line).map_err(|source| EventFileError::Read {
                        path: self.path.clone(),
                        line: self.position as u64 + 1,
                        source,
                    })?;
                    if n == 0 {
                        break;
                    }
                    *bytes_read += n as u64;
                    let pos = self.position;
                    self.position += 1;
                    if is_blank(line) {
                        continue;
                    }
                    match parse_line(line.trim_end(), &self.topic, pos) {
                        Ok(e) => {
                            batch.events.push(e);
                            batch.positions.push(pos);
                        }
                        Err(e) => batch.invalid.push((pos, e.to_string())),
                    }
                }
            }
            Inner::Arrow { reader, pending, rows_read, .. } => {
                while batch.events.len() + batch.invalid.len() < max {
                    let (rb, from) = match pending.take() {
                        Some(p) => p,
                        None => match reader.next() {
                            None => break,
                            Some(r) => (
                                r.map_err(|e| EventFileError::Parquet {
                                    path: self.path.clone(),
                                    message: e.to_string(),
                                })?,
                                0,
                            ),
                        },
                    };
                    let take = (max - batch.events.len() - batch.invalid.len()).min(rb.num_rows() - from);
                    append_rows(&self.path, &self.topic, &rb, from, take, self.position, batch)?;
                    self.position += take as i64;
                    *rows_read += take as u64;
                    if from + take < rb.num_rows() {
                        *pending = Some((rb, from + take));
                    }
                }
            }
        }
        batch.next_position = self.position;
        Ok(!batch.is_empty())
    }
}

/// Convert rows `from..from + n` of a Parquet record batch into events.
fn append_rows(
    path: &Path,
    default_topic: &str,
    rb: &RecordBatch,
    from: usize,
    n: usize,
    first_pos: i64,
    out: &mut EventBatch,
) -> Result<(), EventFileError> {
    let col_err =
        |column: &str, message: String| EventFileError::Column { path: path.into(), column: column.into(), message };
    let required = |name: &str| {
        rb.column_by_name(name).ok_or_else(|| col_err(name, "is missing (required in Parquet event files)".into()))
    };
    let ts_arr = required("timestamp_ms")?;
    let ts = TimeColumn::new(ts_arr).map_err(|m| col_err("timestamp_ms", m))?;
    let val_arr = required("value")?;
    let value = BytesColumn::new(val_arr).map_err(|m| col_err("value", m))?;
    let key = rb.column_by_name("key").map(BytesColumn::new).transpose().map_err(|m| col_err("key", m))?;
    let topic = rb.column_by_name("topic").map(TextColumn::new).transpose().map_err(|m| col_err("topic", m))?;
    let partition =
        rb.column_by_name("partition").map(|a| int_column(a)).transpose().map_err(|m| col_err("partition", m))?;
    let offset = rb.column_by_name("offset").map(|a| int_column(a)).transpose().map_err(|m| col_err("offset", m))?;
    for i in from..from + n {
        let pos = first_pos + (i - from) as i64;
        let Some(timestamp_ms) = ts.ms(i) else {
            out.invalid.push((pos, "`timestamp_ms` is null".into()));
            continue;
        };
        let Some(payload) = value.get(i) else {
            out.invalid.push((pos, "`value` is null".into()));
            continue;
        };
        out.events.push(Event {
            topic: topic.as_ref().and_then(|t| t.get(i)).map_or_else(|| default_topic.to_string(), |t| t.into_owned()),
            partition: partition.as_ref().and_then(|p| p(i)).unwrap_or(0) as i32,
            offset: offset.as_ref().and_then(|o| o(i)).unwrap_or(pos),
            timestamp_ms,
            key: key.as_ref().and_then(|k| k.get(i)).map(|k| k.into_owned()),
            value: payload.into_owned(),
            headers: vec![],
        });
        out.positions.push(pos);
    }
    Ok(())
}
