//! A stream view's circuit-breaker settings (`breaker_trip_after`, `breaker_cooldown`), which the
//! pipeline's breaker ([`crate::pipeline::breaker`]) runs with.

use std::time::Duration;

/// When a view's transform counts as broken, and how long it pauses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failing batches that trip the breaker.
    pub trip_after: u32,
    /// A batch fails when at least this share of its events failed.
    pub failure_ratio: f64,
    /// First pause; doubles on each consecutive trip up to `max_cooldown`.
    pub cooldown: Duration,
    pub max_cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            trip_after: 3,
            failure_ratio: 0.9,
            cooldown: Duration::from_secs(5),
            max_cooldown: Duration::from_secs(60),
        }
    }
}
