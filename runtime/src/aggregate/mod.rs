//! Time-window aggregations, computed by the host from the rows transforms emit.
//!
//! **Where tiles are merged**: rows are folded into per-batch tile deltas in [`fold`]; the store
//! applies them atomically as [`ops::TileOp`]s (Redis: in one Lua script; embedded: under a lock);
//! reads merge the tiles a window covers in [`read`].
//!
//! # Window semantics (identical in every code path)
//!
//! Each window `W` has a tile size `g(W)`: 1 minute for `W ≤ 2h`, 1 hour for `W ≤ 2d`, 1 day
//! beyond. A window `W` read at time `t` (ms) covers the rows whose event time `e` satisfies
//!
//! ```text
//!     floor(t / g)·g + g − W  ≤  e  ≤  t
//! ```
//!
//! i.e. the tile containing `t` (up to `t`) plus the `W/g − 1` complete tiles before it: between
//! `W − g` and `W` of history. `lifetime` covers every row with `e ≤ t`. A window with an offset
//! `O` (a whole number of tiles, e.g. `7d_offset_1d`) is the same run of tiles shifted back by
//! `O`, complete tiles only: `end − W ≤ e < end` with `end = floor(t / g)·g + g − O`. Rows are placed by event
//! time, so out-of-order arrival does not change any result. `W` must be a whole number of
//! `g(W)`. Reading at `t` includes every row of the current tile that has been applied; at the
//! head of the stream (`t` = now) that is exactly the rows with `e ≤ t`.
//!
//! # Exactness
//!
//! Every partial aggregate merges associatively and commutatively, so results do not depend on
//! batching or arrival order: counts are integers, sums are accumulated as integer micro-units
//! (`round(x · 10⁶)`, i64: exact for values with ≤ 6 decimals, |sum| < 9.2·10¹²), min/max are
//! exact (`−0.0` below `0.0`), `last_n` keeps the `k` most recent distinct values (ties: greater
//! value first), `first_n` the `k` earliest distinct values (same ties), `approx_count_distinct` is a
//! HyperLogLog (p = 12, xxh3-64 hashes, register-wise max), variances and standard deviations
//! come from exact integer power sums ([`moments`]) and `approx_percentile` from a DDSketch of
//! integer bucket counts ([`quantile`], 1% relative error), decayed counts and sums from
//! exact sums of fixed-point weighted terms ([`decay`]) — so these too merge to the same bits in
//! any order. The order that min/max and ties use is one rule in [`order`]: numbers by value, text
//! by bytes, anything else by the bytes of its JSON text.

pub mod decay;
pub mod decimal;
pub mod fold;
pub mod hll;
pub mod moments;
pub mod ops;
pub mod order;
pub mod quantile;
pub mod read;
pub mod spec;
pub mod window;

pub use spec::{AggFunction, AggSpec, Window};
