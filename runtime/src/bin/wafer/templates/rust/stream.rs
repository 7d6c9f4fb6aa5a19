//! {{name}}: events like {"user_id":"u1","amount":12.5} → one row per user with `amount` and
//! `is_large`. Bad input (not JSON, a missing field, a negative amount) is a typed error.

wit_bindgen::generate!({ path: "wit", world: "stream-transform" });

use exports::wafer::transform::describe::Guest as Describe;
use exports::wafer::transform::stream_processor::Guest as StreamProcessor;
use wafer::transform::host::{Level, log};
use wafer::transform::types::{Event, Feature, FeatureRow, FeatureSpec, TransformError, TransformInfo, Value, ValueType};

struct Component;

fn spec(name: &str, value_type: ValueType) -> FeatureSpec {
    FeatureSpec { name: name.into(), value_type, nullable: false }
}

fn transform(event: &Event) -> Result<Vec<FeatureRow>, TransformError> {
    let bad = |m: String| TransformError::BadInput(m);
    let v: serde_json::Value = serde_json::from_slice(&event.value).map_err(|e| bad(format!("payload is not valid JSON: {e}")))?;
    let user = v.get("user_id").and_then(|u| u.as_str()).ok_or_else(|| bad("field `user_id` must be a string".into()))?;
    let amount = v.get("amount").and_then(|a| a.as_f64()).ok_or_else(|| bad("field `amount` must be a number".into()))?;
    if amount < 0.0 {
        log(Level::Warn, &format!("rejecting negative amount {amount} for {user}"));
        return Err(bad(format!("field `amount` must be non-negative, got {amount}")));
    }
    Ok(vec![FeatureRow {
        entity_key: user.to_string(),
        event_time_ms: event.timestamp_ms,
        features: vec![
            Feature { name: "amount".into(), value: Value::Float64(amount) },
            Feature { name: "is_large".into(), value: Value::Boolean(amount >= 100.0) },
        ],
    }])
}

impl Describe for Component {
    fn describe() -> TransformInfo {
        TransformInfo {
            name: "{{name}}".into(),
            version: "0.1.0".into(),
            outputs: vec![spec("amount", ValueType::Float64), spec("is_large", ValueType::Boolean)],
            params: vec![],
            reads: vec![],
        }
    }
}

impl StreamProcessor for Component {
    fn process(events: Vec<Event>) -> Vec<Result<Vec<FeatureRow>, TransformError>> {
        events.iter().map(transform).collect()
    }
}

export!(Component);
