//! A pool of workers (live instances) for one transform, capped at `max` live at once: a call
//! that finds none idle creates one if under the cap, else waits for one to be returned. The cap
//! is a tenant quota (`max_instances`), so one tenant's load cannot take every instance slot.
//!
//! [`ComputeShare`] caps a whole tenant's concurrent transform calls on a node, across all its
//! views (quota `compute_slots`): a tenant flooding its worst guests occupies at most that many
//! cores, and the rest of the node stays with the other tenants.

use parking_lot::{Condvar, Mutex};

/// A capped pool of workers for blocking callers (see the module docs).
pub struct Pool<W> {
    state: Mutex<State<W>>,
    returned: Condvar,
    max: usize,
}

struct State<W> {
    idle: Vec<W>,
    live: usize,
}

/// A worker taken from a [`Pool`]. Dropping it returns the worker for reuse; if the thread is
/// unwinding from a panic, the worker (whose state the panic may have left half-updated) is
/// discarded instead and its slot freed, so a panicking call never leaks a slot of the cap.
pub struct Taken<'a, W> {
    pool: &'a Pool<W>,
    worker: Option<W>,
}

impl<W> Pool<W> {
    /// A pool of at most `max` live workers (at least 1).
    pub fn new(max: usize) -> Self {
        Self { state: Mutex::new(State { idle: Vec::new(), live: 0 }), returned: Condvar::new(), max: max.max(1) }
    }

    /// Take an idle worker, or make one with `create` (under the cap), or wait. Blocking: call
    /// from a blocking-capable context. The worker goes back to the pool when the guard drops.
    pub fn take<E>(&self, create: impl FnOnce() -> Result<W, E>) -> Result<Taken<'_, W>, E> {
        let mut s = self.state.lock();
        loop {
            if let Some(w) = s.idle.pop() {
                return Ok(Taken { pool: self, worker: Some(w) });
            }
            if s.live < self.max {
                s.live += 1;
                drop(s);
                // The slot is reserved before `create` runs; give it back if `create` fails or
                // panics.
                let reserved = Reserved(self);
                let w = create()?;
                std::mem::forget(reserved);
                return Ok(Taken { pool: self, worker: Some(w) });
            }
            self.returned.wait(&mut s);
        }
    }

    /// Free one live slot (a worker discarded or never made) and wake a waiter.
    fn release(&self) {
        self.state.lock().live -= 1;
        self.returned.notify_one();
    }

    /// Workers currently alive (idle or in use).
    pub fn live(&self) -> usize {
        self.state.lock().live
    }
}

/// A live slot reserved while a worker is being made: released on drop unless forgotten.
struct Reserved<'a, W>(&'a Pool<W>);

impl<W> Drop for Reserved<'_, W> {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl<W> std::ops::Deref for Taken<'_, W> {
    type Target = W;
    fn deref(&self) -> &W {
        self.worker.as_ref().expect("a taken worker is held until dropped")
    }
}

impl<W> std::ops::DerefMut for Taken<'_, W> {
    fn deref_mut(&mut self) -> &mut W {
        self.worker.as_mut().expect("a taken worker is held until dropped")
    }
}

impl<W> Drop for Taken<'_, W> {
    fn drop(&mut self) {
        let Some(w) = self.worker.take() else { return };
        if std::thread::panicking() {
            drop(w);
            self.pool.release();
        } else {
            self.pool.state.lock().idle.push(w);
            self.pool.returned.notify_one();
        }
    }
}

/// [`Pool`] for async callers: a call that finds the cap reached awaits a returned worker
/// instead of blocking its thread. Taking and returning an idle worker is one uncontended
/// semaphore permit and one short lock.
pub struct AsyncPool<W> {
    idle: Mutex<Vec<W>>,
    permits: tokio::sync::Semaphore,
    live: std::sync::atomic::AtomicUsize,
}

/// A worker on loan from an [`AsyncPool`]; returned to it on drop.
pub struct Loan<'a, W> {
    pool: &'a AsyncPool<W>,
    worker: Option<W>,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl<W> AsyncPool<W> {
    pub fn new(max: usize) -> Self {
        Self { idle: Mutex::new(Vec::new()), permits: tokio::sync::Semaphore::new(max.max(1)), live: 0.into() }
    }

    /// Borrow an idle worker, or make one with `create` (under the cap), or wait for one.
    pub async fn take<E>(&self, create: impl FnOnce() -> Result<W, E>) -> Result<Loan<'_, W>, E> {
        use std::sync::atomic::Ordering;
        // The semaphore is never closed, so acquiring only waits.
        let permit = match self.permits.acquire().await {
            Ok(p) => p,
            Err(_) => unreachable!("the pool's semaphore is never closed"),
        };
        let worker = match self.idle.lock().pop() {
            Some(w) => w,
            None => {
                let w = create()?;
                self.live.fetch_add(1, Ordering::Relaxed);
                w
            }
        };
        Ok(Loan { pool: self, worker: Some(worker), _permit: permit })
    }

    /// Workers currently alive (idle or on loan).
    pub fn live(&self) -> usize {
        self.live.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl<W> std::ops::Deref for Loan<'_, W> {
    type Target = W;
    fn deref(&self) -> &W {
        self.worker.as_ref().expect("a loan holds its worker until dropped")
    }
}

impl<W> std::ops::DerefMut for Loan<'_, W> {
    fn deref_mut(&mut self) -> &mut W {
        self.worker.as_mut().expect("a loan holds its worker until dropped")
    }
}

impl<W> Drop for Loan<'_, W> {
    fn drop(&mut self) {
        if let Some(w) = self.worker.take() {
            self.pool.idle.lock().push(w);
        }
    }
}

/// A tenant's share of the node's cores: at most `slots` of its transform calls run at once.
/// Waiting for a slot holds no CPU (async callers await; blocking callers park their thread).
#[derive(Clone)]
pub struct ComputeShare {
    slots: std::sync::Arc<tokio::sync::Semaphore>,
}

/// A running call's slot; released on drop.
pub struct Slot<'a>(#[allow(dead_code)] tokio::sync::SemaphorePermit<'a>);

impl ComputeShare {
    /// A share of `slots` concurrent calls (0 = one per core).
    pub fn new(slots: usize) -> Self {
        let n = if slots == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { slots };
        Self { slots: std::sync::Arc::new(tokio::sync::Semaphore::new(n)) }
    }

    /// No limit (tools, tests, offline jobs).
    pub fn unlimited() -> Self {
        Self { slots: std::sync::Arc::new(tokio::sync::Semaphore::new(tokio::sync::Semaphore::MAX_PERMITS)) }
    }

    /// Wait for a slot (async).
    pub async fn acquire(&self) -> Slot<'_> {
        match self.slots.acquire().await {
            Ok(p) => Slot(p),
            Err(_) => unreachable!("a compute share's semaphore is never closed"),
        }
    }

    /// Wait for a slot, parking this thread (call from a blocking-capable context).
    pub fn acquire_blocking(&self) -> Slot<'_> {
        futures::executor::block_on(self.acquire())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn caps_live_workers_and_waits_for_a_returned_one() {
        let pool = Arc::new(Pool::new(2));
        let a = pool.take(|| Ok::<_, ()>(1u32)).unwrap();
        let b = pool.take(|| Ok::<_, ()>(2u32)).unwrap();
        assert_eq!(pool.live(), 2);
        let p = pool.clone();
        let waiter = std::thread::spawn(move || *p.take(|| Ok::<_, ()>(99)).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(a);
        assert_eq!(waiter.join().unwrap(), 1, "the waiter got the returned worker, not a new one");
        assert_eq!(pool.live(), 2);
        drop(b);
        assert!(pool.take(|| Err::<u32, _>("no")).is_ok());
    }

    #[test]
    fn a_panicking_call_frees_its_slot_and_discards_its_worker() {
        let pool = Arc::new(Pool::new(1));
        let p = pool.clone();
        let r = std::thread::spawn(move || {
            let mut w = p.take(|| Ok::<_, ()>(1u32)).unwrap();
            *w = 7; // half-updated state the panic leaves behind
            panic!("the guest call panicked");
        })
        .join();
        assert!(r.is_err());
        assert_eq!(pool.live(), 0, "the panicked call's slot is free again");
        // With the cap of 1, this would wait forever if the slot had leaked.
        let w = pool.take(|| Ok::<_, ()>(2u32)).unwrap();
        assert_eq!(*w, 2, "the panicked worker was discarded, not reused");
        drop(w);

        // A `create` that panics frees its reserved slot too.
        let p = pool.clone();
        let _ = std::thread::spawn(move || {
            let _w = p.take(|| -> Result<u32, ()> { panic!("create panicked") });
        })
        .join();
        assert_eq!(pool.live(), 1, "only the idle worker is live");
        let _a = pool.take(|| Ok::<_, ()>(3u32)).unwrap();
        assert_eq!(pool.live(), 1);
    }

    #[test]
    fn a_waiter_at_the_cap_proceeds_when_a_call_panics() {
        let pool = Arc::new(Pool::new(1));
        let held = pool.take(|| Ok::<_, ()>(1u32)).unwrap();
        let p = pool.clone();
        let waiter = std::thread::spawn(move || *p.take(|| Ok::<_, ()>(5u32)).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished(), "the second caller waits at the cap");
        // The holder panics: its worker is discarded and the waiter makes a fresh one.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = held;
            panic!("call panicked");
        }));
        assert_eq!(waiter.join().unwrap(), 5);
        assert_eq!(pool.live(), 1);
    }

    #[tokio::test]
    async fn async_pool_caps_live_workers_and_a_waiter_gets_the_returned_one() {
        let pool = Arc::new(AsyncPool::new(2));
        let a = pool.take(|| Ok::<_, ()>(1u32)).await.unwrap();
        let b = pool.take(|| Ok::<_, ()>(2u32)).await.unwrap();
        assert_eq!(pool.live(), 2);
        let p = pool.clone();
        let waiter = tokio::spawn(async move { *p.take(|| Ok::<_, ()>(99)).await.unwrap() });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "the third caller waits at the cap");
        drop(a);
        assert_eq!(waiter.await.unwrap(), 1, "the waiter got the returned worker, not a new one");
        drop(b);
        let c = pool.take(|| Ok::<_, ()>(3)).await.unwrap();
        assert!([1, 2].contains(&*c), "idle workers are reused before new ones are made");
        assert_eq!(pool.live(), 2);
    }
}
