//! `wafer backfill`: replay historical events through a view into its online store.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use wafer_runtime::manifest::Manifest;
use wafer_runtime::offline::backfill::{BackfillReport, backfill_file, file_source_name};
use wafer_runtime::offline::event_files::Progress;
use wafer_runtime::offline::event_paths;
use wafer_runtime::pipeline::Metrics;
use wafer_runtime::store::OnlineStore;
use wafer_runtime::store::embedded::EmbeddedStore;
use wafer_runtime::store::redis::RedisStore;
use wafer_runtime::tenant::build_tenant;

use crate::SandboxArgs;

#[derive(Args)]
pub struct BackfillArgs {
    /// The manifest (TOML) declaring the view and its online store.
    #[arg(long, value_name = "FILE", default_value = "wafer.toml")]
    config: PathBuf,
    /// The stream view to backfill.
    #[arg(long)]
    view: String,
    /// History: a JSONL or Parquet event file, a directory (every event file below it, e.g.
    /// Hive partitions), a quoted glob, or `kafka:<topic>` (brokers from [kafka]). Each file of a
    /// directory or glob is its own resumable source, named after its path below the directory.
    #[arg(long, value_name = "SOURCE")]
    from: String,
    /// Watermark name of a file source [default: backfill:<file name>; for a directory or glob,
    /// backfill:<path below it> per file]; a rerun with the same name resumes.
    #[arg(long)]
    source_name: Option<String>,
    /// Kafka: start at this offset in every partition (default: the beginning), unless the
    /// stored watermark is further.
    #[arg(long, conflicts_with = "start_time")]
    start_offset: Option<i64>,
    /// Kafka: start at the first message with a timestamp at or after this time (ms since the epoch).
    #[arg(long)]
    start_time: Option<i64>,
    /// Events per batch [default: the view's batch_size].
    #[arg(long)]
    batch_size: Option<usize>,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

/// The watermark source of `path`: `--source-name` or `backfill:<file name>` for one file; for
/// the files of a directory or glob, one source per file, named by its path below `from` (two
/// Hive partitions' `part-0.parquet` are two sources).
fn source_name_of(given: Option<&str>, from: &Path, path: &Path, files: usize) -> String {
    if files == 1 && from.is_file() {
        return given.map_or_else(|| file_source_name(path), str::to_string);
    }
    let base = if from.is_dir() { from } else { Path::new("") };
    let below = path.strip_prefix(base).unwrap_or(path).display().to_string();
    match given {
        Some(g) => format!("{g}:{below}"),
        None => format!("backfill:{below}"),
    }
}

pub fn backfill(args: BackfillArgs) -> Result<ExitCode> {
    let manifest = Manifest::load(&args.config)?;
    let cfg = manifest
        .views
        .iter()
        .find(|v| v.name == args.view)
        .with_context(|| format!("no stream view `{}` in {}", args.view, args.config.display()))?
        .clone();
    let batch_size = args.batch_size.unwrap_or(cfg.batch_size).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    rt.block_on(async move {
        let loader = args.sandbox.loader()?;
        let store: Arc<dyn OnlineStore> = match &manifest.redis {
            Some(r) => Arc::new(RedisStore::open(&r.options()).await.with_context(|| format!("connecting to Redis at {}", r.url))?),
            None => Arc::new(EmbeddedStore::new()),
        };
        let load = |path: &std::path::Path, limits| crate::progress::load_transform(&loader, path, limits);
        let app = build_tenant(&manifest.tenant_spec(), &load, Arc::new(Metrics::default()), 0)?;
        let view = app.views.get(&args.view).context("view not loaded")?.clone();
        let started = Instant::now();
        let bar = ProgressBar::new(0);
        bar.enable_steady_tick(Duration::from_millis(200));
        let report = if let Some(topic) = args.from.strip_prefix("kafka:") {
            let kafka = manifest.kafka.as_ref().context("`--from kafka:<topic>` needs a [kafka] table in the manifest")?;
            let start = match (args.start_offset, args.start_time) {
                (Some(o), _) => wafer_runtime::sources::kafka_history::HistoryStart::Offset(o),
                (None, Some(t)) => wafer_runtime::sources::kafka_history::HistoryStart::Time(t),
                (None, None) => wafer_runtime::sources::kafka_history::HistoryStart::Beginning,
            };
            bar.set_style(style("{wide_bar} {pos}/{len} events  {msg}  ETA {eta}"));
            let mut on = |done: u64, total: u64, r: &BackfillReport| {
                bar.set_length(total);
                bar.set_position(done);
                bar.set_message(rate(r, started));
            };
            wafer_runtime::sources::kafka_history::backfill(&view, store.as_ref(), &kafka.brokers, topic, start, batch_size, &mut on)
                .await
                .with_context(|| format!("backfilling view `{}` from Kafka topic `{topic}`", args.view))?
        } else {
            let from = PathBuf::from(&args.from);
            let files = if from.is_file() { vec![from.clone()] } else { event_paths::expand(&from)? };
            let topic = cfg.topic.clone().unwrap_or_else(|| cfg.name.clone());
            let mut on = |p: Progress, r: &BackfillReport| {
                match p {
                    Progress::Bytes { done, total } => {
                        if bar.length() != Some(total) {
                            bar.set_style(style("{wide_bar} {binary_bytes}/{binary_total_bytes}  {msg}  ETA {eta}"));
                            bar.set_length(total);
                        }
                        bar.set_position(done);
                    }
                    Progress::Rows { done, total } => {
                        if bar.length() != Some(total) {
                            bar.set_style(style("{wide_bar} {pos}/{len} rows  {msg}  ETA {eta}"));
                            bar.set_length(total);
                        }
                        bar.set_position(done);
                    }
                }
                bar.set_message(rate(r, started));
            };
            let mut total = BackfillReport::default();
            for path in &files {
                let source = source_name_of(args.source_name.as_deref(), &from, path, files.len());
                let r = backfill_file(&view, store.as_ref(), path, &source, &topic, batch_size, &mut on)
                    .await
                    .with_context(|| format!("backfilling view `{}` from {}", args.view, path.display()))?;
                if files.len() > 1 {
                    bar.suspend(|| {
                        eprintln!(
                            "{}: {} events ({} failed), resumed from offset {}, watermark now {} (source `{source}`)",
                            path.display(),
                            r.events,
                            r.failed,
                            r.resumed_from,
                            r.next_offset
                        )
                    });
                }
                if files.len() == 1 {
                    total = r;
                } else {
                    total.add(r);
                }
            }
            total
        };
        bar.finish_and_clear();
        for (offset, code, message) in &report.failures {
            eprintln!("offset {offset}: {message} [{code}]");
        }
        if report.failed as usize > report.failures.len() {
            eprintln!("... and {} more failed events", report.failed as usize - report.failures.len());
        }
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "backfilled view `{}`: {} events ({} failed), {} rows in {secs:.2} s ({:.0} events/s); resumed from offset {}, watermark now {}",
            args.view,
            report.events,
            report.failed,
            report.rows,
            report.events as f64 / secs.max(1e-9),
            report.resumed_from,
            report.next_offset
        );
        Ok(if report.failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
    })
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn rate(r: &BackfillReport, started: Instant) -> String {
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    format!("{} events, {:.0} events/s, {} failed", r.events, r.events as f64 / secs, r.failed)
}
