//! `wafer migrate-store`: convert a Redis store written by a release before the per-entity layout
//! (`wafer:{<view>}:e:<entity>`, one slot per view) to the current one. Run it once, with every
//! `wafer serve` of those views stopped; rerunning it is harmless.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use wafer_runtime::manifest::Manifest;
use wafer_runtime::store::redis::RedisStore;

#[derive(Args)]
pub struct MigrateStoreArgs {
    /// The manifest whose [redis] section names the store.
    #[arg(long, value_name = "FILE", default_value = "wafer.toml")]
    config: PathBuf,
    /// Only this view (`tenant/view`); default: every view in the store.
    #[arg(long)]
    view: Option<String>,
}

pub fn migrate_store_cmd(args: MigrateStoreArgs) -> Result<ExitCode> {
    let manifest = Manifest::load(&args.config)?;
    let Some(redis) = &manifest.redis else {
        bail!("{} has no [redis] section: the embedded store needs no migration", args.config.display());
    };
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    rt.block_on(async {
        let store = RedisStore::open(&redis.options())
            .await
            .with_context(|| format!("connecting to Redis at {}", redis.url))?;
        let done = store.migrate_v1(args.view.as_deref()).await.context("migrating the store")?;
        println!("migrated {} entities and {} sketches to the per-entity layout", done.entities, done.sketches);
        Ok(ExitCode::SUCCESS)
    })
}
