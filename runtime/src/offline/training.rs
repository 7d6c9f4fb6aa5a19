//! A training-data job: feature references, event sources per view, the spine → feature columns.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::event_files::{EventBatch, EventFile, EventFileError};
use super::parquet_out::FeatureColumn;
use super::point_in_time::{History, SweepError, sweep};
use super::spine::{Spine, SpineError};
use crate::bindings::types::Event;
use crate::pipeline::View;

#[derive(Debug, thiserror::Error)]
pub enum TrainingError {
    #[error("feature `{0}`: expected `view:feature`")]
    BadFeatureRef(String),
    #[error("no view `{view}` in the manifest (views: {known})")]
    UnknownView { view: String, known: String },
    #[error("view `{view}` has no feature `{feature}` (features: {known})")]
    UnknownFeature { view: String, feature: String, known: String },
    #[error("no events given for view `{0}` (pass --events FILE or --events {0}=FILE)")]
    NoEvents(String),
    #[error("two output columns would be named `{0}` (use --full-names for `view__feature` columns)")]
    DuplicateColumn(String),
    #[error(transparent)]
    Events(#[from] EventFileError),
    #[error(transparent)]
    Spine(#[from] SpineError),
    #[error(transparent)]
    Sweep(#[from] SweepError),
}

/// `view:feature`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureRef {
    pub view: String,
    pub feature: String,
}

/// Parse `view:feature,view:feature,...` (whitespace around items is ignored).
pub fn parse_features(list: &str) -> Result<Vec<FeatureRef>, TrainingError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once(':') {
            Some((v, f)) if !v.is_empty() && !f.is_empty() => Ok(FeatureRef { view: v.into(), feature: f.into() }),
            _ => Err(TrainingError::BadFeatureRef(s.into())),
        })
        .collect()
}

/// Where a view's history comes from.
pub enum EventSource {
    /// Event files (JSONL or Parquet), read in order.
    Files(Vec<PathBuf>),
    /// Events in memory (the HTTP API's small jobs).
    Inline(Vec<Event>),
}

/// A job: which features, from which events, how the spine names its columns.
pub struct TrainingJob<'a> {
    pub views: &'a HashMap<String, Arc<View>>,
    pub features: Vec<FeatureRef>,
    /// Per view name; the entry `""` applies to every view without its own.
    pub events: HashMap<String, EventSource>,
    /// The spine's entity column for every view (default: the view's `entity`).
    pub entity_column: Option<String>,
    pub time_column: String,
    /// Name feature columns `view__feature` instead of `feature`.
    pub full_names: bool,
    pub batch_size: usize,
    pub threads: usize,
    /// Default topic of file events per view (the view's Kafka topic, so transforms see the
    /// same `topic` offline as online); the view's name when absent.
    pub topics: HashMap<String, String>,
}

/// What a job did.
#[derive(Debug, Default, Clone)]
pub struct TrainingStats {
    pub events: u64,
    pub failed_events: u64,
    pub rows_kept: u64,
    pub spine_rows: usize,
}

/// Run the job over `spine`: one column per requested feature, in request order, aligned with
/// the spine's rows. `on_events` is called with the number of events read so far.
pub fn run(job: &TrainingJob<'_>, spine: &Spine, on_events: &mut dyn FnMut(u64)) -> Result<(Vec<FeatureColumn>, TrainingStats), TrainingError> {
    let mut stats = TrainingStats { spine_rows: spine.rows, ..Default::default() };
    // Resolve and group the requested features by view, keeping request order for the output.
    let mut per_view: Vec<(Arc<View>, Vec<(usize, String)>)> = Vec::new();
    let mut names: Vec<String> = Vec::with_capacity(job.features.len());
    let mut types = Vec::with_capacity(job.features.len());
    for (i, f) in job.features.iter().enumerate() {
        let view = job.views.get(&f.view).ok_or_else(|| {
            let mut known: Vec<&str> = job.views.keys().map(String::as_str).collect();
            known.sort_unstable();
            TrainingError::UnknownView { view: f.view.clone(), known: known.join(", ") }
        })?;
        let ft = view.spec.feature_types();
        let ty = ft.iter().find(|(n, _)| *n == f.feature).map(|(_, t)| *t).ok_or_else(|| TrainingError::UnknownFeature {
            view: f.view.clone(),
            feature: f.feature.clone(),
            known: ft.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", "),
        })?;
        let name = if job.full_names { format!("{}__{}", f.view, f.feature) } else { f.feature.clone() };
        if names.contains(&name) {
            return Err(TrainingError::DuplicateColumn(name));
        }
        names.push(name);
        types.push(ty);
        match per_view.iter_mut().find(|(v, _)| v.spec.name == f.view) {
            Some((_, fs)) => fs.push((i, f.feature.clone())),
            None => per_view.push((view.clone(), vec![(i, f.feature.clone())])),
        }
    }
    let times = spine.times(&job.time_column)?;
    let mut columns: Vec<Vec<crate::bindings::types::Value>> = vec![Vec::new(); job.features.len()];
    let mut read_so_far = 0u64;
    for (view, feats) in &per_view {
        let entity_col = job.entity_column.clone().unwrap_or_else(|| view.spec.entity.clone());
        let entities = spine.entities(&entity_col)?;
        let mut history = History::new(entities.iter().flatten().map(String::as_str));
        let source = job.events.get(&view.spec.name).or_else(|| job.events.get("")).ok_or_else(|| TrainingError::NoEvents(view.spec.name.clone()))?;
        match source {
            EventSource::Inline(events) => {
                for chunk in events.chunks(job.batch_size.max(1)) {
                    history.add(view, chunk);
                }
            }
            EventSource::Files(paths) => {
                let mut batch = EventBatch::default();
                for p in paths {
                    let topic = job.topics.get(&view.spec.name).unwrap_or(&view.spec.name);
                    let mut f = EventFile::open(p, topic, 0)?;
                    while f.next_batch(job.batch_size, &mut batch)? {
                        stats.failed_events += batch.invalid.len() as u64;
                        read_so_far += (batch.events.len() + batch.invalid.len()) as u64;
                        history.add(view, &batch.events);
                        on_events(read_so_far);
                    }
                }
            }
        }
        stats.events += history.events;
        stats.failed_events += history.failed;
        stats.rows_kept += history.rows;
        let fnames: Vec<String> = feats.iter().map(|(_, f)| f.clone()).collect();
        let mut values = sweep(view, history, &entities, &times, &fnames, job.threads)?;
        for (k, (i, _)) in feats.iter().enumerate() {
            columns[*i] = values.iter_mut().map(|row| std::mem::replace(&mut row[k], crate::bindings::types::Value::Null)).collect();
        }
    }
    let out = names
        .into_iter()
        .zip(types)
        .zip(columns)
        .map(|((name, ty), values)| FeatureColumn { name, ty, values })
        .collect();
    Ok((out, stats))
}
