//! Exactness: the same value on every path and every store. The card_txn view is fed one event
//! per push (as HTTP push does) into the embedded store, a Redis in the C locale and a Redis
//! whose `LC_COLLATE` is `en_US.UTF-8` (Lua's string `<` follows it), and the same events make
//! training data offline; every feature must equal the documented value, bit for bit, on all
//! four. The cases: ties at one event time (text by bytes, numbers by value, more values than
//! `k`), `min`/`max` of `0.0` and `−0.0` in both arrival orders, and the semantics the README's
//! "Exact semantics" list writes down (nullable features, counts of nullable columns,
//! distinctness by JSON text, mean from the micro-unit sum, the strict TTL).
//!
//! Also: the Redis script orders ties and signed zeros exactly as the Rust code does, on many
//! values of every kind, under the non-C locale.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use wafer_runtime::aggregate::ops::{EntityOps, TileOp, merge_last_n};
use wafer_runtime::aggregate::order::{TieOrder, cmp_json, max_f64, min_f64};
use wafer_runtime::manifest::Manifest;
use wafer_runtime::offline::spine::Spine;
use wafer_runtime::offline::training::{self, EventSource, FeatureRef, TrainingJob};
use wafer_runtime::pipeline::Metrics;
use wafer_runtime::serving::Entities;
use wafer_runtime::serving::stored::Status;
use wafer_runtime::store::embedded::EmbeddedStore;
use wafer_runtime::store::redis::RedisStore;
use wafer_runtime::store::{OnlineStore, WriteBatch};
use wafer_runtime::tenant::{TenantApp, build_tenant};
use wafer_runtime::{Event, Header, Value};

use crate::support::{RedisServer, Rng, guests, loader};

const T: i64 = 1_700_000_000_000;
const DAY: i64 = 86_400_000;

fn manifest(dir: &Path) -> PathBuf {
    let text = format!(
        "[server]\ntenant = \"t1\"\n\n[[stream_view]]\nname = \"txn\"\nentity = \"user\"\ntransform = \"{}\"\n\
         features = [\"merchant\", \"amount\", \"channel\"]\nttl = \"7d\"\nbatch_size = 64\n\n\
         [[stream_view.aggregations]]\ncolumn = \"merchant\"\nfunctions = [\"last_n(5)\", \"first_n(3)\", \"approx_count_distinct\", \"count_distinct(4)\", \"count_distinct\"]\nwindows = [\"1h\", \"lifetime\"]\n\n\
         [[stream_view.aggregations]]\ncolumn = \"amount\"\nfunctions = [\"count\", \"sum\", \"mean\", \"min\", \"max\", \"last_n(3)\", \"approx_count_distinct\", \
         \"var_pop\", \"stddev_samp\", \"approx_percentile(0.5)\", \"count_distinct\"]\nwindows = [\"1h\", \"lifetime\"]\n\n\
         [[stream_view.aggregations]]\ncolumn = \"channel\"\nfunctions = [\"count\"]\nwindows = [\"lifetime\"]\n",
        guests::RUST_CARD_TXN
    );
    let p = dir.join("wafer.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn build(config: &Path) -> TenantApp {
    let load = |path: &Path, limits| loader().load_file(path, limits);
    build_tenant(&Manifest::load(config).unwrap().tenant_spec(), &load, Arc::new(Metrics::default()), 0).unwrap()
}

/// A card_txn event whose amount is `amount` exactly as written (the payload is text).
fn txn(offset: i64, ts: i64, user: &str, amount: &str, merchant: &str, channel: Option<&str>) -> Event {
    Event {
        topic: "txns".into(),
        partition: 0,
        offset,
        timestamp_ms: ts,
        key: Some(user.as_bytes().to_vec()),
        value: format!(r#"{{"user_id":"{user}","amount":{amount},"country":"DE","merchant":"{merchant}"}}"#)
            .into_bytes(),
        headers: channel.map(|c| Header { key: "channel".into(), value: c.as_bytes().to_vec() }).into_iter().collect(),
    }
}

/// The events, in arrival order (event-time ties keep this order offline too).
fn events() -> Vec<Event> {
    let mut evs = Vec::new();
    let mut push = |ts: i64, user: &str, amount: &str, merchant: &str, channel: Option<&str>| {
        let n = evs.len() as i64;
        evs.push(txn(n, ts, user, amount, merchant, channel));
    };
    // Six merchants at one ms: byte order is `e c a F D B`; en_US collation would say `F e D c B a`.
    for m in ["a", "B", "c", "D", "e", "F"] {
        push(T, "loc", "1.0", m, None);
    }
    // Signed zeros at one ms, in both arrival orders.
    push(T, "z1", "0.0", "m", None);
    push(T, "z1", "-0.0", "m", None);
    push(T, "z2", "-0.0", "m", None);
    push(T, "z2", "0.0", "m", None);
    // More numbers than k = 3 at one ms: by value, not by JSON text (`9.5` > `3e-6` > `10.25`).
    for a in ["9.5", "10.25", "3e-6", "1.69"] {
        push(T, "num", a, "m", None);
    }
    // A nullable feature: the latest non-null value is served; count counts non-nulls.
    push(T, "nul", "1.0", "m", Some("web"));
    push(T + 1, "nul", "2.0", "m", None);
    // Mean from the micro-unit sum: each 1e-7 is round(0.1) = 0 micro-units.
    for i in 0..3 {
        push(T + i, "tiny", "1e-7", "m", None);
    }
    // TTL (7d) is strict: served at t − e = ttl, expired at ttl + 1.
    push(T, "ttl", "5.0", "m1", None);
    evs
}

/// The value `approx_percentile` serves for a rank that holds `x`: its DDSketch bucket's.
fn median_bucket(x: f64) -> f64 {
    use wafer_runtime::aggregate::quantile::{bucket_of, value_of};
    value_of(bucket_of(x))
}

/// (user, read time, feature, expected value; `None`: expired).
fn expectations() -> Vec<(&'static str, i64, &'static str, Option<Value>)> {
    let texts = |v: &[&str]| Value::Texts(v.iter().map(|s| s.to_string()).collect());
    let at = T + 1000;
    let mut e = vec![
        ("loc", at, "merchant_last_5_lifetime", Some(texts(&["e", "c", "a", "F", "D"]))),
        ("loc", at, "merchant_last_5_1h", Some(texts(&["e", "c", "a", "F", "D"]))),
        ("loc", at, "merchant", Some(Value::Text("e".into()))),
        ("loc", at, "merchant_approx_count_distinct_lifetime", Some(Value::Int64(6))),
        // first_n: all six at one ms, so the three greatest by bytes.
        ("loc", at, "merchant_first_3_lifetime", Some(texts(&["e", "c", "a"]))),
        ("loc", at, "merchant_first_3_1h", Some(texts(&["e", "c", "a"]))),
        // count_distinct: six distinct merchants, exactly (and saturated at a cap of 4).
        ("loc", at, "merchant_count_distinct_lifetime", Some(Value::Int64(6))),
        ("loc", at, "merchant_count_distinct_1h", Some(Value::Int64(6))),
        ("loc", at, "merchant_count_distinct_4_lifetime", Some(Value::Int64(4))),
        ("loc", at, "merchant_count_distinct_4_1h", Some(Value::Int64(4))),
        ("num", at, "amount_count_distinct_lifetime", Some(Value::Int64(4))),
        // Variance from exact micro-unit power sums, correctly rounded (Python:
        // float(Fraction(n·Q − S², n²·10¹²)) for the micro-units 9500000, 10250000, 3, 1690000).
        ("num", at, "amount_var_pop_lifetime", Some(Value::Float64(20.81254196000169))),
        ("num", at, "amount_var_pop_1h", Some(Value::Float64(20.81254196000169))),
        ("num", at, "amount_stddev_samp_lifetime", Some(Value::Float64(5.2678321866465065))),
        // The median's bucket: rank ⌊0.5·3⌋ = 1 of (3e-6, 1.69, 9.5, 10.25).
        ("num", at, "amount_approx_percentile_p50_lifetime", Some(Value::Float64(median_bucket(1.69)))),
        ("nul", at, "amount_stddev_samp_lifetime", Some(Value::Float64(0.5f64.sqrt()))),
        ("tiny", at, "amount_var_pop_lifetime", Some(Value::Float64(0.0))),
        ("num", at, "amount_last_3_lifetime", Some(texts(&["10.25", "9.5", "1.69"]))),
        ("num", at, "amount_last_3_1h", Some(texts(&["10.25", "9.5", "1.69"]))),
        ("num", at, "amount", Some(Value::Float64(10.25))),
        ("nul", at, "channel", Some(Value::Text("web".into()))),
        ("nul", at, "channel_count_lifetime", Some(Value::Int64(1))),
        ("nul", at, "amount_count_lifetime", Some(Value::Int64(2))),
        ("tiny", at, "amount_count_lifetime", Some(Value::Int64(3))),
        ("tiny", at, "amount_sum_lifetime", Some(Value::Float64(0.0))),
        ("tiny", at, "amount_mean_lifetime", Some(Value::Float64(0.0))),
        ("tiny", at, "amount_min_lifetime", Some(Value::Float64(1e-7))),
        ("ttl", T + 7 * DAY, "merchant", Some(Value::Text("m1".into()))),
        ("ttl", T + 7 * DAY + 1, "merchant", None),
    ];
    for z in ["z1", "z2"] {
        e.extend([
            (z, at, "amount_min_lifetime", Some(Value::Float64(-0.0))),
            (z, at, "amount_min_1h", Some(Value::Float64(-0.0))),
            (z, at, "amount_max_lifetime", Some(Value::Float64(0.0))),
            (z, at, "amount_max_1h", Some(Value::Float64(0.0))),
            (z, at, "amount", Some(Value::Float64(0.0))),
            // Distinct by JSON text: two values.
            (z, at, "amount_last_3_lifetime", Some(texts(&["0.0", "-0.0"]))),
            // Distinct by JSON text: the two zeros are two values.
            (z, at, "amount_count_distinct_lifetime", Some(Value::Int64(2))),
            (z, at, "amount_approx_count_distinct_lifetime", Some(Value::Int64(2))),
            (z, at, "amount_sum_lifetime", Some(Value::Float64(0.0))),
            (z, at, "amount_var_pop_lifetime", Some(Value::Float64(0.0))),
            (z, at, "amount_approx_percentile_p50_lifetime", Some(Value::Float64(0.0))),
        ]);
    }
    e
}

/// Bit-for-bit equality (floats by their bits, so `−0.0 ≠ 0.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float64(x), Value::Float64(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

/// What a path served for each expectation: the value, or `None` if expired.
type Got = Vec<Option<Value>>;

/// Push every event on its own (one write per event, as one push per request), then serve each
/// expectation through the catalog at its time.
async fn online(app: &TenantApp, store: &dyn OnlineStore) -> Got {
    let view = &app.views["txn"];
    for e in events() {
        let prepared = view.prepare(std::slice::from_ref(&e));
        view.commit(store, &prepared, None).await.unwrap();
    }
    let mut out = Vec::new();
    for (user, t, feature, _) in expectations() {
        let plan = app.catalog.plan(&[format!("txn:{feature}")], None).unwrap();
        let keys = [user.to_string()];
        let table = app.catalog.get(store, &plan, &Entities::All(&keys), &HashMap::new(), t).await.unwrap();
        let served = &table.rows[0][0];
        out.push(match served.status {
            Status::Expired => None,
            Status::Present => Some(served.value.clone()),
            other => panic!("{user} {feature} at {t}: {other:?}"),
        });
    }
    out
}

/// Training data for every expectation's (user, time): one spine row each.
fn offline(app: &TenantApp) -> Got {
    let exp = expectations();
    let mut features: Vec<&str> = exp.iter().map(|e| e.2).collect();
    features.sort_unstable();
    features.dedup();
    let users: ArrayRef = Arc::new(StringArray::from(exp.iter().map(|e| e.0).collect::<Vec<_>>()));
    let times: ArrayRef = Arc::new(Int64Array::from(exp.iter().map(|e| e.1).collect::<Vec<_>>()));
    let schema = Arc::new(Schema::new(vec![
        Field::new("user", DataType::Utf8, false),
        Field::new("event_timestamp", DataType::Int64, false),
    ]));
    let spine = Spine::new(schema.clone(), vec![RecordBatch::try_new(schema, vec![users, times]).unwrap()]);
    let job = TrainingJob {
        views: &app.views,
        catalog: &app.catalog,
        batches: &[],
        features: features.iter().map(|f| FeatureRef { view: "txn".into(), feature: f.to_string() }).collect(),
        events: HashMap::from([(String::new(), EventSource::Inline(events()))]),
        entity_column: None,
        time_column: "event_timestamp".into(),
        full_names: false,
        batch_size: 64,
        threads: 1,
        topics: HashMap::new(),
        row_cache: None,
    };
    let (columns, _) = training::run(&job, &spine, &Default::default()).unwrap();
    exp.iter()
        .enumerate()
        .map(|(row, (_, _, feature, _))| {
            let col = columns.iter().find(|c| c.name == *feature).unwrap();
            match &col.values[row] {
                // Offline, an expired latest value is a null cell.
                Value::Null => None,
                v => Some(v.clone()),
            }
        })
        .collect()
}

fn check(path: &str, got: &Got) {
    let mut wrong = Vec::new();
    for ((user, t, feature, want), g) in expectations().iter().zip(got) {
        let ok = match (want, g) {
            (Some(w), Some(g)) => same(w, g),
            (None, None) => true,
            _ => false,
        };
        if !ok {
            wrong.push(format!("{user} {feature} at T+{}: got {g:?}, want {want:?}", t - T));
        }
    }
    assert!(wrong.is_empty(), "{path}:\n  {}", wrong.join("\n  "));
}

/// Lua's string `<` in this server (true under a collation where `a` sorts before `B`).
async fn lua_says_a_below_upper_b(redis: &RedisServer) -> bool {
    let mut c = wafer_runtime::store::redis::Conn::single(&redis.url()).await.unwrap();
    let v: i64 =
        redis::cmd("EVAL").arg("if 'a' < 'B' then return 1 end return 0").arg(0).query_async(&mut c).await.unwrap();
    v == 1
}

#[test]
fn every_store_and_training_data_serve_the_documented_values_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let config = manifest(dir.path());
    let app = build(&config);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (embedded, redis_c, redis_locale) = rt.block_on(async {
        let embedded = online(&app, &EmbeddedStore::new()).await;
        let plain = RedisServer::start();
        let redis_c = online(&app, &RedisStore::connect(&plain.url()).await.unwrap()).await;
        let localized = RedisServer::start_in_collation_locale();
        assert!(lua_says_a_below_upper_b(&localized).await, "the server's collation is not en_US");
        assert!(!lua_says_a_below_upper_b(&plain).await, "the plain server collates in C order");
        let redis_locale = online(&app, &RedisStore::connect(&localized.url()).await.unwrap()).await;
        (embedded, redis_c, redis_locale)
    });
    drop(rt);
    let training = offline(&app);
    check("embedded store", &embedded);
    check("redis (C locale)", &redis_c);
    check("redis (en_US.UTF-8)", &redis_locale);
    check("training data", &training);
}

// ---------------------------------------------------------------------------------------------
// The Lua comparisons against the Rust ones, value by value.

/// Keys of one order: the edge cases plus random values, as the fold writes them.
fn keys(order: TieOrder, rng: &mut Rng) -> Vec<String> {
    let json = |v: Value| wafer_runtime::aggregate::fold::value_key(&v);
    match order {
        TieOrder::Int => {
            let mut v: Vec<i64> =
                vec![0, 1, -1, 9, 10, -9, -10, i64::MAX, i64::MIN, i64::MAX - 1, 1 << 53, (1 << 53) + 1];
            v.extend((0..40).map(|_| (rng.next() as i64) >> rng.below(60)));
            v.into_iter().map(|i| json(Value::Int64(i))).collect()
        }
        TieOrder::Float => {
            let mut v: Vec<f64> = vec![
                0.0,
                -0.0,
                9.5,
                10.25,
                3e-6,
                1.69,
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::MIN_POSITIVE,
                5e-324,
                -5e-324,
                f64::MAX,
                f64::MIN,
                9.795666500000001,
                9.7956665,
                0.1,
                0.30000000000000004,
            ];
            v.extend((0..40).map(|_| f64::from_bits(rng.next())).filter(|x| !x.is_nan()));
            v.into_iter().map(|x| json(Value::Float64(x))).collect()
        }
        TieOrder::Text | TieOrder::Json => {
            let mut v: Vec<String> = [
                "a",
                "B",
                "c",
                "D",
                "e",
                "F",
                "",
                "é",
                "z",
                "Z",
                "a\"",
                "a#",
                "a\\",
                "a\n",
                "\u{1F600}",
                "10",
                "9",
                "ab",
                "a",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let alphabet: Vec<char> = "aAbBzZ09 _-\"\\\n\téÉßø€😀".chars().collect();
            v.extend((0..40).map(|_| {
                (0..1 + rng.below(6)).map(|_| alphabet[rng.below(alphabet.len() as u64) as usize]).collect::<String>()
            }));
            v.into_iter().map(|s| json(Value::Text(s))).collect()
        }
    }
}

fn write(view: &str, ops: Vec<TileOp>) -> (Vec<EntityOps>, String) {
    (vec![EntityOps { entity: "e".into(), ops }], view.to_string())
}

async fn apply(store: &dyn OnlineStore, entities: &(Vec<EntityOps>, String)) {
    let wb = WriteBatch {
        view: &entities.1,
        mark: None,
        entities: &entities.0,
        keep_ms: DAY,
        retention: &[],
        idempotency_key: None,
        quota: None,
    };
    store.apply(&wb).await.unwrap();
}

async fn stored(store: &dyn OnlineStore, view: &str, field: &str) -> String {
    let f = [field.to_string()];
    let rec = store.read(view, &["e"], &f, &[]).await.unwrap().remove(0);
    wafer_runtime::aggregate::read::FieldSource::field(&rec, field).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_script_orders_ties_and_zeros_exactly_as_rust_under_a_non_c_locale() {
    let redis = RedisServer::start_in_collation_locale();
    assert!(lua_says_a_below_upper_b(&redis).await);
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let mut rng = Rng(19);
    for (n, order) in [TieOrder::Int, TieOrder::Float, TieOrder::Text].into_iter().enumerate() {
        let ks = keys(order, &mut rng);
        // last_n: every key at one ms, in pushes of 3 (each truncated to k), against Rust's merge.
        for k in [1usize, 5, ks.len()] {
            let view = format!("t/l{n}-{k}");
            let field = format!("t:0:0:c:l{k}");
            let mut want: Vec<(i64, String)> = Vec::new();
            for chunk in ks.chunks(3) {
                let items: Vec<(i64, String)> = chunk.iter().map(|s| (T, s.clone())).collect();
                merge_last_n(&mut want, &items, k, order);
                let op = TileOp::LastN { field: field.clone(), k: k as u16, order, items };
                apply(&store, &write(&view, vec![op])).await;
            }
            let got: Vec<(i64, String)> = serde_json::from_str(&stored(&store, &view, &field).await).unwrap();
            assert_eq!(got, want, "{order:?} last_{k}");
        }
        // Latest value: one write per key at the same ms; the greatest wins.
        let view = format!("t/f{n}");
        let as_json = |key: &str| match order {
            TieOrder::Text => serde_json::to_string(key).unwrap(),
            _ => key.to_string(),
        };
        let mut best: Option<String> = None;
        for key in &ks {
            let value = as_json(key);
            if best.as_ref().is_none_or(|b| cmp_json(order, &value, b).is_gt()) {
                best = Some(value.clone());
            }
            let op = TileOp::Latest { field: "f:x".into(), event_time: T, order, value };
            apply(&store, &write(&view, vec![op])).await;
        }
        assert_eq!(stored(&store, &view, "f:x").await, format!("{T}|{}", best.unwrap()), "{order:?} latest");
    }
    // min/max of signed zeros (alone, and among other values), in random arrival orders.
    let mut values = vec![0.0, -0.0, 1.5, -1.5, 0.0, -0.0];
    for round in 0..8 {
        for i in (1..values.len()).rev() {
            values.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let view = format!("t/m{round}");
        for v in &values {
            let mut ops = vec![
                TileOp::Min { field: "t:0:0:d:mn".into(), value: *v },
                TileOp::Max { field: "t:0:0:d:mx".into(), value: *v },
            ];
            if *v == 0.0 {
                ops.push(TileOp::Min { field: "t:0:0:z:mn".into(), value: *v });
                ops.push(TileOp::Max { field: "t:0:0:z:mx".into(), value: *v });
            }
            apply(&store, &write(&view, ops)).await;
        }
        let order = format!("{values:?}");
        assert_eq!(stored(&store, &view, "t:0:0:z:mn").await, "-0.0", "min of zeros, {order}");
        assert_eq!(stored(&store, &view, "t:0:0:z:mx").await, "0.0", "max of zeros, {order}");
        assert_eq!(stored(&store, &view, "t:0:0:d:mn").await, "-1.5", "{order}");
        assert_eq!(stored(&store, &view, "t:0:0:d:mx").await, "1.5", "{order}");
        let zeros = values.iter().copied().filter(|v| *v == 0.0);
        assert_eq!(zeros.clone().reduce(min_f64).unwrap().to_bits(), (-0.0f64).to_bits());
        assert_eq!(zeros.reduce(max_f64).unwrap().to_bits(), 0.0f64.to_bits());
    }
}
