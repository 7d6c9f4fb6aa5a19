//! A pool of workers (live instances) for one transform, capped at `max` live at once: a call
//! that finds none idle creates one if under the cap, else waits for one to be returned. The cap
//! is a tenant quota (`max_instances`), so one tenant's load cannot take every instance slot.

use parking_lot::{Condvar, Mutex};

pub struct Pool<W> {
    state: Mutex<State<W>>,
    returned: Condvar,
    max: usize,
}

struct State<W> {
    idle: Vec<W>,
    live: usize,
}

impl<W> Pool<W> {
    pub fn new(max: usize) -> Self {
        Self { state: Mutex::new(State { idle: Vec::new(), live: 0 }), returned: Condvar::new(), max: max.max(1) }
    }

    /// Take an idle worker, or make one with `create` (under the cap), or wait. Blocking: call
    /// from a blocking-capable context.
    pub fn take<E>(&self, create: impl FnOnce() -> Result<W, E>) -> Result<W, E> {
        let mut s = self.state.lock();
        loop {
            if let Some(w) = s.idle.pop() {
                return Ok(w);
            }
            if s.live < self.max {
                s.live += 1;
                drop(s);
                return create().inspect_err(|_| self.state.lock().live -= 1);
            }
            self.returned.wait(&mut s);
        }
    }

    /// Return a worker for reuse.
    pub fn put(&self, w: W) {
        self.state.lock().idle.push(w);
        self.returned.notify_one();
    }

    /// Workers currently alive (idle or in use).
    pub fn live(&self) -> usize {
        self.state.lock().live
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn caps_live_workers_and_waits_for_a_returned_one() {
        let pool = Arc::new(Pool::new(2));
        let a: u32 = pool.take(|| Ok::<_, ()>(1)).unwrap();
        let b: u32 = pool.take(|| Ok::<_, ()>(2)).unwrap();
        assert_eq!(pool.live(), 2);
        let p = pool.clone();
        let waiter = std::thread::spawn(move || p.take(|| Ok::<_, ()>(99)).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(50));
        pool.put(a);
        assert_eq!(waiter.join().unwrap(), 1, "the waiter got the returned worker, not a new one");
        assert_eq!(pool.live(), 2);
        pool.put(b);
        assert!(pool.take(|| Err::<u32, _>("no")).is_ok());
    }
}
