//! Load tool for the offline path (plain `main`, not criterion: one big run, not many samples).
//!
//! 1. Training data: a 1,000,000-event JSONL log (10,000 users over 30 days) and a
//!    100,000-row spine, all features of the example view (`guest-examples/dev.toml`: amount
//!    count/sum/mean/min/max over 1m/1h/24h/7d/lifetime, merchant last_3/HLL over 24h/lifetime,
//!    country/merchant/channel) → Parquet. Reports wall time per phase and peak RSS (VmHWM).
//! 2. Backfill events/s into Redis (`WAFER_TEST_REDIS_URL`, skipped if unset) and into the
//!    embedded store.
//!
//! Run: `cargo bench -p wafer-tests --bench offline` (sizes: `OFFLINE_EVENTS`, `OFFLINE_SPINE`,
//! `OFFLINE_BACKFILL_EVENTS`). The data is generated into a temp dir, never committed.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use wafer_runtime::manifest::Manifest;
use wafer_runtime::offline::backfill::backfill_file;
use wafer_runtime::offline::parquet_out;
use wafer_runtime::offline::spine::Spine;
use wafer_runtime::offline::training::{EventSource, TrainingJob, run};
use wafer_runtime::pipeline::Metrics;
use wafer_runtime::store::OnlineStore;
use wafer_runtime::tenant::build_tenant;
use wafer_runtime::{EngineConfig, Loader, WaferEngine};
use wafer_tests::guests;

const DAY: i64 = 86_400_000;
const T0: i64 = 1_700_000_000_000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn vm_hwm_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

fn write_log(path: &Path, n: usize, users: u64) {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut rng = Rng(1);
    let countries = ["DE", "FR", "US", "GB"];
    for i in 0..n {
        // Mostly increasing time with jitter (some out of order).
        let ts = T0 + (i as i64) * (30 * DAY / n as i64) + rng.below(600_000) as i64;
        let u = rng.below(users);
        writeln!(
            w,
            r#"{{"timestamp_ms":{ts},"key":"u{u}","value":{{"user_id":"u{u}","amount":{}.{:02},"country":"{}","merchant":"m{}"}},"headers":{{"channel":"web"}}}}"#,
            rng.below(2000),
            rng.below(100),
            countries[rng.below(4) as usize],
            rng.below(500)
        )
        .unwrap();
    }
}

fn write_spine(path: &Path, n: usize, users: u64) {
    let mut rng = Rng(2);
    let u: Vec<String> = (0..n).map(|_| format!("u{}", rng.below(users))).collect();
    let t: Vec<i64> = (0..n).map(|_| T0 + rng.below(31 * DAY as u64) as i64).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("user", DataType::Utf8, false),
        Field::new("timestamp_ms", DataType::Int64, false),
    ]));
    let cols: Vec<ArrayRef> = vec![Arc::new(StringArray::from(u)), Arc::new(Int64Array::from(t))];
    let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn main() {
    let n_events = env("OFFLINE_EVENTS", 1_000_000);
    let n_spine = env("OFFLINE_SPINE", 100_000);
    let n_backfill = env("OFFLINE_BACKFILL_EVENTS", 200_000);
    let users = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    let spine_path = dir.path().join("spine.parquet");
    let t = Instant::now();
    write_log(&log, n_events, users);
    write_spine(&spine_path, n_spine, users);
    println!(
        "generated {n_events} events ({:.0} MiB) and a {n_spine}-row spine in {:.1} s",
        std::fs::metadata(&log).unwrap().len() as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );

    // The example view, with the transform the tests build.
    let manifest_path = Path::new(guests::WAFER_ROOT).join("guest-examples/dev.toml");
    let mut manifest = Manifest::load(&manifest_path).unwrap();
    manifest.views[0].transform = guests::RUST_CARD_TXN.into();
    // Only the stream view: the example's request view reads a batch view (no event history).
    manifest.batch_views.clear();
    manifest.request_views.clear();
    manifest.feature_services.clear();
    let cfg = manifest.views[0].clone();
    let engine = WaferEngine::new(EngineConfig::default()).unwrap();
    let loader = Loader::new(engine, Some(&Path::new(guests::WAFER_ROOT).join("target/test-artifact-cache"))).unwrap();
    let load = |path: &Path, limits| loader.load_file(path, limits);
    let app = build_tenant(&manifest.tenant_spec(), &load, Arc::new(Metrics::default()), 0).unwrap();
    let view = app.views[&cfg.name].clone();
    let features = view.spec.feature_names();
    let hwm_before = vm_hwm_mib();

    let started = Instant::now();
    let spine = Spine::read(&spine_path).unwrap();
    let job = TrainingJob {
        views: &app.views,
        catalog: &app.catalog,
        batches: &[],
        features: features
            .iter()
            .map(|f| wafer_runtime::offline::training::FeatureRef { view: cfg.name.clone(), feature: f.clone() })
            .collect(),
        events: HashMap::from([(String::new(), EventSource::Files(vec![log.clone()]))]),
        entity_column: None,
        time_column: "timestamp_ms".into(),
        full_names: false,
        batch_size: 1024,
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        topics: HashMap::new(),
        row_cache: None,
    };
    let (columns, stats) = run(&job, &spine, &Default::default()).unwrap();
    let computed = started.elapsed().as_secs_f64();
    let out = dir.path().join("train.parquet");
    parquet_out::write(&out, &spine, &columns).unwrap();
    let total = started.elapsed().as_secs_f64();
    println!(
        "training-data: {} events ({} failed), {} spine rows x {} features: {total:.2} s wall ({:.2} s read+transform, {:.2} s sweep, {:.2} s Parquet write, {:.1} MiB out); peak RSS {:.0} MiB (before the job {:.0} MiB)",
        stats.events,
        stats.failed_events,
        stats.spine_rows,
        columns.len(),
        stats.transform_secs,
        stats.sweep_secs,
        total - computed,
        std::fs::metadata(&out).unwrap().len() as f64 / 1048576.0,
        vm_hwm_mib(),
        hwm_before
    );
    drop(columns);

    // Backfill throughput: the first n_backfill events.
    let small = dir.path().join("backfill.jsonl");
    write_log(&small, n_backfill, users);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut stores: Vec<(&str, Arc<dyn OnlineStore>)> =
            vec![("embedded", Arc::new(wafer_runtime::store::embedded::EmbeddedStore::new()))];
        match std::env::var("WAFER_TEST_REDIS_URL") {
            Ok(url) => {
                stores.push(("redis", Arc::new(wafer_runtime::store::redis::RedisStore::connect(&url).await.unwrap())))
            }
            Err(_) => println!("backfill into Redis: skipped (WAFER_TEST_REDIS_URL is not set)"),
        }
        for (name, store) in stores {
            store.delete_view(&view.id).await.unwrap();
            let t = Instant::now();
            let report =
                backfill_file(&view, store.as_ref(), &small, "backfill:bench", "txns", cfg.batch_size, &mut |_, _| {})
                    .await
                    .unwrap();
            let secs = t.elapsed().as_secs_f64();
            println!(
                "backfill into {name}: {} events in {secs:.2} s = {:.0} events/s (batch {})",
                report.events,
                report.events as f64 / secs,
                cfg.batch_size
            );
            store.delete_view(&view.id).await.unwrap();
        }
    });
}
