//! `store-size`: how many bytes of Redis memory one entity costs, per aggregation.
//!
//! A private Redis and `wafer serve` with one push-only view per aggregation family over
//! `card_txn.wasm` (plain latest values only; count+sum; min+max; `last_n(5)`; `first_n(5)`;
//! `approx_count_distinct`; `count_distinct(20)`; `stddev_samp`; `approx_percentile(0.99)`:
//! each over the windows 1m, 1h, 24h, 7d and lifetime; `decayed_sum(2h)` over the same sliding
//! windows). The same events (every user `--events-per-user` events spread over the last `--span-hours`, merchants
//! drawn from 200) are pushed into each view in turn, and the growth of Redis's `used_memory`
//! and of its key count is divided by the users. Printed per view, with the tiles each entity
//! holds (keys and hash fields of one sampled entity) so a change in the tile scheme shows, and
//! the CPU `wafer` and Redis spent per 1,000 events pushed (from `/proc/<pid>/stat`). Then the
//! read cost: `--reads` requests of 100 entities × every feature of the view, with the CPU of
//! both processes per request (roll-ups show here: the same values from fewer tiles).

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use bytes::Bytes;

use crate::client::Conn;
use crate::procs;
use crate::rng::Rng;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 2000)]
    users: usize,
    #[arg(long, default_value_t = 50)]
    events_per_user: usize,
    /// Events are spread over this many hours before now.
    #[arg(long, default_value_t = 24)]
    span_hours: i64,
    /// Read requests (100 entities, every feature of the view) per view after loading it.
    #[arg(long, default_value_t = 200)]
    reads: usize,
}

/// Every window, and the sliding ones (decay has no lifetime).
const ALL: &str = "\"1m\", \"1h\", \"24h\", \"7d\", \"lifetime\"";
const SLIDING: &str = "\"1m\", \"1h\", \"24h\", \"7d\"";

/// (view name, aggregation column, functions, windows, extra aggregation settings).
const VIEWS: &[(&str, &str, &str, &str, &str)] = &[
    ("plain", "", "", "", ""),
    ("count_sum", "amount", "\"count\", \"sum\"", ALL, ""),
    // Roll-ups: 10-minute tiles besides the minute tiles of the 1h window (read: ≤ 24 tiles, not 60).
    ("count_sum_rollup", "amount", "\"count\", \"sum\"", ALL, "rollup = \"10m\"\n"),
    ("min_max", "amount", "\"min\", \"max\"", ALL, ""),
    ("last_n", "merchant", "\"last_n(5)\"", ALL, ""),
    ("first_n", "merchant", "\"first_n(5)\"", ALL, ""),
    ("distinct", "merchant", "\"approx_count_distinct\"", ALL, ""),
    ("count_distinct", "merchant", "\"count_distinct(20)\"", ALL, ""),
    ("stddev", "amount", "\"stddev_samp\"", ALL, ""),
    ("percentile", "amount", "\"approx_percentile(0.99)\"", ALL, ""),
    ("decayed", "amount", "\"decayed_sum(2h)\"", SLIDING, ""),
];

fn manifest(redis_port: u16) -> Result<String> {
    let wasm = procs::guest("card_txn.wasm")?.display().to_string();
    let mut m = format!("[redis]\nurl = \"redis://127.0.0.1:{redis_port}/\"\n[server]\ntenant = \"bench\"\n");
    for (name, column, functions, windows, extra) in VIEWS {
        let _ = write!(
            m,
            "\n[[stream_view]]\nname = \"{name}\"\nentity = \"user\"\ntransform = {wasm:?}\nfeatures = [\"country\"]\nttl = \"30d\"\n"
        );
        if !column.is_empty() {
            let _ = write!(
                m,
                "[[stream_view.aggregations]]\ncolumn = \"{column}\"\nfunctions = [{functions}]\nwindows = [{windows}]\n{extra}"
            );
        }
    }
    Ok(m)
}

/// One `INFO`-style integer field of Redis (e.g. `used_memory`), or `DBSIZE`.
fn redis_int(port: u16, args: &[&str], field: Option<&str>) -> Result<i64> {
    let out = std::process::Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let value = match field {
        None => text.trim().to_string(),
        Some(f) => text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{f}:")))
            .with_context(|| format!("no {f} in INFO"))?
            .trim()
            .to_string(),
    };
    value.parse().with_context(|| format!("redis-cli {args:?}: {value:?}"))
}

/// Keys and hash fields of one entity of `view` (its tiles).
fn sample_entity(port: u16, view: &str) -> Result<(usize, usize, usize)> {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--scan", "--pattern", &format!("wafer:e:bench/{view}:*:u7*")])
        .output()?;
    let keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|k| k.ends_with(":u7") || k.contains(":u7|"))
        .map(str::to_string)
        .collect();
    let hash = keys.iter().find(|k| k.ends_with(":u7")).context("sampled entity u7 not found")?;
    let fields = redis_int(port, &["HLEN", hash], None)? as usize;
    let mut bytes = 0;
    for k in &keys {
        bytes += redis_int(port, &["MEMORY", "USAGE", k], None).unwrap_or(0) as usize;
    }
    Ok((keys.len(), fields, bytes))
}

pub fn run(a: Args) -> Result<()> {
    if a.users == 0 || a.events_per_user == 0 {
        bail!("--users and --events-per-user must be positive");
    }
    let dir = tempfile::tempdir()?;
    let (redis, redis_port) = procs::redis(dir.path())?;
    let config = dir.path().join("wafer.toml");
    std::fs::write(&config, manifest(redis_port)?)?;
    let port = procs::free_port()?;
    let wafer = procs::wafer_serve(&config, port, &[])?;
    let cpu = || (procs::cpu_secs(wafer.pid()), procs::cpu_secs(redis.pid()));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let span = a.span_hours.max(1) * 3_600_000;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    println!(
        "store-size: {} users x {} events over {} h, windows 1m/1h/24h/7d/lifetime (Redis used_memory growth / users)",
        a.users, a.events_per_user, a.span_hours
    );
    rt.block_on(async {
        let mut http = Conn::open(port).await?;
        for (view, _, functions, _, _) in VIEWS {
            let (mem0, keys0) = (redis_int(redis_port, &["INFO", "memory"], Some("used_memory"))?, redis_int(redis_port, &["DBSIZE"], None)?);
            let cpu0 = cpu();
            let mut rng = Rng(7);
            let mut events = Vec::with_capacity(5000);
            let total = a.users * a.events_per_user;
            for n in 0..total {
                let user = n % a.users;
                let t = now - rng.below(span as usize) as i64;
                let amount = rng.below(100_000) as f64 / 100.0;
                let merchant = rng.below(200);
                events.push(format!(
                    r#"{{"timestamp_ms":{t},"value":{{"user_id":"u{user}","amount":{amount},"country":"DE","merchant":"m{merchant}"}}}}"#
                ));
                if events.len() == 5000 || n + 1 == total {
                    let body = format!(r#"{{"events":[{}]}}"#, events.join(","));
                    http.post(&format!("/v1/views/{view}/events"), Bytes::from(body)).await?;
                    events.clear();
                }
            }
            let (mem1, keys1) = (redis_int(redis_port, &["INFO", "memory"], Some("used_memory"))?, redis_int(redis_port, &["DBSIZE"], None)?);
            let cpu1 = cpu();
            let (ekeys, efields, ebytes) = sample_entity(redis_port, view)?;
            let what = if functions.is_empty() { "latest value only" } else { functions };
            println!(
                "  {view:<10} ({what}): {:>8.0} bytes/entity, {:.2} keys/entity; entity u7: {ekeys} key(s), {efields} hash fields, {ebytes} bytes (MEMORY USAGE); cpu per 1k events: wafer {:.1} ms, redis {:.1} ms",
                (mem1 - mem0) as f64 / a.users as f64,
                (keys1 - keys0) as f64 / a.users as f64,
                1e6 * (cpu1.0 - cpu0.0) / total as f64,
                1e6 * (cpu1.1 - cpu0.1) / total as f64,
            );
            if !functions.is_empty() && a.reads > 0 {
                read_cost(&mut http, view, a.users, a.reads, &cpu).await?;
            }
        }
        Ok(())
    })
}

/// The aggregated features of `view` (from `GET /v1/views`).
async fn aggregated_features(http: &mut Conn, view: &str) -> Result<Vec<String>> {
    let body: serde_json::Value = serde_json::from_slice(&http.get("/v1/views").await?)?;
    let views = body["views"].as_array().context("GET /v1/views: no views")?;
    let v = views.iter().find(|v| v["name"] == view).with_context(|| format!("no view {view}"))?;
    let names = v["features"].as_array().context("no features")?.iter().filter_map(|f| f["name"].as_str());
    Ok(names.filter(|n| *n != "country").map(str::to_owned).collect())
}

/// `reads` requests of 100 entities × every aggregated feature; CPU of both processes per request.
async fn read_cost(
    http: &mut Conn,
    view: &str,
    users: usize,
    reads: usize,
    cpu: &impl Fn() -> (f64, f64),
) -> Result<()> {
    let features = aggregated_features(http, view).await?;
    let cpu0 = cpu();
    for r in 0..reads {
        let entities: Vec<String> = (0..100).map(|i| format!("u{}", (r * 100 + i) % users)).collect();
        let body = serde_json::json!({"view": view, "entities": entities, "features": features});
        http.post("/v1/features", Bytes::from(body.to_string())).await?;
    }
    let cpu1 = cpu();
    println!(
        "  {:<10} reads: {} features x 100 entities; cpu per request: wafer {:.2} ms, redis {:.2} ms",
        "",
        features.len(),
        1e3 * (cpu1.0 - cpu0.0) / reads as f64,
        1e3 * (cpu1.1 - cpu0.1) / reads as f64,
    );
    Ok(())
}
