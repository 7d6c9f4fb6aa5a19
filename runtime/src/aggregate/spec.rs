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
    /// The last `k` distinct values, most recent first (Tecton's `last_distinct_n`).
    LastN(u16),
    /// The first `k` distinct values, earliest first (Tecton's `first_distinct_n`).
    FirstN(u16),
    /// HyperLogLog estimate of distinct values.
    ApproxCountDistinct,
    /// The exact number of distinct values, saturating at the cap `k`: `min(distinct, k)`. Each
    /// tile keeps its `k` greatest distinct values (under the value order of `last_n` ties), a set
    /// that does not depend on arrival order; a tile holding `k` values means the window has at
    /// least `k`, so the union of the window's tiles, cut at `k`, has exactly `min(distinct, k)`.
    CountDistinct(u16),
    /// Population variance `Σ(x − x̄)² / n` (see [`super::moments`]).
    VarPop,
    /// Sample variance `Σ(x − x̄)² / (n − 1)`; null below two values.
    VarSamp,
    /// `√var_pop`.
    StddevPop,
    /// `√var_samp`.
    StddevSamp,
    /// The value at quantile `p` (in ten-thousandths: 9900 = 0.99), from a DDSketch with 1%
    /// relative error (see [`super::quantile`]).
    ApproxPercentile(u16),
    /// `Σ 2^(−(t − e)/H)` for the half-life `H` in ms (see [`super::decay`]).
    DecayedCount(i64),
    /// `Σ x · 2^(−(t − e)/H)` for the half-life `H` in ms.
    DecayedSum(i64),
}

/// `decayed_sum(1h)`: the half-life in ms, 1s..=400d.
fn half_life(s: &str, call: &str) -> Option<Result<i64, String>> {
    let h = s.strip_prefix(call)?.strip_prefix('(')?.strip_suffix(')')?.trim();
    Some(match crate::time::parse_duration_ms(h) {
        Ok(ms) if (1_000..=400 * DAY).contains(&ms) => Ok(ms),
        _ => Err(format!("`{s}`: the half-life must be a duration from 1s to 400d (e.g. `1h`)")),
    })
}

/// `name(k)` or `name_k` (`last_n(5)`, `last_5`): the `k` of a list function, 1..=1000.
fn list_k(s: &str, call: &str, short: Option<&str>) -> Option<Result<u16, String>> {
    let called = s.strip_prefix(call).and_then(|r| r.strip_prefix('(')).and_then(|r| r.strip_suffix(')'));
    let short_k = || {
        let r = s.strip_prefix(short?)?;
        (!r.is_empty() && r.bytes().all(|b| b.is_ascii_digit())).then_some(r)
    };
    let k = called.or_else(short_k)?;
    Some(match k.trim().parse::<u16>() {
        Ok(k) if (1..=1000).contains(&k) => Ok(k),
        _ => Err(format!("`{s}`: k must be an integer 1..=1000")),
    })
}

/// The cap of a bare `count_distinct`: exact up to 1,000 distinct values per window.
pub const DEFAULT_DISTINCT_CAP: u16 = 1000;

/// `approx_percentile(0.99)`: the quantile in ten-thousandths (0.0001 steps, 0..=1).
fn percentile(s: &str) -> Option<Result<u16, String>> {
    let p = s.strip_prefix("approx_percentile(")?.strip_suffix(')')?.trim();
    let bad = || format!("`{s}`: the percentile must be a number from 0 to 1 in steps of 0.0001 (e.g. 0.99)");
    Some(match p.parse::<f64>() {
        Ok(q) if (0.0..=1.0).contains(&q) && ((q * 1e4).round() - q * 1e4).abs() < 1e-6 => Ok((q * 1e4).round() as u16),
        _ => Err(bad()),
    })
}

impl AggFunction {
    /// Parse `count`, `sum`, `mean`, `min`, `max`, `last_n(k)` (also `last_k` and
    /// `last_distinct_n(k)`), `first_n(k)` (also `first_k` and `first_distinct_n(k)`),
    /// `approx_count_distinct`, `count_distinct(k)` (and `count_distinct`, capped at
    /// [`DEFAULT_DISTINCT_CAP`]), `var_pop`, `var_samp`, `stddev_pop`, `stddev_samp` (also
    /// `variance`/`stddev` for the sample forms, as SQL), `approx_percentile(p)`.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "count" => Self::Count,
            "sum" => Self::Sum,
            "mean" | "avg" => Self::Mean,
            "min" => Self::Min,
            "max" => Self::Max,
            "approx_count_distinct" => Self::ApproxCountDistinct,
            "count_distinct" => Self::CountDistinct(DEFAULT_DISTINCT_CAP),
            "var_pop" => Self::VarPop,
            "var_samp" | "variance" => Self::VarSamp,
            "stddev_pop" => Self::StddevPop,
            "stddev_samp" | "stddev" => Self::StddevSamp,
            _ => {
                if let Some(k) = list_k(s, "last_n", Some("last_")).or_else(|| list_k(s, "last_distinct_n", None)) {
                    Self::LastN(k?)
                } else if let Some(k) =
                    list_k(s, "first_n", Some("first_")).or_else(|| list_k(s, "first_distinct_n", None))
                {
                    Self::FirstN(k?)
                } else if let Some(k) = list_k(s, "count_distinct", None) {
                    Self::CountDistinct(k?)
                } else if let Some(p) = percentile(s) {
                    Self::ApproxPercentile(p?)
                } else if let Some(h) = half_life(s, "decayed_count") {
                    Self::DecayedCount(h?)
                } else if let Some(h) = half_life(s, "decayed_sum") {
                    Self::DecayedSum(h?)
                } else {
                    return Err(format!(
                        "unknown aggregation function `{s}` (count, sum, mean, min, max, last_n(k), first_n(k), \
                         count_distinct(k), approx_count_distinct, var_pop, var_samp, stddev_pop, stddev_samp, approx_percentile(p), \
                         decayed_count(half-life), decayed_sum(half-life))"
                    ));
                }
            }
        })
    }

    /// Whether the function needs a numeric (int64/float64) column.
    pub fn numeric(self) -> bool {
        matches!(
            self,
            Self::Sum
                | Self::Mean
                | Self::Min
                | Self::Max
                | Self::VarPop
                | Self::VarSamp
                | Self::StddevPop
                | Self::StddevSamp
                | Self::ApproxPercentile(_)
                | Self::DecayedSum(_)
        )
    }

    /// Whether the function can be read over `w`: decayed functions need a sliding window whose
    /// tiles span at most [`super::decay::MAX_TILE_HALF_LIVES`] half-lives.
    pub fn check_window(self, w: Window) -> Result<(), String> {
        let (Self::DecayedCount(h) | Self::DecayedSum(h)) = self else { return Ok(()) };
        let Some(g) = w.rollup().or(w.tile()) else {
            return Err(format!(
                "`{}` needs a sliding window, not `lifetime` (old rows decay to nothing)",
                self.name()
            ));
        };
        if g > super::decay::MAX_TILE_HALF_LIVES * h {
            return Err(format!(
                "`{}` over `{w}`: the window's {} tiles span more than {} half-lives; use a half-life of at least {}",
                self.name(),
                fmt_ms(g),
                super::decay::MAX_TILE_HALF_LIVES,
                fmt_duration(g / super::decay::MAX_TILE_HALF_LIVES)
            ));
        }
        Ok(())
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
            Self::FirstN(k) => format!("first_{k}"),
            Self::ApproxCountDistinct => "approx_count_distinct".into(),
            Self::CountDistinct(DEFAULT_DISTINCT_CAP) => "count_distinct".into(),
            Self::CountDistinct(k) => format!("count_distinct_{k}"),
            Self::VarPop => "var_pop".into(),
            Self::VarSamp => "var_samp".into(),
            Self::StddevPop => "stddev_pop".into(),
            Self::StddevSamp => "stddev_samp".into(),
            Self::ApproxPercentile(p) => percentile_name(p),
            Self::DecayedCount(h) => format!("decayed_count_{}", fmt_duration(h)),
            Self::DecayedSum(h) => format!("decayed_sum_{}", fmt_duration(h)),
        }
    }
}

/// `p99`, `p50`, `p99_9`, `p0`, `p100`: the quantile in percent, `_` for the decimal point.
fn percentile_name(p: u16) -> String {
    let (whole, frac) = (p / 100, p % 100);
    match frac {
        0 => format!("approx_percentile_p{whole}"),
        f if f % 10 == 0 => format!("approx_percentile_p{whole}_{}", f / 10),
        f => format!("approx_percentile_p{whole}_{f:02}"),
    }
}

pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;

/// A time window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    /// `len` ms of tiles of `tile` ms, ending with the tile that holds the read time, or — with
    /// an `offset` (a whole number of tiles) — that many ms earlier, complete tiles only (e.g.
    /// `7d_offset_1d`: the seven complete days before today). With a `rollup` (a multiple of
    /// `tile`, or 0 for none) the window's rows are also kept in coarser tiles of that size, and a
    /// read takes every whole coarse tile inside the window instead of its fine tiles. See
    /// [`super::window`].
    Sliding {
        len: i64,
        offset: i64,
        tile: i64,
        rollup: i64,
    },
    Lifetime,
}

/// Separates a window's length from its offset: `7d_offset_1d`.
const OFFSET_SEP: &str = "_offset_";

/// The most tiles one window may span (a read touches each): 24h of minute tiles.
pub const MAX_TILES_PER_WINDOW: i64 = 1440;

/// The default tile of a window of `len` ms: 1 minute up to 2h, 1 hour up to 2d, 1 day beyond.
pub fn default_tile(len: i64) -> i64 {
    if len <= 2 * HOUR {
        MINUTE
    } else if len <= 2 * DAY {
        HOUR
    } else {
        DAY
    }
}

impl Window {
    /// A window of `len` ms in its default tiles, ending at the read.
    pub fn sliding(len: i64) -> Self {
        Self::Sliding { len, offset: 0, tile: default_tile(len), rollup: 0 }
    }

    /// Parse `30m`, `1h`, `24h`, `7d` (at least 1m), `lifetime`, and offset windows such as
    /// `7d_offset_1d`, in default tiles.
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::parse_with_tile(s, None)
    }

    /// [`Window::parse`] with the aggregation's own tile size (`tile = "5m"`), if it sets one.
    pub fn parse_with_tile(s: &str, tile: Option<i64>) -> Result<Self, String> {
        Self::parse_with_tiles(s, tile, None)
    }

    /// [`Window::parse_with_tile`] with the aggregation's roll-up tile size (`rollup = "10m"`):
    /// a multiple of the window's tile. Windows whose tiles are at least as large, or that are
    /// shorter than two roll-up tiles, do not use it.
    pub fn parse_with_tiles(s: &str, tile: Option<i64>, rollup: Option<i64>) -> Result<Self, String> {
        if s == "lifetime" {
            return Ok(Self::Lifetime);
        }
        let (len_text, offset_text) = match s.split_once(OFFSET_SEP) {
            Some((l, o)) => (l, Some(o)),
            None => (s, None),
        };
        let len = crate::time::parse_duration_ms(len_text).map_err(|e| format!("window {e} (or `lifetime`)"))?;
        if !(MINUTE..=400 * DAY).contains(&len) {
            return Err(format!("window `{s}` must be between 1m and 400d"));
        }
        let g = tile.unwrap_or_else(|| default_tile(len));
        if g < 1_000 {
            return Err(format!("window `{s}`: tiles must be at least 1s"));
        }
        if len % g != 0 {
            return Err(format!("window `{s}` must be a whole number of its {} tiles", fmt_duration(g)));
        }
        if len / g > MAX_TILES_PER_WINDOW {
            return Err(format!(
                "window `{s}` would span {} tiles of {} (at most {MAX_TILES_PER_WINDOW}): use a larger tile",
                len / g,
                fmt_duration(g)
            ));
        }
        let offset = match offset_text {
            None => 0,
            Some(o) => crate::time::parse_duration_ms(o).map_err(|e| format!("window `{s}`: offset {e}"))?,
        };
        if offset_text.is_some() && (offset < g || offset % g != 0) {
            return Err(format!(
                "window `{s}`: the offset must be a whole number (at least one) of the window's {} tiles",
                fmt_duration(g)
            ));
        }
        if len + offset > 400 * DAY {
            return Err(format!("window `{s}`: length plus offset must be at most 400d"));
        }
        let rollup = match rollup {
            // Windows in tiles as large as the roll-up (or larger) have nothing to roll up.
            Some(r) if r <= g => 0,
            Some(r) if r % g != 0 => {
                return Err(format!(
                    "window `{s}`: the rollup ({}) must be a multiple of the window's {} tiles",
                    fmt_duration(r),
                    fmt_duration(g)
                ));
            }
            Some(r) if len >= 2 * r => r,
            _ => 0,
        };
        Ok(Self::Sliding { len, offset, tile: g, rollup })
    }

    /// The roll-up tile size this window reads whole coarse tiles of (`None`: none).
    pub fn rollup(self) -> Option<i64> {
        match self {
            Self::Sliding { rollup, .. } if rollup > 0 => Some(rollup),
            _ => None,
        }
    }

    /// Tile size for this window (`None` for lifetime, which uses one tile forever).
    pub fn tile(self) -> Option<i64> {
        match self {
            Self::Sliding { tile, .. } => Some(tile),
            Self::Lifetime => None,
        }
    }

    /// The window's length (`None` for lifetime).
    pub fn length(self) -> Option<i64> {
        match self {
            Self::Sliding { len, .. } => Some(len),
            Self::Lifetime => None,
        }
    }

    /// How far before the end of the current tile the window ends (0 unless an offset window).
    pub fn offset(self) -> i64 {
        match self {
            Self::Sliding { offset, .. } => offset,
            Self::Lifetime => 0,
        }
    }

    /// How far back from a read the window's oldest tile may start: length plus offset.
    pub fn reach(self) -> Option<i64> {
        Some(self.length()? + self.offset())
    }

    /// The window's name in feature names (`1h`, `7d_offset_1d`, `lifetime`; the tile size is
    /// not part of it).
    pub fn label(self) -> String {
        match self {
            Self::Lifetime => "lifetime".into(),
            Self::Sliding { len, offset: 0, .. } => fmt_ms(len),
            Self::Sliding { len, offset, .. } => format!("{}{OFFSET_SEP}{}", fmt_ms(len), fmt_duration(offset)),
        }
    }
}

/// A duration in its largest whole unit (`1d`, `6h`, `30m`, `90s`, `1500ms`).
fn fmt_duration(ms: i64) -> String {
    if ms % DAY == 0 {
        format!("{}d", ms / DAY)
    } else if ms % HOUR == 0 {
        format!("{}h", ms / HOUR)
    } else if ms % MINUTE == 0 {
        format!("{}m", ms / MINUTE)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_parse_from_their_names_and_aliases() {
        let cases = [
            ("last_n(5)", AggFunction::LastN(5)),
            ("last_5", AggFunction::LastN(5)),
            ("last_distinct_n(7)", AggFunction::LastN(7)),
            ("first_n(3)", AggFunction::FirstN(3)),
            ("first_3", AggFunction::FirstN(3)),
            ("first_distinct_n(2)", AggFunction::FirstN(2)),
            ("var_pop", AggFunction::VarPop),
            ("variance", AggFunction::VarSamp),
            ("stddev", AggFunction::StddevSamp),
            ("stddev_pop", AggFunction::StddevPop),
            ("approx_percentile(0.99)", AggFunction::ApproxPercentile(9900)),
            ("approx_percentile(0.5)", AggFunction::ApproxPercentile(5000)),
            ("approx_percentile(0.999)", AggFunction::ApproxPercentile(9990)),
            ("approx_percentile(1)", AggFunction::ApproxPercentile(10000)),
            ("count_distinct(50)", AggFunction::CountDistinct(50)),
            ("count_distinct", AggFunction::CountDistinct(DEFAULT_DISTINCT_CAP)),
            ("count_distinct(1000)", AggFunction::CountDistinct(1000)),
        ];
        for (text, f) in cases {
            assert_eq!(AggFunction::parse(text), Ok(f), "{text}");
        }
        assert_eq!(AggFunction::CountDistinct(50).name(), "count_distinct_50");
        assert_eq!(AggFunction::CountDistinct(1000).name(), "count_distinct");
        for bad in ["count_distinct(0)", "count_distinct(1001)", "count_distinct(x)"] {
            assert!(AggFunction::parse(bad).unwrap_err().contains("1..=1000"), "{bad}");
        }
        let names: Vec<String> =
            [9900, 5000, 9990, 9995, 0, 10000].into_iter().map(|p| AggFunction::ApproxPercentile(p).name()).collect();
        assert_eq!(
            names,
            [
                "approx_percentile_p99",
                "approx_percentile_p50",
                "approx_percentile_p99_9",
                "approx_percentile_p99_95",
                "approx_percentile_p0",
                "approx_percentile_p100"
            ]
        );
        assert_eq!(AggFunction::FirstN(3).name(), "first_3");
        assert_eq!(AggFunction::parse("decayed_sum(1h)"), Ok(AggFunction::DecayedSum(HOUR)));
        assert_eq!(AggFunction::parse("decayed_count(90s)"), Ok(AggFunction::DecayedCount(90_000)));
        assert_eq!(AggFunction::DecayedSum(HOUR).name(), "decayed_sum_1h");
        assert_eq!(AggFunction::DecayedCount(90_000).name(), "decayed_count_90s");
    }

    #[test]
    fn an_aggregation_may_choose_its_tile_size() {
        let w = Window::parse_with_tile("1h", Some(5 * MINUTE)).unwrap();
        assert_eq!((w.tile(), w.label()), (Some(5 * MINUTE), "1h".to_string()));
        assert_eq!(Window::parse_with_tile("7d_offset_1d", Some(HOUR)).unwrap().tile(), Some(HOUR));
        assert_eq!(Window::parse_with_tile("lifetime", Some(HOUR)), Ok(Window::Lifetime));
        for (window, tile, why) in [
            ("1h", 7 * MINUTE, "whole number"),
            ("2d", MINUTE, "at most 1440"),
            ("1h", 500, "at least 1s"),
            ("1h_offset_90s", MINUTE, "offset"),
        ] {
            let e = Window::parse_with_tile(window, Some(tile)).unwrap_err();
            assert!(e.contains(why), "{window} in {tile} ms tiles: {e}");
        }
    }

    #[test]
    fn a_rollup_applies_to_the_windows_it_can_roll_up() {
        let r = |w: &str, big: i64| Window::parse_with_tiles(w, None, Some(big));
        assert_eq!(r("2h", 10 * MINUTE).unwrap().rollup(), Some(10 * MINUTE));
        // Hour tiles are as large as the roll-up; a 15-minute window is shorter than two of it.
        assert_eq!(r("24h", HOUR).unwrap().rollup(), None);
        assert_eq!(r("15m", 10 * MINUTE).unwrap().rollup(), None);
        let e = r("2h", 90_000).unwrap_err();
        assert!(e.contains("multiple of the window's 1m tiles"), "{e}");
    }

    #[test]
    fn decayed_functions_need_a_sliding_window_of_narrow_tiles() {
        let f = AggFunction::DecayedSum(HOUR);
        assert!(f.check_window(Window::parse("7d").unwrap()).is_err(), "day tiles are 24 half-lives");
        assert!(f.check_window(Window::parse("48h").unwrap()).is_ok());
        let e = f.check_window(Window::Lifetime).unwrap_err();
        assert!(e.contains("lifetime"), "{e}");
        let e = AggFunction::DecayedCount(MINUTE).check_window(Window::parse("7d").unwrap()).unwrap_err();
        assert!(e.contains("at least 1h30m") || e.contains("at least 90m"), "{e}");
        assert!(AggFunction::Sum.check_window(Window::Lifetime).is_ok());
        assert!(AggFunction::parse("decayed_sum(0s)").is_err());
    }

    #[test]
    fn offset_windows_parse_and_label_as_written() {
        for text in ["7d_offset_1d", "24h_offset_1h", "5m_offset_2m", "30d_offset_7d"] {
            let w = Window::parse(text).unwrap();
            assert_eq!(w.label(), text);
            assert!(w.offset() > 0);
        }
        assert_eq!(
            Window::parse("7d_offset_1d").unwrap(),
            Window::Sliding { len: 7 * DAY, offset: DAY, tile: DAY, rollup: 0 }
        );
        for (bad, why) in [
            ("7d_offset_1h", "whole number"),
            ("1h_offset_30s", "whole number"),
            ("24h_offset_0m", "offset"),
            ("399d_offset_2d", "400d"),
            ("7d_offset_x", "offset"),
        ] {
            let e = Window::parse(bad).unwrap_err();
            assert!(e.contains(bad) && e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_parameters_are_named() {
        for bad in [
            "approx_percentile(1.5)",
            "approx_percentile(0.12345)",
            "approx_percentile(x)",
            "last_n(0)",
            "first_n(1001)",
        ] {
            let e = AggFunction::parse(bad).unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
        let e = AggFunction::parse("median").unwrap_err();
        assert!(e.contains("unknown aggregation function `median`") && e.contains("approx_percentile(p)"), "{e}");
        // A bare number is not a list function.
        assert!(AggFunction::parse("5").is_err());
    }
}
