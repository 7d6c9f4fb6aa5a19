//! The streaming pipeline shared by every source (Kafka, HTTP push, backfill):
//! events → batched Wasm call → schema validation → fold into tile ops → one atomic store write.

pub mod metrics;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::aggregate::Window;
use crate::aggregate::fold::{FoldPlan, fold};
use crate::aggregate::read::{FieldSource, compute, fields_for, latest};
use crate::aggregate::spec::{DAY, HOUR, MINUTE};
use crate::aggregate::window::retention;
use crate::bindings::types::{Event, FeatureRow, Value, ValueType};
use crate::store::{Applied, OnlineStore, SourceMark, StoreError, WriteBatch};
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

/// The result of one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchOutcome {
    pub applied: Applied,
    pub rows: usize,
    pub failures: Vec<EventFailure>,
}

/// A transformed, folded batch, ready to be written.
pub struct Prepared {
    events: usize,
    ops: Vec<crate::aggregate::ops::EntityOps>,
    pub rows: usize,
    pub failures: Vec<EventFailure>,
}

/// A running stream view: its transform, worker pool and aggregation plan.
pub struct View {
    /// Namespaced id (`tenant/view`), used as the store namespace.
    pub id: String,
    pub spec: ViewSpec,
    pub transform: Transform,
    plan: FoldPlan,
    retention: Vec<(i64, i64)>,
    keep_ms: i64,
    workers: Mutex<Vec<StreamWorker>>,
    /// Every served feature by name, resolved once (reads don't rebuild names per request).
    features: HashMap<String, FeatureRef>,
    pub metrics: Arc<Metrics>,
}

/// Where a served feature comes from.
#[derive(Debug, Clone, Copy)]
enum FeatureRef {
    /// Index into `spec.latest`.
    Latest(usize),
    /// Index into `spec.aggs`, the window, and the aggregated column's type.
    Agg(usize, Window, ValueType),
}

/// Status of one served value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Present,
    Missing,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Present => "present",
            Status::Missing => "missing",
            Status::Expired => "expired",
        }
    }
}

/// One served feature value.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    pub value: Value,
    pub status: Status,
    pub event_time_ms: Option<i64>,
}

/// A requested feature the view does not have.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("view `{view}` has no feature(s) {}", .unknown.join(", "))]
pub struct UnknownFeatures {
    pub view: String,
    pub unknown: Vec<String>,
}

impl View {
    pub fn new(tenant: &str, spec: ViewSpec, transform: Transform, metrics: Arc<Metrics>) -> Self {
        let plan = FoldPlan::new(spec.latest.iter().map(|(n, _)| n.clone()).collect(), &spec.aggs);
        let windows: Vec<Window> = spec.aggs.iter().flat_map(|a| a.windows.iter().copied()).collect();
        let retention = [MINUTE, HOUR, DAY].iter().map(|g| (*g, retention(*g, windows.iter().copied()))).filter(|(_, r)| *r > 0).collect();
        let has_lifetime = windows.contains(&Window::Lifetime);
        let keep_ms = if has_lifetime { 400 * DAY } else { spec.ttl_ms.max(spec.longest_window() + DAY) };
        let mut features = HashMap::new();
        for (i, (name, _)) in spec.latest.iter().enumerate() {
            features.insert(name.clone(), FeatureRef::Latest(i));
        }
        for (i, a) in spec.aggs.iter().enumerate() {
            let ct = spec.column_type(&a.column);
            for w in &a.windows {
                features.insert(a.feature_name(*w), FeatureRef::Agg(i, *w, ct));
            }
        }
        Self { id: format!("{tenant}/{}", spec.name), spec, transform, plan, retention, keep_ms, workers: Mutex::new(Vec::new()), features, metrics }
    }

    fn with_worker<R>(&self, f: impl FnOnce(&mut StreamWorker) -> R) -> R {
        let mut w = match self.workers.lock().pop() {
            Some(w) => w,
            None => self.transform.stream_worker().expect("a view's transform is a stream transform"),
        };
        let r = f(&mut w);
        self.workers.lock().push(w);
        r
    }

    /// Run the transform over `events` (CPU; call from a blocking context): the validated rows,
    /// the index of the event each row came from, and the events that failed.
    pub fn transform_rows(&self, events: &[Event]) -> (Vec<FeatureRow>, Vec<usize>, Vec<EventFailure>) {
        let results = self.with_worker(|w| w.process(events));
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
        let failures = fold_errors.into_iter().map(|(ri, e)| EventFailure { index: ri, code: "aggregation", message: e.to_string() }).collect();
        Prepared { events: rows.len(), ops, rows: rows.len(), failures }
    }

    /// Run the transform over `events` (CPU; call from a blocking context) and fold the rows.
    pub fn transform_batch(&self, events: &[Event]) -> (Vec<crate::aggregate::ops::EntityOps>, usize, Vec<EventFailure>) {
        let started = Instant::now();
        let (rows, row_event, mut failures) = self.transform_rows(events);
        let (ops, fold_errors) = fold(&self.plan, &rows);
        for (ri, e) in fold_errors {
            failures.push(EventFailure { index: row_event[ri], code: "aggregation", message: e.to_string() });
        }
        failures.sort_by_key(|f| f.index);
        self.metrics.transform_seconds.observe(&self.id, started.elapsed().as_secs_f64());
        (ops, rows.len(), failures)
    }

    /// Process a batch end to end. `mark` makes the write effectively-once for its source.
    /// Transform + fold a batch (CPU, on a blocking-capable thread); nothing is written yet.
    pub fn prepare(&self, events: &[Event]) -> Prepared {
        let (ops, rows, failures) = tokio::task::block_in_place(|| self.transform_batch(events));
        Prepared { events: events.len(), ops, rows, failures }
    }

    /// Write a prepared batch atomically (with its watermark). Safe to retry: a retry after a
    /// lost reply is refused as `Stale` rather than applied twice.
    pub async fn commit(&self, store: &dyn OnlineStore, prepared: &Prepared, mark: Option<SourceMark>) -> Result<Applied, StoreError> {
        let batch = WriteBatch { view: &self.id, mark, entities: &prepared.ops, keep_ms: self.keep_ms, retention: &self.retention };
        let applied = store.apply(&batch).await?;
        if applied == Applied::Applied {
            self.metrics.events.add(&self.id, "ok", prepared.events.saturating_sub(prepared.failures.len()) as u64);
            for f in &prepared.failures {
                self.metrics.events.add(&self.id, f.code, 1);
            }
            self.metrics.rows.add(&self.id, "written", prepared.rows as u64);
        }
        Ok(applied)
    }

    /// Process a batch end to end (prepare, then commit).
    pub async fn process(&self, store: &dyn OnlineStore, events: &[Event], mark: Option<SourceMark>) -> Result<BatchOutcome, StoreError> {
        let prepared = self.prepare(events);
        let applied = self.commit(store, &prepared, mark).await?;
        Ok(BatchOutcome { applied, rows: prepared.rows, failures: prepared.failures })
    }

    /// Read features of several entities at time `t` (one store round trip).
    pub async fn read(&self, store: &dyn OnlineStore, entities: &[&str], features: &[String], t: i64) -> Result<Result<Vec<Vec<Served>>, UnknownFeatures>, StoreError> {
        let unknown: Vec<String> = features.iter().filter(|f| !self.features.contains_key(f.as_str())).cloned().collect();
        if !unknown.is_empty() {
            return Ok(Err(UnknownFeatures { view: self.spec.name.clone(), unknown }));
        }
        let plans: Vec<FeatureRef> = features.iter().map(|f| self.features[f.as_str()]).collect();
        let (mut fields, mut hlls) = (Vec::new(), Vec::new());
        for p in &plans {
            match *p {
                FeatureRef::Latest(i) => fields.push(crate::aggregate::ops::latest_field(&self.spec.latest[i].0)),
                FeatureRef::Agg(i, w, _) => fields_for(&self.spec.aggs[i], w, t, &mut fields, &mut hlls),
            }
        }
        fields.sort();
        fields.dedup();
        let records = store.read(&self.id, entities, &fields, &hlls).await?;
        Ok(Ok(records
            .iter()
            .map(|rec| {
                let empty = rec.is_empty();
                plans
                    .iter()
                    .map(|p| match *p {
                        FeatureRef::Latest(i) => match latest(&self.spec.latest[i].0, self.spec.latest[i].1, rec as &dyn FieldSource) {
                            None => Served { value: Value::Null, status: Status::Missing, event_time_ms: None },
                            Some((et, _)) if t - et > self.spec.ttl_ms => Served { value: Value::Null, status: Status::Expired, event_time_ms: Some(et) },
                            Some((et, v)) => Served { value: v, status: Status::Present, event_time_ms: Some(et) },
                        },
                        FeatureRef::Agg(i, w, ct) => Served {
                            value: compute(&self.spec.aggs[i], w, t, ct, rec),
                            status: if empty { Status::Missing } else { Status::Present },
                            event_time_ms: None,
                        },
                    })
                    .collect()
            })
            .collect()))
    }
}

fn failure(index: usize, e: &TransformError) -> EventFailure {
    EventFailure { index, code: e.code(), message: e.to_string() }
}
