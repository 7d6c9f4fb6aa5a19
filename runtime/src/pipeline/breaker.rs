//! The per-view circuit breaker: a transform that fails (almost) every event of several batches
//! in a row is broken, not the data. The view pauses — only that view: its source stops
//! acknowledging (Kafka: no commit, no dead letters; HTTP push: 503 with `Retry-After`) — and
//! retries the same batch after a cooldown that doubles up to a cap. Nothing is lost: a paused
//! batch is retried, not dropped. `wafer_view_paused{view}` and logs say so.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::view::BreakerConfig;

#[derive(Debug)]
struct State {
    consecutive: u32,
    open_until: Option<Instant>,
    next_cooldown: Duration,
}

#[derive(Debug)]
pub struct Breaker {
    cfg: BreakerConfig,
    state: Mutex<State>,
}

/// What a batch outcome did to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on: acknowledge the batch.
    Pass,
    /// The breaker is (re)opened: don't acknowledge; retry this batch after the pause.
    Tripped { pause: Duration },
    /// A paused view's trial batch succeeded: the breaker closed.
    Closed,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig) -> Self {
        Self { state: Mutex::new(State { consecutive: 0, open_until: None, next_cooldown: cfg.cooldown }), cfg }
    }

    /// Until when the view is paused, if it is.
    pub fn paused_until(&self) -> Option<Instant> {
        self.state.lock().open_until.filter(|t| *t > Instant::now())
    }

    /// Record a batch of `events` of which `failures` failed.
    pub fn record(&self, events: usize, failures: usize) -> Verdict {
        let mut s = self.state.lock();
        let failing = events > 0 && failures as f64 >= self.cfg.failure_ratio * events as f64;
        if !failing {
            s.consecutive = 0;
            s.next_cooldown = self.cfg.cooldown;
            return if s.open_until.take().is_some() { Verdict::Closed } else { Verdict::Pass };
        }
        s.consecutive += 1;
        if s.consecutive < self.cfg.trip_after {
            return Verdict::Pass;
        }
        let pause = s.next_cooldown;
        s.open_until = Some(Instant::now() + pause);
        s.next_cooldown = (pause * 2).min(self.cfg.max_cooldown);
        Verdict::Tripped { pause }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_after_consecutive_failing_batches_and_backs_off() {
        let b = Breaker::new(BreakerConfig {
            cooldown: Duration::from_millis(10),
            max_cooldown: Duration::from_millis(25),
            ..BreakerConfig::default()
        });
        assert_eq!(b.record(10, 10), Verdict::Pass);
        assert_eq!(b.record(10, 9), Verdict::Pass);
        assert_eq!(b.record(10, 10), Verdict::Tripped { pause: Duration::from_millis(10) });
        assert!(b.paused_until().is_some());
        assert_eq!(b.record(10, 10), Verdict::Tripped { pause: Duration::from_millis(20) });
        assert_eq!(b.record(10, 10), Verdict::Tripped { pause: Duration::from_millis(25) });
        assert_eq!(b.record(10, 1), Verdict::Closed);
        assert!(b.paused_until().is_none());
        // A healthy batch in between resets the count.
        assert_eq!(b.record(10, 10), Verdict::Pass);
        assert_eq!(b.record(10, 0), Verdict::Pass);
        assert_eq!(b.record(10, 10), Verdict::Pass);
        assert_eq!(b.record(10, 10), Verdict::Pass);
        assert_eq!(b.record(0, 0), Verdict::Pass);
    }
}
