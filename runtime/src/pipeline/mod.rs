//! The streaming pipeline shared by every source (Kafka, HTTP push, backfill):
//! events → batched Wasm call → schema validation → fold into tile ops → one atomic store write.

pub mod metrics;

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
    pub metrics: Arc<Metrics>,
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
        Self { id: format!("{tenant}/{}", spec.name), spec, transform, plan, retention, keep_ms, workers: Mutex::new(Vec::new()), metrics }
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

    /// Run the transform over `events` (CPU; call from a blocking context) and fold the rows.
    pub fn transform_batch(&self, events: &[Event]) -> (Vec<crate::aggregate::ops::EntityOps>, usize, Vec<EventFailure>) {
        let started = Instant::now();
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
        let (ops, fold_errors) = fold(&self.plan, &rows);
        for (ri, e) in fold_errors {
            failures.push(EventFailure { index: row_event[ri], code: "aggregation", message: e.to_string() });
        }
        failures.sort_by_key(|f| f.index);
        self.metrics.transform_seconds.observe(&self.id, started.elapsed().as_secs_f64());
        (ops, rows.len(), failures)
    }

    /// Process a batch end to end. `mark` makes the write effectively-once for its source.
    pub async fn process(&self, store: &dyn OnlineStore, events: &[Event], mark: Option<SourceMark>) -> Result<BatchOutcome, StoreError> {
        let (ops, rows, failures) = tokio::task::block_in_place(|| self.transform_batch(events));
        let batch = WriteBatch { view: &self.id, mark, entities: &ops, keep_ms: self.keep_ms, retention: &self.retention };
        let applied = store.apply(&batch).await?;
        if applied == Applied::Applied {
            self.metrics.events.add(&self.id, "ok", (events.len() - failures.len()) as u64);
            for f in &failures {
                self.metrics.events.add(&self.id, f.code, 1);
            }
            self.metrics.rows.add(&self.id, "written", rows as u64);
        }
        Ok(BatchOutcome { applied, rows, failures })
    }

    /// Read features of several entities at time `t` (one store round trip).
    pub async fn read(&self, store: &dyn OnlineStore, entities: &[&str], features: &[String], t: i64) -> Result<Result<Vec<Vec<Served>>, UnknownFeatures>, StoreError> {
        let types = self.spec.feature_types();
        let unknown: Vec<String> = features.iter().filter(|f| !types.iter().any(|(n, _)| n == *f)).cloned().collect();
        if !unknown.is_empty() {
            return Ok(Err(UnknownFeatures { view: self.spec.name.clone(), unknown }));
        }
        enum Plan<'a> {
            Latest(&'a str, ValueType),
            Agg(&'a crate::aggregate::AggSpec, Window, ValueType),
        }
        let mut plans = Vec::with_capacity(features.len());
        let (mut fields, mut hlls) = (Vec::new(), Vec::new());
        for f in features {
            if let Some((n, t_)) = self.spec.latest.iter().find(|(n, _)| n == f) {
                fields.push(crate::aggregate::ops::latest_field(n));
                plans.push(Plan::Latest(n, *t_));
                continue;
            }
            for a in &self.spec.aggs {
                if let Some(w) = a.windows.iter().find(|w| a.feature_name(**w) == *f) {
                    fields_for(a, *w, t, &mut fields, &mut hlls);
                    plans.push(Plan::Agg(a, *w, self.spec.column_type(&a.column)));
                    break;
                }
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
                    .map(|p| match p {
                        Plan::Latest(n, ty) => match latest(n, *ty, rec as &dyn FieldSource) {
                            None => Served { value: Value::Null, status: Status::Missing, event_time_ms: None },
                            Some((et, _)) if t - et > self.spec.ttl_ms => Served { value: Value::Null, status: Status::Expired, event_time_ms: Some(et) },
                            Some((et, v)) => Served { value: v, status: Status::Present, event_time_ms: Some(et) },
                        },
                        Plan::Agg(a, w, ct) => Served {
                            value: compute(a, *w, t, *ct, rec),
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
