//! `approx_percentile`: a DDSketch (Masson, Rim and Lee, VLDB 2019) with 1% relative error,
//! whose buckets are integer counts, so tiles merge exactly and in any order.
//!
//! A value `x ≠ 0` falls in bucket `i = ⌈ln|x| / ln γ⌉` with `γ = (1 + α)/(1 − α)`, `α = 0.01`;
//! the bucket stands for `±2γⁱ/(γ + 1)`, within `α` of every value in it. A quantile `q` of `n`
//! values is the bucket holding the value of rank `⌊q·(n − 1)⌋` (0-based, ascending): within 1%
//! of that exact value (of its magnitude; `0` exactly when that value is 0).
//!
//! Buckets are computed by the fold (here, in Rust); stores only add counts, so the Redis script
//! needs no logarithms. A tile stores its buckets as one field, `key:count` pairs in ascending
//! key order separated by spaces, where `key = 4i` for positive values, `4i + 1` for negative
//! ones and `2` for zeros; the script and [`add_counts`] write the same bytes. Written by hand
//! rather than with a sketch crate because the store must merge the buckets itself (in Lua),
//! which needs this representation in the open.
//!
//! Size: a tile holds one bucket per distinct `⌈ln|x| / ln γ⌉`, i.e. about 115 per factor of 10
//! spanned by its values (a minute tile of one entity: a handful).

use std::collections::BTreeMap;

/// The relative error.
pub const ALPHA: f64 = 0.01;

fn gamma() -> f64 {
    (1.0 + ALPHA) / (1.0 - ALPHA)
}

/// The bucket key of a finite value.
pub fn bucket_of(x: f64) -> i64 {
    if x == 0.0 {
        return 2;
    }
    let i = (x.abs().ln() / gamma().ln()).ceil() as i64;
    if x > 0.0 { 4 * i } else { 4 * i + 1 }
}

/// The value a bucket stands for.
pub fn value_of(key: i64) -> f64 {
    let g = gamma();
    let magnitude = |i: i64| 2.0 * g.powi(i as i32) / (g + 1.0);
    match key.rem_euclid(4) {
        0 => magnitude(key.div_euclid(4)),
        1 => -magnitude(key.div_euclid(4)),
        _ => 0.0,
    }
}

/// Add a stored bucket list (`key:count …`) into `into`; malformed pairs are skipped.
pub fn decode_into(stored: &str, into: &mut BTreeMap<i64, i64>) {
    for pair in stored.split(' ') {
        let Some((k, c)) = pair.split_once(':') else { continue };
        if let (Ok(k), Ok(c)) = (k.parse::<i64>(), c.parse::<i64>()) {
            *into.entry(k).or_insert(0) += c;
        }
    }
}

/// The stored form of a bucket map.
pub fn encode(buckets: &BTreeMap<i64, i64>) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(buckets.len() * 8);
    for (k, c) in buckets {
        if !out.is_empty() {
            out.push(' ');
        }
        let _ = write!(out, "{k}:{c}");
    }
    out
}

/// `stored` with `counts` added (the embedded store's update; the Redis script's `b` op).
pub fn add_counts(stored: Option<&str>, counts: &[(i64, i64)]) -> String {
    let mut m = BTreeMap::new();
    if let Some(s) = stored {
        decode_into(s, &mut m);
    }
    for (k, c) in counts {
        *m.entry(*k).or_insert(0) += c;
    }
    encode(&m)
}

/// Ascending order of the values buckets stand for: negatives (largest magnitude first), zero,
/// positives.
fn value_order(key: i64) -> (u8, i64) {
    match key.rem_euclid(4) {
        1 => (0, -key.div_euclid(4)),
        0 => (2, key.div_euclid(4)),
        _ => (1, 0),
    }
}

/// The quantile `q` (0..=1) of the merged buckets; `None` when they are empty.
pub fn quantile(buckets: &BTreeMap<i64, i64>, q: f64) -> Option<f64> {
    let n: i64 = buckets.values().sum();
    if n <= 0 {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * (n - 1) as f64).floor() as i64;
    let mut ordered: Vec<(i64, i64)> = buckets.iter().map(|(k, c)| (*k, *c)).collect();
    ordered.sort_by_key(|(k, _)| value_order(*k));
    let mut seen = 0;
    for (k, c) in ordered {
        seen += c;
        if seen > rank {
            return Some(value_of(k));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sketch(xs: &[f64]) -> BTreeMap<i64, i64> {
        let counts: Vec<(i64, i64)> = xs.iter().map(|x| (bucket_of(*x), 1)).collect();
        let mut m = BTreeMap::new();
        decode_into(&add_counts(None, &counts), &mut m);
        m
    }

    #[test]
    fn every_value_is_within_alpha_of_its_bucket() {
        for x in [1e-300, 1e-9, 0.001, 0.5, 1.0, 1.0000001, 3.0, 99.99, 12345.678, 1e15, -7.25, -1e-5] {
            let v = value_of(bucket_of(x));
            assert!((v - x).abs() <= ALPHA * x.abs() * (1.0 + 1e-12), "{x} -> {v}");
        }
        assert_eq!(value_of(bucket_of(0.0)), 0.0);
        assert_eq!(value_of(bucket_of(-0.0)), 0.0);
    }

    #[test]
    fn quantiles_are_within_alpha_of_the_exact_rank() {
        let xs: Vec<f64> = (0..1000).map(|i| ((i * 7919) % 1000) as f64 * 1.37 - 300.0).collect();
        let m = sketch(&xs);
        let mut sorted = xs.clone();
        sorted.sort_by(f64::total_cmp);
        for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let want = sorted[(q * 999.0_f64).floor() as usize];
            let got = quantile(&m, q).unwrap();
            assert!((got - want).abs() <= ALPHA * want.abs() * (1.0 + 1e-12), "q={q}: {got} vs {want}");
        }
        assert_eq!(quantile(&BTreeMap::new(), 0.5), None);
    }

    #[test]
    fn merging_in_any_order_gives_the_same_bytes() {
        let a = add_counts(Some(&add_counts(None, &[(bucket_of(2.0), 1), (bucket_of(-2.0), 3)])), &[(2, 1)]);
        let b = add_counts(Some(&add_counts(None, &[(2, 1), (bucket_of(-2.0), 3)])), &[(bucket_of(2.0), 1)]);
        assert_eq!(a, b);
        assert_eq!(a, "2:1 140:1 141:3");
    }
}
