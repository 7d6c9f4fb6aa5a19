//! Batch feature views: precomputed features loaded from a file by `wafer materialize`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ViewError, ViewSpec};
use crate::bindings::types::ValueType;
use crate::time::parse_duration_ms;
use crate::transform::schema::valid_name;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchViewConfig {
    pub name: String,
    /// Entity type (the join key name in Feast requests).
    pub entity: String,
    /// The file to materialize from (relative to the manifest). Optional: a view created through
    /// the API (registry mode) has none, and is loaded with `wafer materialize --server … --from
    /// FILE`; `--from` also overrides it.
    #[serde(default)]
    pub source: Option<PathBuf>,
    /// `parquet`, `csv` or `jsonl`; default: from the file extension.
    #[serde(default)]
    pub format: Option<String>,
    /// Column holding the entity key; default: the entity name.
    #[serde(default)]
    pub entity_column: Option<String>,
    /// Column holding the event time (integer ms since the epoch, or RFC 3339 text).
    #[serde(default = "default_ts")]
    pub timestamp_column: String,
    /// Feature columns and their types (`int64`, `float64`, `text`, `boolean`).
    pub features: BTreeMap<String, String>,
    /// Online TTL (default [`DEFAULT_TTL`](super::DEFAULT_TTL)).
    #[serde(default = "super::default_ttl")]
    pub ttl: String,
    /// Rows per store write.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

/// A batch view feature's type from its name: `int64`, `float64`, `text` (or `string`), `boolean`
/// (or `bool`). Manifests, the view API and `GET /v1/views` use these names.
pub fn feature_type(name: &str) -> Option<ValueType> {
    Some(match name {
        "int64" => ValueType::Int64,
        "float64" => ValueType::Float64,
        "text" | "string" => ValueType::Text,
        "boolean" | "bool" => ValueType::Boolean,
        _ => return None,
    })
}

fn default_ts() -> String {
    "event_timestamp".into()
}
fn default_batch() -> usize {
    2000
}

/// The file formats a batch source can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    Parquet,
    Csv,
    Jsonl,
}

impl SourceFormat {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "parquet" => Some(Self::Parquet),
            "csv" => Some(Self::Csv),
            "jsonl" | "ndjson" | "json" => Some(Self::Jsonl),
            _ => None,
        }
    }

    /// From a file's extension.
    pub fn of_path(path: &Path) -> Option<Self> {
        Self::parse(&path.extension()?.to_str()?.to_ascii_lowercase())
    }
}

impl BatchViewConfig {
    pub fn entity_column(&self) -> &str {
        self.entity_column.as_deref().unwrap_or(&self.entity)
    }

    /// The format of `path` (the configured one, or by extension).
    pub fn format_of(&self, path: &Path) -> Result<SourceFormat, ViewError> {
        let err = |message: String| ViewError::Invalid { view: self.name.clone(), message };
        match &self.format {
            Some(f) => {
                SourceFormat::parse(f).ok_or_else(|| err(format!("format `{f}`: expected parquet, csv or jsonl")))
            }
            None => SourceFormat::of_path(path).ok_or_else(|| {
                err(format!("{}: cannot tell the format from the extension; set `format`", path.display()))
            }),
        }
    }

    /// The view's serving spec: every feature is a latest value (newest event time wins).
    pub fn spec(&self) -> Result<ViewSpec, ViewError> {
        let err = |message: String| ViewError::Invalid { view: self.name.clone(), message };
        if !valid_name(&self.name) {
            return Err(err("view name must be 1-128 of [A-Za-z0-9_.-], starting with a letter".into()));
        }
        if self.features.is_empty() {
            return Err(err("a batch view needs at least one feature".into()));
        }
        let mut latest = Vec::with_capacity(self.features.len());
        for (name, ty) in &self.features {
            if !valid_name(name) {
                return Err(err(format!(
                    "feature name `{name}` must be 1-128 of [A-Za-z0-9_.-], starting with a letter"
                )));
            }
            let Some(t) = feature_type(ty) else {
                return Err(err(format!("feature `{name}`: type `{ty}` is not one of int64, float64, text, boolean")));
            };
            latest.push((name.clone(), t));
        }
        if self.features.contains_key(self.entity_column()) || self.features.contains_key(&self.timestamp_column) {
            return Err(err("the entity and timestamp columns cannot also be features".into()));
        }
        if self.batch_size == 0 {
            return Err(err("batch_size must be at least 1".into()));
        }
        let ttl_ms = parse_duration_ms(&self.ttl).map_err(|e| err(format!("ttl {e}")))?;
        Ok(ViewSpec {
            name: self.name.clone(),
            entity: self.entity.clone(),
            latest,
            aggs: Vec::new(),
            column_types: Vec::new(),
            ttl_ms,
            breaker: Default::default(),
        })
    }
}
