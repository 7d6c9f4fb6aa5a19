//! A training-data job: feature references, event sources per view, the spine → feature columns.
//!
//! Features are grouped by entity type (a stream view's `entity`; a request view's is that of the
//! views it reads): each group is served by one catalog plan at every spine row, with the spine's
//! entity column of that type, after replaying the stream views the plan reads.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use serde_json::Value as Json;

use super::columns::json_cell;
use super::event_files::{EventBatch, EventFile, EventFileError};
use super::parquet_out::FeatureColumn;
use super::point_in_time::{History, Replay, Sweep, SweepError, sweep};
use super::row_cache::{Counts, RowCache};
use super::spine::{Spine, SpineError};
use crate::bindings::types::{Event, Value};
use crate::pipeline::StreamView;
use crate::serving::{Catalog, ServeError};
use crate::view::BatchViewConfig;

#[derive(Debug, thiserror::Error)]
pub enum TrainingError {
    #[error("feature `{0}`: expected `view:feature`")]
    BadFeatureRef(String),
    #[error(transparent)]
    Resolve(#[from] ServeError),
    #[error(
        "batch view `{view}` has no history to replay: give its file (`source` in the manifest, or --events {view}=FILE)"
    )]
    BatchView { view: String },
    #[error("batch view `{view}`: its history must be a file (Parquet, CSV or JSONL), not {given}")]
    BatchSource { view: String, given: &'static str },
    #[error("batch view `{view}`: {source}")]
    BatchRead { view: String, source: crate::materialize::MaterializeError },
    #[error("no events given for view `{0}` (pass --events FILE or --events {0}=FILE)")]
    NoEvents(String),
    #[error("two output columns would be named `{0}` (use --full-names for `view__feature` columns)")]
    DuplicateColumn(String),
    #[error("request param `{0}` has no column of that name in the spine")]
    MissingParam(String),
    #[error("spine column `{0}` (a request param) has a type that cannot be passed to a transform")]
    ParamType(String),
    #[error(transparent)]
    Events(#[from] EventFileError),
    #[error(transparent)]
    EventPaths(#[from] super::event_paths::EventPathError),
    #[error(transparent)]
    RowCache(#[from] super::row_cache::RowCacheError),
    #[error(transparent)]
    Spine(#[from] SpineError),
    #[error(transparent)]
    Sweep(#[from] SweepError),
    #[error(
        "--shard needs one spine entity column, but these features read {0}: run one job per entity type, or name one column with --entity-column"
    )]
    ShardColumns(String),
    #[error(
        "--shard: the requested features read no entity (request views without stored reads), so there is nothing to shard by"
    )]
    NothingToShard,
}

/// `view:feature`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureRef {
    pub view: String,
    pub feature: String,
}

impl FeatureRef {
    pub fn full(&self) -> String {
        format!("{}:{}", self.view, self.feature)
    }
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
    /// Arrow record batches with the columns of a Parquet event file (the Python package's
    /// tables), read by the same code as Parquet files.
    Arrow(Vec<arrow_array::RecordBatch>),
}

/// A job: which features, from which events, how the spine names its columns.
pub struct TrainingJob<'a> {
    /// Stream views by name (their transforms replay the history).
    pub views: &'a HashMap<String, Arc<StreamView>>,
    /// Everything servable (stream, batch and request views), as `wafer serve` builds it.
    pub catalog: &'a Catalog,
    /// Batch views' configs (their `source` is their history: each row at its event time).
    pub batches: &'a [BatchViewConfig],
    pub features: Vec<FeatureRef>,
    /// Per stream view name; the entry `""` applies to every stream view without its own. A batch
    /// view's entry (files only) replaces its configured `source`.
    pub events: HashMap<String, EventSource>,
    /// The spine's entity column for every entity type (default: the entity type's name).
    pub entity_column: Option<String>,
    pub time_column: String,
    /// Name feature columns `view__feature` instead of `feature`.
    pub full_names: bool,
    pub batch_size: usize,
    pub threads: usize,
    /// A directory of cached transformed rows ([`super::row_cache`]): file histories already
    /// transformed by the same component are read from it instead of being transformed again.
    pub row_cache: Option<PathBuf>,
    /// Default topic of file events per view (the view's Kafka topic, so transforms see the
    /// same `topic` offline as online); the view's name when absent.
    pub topics: HashMap<String, String>,
}

/// How far a running job is, for progress bars: read by another thread while the job runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Events (and batch-view rows) read so far, good and bad.
    pub events: std::sync::atomic::AtomicU64,
    /// Spine rows served so far (every entity group counts its rows).
    pub swept: std::sync::atomic::AtomicU64,
    /// Spine rows to serve in all (known once the first group starts its sweep).
    pub to_sweep: std::sync::atomic::AtomicU64,
}

/// What a job did.
#[derive(Debug, Default, Clone)]
pub struct TrainingStats {
    pub events: u64,
    pub failed_events: u64,
    pub rows_kept: u64,
    pub spine_rows: usize,
    /// Event files read, and Hive partitions skipped because they start after the last spine time.
    pub files_read: usize,
    pub files_pruned: usize,
    /// Stream views whose rows came from the row cache (their transform did not run).
    pub cached_views: usize,
    /// Seconds reading + transforming events, and sweeping (folding + serving at every row).
    pub transform_secs: f64,
    pub sweep_secs: f64,
}

/// One entity type's share of the job.
struct Group {
    /// `None`: request views that read no stored features.
    entity: Option<String>,
    /// (output column, `view:feature`).
    features: Vec<(usize, String)>,
    /// Views replayed for this group.
    views: Vec<Replay>,
    /// Request params the group's request views take.
    params: Vec<String>,
}

/// Run the job over `spine`: one column per requested feature, in request order, aligned with
/// the spine's rows. `progress` counts events read and spine rows served as the job runs.
pub fn run(
    job: &TrainingJob<'_>,
    spine: &Spine,
    progress: &Progress,
) -> Result<(Vec<FeatureColumn>, TrainingStats), TrainingError> {
    let mut stats = TrainingStats { spine_rows: spine.rows, ..Default::default() };
    let full: Vec<String> = job.features.iter().map(FeatureRef::full).collect();
    // Resolve everything up front: unknown views/features are all named at once.
    job.catalog.plan(&full, None)?;
    let mut names = Vec::with_capacity(full.len());
    let mut types = Vec::with_capacity(full.len());
    let mut groups: Vec<Group> = Vec::new();
    for (i, f) in job.features.iter().enumerate() {
        let name = if job.full_names { format!("{}__{}", f.view, f.feature) } else { f.feature.clone() };
        if names.contains(&name) {
            return Err(TrainingError::DuplicateColumn(name));
        }
        names.push(name);
        types.push(job.catalog.value_type(&full[i]).ok_or_else(|| ServeError::UnknownFeatures(vec![full[i].clone()]))?);
        let (entity, views, params) = sources(job, &f.view)?;
        let g = match groups.iter().position(|g| g.entity == entity) {
            Some(g) => g,
            None => {
                groups.push(Group { entity, features: Vec::new(), views: Vec::new(), params: Vec::new() });
                groups.len() - 1
            }
        };
        let g = &mut groups[g];
        g.features.push((i, full[i].clone()));
        for v in views {
            if !g.views.iter().any(|x| x.name() == v.name()) {
                g.views.push(v);
            }
        }
        for p in params {
            if !g.params.contains(&p) {
                g.params.push(p);
            }
        }
    }
    let times = spine.times(&job.time_column)?;
    let last_time = times.iter().flatten().max().copied();
    let mut columns: Vec<Vec<Value>> = vec![Vec::new(); job.features.len()];
    for g in &groups {
        let started = std::time::Instant::now();
        let entities: Vec<Option<String>> = match &g.entity {
            Some(e) => spine.entities(job.entity_column.as_deref().unwrap_or(e))?,
            None => vec![Some(String::new()); spine.rows],
        };
        let mut history = History::new(g.views.len(), entities.iter().flatten().map(String::as_str));
        for (vi, replay) in g.views.iter().enumerate() {
            let view = match replay {
                Replay::Stream(view) => view,
                Replay::Batch(stored) => {
                    read_batch_history(job, stored, vi, &mut history, &mut stats, progress)?;
                    continue;
                }
            };
            let source = job
                .events
                .get(&view.spec.name)
                .or_else(|| job.events.get(""))
                .ok_or_else(|| TrainingError::NoEvents(view.spec.name.clone()))?;
            let topic = job.topics.get(&view.spec.name).unwrap_or(&view.spec.name);
            match source {
                EventSource::Inline(events) => {
                    for chunk in events.chunks(job.batch_size.max(1)) {
                        history.add(vi, view, chunk);
                        progress.events.fetch_add(chunk.len() as u64, Relaxed);
                    }
                }
                EventSource::Files(paths) => {
                    let (paths, pruned) = event_files_for(paths, last_time)?;
                    stats.files_read += paths.len();
                    stats.files_pruned += pruned;
                    let files = FileHistory { view, vi, paths: &paths, topic };
                    read_event_files(job, &files, &mut history, &mut stats, progress)?;
                }
                EventSource::Arrow(b) => {
                    let mut f = EventFile::from_batches("<events table>", b.clone(), topic);
                    let mut batch = EventBatch::default();
                    while f.next_batch(job.batch_size, &mut batch)? {
                        stats.failed_events += batch.invalid.len() as u64;
                        progress.events.fetch_add((batch.events.len() + batch.invalid.len()) as u64, Relaxed);
                        history.add(vi, view, &batch.events);
                    }
                }
            }
        }
        stats.events += history.events;
        stats.failed_events += history.failed;
        stats.rows_kept += history.rows;
        stats.transform_secs += started.elapsed().as_secs_f64();
        let started = std::time::Instant::now();
        let params = param_columns(spine, &g.params)?;
        let row_params = |row: usize| -> HashMap<String, Vec<Json>> {
            params.iter().map(|(name, col)| (name.clone(), vec![col[row].clone()])).collect()
        };
        let servable = entities.iter().zip(&times).filter(|(e, t)| e.is_some() && t.is_some()).count();
        progress.to_sweep.fetch_add(servable as u64, Relaxed);
        let fnames: Vec<String> = g.features.iter().map(|(_, f)| f.clone()).collect();
        let plan = job.catalog.plan(&fnames, None)?;
        let s = Sweep {
            catalog: job.catalog,
            plan: &plan,
            views: &g.views,
            params: &row_params,
            threads: job.threads,
            swept: Some(&progress.swept),
        };
        let mut values = sweep(&s, history, &entities, &times)?;
        for (k, (i, _)) in g.features.iter().enumerate() {
            columns[*i] = values.iter_mut().map(|row| std::mem::replace(&mut row[k], Value::Null)).collect();
        }
        stats.sweep_secs += started.elapsed().as_secs_f64();
    }
    let out = names
        .into_iter()
        .zip(types)
        .zip(columns)
        .map(|((name, ty), values)| FeatureColumn { name, ty, values })
        .collect();
    Ok((out, stats))
}

/// The spine column that decides a row's shard: the entity column every requested feature reads.
/// Features of two entity types (two spine columns) cannot be sharded as one job.
pub fn shard_column(job: &TrainingJob<'_>) -> Result<String, TrainingError> {
    let full: Vec<String> = job.features.iter().map(FeatureRef::full).collect();
    job.catalog.plan(&full, None)?; // unknown views and features are named first, as `run` does
    let mut columns: Vec<String> = Vec::new();
    for f in &job.features {
        let (entity, _, _) = sources(job, &f.view)?;
        if let Some(e) = entity {
            let column = job.entity_column.clone().unwrap_or(e);
            if !columns.contains(&column) {
                columns.push(column);
            }
        }
    }
    match columns.len() {
        0 => Err(TrainingError::NothingToShard),
        1 => Ok(columns.remove(0)),
        _ => Err(TrainingError::ShardColumns(columns.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "))),
    }
}

/// One stream view's event files.
struct FileHistory<'a> {
    view: &'a StreamView,
    vi: usize,
    paths: &'a [PathBuf],
    topic: &'a str,
}

/// Transform a view's event files into `history`, or take their rows from the job's row cache
/// (filling it on a miss).
fn read_event_files(
    job: &TrainingJob<'_>,
    f: &FileHistory<'_>,
    history: &mut History,
    stats: &mut TrainingStats,
    progress: &Progress,
) -> Result<(), TrainingError> {
    let cache = job.row_cache.as_ref().map(|dir| RowCache::new(dir.clone()));
    let key = match &cache {
        Some(_) => Some(RowCache::key(f.view, f.topic, f.paths)?),
        None => None,
    };
    if let (Some(cache), Some(key)) = (&cache, &key)
        && let Some(counts) = cache.counts(key)
    {
        cache.read(key, f.view, |rows| history.add_rows(f.vi, rows))?;
        history.events += counts.events;
        history.failed += counts.failed;
        stats.failed_events += counts.invalid;
        stats.cached_views += 1;
        progress.events.fetch_add(counts.events + counts.invalid, Relaxed);
        return Ok(());
    }
    let mut writer = match (&cache, &key) {
        (Some(cache), Some(key)) => Some(cache.writer(key, f.view)?),
        _ => None,
    };
    let mut write_error = None;
    let mut batch = EventBatch::default();
    for path in f.paths {
        let mut file = EventFile::open(path, f.topic, 0)?;
        while file.next_batch(job.batch_size, &mut batch)? {
            let invalid = batch.invalid.len() as u64;
            stats.failed_events += invalid;
            progress.events.fetch_add(batch.events.len() as u64 + invalid, Relaxed);
            let events = batch.events.len() as u64;
            match writer.as_mut() {
                Some(w) => {
                    let mut sink = |rows: &[crate::bindings::types::FeatureRow], failed: usize| {
                        let counts = Counts { events, failed: failed as u64, invalid };
                        if let Err(e) = w.add(rows, counts) {
                            write_error.get_or_insert(e);
                        }
                    };
                    history.add_with(f.vi, f.view, &batch.events, Some(&mut sink));
                }
                None => {
                    history.add(f.vi, f.view, &batch.events);
                }
            }
            if let Some(e) = write_error.take() {
                return Err(e.into());
            }
        }
    }
    if let Some(w) = writer {
        w.finish()?;
    }
    Ok(())
}

/// The files `--events` arguments stand for, without partitions after `last_time`.
fn event_files_for(args: &[PathBuf], last_time: Option<i64>) -> Result<(Vec<PathBuf>, usize), TrainingError> {
    let mut files = Vec::new();
    for a in args {
        files.extend(super::event_paths::expand(a)?);
    }
    Ok(super::event_paths::prune(files, last_time))
}

/// A batch view's rows from its file (or its `--events VIEW=FILE` files) into `history`; bad rows
/// count as failed events, as a load reports them.
fn read_batch_history(
    job: &TrainingJob<'_>,
    stored: &crate::serving::StoredView,
    vi: usize,
    history: &mut History,
    stats: &mut TrainingStats,
    progress: &Progress,
) -> Result<(), TrainingError> {
    let view = stored.name();
    let cfg =
        job.batches.iter().find(|b| b.name == view).ok_or_else(|| TrainingError::BatchView { view: view.into() })?;
    let files: Vec<PathBuf> = match job.events.get(view) {
        Some(EventSource::Files(paths)) => paths.clone(),
        Some(EventSource::Inline(_)) => {
            return Err(TrainingError::BatchSource { view: view.into(), given: "inline events" });
        }
        Some(EventSource::Arrow(_)) => return Err(TrainingError::BatchSource { view: view.into(), given: "a table" }),
        None => cfg.source.iter().cloned().collect(),
    };
    if files.is_empty() {
        return Err(TrainingError::BatchView { view: view.into() });
    }
    let read = |source| TrainingError::BatchRead { view: view.into(), source };
    for path in &files {
        let columns = crate::materialize::Columns::of_view(cfg, &stored.spec);
        let mut rows =
            crate::materialize::source::open(path, cfg.format_of(path).map_err(|e| read(e.into()))?, columns)
                .map_err(read)?;
        while let Some(chunk) = rows.next_chunk(job.batch_size.max(1)).map_err(read)? {
            stats.events += chunk.len;
            progress.events.fetch_add(chunk.len, Relaxed);
            stats.failed_events += chunk.errors.len() as u64;
            history.add_rows(vi, chunk.rows);
        }
    }
    Ok(())
}

/// A requested view's entity type, the views whose history it needs, its request params.
type Sources = (Option<String>, Vec<Replay>, Vec<String>);

/// The [`Sources`] of `view`.
fn sources(job: &TrainingJob<'_>, view: &str) -> Result<Sources, TrainingError> {
    if let Some(v) = job.views.get(view) {
        return Ok((Some(v.spec.entity.clone()), vec![Replay::Stream(v.clone())], Vec::new()));
    }
    if let Some(b) = batch_view(job, view) {
        return Ok((Some(b.spec.entity.clone()), vec![Replay::Batch(b)], Vec::new()));
    }
    if let Some(rv) = job.catalog.request_views().iter().find(|r| r.name == view) {
        let mut views = Vec::new();
        for r in &rv.reads {
            let stored = &job.catalog.stored_views()[r.view];
            let v = match job.views.get(stored.name()) {
                Some(v) => Replay::Stream(v.clone()),
                None => Replay::Batch(
                    batch_view(job, stored.name())
                        .ok_or_else(|| TrainingError::BatchView { view: stored.name().into() })?,
                ),
            };
            if !views.iter().any(|x: &Replay| x.name() == v.name()) {
                views.push(v);
            }
        }
        return Ok((rv.entity.clone(), views, rv.params.iter().map(|p| p.name.clone()).collect()));
    }
    Err(TrainingError::BatchView { view: view.into() })
}

/// The served batch view `name`, if the job has its config.
fn batch_view(job: &TrainingJob<'_>, name: &str) -> Option<Arc<crate::serving::StoredView>> {
    job.batches.iter().find(|b| b.name == name)?;
    job.catalog.stored_views().iter().find(|v| v.name() == name).cloned()
}

/// Spine columns holding request params, as JSON per row.
fn param_columns(spine: &Spine, params: &[String]) -> Result<Vec<(String, Vec<Json>)>, TrainingError> {
    let mut out = Vec::with_capacity(params.len());
    for p in params {
        if spine.schema.column_with_name(p).is_none() {
            return Err(TrainingError::MissingParam(p.clone()));
        }
        let mut col = Vec::with_capacity(spine.rows);
        for b in &spine.batches {
            let a = b.column_by_name(p).ok_or_else(|| TrainingError::ParamType(p.clone()))?;
            for i in 0..b.num_rows() {
                col.push(json_cell(a, i).ok_or_else(|| TrainingError::ParamType(p.clone()))?);
            }
        }
        out.push((p.clone(), col));
    }
    Ok(out)
}
