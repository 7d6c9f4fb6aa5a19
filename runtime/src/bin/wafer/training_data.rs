//! `wafer training-data`: point-in-time-correct features for every row of a spine, as Parquet.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressStyle};
use wafer_runtime::manifest::Manifest;
use wafer_runtime::offline::parquet_out;
use wafer_runtime::offline::shard::Shard;
use wafer_runtime::offline::spine::Spine;
use wafer_runtime::offline::training::{EventSource, Progress, TrainingJob, parse_features, run, shard_column};
use wafer_runtime::pipeline::Metrics;
use wafer_runtime::tenant::build_tenant;

use crate::SandboxArgs;

#[derive(Args)]
pub struct TrainingDataArgs {
    /// The manifest (TOML) declaring the views.
    #[arg(long, value_name = "FILE", default_value = "wafer.toml")]
    config: PathBuf,
    /// Parquet spine: one row per (entity, timestamp) to compute features at.
    #[arg(long, value_name = "FILE")]
    spine: PathBuf,
    /// Features as `view:feature`, comma-separated (repeatable).
    #[arg(long, value_name = "LIST", required = true)]
    features: Vec<String>,
    /// The event history (JSONL or Parquet), for every stream view, or `VIEW=FILE` for one view
    /// (repeatable): a file, a directory (every event file below it; Hive partitions such as
    /// `date=2026-11-01/` after the last spine time are skipped) or a glob (quote it). A batch
    /// view's history is its `source` file unless `VIEW=FILE` names another.
    #[arg(long, value_name = "[VIEW=]FILE", required = true)]
    events: Vec<String>,
    /// Output Parquet file.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Spine column holding entity keys [default: each view's `entity` name].
    #[arg(long)]
    entity_column: Option<String>,
    /// Spine column holding the time (Int64 ms since the epoch, or a Timestamp).
    #[arg(long, default_value = "timestamp_ms")]
    time_column: String,
    /// Name feature columns `view__feature` instead of `feature`.
    #[arg(long)]
    full_names: bool,
    /// Events per transform call.
    #[arg(long, default_value_t = 1024)]
    batch_size: usize,
    /// Threads for the point-in-time sweep [default: available cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Compute only shard I of N (numbered from 1): the spine rows whose entity hashes to it
    /// (`xxh3_64(key) mod N`). The N part files together hold every spine row once, with the
    /// same values as one unsharded job; run each on any machine.
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,
    /// Keep each stream view's transformed rows of the event files here, and reuse them when a
    /// later job reads the same files with the same component (keyed by the component's sha256,
    /// the view's columns and each file's path, size and mtime): the Wasm step then does not run.
    #[arg(long, value_name = "DIR")]
    row_cache: Option<PathBuf>,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

pub fn training_data(args: TrainingDataArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let manifest = Manifest::load(&args.config)?;
    let mut features = Vec::new();
    for f in &args.features {
        features.extend(parse_features(f)?);
    }
    anyhow::ensure!(!features.is_empty(), "--features lists no `view:feature`");
    let loader = args.sandbox.loader()?;
    let load = |path: &std::path::Path, limits| crate::progress::load_transform(&loader, path, limits);
    let app = build_tenant(&manifest.tenant_spec(), &load, Arc::new(Metrics::default()), 0)?;
    let views = &app.views;
    let mut events: HashMap<String, EventSource> = HashMap::new();
    for e in &args.events {
        let (view, path) = match e.split_once('=') {
            Some((v, p)) if views.contains_key(v) || manifest.batch_views.iter().any(|b| b.name == v) => {
                (v.to_string(), PathBuf::from(p))
            }
            _ => (String::new(), PathBuf::from(e)),
        };

        if let EventSource::Files(v) = events.entry(view).or_insert_with(|| EventSource::Files(Vec::new())) {
            v.push(path);
        }
    }
    let topics = manifest.views.iter().filter_map(|v| Some((v.name.clone(), v.topic.clone()?))).collect();
    let mut spine = Spine::read(&args.spine)?;
    let job = TrainingJob {
        views,
        catalog: &app.catalog,
        batches: &manifest.batch_views,
        features,
        events,
        entity_column: args.entity_column.clone(),
        time_column: args.time_column.clone(),
        full_names: args.full_names,
        batch_size: args.batch_size.max(1),
        threads: args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        topics,
        row_cache: args.row_cache.clone(),
    };
    if let Some(shard) = args.shard {
        let column = shard_column(&job)?;
        let all = spine.rows;
        spine = shard.select(&spine, &column)?;
        eprintln!("shard {shard}: {} of {all} spine rows (by `{column}`)", spine.rows);
    }
    let progress = Progress::default();
    let (columns, stats) =
        show_progress(&progress, || run(&job, &spine, &progress)).context("computing training data")?;
    parquet_out::write(&args.out, &spine, &columns).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "wrote {}: {} spine rows x {} features from {} events in {} files ({} partitions after the last spine time skipped; {} failed, {} rows kept; {} views from the row cache) in {:.2} s ({:.2} s transform, {:.2} s sweep), peak memory {}",
        args.out.display(),
        stats.spine_rows,
        columns.len(),
        stats.events,
        stats.files_read,
        stats.files_pruned,
        stats.failed_events,
        stats.rows_kept,
        stats.cached_views,
        started.elapsed().as_secs_f64(),
        stats.transform_secs,
        stats.sweep_secs,
        peak_memory().map_or_else(|| "unknown".into(), |b| HumanBytes(b).to_string())
    );
    Ok(ExitCode::SUCCESS)
}

/// Run `job` while two bars (on a terminal) show its phases: events read and transformed, with
/// their rate; then spine rows served, with rate and ETA.
fn show_progress<T>(progress: &Progress, job: impl FnOnce() -> T) -> T {
    let bars = MultiProgress::new();
    let style = |t: &str| ProgressStyle::with_template(t).unwrap_or_else(|_| ProgressStyle::default_bar());
    let read = bars.add(ProgressBar::new_spinner());
    read.set_style(style("{spinner} read + transform: {pos} events ({per_sec})"));
    let sweep = bars.add(ProgressBar::new(0));
    sweep.set_style(style("  point in time: {wide_bar} {pos}/{len} spine rows ({per_sec}, ETA {eta})"));
    let done = AtomicBool::new(false);
    let out = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Relaxed) {
                read.set_position(progress.events.load(Relaxed));
                sweep.set_length(progress.to_sweep.load(Relaxed));
                sweep.set_position(progress.swept.load(Relaxed));
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let out = job();
        done.store(true, Relaxed);
        out
    });
    read.finish_and_clear();
    sweep.finish_and_clear();
    out
}

/// The process's peak resident memory (`VmHWM`), in bytes.
fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().strip_suffix("kB")?.trim();
    kib.parse::<u64>().ok().map(|k| k * 1024)
}
