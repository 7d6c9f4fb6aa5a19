//! Per-thread CPU time, for budgets that host load must not eat into: a guest call runs on one
//! thread from start to end, so the thread's CPU clock counts only its own work, whereas wall
//! time also counts the time other threads (and tenants) held the core.

use std::time::Duration;

/// CPU time consumed by the calling thread so far.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the struct we pass; CLOCK_THREAD_CPUTIME_ID always exists
    // on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

thread_local! {
    /// The thread CPU time at which the current request's budget ends (see [`RequestBudget`]).
    static REQUEST_END: std::cell::Cell<Option<Duration>> = const { std::cell::Cell::new(None) };
}

/// A budget for everything one request runs on this thread (e.g. every batch of an inline
/// training-data job): while it is entered, each [`CpuBudget`] started on the thread is cut to
/// what is left of it, so the request stops early instead of paying one batch budget per batch.
pub struct RequestBudget {
    previous: Option<Duration>,
}

impl RequestBudget {
    /// Enter a budget of `budget` CPU time from now, until the guard is dropped.
    pub fn enter(budget: Duration) -> Self {
        let end = thread_cpu_time() + budget;
        let previous = REQUEST_END.with(|r| r.replace(Some(end)));
        Self { previous }
    }
}

impl Drop for RequestBudget {
    fn drop(&mut self) {
        REQUEST_END.with(|r| r.set(self.previous));
    }
}

/// A CPU budget measured on the calling thread from its creation.
#[derive(Debug, Clone, Copy)]
pub struct CpuBudget {
    start: Duration,
    budget: Duration,
}

impl CpuBudget {
    /// Start spending `budget` of this thread's CPU time (less if the request's
    /// [`RequestBudget`] has less left).
    pub fn start(budget: Duration) -> Self {
        let start = thread_cpu_time();
        let left = REQUEST_END.with(|r| r.get()).map(|end| end.saturating_sub(start));
        Self { start, budget: left.map_or(budget, |l| l.min(budget)) }
    }

    /// CPU time spent since the start.
    pub fn used(&self) -> Duration {
        thread_cpu_time().saturating_sub(self.start)
    }

    /// Whether the budget is spent.
    pub fn spent(&self) -> bool {
        self.used() >= self.budget
    }

    /// The budget.
    pub fn budget(&self) -> Duration {
        self.budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_this_threads_work_not_sleep() {
        let b = CpuBudget::start(Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!b.spent(), "sleeping costs no CPU");
        let mut x = 0u64;
        while !b.spent() {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(b.used() >= Duration::from_millis(20));
    }

    #[test]
    fn a_request_budget_cuts_every_batch_budget_started_under_it() {
        let r = RequestBudget::enter(Duration::from_millis(10));
        let b = CpuBudget::start(Duration::from_secs(5));
        assert!(b.budget() <= Duration::from_millis(10));
        while !b.spent() {}
        assert!(CpuBudget::start(Duration::from_secs(5)).spent(), "nothing is left for the next batch");
        drop(r);
        assert_eq!(CpuBudget::start(Duration::from_secs(5)).budget(), Duration::from_secs(5));
    }
}
