//! Stream feature views: a `[[stream_view]]` of the manifest ([`crate::manifest`]) checked
//! against its transform's declared outputs ([`ViewSpec`]); batch and request views and feature
//! services in [`batch`] and [`request`].

use std::path::PathBuf;

use serde::Deserialize;

pub mod batch;
pub mod breaker;
pub mod request;

pub use batch::{BatchViewConfig, SourceFormat};
pub use breaker::BreakerConfig;
pub use request::{FeatureServiceConfig, RequestViewConfig};

use crate::aggregate::read::output_type;
use crate::aggregate::{AggFunction, AggSpec, Window};
use crate::bindings::types::ValueType;
use crate::time::parse_duration_ms;
use crate::transform::schema::valid_name;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamViewConfig {
    pub name: String,
    pub entity: String,
    pub transform: PathBuf,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    #[serde(default)]
    pub features: Vec<String>,
    #[serde(default)]
    pub aggregations: Vec<AggConfig>,
    /// Online TTL of latest values (default [`DEFAULT_TTL`]).
    #[serde(default = "default_ttl")]
    pub ttl: String,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default = "default_deadline")]
    pub deadline_ms: u64,
    #[serde(default = "default_memory")]
    pub memory_mib: usize,
    /// Consecutive batches with ≥ 90% failed events that pause the view (circuit breaker).
    #[serde(default = "default_trip_after")]
    pub breaker_trip_after: u32,
    /// First pause of a tripped view (doubles per consecutive trip, up to 60 s).
    #[serde(default = "default_cooldown")]
    pub breaker_cooldown: String,
}

fn default_trip_after() -> u32 {
    3
}
fn default_cooldown() -> String {
    "5s".into()
}

/// The namespaced id of a tenant's view (`tenant/view`): its store namespace and metric label.
pub fn view_id(tenant: &str, view: &str) -> String {
    format!("{tenant}/{view}")
}

/// The online TTL of a view that sets none (stream and batch views alike).
pub const DEFAULT_TTL: &str = "30d";

pub(crate) fn default_ttl() -> String {
    DEFAULT_TTL.into()
}
fn default_batch() -> usize {
    512
}
fn default_deadline() -> u64 {
    50
}
fn default_memory() -> usize {
    64
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggConfig {
    pub column: String,
    pub functions: Vec<String>,
    pub windows: Vec<String>,
    /// The tile size of these windows (default: 1m for windows up to 2h, 1h up to 2d, 1d
    /// beyond). Smaller tiles make a window's start more precise (it covers between `W − tile`
    /// and `W` of history) but cost more memory per entity and more fields per read; each window
    /// must be a whole number of tiles, at most 1,440 of them.
    #[serde(default)]
    pub tile: Option<String>,
    /// Coarser tiles kept besides (a multiple of the tile, e.g. `10m` over minute tiles): a read
    /// of a long window takes every whole roll-up tile inside it instead of its fine tiles
    /// (`2h` in minute tiles: at most 30 tiles rather than 120), at the cost of one more tile
    /// per component on each write. Windows shorter than two roll-up tiles do not use it. Turn
    /// it on for a new view, or backfill after turning it on: roll-up tiles hold only the rows
    /// written since.
    #[serde(default)]
    pub rollup: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("view `{view}`: {message}")]
    Invalid { view: String, message: String },
}

/// A view's configuration checked against its transform's declared outputs.
#[derive(Debug, Clone)]
pub struct ViewSpec {
    pub name: String,
    pub entity: String,
    pub latest: Vec<(String, ValueType)>,
    pub aggs: Vec<AggSpec>,
    /// Declared type of each aggregated column.
    pub column_types: Vec<(String, ValueType)>,
    pub ttl_ms: i64,
    pub breaker: BreakerConfig,
}

impl ViewSpec {
    pub fn new(cfg: &StreamViewConfig, outputs: &[crate::FeatureSpec]) -> Result<Self, ViewError> {
        let err = |message: String| ViewError::Invalid { view: cfg.name.clone(), message };
        if !valid_name(&cfg.name) {
            return Err(err("view name must be 1-128 of [A-Za-z0-9_.-], starting with a letter".into()));
        }
        let ty = |name: &str| outputs.iter().find(|o| o.name == name).map(|o| o.value_type);
        let mut latest = Vec::new();
        for f in &cfg.features {
            let t = ty(f).ok_or_else(|| err(format!("feature `{f}` is not an output of the transform")))?;
            latest.push((f.clone(), t));
        }
        let mut aggs = Vec::new();
        let mut column_types = Vec::new();
        for a in &cfg.aggregations {
            let t = ty(&a.column)
                .ok_or_else(|| err(format!("aggregated column `{}` is not an output of the transform", a.column)))?;
            let tile = match &a.tile {
                None => None,
                Some(t) => {
                    Some(parse_duration_ms(t).map_err(|e| err(format!("aggregation of `{}`: tile {e}", a.column)))?)
                }
            };
            let rollup = match &a.rollup {
                None => None,
                Some(r) => {
                    Some(parse_duration_ms(r).map_err(|e| err(format!("aggregation of `{}`: rollup {e}", a.column)))?)
                }
            };
            let windows = a
                .windows
                .iter()
                .map(|w| Window::parse_with_tiles(w, tile, rollup).map_err(&err))
                .collect::<Result<Vec<_>, _>>()?;
            if windows.is_empty() {
                return Err(err(format!("aggregation of `{}` has no windows", a.column)));
            }
            for f in &a.functions {
                let function = AggFunction::parse(f).map_err(&err)?;
                if function.numeric() && !matches!(t, ValueType::Int64 | ValueType::Float64) {
                    return Err(err(format!("`{f}` needs a numeric column, but `{}` is {}", a.column, t.as_str())));
                }
                for w in &windows {
                    function.check_window(*w).map_err(|m| err(format!("aggregation of `{}`: {m}", a.column)))?;
                }
                aggs.push(AggSpec { column: a.column.clone(), function, windows: windows.clone() });
            }
            if !column_types.iter().any(|(c, _): &(String, ValueType)| *c == a.column) {
                column_types.push((a.column.clone(), t));
            }
        }
        let ttl_ms = parse_duration_ms(&cfg.ttl).map_err(|e| err(format!("ttl {e}")))?;
        let cooldown = parse_duration_ms(&cfg.breaker_cooldown).map_err(|e| err(format!("breaker_cooldown {e}")))?;
        if cfg.breaker_trip_after == 0 {
            return Err(err("breaker_trip_after must be at least 1".into()));
        }
        let breaker = BreakerConfig {
            trip_after: cfg.breaker_trip_after,
            cooldown: std::time::Duration::from_millis(cooldown as u64),
            ..Default::default()
        };
        let spec =
            Self { name: cfg.name.clone(), entity: cfg.entity.clone(), latest, aggs, column_types, ttl_ms, breaker };
        let mut seen = std::collections::HashSet::new();
        for n in spec.feature_names() {
            if !seen.insert(n.clone()) {
                return Err(err(format!("feature `{n}` is defined twice")));
            }
        }
        Ok(spec)
    }

    /// Every feature the view serves, with its type.
    pub fn feature_types(&self) -> Vec<(String, ValueType)> {
        let mut v = self.latest.clone();
        for a in &self.aggs {
            let ct = self.column_type(&a.column);
            for w in &a.windows {
                v.push((a.feature_name(*w), output_type(a.function, ct)));
            }
        }
        v
    }

    pub fn feature_names(&self) -> Vec<String> {
        self.feature_types().into_iter().map(|(n, _)| n).collect()
    }

    pub fn column_type(&self, column: &str) -> ValueType {
        self.column_types.iter().find(|(c, _)| c == column).map_or(ValueType::Float64, |(_, t)| *t)
    }

    /// Longest reach of a sliding window (ms): its length plus its offset.
    pub fn longest_window(&self) -> i64 {
        self.aggs.iter().flat_map(|a| a.windows.iter()).filter_map(|w| w.reach()).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::spec::{HOUR, MINUTE};

    fn spec(aggregations: &str) -> Result<ViewSpec, ViewError> {
        let cfg: StreamViewConfig =
            toml::from_str(&format!("name = \"txn\"\nentity = \"user\"\ntransform = \"t.wasm\"\n{aggregations}"))
                .expect("config parses");
        let outputs = [("amount", ValueType::Float64), ("merchant", ValueType::Text)]
            .map(|(name, value_type)| crate::FeatureSpec { name: name.into(), value_type, nullable: false });
        ViewSpec::new(&cfg, &outputs)
    }

    #[test]
    fn an_aggregation_sets_its_tile_and_rollup() {
        let s = spec(
            "[[aggregations]]\ncolumn = \"amount\"\nfunctions = [\"sum\", \"decayed_sum(1h)\"]\n\
             windows = [\"2h\", \"24h\", \"1h_offset_5m\"]\ntile = \"5m\"\nrollup = \"1h\"\n",
        )
        .unwrap();
        let windows = &s.aggs[0].windows;
        assert!(windows.iter().all(|w| w.tile() == Some(5 * MINUTE)));
        // 2h and 24h span two roll-up tiles; the 1h window does not.
        assert_eq!(windows.iter().map(|w| w.rollup()).collect::<Vec<_>>(), [Some(HOUR), Some(HOUR), None]);
        assert!(s.feature_names().iter().any(|n| n == "amount_decayed_sum_1h_1h_offset_5m"));
        // The longest reach keeps the records: 24h (the offset window reaches 1h05m).
        assert_eq!(s.longest_window(), 24 * HOUR);
    }

    #[test]
    fn bad_tiles_rollups_and_decays_are_named() {
        for (aggregation, why) in [
            ("windows = [\"1h\"]\ntile = \"7m\"", "whole number of its 7m tiles"),
            ("windows = [\"1h\"]\ntile = \"x\"", "tile"),
            ("windows = [\"2h\"]\nrollup = \"90s\"", "multiple of the window's 1m tiles"),
            ("windows = [\"lifetime\"]\nfunctions2 = 1", "unknown field"),
        ] {
            let text = format!("[[aggregations]]\ncolumn = \"amount\"\nfunctions = [\"sum\"]\n{aggregation}\n");
            let cfg = toml::from_str::<StreamViewConfig>(&format!(
                "name = \"txn\"\nentity = \"user\"\ntransform = \"t.wasm\"\n{text}"
            ));
            let message = match cfg {
                Err(e) => e.to_string(),
                Ok(_) => spec(&text).err().map(|e| e.to_string()).unwrap_or_default(),
            };
            assert!(message.contains(why), "{aggregation}: {message}");
        }
        let e =
            spec("[[aggregations]]\ncolumn = \"amount\"\nfunctions = [\"decayed_count(1m)\"]\nwindows = [\"7d\"]\n")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
        assert!(e.contains("half-lives"), "{e}");
    }
}
