//! The point-in-time sweep: for every (entity, t) of a spine, the value each feature had at `t`.
//!
//! It runs the online code, not a copy of it: rows come from the view's transform
//! ([`View::transform_rows`]), are folded by the same aggregator ([`View::prepare_rows`] →
//! `aggregate::fold`) into the same kind of store the online path writes (an in-process
//! [`EmbeddedStore`], one per entity, with the same tile retention), and are read back with the
//! serving read ([`View::read`]: `fields_for` / `compute` / `latest`, the TTL rule) at `t`.
//!
//! Point-in-time correctness: each entity's rows are sorted by event time and its spine points
//! by `t`; before reading at `t`, exactly the rows with event time `e ≤ t` have been applied. So
//! an aggregation read at `t` covers the rows with `floor(t/g)·g + g − W ≤ e ≤ t` (the window
//! semantics in [`crate::aggregate`]), a plain feature is the latest row with `e ≤ t` (expired
//! once `t − e` exceeds the view's TTL, as online), and no event after `t` is ever visible.

use std::collections::{HashMap, HashSet};

use crate::bindings::types::{Event, FeatureRow, Value};
use crate::pipeline::{EventFailure, View};
use crate::store::StoreError;
use crate::store::embedded::EmbeddedStore;

/// The transformed history of one view, kept only for the entities a spine asks about.
pub struct History {
    wanted: HashSet<String>,
    by_entity: HashMap<String, Vec<FeatureRow>>,
    /// Events transformed, events that failed, rows kept.
    pub events: u64,
    pub failed: u64,
    pub rows: u64,
}

impl History {
    /// A history that keeps rows of `entities` only (rows of other entities are dropped as they
    /// are produced, so memory is bounded by the spine's entities, not the log).
    pub fn new<'a>(entities: impl IntoIterator<Item = &'a str>) -> Self {
        Self { wanted: entities.into_iter().map(String::from).collect(), by_entity: HashMap::new(), events: 0, failed: 0, rows: 0 }
    }

    /// Transform a batch of events with the view's transform and keep the rows that matter.
    /// Returns the events that failed (index into `events`).
    pub fn add(&mut self, view: &View, events: &[Event]) -> Vec<EventFailure> {
        let (rows, _, failures) = view.transform_rows(events);
        self.events += events.len() as u64;
        self.failed += failures.len() as u64;
        for mut row in rows {
            if !self.wanted.contains(&row.entity_key) {
                continue;
            }
            row.features.retain(|f| view.uses_column(&f.name));
            row.features.shrink_to_fit();
            self.rows += 1;
            match self.by_entity.get_mut(&row.entity_key) {
                Some(v) => v.push(row),
                None => {
                    self.by_entity.insert(row.entity_key.clone(), vec![row]);
                }
            }
        }
        failures
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Unknown(#[from] crate::pipeline::UnknownFeatures),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("a sweep thread panicked")]
    Panicked,
}

/// Values of `features` (of `view`) for every spine row: `out[row][feature]`. A row whose entity
/// or time is null gets nulls. Work is split by entity over `threads` threads.
pub fn sweep(
    view: &View,
    history: History,
    entities: &[Option<String>],
    times: &[Option<i64>],
    features: &[String],
    threads: usize,
) -> Result<Vec<Vec<Value>>, SweepError> {
    let mut points: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, (e, t)) in entities.iter().zip(times).enumerate() {
        if let (Some(e), Some(_)) = (e, t) {
            points.entry(e.as_str()).or_default().push(i);
        }
    }
    let mut by_entity = history.by_entity;
    let mut work: Vec<(&str, Vec<usize>, Vec<FeatureRow>)> =
        points.into_iter().map(|(e, idx)| (e, idx, by_entity.remove(e).unwrap_or_default())).collect();
    drop(by_entity);
    // Balance threads by rows + points.
    work.sort_by_key(|(_, idx, rows)| std::cmp::Reverse(rows.len() + idx.len()));
    let threads = threads.clamp(1, 64);
    let mut shards: Vec<Vec<(&str, Vec<usize>, Vec<FeatureRow>)>> = (0..threads).map(|_| Vec::new()).collect();
    let mut load = vec![0usize; threads];
    for w in work {
        let s = (0..threads).min_by_key(|s| load[*s]).unwrap_or(0);
        load[s] += w.2.len() + w.1.len();
        shards[s].push(w);
    }
    let mut out: Vec<Vec<Value>> = vec![Vec::new(); entities.len()];
    let results: Vec<Result<Vec<(usize, Vec<Value>)>, SweepError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = shards
            .into_iter()
            .map(|shard| scope.spawn(move || sweep_shard(view, shard, times, features)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(Err(SweepError::Panicked))).collect()
    });
    for r in results {
        for (i, vals) in r? {
            out[i] = vals;
        }
    }
    for v in &mut out {
        if v.is_empty() {
            *v = vec![Value::Null; features.len()];
        }
    }
    Ok(out)
}

fn sweep_shard(view: &View, shard: Vec<(&str, Vec<usize>, Vec<FeatureRow>)>, times: &[Option<i64>], features: &[String]) -> Result<Vec<(usize, Vec<Value>)>, SweepError> {
    let mut out = Vec::new();
    for (entity, mut idx, mut rows) in shard {
        rows.sort_by_key(|r| r.event_time_ms);
        idx.sort_by_key(|i| times[*i]);
        let store = EmbeddedStore::new();
        let mut applied = 0;
        for i in idx {
            let Some(t) = times[i] else { continue };
            let end = applied + rows[applied..].partition_point(|r| r.event_time_ms <= t);
            if end > applied {
                let prepared = view.prepare_rows(&rows[applied..end]);
                futures::executor::block_on(view.commit(&store, &prepared, None))?;
                applied = end;
            }
            let served = futures::executor::block_on(view.read(&store, &[entity], features, t))??;
            let vals = served.into_iter().next().unwrap_or_default().into_iter().map(|s| s.value).collect();
            out.push((i, vals));
        }
    }
    Ok(out)
}
