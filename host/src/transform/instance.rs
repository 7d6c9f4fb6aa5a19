//! One sandboxed instance and the guard around every call into it.

use wasmtime::{Store, Trap, UpdateDeadline};

use super::{Inner, TransformError, TypedPre};
use crate::bindings::request::{RequestTransform, RequestTransformPre};
use crate::bindings::types::TransformInfo;
use crate::engine::WaferEngine;
use crate::sandbox::{HostState, Limits};

/// A fresh store with the transform's sandbox and memory limit (the deadline is set by the caller).
fn sandboxed_store(engine: &WaferEngine, name: &str, limits: &Limits) -> Result<Store<HostState>, TransformError> {
    let state = HostState::new(name, limits).map_err(|e| TransformError::Instantiate(e.to_string()))?;
    let mut store = Store::new(engine.engine(), state);
    store.limiter(|s| &mut s.limiter);
    Ok(store)
}

/// A fresh store for synchronous calls: the deadline traps.
pub(crate) fn new_store(engine: &WaferEngine, name: &str, limits: &Limits) -> Result<Store<HostState>, TransformError> {
    let mut store = sandboxed_store(engine, name, limits)?;
    store.epoch_deadline_trap();
    Ok(store)
}

/// Reset the per-call state: the call's clock and seed, the log budget, the refused-growth mark.
fn begin_call(st: &mut HostState, now_ms: i64, seed: u64) {
    st.clock.begin_call(now_ms, seed);
    st.log.begin_call();
    st.limiter.take_refused();
}

/// A fresh store for async calls (request transforms). The deadline is the same number of epoch
/// ticks, but from the second tick of a call on, the guest first yields to its caller at every
/// tick, which is how `request::drive` learns that a call is long and moves it off the async
/// worker; when its ticks are spent it traps.
///
/// The first tick does not yield ([`begin_async_call`] sets the first deadline two ticks away):
/// it lands at a random point of the call (the ticker does not start with it), so a 50 µs call
/// meets one in 5% of its runs at a 1 ms tick. Yielding there would flag such short calls as long
/// and move them off the worker (a thread hand-off each); only a call that yields has run at
/// least one whole tick.
pub(crate) fn new_async_store(
    engine: &WaferEngine,
    name: &str,
    limits: &Limits,
) -> Result<Store<HostState>, TransformError> {
    let mut store = sandboxed_store(engine, name, limits)?;
    store.epoch_deadline_callback(|mut cx| {
        let left = &mut cx.data_mut().ticks_left;
        if *left <= 1 {
            return Ok(UpdateDeadline::Interrupt);
        }
        *left -= 1;
        Ok(UpdateDeadline::Yield(1))
    });
    Ok(store)
}

/// Prepare `store` (made by [`new_async_store`]) for one async call: the call's clock, seed, log
/// budget and deadline. Map the call's error with [`classify`].
///
/// The first deadline is two ticks away (one for a one-tick budget): the deadline callback then
/// first runs once the call has run through a whole tick, and `ticks_left` starts one lower, so
/// the call still traps at its `ticks`-th tick.
pub(crate) fn begin_async_call(store: &mut Store<HostState>, ticks: u64, now_ms: i64, seed: u64) {
    let first = ticks.clamp(1, 2);
    let st = store.data_mut();
    begin_call(st, now_ms, seed);
    st.ticks_left = ticks.max(1) - (first - 1);
    store.set_epoch_deadline(first);
}

/// A fresh async store with an instance of the request transform `pre` in it.
pub(crate) async fn instantiate_request(
    engine: &WaferEngine,
    pre: &RequestTransformPre<HostState>,
    name: &str,
    limits: &Limits,
    ticks: u64,
) -> Result<(Store<HostState>, RequestTransform), TransformError> {
    let mut store = new_async_store(engine, name, limits)?;
    begin_async_call(&mut store, ticks, 0, 0);
    match pre.instantiate_async(&mut store).await {
        Ok(b) => Ok((store, b)),
        Err(e) => Err(classify(&mut store, limits, &e)),
    }
}

/// Run `f` against `store` under the deadline, with the call's clock and seed set, and turn a
/// failure into a typed [`TransformError`]. After an `Err`, the instance must be discarded.
pub(crate) fn guarded<R>(
    store: &mut Store<HostState>,
    limits: &Limits,
    ticks: u64,
    now_ms: i64,
    seed: u64,
    f: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
) -> Result<R, TransformError> {
    begin_call(store.data_mut(), now_ms, seed);
    store.set_epoch_deadline(ticks);
    match f(store) {
        Ok(r) => Ok(r),
        Err(e) => Err(classify(store, limits, &e)),
    }
}

pub(crate) fn classify(store: &mut Store<HostState>, limits: &Limits, e: &wasmtime::Error) -> TransformError {
    let trap = e.downcast_ref::<Trap>().copied();
    if trap == Some(Trap::Interrupt) {
        return TransformError::Deadline(limits.deadline);
    }
    if let Some(requested) = store.data_mut().limiter.take_refused() {
        return TransformError::OutOfMemory { limit: limits.memory_bytes, requested };
    }
    let mut msg = match trap {
        Some(t) => t.to_string(),
        None => format!("{e:#}"),
    };
    if msg.len() > 512 {
        let mut end = 512;
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        msg.truncate(end);
    }
    TransformError::Trap(msg)
}

/// Call `describe` once on a fresh instance, under the transform's limits. Request transforms are
/// async-linked; their describe runs to completion on this thread.
pub(crate) fn describe(
    engine: &WaferEngine,
    pre: &TypedPre,
    limits: &Limits,
    ticks: u64,
) -> Result<TransformInfo, TransformError> {
    match pre {
        TypedPre::Stream(p) => {
            let mut store = new_store(engine, "describe", limits)?;
            let b = guarded(&mut store, limits, ticks, 0, 0, |s| p.instantiate(s))?;
            guarded(&mut store, limits, ticks, 0, 0, |s| b.wafer_transform_describe().call_describe(s))
        }
        TypedPre::Request(p) => futures::executor::block_on(async {
            let (mut store, b) = instantiate_request(engine, p, "describe", limits, ticks).await?;
            begin_async_call(&mut store, ticks, 0, 0);
            let r = b.wafer_transform_describe().call_describe(&mut store).await;
            r.map_err(|e| classify(&mut store, limits, &e))
        }),
    }
}

impl Inner {
    pub(crate) fn should_recycle(&self, store: &Store<HostState>, calls: u64) -> bool {
        store.data().limiter.current() > self.limits.recycle_memory_bytes
            || (self.limits.recycle_after_calls > 0 && calls >= self.limits.recycle_after_calls)
    }
}
