//! The `wafer` command line.

mod backfill;
mod client;
mod inspect;
mod log;
mod materialize;
mod migrate_store;
mod new;
mod progress;
mod push;
mod run;
mod run_request;
mod serve;
mod training_data;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use wafer_runtime::{EngineConfig, Limits, Loader, WaferEngine};

/// mimalloc instead of glibc's malloc: the serving path's short-lived allocations (request
/// parsing, responses, Redis replies) cost about a fifth of the server's CPU under glibc
/// (`wafer-bench serving`, 16 connections: 26k → 41k requests/s with the async request path).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Wafer: a real-time ML feature platform whose feature transforms are WebAssembly components.
#[derive(Parser)]
#[command(name = "wafer", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a stream transform over a JSONL file of events and print feature rows as JSONL.
    ///
    /// Each output line is {"line":N,"entity_key":…,"event_time_ms":…,"features":{…}}. An event
    /// that fails (bad input, trap, deadline, schema violation, …) is reported on stderr with its
    /// line number; the exit code is 0 when every event succeeded, 1 when any failed, 2 when the
    /// transform or file could not be loaded.
    ///
    /// Event format (one JSON object per line): {"timestamp_ms": <event time, required>,
    /// "value": <any JSON, passed as its JSON text> | "value_text": "<raw text>" |
    /// "value_base64": "<bytes>", "key": "<key>", "topic": "…", "partition": 0, "offset": 7,
    /// "headers": {"name": "value"}}. Blank lines and lines starting with # are skipped.
    ///
    /// A request transform reads request inputs instead, one per line:
    /// {"entity_key":"u1","request_time_ms":…,"params":{"amount":12.5},"stored":{"view:feature":3}},
    /// and prints {"line":N,"entity_key":…,"features":{…}}.
    Run(run::RunArgs),
    /// Show which world a component implements, its declared schema and its imports.
    Inspect(inspect::InspectArgs),
    /// Run stream views from a manifest: consume Kafka (if configured), accept HTTP-pushed
    /// events, aggregate into the online store (Redis if configured), serve features over HTTP.
    Serve(serve::ServeArgs),
    /// Run the example views on the embedded store with HTTP push (no Redis, no Kafka).
    Dev(serve::DevArgs),
    /// Replay historical events (JSONL/Parquet file or a Kafka topic) through a view's transform
    /// and aggregator into its online store: resumable, effectively once, with progress.
    Backfill(backfill::BackfillArgs),
    /// Point-in-time-correct training data: for each (entity, timestamp) row of a Parquet spine,
    /// every requested feature as it was at that time, written as Parquet.
    TrainingData(training_data::TrainingDataArgs),
    /// Load a batch view's file (Parquet, CSV or JSONL) into Redis: pipelined, resumable,
    /// newest event time wins, TTL applied. Exit code 1 if any row was bad (they are skipped).
    Materialize(materialize::MaterializeArgs),
    /// Convert a Redis store of an earlier release (one slot per view) to the per-entity layout
    /// (entities spread over a Cluster, per-entity replay guards). Stop the views' nodes first.
    MigrateStore(migrate_store::MigrateStoreArgs),
    /// Upload a transform to a running server (validated, precompiled, activated unless
    /// --no-activate); prints the version id, schema and compile time.
    Deploy(client::DeployArgs),
    /// Push a JSONL file of events (the `wafer run` format) to a stream view of a running server,
    /// in requests of at most --chunk-size events; prints what was accepted and each failed event
    /// (line, index, error, code). Exit code 0 when every event was accepted, 1 when some failed,
    /// 2 when the push could not be completed.
    Push(push::PushArgs),
    /// Manage tenants and their API keys on a running server (admin token).
    Tenants(client::TenantsArgs),
    /// Manage a tenant's views and transform versions on a running server (API key).
    Views(client::ViewsArgs),
    /// Scaffold a transform project: source, the WIT, a build script, sample input and a test
    /// script that runs `wafer run` over it.
    New(new::NewArgs),
    /// Internal: compile one component from stdin to stdout within a budget (see
    /// `wafer_runtime::component::budget`).
    #[command(hide = true)]
    CompileWorker(CompileWorkerArgs),
}

#[derive(Args)]
struct CompileWorkerArgs {
    #[arg(long)]
    memory_mib: usize,
    #[arg(long)]
    cpu_seconds: u64,
    #[arg(long)]
    max_wasm_stack: usize,
    #[arg(long)]
    max_memory_bytes: usize,
    #[arg(long, action = clap::ArgAction::Set)]
    pooling: bool,
}

fn compile_worker(a: CompileWorkerArgs) -> ExitCode {
    let engine = EngineConfig {
        pooling: a.pooling,
        max_wasm_stack: a.max_wasm_stack,
        max_memory_bytes: a.max_memory_bytes,
        ..EngineConfig::default()
    };
    let code = wafer_runtime::component::budget::worker_main(
        engine,
        a.memory_mib << 20,
        std::time::Duration::from_secs(a.cpu_seconds),
    );
    ExitCode::from(code as u8)
}

/// Sandbox and engine options shared by commands that load transforms.
#[derive(Args, Clone, Debug)]
pub struct SandboxArgs {
    /// CPU deadline per call (one batch), in milliseconds.
    #[arg(long, default_value_t = 50, value_name = "MS")]
    deadline_ms: u64,
    /// Memory cap per instance, in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    memory_mib: usize,
    /// Grant read-only access to this directory, visible to the guest as /assets.
    #[arg(long, value_name = "DIR")]
    asset_dir: Option<PathBuf>,
    /// Where compiled artifacts are cached [default: $WAFER_CACHE_DIR or ~/.cache/wafer/artifacts].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile every time instead of using the artifact cache.
    #[arg(long)]
    no_cache: bool,
    /// Bound on the artifact cache's total size; least recently used artifacts are evicted.
    #[arg(long, default_value_t = 4096, value_name = "MIB")]
    cache_max_mib: u64,
    /// Use on-demand instance allocation instead of the pooling allocator.
    #[arg(long)]
    no_pooling: bool,
    /// Live instances per node with the pooling allocator (all tenants, views and requests).
    /// Each slot reserves virtual memory for one instance (memory cap + guard), not RSS; when
    /// the pool is exhausted, instantiation fails.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pool_instances: u32,
}

impl SandboxArgs {
    fn limits(&self) -> Limits {
        let memory_bytes = self.memory_mib << 20;
        Limits {
            asset_dir: self.asset_dir.clone(),
            ..Limits::capped(std::time::Duration::from_millis(self.deadline_ms), memory_bytes)
        }
    }

    fn loader(&self) -> anyhow::Result<Loader> {
        use anyhow::Context as _;
        let config =
            EngineConfig { pooling: !self.no_pooling, pool_instances: self.pool_instances, ..EngineConfig::default() };
        let engine =
            WaferEngine::new(config).map_err(|e| anyhow::anyhow!("{e:#}")).context("creating the wasm engine")?;
        let cache = if self.no_cache {
            None
        } else {
            Some(self.cache_dir.clone().unwrap_or_else(wafer_runtime::artifact_cache::ArtifactCache::default_base))
        };
        Ok(Loader::new(engine, cache.as_deref())
            .context("setting up the component loader")?
            .with_cache_max_bytes(self.cache_max_mib << 20))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    log::init(match &cli.command {
        Command::Serve(a) => a.log_format(),
        Command::Dev(a) => a.log_format(),
        _ => log::LogFormat::Text,
    });
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Inspect(args) => inspect::inspect(args),
        Command::Serve(args) => serve::serve_cmd(args),
        Command::Dev(args) => serve::dev_cmd(args),
        Command::Backfill(args) => backfill::backfill(args),
        Command::TrainingData(args) => training_data::training_data(args),
        Command::Materialize(args) => materialize::materialize_cmd(args),
        Command::MigrateStore(args) => migrate_store::migrate_store_cmd(args),
        Command::Deploy(args) => client::deploy(args),
        Command::Push(args) => push::push(args),
        Command::Tenants(args) => client::tenants(args),
        Command::Views(args) => client::views(args),
        Command::New(args) => new::new(args),
        Command::CompileWorker(args) => return compile_worker(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_report(&e));
            ExitCode::from(2)
        }
    }
}

/// An error and its causes on one line, each said once. Many errors include their cause in their
/// own message (`reading x: No such file or directory`) and also return it as their source, so
/// `{e:#}` would print that cause twice: a cause already in the message of the error it caused
/// is left out.
fn error_report(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut previous = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !previous.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        previous = text;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_report_says_each_cause_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        #[derive(Debug, thiserror::Error)]
        #[error("reading wafer.toml: {source}")]
        struct Read {
            source: std::io::Error,
        }
        let e = anyhow::Error::new(Read { source: io() }).context("wafer serve needs a manifest");
        assert_eq!(
            error_report(&e),
            "wafer serve needs a manifest: reading wafer.toml: No such file or directory (os error 2)"
        );
        // Causes not already said are kept.
        let e = anyhow::Error::new(io()).context("opening events.jsonl");
        assert_eq!(error_report(&e), "opening events.jsonl: No such file or directory (os error 2)");
    }
}
