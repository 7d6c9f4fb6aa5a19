//! Non-negative integers of any length, stored as decimal text, and their exact ratios.
//!
//! Some tile components are sums that outgrow `i64` (square sums for variances, decay-weighted
//! sums): the fold adds a batch's terms in `u128` ([`DecimalSum`]), the stores add the decimal
//! texts — the Redis write script digit group by digit group (its `q` op), the embedded store
//! with [`add_decimal`] — and readers divide them exactly ([`ratio_to_f64`]).

use num_bigint::BigUint;
use num_traits::{ToPrimitive, Zero};

/// A batch's sum of non-negative integers (squares, decay-weighted values): a `u128` running
/// sum, and earlier `u128` partial sums set aside when it would overflow (so adding a row never
/// allocates in the common case).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecimalSum {
    running: u128,
    full: Vec<u128>,
}

impl DecimalSum {
    /// One value.
    pub fn of(v: u128) -> Self {
        Self { running: v, full: Vec::new() }
    }

    /// The square of one micro-unit value.
    pub fn square_of(m: i64) -> Self {
        Self::of(square(m))
    }

    /// Add one value.
    pub fn push(&mut self, v: u128) {
        match self.running.checked_add(v) {
            Some(sum) => self.running = sum,
            None => {
                self.full.push(self.running);
                self.running = v;
            }
        }
    }

    pub fn add(&mut self, other: &DecimalSum) {
        for part in other.full.iter().chain(std::iter::once(&other.running)) {
            self.push(*part);
        }
    }

    /// The sum as a decimal integer (what the stores add).
    pub fn to_decimal(&self) -> String {
        if self.full.is_empty() {
            return self.running.to_string();
        }
        let total = self.full.iter().fold(BigUint::from(self.running), |acc, p| acc + BigUint::from(*p));
        total.to_string()
    }
}

fn square(m: i64) -> u128 {
    let a = u128::from(m.unsigned_abs());
    a * a
}

/// A stored decimal integer; an unreadable field counts as 0.
pub fn parse_decimal(s: &str) -> BigUint {
    s.parse().unwrap_or_default()
}

/// `a + b` for two stored decimal integers (the embedded store's twin of the script's `q` op).
pub fn add_decimal(a: Option<&str>, b: &str) -> String {
    (a.map(parse_decimal).unwrap_or_default() + parse_decimal(b)).to_string()
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
pub fn scale_by_pow2(mut x: f64, mut e: i64) -> f64 {
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
    fn square_sums_grow_past_u128_exactly() {
        let big = 9_000_000_000_000_000_000i64; // 9·10¹⁸ micro-units, |x| = 9·10¹²
        let mut q = DecimalSum::default();
        for _ in 0..10 {
            q.add(&DecimalSum::square_of(big));
        }
        let want = BigUint::from(big.unsigned_abs()).pow(2u32) * 10u32;
        assert_eq!(q.to_decimal(), want.to_string());
        assert_eq!(add_decimal(Some(&q.to_decimal()), "1"), (want + 1u32).to_string());
        assert_eq!(add_decimal(None, "42"), "42");
    }
}
