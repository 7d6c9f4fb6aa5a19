//! A tenant's request rate limit on this node: a token bucket refilled continuously
//! (burst = one second's worth). Lock-free on the hot path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub struct RateLimiter {
    /// Tokens per second (0 = unlimited).
    rate: u64,
    start: Instant,
    /// Scaled "theoretical arrival time" in microseconds (GCRA).
    tat_us: AtomicU64,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> Self {
        Self { rate: u64::from(per_second), start: Instant::now(), tat_us: AtomicU64::new(0) }
    }

    /// Take one token; `Err(retry_after_secs)` when over the limit.
    pub fn check(&self) -> Result<(), u64> {
        if self.rate == 0 {
            return Ok(());
        }
        let interval = 1_000_000 / self.rate.max(1);
        let burst = 1_000_000; // one second of tokens
        let now = self.start.elapsed().as_micros() as u64;
        let mut tat = self.tat_us.load(Ordering::Relaxed);
        loop {
            let base = tat.max(now);
            if base + interval > now + burst {
                return Err((base + interval - now - burst).div_ceil(1_000_000).max(1));
            }
            match self.tat_us.compare_exchange_weak(tat, base + interval, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(t) => tat = t,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_of_one_second_then_refuses() {
        let r = RateLimiter::new(100);
        let ok = (0..150).filter(|_| r.check().is_ok()).count();
        assert!((100..=101).contains(&ok), "{ok}");
        assert_eq!(r.check(), Err(1));
        assert!(RateLimiter::new(0).check().is_ok());
    }
}
