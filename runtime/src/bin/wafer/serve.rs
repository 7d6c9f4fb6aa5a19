//! `wafer serve` and `wafer dev`: run the streaming pipeline and the HTTP API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use wafer_runtime::pipeline::Metrics;
use wafer_runtime::server::{App, build_app, serve};
use wafer_runtime::store::OnlineStore;
use wafer_runtime::store::embedded::EmbeddedStore;
use wafer_runtime::store::redis::RedisStore;
use wafer_runtime::view::Manifest;

use crate::SandboxArgs;

#[derive(Args)]
pub struct ServeArgs {
    /// The manifest (TOML): [redis], [kafka], [server], [[stream_view]], [[batch_view]],
    /// [[request_view]] and [[feature_service]] tables.
    #[arg(long, value_name = "FILE", default_value = "wafer.toml")]
    config: PathBuf,
    /// Listen address (overrides [server].listen).
    #[arg(long)]
    listen: Option<String>,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

#[derive(Args)]
pub struct DevArgs {
    /// Manifest with the example views.
    #[arg(long, value_name = "FILE", default_value = "guest-examples/dev.toml")]
    config: PathBuf,
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

pub fn serve_cmd(args: ServeArgs) -> Result<ExitCode> {
    let manifest = Manifest::load(&args.config)?;
    let listen = args.listen.clone().unwrap_or_else(|| manifest.server.listen.clone());
    run(manifest, listen, &args.sandbox, false)
}

pub fn dev_cmd(args: DevArgs) -> Result<ExitCode> {
    let manifest = Manifest::load(&args.config)?;
    run(manifest, args.listen.clone(), &args.sandbox, true)
}

fn run(manifest: Manifest, listen: String, sandbox: &SandboxArgs, dev: bool) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    rt.block_on(async move {
        let loader = sandbox.loader()?;
        let metrics = Arc::new(Metrics::default());
        let store: Arc<dyn OnlineStore> = match (&manifest.redis, dev) {
            (Some(r), false) => Arc::new(RedisStore::connect(&r.url).await.with_context(|| format!("connecting to Redis at {}", r.url))?),
            _ => Arc::new(EmbeddedStore::new()),
        };
        let embedded = dev || manifest.redis.is_none();
        let app = Arc::new(build_app(&manifest, &loader, store, metrics)?);
        if embedded {
            load_batch_views(&manifest, &app).await?;
        }
        if !dev {
            if let Some(k) = &manifest.kafka {
                crate::consume::start(k, &manifest, app.clone())?;
            }
        }
        let listener = tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("listening on {listen}"))?;
        eprintln!(
            "wafer {} listening on http://{} ({} store; views: {})",
            if dev { "dev" } else { "serve" },
            listener.local_addr()?,
            if dev || manifest.redis.is_none() { "embedded" } else { "redis" },
            view_names(&app).join(", ")
        );
        serve(app, listener).await.context("serving HTTP")?;
        Ok(ExitCode::SUCCESS)
    })
}

fn view_names(app: &App) -> Vec<String> {
    let mut names: Vec<String> = app.catalog.stored_views().iter().map(|v| v.name().to_owned()).collect();
    names.extend(app.catalog.request_views().iter().map(|v| v.name.clone()));
    names.sort();
    names
}

/// The embedded store starts empty: load every batch view's configured source into it.
async fn load_batch_views(manifest: &Manifest, app: &App) -> Result<()> {
    for cfg in &manifest.batch_views {
        let Some(view) = app.catalog.stored_views().iter().find(|v| v.name() == cfg.name) else { continue };
        let report = wafer_runtime::materialize::materialize(app.store.as_ref(), view, cfg, None, |_, _| {})
            .await
            .with_context(|| format!("loading batch view `{}` from {}", cfg.name, cfg.source.display()))?;
        eprintln!("batch view `{}`: {} rows loaded from {} ({} bad)", cfg.name, report.rows_loaded, cfg.source.display(), report.bad_rows);
        for e in &report.first_errors {
            eprintln!("  row {}: {}", e.row, e.message);
        }
    }
    Ok(())
}
