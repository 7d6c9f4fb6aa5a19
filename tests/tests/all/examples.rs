//! The example transforms give exact, documented outputs, in Rust and Python alike.

use serde_json::json;
use wafer_runtime::bindings::{RequestInput, StoredFeature};
use wafer_runtime::transform::json_out::{features_to_json, row_to_json};
use wafer_runtime::{Event, Feature, Header, Value};

use crate::support::{event, guests, load};

pub(crate) fn card_events() -> Vec<Event> {
    let mut evs = vec![
        event(0, 1_700_000_000_000, json!({"user_id":"u1","amount":12.5,"country":"DE","merchant":"m9"})),
        event(1, 1_700_003_600_000, json!({"user_id":"u2","amount":900,"country":"FR","merchant":"m1"})),
        event(
            2,
            1_700_007_200_123,
            json!({"user_id":"u1","amount":500.0,"country":"DE","merchant":"m2","extra":[1,2]}),
        ),
        // Bad inputs: missing field, wrong type, negative, not JSON, not an object, empty user.
        event(3, 1_700_000_000_000, json!({"amount":1.0,"country":"DE","merchant":"m"})),
        event(4, 1_700_000_000_000, json!({"user_id":"u3","amount":"12","country":"DE","merchant":"m"})),
        event(5, 1_700_000_000_000, json!({"user_id":"u3","amount":-1,"country":"DE","merchant":"m"})),
        event(6, 1_700_000_000_000, json!([1, 2, 3])),
        event(7, 1_700_000_000_000, json!({"user_id":"","amount":1,"country":"DE","merchant":"m"})),
        event(8, -3_600_000, json!({"user_id":"u4","amount":0,"country":"US","merchant":"m0"})),
    ];
    evs[0].headers.push(Header { key: "channel".into(), value: b"web".to_vec() });
    let mut not_json = event(9, 1_700_000_000_000, json!(null));
    not_json.value = b"{not json".to_vec();
    evs.push(not_json);
    evs
}

/// What every card_txn implementation must return for `card_events()`: rows, or an error code.
pub(crate) fn expected_card_outputs() -> Vec<serde_json::Value> {
    vec![
        json!([{"entity_key":"u1","event_time_ms":1_700_000_000_000i64,"features":{"amount":12.5,"country":"DE","merchant":"m9","is_high_value":false,"hour_of_day":22,"channel":"web"}}]),
        json!([{"entity_key":"u2","event_time_ms":1_700_003_600_000i64,"features":{"amount":900.0,"country":"FR","merchant":"m1","is_high_value":true,"hour_of_day":23,"channel":null}}]),
        json!([{"entity_key":"u1","event_time_ms":1_700_007_200_123i64,"features":{"amount":500.0,"country":"DE","merchant":"m2","is_high_value":true,"hour_of_day":0,"channel":null}}]),
        json!("bad_input"),
        json!("bad_input"),
        json!("bad_input"),
        json!("bad_input"),
        json!("bad_input"),
        json!([{"entity_key":"u4","event_time_ms":-3_600_000i64,"features":{"amount":0.0,"country":"US","merchant":"m0","is_high_value":false,"hour_of_day":23,"channel":null}}]),
        json!("bad_input"),
    ]
}

pub(crate) fn run_card(path: &str, batch: usize) -> Vec<serde_json::Value> {
    let t = load(path);
    let mut w = t.stream_worker().unwrap();
    let evs = card_events();
    let mut out = Vec::new();
    for chunk in evs.chunks(batch) {
        for r in w.process(chunk) {
            out.push(match r {
                Ok(rows) => serde_json::Value::Array(rows.iter().map(row_to_json).collect()),
                Err(e) => json!(e.code()),
            });
        }
    }
    out
}

#[test]
fn rust_card_txn_exact_rows() {
    let expected = expected_card_outputs();
    for batch in [1, 3, 64] {
        assert_eq!(run_card(guests::RUST_CARD_TXN, batch), expected, "batch size {batch}");
    }
}

#[test]
fn python_card_txn_matches_rust_exactly() {
    let expected = expected_card_outputs();
    let py = run_card(guests::python_card_txn(), 64);
    assert_eq!(py, expected);
    assert_eq!(py, run_card(guests::RUST_CARD_TXN, 64));
    // Python floats and Rust f64 render identically, bit for bit.
    assert_eq!(serde_json::to_string(&py).unwrap(), serde_json::to_string(&expected).unwrap());
}

#[test]
fn card_txn_declares_its_schema() {
    let t = load(guests::RUST_CARD_TXN);
    let info = t.info();
    assert_eq!(info.name, "card_txn");
    let names: Vec<_> = info.outputs.iter().map(|s| (s.name.as_str(), s.value_type.as_str(), s.nullable)).collect();
    assert_eq!(
        names,
        [
            ("amount", "float64", false),
            ("country", "text", false),
            ("merchant", "text", false),
            ("is_high_value", "boolean", false),
            ("hour_of_day", "int64", false),
            ("channel", "text", true)
        ]
    );
    let py = load(guests::python_card_txn());
    assert_eq!(py.info().outputs, info.outputs);
}

pub(crate) fn risk_input(entity: &str, amount: f64, country: &str, stored: &[(&str, Value)]) -> RequestInput {
    RequestInput {
        entity_key: entity.into(),
        request_time_ms: 1_700_000_000_000,
        params: vec![
            Feature { name: "amount".into(), value: Value::Float64(amount) },
            Feature { name: "country".into(), value: Value::Text(country.into()) },
        ],
        stored: stored
            .iter()
            .map(|(n, v)| StoredFeature { name: format!("user_stats:{n}"), value: v.clone(), event_time_ms: None })
            .collect(),
    }
}

#[test]
fn txn_risk_exact_scores() {
    let t = load(guests::RUST_TXN_RISK);
    assert_eq!(t.info().reads, ["user_stats:txn_count_7d", "user_stats:amount_mean_7d", "user_stats:last_country"]);
    let mut w = t.request_worker().unwrap();
    let inputs = vec![
        // Known user, same country, mean 50: 100/50 = 2 → 0.2; 10 txns → no bonus.
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
        // New country, 2 txns: 0.1*min(1000/10, 5) + 0.4 + 0.1 = 1.0 (capped).
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
        // Unknown user: every stored feature null → mean 1, new country, count 0: 0.1*1 + 0.4 + 0.1 = 0.6.
        risk_input(
            "u3",
            1.0,
            "DE",
            &[("txn_count_7d", Value::Null), ("amount_mean_7d", Value::Null), ("last_country", Value::Null)],
        ),
        // Mean 0 counts as missing: 3/1 = 3 → 0.3, same country, 3 txns → 0.3.
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
    ];
    let out: Vec<_> = w.compute(&inputs).unwrap().into_iter().map(|r| features_to_json(&r.unwrap())).collect();
    assert_eq!(
        out,
        [
            json!({"amount_vs_mean": 2.0, "is_new_country": false, "risk_score": 0.2}),
            json!({"amount_vs_mean": 100.0, "is_new_country": true, "risk_score": 1.0}),
            json!({"amount_vs_mean": 1.0, "is_new_country": true, "risk_score": 0.1 * 1.0_f64 + 0.4 + 0.1}),
            json!({"amount_vs_mean": 3.0, "is_new_country": false, "risk_score": 0.1 * 3.0_f64}),
        ]
    );
    // A missing required param is bad input for that entity only.
    let mut bad = risk_input("u5", 1.0, "DE", &[]);
    bad.params.retain(|p| p.name != "amount");
    let r = w.compute(&[bad, inputs[0].clone()]).unwrap();
    assert_eq!(r[0].as_ref().unwrap_err().code(), "bad_input");
    assert!(r[1].is_ok());
}
