//! `wafer materialize`: load a batch view's file into the online store: straight into Redis
//! (the manifest's view, resumable), or through a running server with a tenant's key
//! (`--server`: registry mode, see [`remote`]).

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

mod remote;

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
    /// Load through this running server (`http://host:port`) instead of writing to Redis: the
    /// view (a registry tenant's batch view too) is read from the server, the rows of --from are
    /// sent in chunks to `POST /write-to-online-store` with --key. No manifest is read.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// With --server: the tenant's API key.
    #[arg(long, env = "WAFER_API_KEY", hide_env_values = true)]
    key: Option<String>,
    /// With --server: the column holding the entity key (default: the view's entity name).
    #[arg(long, value_name = "COLUMN")]
    entity_column: Option<String>,
    /// With --server: the column holding the event time (integer ms or RFC 3339 text).
    #[arg(long, value_name = "COLUMN", default_value = "event_timestamp")]
    timestamp_column: String,
    /// With --server: rows per request (each is one write; keep it within the tenant's
    /// `batch_rows` and `batch_entities` quotas).
    #[arg(long, value_name = "N", default_value_t = 500)]
    rows_per_request: usize,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

pub fn materialize_cmd(args: MaterializeArgs) -> Result<ExitCode> {
    if let Some(server) = &args.server {
        let Some(file) = &args.from else { bail!("--server needs the file to load: --from FILE") };
        let remote = remote::Remote {
            server: server.clone(),
            key: args.key.clone(),
            view: args.view.clone(),
            file: file.clone(),
            entity_column: args.entity_column.clone(),
            timestamp_column: args.timestamp_column.clone(),
            rows_per_request: args.rows_per_request.max(1),
            quiet: args.quiet,
        };
        return remote.run();
    }
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
