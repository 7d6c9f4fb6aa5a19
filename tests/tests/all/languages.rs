//! Every language's example equals the Rust example, row for row: the card_txn stream transform
//! in Python, JavaScript (the same source built with QuickJS and with StarlingMonkey) and C, and
//! the txn_risk request transform in JavaScript and C, on the same inputs, including the typed
//! errors for bad input and the log lines they write. Also: instance recycling keeps the
//! StarlingMonkey heap, which grows with every call, bounded.

use serde_json::json;
use wafer_runtime::transform::json_out::features_to_json;
use wafer_runtime::{Limits, Value};

use crate::examples::{card_events, expected_card_outputs, risk_input, run_card};
use crate::support::{event, guests, load, load_with};

/// Every non-Rust card_txn build, by name.
fn card_txn_builds() -> [(&'static str, &'static str); 4] {
    [
        ("python", guests::python_card_txn()),
        ("js-quickjs", guests::js_qjs_card_txn()),
        ("js-starlingmonkey", guests::js_sm_card_txn()),
        ("c", guests::c_card_txn()),
    ]
}

fn txn_risk_builds() -> [(&'static str, &'static str); 3] {
    [
        ("js-quickjs", guests::js_qjs_txn_risk()),
        ("js-starlingmonkey", guests::js_sm_txn_risk()),
        ("c", guests::c_txn_risk()),
    ]
}

#[test]
fn card_txn_rows_equal_rust_in_every_language() {
    let rust = run_card(guests::RUST_CARD_TXN, 64);
    assert_eq!(rust, expected_card_outputs());
    for (lang, path) in card_txn_builds() {
        for batch in [1, 4, 64] {
            let out = run_card(path, batch);
            assert_eq!(out, rust, "{lang}, batch size {batch}");
            // Floats render identically, bit for bit.
            assert_eq!(serde_json::to_string(&out).unwrap(), serde_json::to_string(&rust).unwrap(), "{lang}");
        }
    }
}

/// The typed error's message, for each event that fails.
fn error_messages(path: &str) -> Vec<(usize, String)> {
    let t = load(path);
    let mut w = t.stream_worker().unwrap();
    w.process(&card_events()).into_iter().enumerate().filter_map(|(i, r)| r.err().map(|e| (i, e.to_string()))).collect()
}

#[test]
fn bad_input_gives_the_same_typed_error_in_js_and_c() {
    let rust = error_messages(guests::RUST_CARD_TXN);
    assert_eq!(rust.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [3, 4, 5, 6, 7, 9]);
    for (lang, path) in [
        ("js-quickjs", guests::js_qjs_card_txn()),
        ("js-starlingmonkey", guests::js_sm_card_txn()),
        ("c", guests::c_card_txn()),
    ] {
        let got = error_messages(path);
        assert_eq!(got.len(), rust.len(), "{lang}: {got:?}");
        for ((i, want), (j, msg)) in rust.iter().zip(&got) {
            assert_eq!(i, j, "{lang}");
            if *i == 9 {
                // JSON syntax errors are worded by each parser; the prefix is shared.
                assert!(msg.contains("payload is not valid JSON"), "{lang}: {msg}");
            } else {
                assert_eq!(msg, want, "{lang}, event {i}");
            }
        }
    }
}

#[test]
fn every_language_logs_through_the_host() {
    // Event 5 (a negative amount) logs a warning in every port.
    for (lang, path) in card_txn_builds().into_iter().chain([("rust", guests::RUST_CARD_TXN)]) {
        let t = load(path);
        let mut w = t.stream_worker().unwrap();
        let ok = w.process(&card_events()[..3]);
        assert!(ok.iter().all(|r| r.is_ok()));
        assert_eq!(w.stats().log_lines, 0, "{lang} logged without a reason");
        let r = w.process(&card_events()[5..6]);
        assert_eq!(r[0].as_ref().unwrap_err().code(), "bad_input");
        assert_eq!(w.stats().log_lines, 1, "{lang}");
    }
}

#[test]
fn every_language_declares_the_same_schema() {
    let rust = load(guests::RUST_CARD_TXN);
    for (lang, path) in card_txn_builds() {
        assert_eq!(load(path).info(), rust.info(), "{lang}");
    }
    let rust = load(guests::RUST_TXN_RISK);
    for (lang, path) in txn_risk_builds() {
        assert_eq!(load(path).info(), rust.info(), "{lang}");
    }
}

fn risk_inputs() -> Vec<wafer_runtime::bindings::RequestInput> {
    let mut missing_amount = risk_input("u5", 1.0, "DE", &[]);
    missing_amount.params.retain(|p| p.name != "amount");
    let mut text_amount = risk_input("u6", 1.0, "DE", &[]);
    text_amount.params[0].value = Value::Text("12".into());
    vec![
        risk_input(
            "u1",
            100.0,
            "DE",
            &[
                ("txn_count_7d", Value::Int64(10)),
                ("amount_mean_7d", Value::Float64(50.0)),
                ("last_country", Value::Text("DE".into())),
            ],
        ),
        risk_input(
            "u2",
            1000.0,
            "FR",
            &[
                ("txn_count_7d", Value::Int64(2)),
                ("amount_mean_7d", Value::Float64(10.0)),
                ("last_country", Value::Text("DE".into())),
            ],
        ),
        risk_input(
            "u3",
            1.0,
            "DE",
            &[("txn_count_7d", Value::Null), ("amount_mean_7d", Value::Null), ("last_country", Value::Null)],
        ),
        risk_input(
            "u4",
            3.0,
            "US",
            &[
                ("txn_count_7d", Value::Int64(3)),
                ("amount_mean_7d", Value::Float64(0.0)),
                ("last_country", Value::Text("US".into())),
            ],
        ),
        // Integer mean and count, fractional amount.
        risk_input(
            "u7",
            0.3,
            "GB",
            &[
                ("txn_count_7d", Value::Float64(2.5)),
                ("amount_mean_7d", Value::Int64(7)),
                ("last_country", Value::Text("gb".into())),
            ],
        ),
        missing_amount,
        text_amount,
    ]
}

fn run_risk(path: &str) -> Vec<serde_json::Value> {
    let t = load(path);
    let mut w = t.request_worker().unwrap();
    w.compute(&risk_inputs())
        .unwrap()
        .into_iter()
        .map(|r| match r {
            Ok(f) => features_to_json(&f),
            Err(e) => json!({"error": e.code(), "message": e.to_string()}),
        })
        .collect()
}

#[test]
fn txn_risk_scores_equal_rust_in_js_and_c() {
    let rust = run_risk(guests::RUST_TXN_RISK);
    assert_eq!(rust[0], json!({"amount_vs_mean": 2.0, "is_new_country": false, "risk_score": 0.2}));
    assert_eq!(rust[5]["error"], "bad_input");
    assert_eq!(rust[6]["error"], "bad_input");
    for (lang, path) in txn_risk_builds() {
        let out = run_risk(path);
        assert_eq!(out, rust, "{lang}");
        assert_eq!(serde_json::to_string(&out).unwrap(), serde_json::to_string(&rust).unwrap(), "{lang}");
    }
}

/// StarlingMonkey's GC heap grows with calls and linear memory never shrinks: without recycling
/// the instance passes the mark; with it, no live instance is ever over the mark after a call,
/// the worker recycles, and no event is lost or changed.
#[test]
fn recycling_bounds_the_starlingmonkey_heap() {
    const MARK: usize = 16 << 20;
    // This test is about memory, not time: a generous deadline so that a loaded machine (tests
    // run in parallel) cannot turn a GC pause into a deadline re-run.
    let limits = |recycle_memory_bytes| Limits {
        recycle_memory_bytes,
        memory_bytes: 256 << 20,
        deadline: std::time::Duration::from_secs(10),
        ..Limits::default()
    };
    const MAX_CALLS: usize = 4000;
    let batch: Vec<_> = (0..64)
        .map(|i| {
            event(
                i,
                1_700_000_000_000 + i * 1000,
                json!({"user_id": format!("u{i}"), "amount": i as f64 + 0.5, "country": "DE", "merchant": "m"}),
            )
        })
        .collect();
    let expected: Vec<_> = {
        let t = load(guests::RUST_CARD_TXN);
        t.stream_worker().unwrap().process(&batch).into_iter().map(|r| r.unwrap()).collect()
    };

    // Control: recycling off; the heap does grow past the mark.
    let t = load_with(guests::js_sm_card_txn(), limits(usize::MAX));
    let mut w = t.stream_worker().unwrap();
    let start = {
        w.process(&batch);
        w.instance_memory().unwrap()
    };
    let mut grown = None;
    for call in 0..MAX_CALLS {
        w.process(&batch);
        if w.instance_memory().unwrap() > MARK {
            grown = Some(call);
            break;
        }
    }
    assert!(
        grown.is_some(),
        "the heap stayed under {MARK} bytes (from {start}) for {MAX_CALLS} calls: the control proves nothing"
    );
    let calls_to_grow = grown.unwrap() + 1;

    // Recycling at the mark: bounded, and every output exact.
    let t = load_with(guests::js_sm_card_txn(), limits(MARK));
    let mut w = t.stream_worker().unwrap();
    let mut peak = 0;
    for call in 0..calls_to_grow * 3 {
        let out: Vec<_> = w.process(&batch).into_iter().map(|r| r.expect("event failed")).collect();
        assert!(out == expected, "call {call}: rows differ from Rust's");
        let mem = w.instance_memory().unwrap_or(0);
        assert!(mem <= MARK, "call {call}: live instance at {mem} bytes, over the {MARK} mark");
        peak = peak.max(mem);
    }
    let stats = w.stats();
    assert!(stats.recycles >= 2, "{stats:?}");
    assert_eq!((stats.traps, stats.out_of_memory, stats.deadlines, stats.per_item_reruns), (0, 0, 0, 0), "{stats:?}");
    assert_eq!(stats.instantiations, stats.recycles + 1, "{stats:?}");
    eprintln!(
        "starlingmonkey: heap from {start} B passes {MARK} B after {calls_to_grow} calls of 64; with recycling: peak {peak} B, {} recycles",
        stats.recycles
    );
}

/// Amounts written as payload text: full-precision decimals (17 significant digits, which a
/// parser without correct rounding gets 1 ulp off), signed zeros, extremes of the range.
const EXACT_AMOUNTS: &[&str] = &[
    "9.795666500000001",
    "9.7956665",
    "0.30000000000000004",
    "123456789.12345679",
    "2.2250738585072014e-308",
    "5e-324",
    "1.7976931348623157e308",
    "4.35",
    "0.1",
    "1e-7",
    "0.0",
    "-0.0",
    "1.0000000000000002",
    "8.200000000000001",
];

/// One event per amount in [`EXACT_AMOUNTS`], with the amount's text as it is in the payload.
fn exact_amount_events() -> Vec<wafer_runtime::Event> {
    EXACT_AMOUNTS
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mut e = event(i as i64, 1_700_000_000_000 + i as i64, json!(null));
            e.value = format!(r#"{{"user_id":"u1","amount":{a},"country":"DE","merchant":"m1"}}"#).into_bytes();
            e
        })
        .collect()
}

/// The bits of the `amount` each event's row carries.
fn amount_bits(path: &str) -> Vec<u64> {
    let t = load(path);
    let mut w = t.stream_worker().unwrap();
    w.process(&exact_amount_events())
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let rows = r.unwrap_or_else(|e| panic!("{path}: event {i} ({}) failed: {e}", EXACT_AMOUNTS[i]));
            let amount = rows[0].features.iter().find(|f| f.name == "amount").map(|f| f.value.clone());
            match amount {
                Some(Value::Float64(x)) => x.to_bits(),
                other => panic!("{path}: event {i}: amount {other:?}"),
            }
        })
        .collect()
}

#[test]
fn card_txn_parses_full_precision_floats_and_signed_zeros_identically_in_every_language() {
    // The exact double of each text (Rust's parser is correctly rounded).
    let want: Vec<u64> = EXACT_AMOUNTS.iter().map(|a| a.parse::<f64>().unwrap().to_bits()).collect();
    assert_eq!(want[0], 9.795666500000001f64.to_bits());
    assert_ne!(want[0], want[1], "the two texts are different doubles");
    assert_eq!(want[11], (-0.0f64).to_bits());
    let rust = amount_bits(guests::RUST_CARD_TXN);
    for (i, (got, w)) in rust.iter().zip(&want).enumerate() {
        assert_eq!(f64::from_bits(*got).to_bits(), *w, "rust: {} parsed as {}", EXACT_AMOUNTS[i], f64::from_bits(*got));
    }
    for (lang, path) in card_txn_builds() {
        let got = amount_bits(path);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "{lang}: {} parsed as {:?}", EXACT_AMOUNTS[i], f64::from_bits(*g));
        }
    }
}
