//! A pool of workers (live instances) for one transform, capped at `max` live at once: a call
//! that finds none idle creates one if under the cap, else waits for one to be returned. The cap
//! is a tenant quota (`max_instances`), so one tenant's load cannot take every instance slot.
//!
//! [`ComputeShare`] caps a whole tenant's concurrent transform calls on a node, across all its
//! views (quota `compute_slots`): a tenant flooding its worst guests occupies at most that many
//! cores, and the rest of the node stays with the other tenants.

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
