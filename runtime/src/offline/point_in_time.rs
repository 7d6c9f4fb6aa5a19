//! The point-in-time sweep: for every (entity, t) of a spine, the value each feature had at `t`.
//!
//! It runs the online code, not a copy of it: rows come from each view's transform
//! ([`StreamView::transform_rows`]), are folded by the same aggregator ([`StreamView::prepare_rows`] →
//! `aggregate::fold`) into the same kind of store the online path writes (an in-process
//! [`EmbeddedStore`] per entity, same merge ops and tile retention), and every spine row is
//! served by the online serving entry point, [`Catalog::get`], at `t`: stored features through
//! `StoredView::read` (`fields_for` / `compute` / `latest`, the TTL rule), request features by
//! calling the request view's transform with the spine row's request params and the stored
//! features it reads, as of `t`.
//!
//! Batch views replay too: their history is the rows of their source file, each at its event
//! time, written as `wafer materialize` writes them ([`crate::materialize::write_rows`]: newest
//! event time wins), so a batch feature at `t` is its latest row with `e ≤ t`, expired past the
//! view's TTL, as online.
//!
//! Point-in-time correctness: each entity's rows are sorted by event time and its spine points
//! by `t`; before serving at `t`, exactly the rows with event time `e ≤ t` have been applied. So
//! an aggregation read at `t` covers the rows with `floor(t/g)·g + g − W ≤ e ≤ t` (the window
//! semantics in [`crate::aggregate`]), a plain feature is the latest row with `e ≤ t` (expired
//! once `t − e` exceeds the view's TTL, as online), and no event after `t` is ever visible.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value as Json;

use crate::bindings::types::{Event, FeatureRow, Value};
use crate::pipeline::{EventFailure, StreamView};
use crate::serving::{Catalog, Entities, Plan, ServeError, StoredView};
use crate::store::embedded::EmbeddedStore;
use crate::store::{OnlineStore, StoreError};

/// A view whose history a sweep replays into its store.
#[derive(Clone)]
pub enum Replay {
    /// Events through the view's transform, folded as the streaming pipeline folds them.
    Stream(Arc<StreamView>),
    /// Rows of a batch view's source file, written as `wafer materialize` writes them.
    Batch(Arc<StoredView>),
}

impl Replay {
    /// The view's name.
    pub fn name(&self) -> &str {
        match self {
            Replay::Stream(v) => &v.spec.name,
            Replay::Batch(v) => v.name(),
        }
    }

    /// Write `rows` (sorted by event time) into `store`, as the online path would.
    async fn apply(&self, store: &dyn OnlineStore, rows: &[FeatureRow]) -> Result<(), StoreError> {
        match self {
            Replay::Stream(view) => {
                let prepared = view.prepare_rows(rows);
                view.commit(store, &prepared, None).await?;
            }
            Replay::Batch(view) => {
                crate::materialize::write_rows(store, &view.id, &view.spec, rows, None).await?;
            }
        }
        Ok(())
    }
}

/// Receives every transformed row of a batch and the number of events that failed.
pub type RowSink<'a> = dyn FnMut(&[FeatureRow], usize) + 'a;

/// The transformed history of the views of one entity type, kept only for the entities a spine
/// asks about.
pub struct History {
    views: usize,
    wanted: HashSet<String>,
    /// Entity → per view (index into the sweep's `views`), its rows.
    by_entity: HashMap<String, Vec<Vec<FeatureRow>>>,
    /// Events transformed, events that failed, rows kept.
    pub events: u64,
    pub failed: u64,
    pub rows: u64,
}

impl History {
    /// A history of `views` views that keeps rows of `entities` only (rows of other entities
    /// are dropped as they are produced: memory is bounded by the spine's entities, not the log).
    pub fn new<'a>(views: usize, entities: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            views,
            wanted: entities.into_iter().map(String::from).collect(),
            by_entity: HashMap::new(),
            events: 0,
            failed: 0,
            rows: 0,
        }
    }

    /// Transform a batch of events with view number `vi`'s transform and keep the rows that
    /// matter. Returns the events that failed (index into `events`).
    pub fn add(&mut self, vi: usize, view: &StreamView, events: &[Event]) -> Vec<EventFailure> {
        self.add_with(vi, view, events, None)
    }

    /// [`History::add`], also handing every row (of any entity, with only the columns the view
    /// uses) and the number of failed events to `sink` (the row cache).
    pub fn add_with(
        &mut self,
        vi: usize,
        view: &StreamView,
        events: &[Event],
        sink: Option<&mut RowSink<'_>>,
    ) -> Vec<EventFailure> {
        let (mut rows, _, failures) = view.transform_rows(events);
        self.events += events.len() as u64;
        self.failed += failures.len() as u64;
        // With a sink every row is trimmed first; without one only the rows kept are.
        let trimmed = sink.is_some();
        if let Some(sink) = sink {
            for row in &mut rows {
                row.features.retain(|f| view.uses_column(&f.name));
            }
            sink(&rows, failures.len());
        }
        for mut row in rows {
            if !self.wanted.contains(&row.entity_key) {
                continue;
            }
            if !trimmed {
                row.features.retain(|f| view.uses_column(&f.name));
            }
            row.features.shrink_to_fit();
            self.rows += 1;
            self.keep(vi, row);
        }
        failures
    }

    /// Keep the rows (a batch view's, already typed) of wanted entities for view number `vi`.
    pub fn add_rows(&mut self, vi: usize, rows: Vec<FeatureRow>) {
        for row in rows {
            if !self.wanted.contains(&row.entity_key) {
                continue;
            }
            self.rows += 1;
            self.keep(vi, row);
        }
    }

    fn keep(&mut self, vi: usize, row: FeatureRow) {
        let per_view = match self.by_entity.get_mut(&row.entity_key) {
            Some(v) => v,
            None => self.by_entity.entry(row.entity_key.clone()).or_insert_with(|| vec![Vec::new(); self.views]),
        };
        per_view[vi].push(row);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("spine row {row}: {error}")]
    Serve { row: usize, error: ServeError },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("starting the sweep runtime: {0}")]
    Runtime(std::io::Error),
    #[error("a sweep thread panicked")]
    Panicked,
}

/// What to serve: a catalog plan over features of one entity type, and the views whose history
/// feeds it (the views the `History` was built with, in the same order).
pub struct Sweep<'a> {
    pub catalog: &'a Catalog,
    pub plan: &'a Plan,
    pub views: &'a [Replay],
    /// Request params of a spine row (`{param: [value]}`), for request views.
    pub params: &'a (dyn Fn(usize) -> HashMap<String, Vec<Json>> + Sync),
    pub threads: usize,
    /// Counts spine rows as they are served (for progress bars).
    pub swept: Option<&'a std::sync::atomic::AtomicU64>,
}

/// One shard's swept rows: (spine row, feature values), or why the shard failed.
type ShardResult = Result<Vec<(usize, Vec<Value>)>, SweepError>;

/// Values of the plan's features for every spine row: `out[row][feature]`. A row whose entity
/// or time is null gets nulls. Work is split by entity over `threads` threads.
pub fn sweep(
    s: &Sweep<'_>,
    history: History,
    entities: &[Option<String>],
    times: &[Option<i64>],
) -> Result<Vec<Vec<Value>>, SweepError> {
    let width = s.plan.names.len();
    let mut points: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, (e, t)) in entities.iter().zip(times).enumerate() {
        if let (Some(e), Some(_)) = (e, t) {
            points.entry(e.as_str()).or_default().push(i);
        }
    }
    let mut by_entity = history.by_entity;
    let mut work: Vec<Work<'_>> = points
        .into_iter()
        .map(|(e, idx)| {
            let rows = by_entity.remove(e).unwrap_or_else(|| vec![Vec::new(); s.views.len()]);
            Work { entity: e, points: idx, rows }
        })
        .collect();
    drop(by_entity);
    // Balance threads by rows + points, biggest first.
    let weight = |w: &Work<'_>| w.rows.iter().map(Vec::len).sum::<usize>() + w.points.len();
    work.sort_by_key(|w| std::cmp::Reverse(weight(w)));
    let threads = s.threads.clamp(1, 64);
    let mut shards: Vec<Vec<Work<'_>>> = (0..threads).map(|_| Vec::new()).collect();
    let mut load = vec![0usize; threads];
    for w in work {
        let k = (0..threads).min_by_key(|k| load[*k]).unwrap_or(0);
        load[k] += weight(&w);
        shards[k].push(w);
    }
    // One runtime (for the store's I/O and WASI's blocking work); each shard drives its own sweep.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(SweepError::Runtime)?;
    let handle = rt.handle();
    let results: Vec<ShardResult> = std::thread::scope(|scope| {
        let handles: Vec<_> = shards
            .into_iter()
            .map(|shard| scope.spawn(move || handle.block_on(sweep_shard(s, shard, times))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(Err(SweepError::Panicked))).collect()
    });
    let mut out: Vec<Vec<Value>> = vec![Vec::new(); entities.len()];
    for r in results {
        for (i, vals) in r? {
            out[i] = vals;
        }
    }
    for v in &mut out {
        if v.is_empty() {
            *v = vec![Value::Null; width];
        }
    }
    Ok(out)
}

struct Work<'a> {
    entity: &'a str,
    points: Vec<usize>,
    rows: Vec<Vec<FeatureRow>>,
}

async fn sweep_shard(
    s: &Sweep<'_>,
    shard: Vec<Work<'_>>,
    times: &[Option<i64>],
) -> Result<Vec<(usize, Vec<Value>)>, SweepError> {
    let mut out = Vec::new();
    for Work { entity, points: mut idx, mut rows } in shard {
        for r in &mut rows {
            r.sort_by_key(|r| r.event_time_ms);
        }
        idx.sort_by_key(|i| times[*i]);
        let store = EmbeddedStore::new();
        let mut applied = vec![0usize; rows.len()];
        let keys = [entity.to_string()];
        for i in idx {
            let Some(t) = times[i] else { continue };
            for (vi, view) in s.views.iter().enumerate() {
                let (from, rs) = (applied[vi], &rows[vi]);
                let end = from + rs[from..].partition_point(|r| r.event_time_ms <= t);
                if end > from {
                    view.apply(&store, &rs[from..end]).await?;
                    applied[vi] = end;
                }
            }
            let table = s
                .catalog
                .get(&store, s.plan, &Entities::All(&keys), &(s.params)(i), t)
                .await
                .map_err(|error| SweepError::Serve { row: i, error })?;
            let vals = table.rows.into_iter().next().unwrap_or_default().into_iter().map(|v| v.value).collect();
            out.push((i, vals));
            if let Some(swept) = s.swept {
                swept.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
    Ok(out)
}
