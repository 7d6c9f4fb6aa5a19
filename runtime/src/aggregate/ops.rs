//! Store-level merge operations. Each is commutative and associative, so applying a batch's ops
//! in any order, on any node, gives the same state; a store applies one batch's ops atomically.
//! Where an op chooses between values (min/max, ties) it uses the order in [`super::order`].

use super::order::{TieOrder, cmp_json, cmp_keys};

/// Field names inside an entity's record:
/// - `f:<feature>`: latest value of a plain feature (`<event_time>|<json>`).
/// - `t:<g>:<start>:<column>:<component>`: a tile component; `g` is the tile size in ms (0 for
///   lifetime), components `n` (count), `s` (sum, micro-units), `q` (sum of squared micro-units,
///   a decimal integer), `mn`/`mx` (min/max), `l<k>` (last k), `e<k>` (first k), `c<k>` (the k
///   greatest distinct values, for `count_distinct(k)`, kept with the `first_n` op), `d` (DDSketch
///   buckets), `h` (HLL registers; a separate key in Redis).
pub fn latest_field(feature: &str) -> String {
    format!("f:{feature}")
}

pub fn tile_field(g: i64, start: i64, column: &str, component: &str) -> String {
    let mut s = String::with_capacity(TILE_FIELD_SLACK + column.len() + component.len());
    write_tile_field(&mut s, g, start, column, component);
    s
}

/// Room for `t:`, two i64s and the separators: sized once, so building a name never reallocates.
const TILE_FIELD_SLACK: usize = 46;

/// Write a tile field name into `out` (cleared first), for lookups that reuse one buffer.
pub fn write_tile_field(out: &mut String, g: i64, start: i64, column: &str, component: &str) {
    use std::fmt::Write as _;
    out.clear();
    let _ = write!(out, "t:{g}:{start}:{column}:{component}");
}

/// Parse `t:<g>:<start>:...` → (g, start), for expiring old tiles.
pub fn parse_tile_field(field: &str) -> Option<(i64, i64)> {
    let mut it = field.strip_prefix("t:")?.splitn(3, ':');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

#[derive(Debug, Clone, PartialEq)]
pub enum TileOp {
    /// Add to an integer (counts, micro-unit sums).
    Incr { field: String, delta: i64 },
    /// Keep the smaller number (`−0.0` is below `0.0`); stored as [`f64_repr`].
    Min { field: String, value: f64 },
    /// Keep the larger number (`0.0` is above `−0.0`).
    Max { field: String, value: f64 },
    /// Merge `(event_time, key)` items into the `k` most recent distinct keys (ties: greater
    /// value first under `order`).
    LastN { field: String, k: u16, order: TieOrder, items: Vec<(i64, String)> },
    /// Add a non-negative decimal integer of any length (the square sums of
    /// [`super::moments`]).
    AddDecimal { field: String, delta: String },
    /// Merge `(event_time, key)` items into the `k` earliest distinct keys (a key keeps its
    /// earliest time; ties: greater value first under `order`).
    FirstN { field: String, k: u16, order: TieOrder, items: Vec<(i64, String)> },
    /// Add counts to DDSketch buckets (`(key, count)`, keys ascending; see [`super::quantile`]).
    Buckets { field: String, counts: Vec<(i64, i64)> },
    /// Register-wise max into an HLL sketch.
    Hll { field: String, registers: Vec<(u16, u8)> },
    /// Latest value of a plain feature (JSON text): kept if its event time is newer (ties: the
    /// greater value under `order`).
    Latest { field: String, event_time: i64, order: TieOrder, value: String },
}

impl TileOp {
    pub fn field(&self) -> &str {
        match self {
            TileOp::Incr { field, .. }
            | TileOp::Min { field, .. }
            | TileOp::Max { field, .. }
            | TileOp::LastN { field, .. }
            | TileOp::AddDecimal { field, .. }
            | TileOp::FirstN { field, .. }
            | TileOp::Buckets { field, .. }
            | TileOp::Hll { field, .. }
            | TileOp::Latest { field, .. } => field,
        }
    }
}

/// All ops of one batch for one entity.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntityOps {
    pub entity: String,
    pub ops: Vec<TileOp>,
}

/// Merge `(time, key)` items into a most-recent-first list of at most `k` distinct keys
/// (distinct by key text; a key keeps its latest time; equal times put the greater value first
/// under `order`). Used by every store and by the fold, so all paths agree.
pub fn merge_last_n(existing: &mut Vec<(i64, String)>, items: &[(i64, String)], k: usize, order: TieOrder) {
    merge_distinct(existing, items, k, order, Recency::Latest);
}

/// [`merge_last_n`] or [`merge_first_n`], as one type.
pub type MergeList = fn(&mut Vec<(i64, String)>, &[(i64, String)], usize, TieOrder);

/// [`merge_last_n`]'s mirror for `first_n`: the `k` earliest distinct keys, earliest first (a key
/// keeps its earliest time; equal times put the greater value first under `order`).
pub fn merge_first_n(existing: &mut Vec<(i64, String)>, items: &[(i64, String)], k: usize, order: TieOrder) {
    merge_distinct(existing, items, k, order, Recency::Earliest);
}

/// Which end of time a distinct-values list keeps.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Recency {
    Latest,
    Earliest,
}

fn merge_distinct(
    existing: &mut Vec<(i64, String)>,
    items: &[(i64, String)],
    k: usize,
    order: TieOrder,
    keep: Recency,
) {
    for (t, v) in items {
        match existing.iter_mut().find(|(_, ev)| ev == v) {
            Some(e) if keep == Recency::Latest => e.0 = e.0.max(*t),
            Some(e) => e.0 = e.0.min(*t),
            None => existing.push((*t, v.clone())),
        }
    }
    existing.sort_by(|a, b| {
        let by_time = match keep {
            Recency::Latest => b.0.cmp(&a.0),
            Recency::Earliest => a.0.cmp(&b.0),
        };
        by_time.then_with(|| cmp_keys(order, &b.1, &a.1))
    });
    existing.truncate(k);
}

/// `Latest` resolution: whether `(t, v)` replaces `(old_t, old_v)` (values as JSON text).
pub fn latest_wins(order: TieOrder, t: i64, v: &str, old_t: i64, old_v: &str) -> bool {
    t > old_t || (t == old_t && cmp_json(order, v, old_v).is_gt())
}

/// Shortest decimal that parses back to exactly `x` (Rust's `Display` for f64 guarantees this).
pub fn f64_repr(x: f64) -> String {
    format!("{x:?}")
}
