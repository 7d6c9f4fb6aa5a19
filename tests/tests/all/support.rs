//! Helpers shared by the test modules.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value as Json;

use wafer_runtime::{EngineConfig, Event, Limits, Loader, Transform, WaferEngine};

pub use wafer_tests::guests;

/// One engine and loader per test process, caching artifacts under the target dir.
pub fn loader() -> &'static Loader {
    static LOADER: OnceLock<Loader> = OnceLock::new();
    LOADER.get_or_init(|| {
        let engine = WaferEngine::new(EngineConfig { pool_instances: 64, ..EngineConfig::default() }).expect("engine");
        let cache = target_dir().join("test-artifact-cache");
        Loader::new(engine, Some(&cache)).expect("loader")
    })
}

pub fn load(path: &str) -> Transform {
    load_with(path, Limits::default())
}

pub fn load_with(path: &str, limits: Limits) -> Transform {
    loader().load_file(Path::new(path), limits).unwrap_or_else(|e| panic!("loading {path}: {e}"))
}

/// An event whose payload is `value`'s JSON text.
pub fn event(offset: i64, ts: i64, value: serde_json::Value) -> Event {
    Event {
        topic: "t".into(),
        partition: 0,
        offset,
        timestamp_ms: ts,
        key: None,
        value: serde_json::to_vec(&value).unwrap(),
        headers: vec![],
    }
}

pub fn target_dir() -> PathBuf {
    Path::new(guests::WAFER_ROOT).join("target")
}

/// The `wafer` binary, built (incrementally) once per test run in this test build's profile.
pub fn wafer_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let release = !cfg!(debug_assertions);
        let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
        cmd.args(["build", "-q", "-p", "wafer-runtime", "--bin", "wafer"]).current_dir(guests::WAFER_ROOT);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build for the wafer binary");
        assert!(status.success(), "building the wafer binary failed");
        target_dir().join(if release { "release" } else { "debug" }).join("wafer")
    })
}

/// A private redis-server on a free loopback port, stopped on drop.
pub struct RedisServer {
    pub port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        let port = free_port();
        Self::start_on(port)
    }

    pub fn start_on(port: u16) -> Self {
        Self::start_with(port, &[])
    }

    /// A node for a [`RedisCluster`].
    fn start_cluster_node(port: u16) -> Self {
        // Partial coverage: with one master down, the other masters keep answering for their slots.
        Self::start_with(
            port,
            &["--cluster-enabled", "yes", "--cluster-node-timeout", "2000", "--cluster-require-full-coverage", "no"],
        )
    }

    /// A server whose environment sets `LC_ALL` to a locale with a non-C collation (generated
    /// by [`collation_locale`] when the system has none): Redis takes `LC_COLLATE` from it, and
    /// Lua's string `<` then follows that collation.
    pub fn start_in_collation_locale() -> Self {
        let (name, locpath) = collation_locale();
        let mut env = vec![("LC_ALL", name.clone())];
        if let Some(p) = &locpath {
            env.push(("LOCPATH", p.display().to_string()));
        }
        Self::start_env(free_port(), &[], &env)
    }

    /// A server with extra `redis-server` arguments.
    pub fn start_with(port: u16, extra: &[&str]) -> Self {
        Self::start_env(port, extra, &[])
    }

    fn start_env(port: u16, extra: &[&str], env: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = std::env::var("WAFER_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(extra)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin} (install redis-server, or run scripts/test.sh): {e}"));
        let mut server = Self { port, child, _dir: dir };
        server.wait_until_serving();
        server
    }

    /// Wait until this server (not some other process on the port) answers.
    fn wait_until_serving(&mut self) {
        let port = self.port;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not start on port {port}");
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("redis-server on port {port} exited at start ({status}): is the port taken?");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let pid = redis_cli(port, &["info", "server"])
            .lines()
            .find_map(|l| l.strip_prefix("process_id:").map(|v| v.trim().to_owned()));
        assert_eq!(pid, Some(self.child.id().to_string()), "port {port} is served by another redis-server");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's process id (to freeze it with SIGSTOP).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stop the server (for outage tests); `start_on(port)` brings a new one up.
    pub fn stop(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `en_US.UTF-8`, whose collation is not byte order (`a < B < c`), as `(LC_ALL, LOCPATH)`:
/// the system's if `locale -a` lists it, else compiled once with `localedef` from the system's
/// locale sources into the target dir (no root needed; `LOCPATH` points there).
pub fn collation_locale() -> (String, Option<PathBuf>) {
    const NAME: &str = "en_US.UTF-8";
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let listed = Command::new("locale").arg("-a").output().map(|o| String::from_utf8_lossy(&o.stdout).to_string());
        if listed.unwrap_or_default().lines().any(|l| l == "en_US.utf8" || l == NAME) {
            return None;
        }
        let dir = target_dir().join("test-locales");
        let out = dir.join(NAME);
        if !out.join("LC_COLLATE").exists() {
            std::fs::create_dir_all(&dir).unwrap();
            // localedef exits 1 on mere warnings: success is the compiled collation table.
            let o = Command::new("localedef")
                .args(["-c", "-i", "en_US", "-f", "UTF-8"])
                .arg(&out)
                .output()
                .unwrap_or_else(|e| panic!("running localedef to build {NAME} (install locales): {e}"));
            assert!(
                out.join("LC_COLLATE").exists(),
                "localedef could not build {NAME}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Some(dir)
    });
    (NAME.to_string(), dir.clone())
}

/// A private Redis Cluster: `masters` masters (each with `replicas` replicas) of
/// `redis-server --cluster-enabled yes` on free loopback ports, created with
/// `redis-cli --cluster create … --cluster-yes`; every server is stopped on drop.
pub struct RedisCluster {
    /// Every node, masters first (as `redis-cli --cluster create` assigns them).
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(masters: usize, replicas: usize) -> Self {
        let n = masters * (1 + replicas);
        let nodes: Vec<RedisServer> = (0..n).map(|_| RedisServer::start_cluster_node(cluster_port())).collect();
        let cli = std::env::var("WAFER_TEST_REDIS_CLI").unwrap_or_else(|_| "redis-cli".into());
        let out = Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|s| format!("127.0.0.1:{}", s.port)))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("running {cli} --cluster create: {e}"));
        assert!(out.status.success(), "cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        let c = Self { nodes };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        for node in &c.nodes {
            while !c.cli(node.port, &["cluster", "info"]).contains("cluster_state:ok") {
                assert!(std::time::Instant::now() < deadline, "cluster never became ok");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        // Replicas must have finished their initial sync (WAIT counts only synced replicas).
        for node in &c.nodes {
            while replicas > 0
                && c.cli(node.port, &["role"]).starts_with("slave")
                && !c.cli(node.port, &["info", "replication"]).contains("master_link_status:up")
            {
                assert!(std::time::Instant::now() < deadline, "a replica never synced");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        // Every node must agree on the whole slot map before a client's first topology read.
        while !c.nodes.iter().all(|n| c.cli(n.port, &["cluster", "slots"]).lines().count() >= masters * 3) {
            assert!(std::time::Instant::now() < deadline, "nodes never agreed on the slot map");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        c
    }

    /// Seed URLs (every node).
    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// `redis-cli -p port args…` output (empty if it fails).
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        redis_cli(port, args)
    }

    /// The ports of the current masters.
    pub fn master_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).filter(|p| self.cli(*p, &["role"]).starts_with("master")).collect()
    }

    /// Start a new node and join it as a replica of the master on `master_port`
    /// (`redis-cli --cluster add-node … --cluster-slave`); returns when its sync is complete.
    pub fn add_replica(&mut self, master_port: u16) {
        let node = RedisServer::start_cluster_node(cluster_port());
        let master_id = self.cli(master_port, &["cluster", "myid"]).trim().to_string();
        let cli = std::env::var("WAFER_TEST_REDIS_CLI").unwrap_or_else(|_| "redis-cli".into());
        let out = Command::new(&cli)
            .args(["--cluster", "add-node", &format!("127.0.0.1:{}", node.port), &format!("127.0.0.1:{master_port}")])
            .args(["--cluster-slave", "--cluster-master-id", &master_id])
            .output()
            .unwrap_or_else(|e| panic!("running {cli} --cluster add-node: {e}"));
        assert!(out.status.success(), "add-node failed: {}", String::from_utf8_lossy(&out.stdout));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !self.cli(node.port, &["info", "replication"]).contains("master_link_status:up") {
            assert!(std::time::Instant::now() < deadline, "the new replica never synced");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.nodes.push(node);
    }

    /// Keys stored on a node (`DBSIZE`).
    pub fn dbsize(&self, port: u16) -> u64 {
        self.cli(port, &["dbsize"]).trim().parse().unwrap_or(0)
    }
}

/// `redis-cli -p port args…`'s output ("" when it cannot run).
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let cli = std::env::var("WAFER_TEST_REDIS_CLI").unwrap_or_else(|_| "redis-cli".into());
    Command::new(cli)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// A free port for a Cluster node, with its bus port (+10000) free too.
pub fn cluster_port() -> u16 {
    loop {
        let p = free_port();
        if std::net::TcpListener::bind(("127.0.0.1", p + 10000)).is_ok() {
            return p;
        }
    }
}

/// The first port [`free_port`] hands out; with the bus offset (+10000) the range stays below
/// Linux's ephemeral range (32768–60999), so the kernel never gives one of these ports to an
/// outgoing connection or to another `bind(0)`.
const TEST_PORTS_START: u16 = 12_000;
/// How many ports the allocator cycles through.
const TEST_PORTS: u16 = 10_000;

/// A loopback port no other test of this process was given and nothing listens on.
///
/// `bind(0)` and release is racy: two tests can be handed the same port, and a server that then
/// fails to bind is mistaken for the other test's server (its connections are reset when that
/// test ends). A process-wide counter makes ports unique within the test binary; the bind check
/// skips ports other processes hold.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);
    use std::sync::atomic::Ordering::Relaxed;
    // Start where another run of this binary (a parallel `cargo test`) is unlikely to be.
    let _ = NEXT.compare_exchange(u32::MAX, std::process::id() % u32::from(TEST_PORTS), Relaxed, Relaxed);
    loop {
        let n = NEXT.fetch_add(1, Relaxed) % u32::from(TEST_PORTS);
        let port = TEST_PORTS_START + n as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A small deterministic PRNG for test data.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A `wafer serve` process, killed on drop.
pub struct Wafer {
    child: std::process::Child,
    pub port: u16,
}

impl Wafer {
    pub fn start(config: &std::path::Path, port: u16) -> Self {
        Self::start_with(config, port, &[])
    }

    /// Start with extra environment variables (e.g. the admin token).
    ///
    /// Its log goes to the test's captured output (shown only when the test fails), not to the
    /// terminal: see [`forward_to_test_output`].
    pub fn start_with(config: &std::path::Path, port: u16, env: &[(&str, &str)]) -> Self {
        let mut wafer = Self::spawn(config, port, env, std::process::Stdio::piped());
        if let Some(stderr) = wafer.child.stderr.take() {
            forward_to_test_output(stderr);
        }
        wafer
    }

    /// Start with its log (stderr, `warn` and above) written to `log`.
    pub fn start_logged(config: &std::path::Path, port: u16, log: &std::path::Path) -> Self {
        Self::spawn(config, port, &[], std::fs::File::create(log).unwrap().into())
    }

    /// The node's process id (to read its `/proc/<pid>/stat`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The node's user + system CPU time in seconds, as `/proc/<pid>/stat` reports it (the
    /// tick count divided by the usual 100 ticks per second).
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let (_, rest) = stat.rsplit_once(')').unwrap();
        let fields: Vec<u64> = rest.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
        // Fields 14 and 15 (utime, stime); `fields[0]` is field 4.
        (fields[10] + fields[11]) as f64 / 100.0
    }

    /// Whether the process is still running (it did not crash).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn spawn(config: &std::path::Path, port: u16, env: &[(&str, &str)], stderr: std::process::Stdio) -> Self {
        let child = Command::new(wafer_bin())
            .envs(env.iter().copied())
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("WAFER_CACHE_DIR", target_dir().join("test-artifact-cache"))
            .env("WAFER_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut wafer = Self { child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "wafer serve did not start");
            assert!(wafer.alive(), "wafer serve on port {port} exited at start (see its log above)");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        wafer
    }
    pub fn kill9(mut self) {
        let _ = Command::new("kill").args(["-9", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

/// Copy a child's stderr, line by line, to this test's captured output. The copying thread is
/// spawned from the test's thread, so it inherits the test harness's capture: the lines appear
/// with the test's own output when it fails and are hidden when it passes.
pub fn forward_to_test_output(stderr: std::process::ChildStderr) {
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("{line}");
        }
    });
}

impl Drop for Wafer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POST JSON with curl: (status, parsed body or null).
pub fn post(port: u16, path: &str, body: &Json) -> (u16, Json) {
    post_with(port, path, body, &[])
}

/// [`post`] with extra headers (`name: value`).
pub fn post_with(port: u16, path: &str, body: &Json, headers: &[&str]) -> (u16, Json) {
    let out = Command::new("curl")
        .args(headers.iter().flat_map(|h| ["-H", h]))
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "--data-binary",
            "@-",
        ])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(body.to_string().as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), serde_json::from_str(body).unwrap_or(Json::Null))
}

/// GET with curl: (status, body text).
pub fn get(port: u16, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}
