//! Variance and standard deviation from exact integer power sums.
//!
//! A tile keeps, for the values `x` of a column, the count `n`, the sum `S = Σm` and the sum of
//! squares `Q = Σm²` of their micro-unit forms `m = round(x·10⁶)` (the same `m` as `sum`). `n`
//! and `S` are `i64` like every count and sum; `Q` can outgrow any fixed width (a lifetime tile
//! of large amounts), so it is a non-negative **decimal integer of any length**
//! ([`super::decimal`]).
//!
//! Because every component is an exact integer, tiles merge in any order to the same state on
//! every path (no float merge as in Welford/Chan, whose bits depend on the merge order): online,
//! backfilled and training-data values are the same bits. At read time
//!
//! ```text
//!     var_pop  = (n·Q − S²) / (n²·10¹²)        var_samp = (n·Q − S²) / (n·(n − 1)·10¹²)
//! ```
//!
//! computed exactly (big integers: no cancellation, whatever the mean) and rounded once to the
//! nearest `f64` ([`super::decimal::ratio_to_f64`]): the variance is the correctly rounded
//! variance of the micro-rounded values, and a standard deviation the `f64` square root of
//! that. Values are rounded to 10⁻⁶ as for `sum` (so a column whose values differ below 10⁻⁶
//! has variance 0), and must be summable (|x| < 9.2·10¹²).

use num_bigint::{BigInt, BigUint};

use super::decimal::ratio_to_f64;

/// Which variance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variance {
    /// Divide by `n` (null for no values).
    Population,
    /// Divide by `n − 1` (null below two values).
    Sample,
}

/// The variance of the values with count `n`, micro-unit sum `s` and square sum `q`.
pub fn variance(kind: Variance, n: i64, s: i128, q: &BigUint) -> Option<f64> {
    let n_big = BigUint::from(n.unsigned_abs());
    let divisor = match kind {
        Variance::Population if n >= 1 => &n_big * &n_big,
        Variance::Sample if n >= 2 => &n_big * BigUint::from((n - 1).unsigned_abs()),
        _ => return None,
    };
    let numerator = BigInt::from(&n_big * q) - BigInt::from(s) * BigInt::from(s);
    // n·Q ≥ S² always holds (Cauchy–Schwarz); 0 means every value is the same.
    let numerator = numerator.to_biguint().unwrap_or_default();
    Some(ratio_to_f64(&numerator, &(divisor * BigUint::from(1_000_000_000_000u64))))
}

#[cfg(test)]
mod tests {
    use super::super::decimal::{DecimalSum, parse_decimal};
    use super::*;

    fn var_of(kind: Variance, xs: &[f64]) -> Option<f64> {
        let ms: Vec<i64> = xs.iter().map(|x| (x * 1e6).round() as i64).collect();
        let mut q = DecimalSum::default();
        for m in &ms {
            q.add(&DecimalSum::square_of(*m));
        }
        let s: i128 = ms.iter().map(|m| i128::from(*m)).sum();
        variance(kind, ms.len() as i64, s, &parse_decimal(&q.to_decimal()))
    }

    #[test]
    fn matches_a_two_pass_computation() {
        let xs = [12.5, -3.25, 1000.0, 0.000001, 77.77, 77.77, -0.5];
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let ss: f64 = xs.iter().map(|x| (x - mean) * (x - mean)).sum();
        let pop = var_of(Variance::Population, &xs).unwrap();
        let samp = var_of(Variance::Sample, &xs).unwrap();
        assert!((pop - ss / 7.0).abs() <= 1e-12 * pop, "{pop} vs {}", ss / 7.0);
        assert!((samp - ss / 6.0).abs() <= 1e-12 * samp, "{samp} vs {}", ss / 6.0);
    }

    #[test]
    fn a_large_mean_does_not_cancel_the_variance() {
        // Naive Σx²/n − mean² in f64 loses every digit here; the exact numerator keeps them.
        let xs = [1e9 + 0.25, 1e9 + 0.75, 1e9 + 0.5];
        let v = var_of(Variance::Population, &xs).unwrap();
        assert!((v - 0.041666666666666664).abs() < 1e-15, "{v}");
    }

    #[test]
    fn small_counts_and_equal_values() {
        assert_eq!(var_of(Variance::Population, &[]), None);
        assert_eq!(var_of(Variance::Sample, &[3.0]), None);
        assert_eq!(var_of(Variance::Population, &[3.0]), Some(0.0));
        assert_eq!(var_of(Variance::Sample, &[2.5, 2.5, 2.5]), Some(0.0));
    }
}
