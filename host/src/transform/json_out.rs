//! JSON rendering of feature values and rows (for `wafer run`, the serving API, error bodies).

use std::io::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value as Json, json};

use crate::bindings::types::{Feature, FeatureRow, Value, ValueType};

/// A value as plain JSON: numbers, strings, booleans, arrays; bytes as base64 text; non-finite
/// floats as the strings "NaN", "Infinity", "-Infinity" (JSON has no such numbers).
pub fn value_to_json(v: &Value) -> Json {
    fn float(f: f64) -> Json {
        serde_json::Number::from_f64(f).map(Json::Number).unwrap_or_else(|| {
            Json::String(
                if f.is_nan() {
                    "NaN"
                } else if f > 0.0 {
                    "Infinity"
                } else {
                    "-Infinity"
                }
                .into(),
            )
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

/// Write `v` as [`value_to_json`] would serialize it, without building a JSON tree.
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    fn float(out: &mut Vec<u8>, f: f64) {
        if f.is_finite() {
            let _ = serde_json::to_writer(&mut *out, &f);
        } else {
            out.extend_from_slice(if f.is_nan() {
                b"\"NaN\""
            } else if f > 0.0 {
                b"\"Infinity\""
            } else {
                b"\"-Infinity\""
            });
        }
    }
    fn list<T>(out: &mut Vec<u8>, items: &[T], mut each: impl FnMut(&mut Vec<u8>, &T)) {
        out.push(b'[');
        for (i, x) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            each(out, x);
        }
        out.push(b']');
    }
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int64(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float64(f) => float(out, *f),
        Value::Text(s) => write_str(out, s),
        Value::Bytes(b) => write_str(out, &B64.encode(b)),
        Value::Float32s(v) => list(out, v, |o, f| float(o, f64::from(*f))),
        Value::Int64s(v) => list(out, v, |o, i| {
            let _ = write!(o, "{i}");
        }),
        Value::Texts(v) => list(out, v, |o, s| write_str(o, s)),
    }
}

/// Write a JSON string literal (escaped).
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
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
        ValueType::Float32s => {
            Value::Float32s(j.as_array()?.iter().map(|x| float(x).map(|f| f as f32)).collect::<Option<_>>()?)
        }
        ValueType::Int64s => Value::Int64s(j.as_array()?.iter().map(|x| x.as_i64()).collect::<Option<_>>()?),
        ValueType::Texts => {
            Value::Texts(j.as_array()?.iter().map(|x| x.as_str().map(String::from)).collect::<Option<_>>()?)
        }
    })
}

#[cfg(test)]
mod write_tests {
    use super::*;

    #[test]
    fn write_value_matches_the_json_tree_for_every_variant() {
        let values = [
            Value::Null,
            Value::Boolean(true),
            Value::Int64(-42),
            Value::Float64(0.1 + 0.2),
            Value::Float64(1.0),
            Value::Float64(f64::NAN),
            Value::Float64(f64::NEG_INFINITY),
            Value::Text("a \"quoted\"\n\u{1}é".into()),
            Value::Bytes(vec![0, 255, 7]),
            Value::Float32s(vec![1.5, f32::INFINITY]),
            Value::Int64s(vec![1, -2, i64::MAX]),
            Value::Texts(vec!["x".into(), "\\".into()]),
            Value::Texts(vec![]),
        ];
        for v in values {
            let mut out = Vec::new();
            write_value(&mut out, &v);
            assert_eq!(String::from_utf8(out).unwrap(), value_to_json(&v).to_string(), "{v:?}");
        }
    }
}
