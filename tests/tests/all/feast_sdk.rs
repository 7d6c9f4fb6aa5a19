//! Feast's own Python SDK (PyPI `feast`, the version pinned in `scripts/test.sh`, installed in
//! `.venv-feast`) as the client of Wafer, with `online_store: type: remote`: against `wafer
//! serve` (Redis), `wafer dev` (embedded store) and registry mode with a tenant API key. The SDK
//! writes a batch view (`write_to_online_store`), pushes to a stream view (`push`, and Feast's
//! REST `/push`), reads stored, aggregated and request-view features (short and full names, int64
//! join keys, a feature service), and gets Feast's own exceptions for a missing view and missing
//! request data. Every value it reads is compared with Wafer's native API and with values
//! computed independently.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value as Json, json};

use crate::support::{RedisServer, Wafer, free_port, guests, now_ms, target_dir, wafer_bin};

const ADMIN: &str = "test-admin-token-feast-sdk-0123";

/// The Python with Feast installed (scripts/test.sh creates it).
fn python() -> PathBuf {
    let p = std::env::var_os("WAFER_TEST_FEAST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(guests::WAFER_ROOT).join(".venv-feast/bin/python"));
    assert!(p.exists(), "{} is missing: run scripts/test.sh (it installs Feast's SDK in .venv-feast)", p.display());
    p
}

/// Run the SDK client against `port`; its JSON report.
fn run_sdk(port: u16, now: i64, token: Option<&str>, service: bool) -> Json {
    let repo = tempfile::tempdir().unwrap();
    let mut c = Command::new(python());
    c.arg(Path::new(guests::WAFER_ROOT).join("tests/feast/sdk_client.py"))
        .arg(format!("http://127.0.0.1:{port}"))
        .arg(repo.path())
        .arg(now.to_string());
    if let Some(t) = token {
        c.args(["--token", t]);
    }
    if !service {
        c.arg("--no-service");
    }
    let out = c.output().expect("running the Feast SDK client");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the Feast SDK client failed:\n{stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("SDK report: {e}\n{}\n{stderr}", String::from_utf8_lossy(&out.stdout)))
}

const FEATURES: [&str; 6] = [
    "txn:amount_sum_1h",
    "txn:amount_count_lifetime",
    "txn:country",
    "user_stats:txn_count_7d",
    "user_stats:last_country",
    "risk:risk_score",
];

/// The views, as manifest TOML (entity `user_id`: Feast's join key).
fn manifest_views(dir: &Path) -> String {
    std::fs::write(
        dir.join("user_stats.csv"),
        "user_id,event_timestamp,txn_count_7d,amount_sum_7d,amount_mean_7d,last_country\n",
    )
    .unwrap();
    std::fs::write(dir.join("merchant_stats.csv"), "merchant_id,event_timestamp,chargebacks\n").unwrap();
    format!(
        r#"
[server]
tenant = "feast"

[[stream_view]]
name = "txn"
entity = "user_id"
transform = "{card}"
features = ["country"]
[[stream_view.aggregations]]
column = "amount"
functions = ["count", "sum"]
windows = ["1h", "lifetime"]

[[batch_view]]
name = "user_stats"
entity = "user_id"
source = "user_stats.csv"
ttl = "2d"
features = {{ txn_count_7d = "int64", amount_sum_7d = "float64", amount_mean_7d = "float64", last_country = "text" }}

[[batch_view]]
name = "merchant_stats"
entity = "merchant_id"
source = "merchant_stats.csv"
features = {{ chargebacks = "int64" }}

[[request_view]]
name = "risk"
transform = "{risk}"

[[feature_service]]
name = "fraud_v1"
features = ["txn:amount_sum_1h", "user_stats:txn_count_7d", "risk:risk_score"]
"#,
        card = guests::RUST_CARD_TXN,
        risk = guests::RUST_TXN_RISK,
    )
}

/// POST JSON with an optional key: (status, body).
fn call(port: u16, path: &str, key: Option<&str>, body: &Json) -> (u16, Json) {
    let mut c = Command::new("curl");
    c.args(["-s", "-w", "\n%{http_code}", "-X", "POST", "-H", "content-type: application/json"])
        .args(["--data-binary", &body.to_string()])
        .arg(format!("http://127.0.0.1:{port}{path}"));
    if let Some(k) = key {
        c.args(["-H", &format!("authorization: Bearer {k}")]);
    }
    let text = String::from_utf8(c.output().unwrap().stdout).unwrap();
    let (b, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), serde_json::from_str(b).unwrap_or(Json::Null))
}

/// txn_risk's formula, computed independently.
fn risk(amount: f64, mean: Option<f64>, count: Option<i64>, last: Option<&str>, country: &str) -> f64 {
    let vs = amount / mean.filter(|m| *m != 0.0).unwrap_or(1.0);
    let new = last != Some(country);
    (0.1 * vs.min(5.0) + if new { 0.4 } else { 0.0 } + if count.unwrap_or(0) < 3 { 0.1 } else { 0.0 }).min(1.0)
}

/// Check the SDK's report against independent values and against Wafer's native API.
fn check(report: &Json, port: u16, key: Option<&str>, service: bool) {
    assert_eq!(report["rest_push"], 200, "{report}");
    assert_eq!(report["health"], 200, "{report}");
    let users = json!(["u1", "u2", "nobody"]);
    let s = &report["short"];
    assert_eq!(s["user_id"], users, "{s}");
    // Independent values: pushed events (two for u1 in the last hour, one for u2), written stats,
    // and the risk score from both.
    assert_eq!(s["amount_sum_1h"][0], 30.75, "{s}");
    assert_eq!(s["amount_sum_1h"][1], 7.0, "{s}");
    assert_eq!(s["amount_count_lifetime"][0], 2, "{s}");
    assert_eq!(s["country"], json!(["ES", "FR", null]), "{s}");
    assert_eq!(s["txn_count_7d"], json!([12, 2, null]), "{s}");
    assert_eq!(s["last_country"], json!(["DE", "FR", null]), "{s}");
    let expect = [
        risk(90.0, Some(45.0), Some(12), Some("DE"), "US"),
        risk(10.0, Some(900.0), Some(2), Some("FR"), "FR"),
        risk(5.0, None, None, None, "DE"),
    ];
    for (i, e) in expect.iter().enumerate() {
        assert_eq!(s["risk_score"][i].as_f64(), Some(*e), "row {i}: {s}");
    }

    // Wafer's native API answers the same values.
    let (code, native) = call(
        port,
        "/v1/features",
        key,
        &json!({"entities": users, "features": FEATURES, "request_data": {"amount": [90.0, 10.0, 5.0], "country": ["US", "FR", "DE"]}}),
    );
    assert_eq!(code, 200, "{native}");
    for f in FEATURES {
        let short = f.split_once(':').unwrap().1;
        for row in 0..3 {
            let n = &native["results"][row]["features"][f];
            assert_eq!(s[short][row], n["value"], "{f} row {row}: SDK {s} vs native {native}");
            assert_eq!(report["full"][f.replacen(':', "__", 1)][row], n["value"], "{f} row {row} (full names)");
        }
    }
    assert_eq!(report["full"]["user_id"], users);
    assert_eq!(report["dtypes"]["risk_score"], "float64", "{report}");
    assert_eq!(report["dtypes"]["user_id"], "object", "{report}");

    let ik = &report["int_keys"];
    assert_eq!((&ik["merchant_id"], &ik["chargebacks"]), (&json!([7, 8, 9]), &json!([3, 0, null])), "{ik}");
    if service {
        let sv = &report["service"];
        assert_eq!(sv["user_id"], users);
        assert_eq!(sv["amount_sum_1h"], s["amount_sum_1h"], "{sv}");
        assert_eq!(sv["txn_count_7d"], s["txn_count_7d"], "{sv}");
        assert_eq!(sv["risk_score"], s["risk_score"], "{sv}");
        assert_eq!(sv.as_object().unwrap().len(), 4, "{sv}");
    }
    let mv = &report["missing_view"];
    assert_eq!(
        (mv["module"].as_str(), mv["class"].as_str()),
        (Some("feast.errors"), Some("FeatureViewNotFoundException")),
        "{report}"
    );
    assert!(mv["message"].as_str().unwrap().contains("nope"), "{mv}");
    let mr = &report["missing_request_data"];
    assert_eq!(mr["class"], "RequestDataNotFoundInEntityRowsException", "{report}");
    assert!(mr["message"].as_str().unwrap().contains("'amount'"), "{mr}");
}

#[test]
fn feast_sdk_reads_and_writes_through_wafer_serve() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wafer.toml");
    std::fs::write(&config, format!("[redis]\nurl = \"{}\"\n{}", redis.url(), manifest_views(dir.path()))).unwrap();
    let w = Wafer::start(&config, free_port());
    let report = run_sdk(w.port, now_ms(), None, true);
    check(&report, w.port, None, true);
}

#[test]
fn feast_sdk_reads_and_writes_through_wafer_dev() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wafer.toml");
    std::fs::write(&config, manifest_views(dir.path())).unwrap();
    let port = free_port();
    let mut child = Command::new(wafer_bin())
        .args(["dev", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("WAFER_CACHE_DIR", target_dir().join("test-artifact-cache"))
        .env("WAFER_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "wafer dev did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let result = std::panic::catch_unwind(|| {
        let report = run_sdk(port, now_ms(), None, true);
        check(&report, port, None, true);
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn feast_sdk_uses_a_tenant_key_in_registry_mode() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wafer.toml");
    std::fs::write(&config, format!("[redis]\nurl = \"{}\"\n[control]\n", redis.url())).unwrap();
    let w = Wafer::start_with(&config, free_port(), &[("WAFER_ADMIN_TOKEN", ADMIN)]);
    let p = w.port;
    let admin = |method: &str, path: &str, body: Option<Json>| -> (u16, Json) {
        let mut c = Command::new("curl");
        c.args(["-s", "-w", "\n%{http_code}", "-X", method, "-H", &format!("authorization: Bearer {ADMIN}")])
            .arg(format!("http://127.0.0.1:{p}{path}"));
        if let Some(b) = body {
            c.args(["-H", "content-type: application/json", "--data-binary", &b.to_string()]);
        }
        let text = String::from_utf8(c.output().unwrap().stdout).unwrap();
        let (b, code) = text.rsplit_once('\n').unwrap();
        (code.parse().unwrap(), serde_json::from_str(b).unwrap_or(Json::Null))
    };
    assert_eq!(admin("POST", "/v1/admin/tenants", Some(json!({"name": "feast"}))).0, 201);
    let (c, b) = admin("POST", "/v1/admin/tenants/feast/keys", None);
    assert_eq!(c, 201, "{b}");
    let key = b["key"].as_str().unwrap().to_owned();
    let tenant = |method: &str, path: &str, body: &[&str]| -> u16 {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                method,
                "-H",
                &format!("authorization: Bearer {key}"),
            ])
            .args(body)
            .arg(format!("http://127.0.0.1:{p}{path}"))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().parse().unwrap()
    };
    for (name, file) in [("card_txn", guests::RUST_CARD_TXN), ("txn_risk", guests::RUST_TXN_RISK)] {
        let body = format!("@{file}");
        assert_eq!(
            tenant(
                "PUT",
                &format!("/v1/transforms/{name}"),
                &["-H", "content-type: application/wasm", "--data-binary", &body]
            ),
            201
        );
    }
    let views = [
        (
            "txn",
            json!({"kind": "stream", "entity": "user_id", "transform": "card_txn", "features": ["country"],
            "aggregations": [{"column": "amount", "functions": ["count", "sum"], "windows": ["1h", "lifetime"]}]}),
        ),
        (
            "user_stats",
            json!({"kind": "batch", "entity": "user_id", "source": "none.csv", "ttl": "2d",
            "features": {"txn_count_7d": "int64", "amount_sum_7d": "float64", "amount_mean_7d": "float64", "last_country": "text"}}),
        ),
        (
            "merchant_stats",
            json!({"kind": "batch", "entity": "merchant_id", "source": "none.csv", "features": {"chargebacks": "int64"}}),
        ),
        ("risk", json!({"kind": "request", "transform": "txn_risk"})),
    ];
    for (name, v) in views {
        let body = v.to_string();
        assert_eq!(
            tenant(
                "PUT",
                &format!("/v1/views/{name}"),
                &["-H", "content-type: application/json", "--data-binary", &body]
            ),
            200,
            "{name}"
        );
    }
    // Without the key, the SDK's read is refused (Wafer's 401), so the key is what it uses.
    let (code, _) =
        call(p, "/get-online-features", None, &json!({"features": ["txn:country"], "entities": {"user_id": ["u1"]}}));
    assert_eq!(code, 401);
    // Registry mode has no feature services.
    let report = run_sdk(p, now_ms(), Some(&key), false);
    check(&report, p, Some(&key), false);
}
