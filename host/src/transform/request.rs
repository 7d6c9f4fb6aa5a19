//! Running a request (on-demand) transform: all entities of one request in one call.
//!
//! The clock reads the request time; random is seeded from the first entity key and the request
//! time. Calls are async (see [`crate::bindings::request`]): on a runtime thread they never
//! block it, and a long one (it ran through a whole epoch tick) yields at every tick until its
//! deadline. A failed call (trap, deadline, OOM) fails the whole request: request transforms are
//! latency-critical, and re-running entity by entity would multiply the worst case.

use wasmtime::Store;

use super::instance::{begin_async_call, classify, instantiate_request};
use super::schema::features_size;
use super::{Transform, TransformError, TypedPre, WorkerStats};
use crate::bindings::RequestInput;
use crate::bindings::request::RequestTransform as Bindings;
use crate::bindings::types::Feature;
use crate::sandbox::HostState;
use crate::sandbox::clock_seed;

/// The outcome for one entity.
pub type EntityResult = Result<Vec<Feature>, TransformError>;

struct Live {
    store: Store<HostState>,
    bindings: Bindings,
    calls: u64,
}

/// Owns one instance of a request transform. Not `Sync`: one per thread (or pooled).
pub struct RequestWorker {
    transform: Transform,
    live: Option<Live>,
    stats: WorkerStats,
}

impl RequestWorker {
    pub(crate) fn new(transform: Transform) -> Self {
        Self { transform, live: None, stats: WorkerStats::default() }
    }

    pub fn transform(&self) -> &Transform {
        &self.transform
    }

    pub fn stats(&self) -> WorkerStats {
        self.stats
    }

    /// [`Self::compute_async`] run to completion on this thread (tools, tests, batch jobs).
    pub fn compute(&mut self, inputs: &[RequestInput]) -> Result<Vec<EntityResult>, TransformError> {
        futures::executor::block_on(self.compute_async(inputs))
    }

    /// Compute features for every input. `Err` means the call as a whole failed (trap, deadline,
    /// OOM, contract); `Ok` holds one result per input.
    pub async fn compute_async(&mut self, inputs: &[RequestInput]) -> Result<Vec<EntityResult>, TransformError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let inner = self.transform.inner.clone();
        let first = &inputs[0];
        let seed = clock_seed(&[first.entity_key.as_bytes(), &first.request_time_ms.to_le_bytes()]);
        let mut live = match self.live.take() {
            Some(l) => l,
            None => self.instantiate().await?,
        };
        live.calls += 1;
        self.stats.calls += 1;
        self.stats.items += inputs.len() as u64;
        begin_async_call(&mut live.store, inner.ticks, first.request_time_ms, seed);
        let result = match drive(
            live.bindings.wafer_transform_request().call_compute(&mut live.store, inputs),
            &inner.runs_long,
        )
        .await
        {
            Ok(raw) => Ok(raw),
            Err(e) => Err(classify(&mut live.store, &inner.limits, &e)),
        };
        let raw = match result {
            Ok(raw) => {
                if inner.should_recycle(&live.store, live.calls) {
                    self.stats.recycles += 1;
                } else {
                    self.live = Some(live);
                }
                raw
            }
            Err(e) => {
                match &e {
                    TransformError::Deadline(_) => self.stats.deadlines += 1,
                    TransformError::OutOfMemory { .. } => self.stats.out_of_memory += 1,
                    _ => self.stats.traps += 1,
                }
                tracing::warn!(transform = self.transform.name(), error = %e, "request transform call failed; instance discarded");
                return Err(e);
            }
        };
        if raw.len() != inputs.len() {
            return Err(TransformError::Contract(format!(
                "compute returned {} results for {} inputs",
                raw.len(),
                inputs.len()
            )));
        }
        let cap = inner.limits.output_bytes;
        let size: usize = raw.iter().map(|r| r.as_ref().map_or(0, |f| features_size(f))).sum();
        if size > cap {
            return Err(TransformError::OutputTooLarge { size, cap });
        }
        let schema = &inner.schema;
        Ok(raw
            .into_iter()
            .map(|r| {
                let features = r.map_err(TransformError::from)?;
                schema.check_features(&features)?;
                Ok(features)
            })
            .collect())
    }

    async fn instantiate(&mut self) -> Result<Live, TransformError> {
        let inner = &self.transform.inner;
        let TypedPre::Request(pre) = &inner.pre else {
            return Err(TransformError::Instantiate("not a request transform".into()));
        };
        self.stats.instantiations += 1;
        let (store, bindings) = drive(
            instantiate_request(&inner.engine, pre, &inner.info.name, &inner.limits, inner.ticks),
            &inner.runs_long,
        )
        .await?;
        Ok(Live { store, bindings, calls: 0 })
    }
}

/// A call of a transform flagged `runs_long` that finishes within this clears the flag.
const SHORT_CALL: std::time::Duration = std::time::Duration::from_micros(250);

/// Drive a guest call. Short calls run inline on the caller's task: no thread hand-off. A call
/// that runs through a whole epoch tick (it yields: see `new_async_store`) or waits on WASI is finished off
/// the async worker and flags its transform, whose next calls then start off the worker until
/// one is short again. Off the worker means on a thread of its own at a lower scheduling priority
/// ([`finish_demoted`]): a transform burning its whole deadline holds an async worker for at most
/// two ticks, once, and otherwise gets the cores only when the node's serving threads (every
/// other request and tenant) leave them idle.
async fn drive<F>(call: F, runs_long: &std::sync::atomic::AtomicBool) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    use std::sync::atomic::Ordering::Relaxed;
    use std::task::Poll;
    let mut call = std::pin::pin!(call);
    let multi_thread = matches!(
        tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()),
        Ok(tokio::runtime::RuntimeFlavor::MultiThread)
    );
    if !multi_thread {
        return call.await;
    }
    if runs_long.load(Relaxed) {
        let started = std::time::Instant::now();
        let out = finish_demoted(call);
        if started.elapsed() < SHORT_CALL {
            runs_long.store(false, Relaxed);
        }
        return out;
    }
    match std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await {
        Poll::Ready(out) => out,
        Poll::Pending => {
            runs_long.store(true, Relaxed);
            finish_demoted(call)
        }
    }
}

/// Nice value of threads finishing long guest calls (0 is normal; 19 the lowest priority).
const LONG_CALL_NICE: i32 = 10;

/// Finish `call` off the async worker (`block_in_place`), on a scoped thread whose scheduling
/// priority is lowered first; the thread ends with the call, so no thread is ever left demoted.
/// If no thread can be started, the call finishes on this one at normal priority.
fn finish_demoted<F>(mut call: std::pin::Pin<&mut F>) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            let c = call.as_mut();
            let spawned = std::thread::Builder::new().name("wafer-long-call".into()).spawn_scoped(s, move || {
                // SAFETY: plain syscalls on the calling thread (setpriority with a thread id
                // applies to that thread only on Linux).
                unsafe {
                    let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                    libc::setpriority(libc::PRIO_PROCESS, tid, LONG_CALL_NICE);
                }
                futures::executor::block_on(c)
            });
            match spawned.map(|h| h.join()) {
                Ok(Ok(out)) => Some(out),
                Ok(Err(panic)) => std::panic::resume_unwind(panic),
                Err(_) => None,
            }
        })
        .unwrap_or_else(|| futures::executor::block_on(call))
    })
}
