//! `wafer materialize`: load a batch view's file into the online store.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use wafer_runtime::manifest::Manifest;
use wafer_runtime::serving::StoredView;
use wafer_runtime::store::OnlineStore;
use wafer_runtime::store::redis::RedisStore;

#[derive(Args)]
pub struct MaterializeArgs {
    /// The manifest declaring the [[batch_view]].
    #[arg(long, value_name = "FILE", default_value = "wafer.toml")]
    config: PathBuf,
    /// The batch view to load.
    #[arg(long)]
    view: String,
    /// Load this file instead of the view's configured `source`.
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
    /// Redis URL (overrides [redis].url).
    #[arg(long, env = "WAFER_REDIS_URL")]
    redis: Option<String>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

pub fn materialize_cmd(args: MaterializeArgs) -> Result<ExitCode> {
    let manifest = Manifest::load(&args.config)?;
    let Some(cfg) = manifest.batch_views.iter().find(|v| v.name == args.view) else {
        let names: Vec<&str> = manifest.batch_views.iter().map(|v| v.name.as_str()).collect();
        bail!(
            "{} has no batch view `{}` (batch views: {})",
            args.config.display(),
            args.view,
            if names.is_empty() { "none".into() } else { names.join(", ") }
        );
    };
    let opts = match (&args.redis, &manifest.redis) {
        (Some(url), _) => wafer_runtime::store::redis::RedisOptions { urls: vec![url.clone()], ..Default::default() },
        (None, Some(r)) => r.options(),
        (None, None) => bail!(
            "materialize needs Redis: set [redis].url in {} or pass --redis (the embedded store lives inside `wafer dev`)",
            args.config.display()
        ),
    };
    let url = opts.urls[0].clone();
    let view = StoredView::new(&manifest.server.tenant, cfg.spec()?);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    rt.block_on(async {
        let store: Arc<dyn OnlineStore> =
            Arc::new(RedisStore::open(&opts).await.with_context(|| format!("connecting to Redis at {url}"))?);
        let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} rows ({per_sec}, ETA {eta})",
            )
            .context("progress template")?,
        );
        let report = wafer_runtime::materialize::materialize(
            store.as_ref(),
            &view.id,
            &view.spec,
            cfg,
            args.from.as_deref(),
            |done, total| {
                if let Some(t) = total {
                    bar.set_length(t);
                }
                bar.set_position(done);
            },
        )
        .await
        .with_context(|| format!("materializing view `{}`", cfg.name))?;
        bar.finish_and_clear();
        eprintln!(
            "materialized `{}` from {}: {} rows loaded, {} bad, {} skipped as already loaded, in {:.2}s ({:.0} rows/s)",
            cfg.name,
            report.source,
            report.rows_loaded,
            report.bad_rows,
            report.resumed_from,
            report.elapsed.as_secs_f64(),
            report.rows_read as f64 / report.elapsed.as_secs_f64().max(1e-9)
        );
        for e in &report.first_errors {
            eprintln!("  row {}: {}", e.row, e.message);
        }
        Ok(if report.bad_rows > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
    })
}
