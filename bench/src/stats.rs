//! Latency percentiles.

use std::time::Duration;

pub struct Latencies(Vec<u32>);

impl Latencies {
    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }
    pub fn push(&mut self, d: Duration) {
        self.0.push(d.as_micros().min(u128::from(u32::MAX)) as u32);
    }
    pub fn extend(&mut self, o: Latencies) {
        self.0.extend(o.0);
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Percentile in milliseconds.
    pub fn pct(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.sort_unstable();
        let i = ((p / 100.0) * (self.0.len() - 1) as f64).round() as usize;
        f64::from(self.0[i]) / 1000.0
    }
}
