//! The multi-tenant benchmarks of issue 5, against a private Redis and `wafer serve` in
//! registry mode:
//! 1. upload → first request served by the new version (Rust and Python card_txn);
//! 2. memory of a node holding many small tenant transforms (RSS from /proc);
//! 3. noisy neighbour: a quiet tenant's serving p99 and throughput alone, then while another
//!    tenant (default quotas) floods three request views from 8 connections: a loop burning its
//!    whole deadline, a memory bomb and a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use serde_json::{Value as Json, json};

use crate::client::Conn;
use crate::procs::{self, Proc};
use crate::stats::Latencies;

const ADMIN: &str = "bench-admin-token-0123456789";

#[derive(clap::Args)]
pub struct Args {
    /// Tenants in the memory phase.
    #[arg(long, default_value_t = 100)]
    tenants: usize,
    /// Transforms (and stream views) per tenant in the memory phase.
    #[arg(long, default_value_t = 10)]
    per_tenant: usize,
    /// Seconds of each noisy-neighbour phase.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Skip phases: any of upload, memory, noisy.
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
}

/// curl, for control calls (not on the measured path).
fn call(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Json>,
    file: Option<&Path>,
) -> Result<(u16, Json)> {
    let mut c = Command::new("curl");
    c.args(["-s", "-w", "\n%{http_code}", "-X", method, "-H", &format!("authorization: Bearer {token}")])
        .arg(format!("http://127.0.0.1:{port}{path}"));
    if let Some(b) = body {
        c.args(["-H", "content-type: application/json", "--data-binary", &b.to_string()]);
    }
    if let Some(f) = file {
        c.args(["-H", "content-type: application/wasm", "--data-binary"]).arg(format!("@{}", f.display()));
    }
    let out = c.output().context("running curl")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').context("no status")?;
    Ok((code.parse()?, serde_json::from_str(body).unwrap_or(Json::Null)))
}

struct Node {
    _redis: Proc,
    _wafer: Proc,
    pid: u32,
    port: u16,
    _dir: tempfile::TempDir,
}

fn start(pool: u32) -> Result<Node> {
    let dir = tempfile::tempdir()?;
    let (redis, redis_port) = procs::redis(dir.path())?;
    let config = dir.path().join("wafer.toml");
    std::fs::write(&config, format!("[redis]\nurl = \"redis://127.0.0.1:{redis_port}/\"\n[control]\n"))?;
    let port = procs::free_port()?;
    let child = Command::new(procs::wafer_bin()?)
        .args(["serve", "--pool-instances", &pool.to_string(), "--cache-dir"])
        .arg(dir.path().join("cache"))
        .arg("--config")
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("WAFER_ADMIN_TOKEN", ADMIN)
        .env("WAFER_LOG", "error")
        .stdout(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let wafer = Proc::new(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("wafer serve did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Node { _redis: redis, _wafer: wafer, pid, port, _dir: dir })
}

fn tenant(port: u16, name: &str, quotas: Json) -> Result<String> {
    let (c, b) = call(port, "POST", "/v1/admin/tenants", ADMIN, Some(&json!({"name": name, "quotas": quotas})), None)?;
    if c != 201 {
        bail!("create tenant: {c} {b}");
    }
    let (_, b) = call(port, "POST", &format!("/v1/admin/tenants/{name}/keys"), ADMIN, None, None)?;
    Ok(b["key"].as_str().context("no key")?.to_owned())
}

fn stream_view(transform: &str) -> Json {
    json!({"kind": "stream", "entity": "user", "transform": transform, "features": ["country"],
           "aggregations": [{"column": "amount", "functions": ["count", "sum"], "windows": ["1h"]}]})
}

fn event(now: i64) -> Json {
    json!({"events": [{"timestamp_ms": now, "value": {"user_id": "u1", "amount": 3.5, "country": "DE", "merchant": "m"}}]})
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn rss_mib(pid: u32) -> Result<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .context("VmRSS")?
        .parse()?;
    Ok(kb / 1024.0)
}

fn python_guest() -> Option<PathBuf> {
    let p = procs::root().join("target/wasm-guests/python/card_txn_py.wasm");
    p.exists().then_some(p)
}

pub fn run(a: Args) -> Result<()> {
    if !a.skip.iter().any(|s| s == "upload") {
        upload_to_first_request()?;
    }
    if !a.skip.iter().any(|s| s == "memory") {
        memory(a.tenants, a.per_tenant)?;
    }
    if !a.skip.iter().any(|s| s == "noisy") {
        noisy(Duration::from_secs(a.seconds))?;
    }
    Ok(())
}

fn upload_to_first_request() -> Result<()> {
    let node = start(256)?;
    let mut guests = vec![("rust", procs::guest("card_txn.wasm")?)];
    match python_guest() {
        Some(p) => guests.push(("python", p)),
        None => println!("upload → first request, python: skipped (build the Python guest: scripts/test.sh builds it)"),
    }
    for (lang, file) in guests {
        let key = tenant(node.port, &format!("t_{lang}"), json!({}))?;
        let started = Instant::now();
        let (c, up) = call(node.port, "PUT", "/v1/transforms/card_txn", &key, None, Some(&file))?;
        if c != 201 {
            bail!("upload {lang}: {c} {up}");
        }
        let uploaded = started.elapsed();
        let (c, b) = call(node.port, "PUT", "/v1/views/txn", &key, Some(&stream_view("card_txn")), None)?;
        if c != 200 {
            bail!("view {lang}: {c} {b}");
        }
        loop {
            let (c, _) = call(node.port, "POST", "/v1/views/txn/events", &key, Some(&event(now_ms())), None)?;
            if c == 200 {
                break;
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!("{lang}: not served after 120 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        println!(
            "upload → first request, {lang}: {:.3} s (upload incl. validate+compile {:.3} s, compile {} ms, {} bytes)",
            started.elapsed().as_secs_f64(),
            uploaded.as_secs_f64(),
            up["compile_ms"],
            std::fs::metadata(&file)?.len()
        );
    }
    Ok(())
}

fn memory(tenants: usize, per_tenant: usize) -> Result<()> {
    let node = start((tenants * per_tenant + 64) as u32)?;
    let file = procs::guest("card_txn.wasm")?;
    let base = rss_mib(node.pid)?;
    let started = Instant::now();
    for t in 0..tenants {
        let key = tenant(node.port, &format!("m{t}"), json!({"max_views": per_tenant}))?;
        for i in 0..per_tenant {
            let (c, b) = call(node.port, "PUT", &format!("/v1/transforms/t{i}"), &key, None, Some(&file))?;
            if c != 201 {
                bail!("upload: {c} {b}");
            }
            let (c, b) =
                call(node.port, "PUT", &format!("/v1/views/v{i}"), &key, Some(&stream_view(&format!("t{i}"))), None)?;
            if c != 200 {
                bail!("view: {c} {b}");
            }
        }
    }
    let loaded = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let held = rss_mib(node.pid)?;
    // One event per view: every transform gets a live instance.
    let mut keys = Vec::new();
    let (_, list) = call(node.port, "GET", "/v1/admin/tenants", ADMIN, None, None)?;
    let _ = list;
    for t in 0..tenants {
        let (_, k) = call(node.port, "POST", &format!("/v1/admin/tenants/m{t}/keys"), ADMIN, None, None)?;
        keys.push(k["key"].as_str().unwrap_or_default().to_owned());
    }
    std::thread::sleep(Duration::from_millis(500));
    for (t, key) in keys.iter().enumerate() {
        for i in 0..per_tenant {
            let (c, b) = call(node.port, "POST", &format!("/v1/views/v{i}/events"), key, Some(&event(now_ms())), None)?;
            if c != 200 {
                bail!("push m{t}/v{i}: {c} {b}");
            }
        }
    }
    let live = rss_mib(node.pid)?;
    let n = tenants * per_tenant;
    println!(
        "memory: {n} transforms+views in {tenants} tenants: RSS {base:.0} MiB empty, {held:.0} MiB loaded ({:.2} MiB each), {live:.0} MiB with a live instance each ({:.2} MiB each); loading took {:.1} s",
        (held - base) / n as f64,
        (live - base) / n as f64,
        loaded.as_secs_f64()
    );
    Ok(())
}

fn noisy(dur: Duration) -> Result<()> {
    let node = start(256)?;
    let quiet = tenant(node.port, "quiet", json!({"requests_per_second": 0}))?;
    // Default quotas: the tenant's compute share (`compute_slots`) is what contains it.
    let noisy = tenant(node.port, "noisy", json!({"requests_per_second": 0}))?;
    let risk = procs::guest("txn_risk.wasm")?;
    let chaos = procs::guest("request_misbehave.wasm")?;
    call(node.port, "PUT", "/v1/transforms/card_txn", &quiet, None, Some(&procs::guest("card_txn.wasm")?))?;
    call(node.port, "PUT", "/v1/transforms/txn_risk", &quiet, None, Some(&risk))?;
    let (c, b) = call(node.port, "PUT", "/v1/views/user_stats", &quiet, Some(&stream_view("card_txn")), None)?;
    if c != 200 {
        bail!("{b}");
    }
    call(node.port, "PUT", "/v1/transforms/chaos", &noisy, None, Some(&chaos))?;
    // Several views of one tenant: a loop burning its whole deadline, a memory bomb, a panic.
    let modes = ["loop", "alloc", "trap"];
    for m in modes {
        let (c, b) = call(
            node.port,
            "PUT",
            &format!("/v1/views/chaos_{m}"),
            &noisy,
            Some(&json!({"kind": "request", "transform": "chaos", "deadline_ms": 50})),
            None,
        )?;
        if c != 200 {
            bail!("{b}");
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let quiet_body = Bytes::from(
        json!({"entities": ["u1"], "features": ["user_stats:country", "user_stats:amount_sum_1h"]}).to_string(),
    );
    let noisy_bodies: Vec<Bytes> = modes
        .iter()
        .map(|m| {
            Bytes::from(
                json!({"entities": ["x"], "features": [format!("chaos_{m}:y")], "request_data": {"mode": [m]}})
                    .to_string(),
            )
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let port = node.port;
    let pid = node.pid;
    rt.block_on(async move {
        let measure = |label: &'static str| {
            let (quiet, body) = (quiet.clone(), quiet_body.clone());
            async move {
                let mut c = Conn::open(port).await?;
                c.auth(&quiet);
                let mut lat = Latencies::with_capacity(100_000);
                let cpu0 = procs::cpu_secs(pid);
                let started = Instant::now();
                let end = started + dur;
                while Instant::now() < end {
                    let t = Instant::now();
                    c.post("/v1/features", body.clone()).await?;
                    lat.push(t.elapsed());
                }
                let secs = started.elapsed().as_secs_f64();
                let cpu = procs::cpu_secs(pid) - cpu0;
                let rps = lat.len() as f64 / secs;
                println!(
                    "noisy neighbour, {label}: quiet tenant {} requests ({rps:.0}/s), p50 {:.3} ms, p99 {:.3} ms; node CPU {:.2} cores",
                    lat.len(),
                    lat.pct(50.0),
                    lat.pct(99.0),
                    cpu / secs
                );
                anyhow::Ok((lat.pct(99.0), rps))
            }
        };
        let (alone, alone_rps) = measure("alone").await?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut flood = Vec::new();
        for i in 0..8 {
            let (stop, noisy, body) = (stop.clone(), noisy.clone(), noisy_bodies[i % noisy_bodies.len()].clone());
            flood.push(tokio::spawn(async move {
                let mut c = Conn::open(port).await?;
                c.auth(&noisy);
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = c.post("/v1/features", body.clone()).await;
                    n += 1;
                }
                anyhow::Ok(n)
            }));
        }
        let (with, with_rps) =
            measure("while a noisy tenant floods loop/alloc/trap request views from 8 connections").await?;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut n = 0;
        for f in flood {
            n += f.await??;
        }
        println!(
            "noisy neighbour: quiet p99 {alone:.3} ms alone → {with:.3} ms with the noise ({:.2}×); throughput {alone_rps:.0}/s → {with_rps:.0}/s ({:.0}%); the noisy tenant made {n} requests",
            with / alone,
            100.0 * with_rps / alone_rps
        );
        anyhow::Ok(())
    })
}
