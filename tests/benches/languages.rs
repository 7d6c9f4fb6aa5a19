//! The card_txn example in every guest language, measured the same way: component size, Wasm
//! compile time, a fresh instance + first call, per-event cost in batches of 512 on a warm
//! instance, and linear memory per instance (after one batch, and after 200 batches without
//! recycling, which shows heap growth).
//!
//! Run: `cargo bench -p wafer-tests --bench languages` (after `scripts/test.sh` or a test build
//! has built the guests). Prints a Markdown table (docs/benchmarks.md).

use std::time::{Duration, Instant};

use wafer_runtime::{EngineConfig, Event, Limits, Loader, WaferEngine};
use wafer_tests::guests;

fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| Event {
            topic: "txns".into(),
            partition: 0,
            offset: i as i64,
            timestamp_ms: 1_700_000_000_000 + i as i64 * 1000,
            key: None,
            value: format!(
                r#"{{"user_id":"u{}","amount":{}.5,"country":"DE","merchant":"m{}"}}"#,
                i % 1000,
                (i * 37) % 2000,
                i % 97
            )
            .into_bytes(),
            headers: vec![],
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn loader() -> Loader {
    let engine = WaferEngine::new(EngineConfig { pool_instances: 16, ..EngineConfig::default() }).expect("engine");
    Loader::new(engine, None).expect("loader")
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn mib(b: usize) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

fn main() {
    // `cargo bench` passes --bench; a filter argument selects guests by name.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let all = [
        ("Rust", Some(guests::RUST_CARD_TXN)),
        ("C", guests::C_CARD_TXN),
        ("JavaScript (QuickJS)", guests::JS_QJS_CARD_TXN),
        ("JavaScript (StarlingMonkey)", guests::JS_SM_CARD_TXN),
        ("Python", guests::PYTHON_CARD_TXN),
    ];
    let batch = events(512);
    let one = events(1);
    println!(
        "| language | component | Wasm compile | new instance + 1st call | per event (batch 512) | memory / instance | after 200 batches |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (lang, path) in all {
        if filter.as_ref().is_some_and(|f| !lang.to_lowercase().contains(&f.to_lowercase())) {
            continue;
        }
        let Some(path) = path else {
            println!("| {lang} | not built | | | | | |");
            continue;
        };
        let size = std::fs::metadata(path).expect("guest").len();
        let l = loader();
        let t = l
            .load_file(
                path.as_ref(),
                Limits {
                    memory_bytes: 512 << 20,
                    recycle_memory_bytes: usize::MAX,
                    deadline: Duration::from_secs(1),
                    ..Limits::default()
                },
            )
            .expect("load");
        let compile = t.load_stats().compile;

        // Fresh instance for every call: instantiate + first call + drop.
        let fresh = l
            .load_file(
                path.as_ref(),
                Limits { recycle_after_calls: 1, deadline: Duration::from_secs(1), ..Limits::default() },
            )
            .expect("load");
        let mut w = fresh.stream_worker().unwrap();
        let cold: Vec<Duration> = (0..30)
            .map(|_| {
                let s = Instant::now();
                assert!(w.process(&one)[0].is_ok());
                s.elapsed()
            })
            .collect();

        // Warm instance, batches of 512.
        let mut w = t.stream_worker().unwrap();
        assert!(w.process(&batch).iter().all(|r| r.is_ok()));
        let mem_one = w.instance_memory().unwrap_or(0);
        let mut per_event = Vec::new();
        for _ in 0..200 {
            let s = Instant::now();
            let ok = w.process(&batch).iter().filter(|r| r.is_ok()).count();
            per_event.push(s.elapsed() / 512);
            assert_eq!(ok, 512);
        }
        let mem_after = w.instance_memory().unwrap_or(0);
        println!(
            "| {lang} | {:.0} KiB | {:.0} ms | {} | {} | {} | {} |",
            size as f64 / 1024.0,
            compile.as_secs_f64() * 1e3,
            us(median(cold)),
            us(median(per_event)),
            mib(mem_one),
            mib(mem_after)
        );
    }
}
