//! The serving scenario of issues 4 and 14: 100,000 users' `user_stats` materialized from a file
//! into Redis; the `txn_risk` request view reads three of them plus `amount` and `country` from
//! the request. Random users per request, through the native API (`--api native`) or Feast's
//! (`--api feast`: `POST /get-online-features`, request columns inside `entities`), with string
//! (`u123`) or int64 (`--int-keys`) user ids, `--features N` stored features per entity (the 4
//! of `user_stats` plus float columns `x0..`), with or without the request view.
//!
//! Every phase prints the server's CPU per request (user + system time of the `wafer serve`
//! process from `/proc/<pid>/stat` over the phase), besides rps and latencies, and the same for
//! what shares its cores: the Redis process(es) and this load generator (not wrk's, under
//! `--wrk`). When the server is below a core while the client waits, the Redis figure says why
//! (wide requests: one hash field per feature).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;

use crate::client::Conn;
use crate::procs;
use crate::rng::Rng;
use crate::stats::Latencies;

#[derive(clap::Args)]
pub struct Args {
    /// Users to materialize.
    #[arg(long, default_value_t = 100_000)]
    users: usize,
    /// Requests in the sequential phase (0 skips it).
    #[arg(long, default_value_t = 20_000)]
    sequential: usize,
    /// Connections in the concurrent phase.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds of the concurrent phase (0 skips it).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Entities per request in the batch phase.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Requests in the batch phase (0 skips it).
    #[arg(long, default_value_t = 3_000)]
    batch_requests: usize,
    /// Connections in the batch phase (1: sequential).
    #[arg(long, default_value_t = 1)]
    batch_connections: usize,
    /// `wafer serve --worker-threads` (default: wafer's, one per core).
    #[arg(long)]
    worker_threads: Option<usize>,
    /// Which endpoint: `native` (`POST /v1/features`) or `feast` (`POST /get-online-features`).
    #[arg(long, value_enum, default_value_t = Api::Native)]
    api: Api,
    /// Integer user ids (Feast's int64 join keys) instead of `u123` strings.
    #[arg(long)]
    int_keys: bool,
    /// Stored features per entity (at least 4: `user_stats`' own, then `x0..` float columns).
    #[arg(long, default_value_t = 4)]
    features: usize,
    /// Stored features only: no request view in the requests.
    #[arg(long)]
    no_request_view: bool,
    /// Instead of the built-in phases: `wrk -t2 -c<connections> -d<seconds>s` with
    /// `bench/wrk/feast.lua` (random bodies per request), and the server's CPU over it.
    #[arg(long)]
    wrk: bool,
    /// Serve from a Redis Cluster of this many masters instead of a single Redis (0).
    #[arg(long, default_value_t = 0)]
    redis_cluster: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Api {
    Native,
    Feast,
}

const COUNTRIES: &[&str] = &["DE", "FR", "US", "GB", "IT", "ES", "NL", "PL"];
const BASE: [&str; 4] = ["txn_count_7d", "amount_sum_7d", "amount_mean_7d", "last_country"];

/// What the requests ask for.
struct Shape {
    api: Api,
    int_keys: bool,
    features: Vec<String>,
    request_view: bool,
}

impl Shape {
    fn path(&self) -> &'static str {
        match self.api {
            Api::Native => "/v1/features",
            Api::Feast => "/get-online-features",
        }
    }

    fn key(&self, u: usize) -> String {
        match (self.int_keys, self.api) {
            (true, Api::Feast) => u.to_string(),
            // The native API takes keys as text.
            (true, Api::Native) => format!("\"{u}\""),
            (false, _) => format!("\"u{u}\""),
        }
    }

    /// Request bodies for `n` random users each, prebuilt so the generator spends its CPU on I/O.
    fn bodies(&self, rng: &mut Rng, users: usize, per_request: usize, count: usize) -> Vec<Bytes> {
        let features = serde_json::to_string(&self.features).unwrap_or_default();
        (0..count)
            .map(|_| {
                let (mut ents, mut amounts, mut countries) = (String::new(), String::new(), String::new());
                for i in 0..per_request {
                    let sep = if i == 0 { "" } else { "," };
                    let _ = write!(ents, "{sep}{}", self.key(rng.below(users)));
                    let _ = write!(amounts, "{sep}{}.{:02}", rng.below(500), rng.below(100));
                    let _ = write!(countries, "{sep}\"{}\"", COUNTRIES[rng.below(COUNTRIES.len())]);
                }
                let rd = if self.request_view {
                    match self.api {
                        Api::Native => {
                            format!(",\"request_data\":{{\"amount\":[{amounts}],\"country\":[{countries}]}}")
                        }
                        Api::Feast => format!(",\"amount\":[{amounts}],\"country\":[{countries}]"),
                    }
                } else {
                    String::new()
                };
                Bytes::from(match self.api {
                    Api::Native => format!("{{\"entities\":[{ents}],\"features\":{features}{rd}}}"),
                    Api::Feast => format!("{{\"features\":{features},\"entities\":{{\"user_id\":[{ents}]{rd}}}}}"),
                })
            })
            .collect()
    }

    /// Check one single-entity answer: stored features present, the risk score a number.
    fn check(&self, body: &[u8]) -> Result<()> {
        let v: serde_json::Value = serde_json::from_slice(body)?;
        let ok = match self.api {
            Api::Native => {
                let f = &v["results"][0]["features"];
                f["user_stats:txn_count_7d"]["status"] == "present"
                    && (!self.request_view || f["risk:risk_score"]["value"].is_number())
            }
            Api::Feast => {
                let r = &v["results"];
                r[1]["statuses"][0] == "PRESENT"
                    && (!self.request_view || r[self.features.len()]["values"][0].is_number())
            }
        };
        if !ok {
            bail!("unexpected response: {v}");
        }
        Ok(())
    }
}

/// CPU over a phase, per request: the server's, and what shares its cores (the store's Redis
/// processes and this load generator), so a phase's ceiling can be explained.
struct Cpu {
    /// Server, Redis, this process.
    groups: procs::CpuGroups,
    /// Whether this process generates the load (not so under wrk).
    load_generator: bool,
    at: Vec<f64>,
}

impl Cpu {
    fn start(server: u32, redis: &[u32]) -> Result<Self> {
        let groups = procs::CpuGroups(vec![vec![server], redis.to_vec(), vec![std::process::id()]]);
        Ok(Self { at: groups.sample(), groups, load_generator: true })
    }

    fn without_load_generator(mut self) -> Self {
        self.load_generator = false;
        self
    }

    /// `server CPU X µs/request (Y% of a core); Redis A µs/request (B%); load generator C µs/request (D%)`.
    fn report(&self, requests: usize, secs: f64) -> Result<String> {
        let used = self.groups.since(&self.at);
        let per = |i: usize| (used[i] * 1e6 / requests.max(1) as f64, 100.0 * used[i] / secs.max(1e-9));
        let ((s, sp), (r, rp), (l, lp)) = (per(0), per(1), per(2));
        let mut out = format!("server CPU {s:.1} µs/request ({sp:.0}% of a core); Redis {r:.1} µs/request ({rp:.0}%)");
        if self.load_generator {
            out.push_str(&format!("; load generator {l:.1} µs/request ({lp:.0}%)"));
        }
        Ok(out)
    }
}

pub fn run(a: Args) -> Result<()> {
    anyhow::ensure!(a.features >= BASE.len(), "--features must be at least {}", BASE.len());
    let dir = tempfile::tempdir()?;
    let (redis, redis_port) = procs::redis(dir.path())?;
    let (cluster, cluster_ports) =
        if a.redis_cluster > 0 { procs::redis_cluster(dir.path(), a.redis_cluster)? } else { (Vec::new(), Vec::new()) };
    let redis_pids: Vec<u32> =
        if cluster.is_empty() { vec![redis.pid()] } else { cluster.iter().map(procs::Proc::pid).collect() };
    let redis_section = match cluster_ports.as_slice() {
        [] => format!("[redis]\nurl = \"redis://127.0.0.1:{redis_port}/\"\n"),
        [first, ..] => format!("[redis]\nurl = \"redis://127.0.0.1:{first}/\"\ncluster = true\n"),
    };
    println!(
        "store: {}",
        if cluster_ports.is_empty() {
            "single Redis".to_string()
        } else {
            format!("Redis Cluster of {} masters", cluster_ports.len())
        }
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let extra: Vec<String> = (0..a.features - BASE.len()).map(|i| format!("x{i}")).collect();

    // The users file.
    let mut rng = Rng(42);
    let mut csv = String::with_capacity(a.users * (48 + 8 * extra.len()));
    csv.push_str("user_id,event_timestamp,txn_count_7d,amount_sum_7d,amount_mean_7d,last_country");
    for x in &extra {
        let _ = write!(csv, ",{x}");
    }
    csv.push('\n');
    for u in 0..a.users {
        let n = rng.below(20);
        let mean = rng.below(30_000) as f64 / 100.0;
        let id = if a.int_keys { u.to_string() } else { format!("u{u}") };
        let _ = write!(
            csv,
            "{id},{},{n},{:.2},{mean:.2},{}",
            now - 3_600_000,
            mean * n as f64,
            COUNTRIES[rng.below(COUNTRIES.len())]
        );
        for _ in &extra {
            let _ = write!(csv, ",{}.{:02}", rng.below(1000), rng.below(100));
        }
        csv.push('\n');
    }
    let source = dir.path().join("user_stats.csv");
    std::fs::write(&source, csv)?;
    let mut feature_types = String::from(
        "txn_count_7d = \"int64\", amount_sum_7d = \"float64\", amount_mean_7d = \"float64\", last_country = \"text\"",
    );
    for x in &extra {
        let _ = write!(feature_types, ", {x} = \"float64\"");
    }
    let config = dir.path().join("wafer.toml");
    std::fs::write(
        &config,
        format!(
            "{redis_section}[server]\ntenant = \"bench\"\n\n\
             [[batch_view]]\nname = \"user_stats\"\nentity = \"user_id\"\nsource = \"user_stats.csv\"\nttl = \"30d\"\n\
             features = {{ {feature_types} }}\n\n\
             [[request_view]]\nname = \"risk\"\ntransform = {:?}\n",
            procs::guest("txn_risk.wasm")?.display().to_string()
        ),
    )?;
    let mut features: Vec<String> =
        BASE.iter().copied().chain(extra.iter().map(String::as_str)).map(|f| format!("user_stats:{f}")).collect();
    if !a.no_request_view {
        features.extend(["risk:amount_vs_mean", "risk:is_new_country", "risk:risk_score"].map(String::from));
    }
    let shape = Shape { api: a.api, int_keys: a.int_keys, features, request_view: !a.no_request_view };

    // Materialize.
    let started = Instant::now();
    let out = std::process::Command::new(procs::wafer_bin()?)
        .args(["materialize", "--quiet", "--view", "user_stats", "--config"])
        .arg(&config)
        .output()?;
    let took = started.elapsed();
    if !out.status.success() {
        bail!("wafer materialize failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    println!(
        "materialize: {} rows × {} features in {:.2} s ({:.0} rows/s)",
        a.users,
        a.features,
        took.as_secs_f64(),
        a.users as f64 / took.as_secs_f64()
    );

    let port = procs::free_port()?;
    let threads: Vec<String> =
        a.worker_threads.map(|n| vec!["--worker-threads".into(), n.to_string()]).unwrap_or_default();
    let wafer = procs::wafer_serve(&config, port, &threads)?;
    let pid = wafer.pid();
    println!(
        "api {}, {} keys, {} stored features{}; wafer serve worker threads: {}",
        shape.path(),
        if a.int_keys { "int64" } else { "string" },
        a.features,
        if shape.request_view { " + the risk request view" } else { "" },
        a.worker_threads.map_or("default (one per core)".into(), |n| n.to_string())
    );
    if a.wrk {
        anyhow::ensure!(a.int_keys, "bench/wrk/feast.lua sends int64 keys: add --int-keys");
        let script = procs::root().join("bench/wrk/feast.lua");
        // The load generator is wrk here: its CPU is not this process's (left out).
        let cpu = Cpu::start(pid, &redis_pids)?.without_load_generator();
        let started = Instant::now();
        let out = std::process::Command::new("wrk")
            .args(["-t2", &format!("-c{}", a.connections), &format!("-d{}s", a.seconds.max(1)), "--latency", "-s"])
            .arg(&script)
            .arg(format!("http://127.0.0.1:{port}"))
            .env("WAFER_USERS", a.users.to_string())
            .env("WAFER_ENTITIES", a.batch.to_string())
            .env("WAFER_FEATURES", shape.features.join(","))
            .env("WAFER_NO_REQUEST_VIEW", if shape.request_view { "0" } else { "1" })
            .env("WAFER_API", if a.api == Api::Native { "native" } else { "feast" })
            .output()
            .context("running wrk (apt-get install wrk)")?;
        let secs = started.elapsed().as_secs_f64();
        let text = String::from_utf8_lossy(&out.stdout);
        print!("{text}{}", String::from_utf8_lossy(&out.stderr));
        let requests: usize = text
            .lines()
            .find_map(|l| l.trim().split_once(" requests in ").and_then(|(n, _)| n.trim().parse().ok()))
            .context("wrk printed no request count")?;
        println!("wrk, {} entities per request: {}", a.batch, cpu.report(requests, secs)?);
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        // Check one answer before measuring.
        let mut c = Conn::open(port).await?;
        let one = c.post(shape.path(), shape.bodies(&mut Rng(7), a.users, 1, 1).remove(0)).await?;
        shape.check(&one)?;

        // Sequential single-entity.
        let pool = shape.bodies(&mut rng, a.users, 1, 4096);
        if a.sequential > 0 {
            for b in pool.iter().take(2000) {
                c.post(shape.path(), b.clone()).await?;
            }
            let mut lat = Latencies::with_capacity(a.sequential);
            let cpu = Cpu::start(pid, &redis_pids)?;
            let started = Instant::now();
            for i in 0..a.sequential {
                let t = Instant::now();
                c.post(shape.path(), pool[i % pool.len()].clone()).await?;
                lat.push(t.elapsed());
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "sequential, 1 entity: {} requests, p50 {:.3} ms, p99 {:.3} ms, {:.0} req/s, {}",
                lat.len(),
                lat.pct(50.0),
                lat.pct(99.0),
                lat.len() as f64 / secs,
                cpu.report(lat.len(), secs)?
            );
        }

        // Concurrent single-entity.
        if a.seconds > 0 {
            let cpu = Cpu::start(pid, &redis_pids)?;
            let (mut lat, secs) =
                concurrent(port, shape.path(), a.connections, Duration::from_secs(a.seconds), None, &pool).await?;
            println!(
                "{} connections, 1 entity: {} requests in {:.1} s, {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, {}",
                a.connections,
                lat.len(),
                secs,
                lat.len() as f64 / secs,
                lat.pct(50.0),
                lat.pct(99.0),
                cpu.report(lat.len(), secs)?
            );
        }

        // Batches of entities.
        if a.batch_requests > 0 {
            let pool = shape.bodies(&mut rng, a.users, a.batch, 256);
            for b in pool.iter().take(100) {
                c.post(shape.path(), b.clone()).await?;
            }
            let cpu = Cpu::start(pid, &redis_pids)?;
            let per = a.batch_requests.div_ceil(a.batch_connections.max(1));
            let (mut lat, secs) =
                concurrent(port, shape.path(), a.batch_connections.max(1), Duration::from_secs(3600), Some(per), &pool)
                    .await?;
            println!(
                "{} connection(s), {} entities × {} features: {} requests, p50 {:.3} ms, p99 {:.3} ms, {:.0} req/s ({:.0} entities/s), {}",
                a.batch_connections.max(1),
                a.batch,
                shape.features.len(),
                lat.len(),
                lat.pct(50.0),
                lat.pct(99.0),
                lat.len() as f64 / secs,
                (lat.len() * a.batch) as f64 / secs,
                cpu.report(lat.len(), secs)?
            );
        }
        Ok::<_, anyhow::Error>(())
    })
    .context("load phases")
}

/// `connections` clients posting from `pool` until `dur` passes or each has sent `count`.
async fn concurrent(
    port: u16,
    path: &'static str,
    connections: usize,
    dur: Duration,
    count: Option<usize>,
    pool: &[Bytes],
) -> Result<(Latencies, f64)> {
    let started = Instant::now();
    let deadline = started + dur;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let pool: Vec<Bytes> = pool.iter().skip(c * 97).chain(pool.iter()).take(pool.len()).cloned().collect();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(port).await?;
            let mut lat = Latencies::with_capacity(count.unwrap_or(100_000));
            let mut i = 0;
            while Instant::now() < deadline && count.is_none_or(|n| i < n) {
                let t = Instant::now();
                conn.post(path, pool[i % pool.len()].clone()).await?;
                lat.push(t.elapsed());
                i += 1;
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Latencies::with_capacity(1_000_000);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all, started.elapsed().as_secs_f64()))
}
