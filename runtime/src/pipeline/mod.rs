//! The streaming pipeline shared by every source (Kafka, HTTP push, backfill):
//! events → batched Wasm call → schema validation → fold into tile ops → one atomic store write.

pub mod breaker;
pub mod metrics;

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use crate::aggregate::Window;
use crate::aggregate::fold::{FoldPlan, fold};
use crate::aggregate::spec::DAY;
use crate::aggregate::window::retention;
use crate::bindings::types::{Event, FeatureRow};
use crate::store::quota::EntityQuota;
use crate::store::{Applied, OnlineStore, Outcome, SourceMark, StoreError, WriteBatch};
use crate::transform::{StreamWorker, Transform, TransformError};
use crate::view::ViewSpec;
pub use metrics::Metrics;

/// Why one event produced nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct EventFailure {
    /// Index in the batch.
    pub index: usize,
    /// Stable code (`bad_input`, `trap`, `schema_violation`, `aggregation`, ...).
    pub code: &'static str,
    pub message: String,
}

/// A batch over one of its tenant's caps ([`crate::Limits::batch_rows`],
/// [`crate::Limits::batch_entities`]): nothing of it is written and every event fails with
/// [`code`](Self::code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapExceeded {
    /// The quota's name (`batch_rows`, `batch_entities`).
    pub cap: &'static str,
    pub limit: usize,
    pub found: usize,
}

impl CapExceeded {
    /// The failure code of the batch's events.
    pub fn code(&self) -> &'static str {
        match self.cap {
            "batch_rows" => "too_many_rows",
            _ => "too_many_entities",
        }
    }

    fn message(&self) -> String {
        let what = if self.cap == "batch_rows" { "feature rows" } else { "distinct entities" };
        format!(
            "the batch produced {} {what}, over the tenant's `{}` quota of {}; nothing of it was written",
            self.found, self.cap, self.limit
        )
    }
}

/// A transformed, folded batch, ready to be written.
pub struct Prepared {
    events: usize,
    ops: Vec<crate::aggregate::ops::EntityOps>,
    pub rows: usize,
    pub failures: Vec<EventFailure>,
    /// Set when the batch is refused as a whole for exceeding a cap.
    pub over_cap: Option<CapExceeded>,
}

impl Prepared {
    /// The key of the `i`-th entity of the batch's writes (as in [`Outcome::refused`]).
    pub fn entity(&self, i: usize) -> &str {
        self.ops.get(i).map_or("", |e| e.entity.as_str())
    }

    /// A refused batch of `events` events: no ops, every event failed with the cap's code.
    fn refused(events: usize, cap: CapExceeded) -> Self {
        let message = cap.message();
        let failures =
            (0..events).map(|index| EventFailure { index, code: cap.code(), message: message.clone() }).collect();
        Self { events, ops: Vec::new(), rows: 0, failures, over_cap: Some(cap) }
    }
}

/// A running stream view: its transform, worker pool and aggregation plan.
pub struct StreamView {
    /// Namespaced id (`tenant/view`), used as the store namespace.
    pub id: String,
    pub spec: ViewSpec,
    pub transform: Transform,
    plan: FoldPlan,
    retention: Vec<(i64, i64)>,
    keep_ms: i64,
    workers: crate::transform::pool::Pool<StreamWorker>,
    /// Pauses the view when its transform fails persistently.
    pub breaker: breaker::Breaker,
    pub metrics: Arc<Metrics>,
    /// The tenant's share of the node's cores, shared by all its views.
    compute: crate::transform::pool::ComputeShare,
    /// The tenant's cap on stored records, shared by all its views (`None`: no cap).
    store_quota: Option<Arc<EntityQuota>>,
}

impl StreamView {
    pub fn new(tenant: &str, spec: ViewSpec, transform: Transform, metrics: Arc<Metrics>) -> Self {
        let plan = FoldPlan::new(spec.latest.iter().map(|(n, _)| n.clone()).collect(), &spec.aggs);
        let windows: Vec<Window> = spec.aggs.iter().flat_map(|a| a.windows.iter().copied()).collect();
        let tiles = crate::aggregate::window::tile_sizes(windows.iter().copied());
        let retention = tiles.iter().map(|g| (*g, retention(*g, windows.iter().copied()))).collect();
        let has_lifetime = windows.contains(&Window::Lifetime);
        let keep_ms = if has_lifetime { 400 * DAY } else { spec.ttl_ms.max(spec.longest_window() + DAY) };
        let breaker = breaker::Breaker::new(spec.breaker);
        let workers = crate::transform::pool::Pool::new(transform.limits().max_instances);
        Self {
            id: crate::view::view_id(tenant, &spec.name),
            spec,
            transform,
            plan,
            retention,
            keep_ms,
            workers,
            breaker,
            metrics,
            compute: crate::transform::pool::ComputeShare::unlimited(),
            store_quota: None,
        }
    }

    /// The tenant's cap on stored records, if it has one.
    pub fn store_quota(&self) -> Option<&EntityQuota> {
        self.store_quota.as_deref()
    }

    /// Write this view's batches within `quota` (its tenant's, shared by all its views).
    pub fn with_store_quota(mut self, quota: Option<Arc<EntityQuota>>) -> Self {
        self.store_quota = quota;
        self
    }

    /// Run this view's transform calls within `share` (its tenant's, shared by all its views).
    pub fn with_compute(mut self, share: crate::transform::pool::ComputeShare) -> Self {
        self.compute = share;
        self
    }

    fn with_worker<R>(&self, f: impl FnOnce(&mut StreamWorker) -> R) -> R {
        let mut w = match self.workers.take(|| self.transform.stream_worker()) {
            Ok(w) => w,
            // Checked when the view was built; kept as a contract failure rather than a panic.
            Err(e) => unreachable!("view {} holds a non-stream transform: {e}", self.id),
        };
        // Returned to the pool on drop (discarded if `f` panics).
        f(&mut w)
    }

    /// Run the transform over `events` (CPU; call from a blocking context): the validated rows,
    /// the index of the event each row came from, and the events that failed.
    pub fn transform_rows(&self, events: &[Event]) -> (Vec<FeatureRow>, Vec<usize>, Vec<EventFailure>) {
        let results = if events.is_empty() {
            Vec::new()
        } else {
            let _slot = self.compute.acquire_blocking();
            self.with_worker(|w| w.process(events))
        };
        let mut rows: Vec<FeatureRow> = Vec::with_capacity(events.len());
        let mut row_event: Vec<usize> = Vec::with_capacity(events.len());
        let mut failures = Vec::new();
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(rs) => {
                    for row in rs {
                        row_event.push(i);
                        rows.push(row);
                    }
                }
                Err(e) => failures.push(failure(i, &e)),
            }
        }
        (rows, row_event, failures)
    }

    /// Whether the view stores or aggregates a row feature of this name (other outputs of the
    /// transform are never read, so offline jobs may drop them early).
    pub fn uses_column(&self, name: &str) -> bool {
        self.plan.latest.iter().any(|l| l == name) || self.plan.columns.iter().any(|c| c.column == name)
    }

    /// Fold already-transformed rows into a batch ready to [`commit`](Self::commit) (the offline
    /// path: rows are replayed in event-time order). A row value that cannot be aggregated is
    /// reported as a failure with the row's index, exactly as the online path reports it.
    pub fn prepare_rows(&self, rows: &[FeatureRow]) -> Prepared {
        let (ops, fold_errors) = fold(&self.plan, rows);
        let failures = fold_errors
            .into_iter()
            .map(|(ri, e)| EventFailure { index: ri, code: "aggregation", message: e.to_string() })
            .collect();
        Prepared { events: rows.len(), ops, rows: rows.len(), failures, over_cap: None }
    }

    /// Run the transform over `events` (CPU; call from a blocking context) and fold the rows.
    pub fn transform_batch(
        &self,
        events: &[Event],
    ) -> (Vec<crate::aggregate::ops::EntityOps>, usize, Vec<EventFailure>) {
        let mut parts = self.transform_groups(events, std::slice::from_ref(&(0..events.len())));
        let p = parts.pop().unwrap_or(Prepared {
            events: 0,
            ops: Vec::new(),
            rows: 0,
            failures: Vec::new(),
            over_cap: None,
        });
        (p.ops, p.rows, p.failures)
    }

    /// One transform call over all `events`, folded separately for each of `groups` (sorted,
    /// non-overlapping index ranges, e.g. one per source partition, each written with its own
    /// watermark). Failure indices are relative to their group's start. A batch over the rows
    /// or entities cap is refused as a whole (every group).
    fn transform_groups(&self, events: &[Event], groups: &[Range<usize>]) -> Vec<Prepared> {
        let started = Instant::now();
        let (rows, row_event, failures) = self.transform_rows(events);
        let limits = self.transform.limits();
        let refuse =
            |cap: CapExceeded| -> Vec<Prepared> { groups.iter().map(|g| Prepared::refused(g.len(), cap)).collect() };
        if rows.len() > limits.batch_rows {
            return refuse(CapExceeded { cap: "batch_rows", limit: limits.batch_rows, found: rows.len() });
        }
        // Rows are in event order: each group's rows are one contiguous run.
        let out = groups
            .iter()
            .map(|g| {
                let (r0, r1) = (row_event.partition_point(|&e| e < g.start), row_event.partition_point(|&e| e < g.end));
                let (ops, fold_errors) = fold(&self.plan, &rows[r0..r1]);
                let mut fs: Vec<EventFailure> = failures
                    .iter()
                    .filter(|f| g.contains(&f.index))
                    .map(|f| EventFailure { index: f.index - g.start, code: f.code, message: f.message.clone() })
                    .collect();
                for (ri, e) in fold_errors {
                    fs.push(EventFailure {
                        index: row_event[r0 + ri] - g.start,
                        code: "aggregation",
                        message: e.to_string(),
                    });
                }
                fs.sort_by_key(|f| f.index);
                Prepared { events: g.len(), ops, rows: r1 - r0, failures: fs, over_cap: None }
            })
            .collect::<Vec<_>>();
        self.metrics.transform_seconds.observe(&self.id, started.elapsed().as_secs_f64());
        let entities: usize = out.iter().map(|p| p.ops.len()).sum();
        if entities > limits.batch_entities {
            return refuse(CapExceeded { cap: "batch_entities", limit: limits.batch_entities, found: entities });
        }
        out
    }

    /// Transform + fold a batch (CPU, on a blocking-capable thread); nothing is written yet.
    pub fn prepare(&self, events: &[Event]) -> Prepared {
        let mut parts =
            tokio::task::block_in_place(|| self.transform_groups(events, std::slice::from_ref(&(0..events.len()))));
        parts.pop().unwrap_or(Prepared { events: 0, ops: Vec::new(), rows: 0, failures: Vec::new(), over_cap: None })
    }

    /// [`Self::prepare`] for several groups of one batch with a single transform call (see
    /// `transform_groups`): a Kafka batch spanning partitions crosses into Wasm once.
    pub fn prepare_groups(&self, events: &[Event], groups: &[Range<usize>]) -> Vec<Prepared> {
        tokio::task::block_in_place(|| self.transform_groups(events, groups))
    }

    /// Feed a prepared batch to the circuit breaker (logs and the paused gauge follow it).
    pub fn judge(&self, prepared: &Prepared) -> breaker::Verdict {
        self.judge_all(std::slice::from_ref(prepared))
    }

    /// [`Self::judge`] for the groups of one batch, judged as one batch.
    pub fn judge_all(&self, parts: &[Prepared]) -> breaker::Verdict {
        let events = parts.iter().map(|p| p.events).sum();
        // A batch refused for a cap is the data's fault, not the transform's: its events fail
        // (dead letters) without tripping the breaker, which would retry it forever.
        let failed = parts.iter().filter(|p| p.over_cap.is_none()).map(|p| p.failures.len()).sum();
        let v = self.breaker.record(events, failed);
        match v {
            breaker::Verdict::Tripped { pause } => {
                let first = parts.iter().find_map(|p| p.failures.first());
                let code = first.map_or("", |f| f.code);
                let error = first.map_or("", |f| f.message.as_str());
                tracing::error!(view = %self.id, transform = self.transform.name(), pause_ms = pause.as_millis() as u64, failed, events, code, error, "transform failing persistently: view paused");
                self.metrics.breaker_trips.add(&self.id, code, 1);
                self.metrics.paused.set(&self.id, 1.0);
            }
            breaker::Verdict::Closed => {
                tracing::info!(view = %self.id, "transform recovered: view resumed");
                self.metrics.paused.set(&self.id, 0.0);
            }
            breaker::Verdict::Pass => {}
        }
        v
    }

    /// Write a prepared batch atomically (with its watermark). Safe to retry: a retry after a
    /// lost reply is refused as `Stale` rather than applied twice. Entities refused by the
    /// tenant's store quota are counted and logged (see [`Self::commit_keyed`]).
    pub async fn commit(
        &self,
        store: &dyn OnlineStore,
        prepared: &Prepared,
        mark: Option<SourceMark>,
    ) -> Result<Applied, StoreError> {
        Ok(self.commit_keyed(store, prepared, mark, None).await?.applied)
    }

    /// [`Self::commit`] of a push with an idempotency key: a retry with the same key is applied
    /// at most once per entity (the store remembers the key). The outcome names the entities the
    /// tenant's store quota refused ([`Prepared::entity`] gives their keys).
    pub async fn commit_keyed(
        &self,
        store: &dyn OnlineStore,
        prepared: &Prepared,
        mark: Option<SourceMark>,
        idempotency_key: Option<&str>,
    ) -> Result<Outcome, StoreError> {
        let batch = WriteBatch {
            view: &self.id,
            mark,
            entities: &prepared.ops,
            keep_ms: self.keep_ms,
            retention: &self.retention,
            idempotency_key,
            quota: self.store_quota.as_ref(),
        };
        let outcome = store.write(&batch).await?;
        if outcome.applied == Applied::Applied {
            self.metrics.events.add(&self.id, "ok", prepared.events.saturating_sub(prepared.failures.len()) as u64);
            for f in &prepared.failures {
                self.metrics.events.add(&self.id, f.code, 1);
            }
            self.metrics.rows.add(&self.id, "written", prepared.rows as u64);
        }
        if let Some(q) = &self.store_quota {
            self.metrics.stored_entities.set(q.tenant(), q.stored() as f64);
            if !outcome.refused.is_empty() {
                self.count_refused(q, prepared, &outcome.refused);
            }
        }
        Ok(outcome)
    }

    /// Count (and now and then log) the entities the tenant's store quota refused.
    fn count_refused(&self, q: &EntityQuota, prepared: &Prepared, refused: &[usize]) {
        self.metrics.quota_exceeded.add(q.tenant(), "max_stored_entities", 1);
        self.metrics.quota_refused_entities.add(&self.id, "max_stored_entities", refused.len() as u64);
        if q.should_warn(crate::time::now_ms()) {
            let first = refused.first().map_or("", |i| prepared.entity(*i));
            tracing::warn!(view = %self.id, refused = refused.len(), stored = q.stored(), quota = q.max(), first, "tenant at its max_stored_entities quota: new entities are not stored");
        }
    }
}

fn failure(index: usize, e: &TransformError) -> EventFailure {
    EventFailure { index, code: e.code(), message: e.to_string() }
}
