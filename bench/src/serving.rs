//! The serving scenario of issue 4: 100,000 users' `user_stats` materialized from a file into
//! Redis; the `txn_risk` request view reads three of them plus `amount` and `country` from the
//! request. Random users per request.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;

use crate::client::Conn;
use crate::procs;
use crate::stats::Latencies;

#[derive(clap::Args)]
pub struct Args {
    /// Users to materialize.
    #[arg(long, default_value_t = 100_000)]
    users: usize,
    /// Requests in the sequential phase.
    #[arg(long, default_value_t = 20_000)]
    sequential: usize,
    /// Connections in the concurrent phase.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds of the concurrent phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Entities per request in the batch phase.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Requests in the batch phase.
    #[arg(long, default_value_t = 3_000)]
    batch_requests: usize,
    /// `wafer serve --worker-threads` (default: wafer's, one per core).
    #[arg(long)]
    worker_threads: Option<usize>,
    /// Serve from a Redis Cluster of this many masters instead of a single Redis (0).
    #[arg(long, default_value_t = 0)]
    redis_cluster: usize,
}

const COUNTRIES: &[&str] = &["DE", "FR", "US", "GB", "IT", "ES", "NL", "PL"];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Request bodies for `n` random users each, prebuilt so the generator spends its CPU on I/O.
fn bodies(rng: &mut Rng, users: usize, per_request: usize, count: usize) -> Vec<Bytes> {
    (0..count)
        .map(|_| {
            let (mut ents, mut amounts, mut countries) = (String::new(), String::new(), String::new());
            for i in 0..per_request {
                let sep = if i == 0 { "" } else { "," };
                let _ = write!(ents, "{sep}\"u{}\"", rng.below(users));
                let _ = write!(amounts, "{sep}{}.{:02}", rng.below(500), rng.below(100));
                let _ = write!(countries, "{sep}\"{}\"", COUNTRIES[rng.below(COUNTRIES.len())]);
            }
            Bytes::from(format!(
                "{{\"entities\":[{ents}],\"features\":[\"user_stats:txn_count_7d\",\"user_stats:amount_sum_7d\",\"user_stats:amount_mean_7d\",\"user_stats:last_country\",\"risk:amount_vs_mean\",\"risk:is_new_country\",\"risk:risk_score\"],\"request_data\":{{\"amount\":[{amounts}],\"country\":[{countries}]}}}}"
            ))
        })
        .collect()
}

pub fn run(a: Args) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (_redis, redis_port) = procs::redis(dir.path())?;
    let (_cluster, cluster_ports) =
        if a.redis_cluster > 0 { procs::redis_cluster(dir.path(), a.redis_cluster)? } else { (Vec::new(), Vec::new()) };
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

    // The users file.
    let mut rng = Rng(42);
    let mut csv = String::with_capacity(a.users * 48);
    csv.push_str("user_id,event_timestamp,txn_count_7d,amount_sum_7d,amount_mean_7d,last_country\n");
    for u in 0..a.users {
        let n = rng.below(20);
        let mean = rng.below(30_000) as f64 / 100.0;
        let _ = writeln!(
            csv,
            "u{u},{},{n},{:.2},{mean:.2},{}",
            now - 3_600_000,
            mean * n as f64,
            COUNTRIES[rng.below(COUNTRIES.len())]
        );
    }
    let source = dir.path().join("user_stats.csv");
    std::fs::write(&source, csv)?;
    let config = dir.path().join("wafer.toml");
    std::fs::write(
        &config,
        format!(
            "{redis_section}[server]\ntenant = \"bench\"\n\n\
             [[batch_view]]\nname = \"user_stats\"\nentity = \"user\"\nsource = \"user_stats.csv\"\nentity_column = \"user_id\"\nttl = \"30d\"\n\
             features = {{ txn_count_7d = \"int64\", amount_sum_7d = \"float64\", amount_mean_7d = \"float64\", last_country = \"text\" }}\n\n\
             [[request_view]]\nname = \"risk\"\ntransform = {:?}\n",
            procs::guest("txn_risk.wasm")?.display().to_string()
        ),
    )?;

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
        "materialize: {} rows in {:.2} s ({:.0} rows/s)",
        a.users,
        took.as_secs_f64(),
        a.users as f64 / took.as_secs_f64()
    );

    let port = procs::free_port()?;
    let extra: Vec<String> =
        a.worker_threads.map(|n| vec!["--worker-threads".into(), n.to_string()]).unwrap_or_default();
    let _wafer = procs::wafer_serve(&config, port, &extra)?;
    println!(
        "wafer serve worker threads: {}",
        a.worker_threads.map_or("default (one per core)".into(), |n| n.to_string())
    );
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        // Check one answer before measuring.
        let mut c = Conn::open(port).await?;
        let one = c.post("/v1/features", bodies(&mut Rng(7), a.users, 1, 1).remove(0)).await?;
        let v: serde_json::Value = serde_json::from_slice(&one)?;
        let f = &v["results"][0]["features"];
        if f["user_stats:txn_count_7d"]["status"] != "present" || !f["risk:risk_score"]["value"].is_number() {
            bail!("unexpected response: {v}");
        }

        // Sequential single-entity.
        let pool = bodies(&mut rng, a.users, 1, 4096);
        for b in pool.iter().take(2000) {
            c.post("/v1/features", b.clone()).await?;
        }
        let mut lat = Latencies::with_capacity(a.sequential);
        let started = Instant::now();
        for i in 0..a.sequential {
            let t = Instant::now();
            c.post("/v1/features", pool[i % pool.len()].clone()).await?;
            lat.push(t.elapsed());
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "sequential, 1 entity: {} requests, p50 {:.3} ms, p99 {:.3} ms, {:.0} req/s",
            lat.len(),
            lat.pct(50.0),
            lat.pct(99.0),
            lat.len() as f64 / secs
        );

        // Concurrent single-entity.
        let (lat, secs) = concurrent(port, a.connections, Duration::from_secs(a.seconds), &pool).await?;
        let mut lat = lat;
        println!(
            "{} connections, 1 entity: {} requests in {:.1} s, {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms",
            a.connections,
            lat.len(),
            secs,
            lat.len() as f64 / secs,
            lat.pct(50.0),
            lat.pct(99.0)
        );

        // Batches of entities.
        let pool = bodies(&mut rng, a.users, a.batch, 256);
        for b in pool.iter().take(100) {
            c.post("/v1/features", b.clone()).await?;
        }
        let mut lat = Latencies::with_capacity(a.batch_requests);
        let started = Instant::now();
        for i in 0..a.batch_requests {
            let t = Instant::now();
            c.post("/v1/features", pool[i % pool.len()].clone()).await?;
            lat.push(t.elapsed());
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "sequential, {} entities: {} requests, p50 {:.3} ms, p99 {:.3} ms, {:.0} req/s ({:.0} entities/s)",
            a.batch,
            lat.len(),
            lat.pct(50.0),
            lat.pct(99.0),
            lat.len() as f64 / secs,
            (lat.len() * a.batch) as f64 / secs
        );
        Ok::<_, anyhow::Error>(())
    })
    .context("load phases")
}

async fn concurrent(port: u16, connections: usize, dur: Duration, pool: &[Bytes]) -> Result<(Latencies, f64)> {
    let started = Instant::now();
    let deadline = started + dur;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let pool: Vec<Bytes> = pool.iter().skip(c * 97).chain(pool.iter()).take(pool.len()).cloned().collect();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(port).await?;
            let mut lat = Latencies::with_capacity(100_000);
            let mut i = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                conn.post("/v1/features", pool[i % pool.len()].clone()).await?;
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
