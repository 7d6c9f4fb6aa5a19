//! Variance and standard deviation from exact integer power sums.
//!
//! A tile keeps, for the values `x` of a column, the count `n`, the sum `S = Σm` and the sum of
//! squares `Q = Σm²` of their micro-unit forms `m = round(x·10⁶)` (the same `m` as `sum`). `n`
//! and `S` are `i64` like every count and sum; `Q` can outgrow any fixed width (a lifetime tile
//! of large amounts), so it is a non-negative **decimal integer of any length**: the fold sums a
//! batch's squares in `u128` ([`SquareSum`]), the Redis write script adds decimal strings digit
//! group by digit group, the embedded store with [`add_decimal`].
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
//! nearest `f64` ([`ratio_to_f64`]): the variance is the correctly rounded variance of the
//! micro-rounded values, and a standard deviation the `f64` square root of that. Values are rounded to 10⁻⁶ as for `sum` (so a column whose values
//! differ below 10⁻⁶ has variance 0), and must be summable (|x| < 9.2·10¹²).

use num_bigint::{BigInt, BigUint};
use num_traits::{ToPrimitive, Zero};

/// A batch's sum of squared micro-units: `u128` partial sums, a new one started when the last
/// would overflow (so adding a row never allocates in the common case).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SquareSum(Vec<u128>);

impl SquareSum {
    /// The square of one micro-unit value.
    pub fn of(m: i64) -> Self {
        Self(vec![square(m)])
    }

    pub fn add(&mut self, other: &SquareSum) {
        for part in &other.0 {
            match self.0.last_mut().and_then(|last| last.checked_add(*part).map(|sum| (last, sum))) {
                Some((last, sum)) => *last = sum,
                None => self.0.push(*part),
            }
        }
    }

    /// The sum as a decimal integer (what the stores add).
    pub fn to_decimal(&self) -> String {
        match self.0.as_slice() {
            [] => "0".into(),
            [one] => one.to_string(),
            parts => parts.iter().fold(BigUint::zero(), |acc, p| acc + BigUint::from(*p)).to_string(),
        }
    }
}

fn square(m: i64) -> u128 {
    let a = u128::from(m.unsigned_abs());
    a * a
}

/// A stored square sum (a decimal integer); an unreadable field counts as 0.
pub fn parse_decimal(s: &str) -> BigUint {
    s.parse().unwrap_or_default()
}

/// `a + b` for two stored decimal integers (the embedded store's update of `Q`).
pub fn add_decimal(a: Option<&str>, b: &str) -> String {
    (a.map(parse_decimal).unwrap_or_default() + parse_decimal(b)).to_string()
}

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

/// `num / den` rounded to the nearest `f64` (ties to even): the quotient is taken to 55–56
/// significant bits with a sticky bit for the remainder, which one `u64 → f64` conversion then
/// rounds correctly.
pub fn ratio_to_f64(num: &BigUint, den: &BigUint) -> f64 {
    if num.is_zero() || den.is_zero() {
        return 0.0;
    }
    // 2^(shift) · num / den lies in [2^54, 2^56).
    let shift = den.bits() as i64 - num.bits() as i64 + 55;
    let (n, d) = if shift >= 0 { (num << shift as u64, den.clone()) } else { (num.clone(), den << (-shift) as u64) };
    let (q, r) = (&n / &d, &n % &d);
    let mut q = q.to_u64().unwrap_or(u64::MAX);
    if !r.is_zero() {
        q |= 1;
    }
    scale_by_pow2(q as f64, -shift)
}

/// `x · 2^e`, exact while the result is a normal number.
fn scale_by_pow2(mut x: f64, mut e: i64) -> f64 {
    while e > 1000 {
        x *= 2f64.powi(1000);
        e -= 1000;
    }
    while e < -1000 {
        x *= 2f64.powi(-1000);
        e += 1000;
    }
    x * 2f64.powi(e as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var_of(kind: Variance, xs: &[f64]) -> Option<f64> {
        let ms: Vec<i64> = xs.iter().map(|x| (x * 1e6).round() as i64).collect();
        let mut q = SquareSum::default();
        for m in &ms {
            q.add(&SquareSum::of(*m));
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
    fn ratios_round_to_the_nearest_double() {
        let r = |a: u64, b: u64| ratio_to_f64(&BigUint::from(a), &BigUint::from(b));
        assert_eq!(r(1, 3), 1.0 / 3.0);
        assert_eq!(r(2, 3), 2.0 / 3.0);
        assert_eq!(r(10, 4), 2.5);
        assert_eq!(r(u64::MAX, 1), u64::MAX as f64);
        assert_eq!(r(1, 1 << 60), 2f64.powi(-60));
        // (2^53 + 1) / 1 is a tie between 2^53 and 2^53 + 2: to even.
        assert_eq!(r((1 << 53) + 1, 1), 2f64.powi(53));
        // Just above the tie rounds up.
        let above = ratio_to_f64(&(BigUint::from((1u64 << 53) + 1) * 1000u32 + 1u32), &BigUint::from(1000u32));
        assert_eq!(above, 2f64.powi(53) + 2.0);
        let mut rng = 0x1234_5678_9abc_def0u64;
        for _ in 0..2000 {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let (a, b) = ((rng >> 11) | 1, (rng.rotate_left(17) >> 20) | 1);
            assert_eq!(r(a, b), a as f64 / b as f64, "{a}/{b}");
        }
    }

    #[test]
    fn small_counts_and_equal_values() {
        assert_eq!(var_of(Variance::Population, &[]), None);
        assert_eq!(var_of(Variance::Sample, &[3.0]), None);
        assert_eq!(var_of(Variance::Population, &[3.0]), Some(0.0));
        assert_eq!(var_of(Variance::Sample, &[2.5, 2.5, 2.5]), Some(0.0));
    }

    #[test]
    fn square_sums_grow_past_u128_exactly() {
        let big = 9_000_000_000_000_000_000i64; // 9·10¹⁸ micro-units, |x| = 9·10¹²
        let mut q = SquareSum::default();
        for _ in 0..10 {
            q.add(&SquareSum::of(big));
        }
        let want = BigUint::from(big.unsigned_abs()).pow(2u32) * 10u32;
        assert_eq!(q.to_decimal(), want.to_string());
        assert_eq!(add_decimal(Some(&q.to_decimal()), "1"), (want + 1u32).to_string());
        assert_eq!(add_decimal(None, "42"), "42");
    }
}
