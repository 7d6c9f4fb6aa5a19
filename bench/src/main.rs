//! `wafer-bench`: load generators that start their own services and report numbers.
//!
//! - `serving`: 100,000 users materialized from a file into a private Redis, `wafer serve`
//!   with the `txn_risk` request view; sequential single-entity latency, throughput at N
//!   connections, and 100-entity requests.
//! - `streaming`: a private tansu broker and Redis; the ceiling (bare consumer, one HINCRBY per
//!   event), `wafer serve` throughput through `card_txn.wasm` with 4 aggregations, and freshness
//!   (produce → readable) p50/p99 at half that rate.
//! - `store-size`: Redis bytes per entity for each aggregation family (pushed events).
//!
//! Build first: `./scripts/build-guests.sh && cargo build --release -p wafer-runtime -p wafer-bench`.

mod ceiling;
mod client;
mod kafka;
mod procs;
mod prom;
mod rng;
mod serving;
mod stats;
mod store_size;
mod streaming;
mod tenants;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "wafer-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Online serving: latency and throughput of POST /v1/features against Redis.
    Serving(serving::Args),
    /// Multi-tenant: upload → first request, memory of many tenant transforms, noisy neighbour.
    Tenants(tenants::Args),
    /// Streaming: Kafka → Wafer → Redis throughput against a bare-consumer ceiling, and freshness.
    Streaming(streaming::Args),
    /// Redis bytes per entity for each aggregation (tiles, sketches).
    StoreSize(store_size::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serving(a) => serving::run(a),
        Command::Tenants(a) => tenants::run(a),
        Command::Streaming(a) => streaming::run(a),
        Command::StoreSize(a) => store_size::run(a),
    }
}
