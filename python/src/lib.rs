//! `wafer._native`: the Rust core of Wafer's Python package.
//!
//! - `training_data`: `wafer training-data` in process. It runs the same library code as the CLI
//!   (`offline::training::run`, then `offline::parquet_out::batches` for the typed columns): the same
//!   Wasm transforms, fold, store and serving reads. Arrow tables cross the boundary through the
//!   Arrow C stream interface (no copy), and the GIL is released while it runs.
//! - `run`: a stream transform over events (what `wafer run` does), as an Arrow table.
//!
//! Errors are raised as the exception classes of `wafer.errors` (pure Python), so the online client
//! and the offline path share one hierarchy.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arrow_array::builder::{Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_pyarrow::{FromPyArrow, PyArrowType, Table};
use arrow_schema::{DataType, Field, Schema};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use wafer_runtime::manifest::Manifest;
use wafer_runtime::offline::event_files::{EventBatch, EventFile};
use wafer_runtime::offline::parquet_out::{self, FeatureColumn};
use wafer_runtime::offline::shard::Shard;
use wafer_runtime::offline::spine::Spine;
use wafer_runtime::offline::training::{self, EventSource, TrainingJob, parse_features};
use wafer_runtime::pipeline::Metrics;
use wafer_runtime::tenant::build_tenant;
use wafer_runtime::{EngineConfig, Limits, Loader, Value, WaferEngine, WorldKind};

/// The same allocator as the `wafer` binary (its offline numbers are measured with it).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An error to raise as `wafer.errors.<class>(message)`.
struct Raise {
    class: &'static str,
    message: String,
}

impl Raise {
    fn new(class: &'static str, message: impl std::fmt::Display) -> Self {
        Self { class, message: message.to_string() }
    }

    fn offline(message: impl std::fmt::Display) -> Self {
        Self::new("OfflineError", message)
    }
}

impl From<Raise> for PyErr {
    fn from(r: Raise) -> Self {
        Python::attach(|py| {
            let class = py.import("wafer.errors").and_then(|m| m.getattr(r.class));
            match class.and_then(|c| c.call1((r.message.clone(),))) {
                Ok(exc) => PyErr::from_value(exc),
                Err(_) => pyo3::exceptions::PyRuntimeError::new_err(r.message),
            }
        })
    }
}

/// One engine and component loader per process, as in `wafer` (the CLI defaults: pooling with
/// 256 instances, the artifact cache at `$WAFER_CACHE_DIR` or `~/.cache/wafer/artifacts`).
fn loader() -> Result<&'static Loader, Raise> {
    static LOADER: OnceLock<Result<Loader, String>> = OnceLock::new();
    LOADER
        .get_or_init(|| {
            let engine =
                WaferEngine::new(EngineConfig { pooling: true, pool_instances: 256, ..EngineConfig::default() })
                    .map_err(|e| format!("creating the wasm engine: {e:#}"))?;
            let cache = wafer_runtime::artifact_cache::ArtifactCache::default_base();
            Loader::new(engine, Some(&cache)).map_err(|e| format!("setting up the component loader: {e}"))
        })
        .as_ref()
        .map_err(Raise::offline)
}

/// Record batches of a pyarrow table (or anything with `__arrow_c_stream__`).
fn table(obj: &Bound<'_, PyAny>) -> PyResult<(Arc<Schema>, Vec<RecordBatch>)> {
    let (batches, schema) = Table::from_pyarrow_bound(obj)?.into_inner();
    Ok((schema, batches))
}

/// `str | PathLike | [paths] | pyarrow.Table` → where a view's events come from.
fn event_source(obj: &Bound<'_, PyAny>) -> PyResult<EventSource> {
    if let Ok(p) = obj.extract::<PathBuf>() {
        return Ok(EventSource::Files(vec![p]));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        return Ok(EventSource::Files(obj.extract::<Vec<PathBuf>>()?));
    }
    Ok(EventSource::Arrow(table(obj)?.1))
}

/// Point-in-time training data: `wafer training-data` without the files. See `wafer.training_data`.
#[pyfunction]
#[pyo3(signature = (manifest, events, spine, features, *, entity_column=None, time_column="timestamp_ms".to_string(),
                    full_feature_names=false, batch_size=1024, threads=None, shard=None, row_cache=None))]
#[allow(clippy::too_many_arguments)]
fn training_data(
    py: Python<'_>,
    manifest: PathBuf,
    events: &Bound<'_, PyAny>,
    spine: &Bound<'_, PyAny>,
    features: Vec<String>,
    entity_column: Option<String>,
    time_column: String,
    full_feature_names: bool,
    batch_size: usize,
    threads: Option<usize>,
    shard: Option<String>,
    row_cache: Option<PathBuf>,
) -> PyResult<PyArrowType<Table>> {
    let shard = shard.map(|s| s.parse::<Shard>()).transpose().map_err(Raise::offline)?;
    // Per view (`{view: source}`) or for every view (`""`), as `--events [VIEW=]FILE`.
    let mut sources: HashMap<String, EventSource> = HashMap::new();
    if let Ok(d) = events.cast::<PyDict>() {
        for (k, v) in d.iter() {
            sources.insert(k.extract::<String>()?, event_source(&v)?);
        }
    } else {
        sources.insert(String::new(), event_source(events)?);
    }
    let spine = match spine.extract::<PathBuf>() {
        Ok(p) => Spine::read(&p).map_err(Raise::offline)?,
        Err(_) => {
            let (schema, batches) = table(spine)?;
            Spine::new(schema, batches)
        }
    };
    let job = JobArgs {
        manifest,
        features,
        entity_column,
        time_column,
        full_feature_names,
        batch_size,
        threads,
        shard,
        row_cache,
    };
    let (schema, batches) = py.detach(move || job.run(sources, &spine))?;
    Ok(PyArrowType(Table::try_new(batches, schema).map_err(Raise::offline)?))
}

/// What `wafer training-data` takes on its command line, minus the files.
struct JobArgs {
    manifest: PathBuf,
    features: Vec<String>,
    entity_column: Option<String>,
    time_column: String,
    full_feature_names: bool,
    batch_size: usize,
    threads: Option<usize>,
    shard: Option<Shard>,
    row_cache: Option<PathBuf>,
}

impl JobArgs {
    /// The body of `wafer training-data` (runtime/src/bin/wafer/training_data.rs), step for step.
    fn run(
        self,
        events: HashMap<String, EventSource>,
        spine: &Spine,
    ) -> Result<(Arc<Schema>, Vec<RecordBatch>), Raise> {
        let manifest = Manifest::load(&self.manifest).map_err(Raise::offline)?;
        let mut features = Vec::new();
        for f in &self.features {
            features.extend(parse_features(f).map_err(Raise::offline)?);
        }
        if features.is_empty() {
            return Err(Raise::offline("`features` lists no `view:feature`"));
        }
        let loader = loader()?;
        let load = |path: &Path, limits| loader.load_file(path, limits);
        let app = build_tenant(&manifest.tenant_spec(), &load, Arc::new(Metrics::default()), 0)
            .map_err(|e| Raise::offline(format!("{e:#}")))?;
        for view in events.keys().filter(|v| !v.is_empty()) {
            if !app.views.contains_key(view) && !manifest.batch_views.iter().any(|b| &b.name == view) {
                return Err(Raise::offline(format!("events given for `{view}`, which is not a stream or batch view")));
            }
        }
        let topics = manifest.views.iter().filter_map(|v| Some((v.name.clone(), v.topic.clone()?))).collect();
        let job = TrainingJob {
            views: &app.views,
            catalog: &app.catalog,
            batches: &manifest.batch_views,
            features,
            events,
            entity_column: self.entity_column,
            time_column: self.time_column,
            full_names: self.full_feature_names,
            batch_size: self.batch_size.max(1),
            threads: self.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            topics,
            row_cache: self.row_cache,
        };
        let selected;
        let spine = match self.shard {
            Some(shard) => {
                let column = training::shard_column(&job).map_err(Raise::offline)?;
                selected = shard.select(spine, &column).map_err(Raise::offline)?;
                &selected
            }
            None => spine,
        };
        let (columns, _stats) = training::run(&job, spine, &Default::default()).map_err(Raise::offline)?;
        parquet_out::batches(spine, &columns).map_err(Raise::offline)
    }
}

/// `run`'s result: the output rows as a table, and the failed events (line, code, error).
type RunOutput = (PyArrowType<Table>, Vec<(i64, String, String)>);

/// A stream transform over events, as `wafer run` runs it: one output row per feature row. See
/// `wafer.run`.
#[pyfunction]
#[pyo3(signature = (transform, events, *, batch_size=512, topic="events".to_string(), deadline_ms=50, memory_mib=64))]
fn run(
    py: Python<'_>,
    transform: PathBuf,
    events: &Bound<'_, PyAny>,
    batch_size: usize,
    topic: String,
    deadline_ms: u64,
    memory_mib: usize,
) -> PyResult<RunOutput> {
    let source = match events.extract::<PathBuf>() {
        Ok(p) => Err(p),
        Err(_) => Ok(table(events)?.1),
    };
    let (schema, batch, failed) = py.detach(move || -> Result<_, Raise> {
        let limits = Limits::capped(Duration::from_millis(deadline_ms), memory_mib << 20);
        let t = loader()?.load_file(&transform, limits).map_err(|e| Raise::new("LoadError", e))?;
        if t.kind() != WorldKind::Stream {
            return Err(Raise::new("LoadError", format!("{} is not a stream transform", transform.display())));
        }
        let mut worker = t.stream_worker().map_err(|e| Raise::new("LoadError", e))?;
        let mut file = match source {
            Err(path) => EventFile::open(&path, &topic, 0).map_err(Raise::offline)?,
            Ok(batches) => EventFile::from_batches("<events table>", batches, &topic),
        };
        let outputs = t.info().outputs.clone();
        let (mut pos, mut keys, mut times) = (Int64Builder::new(), StringBuilder::new(), Int64Builder::new());
        let mut values: Vec<Vec<Value>> = vec![Vec::new(); outputs.len()];
        let mut failed = Vec::new();
        let mut batch = EventBatch::default();
        while file.next_batch(batch_size, &mut batch).map_err(Raise::offline)? {
            failed.extend(batch.invalid.drain(..).map(|(p, e)| (p, "invalid_event".to_string(), e)));
            for (result, p) in worker.process(&batch.events).into_iter().zip(&batch.positions) {
                match result {
                    Ok(rows) => {
                        for row in rows {
                            pos.append_value(*p);
                            keys.append_value(&row.entity_key);
                            times.append_value(row.event_time_ms);
                            for (spec, col) in outputs.iter().zip(values.iter_mut()) {
                                let v = row.features.iter().find(|f| f.name == spec.name).map(|f| f.value.clone());
                                col.push(v.unwrap_or(Value::Null));
                            }
                        }
                    }
                    Err(e) => failed.push((*p, e.code().to_string(), e.to_string())),
                }
            }
        }
        failed.sort_by_key(|f| f.0);
        let mut fields = vec![
            Field::new("event", DataType::Int64, false),
            Field::new("entity_key", DataType::Utf8, false),
            Field::new("event_time_ms", DataType::Int64, false),
        ];
        let mut cols: Vec<ArrayRef> = vec![Arc::new(pos.finish()), Arc::new(keys.finish()), Arc::new(times.finish())];
        for (spec, vals) in outputs.iter().zip(values) {
            let c = FeatureColumn { name: spec.name.clone(), ty: spec.value_type, values: vals };
            fields.push(Field::new(&c.name, parquet_out::arrow_type(c.ty), true));
            cols.push(parquet_out::to_array(&c.name, c.ty, &c.values).map_err(Raise::offline)?);
        }
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(schema.clone(), cols).map_err(Raise::offline)?;
        Ok((schema, batch, failed))
    })?;
    Ok((PyArrowType(Table::try_new(vec![batch], schema).map_err(Raise::offline)?), failed))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(training_data, m)?)?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    Ok(())
}
