//! Time-decayed counts and sums: every row weighs `2^(−(t − e)/H)` at read time `t`, for a
//! half-life `H`, so a row of one half-life ago counts half.
//!
//! ```text
//!     decayed_sum_H(W) at t   = Σ x · 2^(−(t − e)/H)     over the rows of window W
//!     decayed_count_H(W) at t = Σ 2^(−(t − e)/H)
//! ```
//!
//! **Exact tiles.** A tile `[s, s + g)` stores integer sums of the rows' micro-units `m` (`10⁶`
//! for a count) times a weight relative to the tile's end, quantized to 48 bits:
//! `w(e) = round(2^(−(s + g − e)/H) · 2⁴⁸)`. Positive and negative terms are kept apart
//! (`kp`/`kn` for sums, `kc` for counts), as non-negative decimal integers
//! ([`super::decimal`]), so tiles merge exactly, in any order, on every path. A read rescales
//! each tile by `2^((s + g − t)/H)` and adds the tiles oldest first.
//!
//! **The same bits everywhere.** Weights and read factors use [`exp2`] here, built from IEEE
//! `+ − × ÷` only (each correctly rounded), not the platform's `libm`, so every machine computes
//! the same weights and a node and a training job serve the same bits.
//!
//! **Precision.** A tile spans at most [`MAX_TILE_HALF_LIVES`] half-lives (checked when a view is
//! built), so every weight is at least `2³²` and quantizing it costs at most `2⁻³³` of the row's
//! weight; the read adds a relative error of a few ulp per tile. Only sliding windows decay
//! (a lifetime tile has no end to weigh against).

use num_bigint::{BigInt, BigUint};

use super::decimal::{ratio_to_f64, scale_by_pow2};

/// The widest tile a decayed function accepts, in half-lives (`g ≤ 16·H`).
pub const MAX_TILE_HALF_LIVES: i64 = 16;

/// Weights are fixed-point with this many fractional bits.
const WEIGHT_BITS: i32 = 48;

/// `2^x`, computed the same on every machine: `2^⌊x⌋` exactly, times `e^(f·ln 2)` for the
/// fraction `f ∈ [0, 1)` by its Taylor series (to below one ulp), using correctly rounded
/// operations only.
pub fn exp2(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < -1100.0 {
        return 0.0;
    }
    if x > 1100.0 {
        return f64::INFINITY;
    }
    let whole = x.floor();
    let y = (x - whole) * std::f64::consts::LN_2;
    let mut term = 1.0;
    let mut sum = 1.0;
    for i in 1..=24 {
        term = term * y / f64::from(i);
        sum += term;
    }
    scale_by_pow2(sum, whole as i64)
}

/// The fixed-point weight of a row at `e` in the tile `[start, start + g)` for half-life `h`.
pub fn weight(e: i64, start: i64, g: i64, h: i64) -> u64 {
    let age = (start + g - e) as f64 / h as f64;
    (exp2(-age) * exp2(f64::from(WEIGHT_BITS))).round() as u64
}

/// A row's weighted term: `|m| · w` and whether it is negative.
pub fn term(m: i64, e: i64, start: i64, g: i64, h: i64) -> (u128, bool) {
    (u128::from(m.unsigned_abs()) * u128::from(weight(e, start, g, h)), m < 0)
}

/// The decayed value at `t` of tiles `((size, start), positive, negative)`, oldest first.
pub fn read(tiles: &[((i64, i64), BigUint, BigUint)], h: i64, t: i64) -> f64 {
    let unit = BigUint::from(1_000_000u64) << WEIGHT_BITS as u64;
    let mut total = 0.0;
    for ((g, start), pos, neg) in tiles {
        let net = BigInt::from(pos.clone()) - BigInt::from(neg.clone());
        let magnitude = ratio_to_f64(net.magnitude(), &unit);
        let signed = if net.sign() == num_bigint::Sign::Minus { -magnitude } else { magnitude };
        total += signed * exp2((start + g - t) as f64 / h as f64);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp2_is_within_an_ulp_or_two_of_the_platform() {
        for i in -4000..4000 {
            let x = f64::from(i) * 0.01237;
            let (ours, libm) = (exp2(x), x.exp2());
            assert!((ours - libm).abs() <= 4.0 * f64::EPSILON * libm, "{x}: {ours} vs {libm}");
        }
        assert_eq!(exp2(0.0), 1.0);
        assert_eq!(exp2(10.0), 1024.0);
        assert_eq!(exp2(-1.0), 0.5);
    }

    #[test]
    fn weighted_tiles_read_as_the_decayed_sum() {
        let (g, h) = (60_000, 30_000);
        let rows = [(1_000i64, 2.5f64), (59_999, -1.25), (61_000, 4.0), (119_000, 0.5)];
        let mut tiles: Vec<((i64, i64), BigUint, BigUint)> = Vec::new();
        for (e, x) in rows {
            let start = e.div_euclid(g) * g;
            let (mag, negative) = term((x * 1e6).round() as i64, e, start, g, h);
            if tiles.last().map(|t| t.0) != Some((g, start)) {
                tiles.push(((g, start), BigUint::default(), BigUint::default()));
            }
            let tile = tiles.last_mut().unwrap();
            if negative { tile.2 += mag } else { tile.1 += mag }
        }
        let t = 119_500;
        let want: f64 = rows.iter().map(|(e, x)| x * 2f64.powf(-((t - e) as f64) / h as f64)).sum();
        let got = read(&tiles, h, t);
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
}
