//! `wafer serve` and `wafer dev`: run the streaming pipeline and the HTTP API.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use wafer_runtime::pipeline::{Metrics, View};
use wafer_runtime::server::{App, serve};
use wafer_runtime::store::OnlineStore;
use wafer_runtime::store::embedded::EmbeddedStore;
use wafer_runtime::store::redis::RedisStore;
use wafer_runtime::view::{Manifest, ViewSpec};
use wafer_runtime::{Limits, Loader, WorldKind};

use crate::SandboxArgs;

#[derive(Args)]
pub struct ServeArgs {
    /// The manifest (TOML): [redis], [kafka], [server] and [[stream_view]] tables.
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

/// Load the manifest's stream views (only `only`, if given), each checked against its transform.
pub fn load_views(manifest: &Manifest, loader: &Loader, metrics: &Arc<Metrics>, only: Option<&[&str]>) -> Result<HashMap<String, Arc<View>>> {
    let mut views = HashMap::new();
    for cfg in &manifest.views {
        if only.is_some_and(|o| !o.contains(&cfg.name.as_str())) {
            continue;
        }
        let limits = Limits {
            deadline: std::time::Duration::from_millis(cfg.deadline_ms),
            memory_bytes: cfg.memory_mib << 20,
            recycle_memory_bytes: (cfg.memory_mib << 20) / 4 * 3,
            ..Limits::default()
        };
        let t = loader
            .load_file(&cfg.transform, limits)
            .with_context(|| format!("view `{}`: loading {}", cfg.name, cfg.transform.display()))?;
        anyhow::ensure!(t.kind() == WorldKind::Stream, "view `{}`: {} is not a stream transform", cfg.name, cfg.transform.display());
        let spec = ViewSpec::new(cfg, &t.info().outputs)?;
        tracing::info!(view = %cfg.name, transform = t.name(), features = spec.feature_names().len(), "view loaded");
        views.insert(cfg.name.clone(), Arc::new(View::new(&manifest.server.tenant, spec, t, metrics.clone())));
    }
    Ok(views)
}

/// The manifest's online store: Redis if configured, else a fresh embedded store.
pub async fn connect_store(manifest: &Manifest) -> Result<Arc<dyn OnlineStore>> {
    Ok(match &manifest.redis {
        Some(r) => Arc::new(RedisStore::connect(&r.url).await.with_context(|| format!("connecting to Redis at {}", r.url))?),
        None => Arc::new(EmbeddedStore::new()),
    })
}

fn run(manifest: Manifest, listen: String, sandbox: &SandboxArgs, dev: bool) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    rt.block_on(async move {
        let loader = sandbox.loader()?;
        let metrics = Arc::new(Metrics::default());
        let views = load_views(&manifest, &loader, &metrics, None)?;
        let store: Arc<dyn OnlineStore> = match (&manifest.redis, dev) {
            (Some(r), false) => Arc::new(RedisStore::connect(&r.url).await.with_context(|| format!("connecting to Redis at {}", r.url))?),
            _ => Arc::new(EmbeddedStore::new()),
        };
        let app = Arc::new(App { views, store, metrics });
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
            app.views.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        serve(app, listener).await.context("serving HTTP")?;
        Ok(ExitCode::SUCCESS)
    })
}
