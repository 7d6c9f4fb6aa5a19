//! `wafer serve` and `wafer dev`: run the streaming pipeline and the HTTP API.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use wafer_runtime::control::Control;
use wafer_runtime::manifest::Manifest;
use wafer_runtime::node::Node;
use wafer_runtime::pipeline::Metrics;
use wafer_runtime::registry::Registry;
use wafer_runtime::server::{ListenConfig, serve_until};
use wafer_runtime::store::deadline::ReadDeadline;
use wafer_runtime::store::embedded::EmbeddedStore;
use wafer_runtime::store::redis::RedisStore;
use wafer_runtime::store::{OnlineStore, StoreError};
use wafer_runtime::tenant::build_tenant;

use crate::SandboxArgs;
use crate::log::{LogFormat, status};

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
    runtime: RuntimeArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

#[derive(Args)]
pub struct RuntimeArgs {
    /// Async worker threads (HTTP, request transforms, Kafka consumption, store I/O; stream
    /// transforms run on blocking threads besides). Default: one per core. Fewer than the cores
    /// helps when the node shares its cores with other busy processes (measured with
    /// `wafer-bench serving`, where the load generator and Redis share the 2 cores: 1 thread
    /// serves ~20% more requests/s than 2).
    #[arg(long, value_name = "N")]
    worker_threads: Option<usize>,
    /// Client connections served at once; more are refused with 503 `too_many_connections`.
    /// Default: 10,000, or less when the file-descriptor limit (`ulimit -n`) leaves less room
    /// (a quarter of it, at least 64, stays free for the store, brokers and artifacts).
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Time a client has to send a complete request head (slow-header connections are closed).
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// A connection with no request in flight for this long is closed.
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    idle_timeout_ms: u64,
    /// Time a client has, after a request's head, to send its whole body (else 408
    /// `body_timeout`). Raise it for large uploads over slow links.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    body_timeout_ms: u64,
    /// On SIGTERM or Ctrl-C the node stops accepting and lets requests in flight finish for at
    /// most this long before it exits. Streaming consumers stop with the process: a batch cut
    /// short is re-read from the committed offsets and applied once (the store's offset guards).
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    drain_timeout_ms: u64,
    /// Log lines as text (colour only on a terminal) or as JSON objects, one per line (the
    /// node's status lines too). `$WAFER_LOG` sets the level (default info).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t)]
    log_format: LogFormat,
}

impl RuntimeArgs {
    fn listen_config(&self) -> Result<ListenConfig> {
        anyhow::ensure!(
            self.header_timeout_ms > 0 && self.idle_timeout_ms > 0 && self.body_timeout_ms > 0,
            "timeouts must be at least 1 ms"
        );
        let d = ListenConfig::default();
        Ok(ListenConfig {
            max_connections: self.max_connections.unwrap_or(d.max_connections).max(1),
            header_timeout: std::time::Duration::from_millis(self.header_timeout_ms),
            idle_timeout: std::time::Duration::from_millis(self.idle_timeout_ms),
            body_timeout: std::time::Duration::from_millis(self.body_timeout_ms),
        })
    }
}

/// `wafer dev`'s manifest, relative to the repository's root.
const DEV_MANIFEST: &str = "guest-examples/dev.toml";

#[derive(Args)]
pub struct DevArgs {
    /// Manifest with the example views.
    #[arg(long, value_name = "FILE", default_value = DEV_MANIFEST)]
    config: PathBuf,
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

impl ServeArgs {
    /// How the node logs.
    pub fn log_format(&self) -> LogFormat {
        self.runtime.log_format
    }
}

impl DevArgs {
    /// How the node logs.
    pub fn log_format(&self) -> LogFormat {
        self.runtime.log_format
    }
}

pub fn serve_cmd(args: ServeArgs) -> Result<ExitCode> {
    let manifest = load_manifest(&args.config, || {
        "wafer serve needs a manifest (--config FILE, default wafer.toml; see README.md)".to_string()
    })?;
    let listen = args.listen.clone().unwrap_or_else(|| manifest.server.listen.clone());
    run(manifest, listen, &args.runtime, &args.sandbox, false)
}

pub fn dev_cmd(args: DevArgs) -> Result<ExitCode> {
    let manifest = load_manifest(&args.config, || {
        format!(
            "wafer dev runs the example views of the Wafer repository ({DEV_MANIFEST}): run it from the \
             repository's root (after ./scripts/build-guests.sh), or pass --config with your own manifest"
        )
    })?;
    run(manifest, args.listen.clone(), &args.runtime, &args.sandbox, true)
}

/// The manifest at `path`; when there is no such file, `missing` says what the command needs.
fn load_manifest(path: &Path, missing: impl FnOnce() -> String) -> Result<Manifest> {
    match Manifest::load(path) {
        Ok(m) => Ok(m),
        Err(e) if !path.exists() => Err(anyhow::Error::new(e).context(missing())),
        Err(e) => Err(e.into()),
    }
}

fn run(
    manifest: Manifest,
    listen: String,
    runtime: &RuntimeArgs,
    sandbox: &SandboxArgs,
    dev: bool,
) -> Result<ExitCode> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = runtime.worker_threads {
        anyhow::ensure!(n > 0, "--worker-threads must be at least 1");
        rt.worker_threads(n);
    }
    let listen_cfg = runtime.listen_config()?;
    let rt = rt.enable_all().build().context("starting the async runtime")?;
    rt.block_on(async move {
        // Uploads are untrusted: compile them in budgeted worker processes of this binary.
        let exe = std::env::current_exe().context("locating the wafer binary for compile workers")?;
        let loader = sandbox.loader()?.with_compile_worker(exe);
        let metrics = Arc::new(Metrics::default());
        // The console's charts: the last minutes of each view's rates and freshness.
        tokio::spawn(metrics.clone().sample_history_forever());
        let store: Arc<dyn OnlineStore> = match (&manifest.redis, dev) {
            (Some(r), false) => {
                let options = r.options();
                let redis = retry_while_transient(
                    "connecting to Redis",
                    || RedisStore::open(&options),
                    StoreError::is_transient,
                )
                .await
                .with_context(|| format!("connecting to Redis at {}", r.url))?;
                Arc::new(ReadDeadline::new(redis, std::time::Duration::from_millis(r.read_timeout_ms.max(1))))
            }
            _ => Arc::new(EmbeddedStore::new()),
        };
        let embedded = dev || manifest.redis.is_none();
        let app = match (&manifest.control, &manifest.redis) {
            (Some(c), Some(r)) if !dev => {
                let token = std::env::var(&c.admin_token_env)
                    .with_context(|| format!("registry mode needs the admin token in ${}", c.admin_token_env))?;
                anyhow::ensure!(
                    token.len() >= 16,
                    "the admin token in ${} must be at least 16 characters",
                    c.admin_token_env
                );
                let options = r.options();
                let registry = retry_while_transient(
                    "connecting to the registry",
                    || Registry::open(&options),
                    |e| e.is_transient(),
                )
                .await
                .with_context(|| format!("connecting to the registry in Redis at {}", r.url))?;
                let control = Arc::new(Control::new(registry, &token, loader, c.compile_slots));
                let app = Arc::new(Node::registry(control.clone(), store, metrics).with_kafka(manifest.kafka.clone()));
                retry_while_transient(
                    "loading the registry",
                    || wafer_runtime::control::sync::reload(&app, &control),
                    |e| e.is_transient(),
                )
                .await
                .context("loading the registry")?;
                tokio::spawn(wafer_runtime::control::sync::run(app.clone()));
                app
            }
            _ => {
                let spec = manifest.tenant_spec();
                let load = |path: &std::path::Path, limits| crate::progress::load_transform(&loader, path, limits);
                let tenant = build_tenant(&spec, &load, metrics.clone(), 0)?;
                let kafka = if dev { None } else { manifest.kafka.clone() };
                let app = Arc::new(Node::single(tenant, store, metrics).with_kafka(kafka));
                if embedded {
                    load_batch_views(&manifest, &app).await?;
                }
                if let Some(e) = app.start_sources().into_iter().next() {
                    return Err(e.into());
                }
                app
            }
        };
        let listener =
            tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("listening on {listen}"))?;
        status(format_args!(
            "wafer {} listening on http://{} ({} store; {})",
            if dev { "dev" } else { "serve" },
            listener.local_addr()?,
            if embedded { "embedded" } else { "redis" },
            if app.control.is_some() {
                "registry mode".to_string()
            } else {
                format!("views: {}", view_names(&app).join(", "))
            }
        ));
        let drain = std::time::Duration::from_millis(runtime.drain_timeout_ms);
        serve_until(app, listener, listen_cfg, termination()?, drain).await.context("serving HTTP")?;
        status("wafer stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Completes on the first SIGTERM or SIGINT (Ctrl-C).
fn termination() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        status(format_args!("wafer: {name} received; draining requests in flight"));
    })
}

fn view_names(app: &Node) -> Vec<String> {
    let state = app.state();
    let Some(t) = state.tenants.values().next() else { return Vec::new() };
    let mut names: Vec<String> = t.catalog.stored_views().iter().map(|v| v.name().to_owned()).collect();
    names.extend(t.catalog.request_views().iter().map(|v| v.name.clone()));
    names.sort();
    names
}

/// The embedded store starts empty: load every batch view's configured source into it.
async fn load_batch_views(manifest: &Manifest, app: &Node) -> Result<()> {
    for cfg in &manifest.batch_views {
        let Some(tenant) = app.tenant(&manifest.server.tenant) else { continue };
        let Some(view) = tenant.catalog.stored_views().iter().find(|v| v.name() == cfg.name).cloned() else { continue };
        let Some(source) = &cfg.source else {
            status(format_args!(
                "batch view `{}` has no source: empty until loaded (`wafer materialize --server … --view {} --from FILE`)",
                cfg.name, cfg.name
            ));
            continue;
        };
        let report =
            wafer_runtime::materialize::materialize(app.store.as_ref(), &view.id, &view.spec, cfg, None, |_, _| {})
                .await
                .with_context(|| format!("loading batch view `{}` from {}", cfg.name, source.display()))?;
        status(format_args!(
            "batch view `{}`: {} rows loaded from {} ({} bad)",
            cfg.name,
            report.rows_loaded,
            source.display(),
            report.bad_rows
        ));
        for e in &report.first_errors {
            status(format_args!("  row {}: {}", e.row, e.message));
        }
    }
    Ok(())
}

/// Run `op` until it succeeds or fails with an error `transient` does not accept: a node that
/// starts while Redis is unreachable, loading or `BUSY` (another client's long script) waits
/// for it, logging each retry, rather than exiting. Backoff doubles from 100 ms to 5 s.
async fn retry_while_transient<T, E, F, Fut>(what: &str, mut op: F, transient: impl Fn(&E) -> bool) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut backoff = std::time::Duration::from_millis(100);
    loop {
        match op().await {
            Err(e) if transient(&e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "{what}: will retry");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
            }
            other => return other,
        }
    }
}
