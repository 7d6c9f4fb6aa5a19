//! Running a stream transform: batches in, validated rows out, one result per event.
//!
//! Failure handling, per batch:
//! 1. The whole batch goes to the guest in one call (amortising the boundary crossing).
//! 2. If that call traps, overruns its deadline, runs out of memory, returns the wrong number of
//!    results or too much output, the instance is discarded and the batch is re-run one event
//!    per call, each on a healthy instance, so only the poison event fails.
//! 3. Each row is validated against the declared schema; a violation fails that event only.
//! 4. The whole batch, re-runs included, spends at most [`Limits::batch_cpu`] of thread CPU time
//!    and produces at most [`Limits::output_bytes`]: once either is spent, the events not yet run
//!    fail (`batch_budget_exceeded`, `output_too_large`) without running, so a batch of looping
//!    events costs one budget, not one deadline per event.
//!
//! [`Limits::batch_cpu`]: crate::Limits::batch_cpu
//! [`Limits::output_bytes`]: crate::Limits::output_bytes
//!
//! Determinism: the WASI clock reads the event time of the call's first event. If the guest read
//! the clock or random during a multi-event call, the batch is re-run one event per call so that
//! every event sees its own time and seed, independent of batching. A guest that does this on
//! three consecutive batches is switched to one-event calls for good.

use std::slice;

use wasmtime::Store;

use super::instance::{guarded, new_store};
use super::schema::rows_size;
use super::{Transform, TransformError, TypedPre, WorkerStats};
use crate::bindings::stream::StreamTransform as Bindings;
use crate::bindings::types::{Event, FeatureRow};
use crate::sandbox::HostState;
use crate::sandbox::clock_seed;
use crate::sandbox::cpu::CpuBudget;

/// The outcome for one event.
pub type EventResult = Result<Vec<FeatureRow>, TransformError>;

struct Live {
    store: Store<HostState>,
    bindings: Bindings,
    calls: u64,
}

/// Owns one instance of a stream transform. Not `Sync`: give each thread its own worker.
pub struct StreamWorker {
    transform: Transform,
    live: Option<Live>,
    stats: WorkerStats,
    observed_streak: u32,
    one_event_per_call: bool,
}

enum BatchFailure {
    /// The call itself failed; the instance is gone.
    Call(TransformError),
    /// The call succeeded but its result can't be used as a whole.
    Unusable(&'static str),
}

impl StreamWorker {
    pub(crate) fn new(transform: Transform) -> Self {
        Self { transform, live: None, stats: WorkerStats::default(), observed_streak: 0, one_event_per_call: false }
    }

    pub fn transform(&self) -> &Transform {
        &self.transform
    }

    pub fn stats(&self) -> WorkerStats {
        let mut s = self.stats;
        if let Some(l) = &self.live {
            s.log_lines += l.store.data().log.total();
        }
        s
    }

    /// Linear memory of the live instance in bytes; `None` when no instance is live (before the
    /// first call, or right after the instance was recycled or discarded).
    pub fn instance_memory(&self) -> Option<usize> {
        self.live.as_ref().map(|l| l.store.data().limiter.current())
    }

    /// Transform a batch: exactly one result per event, in order.
    pub fn process(&mut self, events: &[Event]) -> Vec<EventResult> {
        if events.is_empty() {
            return Vec::new();
        }
        let budget = CpuBudget::start(self.transform.limits().batch_cpu);
        if events.len() == 1 || self.one_event_per_call {
            return self.process_each(events, &budget);
        }
        match self.process_batch(events) {
            Ok(results) => results,
            Err(failure) => {
                self.stats.per_item_reruns += 1;
                match &failure {
                    BatchFailure::Call(e) => {
                        tracing::debug!(transform = self.transform.name(), error = %e, events = events.len(), "batch call failed; re-running one event per call")
                    }
                    BatchFailure::Unusable(why) => tracing::debug!(
                        transform = self.transform.name(),
                        why,
                        events = events.len(),
                        "re-running batch one event per call"
                    ),
                }
                self.process_each(events, &budget)
            }
        }
    }

    /// One call per event within the batch's CPU and output budgets; the events left when one is
    /// spent fail without running.
    fn process_each(&mut self, events: &[Event], budget: &CpuBudget) -> Vec<EventResult> {
        let cap = self.transform.limits().output_bytes;
        let mut output = 0usize;
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            if budget.spent() {
                out.push(Err(TransformError::BudgetExceeded(budget.budget())));
                continue;
            }
            if output > cap {
                out.push(Err(TransformError::OutputTooLarge { size: output, cap }));
                continue;
            }
            let r = self.process_one(e);
            if let Ok(rows) = &r {
                output += rows_size(rows);
            }
            out.push(r);
        }
        out
    }

    fn process_batch(&mut self, events: &[Event]) -> Result<Vec<EventResult>, BatchFailure> {
        let (raw, observed) = self.invoke(events).map_err(BatchFailure::Call)?;
        if observed {
            self.observed_streak += 1;
            if self.observed_streak >= 3 {
                self.one_event_per_call = true;
                tracing::info!(
                    transform = self.transform.name(),
                    "transform reads the clock or random in every batch; calling it one event at a time"
                );
            }
            return Err(BatchFailure::Unusable("guest read the clock or random"));
        }
        self.observed_streak = 0;
        if raw.len() != events.len() {
            return Err(BatchFailure::Unusable("wrong number of results"));
        }
        let size: usize = raw.iter().map(|r| r.as_ref().map_or(0, |rows| rows_size(rows))).sum();
        if size > self.transform.limits().output_bytes {
            return Err(BatchFailure::Unusable("batch output over the cap"));
        }
        Ok(raw.into_iter().map(|r| self.validate(r)).collect())
    }

    fn process_one(&mut self, event: &Event) -> EventResult {
        let (mut raw, _) = self.invoke(slice::from_ref(event))?;
        if raw.len() != 1 {
            return Err(TransformError::Contract(format!("process returned {} results for 1 event", raw.len())));
        }
        let r = raw.pop().expect("length checked");
        if let Ok(rows) = &r {
            let size = rows_size(rows);
            let cap = self.transform.limits().output_bytes;
            if size > cap {
                return Err(TransformError::OutputTooLarge { size, cap });
            }
        }
        self.validate(r)
    }

    fn validate(&self, r: Result<Vec<FeatureRow>, crate::bindings::types::TransformError>) -> EventResult {
        let rows = r.map_err(TransformError::from)?;
        let schema = self.transform.schema();
        for row in &rows {
            schema.check_row(row)?;
        }
        Ok(rows)
    }

    /// One guest call. On error the instance is dropped (a trapped instance cannot be re-entered).
    #[allow(clippy::type_complexity)]
    fn invoke(
        &mut self,
        events: &[Event],
    ) -> Result<(Vec<Result<Vec<FeatureRow>, crate::bindings::types::TransformError>>, bool), TransformError> {
        let inner = self.transform.inner.clone();
        let first = &events[0];
        let seed = clock_seed(&[first.topic.as_bytes(), &first.partition.to_le_bytes(), &first.offset.to_le_bytes()]);
        let mut live = match self.live.take() {
            Some(l) => l,
            None => self.instantiate()?,
        };
        live.calls += 1;
        self.stats.calls += 1;
        self.stats.items += events.len() as u64;
        let bindings = &live.bindings;
        let result = guarded(&mut live.store, &inner.limits, inner.ticks, first.timestamp_ms, seed, |s| {
            bindings.wafer_transform_stream_processor().call_process(s, events)
        });
        match result {
            Ok(raw) => {
                let observed = live.store.data().clock.observed();
                if inner.should_recycle(&live.store, live.calls) {
                    self.retire(live);
                    self.stats.recycles += 1;
                } else {
                    self.live = Some(live);
                }
                Ok((raw, observed))
            }
            Err(e) => {
                self.count_failure(&e);
                self.retire(live);
                Err(e)
            }
        }
    }

    fn instantiate(&mut self) -> Result<Live, TransformError> {
        let inner = &self.transform.inner;
        let TypedPre::Stream(pre) = &inner.pre else {
            return Err(TransformError::Instantiate("not a stream transform".into()));
        };
        let mut store = new_store(&inner.engine, &inner.info.name, &inner.limits)?;
        self.stats.instantiations += 1;
        let bindings = guarded(&mut store, &inner.limits, inner.ticks, 0, 0, |s| pre.instantiate(s))
            .inspect_err(|e| self.count_failure(e))?;
        Ok(Live { store, bindings, calls: 0 })
    }

    fn retire(&mut self, live: Live) {
        self.stats.log_lines += live.store.data().log.total();
    }

    fn count_failure(&mut self, e: &TransformError) {
        match e {
            TransformError::Deadline(_) => self.stats.deadlines += 1,
            TransformError::OutOfMemory { .. } => self.stats.out_of_memory += 1,
            _ => self.stats.traps += 1,
        }
        tracing::warn!(transform = self.transform.name(), error = %e, "guest call failed; instance discarded");
    }
}
