//! Reading a batch view's source file (Parquet, CSV or JSONL) as chunks of feature rows.
//! Row numbers count every data row of the file (bad ones too), so they are stable offsets for
//! resuming.

use std::path::Path;

use crate::bindings::types::{Feature, FeatureRow, ValueType};
use crate::view::{BatchViewConfig, SourceFormat, ViewSpec};

use super::MaterializeError;
use super::cell::Cell;

/// A row that could not be loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    /// 0-based data row number.
    pub row: u64,
    pub message: String,
}

/// A chunk of consecutive rows: `first_row..first_row + len`.
#[derive(Debug, Default)]
pub struct Chunk {
    pub first_row: u64,
    pub len: u64,
    pub rows: Vec<FeatureRow>,
    pub errors: Vec<RowError>,
}

/// The columns to extract and how.
#[derive(Debug, Clone)]
pub struct Columns {
    pub entity: String,
    pub timestamp: String,
    pub features: Vec<(String, ValueType)>,
}

impl Columns {
    /// A batch view's source columns: its entity and timestamp columns and the features of `spec`
    /// (the view's spec, built from `cfg`).
    pub fn of_view(cfg: &BatchViewConfig, spec: &ViewSpec) -> Self {
        Self {
            entity: cfg.entity_column().to_owned(),
            timestamp: cfg.timestamp_column.clone(),
            features: spec.latest.clone(),
        }
    }

    /// Build one row from cells looked up by column index (`None` = column absent → null).
    pub fn row<'a>(
        &self,
        entity: Cell<'a>,
        ts: Cell<'a>,
        features: impl Iterator<Item = Cell<'a>>,
    ) -> Result<FeatureRow, String> {
        let entity_key = entity.to_key().map_err(|e| format!("column `{}`: {e}", self.entity))?;
        let event_time_ms = ts.to_time_ms().map_err(|e| format!("column `{}`: {e}", self.timestamp))?;
        let mut out = Vec::with_capacity(self.features.len());
        for ((name, ty), cell) in self.features.iter().zip(features) {
            let value = cell.to_value(*ty).map_err(|e| format!("column `{name}`: {e}"))?;
            out.push(Feature { name: name.clone(), value });
        }
        Ok(FeatureRow { entity_key, event_time_ms, features: out })
    }
}

/// A source of rows.
pub trait RowSource: Send {
    /// Total data rows, if known cheaply (for the progress bar).
    fn total_rows(&self) -> Option<u64>;
    /// The next up-to-`max` rows; `None` at the end.
    fn next_chunk(&mut self, max: usize) -> Result<Option<Chunk>, MaterializeError>;
}

/// Open `path` in `format`, checking that the needed columns exist.
pub fn open(path: &Path, format: SourceFormat, columns: Columns) -> Result<Box<dyn RowSource>, MaterializeError> {
    Ok(match format {
        SourceFormat::Parquet => Box::new(super::parquet::ParquetSource::open(path, columns)?),
        SourceFormat::Csv => Box::new(super::csv::CsvSource::open(path, columns)?),
        SourceFormat::Jsonl => Box::new(super::jsonl::JsonlSource::open(path, columns)?),
    })
}
