//! Events/s through the card_txn example: Wasm (batched and one event per call, pooling and
//! on-demand allocation) against the same Rust source compiled natively.
//!
//! Run: `cargo bench -p wafer-tests --bench transform`. Per-event cost = time / elements.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wafer_runtime::{EngineConfig, Limits, Loader, WaferEngine};
use wafer_sdk::StreamTransform as _;

/// The card_txn example's own source, compiled natively: the baseline.
#[path = "../../guest-examples/rust-card-txn/src/lib.rs"]
#[allow(dead_code)]
mod card_txn;

const COUNTRIES: [&str; 4] = ["DE", "FR", "US", "GB"];

fn payload(i: usize) -> Vec<u8> {
    format!(
        r#"{{"user_id":"u{}","amount":{}.5,"country":"{}","merchant":"m{}"}}"#,
        i % 1000,
        (i * 37) % 2000,
        COUNTRIES[i % 4],
        i % 97
    )
    .into_bytes()
}

fn host_events(n: usize) -> Vec<wafer_runtime::Event> {
    (0..n)
        .map(|i| wafer_runtime::Event {
            topic: "txns".into(),
            partition: 0,
            offset: i as i64,
            timestamp_ms: 1_700_000_000_000 + i as i64,
            key: None,
            value: payload(i),
            headers: vec![],
        })
        .collect()
}

/// The same events as the guest's own type, for the native baseline.
fn guest_events(n: usize) -> Vec<wafer_sdk::Event> {
    host_events(n)
        .into_iter()
        .map(|e| wafer_sdk::Event {
            topic: e.topic,
            partition: e.partition,
            offset: e.offset,
            timestamp_ms: e.timestamp_ms,
            key: e.key,
            value: e.value,
            headers: vec![],
        })
        .collect()
}

fn loader(pooling: bool) -> Loader {
    let engine = WaferEngine::new(EngineConfig { pooling, pool_instances: 16, ..EngineConfig::default() }).unwrap();
    let cache = std::path::Path::new(wafer_tests::guests::WAFER_ROOT).join("target/test-artifact-cache");
    Loader::new(engine, Some(&cache)).unwrap()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("card_txn");
    g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(20);
    let pooled = loader(true).load_file(wafer_tests::guests::RUST_CARD_TXN.as_ref(), Limits::default()).unwrap();
    let on_demand = loader(false).load_file(wafer_tests::guests::RUST_CARD_TXN.as_ref(), Limits::default()).unwrap();
    for batch in [1usize, 64, 512] {
        g.throughput(Throughput::Elements(batch as u64));
        let evs = guest_events(batch);
        g.bench_with_input(BenchmarkId::new("native", batch), &evs, |b, evs| {
            b.iter(|| evs.iter().map(|e| card_txn::CardTxn::process(e).unwrap().len()).sum::<usize>())
        });
        let evs = host_events(batch);
        let mut w = pooled.stream_worker().unwrap();
        g.bench_with_input(BenchmarkId::new("wasm", batch), &evs, |b, evs| {
            b.iter(|| w.process(evs).iter().filter(|r| r.is_ok()).count())
        });
        let mut w = on_demand.stream_worker().unwrap();
        g.bench_with_input(BenchmarkId::new("wasm-on-demand-alloc", batch), &evs, |b, evs| {
            b.iter(|| w.process(evs).iter().filter(|r| r.is_ok()).count())
        });
    }
    g.finish();

    // A fresh instance for every call (what a per-request instance would cost).
    let mut g = c.benchmark_group("instantiate_and_call");
    g.measurement_time(Duration::from_secs(3)).sample_size(20);
    let evs = host_events(1);
    for (name, l) in [("pooling", loader(true)), ("on-demand", loader(false))] {
        let limits = Limits { recycle_after_calls: 1, ..Limits::default() };
        let t = l.load_file(wafer_tests::guests::RUST_CARD_TXN.as_ref(), limits).unwrap();
        let mut w = t.stream_worker().unwrap();
        g.bench_function(name, |b| b.iter(|| w.process(&evs).len()));
        assert!(w.stats().recycles > 0);
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
