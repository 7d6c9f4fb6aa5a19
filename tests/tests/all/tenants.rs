//! The multi-tenant control plane against a private Redis, with `wafer serve` in registry mode:
//! credentials on every route, isolation between tenants, invalid uploads refused without a
//! trace, hot swap under continuous load with exact aggregates, rollback, quotas, view deletion,
//! and changes reaching a second node within a second.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use crate::support::{RedisServer, Wafer, free_port, guests};

const ADMIN: &str = "test-admin-token-0123456789";

/// An HTTP call with curl: (status, JSON body or null, raw headers).
fn call(port: u16, method: &str, path: &str, key: Option<&str>, body: Body) -> (u16, Json, String) {
    let mut c = Command::new("curl");
    c.args(["-s", "-D", "/dev/stderr", "-w", "\n%{http_code}", "-X", method])
        .arg(format!("http://127.0.0.1:{port}{path}"));
    if let Some(k) = key {
        c.args(["-H", &format!("authorization: Bearer {k}")]);
    }
    match body {
        Body::None => {}
        Body::Json(j) => {
            c.args(["-H", "content-type: application/json", "--data-binary", &j.to_string()]);
        }
        Body::File(f) => {
            c.args(["-H", "content-type: application/wasm", "--data-binary"]).arg(format!("@{}", f.display()));
        }
    }
    let out = c.output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (
        code.parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Json::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

enum Body<'a> {
    None,
    Json(Json),
    File(&'a Path),
}

struct Platform {
    redis: RedisServer,
    dir: tempfile::TempDir,
    nodes: Vec<Wafer>,
}

impl Platform {
    fn start(nodes: usize) -> Self {
        let redis = RedisServer::start();
        let dir = tempfile::tempdir().unwrap();
        let mut p = Self { redis, dir, nodes: Vec::new() };
        for _ in 0..nodes {
            p.add_node();
        }
        p
    }

    fn add_node(&mut self) {
        let config = self.dir.path().join("wafer.toml");
        std::fs::write(&config, format!("[redis]\nurl = \"{}\"\n[control]\n", self.redis.url())).unwrap();
        self.nodes.push(Wafer::start_with(&config, free_port(), &[("WAFER_ADMIN_TOKEN", ADMIN)]));
    }

    fn port(&self, node: usize) -> u16 {
        self.nodes[node].port
    }

    fn admin(&self, method: &str, path: &str, body: Body) -> (u16, Json) {
        let (c, b, _) = call(self.port(0), method, path, Some(ADMIN), body);
        (c, b)
    }

    /// Create a tenant (with optional quotas) and return a key.
    fn tenant(&self, name: &str, quotas: Json) -> String {
        let (c, b) = self.admin("POST", "/v1/admin/tenants", Body::Json(json!({"name": name, "quotas": quotas})));
        assert_eq!(c, 201, "{b}");
        let (c, b) = self.admin("POST", &format!("/v1/admin/tenants/{name}/keys"), Body::None);
        assert_eq!(c, 201, "{b}");
        b["key"].as_str().unwrap().to_owned()
    }
}

/// Call until `ok` holds (changes reach nodes within a poll interval); panics after `limit`.
fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return (v, start.elapsed());
        }
        assert!(start.elapsed() < limit, "not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stream_view(transform: &str) -> Json {
    json!({"kind": "stream", "entity": "user", "transform": transform, "features": ["country"],
           "aggregations": [{"column": "amount", "functions": ["count", "sum"], "windows": ["lifetime"]}]})
}

fn upload(port: u16, key: &str, name: &str, file: &str, activate: bool) -> (u16, Json) {
    let q = if activate { "" } else { "?activate=false" };
    let (c, b, _) = call(port, "PUT", &format!("/v1/transforms/{name}{q}"), Some(key), Body::File(Path::new(file)));
    (c, b)
}

#[test]
fn every_route_checks_credentials_and_tenants_are_isolated() {
    let p = Platform::start(1);
    let port = p.port(0);
    let ka = p.tenant("alpha", json!({}));
    let kb = p.tenant("beta", json!({}));
    let (_, revoked) = p.admin("POST", "/v1/admin/tenants/alpha/keys", Body::None);
    let (c, _) =
        p.admin("DELETE", &format!("/v1/admin/tenants/alpha/keys/{}", revoked["id"].as_str().unwrap()), Body::None);
    assert_eq!(c, 200);
    let kr = revoked["key"].as_str().unwrap().to_owned();
    let (c, b) = upload(port, &ka, "card_txn", guests::RUST_CARD_TXN, true);
    assert_eq!(c, 201, "{b}");
    let (c, b, _) = call(port, "PUT", "/v1/views/txn", Some(&ka), Body::Json(stream_view("card_txn")));
    assert_eq!(c, 200, "{b}");

    let tenant_routes: Vec<(&str, &str, Body)> = vec![
        ("GET", "/v1/views", Body::None),
        ("POST", "/v1/views/txn/events", Body::Json(json!({"events": []}))),
        ("POST", "/v1/features", Body::Json(json!({"entities": ["u"], "features": ["txn:country"]}))),
        ("POST", "/get-online-features", Body::Json(json!({"features": ["txn:country"], "entities": {"user": ["u"]}}))),
        ("POST", "/write-to-online-store", Body::Json(json!({"feature_view_name": "txn", "df": {"user": []}}))),
        ("POST", "/push", Body::Json(json!({"push_source_name": "txn", "df": {"user": []}}))),
        ("POST", "/v1/training-data", Body::Json(json!({"features": ["txn:country"], "spine": [], "events": []}))),
        ("GET", "/v1/metrics", Body::None),
        ("GET", "/v1/view-health", Body::None),
        ("GET", "/v1/transforms", Body::None),
        ("GET", "/v1/transforms/card_txn", Body::None),
        ("PUT", "/v1/transforms/x", Body::File(Path::new(guests::RUST_CARD_TXN))),
        ("POST", "/v1/transforms/card_txn/activate", Body::Json(json!({"version": "0"}))),
        ("PUT", "/v1/views/v2", Body::Json(stream_view("card_txn"))),
        ("DELETE", "/v1/views/txn", Body::None),
    ];
    let admin_routes: Vec<(&str, &str, Body)> = vec![
        ("GET", "/metrics", Body::None),
        ("GET", "/v1/admin/tenants", Body::None),
        ("POST", "/v1/admin/tenants", Body::Json(json!({"name": "gamma"}))),
        ("PATCH", "/v1/admin/tenants/alpha", Body::Json(json!({"disabled": false}))),
        ("POST", "/v1/admin/tenants/alpha/keys", Body::None),
        ("DELETE", "/v1/admin/tenants/alpha/keys/nope", Body::None),
    ];
    let documented: std::collections::BTreeSet<(String, String)> = tenant_routes
        .iter()
        .chain(&admin_routes)
        .map(|(m, p, _)| {
            (
                m.to_string(),
                p.replace("/txn", "/{view}")
                    .replace("/v2", "/{view}")
                    .replace("/card_txn", "/{name}")
                    .replace("/x", "/{name}")
                    .replace("/alpha", "/{tenant}")
                    .replace("/nope", "/{key}"),
            )
        })
        .collect();
    for (m, r) in wafer_runtime::server::ROUTES {
        // Public: probes, the API document and the console's static files (its data comes from
        // the tenant routes above).
        if !["/healthz", "/health", "/readyz", "/openapi.json", "/ui", "/ui/{asset}"].contains(r) {
            assert!(documented.contains(&(m.to_string(), r.to_string())), "route {m} {r} is not covered by this test");
        }
    }
    for (m, path, body) in &tenant_routes {
        let b = || match body {
            Body::None => Body::None,
            Body::Json(j) => Body::Json(j.clone()),
            Body::File(f) => Body::File(f),
        };
        assert_eq!(call(port, m, path, None, b()).0, 401, "{m} {path} without a key");
        assert_eq!(call(port, m, path, Some("wfr_made_up"), b()).0, 401, "{m} {path} with an unknown key");
        assert_eq!(call(port, m, path, Some(&kr), b()).0, 401, "{m} {path} with a revoked key");
        assert_eq!(call(port, m, path, Some(ADMIN), b()).0, 403, "{m} {path} with the admin token");
    }
    // Refusals are counted under their route (the status says why), not under `auth`.
    let m = metrics_text(port, "/metrics", ADMIN);
    for line in [
        "wafer_http_requests_total{route=\"features\",status=\"401\"} 3",
        "wafer_http_requests_total{route=\"features\",status=\"403\"} 1",
    ] {
        assert!(m.lines().any(|l| l == line), "missing `{line}` in:\n{m}");
    }
    assert!(!m.contains("route=\"auth\""), "{m}");
    for (m, path, body) in &admin_routes {
        let b = || match body {
            Body::Json(j) => Body::Json(j.clone()),
            _ => Body::None,
        };
        assert_eq!(call(port, m, path, None, b()).0, 401, "{m} {path} without a key");
        assert_eq!(call(port, m, path, Some(&kr), b()).0, 401, "{m} {path} with a revoked key");
        let (c, body, _) = call(port, m, path, Some(&ka), b());
        assert_eq!((c, body["error"]["code"].as_str()), (403, Some("forbidden")), "{m} {path} with a tenant key");
    }

    // Beta cannot see or touch alpha's transforms, views, features or metrics.
    let now = crate::support::now_ms();
    let ev = json!({"events": [{"timestamp_ms": now, "value": {"user_id": "u1", "amount": 4.5, "country": "DE", "merchant": "m"}}]});
    assert_eq!(call(port, "POST", "/v1/views/txn/events", Some(&ka), Body::Json(ev.clone())).0, 200);
    assert_eq!(call(port, "POST", "/v1/views/txn/events", Some(&kb), Body::Json(ev.clone())).0, 404);
    let (c, b, _) = call(
        port,
        "POST",
        "/v1/features",
        Some(&kb),
        Body::Json(json!({"entities": ["u1"], "features": ["txn:amount_sum_lifetime"]})),
    );
    assert_eq!((c, b["error"]["code"].as_str()), (400, Some("unknown_views")));
    assert_eq!(call(port, "GET", "/v1/transforms/card_txn", Some(&kb), Body::None).0, 404);
    assert_eq!(
        call(port, "POST", "/v1/transforms/card_txn/activate", Some(&kb), Body::Json(json!({"version": "x"}))).0,
        404
    );
    assert_eq!(call(port, "DELETE", "/v1/views/txn", Some(&kb), Body::None).0, 404);
    let (_, _, _) = call(port, "GET", "/v1/views", Some(&kb), Body::None);
    let (c, b, _) = call(port, "GET", "/v1/views", Some(&kb), Body::None);
    assert_eq!((c, b["views"].as_array().map(Vec::len)), (200, Some(0)));
    let (c, b, _) = call(port, "GET", "/v1/view-health", Some(&kb), Body::None);
    assert_eq!((c, b["views"].as_array().map(Vec::len)), (200, Some(0)), "beta sees none of alpha's health: {b}");
    let (c, b, _) = call(port, "GET", "/v1/view-health", Some(&ka), Body::None);
    assert_eq!((c, &b["views"][0]["name"], &b["views"][0]["events"]["ok"]), (200, &json!("txn"), &json!(1)), "{b}");
    // Beta's own view of the same name is a different namespace.
    upload(port, &kb, "card_txn", guests::RUST_CARD_TXN, true);
    assert_eq!(call(port, "PUT", "/v1/views/txn", Some(&kb), Body::Json(stream_view("card_txn"))).0, 200);
    eventually(Duration::from_secs(3), || {
        (call(port, "POST", "/v1/views/txn/events", Some(&kb), Body::Json(ev.clone())).0 == 200).then_some(())
    });
    let read = |k: &str| {
        call(
            port,
            "POST",
            "/v1/features",
            Some(k),
            Body::Json(json!({"entities": ["u1"], "features": ["txn:amount_count_lifetime"]})),
        )
        .1
    };
    assert_eq!(read(&ka)["results"][0]["features"]["txn:amount_count_lifetime"]["value"], 1);
    assert_eq!(read(&kb)["results"][0]["features"]["txn:amount_count_lifetime"]["value"], 1);
    let (_, _, _) = call(port, "GET", "/v1/metrics", Some(&kb), Body::None);
    let m = metrics_text(port, "/v1/metrics", &kb);
    assert!(m.contains("tenant=\"beta\",view=\"txn\"") && !m.contains("alpha"), "{m}");
}

#[test]
fn invalid_uploads_are_refused_with_their_error_and_change_nothing() {
    let p = Platform::start(1);
    let port = p.port(0);
    let k = p.tenant("alpha", json!({"upload_mib": 1}));
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let f = dir.path().join(name);
        std::fs::write(&f, bytes).unwrap();
        f
    };
    let before = call(port, "GET", "/v1/transforms", Some(&k), Body::None).1;
    let big = write("big.wasm", &vec![0u8; 2 << 20]);
    let cases: Vec<(String, std::path::PathBuf, u16, &str)> = vec![
        ("t".into(), write("text.wasm", b"hello"), 400, "not_wasm"),
        ("t".into(), write("core.wasm", b"\0asm\x01\0\0\0"), 400, "core_module_not_component"),
        ("t".into(), guests::NOT_A_TRANSFORM.into(), 400, "wrong_world"),
        ("t".into(), guests::FORBIDDEN_IMPORT.into(), 400, "forbidden_import"),
        ("t".into(), big, 413, "upload_too_large"),
        ("bad/name".into(), guests::RUST_CARD_TXN.into(), 404, "not_found"),
        ("9bad".into(), guests::RUST_CARD_TXN.into(), 400, "invalid_name"),
    ];
    for (name, file, status, code) in cases {
        let (c, b, _) = call(port, "PUT", &format!("/v1/transforms/{name}"), Some(&k), Body::File(&file));
        assert_eq!((c, b["error"]["code"].as_str()), (status, Some(code)), "{}: {b}", file.display());
        assert_eq!(call(port, "GET", "/v1/transforms", Some(&k), Body::None).1, before, "the registry is unchanged");
    }
    // A view referencing a missing transform, or asking more than the quota, is refused too.
    let (c, b, _) = call(port, "PUT", "/v1/views/v", Some(&k), Body::Json(stream_view("nope")));
    assert_eq!((c, b["error"]["code"].as_str()), (400, Some("invalid_view")), "{b}");
    upload(port, &k, "card_txn", guests::RUST_CARD_TXN, true);
    let mut v = stream_view("card_txn");
    v["deadline_ms"] = json!(5000);
    let (c, b, _) = call(port, "PUT", "/v1/views/v", Some(&k), Body::Json(v));
    assert_eq!((c, b["error"]["code"].as_str()), (403, Some("quota_exceeded")), "{b}");
    let mut v = stream_view("card_txn");
    v["aggregations"][0]["column"] = json!("country");
    let (c, b, _) = call(port, "PUT", "/v1/views/v", Some(&k), Body::Json(v));
    assert_eq!((c, b["error"]["code"].as_str()), (400, Some("invalid_view")), "sum over a text column: {b}");
    assert_eq!(call(port, "GET", "/v1/views", Some(&k), Body::None).1["views"], json!([]));
}

#[test]
fn hot_swap_under_load_loses_nothing_and_rollback_is_one_call() {
    let Some(python) = guests::PYTHON_CARD_TXN else {
        panic!("the Python example was not built (componentize-py missing): run scripts/test.sh");
    };
    let p = Platform::start(1);
    let port = p.port(0);
    let k = p.tenant("alpha", json!({}));
    let (c, v1) = upload(port, &k, "card_txn", guests::RUST_CARD_TXN, true);
    assert_eq!(c, 201, "{v1}");
    assert_eq!(call(port, "PUT", "/v1/views/txn", Some(&k), Body::Json(stream_view("card_txn"))).0, 200);
    eventually(Duration::from_secs(3), || {
        (call(port, "GET", "/v1/views", Some(&k), Body::None).1["views"].as_array()?.len() == 1).then_some(())
    });

    // Continuous pushes and reads while versions change.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pusher = {
        let (k, stop) = (k.clone(), stop.clone());
        std::thread::spawn(move || {
            let now = crate::support::now_ms();
            let mut truth = std::collections::BTreeMap::<String, (i64, i64)>::new();
            let mut i = 0i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || i < 40 {
                let events: Vec<Json> = (0..5)
                    .map(|j| {
                        let n = i * 5 + j;
                        let user = format!("u{}", n % 7);
                        let e = truth.entry(user.clone()).or_default();
                        e.0 += 1;
                        e.1 += n * 25;
                        json!({"timestamp_ms": now, "value": {"user_id": user, "amount": n as f64 * 0.25, "country": "DE", "merchant": "m"}})
                    })
                    .collect();
                let (c, b, _) =
                    call(port, "POST", "/v1/views/txn/events", Some(&k), Body::Json(json!({"events": events})));
                assert_eq!((c, b["accepted"].as_u64()), (200, Some(5)), "push {i} during the swap: {b}");
                i += 1;
            }
            truth
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let (c, v2) = upload(port, &k, "card_txn", python, true);
    assert_eq!(c, 201, "{v2}");
    assert_ne!(v1["version"], v2["version"]);
    std::thread::sleep(Duration::from_millis(500));
    // Rollback: one call.
    let (c, b, _) =
        call(port, "POST", "/v1/transforms/card_txn/activate", Some(&k), Body::Json(json!({"version": v1["version"]})));
    assert_eq!((c, &b["active"]), (200, &v1["version"]), "{b}");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let truth = pusher.join().unwrap();
    let (_, rec, _) = call(port, "GET", "/v1/transforms/card_txn", Some(&k), Body::None);
    assert_eq!(rec["versions"].as_array().map(Vec::len), Some(2));
    assert_eq!(rec["active"], v1["version"]);
    let users: Vec<&String> = truth.keys().collect();
    let (_, b, _) = call(
        port,
        "POST",
        "/v1/features",
        Some(&k),
        Body::Json(json!({"entities": users, "features": ["txn:amount_count_lifetime", "txn:amount_sum_lifetime"]})),
    );
    for (i, (user, (count, cents))) in truth.iter().enumerate() {
        let f = &b["results"][i]["features"];
        assert_eq!(f["txn:amount_count_lifetime"]["value"].as_i64(), Some(*count), "{user}");
        assert_eq!(f["txn:amount_sum_lifetime"]["value"].as_f64(), Some(*cents as f64 / 100.0), "{user}");
    }
}

#[test]
fn changes_reach_every_node_within_a_second() {
    let p = Platform::start(2);
    let (a, b) = (p.port(0), p.port(1));
    let k = p.tenant("alpha", json!({}));
    let ok = |port: u16| call(port, "GET", "/v1/views", Some(&k), Body::None).0 == 200;
    let (_, took) = eventually(Duration::from_secs(2), || ok(b).then_some(()));
    eprintln!("new key usable on the other node after {took:?}");
    let (_, keys) = p.admin("GET", "/v1/admin/tenants", Body::None);
    let id = keys["tenants"][0]["keys"][0]["id"].as_str().unwrap().to_owned();
    assert!(ok(a) && ok(b));
    let (c, _) = p.admin("DELETE", &format!("/v1/admin/tenants/alpha/keys/{id}"), Body::None);
    assert_eq!(c, 200);
    let (_, took) = eventually(Duration::from_secs(1), || {
        (call(b, "GET", "/v1/views", Some(&k), Body::None).0 == 401).then_some(())
    });
    eprintln!("revoked key refused by the other node after {took:?}");
    // A disabled tenant's fresh key stops working too.
    let k2 = {
        let (_, r) = p.admin("POST", "/v1/admin/tenants/alpha/keys", Body::None);
        r["key"].as_str().unwrap().to_owned()
    };
    eventually(Duration::from_secs(1), || (call(b, "GET", "/v1/views", Some(&k2), Body::None).0 == 200).then_some(()));
    p.admin("PATCH", "/v1/admin/tenants/alpha", Body::Json(json!({"disabled": true})));
    eventually(Duration::from_secs(1), || {
        let (c, body, _) = call(b, "GET", "/v1/views", Some(&k2), Body::None);
        (c == 403 && body["error"]["code"] == "tenant_disabled").then_some(())
    });
}

#[test]
fn quotas_limit_only_their_tenant() {
    let p = Platform::start(1);
    let port = p.port(0);
    let slow = p.tenant("slow", json!({"requests_per_second": 5, "max_views": 1}));
    let fast = p.tenant("fast", json!({}));
    let mut limited = 0;
    let mut retry_after = String::new();
    for _ in 0..20 {
        let (c, b, headers) = call(port, "GET", "/v1/views", Some(&slow), Body::None);
        if c == 429 {
            limited += 1;
            assert_eq!(b["error"]["code"], "rate_limited");
            retry_after = headers
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("retry-after"))
                .unwrap_or_default()
                .to_owned();
        }
        assert_eq!(call(port, "GET", "/v1/views", Some(&fast), Body::None).0, 200, "the other tenant is not limited");
    }
    assert!(limited >= 10, "{limited} of 20 were limited");
    assert!(retry_after.to_ascii_lowercase().starts_with("retry-after: "), "{retry_after}");
    let (_, _, _) = call(port, "GET", "/metrics", Some(ADMIN), Body::None);
    let m = metrics_text(port, "/metrics", ADMIN);
    assert!(m.contains("wafer_quota_exceeded_total{tenant=\"slow\",limit=\"requests_per_second\"}"), "{m}");
    let line = format!("wafer_http_requests_total{{route=\"views\",status=\"429\"}} {limited}");
    assert!(m.lines().any(|l| l == line), "missing `{line}` in:\n{m}");
    assert!(!m.contains("route=\"rate_limited\""), "{m}");

    // max_views = 1.
    std::thread::sleep(Duration::from_millis(1100));
    upload(port, &slow, "card_txn", guests::RUST_CARD_TXN, true);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(call(port, "PUT", "/v1/views/one", Some(&slow), Body::Json(stream_view("card_txn"))).0, 200);
    std::thread::sleep(Duration::from_millis(300));
    let (c, b, _) = call(port, "PUT", "/v1/views/two", Some(&slow), Body::Json(stream_view("card_txn")));
    assert_eq!((c, b["error"]["code"].as_str()), (403, Some("quota_exceeded")), "{b}");
}

#[test]
fn deleting_a_view_stops_it_and_removes_its_data() {
    let p = Platform::start(1);
    let port = p.port(0);
    let k = p.tenant("alpha", json!({}));
    upload(port, &k, "card_txn", guests::RUST_CARD_TXN, true);
    assert_eq!(call(port, "PUT", "/v1/views/txn", Some(&k), Body::Json(stream_view("card_txn"))).0, 200);
    let ev = json!({"events": [{"timestamp_ms": crate::support::now_ms(), "value": {"user_id": "u1", "amount": 2, "country": "DE", "merchant": "m"}}]});
    eventually(Duration::from_secs(2), || {
        (call(port, "POST", "/v1/views/txn/events", Some(&k), Body::Json(ev.clone())).0 == 200).then_some(())
    });
    let keys = || {
        Command::new("redis-cli")
            .args(["-p", &p.redis.port.to_string(), "--scan", "--pattern", "wafer:*alpha/txn[:}]*"])
            .output()
            .unwrap()
            .stdout
    };
    assert!(!keys().is_empty());
    let (c, b, _) = call(port, "DELETE", "/v1/views/txn", Some(&k), Body::None);
    assert_eq!(c, 200, "{b}");
    assert!(keys().is_empty(), "online data removed");
    assert_eq!(call(port, "POST", "/v1/views/txn/events", Some(&k), Body::Json(ev)).0, 404);
    assert_eq!(call(port, "DELETE", "/v1/views/txn", Some(&k), Body::None).0, 404);
}

#[test]
fn the_cli_drives_the_control_plane() {
    let p = Platform::start(1);
    let server = format!("http://127.0.0.1:{}", p.port(0));
    let wafer = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(crate::support::wafer_bin())
            .args(args)
            .env("WAFER_SERVER", &server)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let admin = [("WAFER_ADMIN_TOKEN", ADMIN)];
    assert_eq!(wafer(&["tenants", "create", "acme", "--quotas", r#"{"max_views": 3}"#], &admin).0, Some(0));
    let (code, out) = wafer(&["tenants", "key", "acme"], &admin);
    assert_eq!(code, Some(0), "{out}");
    let key: Json = serde_json::from_str(&out).unwrap();
    let key = key["key"].as_str().unwrap().to_owned();
    let api = [("WAFER_API_KEY", key.as_str())];
    let (code, out) = wafer(&["deploy", "--name", "card_txn", guests::RUST_CARD_TXN], &api);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("\"world\": \"stream\""), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let view = dir.path().join("txn.json");
    std::fs::write(&view, stream_view("card_txn").to_string()).unwrap();
    let (code, out) = wafer(&["views", "put", "txn", view.to_str().unwrap()], &api);
    assert_eq!(code, Some(0), "{out}");
    let (out, _) = eventually(Duration::from_secs(2), || {
        let (_, out) = wafer(&["views", "list"], &api);
        out.contains("\"name\": \"txn\"").then_some(out)
    });
    assert!(out.contains("amount_sum_lifetime"), "{out}");
    let (code, out) = wafer(&["deploy", "--name", "bad", "/etc/hostname"], &api);
    assert_eq!(code, Some(1), "a refused upload exits 1: {out}");
    assert!(out.contains("not_wasm"), "{out}");
    let (code, _) = wafer(&["tenants", "list"], &api.map(|(_, v)| ("WAFER_ADMIN_TOKEN", v)));
    assert_eq!(code, Some(1), "a tenant key is not the admin token");
}

/// Issue 20: a quota change the tenant's current state violates is refused (409) instead of
/// leaving later nodes with no views; a compile bomb is refused within the tenant's compile
/// budget while the node keeps serving; versions beyond the quota are garbage-collected; an
/// upload with a JSON content type is a 415.
#[test]
fn quota_changes_compile_budgets_and_version_caps_protect_the_node() {
    let p = Platform::start(1);
    let port = p.port(0);
    let k = p.tenant("acme", json!({"compile_seconds": 2, "compile_memory_mib": 256, "versions_per_transform": 2}));
    let (c, b) = upload(port, &k, "card_txn", guests::RUST_CARD_TXN, true);
    assert_eq!(c, 201, "{b}");
    for v in ["a", "b", "c"] {
        let (c, b, _) = call(port, "PUT", &format!("/v1/views/{v}"), Some(&k), Body::Json(stream_view("card_txn")));
        assert_eq!(c, 200, "{b}");
    }
    let (c, b) = p.admin("PATCH", "/v1/admin/tenants/acme", Body::Json(json!({"quotas": {"max_views": 1}})));
    assert_eq!((c, b["error"]["code"].as_str()), (409, Some("quota_conflict")), "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("3 views"), "{b}");
    let (_, list) = p.admin("GET", "/v1/admin/tenants", Body::None);
    assert_eq!(list["tenants"][0]["quotas"]["max_views"], json!(20), "the quotas are unchanged");
    // A node started now still serves all three views.
    let mut p = p;
    p.add_node();
    let port1 = p.port(1);
    let (views, _) = eventually(Duration::from_secs(10), || {
        let (c, b, _) = call(port1, "GET", "/v1/views", Some(&k), Body::None);
        (c == 200 && b["views"].as_array().is_some_and(|v| v.len() == 3)).then_some(b)
    });
    assert_eq!(views["views"].as_array().unwrap().len(), 3);

    // Compile bomb: refused within the budget; the node serves meanwhile.
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("bomb.wasm");
    std::fs::write(&bomb, crate::hardening::compile_bomb()).unwrap();
    let served = std::thread::scope(|s| {
        let up = s.spawn(|| call(port, "PUT", "/v1/transforms/bomb", Some(&k), Body::File(&bomb)));
        let mut served = 0;
        while !up.is_finished() {
            assert_eq!(call(port, "GET", "/v1/views", Some(&k), Body::None).0, 200);
            served += 1;
        }
        let (c, b, _) = up.join().unwrap();
        assert_eq!((c, b["error"]["code"].as_str()), (422, Some("compile_budget_exceeded")), "{b}");
        served
    });
    assert!(served > 0);
    let (_, t, _) = call(port, "GET", "/v1/transforms/bomb", Some(&k), Body::None);
    assert_eq!(t["error"]["code"], "not_found", "nothing of the bomb was stored");

    // At most 2 versions are kept: the oldest inactive one goes, with its bytes.
    for file in [guests::RUST_TXN_RISK, guests::MISBEHAVE] {
        let (c, b) = upload(port, &k, "card_txn", file, false);
        assert_eq!(c, 201, "{b}");
    }
    let (_, rec, _) = call(port, "GET", "/v1/transforms/card_txn", Some(&k), Body::None);
    let versions = rec["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{rec}");
    assert!(versions.iter().any(|v| v["id"] == rec["active"]), "the active version is kept: {rec}");

    // Wasm sent as JSON is refused.
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-X", "PUT", "-H", &format!("authorization: Bearer {k}")])
        .args(["-H", "content-type: application/json", "--data-binary"])
        .arg(format!("@{}", guests::RUST_CARD_TXN))
        .arg(format!("http://127.0.0.1:{port}/v1/transforms/x"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.ends_with("\n415") && text.contains("unsupported_media_type"), "{text}");
}

/// The Prometheus text of `path` (`/metrics` or `/v1/metrics`), read with `key`.
fn metrics_text(port: u16, path: &str, key: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-H", &format!("authorization: Bearer {key}")])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// The `wafer_quota_exceeded_total` line of `tenant` and `limit`, if any.
fn quota_metric(port: u16, tenant: &str, limit: &str) -> Option<String> {
    let m = metrics_text(port, "/metrics", ADMIN);
    let prefix = format!("wafer_quota_exceeded_total{{tenant=\"{tenant}\",limit=\"{limit}\"}}");
    m.lines().find(|l| l.starts_with(&prefix)).map(str::to_owned)
}

#[test]
fn view_quota_errors_are_typed_not_guessed_from_their_message() {
    let p = Platform::start(1);
    let port = p.port(0);
    let k = p.tenant("acme", json!({"deadline_ms": 40}));
    upload(port, &k, "card_txn", guests::RUST_CARD_TXN, true);
    // A deadline over the quota on a view whose name contains "views": the deadline quota, not
    // `max_views` (the message used to be searched for "views").
    let mut v = stream_view("card_txn");
    v["deadline_ms"] = json!(45);
    let (c, b, _) = call(port, "PUT", "/v1/views/pageviews", Some(&k), Body::Json(v));
    assert_eq!(c, 403, "{b}");
    assert_eq!(
        b,
        json!({"error": {"code": "quota_exceeded",
            "message": "view `pageviews`: deadline_ms 45 exceeds the tenant's quota of 40",
            "quota": "deadline_ms", "limit": 40, "found": 45}})
    );
    assert_eq!(
        quota_metric(port, "acme", "deadline_ms").as_deref(),
        Some("wafer_quota_exceeded_total{tenant=\"acme\",limit=\"deadline_ms\"} 1")
    );
    assert_eq!(quota_metric(port, "acme", "max_views"), None);

    // An invalid view whose error message says "quota" is an invalid view, not a 403.
    let mut v = stream_view("card_txn");
    v["deadline_ms"] = json!(40);
    v["features"] = json!(["quota_left"]);
    let (c, b, _) = call(port, "PUT", "/v1/views/quota", Some(&k), Body::Json(v));
    assert_eq!((c, b["error"]["code"].as_str()), (400, Some("invalid_view")), "{b}");
    let message = b["error"]["message"].as_str().unwrap();
    assert!(message.contains("quota_left"), "{b}");
    assert_eq!(b["error"].as_object().unwrap().len(), 2, "code and message only: {b}");
    assert_eq!(quota_metric(port, "acme", "view_limits"), None);

    // The views quota itself.
    let (c, b) =
        p.admin("PATCH", "/v1/admin/tenants/acme", Body::Json(json!({"quotas": {"deadline_ms": 40, "max_views": 1}})));
    assert_eq!(c, 200, "{b}");
    let mut v = stream_view("card_txn");
    v["deadline_ms"] = json!(40);
    let (c, b, _) = call(port, "PUT", "/v1/views/one", Some(&k), Body::Json(v.clone()));
    assert_eq!(c, 200, "{b}");
    let (c, b, _) = call(port, "PUT", "/v1/views/two", Some(&k), Body::Json(v));
    assert_eq!(c, 403, "{b}");
    assert_eq!(
        b,
        json!({"error": {"code": "quota_exceeded", "message": "the tenant has 2 views; its quota is 1",
            "quota": "max_views", "limit": 1, "found": 2}})
    );
    assert!(quota_metric(port, "acme", "max_views").is_some());
}

#[test]
fn a_view_named_events_can_be_created_pushed_to_and_deleted() {
    let p = Platform::start(1);
    let port = p.port(0);
    let k = p.tenant("acme", json!({}));
    upload(port, &k, "card_txn", guests::RUST_CARD_TXN, true);
    let (c, b, _) = call(port, "PUT", "/v1/views/events", Some(&k), Body::Json(stream_view("card_txn")));
    assert_eq!((c, b["name"].as_str()), (200, Some("events")), "{b}");
    let ev = json!({"events": [{"timestamp_ms": crate::support::now_ms(), "value": {"user_id": "u1", "amount": 2, "country": "DE", "merchant": "m"}}]});
    let (b, _) = eventually(Duration::from_secs(3), || {
        let (c, b, _) = call(port, "POST", "/v1/views/events/events", Some(&k), Body::Json(ev.clone()));
        (c == 200).then_some(b)
    });
    assert_eq!(b, json!({"accepted": 1, "rows": 1, "failed": []}));
    // POST on the view itself is not the push route.
    let (c, b, h) = call(port, "POST", "/v1/views/events", Some(&k), Body::Json(ev.clone()));
    assert_eq!(c, 405, "{b}");
    assert_eq!(
        b,
        json!({"error": {"code": "method_not_allowed", "message": "POST is not allowed on /v1/views/events"}})
    );
    assert!(h.to_ascii_lowercase().contains("allow: "), "{h}");
    let (c, b, _) = call(port, "DELETE", "/v1/views/events", Some(&k), Body::None);
    assert_eq!((c, b), (200, json!({"deleted": "events"})));
    let (c, b, _) = call(port, "POST", "/v1/views/events/events", Some(&k), Body::Json(ev));
    assert_eq!(c, 404, "{b}");
    assert_eq!(b, json!({"error": {"code": "unknown_view", "message": "no stream view `events`"}}));
}

/// Issue 20, defect 10: a tenant at its `max_stored_entities` quota keeps updating the entities
/// it has, creates none (each refusal named in the push's answer and counted), and another
/// tenant on the same Redis is not affected; raising the quota lets new entities in.
#[test]
fn a_tenant_at_its_store_quota_updates_its_entities_and_stores_no_new_ones() {
    let p = Platform::start(1);
    let port = p.port(0);
    let small = p.tenant("small", json!({"max_stored_entities": 2}));
    let big = p.tenant("big", json!({}));
    for k in [&small, &big] {
        assert_eq!(upload(port, k, "card_txn", guests::RUST_CARD_TXN, true).0, 201);
        assert_eq!(call(port, "PUT", "/v1/views/txn", Some(k), Body::Json(stream_view("card_txn"))).0, 200);
    }
    let now = crate::support::now_ms();
    let push = |k: &str, users: &[&str]| {
        let events: Vec<Json> = users
            .iter()
            .map(|u| json!({"timestamp_ms": now, "value": {"user_id": u, "amount": 1.0, "country": "DE", "merchant": "m"}}))
            .collect();
        eventually(Duration::from_secs(3), || {
            let (c, b, _) = call(port, "POST", "/v1/views/txn/events", Some(k), Body::Json(json!({"events": events})));
            (c == 200).then_some(b)
        })
        .0
    };
    // An entity with nothing stored counts 0.
    let counts = |k: &str, users: &[&str]| -> Vec<Option<i64>> {
        let body = json!({"entities": users, "features": ["txn:amount_count_lifetime"]});
        let (c, b, _) = call(port, "POST", "/v1/features", Some(k), Body::Json(body));
        assert_eq!(c, 200, "{b}");
        (0..users.len()).map(|i| b["results"][i]["features"]["txn:amount_count_lifetime"]["value"].as_i64()).collect()
    };

    let b = push(&small, &["u1", "u2"]);
    assert!(b.get("refused").is_none(), "within the quota: {b}");
    let b = push(&small, &["u1", "u3", "u2", "u4"]);
    assert_eq!(b["refused"]["code"], "store_quota_exceeded", "{b}");
    assert_eq!((&b["refused"]["entities"], &b["refused"]["sample"]), (&json!(2), &json!(["u3", "u4"])), "{b}");
    assert!(b["refused"]["error"].as_str().unwrap().contains("max_stored_entities` quota of 2"), "{b}");
    assert_eq!(
        counts(&small, &["u1", "u2", "u3", "u4"]),
        [Some(2), Some(2), Some(0), Some(0)],
        "existing entities updated, new ones not stored"
    );

    // The other tenant, same Redis, same entity keys: not limited.
    let b = push(&big, &["u1", "u2", "u3", "u4"]);
    assert!(b.get("refused").is_none(), "{b}");
    assert_eq!(counts(&big, &["u1", "u2", "u3", "u4"]), [Some(1); 4]);

    let m = metrics_text(port, "/metrics", ADMIN);
    for line in [
        "wafer_quota_refused_entities_total{tenant=\"small\",view=\"txn\",limit=\"max_stored_entities\"} 2",
        "wafer_quota_exceeded_total{tenant=\"small\",limit=\"max_stored_entities\"} 1",
        "wafer_tenant_stored_entities{tenant=\"small\"} 2",
        "wafer_tenant_stored_entities{tenant=\"big\"} 4",
    ] {
        assert!(m.lines().any(|l| l == line), "{line}:\n{m}");
    }

    // Raised quota: the next build of the tenant lets the new entity in.
    let (c, b) = p.admin("PATCH", "/v1/admin/tenants/small", Body::Json(json!({"quotas": {"max_stored_entities": 3}})));
    assert_eq!(c, 200, "{b}");
    eventually(Duration::from_secs(5), || {
        let b = push(&small, &["u3"]);
        b.get("refused").is_none().then_some(())
    });
    let after = counts(&small, &["u3", "u4"]);
    assert_eq!(after, [Some(1), Some(0)], "refused pushes wrote nothing");

    // Batch-view rows written through Feast's write-to-online-store count against the same quota
    // (3 stream records now, the raised quota): both entities are new to this view, so both rows
    // are refused and nothing is stored.
    let stats = json!({"kind": "batch", "entity": "user", "source": "none.csv", "features": {"score": "int64"}});
    assert_eq!(call(port, "PUT", "/v1/views/stats", Some(&small), Body::Json(stats)).0, 200);
    let df = json!({"feature_view_name": "stats", "df": {"user": ["u1", "u9"], "score": [7, 8]}});
    let (b, _) = eventually(Duration::from_secs(3), || {
        let (c, b, _) = call(port, "POST", "/write-to-online-store", Some(&small), Body::Json(df.clone()));
        (c == 200).then_some(b)
    });
    assert_eq!((&b["refused"]["code"], &b["refused"]["entities"]), (&json!("store_quota_exceeded"), &json!(2)), "{b}");
    let body = json!({"entities": ["u1"], "features": ["stats:score"]});
    let (_, r, _) = call(port, "POST", "/v1/features", Some(&small), Body::Json(body));
    assert_eq!(r["results"][0]["features"]["stats:score"]["value"], Json::Null, "{r}");
}

/// Issue 17: a registry tenant's batch view (created through the API, no `source`) is loaded
/// with `wafer materialize --server … --key …`: the newest row per user wins, bad rows are
/// reported with their row number and exit 1, a rerun changes nothing, and the wrong key or
/// view kind is a clear error.
#[test]
fn materialize_through_the_server_loads_a_registry_batch_view() {
    let p = Platform::start(1);
    let key = p.tenant("acme", json!({}));
    let batch = json!({"kind": "batch", "entity": "user", "entity_column": "user_id",
                       "features": {"txn_count_7d": "int64", "last_country": "text"}});
    let (c, b, _) = call(p.port(0), "PUT", "/v1/views/user_stats", Some(&key), Body::Json(batch));
    assert!(c == 200 || c == 201, "a batch view needs no source: {c} {b}");
    let (c, b) = upload(p.port(0), &key, "card_txn", guests::RUST_CARD_TXN, true);
    assert_eq!(c, 201, "{b}");
    let (c, b, _) = call(p.port(0), "PUT", "/v1/views/txn", Some(&key), Body::Json(stream_view("card_txn")));
    assert!(c == 200 || c == 201, "{c} {b}");
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("stats.csv");
    let now = crate::support::now_ms();
    std::fs::write(
        &csv,
        format!(
            "user_id,event_timestamp,txn_count_7d,last_country\n\
             u1,{},3,IT\nu1,{},12,DE\nu2,{},2,FR\nu3,{},not-a-number,US\n",
            now - 60_000,
            now - 1_000,
            now - 1_000,
            now - 1_000
        ),
    )
    .unwrap();
    let server = format!("http://127.0.0.1:{}", p.port(0));
    let materialize = |view: &str, key: &str| {
        let out = Command::new(crate::support::wafer_bin())
            .args(["materialize", "--server", &server, "--view", view, "--quiet", "--rows-per-request", "2"])
            .args(["--entity-column", "user_id", "--from"])
            .arg(&csv)
            .env("WAFER_API_KEY", key)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, out) = materialize("user_stats", &key);
    assert_eq!(code, Some(1), "a bad row exits 1: {out}");
    assert!(out.contains("row 3: column `txn_count_7d`"), "{out}");
    assert!(out.contains("3 rows loaded in 2 requests, 1 bad"), "{out}");
    let read = || {
        let body =
            json!({"view": "user_stats", "entities": ["u1", "u2", "u3"], "features": ["txn_count_7d", "last_country"]});
        let (c, b, _) = call(p.port(0), "POST", "/v1/features", Some(&key), Body::Json(body));
        assert_eq!(c, 200, "{b}");
        b["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["features"]["txn_count_7d"]["value"].clone(), r["features"]["last_country"]["value"].clone()))
            .collect::<Vec<_>>()
    };
    let expected = vec![(json!(12), json!("DE")), (json!(2), json!("FR")), (Json::Null, Json::Null)];
    assert_eq!(read(), expected, "the newest row per user wins");
    assert_eq!(materialize("user_stats", &key).0, Some(1));
    assert_eq!(read(), expected, "a rerun changes nothing");
    let (code, out) = materialize("txn", &key);
    assert_eq!(code, Some(2), "an error exits 2");
    assert!(out.contains("view `txn` is a stream view"), "{out}");
    let (code, out) = materialize("user_stats", "wfr_not_a_key");
    assert_eq!(code, Some(2));
    assert!(out.contains("invalid_api_key") && out.contains("WAFER_API_KEY"), "{out}");
}
