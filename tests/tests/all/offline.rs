//! The offline path: training data is point-in-time correct and equal, bit for bit, to what
//! serving returned at the same time (Kafka → Redis online vs `wafer training-data` offline);
//! spine edge cases; backfills are resumable after SIGKILL and hand over to live consumption
//! without double counting.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, RecordBatchReader, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value as Json, json};
use wafer_runtime::Value;
use wafer_runtime::manifest::Manifest;
use wafer_runtime::pipeline::Metrics;
use wafer_runtime::serving::Entities;
use wafer_runtime::store::OnlineStore;
use wafer_runtime::store::redis::RedisStore;
use wafer_runtime::tenant::{TenantApp, build_tenant};

use crate::support::{RedisServer, Rng, free_port, guests, loader, now_ms, target_dir, wafer_bin};

const FEATURES: &[&str] = &[
    "country",
    "merchant",
    "amount_count_1m",
    "amount_count_1h",
    "amount_count_24h",
    "amount_count_lifetime",
    "amount_sum_1h",
    "amount_sum_lifetime",
    "amount_mean_1h",
    "amount_min_1h",
    "amount_max_24h",
    "merchant_last_3_1h",
    "merchant_approx_count_distinct_lifetime",
    // Issue 18's functions and offset windows: the same bits offline as online too.
    "amount_var_samp_1h",
    "amount_stddev_pop_lifetime",
    "amount_approx_percentile_p90_24h",
    "amount_decayed_sum_1h_1h",
    "amount_decayed_count_10m_24h_offset_1h",
    "amount_sum_24h_offset_1h",
    "merchant_count_distinct_4_1h",
    "merchant_count_distinct_4_lifetime",
    "merchant_first_2_lifetime",
];

fn brokers() -> String {
    std::env::var("WAFER_TEST_KAFKA_BROKERS")
        .expect("WAFER_TEST_KAFKA_BROKERS is not set: run the suite with scripts/test.sh (it starts tansu)")
}

/// The test view: card_txn with latest values, numeric windows 1m..lifetime and an offset
/// window, last_n, first_n, HLL, variances, a percentile and decayed functions.
fn manifest(dir: &Path, redis: Option<&str>, topic: Option<&str>, group: &str) -> PathBuf {
    let mut text = String::new();
    if let Some(r) = redis {
        text += &format!("[redis]\nurl = \"{r}\"\n");
    }
    if topic.is_some() {
        text += &format!("[kafka]\nbrokers = \"{}\"\ngroup_id = \"{group}\"\n", brokers());
    }
    text += &format!(
        "[server]\ntenant = \"t1\"\n\n[[stream_view]]\nname = \"txn\"\nentity = \"user\"\ntransform = \"{}\"\n{}features = [\"country\", \"merchant\"]\nttl = \"7d\"\nbatch_size = 64\n\n\
         [[stream_view.aggregations]]\ncolumn = \"amount\"\nfunctions = [\"count\", \"sum\", \"mean\", \"min\", \"max\", \
         \"var_samp\", \"stddev_pop\", \"approx_percentile(0.9)\"]\nwindows = [\"1m\", \"1h\", \"24h\", \"lifetime\"]\n\n\
         [[stream_view.aggregations]]\ncolumn = \"amount\"\nfunctions = [\"decayed_sum(1h)\", \"decayed_count(10m)\"]\n\
         windows = [\"1h\", \"24h_offset_1h\"]\n\n\
         [[stream_view.aggregations]]\ncolumn = \"amount\"\nfunctions = [\"sum\"]\nwindows = [\"24h_offset_1h\"]\n\n\
         [[stream_view.aggregations]]\ncolumn = \"merchant\"\nfunctions = [\"last_n(3)\", \"first_n(2)\", \"approx_count_distinct\", \"count_distinct(4)\"]\nwindows = [\"1h\", \"lifetime\"]\n\n\
         [[request_view]]\nname = \"score\"\ntransform = \"{}\"\n",
        guests::RUST_CARD_TXN,
        topic.map_or(String::new(), |t| format!("topic = \"{t}\"\n")),
        guests::TXN_SCORE
    );
    let p = dir.join("wafer.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// The manifest's views, built in-process exactly as `wafer serve` builds them, over `store`
/// (to read the online store through the serving path).
struct Node {
    tenant: TenantApp,
    store: Arc<dyn OnlineStore>,
}

fn load_app(config: &Path, store: Arc<dyn OnlineStore>) -> Node {
    let load = |path: &Path, limits| loader().load_file(path, limits);
    let tenant =
        build_tenant(&Manifest::load(config).unwrap().tenant_spec(), &load, Arc::new(Metrics::default()), 0).unwrap();
    Node { tenant, store }
}

/// Serve `features` (`view:feature`) for `users` at `t` through the catalog, as `/v1/features` does.
async fn serve_at(
    app: &Node,
    users: &[String],
    features: &[String],
    request_data: &HashMap<String, Vec<Json>>,
    t: i64,
) -> Vec<Vec<Value>> {
    let plan = app.tenant.catalog.plan(features, None).unwrap();
    let table =
        app.tenant.catalog.get(app.store.as_ref(), &plan, &Entities::All(users), request_data, t).await.unwrap();
    table.rows.into_iter().map(|r| r.into_iter().map(|s| s.value).collect()).collect()
}

#[derive(Clone, Debug)]
struct Ev {
    user: String,
    ts: i64,
    cents: i64,
    country: &'static str,
    merchant: String,
}

impl Ev {
    fn payload(&self) -> String {
        format!(
            r#"{{"user_id":"{}","amount":{}.{:02},"country":"{}","merchant":"{}"}}"#,
            self.user,
            self.cents / 100,
            self.cents % 100,
            self.country,
            self.merchant
        )
    }
    fn jsonl(&self) -> String {
        format!(r#"{{"timestamp_ms":{},"key":"{}","value":{}}}"#, self.ts, self.user, self.payload())
    }
}

/// `n` events for `users` users over `span` ms starting at `t0`: distinct, irregular times.
fn gen_events(seed: u64, n: usize, users: usize, t0: i64, span: i64) -> Vec<Ev> {
    let mut rng = Rng(seed);
    let countries = ["DE", "FR", "US", "JP"];
    let mut times: Vec<i64> = (0..n).map(|_| t0 + rng.below(span as u64) as i64).collect();
    times.sort_unstable();
    times.dedup();
    times
        .into_iter()
        .map(|ts| Ev {
            user: format!("u{}", rng.below(users as u64)),
            ts,
            cents: rng.below(100_000) as i64,
            country: countries[rng.below(4) as usize],
            merchant: format!("m{}", rng.below(9)),
        })
        .collect()
}

/// `events` as the JSONL file `log.jsonl` in `dir`.
fn write_log(dir: &Path, events: &[Ev]) -> PathBuf {
    let path = dir.join("log.jsonl");
    write_jsonl(&path, events);
    path
}

fn write_jsonl(path: &Path, events: &[Ev]) {
    let text: String = events.iter().map(|e| e.jsonl() + "\n").collect();
    std::fs::write(path, text).unwrap();
}

const REQUEST_FEATURES: &[&str] = &["amount_vs_mean", "count_24h", "new_country"];

/// Request params of the `score` view for a spine point (deterministic per user and time).
fn req_amount(user: &str, t: i64) -> f64 {
    (t.rem_euclid(100_000) + user.len() as i64) as f64 / 100.0
}
fn req_country(user: &str, t: i64) -> &'static str {
    ["DE", "FR", "US", "JP"][((t / 7).rem_euclid(4) as usize + user.len()) % 4]
}

/// A spine with columns `user` (nullable), `timestamp_ms` and an extra `label` column.
fn write_spine(path: &Path, rows: &[(Option<&str>, i64)]) {
    write_spine_with_params(path, rows, false)
}

/// ... plus the `score` view's request params `amount` and `country` if `params`.
fn write_spine_with_params(path: &Path, rows: &[(Option<&str>, i64)], params: bool) {
    let mut fields = vec![
        Field::new("user", DataType::Utf8, true),
        Field::new("timestamp_ms", DataType::Int64, false),
        Field::new("label", DataType::Int64, false),
    ];
    let users: ArrayRef = Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>()));
    let ts: ArrayRef = Arc::new(Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>()));
    let label: ArrayRef = Arc::new(Int64Array::from((0..rows.len() as i64).collect::<Vec<_>>()));
    let mut cols = vec![users, ts, label];
    if params {
        fields.push(Field::new("amount", DataType::Float64, false));
        fields.push(Field::new("country", DataType::Utf8, false));
        cols.push(Arc::new(arrow_array::Float64Array::from(
            rows.iter().map(|r| req_amount(r.0.unwrap_or(""), r.1)).collect::<Vec<_>>(),
        )));
        cols.push(Arc::new(StringArray::from(
            rows.iter().map(|r| req_country(r.0.unwrap_or(""), r.1)).collect::<Vec<_>>(),
        )));
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn wafer(args: &[&str]) -> Output {
    Command::new(wafer_bin())
        .args(args)
        .env("WAFER_CACHE_DIR", target_dir().join("test-artifact-cache"))
        .env("WAFER_LOG", "warn")
        .output()
        .unwrap()
}

fn training_data(config: &Path, events: &Path, spine: &Path, out: &Path) {
    training_data_with(config, events, spine, out, &all_features(), &[]);
}

/// All of [`FEATURES`] of the `txn` view.
fn all_features() -> Vec<String> {
    FEATURES.iter().map(|f| format!("txn:{f}")).collect()
}

/// Run `wafer training-data` (it must succeed); returns its summary line (`wrote …`).
fn training_data_with(
    config: &Path,
    events: &Path,
    spine: &Path,
    out: &Path,
    features: &[String],
    extra: &[&str],
) -> String {
    let o = training_data_output(config, events, spine, out, &features.join(","), extra);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "training-data failed: {err}");
    err.lines().find(|l| l.starts_with("wrote ")).unwrap_or_default().to_string()
}

/// Run `wafer training-data` with `features` (comma-separated) and `extra` arguments.
fn training_data_output(
    config: &Path,
    events: &Path,
    spine: &Path,
    out: &Path,
    features: &str,
    extra: &[&str],
) -> Output {
    let mut args = vec![
        "training-data",
        "--config",
        config.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
        "--spine",
        spine.to_str().unwrap(),
        "--features",
        features,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    wafer(&args)
}

fn read_parquet(path: &Path) -> RecordBatch {
    let r = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap().build().unwrap();
    let schema = r.schema();
    let batches: Vec<RecordBatch> = r.collect::<Result<_, _>>().unwrap();
    arrow_array::RecordBatch::try_new(
        schema.clone(),
        (0..schema.fields().len()).map(|c| arrow_select_concat(&batches, c)).collect(),
    )
    .unwrap()
}

fn arrow_select_concat(batches: &[RecordBatch], c: usize) -> ArrayRef {
    assert_eq!(batches.len(), 1, "test outputs fit one batch");
    batches[0].column(c).clone()
}

/// A cell of the output as a feature value (the inverse of the Parquet writer's typing).
fn cell(a: &ArrayRef, i: usize) -> Value {
    if a.is_null(i) {
        return Value::Null;
    }
    match a.data_type() {
        DataType::Int64 => Value::Int64(a.as_primitive::<Int64Type>().value(i)),
        DataType::Float64 => Value::Float64(a.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 => Value::Text(a.as_string::<i32>().value(i).to_string()),
        DataType::Boolean => Value::Boolean(a.as_boolean().value(i)),
        DataType::List(f) => {
            let l = a.as_list::<i32>().value(i);
            match f.data_type() {
                DataType::Int64 => Value::Int64s(l.as_primitive::<Int64Type>().values().to_vec()),
                DataType::Utf8 => Value::Texts(l.as_string::<i32>().iter().map(|s| s.unwrap().to_string()).collect()),
                other => panic!("unexpected list type {other}"),
            }
        }
        other => panic!("unexpected type {other}"),
    }
}

/// Bit-for-bit equality (floats by their bits).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float64(x), Value::Float64(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------------------------
// Skew: Kafka → Redis (online, read as_of t) vs training-data (offline), bit for bit.

#[tokio::test(flavor = "multi_thread")]
async fn online_kafka_redis_equals_offline_training_data_bit_for_bit() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let tag = free_port();
    let topic = format!("skew-{tag}");
    let config = manifest(dir.path(), Some(&redis.url()), Some(&topic), &format!("g-skew-{tag}"));
    // Three hours of history ending 1 h ago; 6 users, ~500 events.
    let t0 = now_ms() - 4 * 3_600_000;
    let events = gen_events(7, 500, 6, t0, 3 * 3_600_000);
    let users: Vec<String> = (0..6).map(|u| format!("u{u}")).chain(["nobody".to_string()]).collect();
    // Stage times: irregular times across the range, plus "just before an event" times (leak
    // probes: t = e − 1 must not see the event at e), plus one after all data.
    let mut rng = Rng(11);
    let mut stages: Vec<i64> = (0..10).map(|_| t0 + rng.below(3 * 3_600_000) as i64).collect();
    for k in [0, 1, 57, 200, 201, 350] {
        stages.push(events[k].ts - 1);
        stages.push(events[k].ts);
    }
    stages.push(events.last().unwrap().ts + 30 * 60_000);
    stages.push(t0 - 1);
    stages.sort_unstable();
    stages.dedup();

    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", brokers()).set("linger.ms", "1").create().unwrap();
    let mut wafer = Command::new(wafer_bin())
        .args(["serve", "--config", config.to_str().unwrap(), "--listen", &format!("127.0.0.1:{}", free_port())])
        .env("WAFER_CACHE_DIR", target_dir().join("test-artifact-cache"))
        .env("WAFER_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let app = load_app(&config, Arc::new(RedisStore::connect(&redis.url()).await.unwrap()));
    let view = app.tenant.views["txn"].clone();
    // Stored features of the stream view, plus request features computed from request params
    // (amount, country) and the stored features they read.
    let feats: Vec<String> = FEATURES
        .iter()
        .map(|f| format!("txn:{f}"))
        .chain(REQUEST_FEATURES.iter().map(|f| format!("score:{f}")))
        .collect();
    let mut produced: BTreeMap<i32, i64> = BTreeMap::new();
    let mut online: Vec<(String, i64, Vec<Value>)> = Vec::new();
    let mut next = 0;
    for &t in &stages {
        // Every event with e ≤ t, none later; shuffled within the stage (out of order).
        let end = events.partition_point(|e| e.ts <= t);
        let mut stage: Vec<&Ev> = events[next..end].iter().collect();
        next = end;
        for i in (1..stage.len()).rev() {
            stage.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let payloads: Vec<String> = stage.iter().map(|e| e.payload()).collect();
        let futs: Vec<_> = stage
            .iter()
            .zip(&payloads)
            .map(|(e, p)| {
                let rec = FutureRecord::to(&topic)
                    .key(&e.user)
                    .payload(p)
                    .timestamp(e.ts)
                    .headers(OwnedHeaders::new().insert(Header { key: "channel", value: Some("web") }));
                producer.send(rec, Duration::from_secs(10))
            })
            .collect();
        for f in futs {
            let d = f.await.expect("delivered");
            let e = produced.entry(d.partition).or_insert(0);
            *e = (*e).max(d.offset + 1);
        }
        // Wait until the consumer has applied everything produced so far.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let mut done = true;
            for (p, want) in &produced {
                if store.watermark(&view.id, &topic, *p).await.unwrap().unwrap_or(0) < *want {
                    done = false;
                }
            }
            if done {
                break;
            }
            assert!(Instant::now() < deadline, "the consumer did not apply stage t={t}");
            assert!(wafer.try_wait().unwrap().is_none(), "wafer serve exited");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let request_data = HashMap::from([
            ("amount".to_string(), users.iter().map(|u| json!(req_amount(u, t))).collect()),
            ("country".to_string(), users.iter().map(|u| json!(req_country(u, t))).collect()),
        ]);
        for (u, r) in users.iter().zip(serve_at(&app, &users, &feats, &request_data, t).await) {
            online.push((u.clone(), t, r));
        }
    }
    let _ = wafer.kill();
    let _ = wafer.wait();
    assert_eq!(next, events.len());

    // Offline: the same log (shuffled as a whole, so the file is out of order too) and spine.
    let mut log = events.clone();
    for i in (1..log.len()).rev() {
        log.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let log_path = dir.path().join("log.jsonl");
    let text: String = log
        .iter()
        .map(|e| e.jsonl().replace(r#","value""#, r#","headers":{"channel":"web"},"value""#) + "\n")
        .collect();
    std::fs::write(&log_path, text).unwrap();
    let spine_path = dir.path().join("spine.parquet");
    let points: Vec<(Option<&str>, i64)> = online.iter().map(|(u, t, _)| (Some(u.as_str()), *t)).collect();
    write_spine_with_params(&spine_path, &points, true);
    let out = dir.path().join("train.parquet");
    training_data_with(&config, &log_path, &spine_path, &out, &feats, &["--full-names"]);
    let table = read_parquet(&out);
    assert_eq!(table.num_rows(), online.len());
    let mut compared = 0;
    let mut nonzero = 0;
    for (i, (u, t, want)) in online.iter().enumerate() {
        for (k, f) in feats.iter().enumerate() {
            let col = f.replace(':', "__");
            let got = cell(table.column_by_name(&col).unwrap(), i);
            assert!(same(&got, &want[k]), "{u} at {t}: `{f}` offline {got:?} != online {:?}", want[k]);
            compared += 1;
        }
        if want[3] != Value::Int64(0) {
            nonzero += 1;
        }
    }
    assert!(
        online.iter().any(|r| r.2[FEATURES.len() + 2] == Value::Boolean(false)),
        "some request rows see the same country"
    );
    assert!(compared > 1000 && nonzero > 100, "too little was compared ({compared} values, {nonzero} rows with data)");
    // The leak probes really straddle an event: at e − 1 the lifetime count is one less than at e.
    for k in [0usize, 57, 200, 350] {
        let e = &events[k];
        let count_at =
            |t: i64| online.iter().find(|(u, tt, _)| *u == e.user && *tt == t).map(|r| r.2[5].clone()).unwrap();
        let (Value::Int64(before), Value::Int64(at)) = (count_at(e.ts - 1), count_at(e.ts)) else { panic!("counts") };
        assert_eq!(at, before + 1, "event {k} at {} must be visible at t = e and not at t = e − 1", e.ts);
    }
}

// ---------------------------------------------------------------------------------------------
// Point in time and spine edge cases, against an independent ground truth.

fn covers(window_ms: Option<i64>, g: i64, t: i64, e: i64) -> bool {
    e <= t && window_ms.is_none_or(|w| e >= t.div_euclid(g) * g + g - w)
}

#[test]
fn training_data_is_point_in_time_exact_with_spine_edge_cases() {
    let dir = tempfile::tempdir().unwrap();
    let config = manifest(dir.path(), None, None, "");
    let t0 = 1_700_000_000_000;
    let events = gen_events(3, 300, 4, t0, 2 * 3_600_000);
    // The file is out of event-time order.
    let mut log = events.clone();
    log.reverse();
    let jsonl = write_log(dir.path(), &log);
    let first = events[0].ts;
    let last = events.last().unwrap().ts;
    let probe = &events[100];
    let mut spine: Vec<(Option<&str>, i64)> = vec![
        (Some(probe.user.as_str()), probe.ts - 1), // just before an event: must not see it
        (Some(probe.user.as_str()), probe.ts),     // at it: must
        (Some("nobody"), t0 + 3_600_000),          // entity with no events
        (Some("u1"), first - 1),                   // before any data
        (Some("u2"), last + 10 * 86_400_000),      // long after all data (past the 7d TTL)
        (Some("u2"), last + 60_000),               // after all data, inside the TTL
        (None, t0 + 3_600_000),                    // null entity
    ];
    let mut rng = Rng(5);
    for _ in 0..40 {
        let u = ["u0", "u1", "u2", "u3"][rng.below(4) as usize];
        spine.push((Some(u), t0 + rng.below(2 * 3_600_000 + 600_000) as i64));
    }
    spine.push(spine[8]); // duplicate rows
    spine.push(spine[8]);
    let spine_path = dir.path().join("spine.parquet");
    write_spine(&spine_path, &spine);
    let out = dir.path().join("train.parquet");
    training_data(&config, &jsonl, &spine_path, &out);
    let table = read_parquet(&out);
    assert_eq!(table.num_rows(), spine.len());
    // Spine columns come through unchanged, in order; features are typed.
    assert_eq!(
        table.column_by_name("label").unwrap().as_primitive::<Int64Type>().values().to_vec(),
        (0..spine.len() as i64).collect::<Vec<_>>()
    );
    let schema = table.schema();
    let ty = |f: &str| schema.field_with_name(f).unwrap().data_type().clone();
    assert_eq!(ty("amount_count_1h"), DataType::Int64);
    assert_eq!(ty("amount_sum_1h"), DataType::Float64);
    assert_eq!(ty("country"), DataType::Utf8);
    assert!(matches!(ty("merchant_last_3_1h"), DataType::List(f) if f.data_type() == &DataType::Utf8));

    let col = |f: &str, i: usize| cell(table.column_by_name(f).unwrap(), i);
    for (i, (u, t)) in spine.iter().enumerate() {
        let Some(u) = u else {
            for f in FEATURES {
                assert_eq!(col(f, i), Value::Null, "null entity: `{f}`");
            }
            continue;
        };
        let mine: Vec<&Ev> = events.iter().filter(|e| e.user == *u).collect();
        let win =
            |w: Option<i64>, g: i64| mine.iter().filter(|e| covers(w, g, *t, e.ts)).copied().collect::<Vec<&Ev>>();
        let h1 = win(Some(3_600_000), 60_000);
        let m1 = win(Some(60_000), 60_000);
        let d1 = win(Some(86_400_000), 3_600_000);
        let all = win(None, 1);
        let ctx = format!("row {i} ({u}, {t})");
        assert_eq!(col("amount_count_1m", i), Value::Int64(m1.len() as i64), "{ctx}");
        assert_eq!(col("amount_count_1h", i), Value::Int64(h1.len() as i64), "{ctx}");
        assert_eq!(col("amount_count_24h", i), Value::Int64(d1.len() as i64), "{ctx}");
        assert_eq!(col("amount_count_lifetime", i), Value::Int64(all.len() as i64), "{ctx}");
        let cents = |v: &[&Ev]| v.iter().map(|e| e.cents).sum::<i64>();
        assert_eq!(col("amount_sum_1h", i), Value::Float64((cents(&h1) * 10_000) as f64 / 1e6), "{ctx}");
        assert_eq!(col("amount_sum_lifetime", i), Value::Float64((cents(&all) * 10_000) as f64 / 1e6), "{ctx}");
        let expect_min = h1
            .iter()
            .map(|e| e.cents)
            .min()
            .map_or(Value::Null, |c| Value::Float64(format!("{}.{:02}", c / 100, c % 100).parse().unwrap()));
        assert_eq!(col("amount_min_1h", i), expect_min, "{ctx}");
        let expect_mean = if h1.is_empty() {
            Value::Null
        } else {
            Value::Float64((cents(&h1) * 10_000) as f64 / 1e6 / h1.len() as f64)
        };
        assert_eq!(col("amount_mean_1h", i), expect_mean, "{ctx}");
        // Latest value as of t, expired after the 7-day TTL.
        let latest = all.iter().max_by_key(|e| e.ts).filter(|e| t - e.ts <= 7 * 86_400_000);
        assert_eq!(col("country", i), latest.map_or(Value::Null, |e| Value::Text(e.country.into())), "{ctx}");
        // last 3 distinct merchants in the hour window, most recent first.
        let mut recent: Vec<(i64, String)> = Vec::new();
        for e in &h1 {
            match recent.iter_mut().find(|(_, m)| *m == e.merchant) {
                Some(r) => r.0 = r.0.max(e.ts),
                None => recent.push((e.ts, e.merchant.clone())),
            }
        }
        recent.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
        assert_eq!(
            col("merchant_last_3_1h", i),
            Value::Texts(recent.into_iter().take(3).map(|r| r.1).collect()),
            "{ctx}"
        );
    }
    // The leak probe: the event at probe.ts is invisible one millisecond before it.
    let (Value::Int64(before), Value::Int64(at)) = (col("amount_count_lifetime", 0), col("amount_count_lifetime", 1))
    else {
        panic!()
    };
    assert_eq!(at, before + 1);
    assert_eq!(col("amount_count_lifetime", 2), Value::Int64(0));
    assert_eq!(col("merchant_last_3_1h", 2), Value::Texts(vec![]));
    assert_eq!(col("country", 4), Value::Null, "expired after the TTL");
    assert!(matches!(col("country", 5), Value::Text(_)));

    // Parquet event files give the same result as JSONL.
    let pq = dir.path().join("log.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("timestamp_ms", DataType::Int64, false),
        Field::new("key", DataType::Utf8, true),
        Field::new("value", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(log.iter().map(|e| e.ts).collect::<Vec<_>>())),
            Arc::new(StringArray::from(log.iter().map(|e| Some(e.user.clone())).collect::<Vec<_>>())),
            Arc::new(StringArray::from(log.iter().map(|e| e.payload()).collect::<Vec<_>>())),
        ],
    )
    .unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(&pq).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let out2 = dir.path().join("train2.parquet");
    training_data(&config, &pq, &spine_path, &out2);
    assert_eq!(read_parquet(&out2), table);
}

#[test]
fn training_data_names_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let config = manifest(dir.path(), None, None, "");
    let jsonl = write_log(dir.path(), &gen_events(1, 10, 2, 1_700_000_000_000, 60_000));
    let spine = dir.path().join("spine.parquet");
    write_spine(&spine, &[(Some("u0"), 1_700_000_000_000)]);
    let run = |features: &str, extra: &[&str]| {
        let o = training_data_output(&config, &jsonl, &spine, Path::new("/dev/null"), features, extra);
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (code, err) = run("txn:amount_sum_2h", &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown feature(s): txn:amount_sum_2h"), "{err}");
    let (code, err) = run("nope:x", &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown view(s): nope"), "{err}");
    let (_, err) = run("amount_sum_1h", &[]);
    assert!(err.contains("expected `view:feature`"), "{err}");
    let (_, err) = run("txn:amount_sum_1h", &["--time-column", "ts"]);
    assert!(err.contains("spine has no column `ts`"), "{err}");
}

/// Batch views in training data: a batch feature at `t` is the latest row of its source file with
/// event time `≤ t`, null before the first row and past the view's TTL (as served online); a
/// request view reading it sees those values. Checked against an independent lookup.
#[test]
fn batch_view_features_are_point_in_time_from_their_source_rows() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(manifest(dir.path(), None, None, "")).unwrap();
    let t0 = 1_700_000_000_000i64;
    let hour = 3_600_000i64;
    // (user, event time, txn_count_7d, amount_mean_7d, last_country): several rows per user,
    // out of time order in the file; `nobody_in_spine` is read and dropped.
    let stats: Vec<(&str, i64, i64, f64, &str)> = vec![
        ("u0", t0 + 3 * hour, 7, 40.5, "FR"),
        ("u0", t0, 2, 10.25, "DE"),
        ("u0", t0 + hour, 4, 20.0, "US"),
        ("u1", t0 + 30 * 60_000, 1, 99.0, "JP"),
        ("u2", t0 + 2 * hour, 12, 5.5, "DE"),
        ("u2", t0 + 6 * hour, 13, 6.5, "FR"),
        ("nobody_in_spine", t0, 1, 1.0, "DE"),
    ];
    let mut csv = String::from("user_id,ts,txn_count_7d,amount_mean_7d,last_country\n");
    for (u, t, c, m, k) in &stats {
        csv += &format!("{u},{t},{c},{m},{k}\n");
    }
    csv += "u3,not-a-time,1,1.0,DE\n"; // a bad row: counted, skipped
    let csv_path = dir.path().join("user_stats.csv");
    std::fs::write(&csv_path, csv).unwrap();
    let config = dir.path().join("with_batch.toml");
    std::fs::write(
        &config,
        format!(
            "{base}\n[[batch_view]]\nname = \"user_stats\"\nentity = \"user\"\nsource = \"{}\"\nentity_column = \"user_id\"\n\
             timestamp_column = \"ts\"\nttl = \"2h\"\n\
             features = {{ txn_count_7d = \"int64\", amount_mean_7d = \"float64\", last_country = \"text\" }}\n\n\
             [[request_view]]\nname = \"risk\"\ntransform = \"{}\"\n",
            csv_path.display(),
            guests::RUST_TXN_RISK
        ),
    )
    .unwrap();
    let jsonl = write_log(dir.path(), &gen_events(5, 100, 3, t0, 8 * hour));
    let mut spine: Vec<(Option<&str>, i64)> = vec![
        (Some("u0"), t0 - 1),            // before any row
        (Some("u0"), t0),                // at the first row
        (Some("u0"), t0 + hour - 1),     // just before the second
        (Some("u0"), t0 + 2 * hour),     // the second, 1h old
        (Some("u0"), t0 + 3 * hour + 1), // the third
        (Some("u0"), t0 + 5 * hour),     // the third at exactly the TTL
        (Some("u0"), t0 + 5 * hour + 1), // expired
        (Some("u1"), t0 + hour),         // one row
        (Some("u2"), t0 + 7 * hour),     // the newer of two
        (Some("u3"), t0 + hour),         // only a bad row
        (Some("u9"), t0 + hour),         // no rows
    ];
    let mut rng = Rng(23);
    for _ in 0..40 {
        spine.push((Some(["u0", "u1", "u2"][rng.below(3) as usize]), t0 + rng.below(9 * hour as u64) as i64));
    }
    let spine_path = dir.path().join("spine.parquet");
    write_spine_with_params(&spine_path, &spine, true);
    let out = dir.path().join("out.parquet");
    let feats: Vec<String> = [
        "user_stats:txn_count_7d",
        "user_stats:amount_mean_7d",
        "user_stats:last_country",
        "risk:risk_score",
        "risk:is_new_country",
        "txn:amount_count_1h",
    ]
    .iter()
    .map(|f| f.to_string())
    .collect();
    training_data_with(&config, &jsonl, &spine_path, &out, &feats, &["--full-names"]);
    let table = read_parquet(&out);
    let col = |f: &str, i: usize| cell(table.column_by_name(f).unwrap(), i);
    let mut seen_values = 0;
    for (i, (u, t)) in spine.iter().enumerate() {
        let u = u.unwrap();
        let latest = stats.iter().filter(|r| r.0 == u && r.1 <= *t).max_by_key(|r| r.1).filter(|r| t - r.1 <= 2 * hour);
        let ctx = format!("spine row {i} ({u}, t0 + {} ms)", t - t0);
        let want = |v: Option<Value>| v.unwrap_or(Value::Null);
        assert_eq!(col("user_stats__txn_count_7d", i), want(latest.map(|r| Value::Int64(r.2))), "{ctx}");
        assert_eq!(col("user_stats__amount_mean_7d", i), want(latest.map(|r| Value::Float64(r.3))), "{ctx}");
        assert_eq!(col("user_stats__last_country", i), want(latest.map(|r| Value::Text(r.4.into()))), "{ctx}");
        // txn_risk's formula over those values and the row's params.
        let (amount, country) = (req_amount(u, *t), req_country(u, *t));
        let mean = latest.map(|r| r.3).filter(|m| *m != 0.0).unwrap_or(1.0);
        let count = latest.map_or(0.0, |r| r.2 as f64);
        let new_country = latest.map(|r| r.4) != Some(country);
        let risk =
            0.1 * (amount / mean).min(5.0) + if new_country { 0.4 } else { 0.0 } + if count < 3.0 { 0.1 } else { 0.0 };
        assert!(same(&col("risk__risk_score", i), &Value::Float64(risk.min(1.0))), "{ctx}");
        assert_eq!(col("risk__is_new_country", i), Value::Boolean(new_country), "{ctx}");
        seen_values += usize::from(latest.is_some());
    }
    assert!(seen_values > 20 && seen_values < spine.len() - 5, "values and nulls both checked: {seen_values}");
    assert!(matches!(col("txn__amount_count_1h", 8), Value::Int64(_)), "stream features alongside");
}

/// `--events DIR` over Hive partitions (`date=…/`) and `--events 'GLOB'` give the output of the
/// same events in one file; partitions that start after the last spine time are not read.
#[test]
fn hive_partitions_and_globs_equal_one_file_and_later_days_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let config = manifest(dir.path(), None, None, "");
    let day = 86_400_000i64;
    let t0 = 1_700_006_400_000; // 2023-11-15T00:00:00Z
    let events = gen_events(9, 400, 5, t0, 4 * day);
    let one = dir.path().join("all.jsonl");
    write_jsonl(&one, &events);
    let parts = dir.path().join("events");
    let mut days = BTreeMap::new();
    for e in &events {
        let date = wafer_runtime::time::format_rfc3339(e.ts.div_euclid(day) * day)[..10].to_string();
        days.entry(date).or_insert_with(Vec::new).push(e.clone());
    }
    assert_eq!(days.len(), 4);
    for (date, evs) in &days {
        let d = parts.join(format!("date={date}"));
        std::fs::create_dir_all(&d).unwrap();
        write_jsonl(&d.join("part-0.jsonl"), evs);
        std::fs::write(d.join("_SUCCESS"), "").unwrap();
    }
    // The spine ends inside the third day: the fourth day's partition cannot matter.
    let mut rng = Rng(3);
    let mut spine: Vec<(Option<&str>, i64)> = (0..60)
        .map(|_| (Some(["u0", "u1", "u2", "u3", "u4"][rng.below(5) as usize]), t0 + rng.below(2 * day as u64) as i64))
        .collect();
    spine.push((Some("u1"), t0 + 2 * day + 60_000)); // the last spine time, in the third day
    let spine_path = dir.path().join("spine.parquet");
    write_spine(&spine_path, &spine);
    let run = |events: &Path, out: &Path| {
        let summary = training_data_with(&config, events, &spine_path, out, &all_features(), &[]);
        (read_parquet(out), summary)
    };
    let (whole, _) = run(&one, &dir.path().join("one.parquet"));
    let (hive, said) = run(&parts, &dir.path().join("hive.parquet"));
    assert_eq!(hive, whole, "Hive-partitioned input equals the same events in one file");
    assert!(said.contains("in 3 files (1 partitions after the last spine time skipped"), "{said}");
    let (globbed, said) = run(&parts.join("date=*").join("*.jsonl"), &dir.path().join("glob.parquet"));
    assert_eq!(globbed, whole);
    assert!(said.contains("in 3 files"), "{said}");
    // The output is not vacuous: counts differ across rows.
    let counts = whole.column_by_name("amount_count_lifetime").unwrap().as_primitive::<Int64Type>();
    assert!(counts.values().iter().collect::<std::collections::BTreeSet<_>>().len() > 10);
}

/// `--row-cache DIR`: the first job transforms and keeps the rows; a later job over the same
/// files (another spine) reads them instead, with the output and counts of an uncached job; an
/// edited file is transformed again.
#[test]
fn the_row_cache_skips_the_transform_and_changes_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let config = manifest(dir.path(), None, None, "");
    let t0 = 1_700_000_000_000;
    let events = gen_events(13, 300, 5, t0, 3 * 3_600_000);
    let jsonl = write_log(dir.path(), &events);
    let mut text = std::fs::read_to_string(&jsonl).unwrap();
    text += "not an event\n";
    text += &format!("{{\"timestamp_ms\":{t0},\"key\":\"u1\",\"value\":{{\"user_id\":\"u1\",\"amount\":-1}}}}\n");
    std::fs::write(&jsonl, text).unwrap();
    let cache = dir.path().join("rows");
    let mut rng = Rng(31);
    let spine = |n: usize, rng: &mut Rng| -> PathBuf {
        let rows: Vec<(Option<&str>, i64)> = (0..n)
            .map(|_| {
                (Some(["u0", "u1", "u2", "u3", "u4"][rng.below(5) as usize]), t0 + rng.below(3 * 3_600_000) as i64)
            })
            .collect();
        let p = dir.path().join(format!("spine-{n}.parquet"));
        write_spine(&p, &rows);
        p
    };
    let (a, b) = (spine(50, &mut rng), spine(70, &mut rng));
    let run = |spine: &Path, out: &str, cached: bool| {
        let out = dir.path().join(out);
        let extra = if cached { vec!["--row-cache", cache.to_str().unwrap()] } else { vec![] };
        let summary = training_data_with(&config, &jsonl, spine, &out, &all_features(), &extra);
        (read_parquet(&out), summary)
    };
    let entries = || {
        std::fs::read_dir(&cache)
            .map_or(0, |d| d.filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "parquet")).count())
    };
    let (plain_a, plain_said) = run(&a, "plain-a.parquet", false);
    let (first, said) = run(&a, "first.parquet", true);
    assert!(said.contains("0 views from the row cache"), "{said}");
    assert_eq!(entries(), 1);
    assert_eq!(first, plain_a);
    let (again, said) = run(&a, "again.parquet", true);
    assert!(said.contains("1 views from the row cache"), "{said}");
    assert_eq!(again, plain_a, "rows from the cache serve the same bits");
    let failed = |s: &str| s.split("skipped; ").nth(1).unwrap().split(',').next().unwrap().to_string();
    assert_eq!(failed(&said), failed(&plain_said), "the same failed count (a bad line and a bad event)");
    assert_eq!(failed(&said), "2 failed");
    let (plain_b, _) = run(&b, "plain-b.parquet", false);
    let (cached_b, said) = run(&b, "cached-b.parquet", true);
    assert!(said.contains("1 views from the row cache"), "{said}");
    assert_eq!(cached_b, plain_b, "another spine over the same cached rows");
    // An edited file is a new entry, transformed again.
    let mut more = events.clone();
    more.push(Ev { ts: t0 + 5, ..events[0].clone() });
    write_jsonl(&jsonl, &more);
    let (_, said) = run(&a, "edited.parquet", true);
    assert!(said.contains("0 views from the row cache"), "{said}");
    assert_eq!(entries(), 2);
}

/// `--shard I/N`: the parts hold every spine row exactly once, each entity in one part, and put
/// back in spine order they equal the unsharded output bit for bit.
#[test]
fn shards_together_equal_the_unsharded_output_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let config = manifest(dir.path(), None, None, "");
    let t0 = 1_700_000_000_000;
    let events = gen_events(11, 600, 9, t0, 3 * 3_600_000);
    let jsonl = write_log(dir.path(), &events);
    let mut rng = Rng(17);
    let users: Vec<String> = (0..9).map(|u| format!("u{u}")).collect();
    let mut spine: Vec<(Option<&str>, i64)> = (0..120)
        .map(|_| (Some(users[rng.below(9) as usize].as_str()), t0 + rng.below(3 * 3_600_000 + 600_000) as i64))
        .collect();
    spine.push((Some("nobody"), t0 + 60_000));
    spine.push((None, t0 + 60_000));
    let spine_path = dir.path().join("spine.parquet");
    write_spine(&spine_path, &spine);
    let whole = dir.path().join("whole.parquet");
    training_data(&config, &jsonl, &spine_path, &whole);
    let whole = read_parquet(&whole);

    let n = 4;
    let mut rows_seen = vec![0u32; spine.len()];
    let mut part_of_user: BTreeMap<Option<String>, usize> = BTreeMap::new();
    let columns: Vec<String> = whole.schema().fields().iter().map(|f| f.name().clone()).collect();
    for i in 1..=n {
        let out = dir.path().join(format!("part-{i}.parquet"));
        training_data_with(&config, &jsonl, &spine_path, &out, &all_features(), &["--shard", &format!("{i}/{n}")]);
        let part = read_parquet(&out);
        assert_eq!(part.schema(), whole.schema(), "part {i}: same columns and types");
        let labels = part.column_by_name("label").unwrap().as_primitive::<Int64Type>().values().to_vec();
        assert!(labels.windows(2).all(|w| w[0] < w[1]), "part {i} keeps spine order");
        for (r, &label) in labels.iter().enumerate() {
            let label = label as usize;
            rows_seen[label] += 1;
            let user = spine[label].0.map(str::to_string);
            let first = *part_of_user.entry(user.clone()).or_insert(i);
            assert_eq!(first, i, "entity {user:?} appears in parts {first} and {i}");
            for c in &columns {
                let (a, b) = (cell(whole.column_by_name(c).unwrap(), label), cell(part.column_by_name(c).unwrap(), r));
                assert!(same(&a, &b), "part {i}, spine row {label}, `{c}`: {b:?} sharded vs {a:?} whole");
            }
        }
    }
    assert!(rows_seen.iter().all(|&k| k == 1), "every spine row in exactly one part: {rows_seen:?}");
    assert!(part_of_user.values().collect::<std::collections::BTreeSet<_>>().len() > 1, "rows spread over parts");
    assert_eq!(part_of_user[&None], 1, "null entities go to shard 1");

    // Wrong shard specs are refused with the reason.
    for bad in ["0/4", "5/4", "2"] {
        let o = training_data_output(
            &config,
            &jsonl,
            &spine_path,
            Path::new("/dev/null"),
            "txn:amount_sum_1h",
            &["--shard", bad],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains(&format!("shard `{bad}`")) && err.contains("expected I/N"), "{bad}: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Backfill.

/// Lifetime count and sum (in cents) per user, read from the online store.
async fn online_totals(app: &Node, users: &[String]) -> BTreeMap<String, (i64, i64)> {
    let feats = vec!["txn:amount_count_lifetime".to_string(), "txn:amount_sum_lifetime".to_string()];
    let rows = serve_at(app, users, &feats, &HashMap::new(), now_ms()).await;
    users
        .iter()
        .zip(rows)
        .map(|(u, r)| {
            let Value::Int64(n) = r[0] else { panic!("count") };
            let Value::Float64(s) = r[1] else { panic!("sum") };
            (u.clone(), (n, (s * 100.0).round() as i64))
        })
        .collect()
}

fn truth(events: &[Ev], users: &[String]) -> BTreeMap<String, (i64, i64)> {
    users
        .iter()
        .map(|u| {
            let mine = events.iter().filter(|e| &e.user == u);
            (u.clone(), mine.fold((0, 0), |(n, s), e| (n + 1, s + e.cents)))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn file_backfill_resumes_after_sigkill_without_double_counting() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = manifest(dir.path(), Some(&redis.url()), None, "");
    let events = gen_events(9, 40_000, 20, now_ms() - 86_400_000, 20 * 3_600_000);
    let users: Vec<String> = (0..20).map(|u| format!("u{u}")).collect();
    let path = dir.path().join("history.jsonl");
    let mut text: String = events.iter().map(|e| e.jsonl() + "\n").collect();
    text += "{\"value\": {\"user_id\": \"u1\"}}\n"; // invalid: no timestamp
    std::fs::write(&path, text).unwrap();
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let app = load_app(&config, Arc::new(RedisStore::connect(&redis.url()).await.unwrap()));
    let view = app.tenant.views["txn"].clone();
    let args = [
        "backfill",
        "--config",
        config.to_str().unwrap(),
        "--view",
        "txn",
        "--from",
        path.to_str().unwrap(),
        "--batch-size",
        "16",
    ];
    let mut child = Command::new(wafer_bin())
        .args(args)
        .env("WAFER_CACHE_DIR", target_dir().join("test-artifact-cache"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.watermark(&view.id, "backfill:history.jsonl", 0).await.unwrap().unwrap_or(0) < 1000 {
        assert!(Instant::now() < deadline, "backfill made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Command::new("kill").args(["-9", &child.id().to_string()]).status().unwrap();
    let _ = child.wait();
    let killed_at = store.watermark(&view.id, "backfill:history.jsonl", 0).await.unwrap().unwrap();
    let o = wafer(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "one invalid line → exit 1: {err}");
    assert!(err.contains(&format!("resumed from offset {killed_at}")), "{err}");
    assert!(err.contains("missing `timestamp_ms`"), "{err}");
    assert_eq!(online_totals(&app, &users).await, truth(&events, &users));
    // A third run has nothing left to do and changes nothing.
    let o = wafer(&args);
    assert!(String::from_utf8_lossy(&o.stderr).contains(": 0 events"), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(online_totals(&app, &users).await, truth(&events, &users));
}

/// `wafer backfill --from DIR`: every file of a Hive-partitioned directory is its own resumable
/// source (two partitions' `part-0.jsonl` are two sources); everything is applied once, and a
/// rerun applies nothing.
#[tokio::test(flavor = "multi_thread")]
async fn backfill_from_a_directory_applies_every_partition_once() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = manifest(dir.path(), Some(&redis.url()), None, "");
    let day = 86_400_000;
    let start = now_ms().div_euclid(day) * day - 3 * day;
    let events = gen_events(21, 3_000, 8, start, 3 * day);
    let users: Vec<String> = (0..8).map(|u| format!("u{u}")).collect();
    let parts = dir.path().join("events");
    for (i, chunk) in events.chunks(1_000).enumerate() {
        let d = parts.join(format!("date=2026-11-0{}", i + 1));
        std::fs::create_dir_all(&d).unwrap();
        write_jsonl(&d.join("part-0.jsonl"), chunk);
    }
    std::fs::write(parts.join("_SUCCESS"), "").unwrap();
    let app = load_app(&config, Arc::new(RedisStore::connect(&redis.url()).await.unwrap()));
    let args = ["backfill", "--config", config.to_str().unwrap(), "--view", "txn", "--from", parts.to_str().unwrap()];
    let o = wafer(&args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    for i in 1..=3 {
        assert!(err.contains(&format!("(source `backfill:date=2026-11-0{i}/part-0.jsonl`)")), "{err}");
    }
    assert!(err.contains(": 3000 events (0 failed)"), "{err}");
    assert_eq!(online_totals(&app, &users).await, truth(&events, &users));
    let o = wafer(&args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(err.contains(": 0 events (0 failed)"), "a rerun applies nothing: {err}");
    assert_eq!(online_totals(&app, &users).await, truth(&events, &users));
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_backfill_then_live_consumption_counts_every_event_once() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let tag = free_port();
    let topic = format!("bf-{tag}");
    let config = manifest(dir.path(), Some(&redis.url()), Some(&topic), &format!("g-bf-{tag}"));
    let events = gen_events(21, 3000, 10, now_ms() - 3_600_000, 3_000_000);
    let users: Vec<String> = (0..10).map(|u| format!("u{u}")).collect();
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", brokers()).set("linger.ms", "5").create().unwrap();
    let payloads: Vec<String> = events.iter().map(Ev::payload).collect();
    let produce = |range: std::ops::Range<usize>| {
        let futs: Vec<_> = range
            .map(|i| {
                producer.send(
                    FutureRecord::to(&topic).key(&events[i].user).payload(&payloads[i]).timestamp(events[i].ts),
                    Duration::from_secs(10),
                )
            })
            .collect();
        futures_join(futs)
    };
    produce(0..2000).await;
    let app = load_app(&config, Arc::new(RedisStore::connect(&redis.url()).await.unwrap()));
    let o = wafer(&[
        "backfill",
        "--config",
        config.to_str().unwrap(),
        "--view",
        "txn",
        "--from",
        &format!("kafka:{topic}"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(online_totals(&app, &users).await, truth(&events[..2000], &users), "after the backfill");
    produce(2000..events.len()).await;
    let mut serve = Command::new(wafer_bin())
        .args(["serve", "--config", config.to_str().unwrap(), "--listen", &format!("127.0.0.1:{}", free_port())])
        .env("WAFER_CACHE_DIR", target_dir().join("test-artifact-cache"))
        .env("WAFER_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let want = truth(&events, &users);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = online_totals(&app, &users).await;
        for (u, (n, _)) in &got {
            assert!(*n <= want[u].0, "{u}: {n} events counted, only {} exist (double counting)", want[u].0);
        }
        if got == want {
            break;
        }
        assert!(Instant::now() < deadline, "live consumption never reached the ground truth: {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = serve.kill();
    let _ = serve.wait();
}

async fn futures_join<F: std::future::Future<Output = Result<T, E>>, T, E: std::fmt::Debug>(futs: Vec<F>) {
    for f in futs {
        f.await.expect("delivered");
    }
}

// ---------------------------------------------------------------------------------------------
// The HTTP API for small jobs.

#[test]
fn training_data_api_serves_stored_and_request_features_as_of_each_row() {
    let dir = tempfile::tempdir().unwrap();
    let config = manifest(dir.path(), None, None, "");
    let w = crate::support::Wafer::start(&config, free_port());
    let t0 = 1_700_000_000_000i64;
    let ev = |dt: i64, amount: f64, country: &str| json!({"timestamp_ms": t0 + dt, "value": {"user_id": "a", "amount": amount, "country": country, "merchant": "m"}});
    // Out of order on purpose; one bad event.
    let events = json!([ev(120_000, 30.0, "FR"), ev(0, 10.0, "DE"), ev(60_000, 20.0, "DE"), {"timestamp_ms": t0, "value": {"amount": 1}}]);
    let spine = json!([
        {"entity": "a", "timestamp_ms": t0 - 1, "amount": 5.0, "country": "DE"},
        {"entity": "a", "timestamp_ms": t0 + 60_000, "amount": 45.0, "country": "DE"},
        {"entity": "a", "timestamp_ms": t0 + 119_999, "amount": 45.0, "country": "FR"},
        {"entity": "a", "timestamp_ms": t0 + 120_000, "amount": 40.0, "country": "FR"},
        {"entity": "zz", "timestamp_ms": t0 + 120_000, "amount": 1.0, "country": "FR"},
    ]);
    let features = json!([
        "txn:amount_count_lifetime",
        "txn:amount_mean_1h",
        "txn:country",
        "score:amount_vs_mean",
        "score:count_24h",
        "score:new_country"
    ]);
    let (code, body) = crate::support::post(
        w.port,
        "/v1/training-data",
        &json!({"features": features, "spine": spine, "events": events}),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!((body["events"].as_i64(), body["failed_events"].as_i64()), (Some(4), Some(1)));
    let f = |i: usize, name: &str| body["rows"][i]["features"][name].clone();
    let col = |name: &str| (0..5).map(|i| f(i, name)).collect::<Vec<_>>();
    assert_eq!(col("amount_count_lifetime"), [json!(0), json!(2), json!(2), json!(3), json!(0)]);
    assert_eq!(col("amount_mean_1h"), [Json::Null, json!(15.0), json!(15.0), json!(20.0), Json::Null]);
    assert_eq!(col("country"), [Json::Null, json!("DE"), json!("DE"), json!("FR"), Json::Null]);
    // Request features from the row's params and the stored features as of the row's time.
    assert_eq!(col("amount_vs_mean"), [json!(5.0), json!(3.0), json!(3.0), json!(2.0), json!(1.0)]);
    assert_eq!(col("count_24h"), [json!(0), json!(2), json!(2), json!(3), json!(0)]);
    assert_eq!(col("new_country"), [json!(true), json!(false), json!(true), json!(false), json!(true)]);
    assert_eq!(body["rows"][4]["entity"], "zz");

    let (code, body) = crate::support::post(
        w.port,
        "/v1/training-data",
        &json!({"features": ["txn:nope", "ghost:x"], "spine": [], "events": []}),
    );
    assert_eq!(code, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("ghost"), "{body}");
    let (code, body) = crate::support::post(
        w.port,
        "/v1/training-data",
        &json!({"features": ["score:count_24h"], "spine": [{"entity": "a", "timestamp_ms": t0}], "events": []}),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("request param `amount`"), "{body}");
}
