//! A shared node under a hostile tenant or client (issue 20): descriptor exhaustion and idle
//! connections, oversized pushes, compile bombs, rejected uploads, CPU amplification through
//! re-runs, oversized entity keys and quotas bounding view settings. Each test failed before its
//! fix.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value as Json, json};
use wafer_runtime::registry::Quotas;
use wafer_runtime::tenant::{TenantSpec, build_tenant};
use wafer_runtime::{Limits, LoadError, Loader, TransformError};

use crate::support::{RedisServer, event, free_port, get, guests, load_with, loader, post, wafer_bin};

/// A `wafer serve` started through `sh` (to set limits such as `ulimit -n`), killed on drop.
struct Node {
    child: Child,
    port: u16,
}

impl Node {
    fn start(shell_prefix: &str, config: &Path, extra: &[&str]) -> Self {
        let port = free_port();
        let mut args = vec![
            "serve".to_string(),
            "--config".into(),
            config.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("{shell_prefix} exec \"$0\" \"$@\""))
            .arg(wafer_bin())
            .args(&args)
            .env("WAFER_CACHE_DIR", crate::support::target_dir().join("test-artifact-cache"))
            .env("WAFER_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut node = Self { child, port };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while get(port, "/healthz").0 != 200 {
            assert!(node.child.try_wait().unwrap().is_none(), "wafer serve exited while starting");
            assert!(std::time::Instant::now() < deadline, "wafer serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }

    /// A node serving one manifest tenant `t` with no views (its config in the returned dir).
    fn open_tenant(shell_prefix: &str, extra: &[&str]) -> (tempfile::TempDir, Self) {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("wafer.toml");
        std::fs::write(&config, "[server]\ntenant = \"t\"\n").unwrap();
        let node = Self::start(shell_prefix, &config, extra);
        (dir, node)
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Defect 1: `ulimit -n 256` and 300 idle connections used to make `wafer serve` exit.
#[test]
fn descriptor_exhaustion_and_idle_connections_never_stop_the_node() {
    let (_dir, mut node) = Node::open_tenant("ulimit -n 256 &&", &["--header-timeout-ms", "1500"]);
    let addr = ("127.0.0.1", node.port);
    // 300 connections that never send a byte.
    let mut idle: Vec<TcpStream> = (0..300).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    assert!(node.alive(), "the node exited under descriptor pressure");
    // The ones over the cap were told why and closed.
    let mut refused = 0;
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut buf = Vec::new();
        if s.read_to_end(&mut buf).is_ok() {
            let text = String::from_utf8_lossy(&buf);
            if text.starts_with("HTTP/1.1 503") {
                assert!(text.contains("too_many_connections"), "{text}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "no connection over the cap was refused");
    // Connections that send no request head are closed after the header timeout, and the node
    // serves again without the clients doing anything.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(node.alive());
    let (code, _) = get(node.port, "/healthz");
    assert_eq!(code, 200);
    let mut closed_by_server = 0;
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut buf = [0u8; 1];
        if matches!(s.read(&mut buf), Ok(0)) {
            closed_by_server += 1;
        }
    }
    assert_eq!(closed_by_server, idle.len(), "every idle connection was closed by the node");
    // A slow client that trickles its request head is cut off too.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(!String::from_utf8_lossy(&rest).contains("\"ok\""), "an incomplete head was not served");
    let (_, metrics) = get(node.port, "/metrics");
    assert!(metrics.contains("wafer_connections_total{listener=\"http\",outcome=\"refused\"}"), "{metrics}");
    assert!(node.alive());
}

fn push_node(redis: &RedisServer, dir: &Path) -> Node {
    let config = dir.join("wafer.toml");
    std::fs::write(
        &config,
        format!(
            "[redis]\nurl = \"{}\"\n[server]\ntenant = \"t\"\n[[stream_view]]\nname = \"m\"\nentity = \"e\"\ntransform = \"{}\"\nfeatures = [\"x\"]\ndeadline_ms = 2000\n",
            redis.url(),
            guests::MISBEHAVE
        ),
    )
    .unwrap();
    Node::start("", &config, &[])
}

fn x_of(port: u16, entity: &str) -> Json {
    let (code, b) = post(port, "/v1/features", &json!({"entities": [entity], "features": ["m:x"]}));
    assert_eq!(code, 200, "{b}");
    b["results"][0]["features"]["m:x"]["value"].clone()
}

/// Defect 2: one push fanning out to huge numbers of rows or entities is refused as a whole
/// (nothing written) with the cap named; too many events is a 413.
#[test]
fn oversized_pushes_are_refused_naming_the_cap_and_write_nothing() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let node = push_node(&redis, dir.path());
    let now = crate::support::now_ms();
    let ev = |v: Json| json!({"timestamp_ms": now, "value": v});

    let (code, b) =
        post(node.port, "/v1/views/m/events", &json!({"events": [ev(json!({"mode": "fanout", "entities": 30_000}))]}));
    assert_eq!((code, b["error"]["code"].as_str()), (422, Some("too_many_entities")), "{b}");
    assert_eq!(b["error"]["quota"], "batch_entities");
    assert_eq!(b["error"]["limit"], Quotas::default().batch_entities);
    assert!(b["error"]["message"].as_str().unwrap().contains("30000"), "{b}");
    assert_eq!(x_of(node.port, "e1"), Json::Null, "nothing of the refused batch was written");

    let many: Vec<Json> = (0..120).map(|_| ev(json!({"mode": "fanout", "entities": 1000}))).collect();
    let (code, b) = post(node.port, "/v1/views/m/events", &json!({"events": many}));
    assert_eq!((code, b["error"]["code"].as_str()), (422, Some("too_many_rows")), "{b}");
    assert_eq!(b["error"]["quota"], "batch_rows");

    let flood: Vec<Json> = (0..10_001).map(|_| ev(json!({"mode": "ok"}))).collect();
    let (code, b) = post(node.port, "/v1/views/m/events", &json!({"events": flood}));
    assert_eq!((code, b["error"]["code"].as_str()), (413, Some("too_many_events")), "{b}");
    assert_eq!(x_of(node.port, "e1"), Json::Null);

    // Within the caps it is written.
    let (code, b) =
        post(node.port, "/v1/views/m/events", &json!({"events": [ev(json!({"mode": "fanout", "entities": 3}))]}));
    assert_eq!((code, &b["rows"]), (200, &json!(3)), "{b}");
    assert_eq!(x_of(node.port, "e1"), json!(1));
    let (_, metrics) = get(node.port, "/metrics");
    for cap in ["batch_entities", "batch_rows", "push_events"] {
        assert!(
            metrics.contains(&format!("wafer_quota_exceeded_total{{tenant=\"t\",limit=\"{cap}\"}} 1")),
            "{cap}:\n{metrics}"
        );
    }
}

/// Content types: JSON routes take JSON, uploads take wasm; anything else is a 415.
#[test]
fn the_wrong_content_type_is_a_415() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let node = push_node(&redis, dir.path());
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-X", "POST", "-H", "content-type: text/plain", "--data-binary"])
        .arg(json!({"events": []}).to_string())
        .arg(format!("http://127.0.0.1:{}/v1/views/m/events", node.port))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.ends_with("\n415") && text.contains("unsupported_media_type"), "{text}");
    let (code, _) = post(node.port, "/v1/views/m/events", &json!({"events": []}));
    assert_eq!(code, 200, "application/json is accepted");
}

/// A component exporting Wafer's interface names whose one core function is huge: it passes
/// the cheap checks and costs the compiler far more than a small budget.
pub(crate) fn compile_bomb() -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, Component, ComponentExportKind, ComponentExportSection, ComponentInstanceSection, Function,
        FunctionSection, Instruction, Module, ModuleSection, TypeSection, ValType,
    };
    let mut m = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    m.section(&types);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    m.section(&funcs);
    let mut f = Function::new([(1, ValType::I64)]);
    for k in 0..600_000i64 {
        f.instruction(&Instruction::LocalGet(0));
        f.instruction(&Instruction::I64Const(k));
        f.instruction(&Instruction::I64Add);
        f.instruction(&Instruction::LocalSet(0));
    }
    f.instruction(&Instruction::End);
    let mut code = CodeSection::new();
    code.function(&f);
    m.section(&code);
    let mut c = Component::new();
    c.section(&ModuleSection(&m));
    let mut inst = ComponentInstanceSection::new();
    inst.export_items(Vec::<(&str, ComponentExportKind, u32)>::new());
    c.section(&inst);
    let mut ex = ComponentExportSection::new();
    ex.export("wafer:transform/describe@0.1.0", ComponentExportKind::Instance, 0, None);
    ex.export("wafer:transform/stream-processor@0.1.0", ComponentExportKind::Instance, 0, None);
    c.section(&ex);
    c.finish()
}

fn budgeted_loader(dir: &Path) -> Loader {
    Loader::new(loader().engine().clone(), Some(dir)).unwrap().with_compile_worker(wafer_bin().to_owned())
}

fn cached_artifacts(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            n += cached_artifacts(&e.path());
        } else if e.path().extension().is_some_and(|x| x == "cwasm") {
            n += 1;
        }
    }
    n
}

/// Defect 4: a compile bomb is refused with `compile_budget_exceeded` within its budget; the
/// worker's artifacts load in the node's engine.
#[test]
fn compilation_runs_within_a_time_and_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let l = budgeted_loader(dir.path());
    let limits = Limits { compile_time: Duration::from_secs(3), compile_memory_bytes: 256 << 20, ..Limits::default() };
    let bomb = compile_bomb();
    match l.load(&bomb, limits.clone()) {
        Err(e @ LoadError::CompileBudgetExceeded(_)) => assert_eq!(e.code(), "compile_budget_exceeded"),
        Err(e) => panic!("expected compile_budget_exceeded, got {} ({e})", e.code()),
        Ok(_) => panic!("the bomb loaded"),
    }
    let bytes = std::fs::read(guests::RUST_CARD_TXN).unwrap();
    let t = l.load(&bytes, limits).expect("a real component compiles in the worker and loads here");
    assert_eq!(t.info().name, "card_txn");
    let mut w = t.stream_worker().unwrap();
    let r = w.process(&[event(0, 1, json!({"user_id": "u", "amount": 2.0, "country": "DE", "merchant": "m"}))]);
    assert!(r[0].is_ok(), "{:?}", r[0]);
}

/// Defect 4: the world and imports are checked on the bytes before anything is compiled (a
/// worker that cannot even start is never reached).
#[test]
fn wrong_worlds_and_forbidden_imports_are_refused_before_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let l = Loader::new(loader().engine().clone(), Some(dir.path()))
        .unwrap()
        .with_compile_worker("/nonexistent/compile-worker".into());
    let wrong = std::fs::read(guests::NOT_A_TRANSFORM).unwrap();
    assert_eq!(l.load(&wrong, Limits::default()).err().map(|e| e.code()), Some("wrong_world"));
    let forbidden = std::fs::read(guests::FORBIDDEN_IMPORT).unwrap();
    assert_eq!(l.load(&forbidden, Limits::default()).err().map(|e| e.code()), Some("forbidden_import"));
    let ok = std::fs::read(guests::RUST_CARD_TXN).unwrap();
    assert_eq!(l.load(&ok, Limits::default()).err().map(|e| e.code()), Some("compile_failed"));
}

/// Defect 5: nothing of a rejected component is stored, and the cache has a size bound (LRU).
#[test]
fn rejected_components_leave_no_artifact_and_the_cache_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let l = Loader::new(loader().engine().clone(), Some(dir.path())).unwrap();
    let card = std::fs::read(guests::RUST_CARD_TXN).unwrap();
    // Compiles, but `describe` cannot even instantiate within 64 KiB.
    let tiny = Limits::capped(Duration::from_millis(50), 64 << 10);
    assert_eq!(l.load(&card, tiny).err().map(|e| e.code()), Some("describe_failed"));
    assert_eq!(cached_artifacts(dir.path()), 0, "a rejected component left an artifact");

    let risk = std::fs::read(guests::RUST_TXN_RISK).unwrap();
    let mis = std::fs::read(guests::MISBEHAVE).unwrap();
    l.load(&card, Limits::default()).unwrap();
    let one = l.cache().unwrap().total_bytes();
    assert!(one > 0);
    let l = l.with_cache_max_bytes(one * 2);
    l.load(&risk, Limits::default()).unwrap();
    l.load(&mis, Limits::default()).unwrap();
    assert!(l.cache().unwrap().total_bytes() <= one * 2, "the cache grew past its bound");
    assert!(l.load(&mis, Limits::default()).unwrap().load_stats().from_cache, "the newest stays cached");
}

/// Defect 6: a batch of looping events costs one CPU budget, not one deadline per event.
#[test]
fn a_batch_of_looping_events_stops_at_its_cpu_budget() {
    let limits =
        Limits { deadline: Duration::from_millis(50), batch_cpu: Duration::from_millis(100), ..Limits::default() };
    let mut w = load_with(guests::MISBEHAVE, limits).stream_worker().unwrap();
    let events: Vec<_> = (0..60).map(|i| event(i, 1, json!({"mode": "loop"}))).collect();
    let r = w.process(&events);
    assert_eq!(r.len(), 60);
    let deadlines = r.iter().filter(|r| matches!(r, Err(TransformError::Deadline(_)))).count();
    let skipped = r.iter().filter(|r| matches!(r, Err(TransformError::BudgetExceeded(_)))).count();
    assert_eq!(deadlines + skipped, 60);
    assert!(skipped > 0 && deadlines < 60, "{deadlines} events ran to their deadline, {skipped} were skipped");
    assert_eq!(r[59].as_ref().err().map(|e| e.code()), Some("batch_budget_exceeded"));
    // The next batch has its own budget.
    assert!(w.process(&[event(100, 1, json!({"mode": "ok"}))])[0].is_ok());
}

/// Defect 6: breaker settings are bounded by the tenant's quota, not only by the view.
#[test]
fn breaker_settings_are_bounded_by_the_tenant_quota() {
    let view = |trip: u32| -> wafer_runtime::view::StreamViewConfig {
        serde_json::from_value(json!({"name": "m", "entity": "e", "transform": guests::MISBEHAVE,
            "features": ["x"], "breaker_trip_after": trip}))
        .unwrap()
    };
    let build = |trip: u32| {
        let spec =
            TenantSpec { name: "t".into(), quotas: Quotas::default(), streams: vec![view(trip)], ..Default::default() };
        let load = |p: &Path, l| loader().load_file(p, l);
        build_tenant(&spec, &load, Default::default(), 0).map(|_| ())
    };
    let e = build(1_000_000).unwrap_err();
    assert_eq!(e.code(), "quota_exceeded");
    assert!(e.to_string().contains("breaker_trip_after"), "{e}");
    assert!(build(Quotas::default().breaker_trip_after).is_ok());
}

/// Defect 10: entity keys are capped (1 KiB by default).
#[test]
fn an_oversized_entity_key_fails_its_event_only() {
    let limits = Limits { deadline: Duration::from_secs(2), ..Limits::default() };
    let mut w = load_with(guests::MISBEHAVE, limits).stream_worker().unwrap();
    let r = w.process(&[
        event(0, 1, json!({"mode": "long_key", "bytes": 64 << 10})),
        event(1, 1, json!({"mode": "long_key", "bytes": 1024})),
    ]);
    assert_eq!(r[0].as_ref().err().map(|e| e.code()), Some("schema_violation"));
    assert!(r[0].as_ref().unwrap_err().to_string().contains("1024"), "{:?}", r[0]);
    assert!(r[1].is_ok());
}

/// A client that sends a request head and then trickles (or withholds) its body used to hold
/// its connection and request task for as long as it liked: the body must arrive within
/// `--body-timeout-ms` of the head, else `408 body_timeout`, and the node serves others meanwhile.
#[test]
fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    let (_dir, node) = Node::open_tenant("", &["--body-timeout-ms", "700"]);
    let mut slow = TcpStream::connect(("127.0.0.1", node.port)).unwrap();
    let head = "POST /v1/features HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n";
    slow.write_all(head.as_bytes()).unwrap();
    slow.write_all(b"{\"entities\":").unwrap();
    // Others are served while the slow body is pending.
    assert_eq!(get(node.port, "/healthz").0, 200);
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("}}") {
        match slow.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"body_timeout\"") && text.contains("700 ms"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(9), "answered only after {:?}", started.elapsed());
    let (_, metrics) = get(node.port, "/metrics");
    assert!(metrics.contains("status=\"408\""), "the timeout is counted: {metrics}");
}

/// SIGTERM (what an orchestrator sends before it kills a pod) used to end the node at once,
/// dropping requests in flight. Now it stops accepting, lets the request in flight finish, and
/// exits 0.
#[test]
fn sigterm_lets_the_request_in_flight_finish_then_exits_cleanly() {
    let (_dir, mut node) = Node::open_tenant("", &["--drain-timeout-ms", "20000"]);
    let port = node.port;
    // A request in flight: its head is sent, its body not yet.
    let body = br#"{"entities": ["e1"], "features": []}"#;
    let mut in_flight = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "POST /v1/features HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    in_flight.write_all(head.as_bytes()).unwrap();
    in_flight.write_all(&body[..5]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let pid = node.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    // The listener closes: new clients are refused.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(std::time::Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(node.alive(), "the node exited with a request in flight");
    // The request in flight completes and is answered.
    in_flight.write_all(&body[5..]).unwrap();
    in_flight.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = String::new();
    let _ = in_flight.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 "), "no answer to the request in flight: {answer:?}");
    assert!(!answer.starts_with("HTTP/1.1 5"), "{answer}");
    // Then the node exits by itself, successfully.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = node.child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "the node did not exit after draining");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
}
