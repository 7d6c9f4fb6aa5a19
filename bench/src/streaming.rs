//! The streaming scenario of issue 3, all against a private tansu broker and Redis:
//! 1. **ceiling**: a bare consumer (Wafer's batching, one pipelined `HINCRBY` per event, commit
//!    after the write) drains N card transactions;
//! 2. **throughput**: `wafer serve` drains the same N events through `card_txn.wasm` with four
//!    aggregations (amount count/sum/mean/max over 1h); events/s from the first to the last
//!    applied event (polling `wafer_events_total`), then every user's count is checked;
//! 3. **freshness**: at about half that rate for a few seconds on a second view/topic, time from
//!    produce to readable over HTTP, measured by the client on marker events (unique users,
//!    polled every millisecond) and from Wafer's `wafer_freshness_seconds` histogram.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use serde_json::json;

use crate::client::Conn;
use crate::stats::Latencies;
use crate::{ceiling, kafka, procs, prom};

/// The labels of the freshness phase's view in Wafer's histograms.
const FRESH_LABELS: &str = "tenant=\"bench\",view=\"fresh\"";

#[derive(clap::Args)]
pub struct Args {
    /// Events in the throughput phases (rates are measured over the last 80%, once the
    /// consumers' prefetch no longer inflates them).
    #[arg(long, default_value_t = 500_000)]
    events: usize,
    /// Distinct users (Kafka keys / entities).
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Seconds of the freshness phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Events/s of the freshness phase (default: half the measured throughput).
    #[arg(long)]
    rate: Option<f64>,
    /// Skip the ceiling and throughput phases (needs --rate).
    #[arg(long, requires = "rate")]
    only_freshness: bool,
    /// Producer linger (ms) in the freshness phase. tansu's CPU per produce request grows with
    /// the topic's size (in-memory storage): at 55k events/s with 2 ms it reaches a full core
    /// within 10 s and freshness then measures the broker's queue; 5 ms keeps it near half a core
    /// (wafer_source_lag_seconds shows the producer's and broker's share).
    #[arg(long, default_value_t = 5)]
    linger_ms: u32,
    /// Partitions of each topic. tansu's CPU per produce and fetch request grows with the
    /// partitions a request touches and with their size: at 4 partitions it nears a full core
    /// in the freshness phase and adds ~2 ms to the median (wafer_source_lag_seconds).
    #[arg(long, default_value_t = 2)]
    partitions: i32,
    /// librdkafka consumer properties for wafer's consumers (`[kafka] consumer`), e.g.
    /// `--consumer fetch.wait.max.ms=2`; repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    consumer: Vec<String>,
    /// Marker events (measured client-side) per second in the freshness phase.
    #[arg(long, default_value_t = 200.0)]
    markers: f64,
    /// Run Wafer's store on a Redis Cluster of this many masters (the ceiling keeps its single
    /// Redis); 0: a single Redis.
    #[arg(long, default_value_t = 0)]
    redis_cluster: usize,
}

/// The processes whose CPU each phase reports: wafer (or the ceiling's consumer), Redis, tansu.
struct Cpu {
    groups: procs::CpuGroups,
}

impl Cpu {
    fn new(wafer: u32, redis: Vec<u32>, tansu: u32) -> Self {
        Self { groups: procs::CpuGroups(vec![vec![wafer], redis, vec![tansu]]) }
    }

    fn sample(&self) -> Vec<f64> {
        self.groups.sample()
    }

    /// Print the CPU used since `before` by each process, per 1,000 events.
    fn report(&self, phase: &str, before: &[f64], events: usize) {
        let used = self.groups.since(before);
        let (w, r, t) = (used[0], used[1], used[2]);
        let per = |x: f64| 1e3 * 1e3 * x / events.max(1) as f64;
        println!(
            "  cpu ({phase}, {events} events): wafer {w:.2} s ({:.1} ms/1k events), redis ({} process(es)) {r:.2} s ({:.1} ms/1k), tansu {t:.2} s ({:.1} ms/1k)",
            per(w),
            self.groups.0[1].len(),
            per(r),
            per(t)
        );
    }
}

const TXNS: &str = "bench.txns";
const FRESH: &str = "bench.fresh";

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn manifest(redis: &str, brokers: &str, batch_size: usize, consumer: &[String]) -> Result<String> {
    let wasm = procs::guest("card_txn.wasm")?.display().to_string();
    let mut props = String::new();
    for kv in consumer {
        let (k, v) = kv.split_once('=').with_context(|| format!("--consumer {kv}: expected KEY=VALUE"))?;
        let _ = write!(props, "{}{k:?} = {v:?}", if props.is_empty() { "" } else { ", " });
    }
    let mut m = format!(
        "{redis}[kafka]\nbrokers = \"{brokers}\"\ngroup_id = \"bench\"\nconsumer = {{ {props} }}\n[server]\ntenant = \"bench\"\n"
    );
    for (name, topic) in [("txn", TXNS), ("fresh", FRESH)] {
        let _ = write!(
            m,
            "\n[[stream_view]]\nname = \"{name}\"\nentity = \"user\"\ntransform = {wasm:?}\ntopic = \"{topic}\"\nbatch_size = {batch_size}\n\
             [[stream_view.aggregations]]\ncolumn = \"amount\"\nfunctions = [\"count\", \"sum\", \"mean\", \"max\"]\nwindows = [\"1h\"]\n"
        );
    }
    Ok(m)
}

pub fn run(a: Args) -> Result<()> {
    if a.events == 0 || a.users == 0 {
        bail!("--events and --users must be positive");
    }
    let dir = tempfile::tempdir()?;
    let (redis_proc, redis_port) = procs::redis(dir.path())?;
    let (tansu, kafka_port) = procs::tansu(dir.path())?;
    let (cluster, cluster_ports) =
        if a.redis_cluster > 0 { procs::redis_cluster(dir.path(), a.redis_cluster)? } else { (Vec::new(), Vec::new()) };
    let brokers = format!("127.0.0.1:{kafka_port}");
    let redis_url = format!("redis://127.0.0.1:{redis_port}/");
    let section = match cluster_ports.as_slice() {
        [] => format!("[redis]\nurl = \"{redis_url}\"\n"),
        [first, rest @ ..] => {
            let seeds: Vec<String> = rest.iter().map(|p| format!("\"redis://127.0.0.1:{p}/\"")).collect();
            format!("[redis]\nurl = \"redis://127.0.0.1:{first}/\"\ncluster = true\nseeds = [{}]\n", seeds.join(", "))
        }
    };
    let store_pids: Vec<u32> =
        if cluster.is_empty() { vec![redis_proc.pid()] } else { cluster.iter().map(procs::Proc::pid).collect() };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        kafka::create_topics(&brokers, &[TXNS, FRESH], a.partitions).await?;
        let config = dir.path().join("wafer.toml");
        std::fs::write(&config, manifest(&section, &brokers, 512, &a.consumer)?)?;
        if a.only_freshness {
            let port = procs::free_port()?;
            let wafer = procs::wafer_serve(&config, port, &[])?;
            let cpu = Cpu::new(wafer.pid(), store_pids.clone(), tansu.pid());
            let mut http = Conn::open(port).await?;
            return freshness(&mut http, port, &brokers, &a, a.rate.unwrap_or(1000.0), &cpu).await;
        }
        let bulk = kafka::producer(&brokers, 5)?;
        let secs = kafka::produce_bulk(&bulk, TXNS, a.events, a.users, now_ms()).await?;
        println!("produce: {} events to {TXNS} ({} partitions, {} users) in {secs:.2} s ({:.0} events/s)", a.events, a.partitions, a.users, a.events as f64 / secs);

        let ceiling_cpu = Cpu::new(std::process::id(), vec![redis_proc.pid()], tansu.pid());
        let before = ceiling_cpu.sample();
        let ceiling = ceiling::run(&brokers, &redis_url, TXNS, a.events).await?;
        println!("ceiling (consume + 1 pipelined HINCRBY per event, no transform): {ceiling:.0} events/s");
        println!("  (the ceiling's consumer is this bench process: its CPU shows as wafer below)");
        ceiling_cpu.report("ceiling", &before, a.events);

        let port = procs::free_port()?;
        let wafer = procs::wafer_serve(&config, port, &[])?;
        let cpu = Cpu::new(wafer.pid(), store_pids.clone(), tansu.pid());
        let mut http = Conn::open(port).await?;

        let before = cpu.sample();
        let eps = throughput(&mut http, a.events).await?;
        cpu.report("throughput", &before, a.events);
        check_counts(&mut http, a.users, a.events).await?;
        let store = if cluster.is_empty() { "Redis".to_string() } else { format!("Redis Cluster of {}", cluster.len()) };
        println!("throughput (card_txn.wasm, 4 aggregations, {store}): {eps:.0} events/s = {:.0}% of the ceiling (target >= 100%)", 100.0 * eps / ceiling);

        let rate = a.rate.unwrap_or(eps / 2.0);
        freshness(&mut http, port, &brokers, &a, rate, &cpu).await
    })
}

/// Poll `wafer_events_total` until all `n` events of the txn view are applied.
async fn throughput(http: &mut Conn, n: usize) -> Result<f64> {
    let ok = "wafer_events_total{tenant=\"bench\",view=\"txn\",outcome=\"ok\"}";
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut first: Option<(Instant, f64)> = None;
    loop {
        let text = http.get("/metrics").await?;
        let text = std::str::from_utf8(&text)?;
        let done = prom::value(text, ok).unwrap_or(0.0);
        let now = Instant::now();
        if done >= n as f64 * 0.2 && first.is_none() {
            first = Some((now, done));
        }
        if done >= n as f64 {
            let (t0, c0) = first.unwrap_or((now, 0.0));
            let secs = now.duration_since(t0).as_secs_f64();
            if secs <= 0.0 {
                bail!("all events were applied before the first poll; use more --events");
            }
            let sum =
                prom::value(text, "wafer_transform_batch_seconds_sum{tenant=\"bench\",view=\"txn\"}").unwrap_or(0.0);
            let count =
                prom::value(text, "wafer_transform_batch_seconds_count{tenant=\"bench\",view=\"txn\"}").unwrap_or(0.0);
            println!(
                "  {count} transform batches ({:.0} events each), {sum:.2} s in transform + fold of {secs:.2} s",
                n as f64 / count.max(1.0)
            );
            return Ok((n as f64 - c0) / secs);
        }
        if now > deadline {
            bail!(
                "only {done} of {n} events applied after 300 s; errors: {}",
                text.lines()
                    .filter(|l| l.starts_with("wafer_events_total") && !l.contains("outcome=\"ok\""))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Users read per request by [`check_counts`]: a 1h count reads one tile field per minute, and
/// all 10,000 users in one request take Redis longer than the serving deadline (300 ms).
const CHECK_CHUNK: usize = 500;

/// Every user's `amount_count_1h` must add up to exactly `n`: nothing lost or counted twice.
async fn check_counts(http: &mut Conn, users: usize, n: usize) -> Result<()> {
    let entities: Vec<String> = (0..users).map(|u| format!("u{u}")).collect();
    let mut total: i64 = 0;
    for chunk in entities.chunks(CHECK_CHUNK) {
        let body = json!({"view": "txn", "entities": chunk, "features": ["amount_count_1h"]});
        let resp: serde_json::Value =
            serde_json::from_slice(&http.post("/v1/features", Bytes::from(body.to_string())).await?)?;
        total += resp["results"]
            .as_array()
            .context("no results")?
            .iter()
            .map(|r| r["features"]["amount_count_1h"]["value"].as_i64().unwrap_or(0))
            .sum::<i64>();
    }
    if total != n as i64 {
        bail!("the txn view counted {total} events, {n} were produced");
    }
    Ok(())
}

type Pending = Arc<Mutex<VecDeque<(String, Instant)>>>;

async fn freshness(http: &mut Conn, port: u16, brokers: &str, a: &Args, rate: f64, cpu: &Cpu) -> Result<()> {
    // Warm up: the fresh view's consumer must own its partitions before the clock runs.
    let producer = kafka::producer(brokers, a.linger_ms)?;
    let mut value = String::new();
    kafka::payload(&mut value, "warmup", 0);
    kafka::delivered(vec![kafka::send(&producer, FRESH, "warmup", &value, now_ms()).await?]).await?;
    let ok = "wafer_events_total{tenant=\"bench\",view=\"fresh\",outcome=\"ok\"}";
    let deadline = Instant::now() + Duration::from_secs(60);
    while prom::value(std::str::from_utf8(&http.get("/metrics").await?)?, ok).unwrap_or(0.0) < 1.0 {
        if Instant::now() > deadline {
            bail!("the fresh view did not consume its warm-up event in 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = http.get("/metrics").await?;
    let before = prom::buckets(std::str::from_utf8(&text)?, "wafer_freshness_seconds", FRESH_LABELS);
    let lag_before = prom::buckets(std::str::from_utf8(&text)?, "wafer_source_lag_seconds", FRESH_LABELS);

    let total = (rate * a.seconds as f64) as usize;
    let every = ((rate / a.markers.max(1.0)) as usize).max(1);
    let pending: Pending = Arc::new(Mutex::new(VecDeque::new()));
    let produced = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = Instant::now();
    let cpu_before = cpu.sample();
    let send_all = async {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        let (mut sent, mut key, mut value) = (0usize, String::new(), String::new());
        let mut futs = Vec::with_capacity(total);
        while sent < total {
            tick.tick().await;
            let due = ((started.elapsed().as_secs_f64() * rate) as usize).min(total);
            while sent < due {
                key.clear();
                let marker = sent % every == 0;
                if marker {
                    let _ = write!(key, "mk{sent}");
                } else {
                    let _ = write!(key, "u{}", sent % a.users);
                }
                kafka::payload(&mut value, &key, sent);
                let t = Instant::now();
                futs.push(kafka::send(&producer, FRESH, &key, &value, now_ms()).await?);
                if marker {
                    pending.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push_back((key.clone(), t));
                }
                sent += 1;
            }
        }
        let secs = started.elapsed().as_secs_f64();
        produced.store(true, std::sync::atomic::Ordering::Release);
        kafka::delivered(futs).await?;
        Ok::<_, anyhow::Error>((sent, secs))
    };
    let poll = poll_markers(port, pending.clone(), produced.clone());
    let ((sent, secs), mut client) = futures::try_join!(send_all, poll)?;
    cpu.report("freshness", &cpu_before, sent);
    println!(
        "freshness phase: {sent} events to {FRESH} in {secs:.1} s ({:.0} events/s, target rate {rate:.0}), {} markers",
        sent as f64 / secs,
        client.len()
    );
    println!(
        "freshness, client-side (produce -> readable over HTTP, 1 ms polling): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (targets p50 < 10, p99 < 50)",
        client.pct(50.0),
        client.pct(99.0),
        client.pct(100.0)
    );

    // Wafer's own histogram, over the events of this phase only. On a connection of its own: the
    // phase's may have been closed by the server while the markers were polled on others.
    let mut http = Conn::open(port).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = http.get("/metrics").await?;
        let text = std::str::from_utf8(&text)?;
        let h = prom::diff(&prom::buckets(text, "wafer_freshness_seconds", FRESH_LABELS), &before);
        let n = h.last().map_or(0.0, |b| b.1);
        if n >= sent as f64 || Instant::now() > deadline {
            println!(
                "freshness, wafer_freshness_seconds (Kafka timestamp -> written): {n} events, p50 {:.2} ms, p99 {:.2} ms (histogram_quantile)",
                prom::quantile(0.5, &h) * 1e3,
                prom::quantile(0.99, &h) * 1e3
            );
            let lag = prom::diff(&prom::buckets(text, "wafer_source_lag_seconds", FRESH_LABELS), &lag_before);
            println!(
                "  of which wafer_source_lag_seconds (Kafka timestamp -> batch received: producer + broker): p50 {:.2} ms, p99 {:.2} ms",
                prom::quantile(0.5, &lag) * 1e3,
                prom::quantile(0.99, &lag) * 1e3
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Poll the oldest pending markers every millisecond until each is readable.
async fn poll_markers(port: u16, pending: Pending, produced: Arc<std::sync::atomic::AtomicBool>) -> Result<Latencies> {
    let mut conn = Conn::open(port).await?;
    let mut lat = Latencies::with_capacity(4096);
    let mut idle_since: Option<Instant> = None;
    loop {
        let batch: Vec<(String, Instant)> =
            pending.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.iter().take(64).cloned().collect();
        if batch.is_empty() {
            if produced.load(std::sync::atomic::Ordering::Acquire) {
                return Ok(lat);
            }
        } else {
            let ents: Vec<&str> = batch.iter().map(|(k, _)| k.as_str()).collect();
            let body = json!({"view": "fresh", "entities": ents, "features": ["amount_count_1h"]});
            let resp: serde_json::Value =
                serde_json::from_slice(&conn.post("/v1/features", Bytes::from(body.to_string())).await?)?;
            let now = Instant::now();
            let results = resp["results"].as_array().context("no results")?;
            let mut seen = Vec::new();
            for ((key, t), r) in batch.iter().zip(results) {
                if r["features"]["amount_count_1h"]["value"].as_i64().unwrap_or(0) >= 1 {
                    lat.push(now.duration_since(*t));
                    seen.push(key.as_str());
                }
            }
            if seen.is_empty() {
                let since = *idle_since.get_or_insert(now);
                if now.duration_since(since) > Duration::from_secs(30) {
                    bail!("marker {} never became readable", batch[0].0);
                }
            } else {
                idle_since = None;
            }
            pending.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.retain(|(k, _)| !seen.contains(&k.as_str()));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
