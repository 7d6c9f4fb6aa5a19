//! Declared aggregations and their feature names.

use std::fmt;

/// An aggregation function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggFunction {
    Count,
    Sum,
    Mean,
    Min,
    Max,
    /// The last `k` distinct values, most recent first.
    LastN(u16),
    /// HyperLogLog estimate of distinct values.
    ApproxCountDistinct,
}

impl AggFunction {
    /// Parse `count`, `sum`, `mean`, `min`, `max`, `last_n(k)` / `last_k` style `last_5`,
    /// `approx_count_distinct`.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "count" => Self::Count,
            "sum" => Self::Sum,
            "mean" | "avg" => Self::Mean,
            "min" => Self::Min,
            "max" => Self::Max,
            "approx_count_distinct" => Self::ApproxCountDistinct,
            _ => {
                let k = s
                    .strip_prefix("last_n(")
                    .and_then(|r| r.strip_suffix(')'))
                    .or_else(|| s.strip_prefix("last_"))
                    .ok_or_else(|| format!("unknown aggregation function `{s}` (count, sum, mean, min, max, last_n(k), approx_count_distinct)"))?;
                let k: u16 = k.trim().parse().map_err(|_| format!("`{s}`: k must be an integer 1..=1000"))?;
                if !(1..=1000).contains(&k) {
                    return Err(format!("`{s}`: k must be 1..=1000"));
                }
                Self::LastN(k)
            }
        })
    }

    /// Whether the function needs a numeric (int64/float64) column.
    pub fn numeric(self) -> bool {
        matches!(self, Self::Sum | Self::Mean | Self::Min | Self::Max)
    }

    /// The function's name in feature names and manifests (`sum`, `last_5`, …).
    pub fn name(self) -> String {
        match self {
            Self::Count => "count".into(),
            Self::Sum => "sum".into(),
            Self::Mean => "mean".into(),
            Self::Min => "min".into(),
            Self::Max => "max".into(),
            Self::LastN(k) => format!("last_{k}"),
            Self::ApproxCountDistinct => "approx_count_distinct".into(),
        }
    }
}

pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;

/// A time window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    /// Length in ms.
    Sliding(i64),
    Lifetime,
}

impl Window {
    /// Parse `30m`, `1h`, `24h`, `7d`, `90s`? (no: at least 1m), `lifetime`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "lifetime" {
            return Ok(Self::Lifetime);
        }
        let ms = crate::time::parse_duration_ms(s).map_err(|e| format!("window {e} (or `lifetime`)"))?;
        if !(MINUTE..=400 * DAY).contains(&ms) {
            return Err(format!("window `{s}` must be between 1m and 400d"));
        }
        let w = Self::Sliding(ms);
        let g = w.tile().expect("sliding");
        if ms % g != 0 {
            return Err(format!("window `{s}` must be a whole number of its {} tiles", fmt_ms(g)));
        }
        Ok(w)
    }

    /// Tile size for this window (`None` for lifetime, which uses one tile forever).
    pub fn tile(self) -> Option<i64> {
        match self {
            Self::Lifetime => None,
            Self::Sliding(w) if w <= 2 * HOUR => Some(MINUTE),
            Self::Sliding(w) if w <= 2 * DAY => Some(HOUR),
            Self::Sliding(_) => Some(DAY),
        }
    }

    pub fn label(self) -> String {
        match self {
            Self::Lifetime => "lifetime".into(),
            Self::Sliding(ms) => fmt_ms(ms),
        }
    }
}

fn fmt_ms(ms: i64) -> String {
    if ms % DAY == 0 && ms >= 2 * DAY {
        format!("{}d", ms / DAY)
    } else if ms % HOUR == 0 {
        format!("{}h", ms / HOUR)
    } else {
        format!("{}m", ms / MINUTE)
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// One aggregation of a view: a column, a function, its windows.
#[derive(Debug, Clone, PartialEq)]
pub struct AggSpec {
    pub column: String,
    pub function: AggFunction,
    pub windows: Vec<Window>,
}

impl AggSpec {
    /// Feature name of one window: `{column}_{function}_{window}`, e.g. `amount_sum_1h`.
    pub fn feature_name(&self, w: Window) -> String {
        format!("{}_{}_{}", self.column, self.function.name(), w.label())
    }
}
