//! JSON rendering of feature values and rows (for `wafer run`, the serving API, error bodies).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value as Json, json};

use crate::bindings::types::{Feature, FeatureRow, Value, ValueType};

/// A value as plain JSON: numbers, strings, booleans, arrays; bytes as base64 text; non-finite
/// floats as the strings "NaN", "Infinity", "-Infinity" (JSON has no such numbers).
pub fn value_to_json(v: &Value) -> Json {
    fn float(f: f64) -> Json {
        serde_json::Number::from_f64(f).map(Json::Number).unwrap_or_else(|| {
            Json::String(if f.is_nan() { "NaN" } else if f > 0.0 { "Infinity" } else { "-Infinity" }.into())
        })
    }
    match v {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Int64(i) => json!(i),
        Value::Float64(f) => float(*f),
        Value::Text(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(B64.encode(b)),
        Value::Float32s(v) => Json::Array(v.iter().map(|f| float(f64::from(*f))).collect()),
        Value::Int64s(v) => json!(v),
        Value::Texts(v) => json!(v),
    }
}

/// Features as a JSON object `{name: value}`.
pub fn features_to_json(features: &[Feature]) -> Json {
    let mut m = Map::with_capacity(features.len());
    for f in features {
        m.insert(f.name.clone(), value_to_json(&f.value));
    }
    Json::Object(m)
}

/// A row as `{"entity_key":…, "event_time_ms":…, "features":{…}}`.
pub fn row_to_json(row: &FeatureRow) -> Json {
    json!({
        "entity_key": row.entity_key,
        "event_time_ms": row.event_time_ms,
        "features": features_to_json(&row.features),
    })
}

/// Decode JSON produced by [`value_to_json`] (or sent by a client) as a value of type `ty`.
/// Integers are accepted for float64; `null` gives `Value::Null`.
pub fn value_from_json(ty: ValueType, j: &Json) -> Option<Value> {
    fn float(j: &Json) -> Option<f64> {
        match j {
            Json::Number(n) => n.as_f64(),
            Json::String(s) => match s.as_str() {
                "NaN" => Some(f64::NAN),
                "Infinity" => Some(f64::INFINITY),
                "-Infinity" => Some(f64::NEG_INFINITY),
                _ => None,
            },
            _ => None,
        }
    }
    if j.is_null() {
        return Some(Value::Null);
    }
    Some(match ty {
        ValueType::Boolean => Value::Boolean(j.as_bool()?),
        ValueType::Int64 => Value::Int64(j.as_i64()?),
        ValueType::Float64 => Value::Float64(float(j)?),
        ValueType::Text => Value::Text(j.as_str()?.to_string()),
        ValueType::Bytes => Value::Bytes(B64.decode(j.as_str()?).ok()?),
        ValueType::Float32s => Value::Float32s(j.as_array()?.iter().map(|x| float(x).map(|f| f as f32)).collect::<Option<_>>()?),
        ValueType::Int64s => Value::Int64s(j.as_array()?.iter().map(|x| x.as_i64()).collect::<Option<_>>()?),
        ValueType::Texts => Value::Texts(j.as_array()?.iter().map(|x| x.as_str().map(String::from)).collect::<Option<_>>()?),
    })
}
