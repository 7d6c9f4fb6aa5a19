//! The spine of a training set: a Parquet table whose rows are the (entity, timestamp) points to
//! compute features at. Its columns are kept as they are and copied to the output.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::columns::{TextColumn, TimeColumn};

#[derive(Debug, thiserror::Error)]
pub enum SpineError {
    #[error("opening spine {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("spine {path}: not a readable Parquet file: {message}")]
    Parquet { path: PathBuf, message: String },
    #[error("spine has no column `{column}` (columns: {available}){hint}")]
    MissingColumn { column: String, available: String, hint: &'static str },
    #[error("spine column `{column}` {message}")]
    Column { column: String, message: String },
}

/// A spine held in memory (its rows are needed in order for the output).
pub struct Spine {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
}

impl Spine {
    pub fn read(path: &Path) -> Result<Self, SpineError> {
        let file = File::open(path).map_err(|source| SpineError::Open { path: path.into(), source })?;
        let perr = |e: parquet::errors::ParquetError| SpineError::Parquet { path: path.into(), message: e.to_string() };
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(perr)?
            .with_batch_size(65536)
            .build()
            .map_err(perr)?;
        let schema = reader.schema();
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SpineError::Parquet { path: path.into(), message: e.to_string() })?;
        Ok(Self::new(schema, batches))
    }

    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        Self { schema, batches, rows }
    }

    fn check(&self, column: &str, hint: &'static str) -> Result<(), SpineError> {
        if self.schema.column_with_name(column).is_none() {
            let available =
                self.schema.fields().iter().map(|f| format!("`{}`", f.name())).collect::<Vec<_>>().join(", ");
            return Err(SpineError::MissingColumn { column: column.into(), available, hint });
        }
        Ok(())
    }

    /// The time column as ms since the epoch, one per row (`None` for null).
    pub fn times(&self, column: &str) -> Result<Vec<Option<i64>>, SpineError> {
        self.check(column, "; choose it with --time-column")?;
        let mut out = Vec::with_capacity(self.rows);
        for b in &self.batches {
            let a = b.column_by_name(column).ok_or_else(|| SpineError::Column {
                column: column.into(),
                message: "is missing from a batch".into(),
            })?;
            let t = TimeColumn::new(a).map_err(|message| SpineError::Column { column: column.into(), message })?;
            out.extend((0..b.num_rows()).map(|i| t.ms(i)));
        }
        Ok(out)
    }

    /// An entity column as strings, one per row (`None` for null).
    pub fn entities(&self, column: &str) -> Result<Vec<Option<String>>, SpineError> {
        self.check(column, "; the entity column is named after the view's `entity`, or set it with --entity-column")?;
        let mut out = Vec::with_capacity(self.rows);
        for b in &self.batches {
            let a = b.column_by_name(column).ok_or_else(|| SpineError::Column {
                column: column.into(),
                message: "is missing from a batch".into(),
            })?;
            let t = TextColumn::new(a).map_err(|message| SpineError::Column { column: column.into(), message })?;
            out.extend((0..b.num_rows()).map(|i| t.get(i).map(|s| s.into_owned())));
        }
        Ok(out)
    }
}
