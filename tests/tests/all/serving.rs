//! Online serving against a private Redis: `wafer materialize` loads a batch view (newest event
//! time wins, bad rows named, reruns resume), `wafer serve` answers native and Feast-shaped
//! requests with exact stored, aggregated and request-transform values (missing and expired
//! included), every bad request gets its own 4xx, and a request transform that loops or traps
//! gets a 5xx naming it without disturbing other requests.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use crate::support::{RedisServer, Wafer, free_port, get, guests, now_ms, post, target_dir, wafer_bin};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

struct Setup {
    _redis: RedisServer,
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    now: i64,
}

fn setup() -> Setup {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let csv = format!(
        "user_id,event_timestamp,txn_count_7d,amount_sum_7d,amount_mean_7d,last_country\n\
         u1,{},12,540.0,45.0,DE\n\
         u1,{},3,90.0,30.0,IT\n\
         u2,{},2,1800.0,900.0,FR\n\
         u_old,{},7,70.0,10.0,US\n\
         u4,{},abc,1.0,1.0,US\n",
        now - HOUR,
        now - 5 * DAY,
        now - HOUR,
        now - 3 * DAY,
        now - HOUR,
    );
    std::fs::write(dir.path().join("user_stats.csv"), csv).unwrap();
    let config = dir.path().join("wafer.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[redis]
url = "{redis}"
[server]
tenant = "serving"

[[stream_view]]
name = "txn"
entity = "user"
transform = "{card}"
features = ["country"]
[[stream_view.aggregations]]
column = "amount"
functions = ["count", "sum"]
windows = ["1h", "lifetime"]

[[batch_view]]
name = "user_stats"
entity = "user"
source = "user_stats.csv"
entity_column = "user_id"
ttl = "2d"
batch_size = 2
features = {{ txn_count_7d = "int64", amount_sum_7d = "float64", amount_mean_7d = "float64", last_country = "text" }}

[[request_view]]
name = "risk"
transform = "{risk}"

[[request_view]]
name = "chaos"
transform = "{chaos}"
deadline_ms = 20

[[feature_service]]
name = "fraud_v1"
features = ["txn:amount_sum_1h", "user_stats:txn_count_7d", "risk:risk_score"]
"#,
            redis = redis.url(),
            card = guests::RUST_CARD_TXN,
            risk = guests::RUST_TXN_RISK,
            chaos = guests::REQUEST_MISBEHAVE,
        ),
    )
    .unwrap();
    Setup { _redis: redis, _dir: dir, config, now }
}

fn materialize(config: &Path) -> (i32, String) {
    let out = Command::new(wafer_bin())
        .args(["materialize", "--quiet", "--view", "user_stats", "--config"])
        .arg(config)
        .env("WAFER_CACHE_DIR", target_dir().join("test-artifact-cache"))
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// txn_risk's formula, computed independently.
fn risk(
    amount: f64,
    mean: Option<f64>,
    count: Option<i64>,
    last_country: Option<&str>,
    country: &str,
) -> (f64, bool, f64) {
    let mean = mean.filter(|m| *m != 0.0).unwrap_or(1.0);
    let vs = amount / mean;
    let new = last_country != Some(country);
    let score = 0.1 * vs.min(5.0) + if new { 0.4 } else { 0.0 } + if count.unwrap_or(0) < 3 { 0.1 } else { 0.0 };
    (vs, new, score.min(1.0))
}

fn f(body: &Json, row: usize, name: &str) -> Json {
    body["results"][row]["features"][name].clone()
}

#[test]
fn materialize_then_serve_stored_aggregated_and_request_features_exactly() {
    let s = setup();
    let (code, err) = materialize(&s.config);
    assert_eq!(code, 1, "a bad row makes the exit code 1: {err}");
    assert!(err.contains("4 rows loaded, 1 bad"), "{err}");
    assert!(err.contains("row 4: column `txn_count_7d`: expected int64, got text \"abc\""), "{err}");
    // Rerunning the same file resumes after what was loaded: nothing is loaded twice.
    let (_, err) = materialize(&s.config);
    assert!(err.contains("0 rows loaded, 0 bad, 5 skipped as already loaded"), "{err}");

    let w = Wafer::start(&s.config, free_port());
    let now = s.now;
    let push = json!({"events": [
        {"timestamp_ms": now - 10 * 60_000, "value": {"user_id": "u1", "amount": 10.5, "country": "PT", "merchant": "m"}},
        {"timestamp_ms": now - 5 * 60_000, "value": {"user_id": "u1", "amount": 20.25, "country": "ES", "merchant": "m"}},
        {"timestamp_ms": now - 2 * HOUR, "value": {"user_id": "u1", "amount": 5, "country": "NL", "merchant": "m"}},
    ]});
    let (code, body) = post(w.port, "/v1/views/txn/events", &push);
    assert_eq!((code, body["accepted"].as_u64()), (200, Some(3)), "{body}");

    let features = [
        "txn:amount_sum_1h",
        "txn:amount_count_lifetime",
        "txn:country",
        "user_stats:txn_count_7d",
        "user_stats:last_country",
        "risk:amount_vs_mean",
        "risk:is_new_country",
        "risk:risk_score",
    ];
    let req = json!({
        "entities": ["u1", "u2", "u_old", "nobody"],
        "features": features,
        "request_data": {"amount": [90, 10.0, 50, 5], "country": ["US", "FR", "XX", "DE"]},
        "as_of": now,
    });
    let (code, body) = post(w.port, "/v1/features", &req);
    assert_eq!(code, 200, "{body}");

    // u1: stream aggregates, the newest batch row (not the older IT row), the request transform.
    assert_eq!(f(&body, 0, "txn:amount_sum_1h"), json!({"value": 30.75, "status": "present", "event_time_ms": null}));
    assert_eq!(f(&body, 0, "txn:amount_count_lifetime")["value"], 3);
    assert_eq!(
        f(&body, 0, "txn:country"),
        json!({"value": "ES", "status": "present", "event_time_ms": now - 5 * 60_000})
    );
    assert_eq!(
        f(&body, 0, "user_stats:txn_count_7d"),
        json!({"value": 12, "status": "present", "event_time_ms": now - HOUR})
    );
    assert_eq!(f(&body, 0, "user_stats:last_country")["value"], "DE");
    let (vs, new, score) = risk(90.0, Some(45.0), Some(12), Some("DE"), "US");
    assert_eq!(f(&body, 0, "risk:amount_vs_mean")["value"].as_f64(), Some(vs));
    assert_eq!(f(&body, 0, "risk:is_new_country")["value"].as_bool(), Some(new));
    assert_eq!(f(&body, 0, "risk:risk_score"), json!({"value": score, "status": "present", "event_time_ms": now}));

    // u2: no stream data; stored stats present.
    assert_eq!(f(&body, 1, "txn:amount_count_lifetime")["status"], "missing");
    assert_eq!(f(&body, 1, "txn:country"), json!({"value": null, "status": "missing", "event_time_ms": null}));
    let (vs, new, score) = risk(10.0, Some(900.0), Some(2), Some("FR"), "FR");
    assert_eq!(f(&body, 1, "risk:amount_vs_mean")["value"].as_f64(), Some(vs));
    assert_eq!(f(&body, 1, "risk:is_new_country")["value"].as_bool(), Some(new));
    assert_eq!(f(&body, 1, "risk:risk_score")["value"].as_f64(), Some(score));

    // u_old: stats older than the 2d TTL are expired, and the transform sees them as null.
    assert_eq!(
        f(&body, 2, "user_stats:txn_count_7d"),
        json!({"value": null, "status": "expired", "event_time_ms": now - 3 * DAY})
    );
    let (_, _, score) = risk(50.0, None, None, None, "XX");
    assert_eq!(f(&body, 2, "risk:risk_score")["value"].as_f64(), Some(score));
    // nobody: missing everywhere.
    assert_eq!(f(&body, 3, "user_stats:last_country")["status"], "missing");
    let (vs, _, score) = risk(5.0, None, None, None, "DE");
    assert_eq!(f(&body, 3, "risk:amount_vs_mean")["value"].as_f64(), Some(vs));
    assert_eq!(f(&body, 3, "risk:risk_score")["value"].as_f64(), Some(score));

    // as_of before the batch row's event time: the value was not known yet.
    let (_, body) = post(
        w.port,
        "/v1/features",
        &json!({"entities": ["u1"], "features": ["user_stats:last_country"], "as_of": now - 2 * HOUR}),
    );
    assert_eq!(f(&body, 0, "user_stats:last_country")["status"], "missing", "{body}");
}

#[test]
fn feast_requests_get_feast_shaped_responses() {
    let s = setup();
    materialize(&s.config);
    let w = Wafer::start(&s.config, free_port());
    let now = s.now;
    post(
        w.port,
        "/v1/views/txn/events",
        &json!({"events": [{"timestamp_ms": now - 60_000, "value": {"user_id": "u1", "amount": 7.5, "country": "DE", "merchant": "m"}}]}),
    );
    let req = json!({
        "feature_service": "fraud_v1",
        "entities": {"user": ["u1", "nobody"], "amount": [90, 5], "country": ["US", "DE"]},
        "full_feature_names": true,
        "as_of": now,
    });
    let (code, body) = post(w.port, "/get-online-features", &req);
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["metadata"]["feature_names"],
        json!(["user", "txn__amount_sum_1h", "user_stats__txn_count_7d", "risk__risk_score"])
    );
    let r = &body["results"];
    assert_eq!(r[0]["values"], json!(["u1", "nobody"]));
    assert_eq!(r[1]["values"], json!([7.5, 0.0]));
    assert_eq!(r[1]["statuses"], json!(["PRESENT", "NOT_FOUND"]));
    assert_eq!(r[2]["values"], json!([12, null]));
    assert_eq!(r[2]["statuses"], json!(["PRESENT", "NOT_FOUND"]));
    assert_eq!(r[2]["event_timestamps"][0], json!(wafer_runtime::time::format_rfc3339(now - HOUR)));
    assert_eq!(r[2]["event_timestamps"][1], "1970-01-01T00:00:00Z");
    assert_eq!(r[3]["values"][0].as_f64(), Some(risk(90.0, Some(45.0), Some(12), Some("DE"), "US").2));

    // `features` with short names; integer join keys are keyed by their decimal text.
    let (code, body) = post(
        w.port,
        "/get-online-features",
        &json!({"features": ["user_stats:last_country"], "entities": {"user": [1, "u2"]}}),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["metadata"]["feature_names"], json!(["user", "last_country"]));
    assert_eq!(body["results"][1]["values"], json!([null, "FR"]));
    assert_eq!(body["results"][1]["statuses"], json!(["NOT_FOUND", "PRESENT"]));
    // Without the join key column: named, in Feast's error body (a JSON string of module/class/message).
    let (code, body) = post(
        w.port,
        "/get-online-features",
        &json!({"features": ["user_stats:last_country"], "entities": {"customer": ["u1"]}}),
    );
    let detail: Json = serde_json::from_str(body.as_str().unwrap_or("")).unwrap_or(Json::Null);
    assert_eq!((code, detail["class"].as_str()), (400, Some("FeastError")), "{body}");
    assert!(detail["message"].as_str().unwrap().contains("`user`"), "{body}");
}

#[test]
fn each_bad_request_gets_its_specific_error() {
    let s = setup();
    let w = Wafer::start(&s.config, free_port());
    let p = w.port;
    let base = |extra: Json| {
        let mut r = json!({"entities": ["u1"], "features": ["txn:country"]});
        r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        r
    };
    let cases: Vec<(Json, u16, &str)> = vec![
        (base(json!({"bogus": 1})), 400, "invalid_request"),
        (base(json!({"features": ["nope:x", "txn:country", "also:y"]})), 400, "unknown_views"),
        (base(json!({"features": ["txn:zzz", "user_stats:qq"]})), 400, "unknown_features"),
        (base(json!({"features": ["country"]})), 400, "invalid_request"),
        (json!({"entities": ["u1"], "feature_service": "nope"}), 400, "unknown_feature_service"),
        (
            json!({"entities": ["u1"], "feature_service": "fraud_v1", "features": ["txn:country"]}),
            400,
            "invalid_request",
        ),
        (base(json!({"entities": []})), 400, "invalid_request"),
        (base(json!({"entities": {"merchant": ["m"]}})), 400, "missing_entity"),
        (base(json!({"features": ["risk:risk_score"]})), 400, "missing_request_data"),
        (
            base(json!({"features": ["risk:risk_score"], "request_data": {"amount": ["ninety"], "country": ["US"]}})),
            400,
            "invalid_request_data",
        ),
        (
            base(json!({"features": ["risk:risk_score"], "request_data": {"amount": [1, 2], "country": ["US"]}})),
            400,
            "invalid_request_data",
        ),
        (base(json!({"features": ["chaos:y"], "request_data": {"mode": ["bogus"]}})), 400, "request_rejected"),
    ];
    for (req, status, code) in cases {
        let (got, body) = post(p, "/v1/features", &req);
        assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "request {req}: {body}");
    }
    let (_, body) = post(p, "/v1/features", &base(json!({"features": ["nope:x", "txn:country", "also:y"]})));
    assert_eq!(body["error"]["unknown"], json!(["nope", "also"]));
    let (_, body) = post(p, "/v1/features", &base(json!({"features": ["txn:zzz", "user_stats:qq"]})));
    assert_eq!(body["error"]["unknown"], json!(["txn:zzz", "user_stats:qq"]));
    let (_, body) =
        post(p, "/v1/features", &base(json!({"features": ["risk:risk_score"], "request_data": {"country": ["US"]}})));
    assert_eq!(body["error"]["missing"], json!(["amount"]));
    assert_eq!(body["error"]["view"], "risk");

    // Not JSON; unknown route; wrong method.
    let out = Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "--data-binary",
            "{",
        ])
        .arg(format!("http://127.0.0.1:{p}/v1/features"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.ends_with("\n400") && text.contains("invalid_json"), "{text}");
    assert_eq!(get(p, "/v2/nothing").0, 404);
    assert_eq!(get(p, "/v1/features").0, 405);
    // Each refusal is counted by code.
    let cpu_before = w.cpu_seconds();
    let (_, metrics) = get(p, "/metrics");
    let cpu_after = w.cpu_seconds();
    assert!(
        metrics.contains(r#"wafer_serve_errors_total{tenant="serving",code="missing_request_data"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"wafer_serve_errors_total{tenant="serving",code="unknown_views"} 2"#), "{metrics}");
    // The route that could not be found, and the one with the wrong method, by their labels.
    assert!(metrics.contains(r#"wafer_http_requests_total{route="unknown",status="404"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"wafer_http_requests_total{route="unknown",status="405"} 1"#), "{metrics}");
    // For dashboards: the build and the process (read from /proc when scraped).
    let build = format!("wafer_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    assert!(metrics.lines().any(|l| l == build), "missing `{build}` in:\n{metrics}");
    let value = |name: &str| -> f64 {
        let prefix = format!("{name} ");
        metrics.lines().find_map(|l| l.strip_prefix(&prefix)?.parse().ok()).unwrap_or_else(|| panic!("no {name}"))
    };
    assert!(value("process_resident_memory_bytes") > 1e6, "a running node holds more than a megabyte");
    assert!(value("process_open_fds") >= 3.0, "at least the listener and stdio");
    // The node's own CPU counter agrees with what the kernel reports for it from outside (a node
    // with cached artifacts may have used less than one 10 ms tick, so zero is a valid value).
    let cpu = value("process_cpu_seconds_total");
    assert!(
        (cpu_before..=cpu_after).contains(&cpu),
        "process_cpu_seconds_total {cpu} not in [{cpu_before}, {cpu_after}]"
    );
    let started = value("process_start_time_seconds");
    let now = crate::support::now_ms() as f64 / 1e3;
    assert!(started <= now + 1.0 && started > now - 3600.0, "started at {started}, now {now}");
}

#[test]
fn a_looping_or_trapping_request_transform_fails_alone_within_its_deadline() {
    let s = setup();
    materialize(&s.config);
    let w = Wafer::start(&s.config, free_port());
    let p = w.port;
    let chaos = |mode: &str| json!({"entities": ["u1"], "features": ["chaos:y"], "request_data": {"mode": [mode]}, "as_of": 1234});
    let good = json!({"entities": ["u1"], "features": ["risk:risk_score", "user_stats:txn_count_7d"], "request_data": {"amount": [90], "country": ["US"]}});

    // A loop is interrupted at the 20 ms deadline: 504 naming the view and transform.
    let started = Instant::now();
    let (code, body) = post(p, "/v1/features", &chaos("loop"));
    assert_eq!((code, body["error"]["code"].as_str()), (504, Some("transform_deadline")), "{body}");
    assert_eq!(
        (body["error"]["view"].as_str(), body["error"]["transform"].as_str()),
        (Some("chaos"), Some("request_misbehave"))
    );
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    let (code, body) = post(p, "/v1/features", &chaos("trap"));
    assert_eq!(
        (code, body["error"]["code"].as_str(), body["error"]["reason"].as_str()),
        (500, Some("transform_failed"), Some("trap")),
        "{body}"
    );
    let (code, body) = post(p, "/v1/features", &chaos("wrong_type"));
    assert_eq!((code, body["error"]["reason"].as_str()), (500, Some("schema_violation")), "{body}");
    // The same instance pool recovers, and the clock is the request time.
    let (code, body) = post(p, "/v1/features", &chaos("ok"));
    assert_eq!((code, f(&body, 0, "chaos:y")["value"].as_f64()), (200, Some(1234.0)), "{body}");

    // While another client keeps hitting the looping transform, every good request succeeds.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noisy = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                assert_eq!(post(p, "/v1/features", &chaos("loop")).0, 504);
                n += 1;
            }
            n
        })
    };
    for _ in 0..30 {
        let (code, body) = post(p, "/v1/features", &good);
        assert_eq!(code, 200, "{body}");
        assert_eq!(f(&body, 0, "user_stats:txn_count_7d")["value"], 12);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(noisy.join().unwrap() > 0);
}

#[test]
fn the_console_is_served_and_view_health_counts_each_outcome() {
    let s = setup();
    let w = Wafer::start(&s.config, free_port());
    let events = json!({"events": [
        {"timestamp_ms": s.now, "value": {"user_id": "h1", "amount": 5, "country": "DE", "merchant": "m"}},
        {"timestamp_ms": s.now, "value": {"user_id": "h1", "amount": 7, "country": "DE", "merchant": "m"}},
        {"timestamp_ms": s.now, "value": {"user_id": "h1", "amount": -5, "country": "DE", "merchant": "m"}},
    ]});
    let (code, body) = post(w.port, "/v1/views/txn/events", &events);
    assert_eq!(code, 200, "{body}");
    let (code, text) = get(w.port, "/v1/view-health");
    assert_eq!(code, 200, "{text}");
    let health: Json = serde_json::from_str(&text).unwrap();
    assert_eq!((health["interval_ms"].as_u64(), health["intervals_kept"].as_u64()), (Some(5000), Some(120)));
    let views = health["views"].as_array().unwrap();
    assert_eq!(views.len(), 1, "only the stream view has health: {health}");
    let txn = &views[0];
    assert_eq!(txn["name"], "txn");
    assert_eq!(txn["events"], json!({"ok": 2, "bad_input": 1}));
    assert_eq!((&txn["paused"], &txn["source_missing"]), (&json!(false), &json!(false)));
    assert_eq!(txn["stalled_partitions"], json!([]));
    assert!(txn["series"].is_array(), "{txn}");
    // The console: the page, its files, and 404 for anything else.
    let (code, page) = get(w.port, "/ui");
    assert_eq!(code, 200);
    assert!(page.contains("<script src=\"/ui/console.js\" defer></script>"), "{page}");
    let (code, js) = get(w.port, "/ui/console.js");
    assert_eq!(code, 200);
    assert!(js.contains("/v1/view-health"));
    let (code, text) = get(w.port, "/ui/wafer.toml");
    assert_eq!(code, 404);
    let err: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(err["error"]["code"], "not_found", "{err}");
    // GET /v1/views lists what the console's views page shows.
    let (_, text) = get(w.port, "/v1/views");
    let listed: Json = serde_json::from_str(&text).unwrap();
    let txn = listed["views"].as_array().unwrap().iter().find(|v| v["name"] == "txn").unwrap().clone();
    assert_eq!(
        txn["aggregations"],
        json!([{"column": "amount", "function": "count", "windows": ["1h", "lifetime"]}, {"column": "amount", "function": "sum", "windows": ["1h", "lifetime"]}])
    );
    assert_eq!(txn["version"].as_str().map(str::len), Some(64), "{txn}");
}

#[test]
fn openapi_document_covers_every_route() {
    let s = setup();
    let w = Wafer::start(&s.config, free_port());
    let (code, text) = get(w.port, "/openapi.json");
    assert_eq!(code, 200);
    let doc: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    for (method, path) in wafer_runtime::server::ROUTES {
        assert!(doc["paths"][path][method.to_lowercase()].is_object(), "{method} {path} is not documented");
    }
    let paths: std::collections::BTreeSet<&str> = wafer_runtime::server::ROUTES.iter().map(|(_, p)| *p).collect();
    assert_eq!(doc["paths"].as_object().unwrap().len(), paths.len(), "every documented path is a route");
    // The copy in the repository is the one served.
    let in_repo: Json = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../runtime/openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(doc, in_repo);
}
