//! `wafer run` over a request transform: one request input per JSONL line, features out.
//!
//! Line format: {"entity_key":"u1","request_time_ms":1700000000000,"params":{"amount":12.5},
//! "stored":{"user_stats:txn_count_7d":3}}. Params are decoded with the types the transform
//! declares; stored values by their JSON type (integer → int64, other numbers → float64, string →
//! text, bool, null); declared reads that a line leaves out are null.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::Result;
use serde_json::{Map, Value as Json};
use wafer_runtime::bindings::{RequestInput, StoredFeature};
use wafer_runtime::events::is_blank;
use wafer_runtime::transform::json_out::{features_to_json, value_from_json};
use wafer_runtime::{Feature, Transform, TransformInfo, Value};

/// Why a request line could not be turned into a request input.
#[derive(Debug, thiserror::Error)]
enum LineError {
    #[error("not a JSON object: {0}")]
    Json(String),
    #[error("missing `{0}`")]
    Missing(&'static str),
    #[error("`{0}` must be {1}")]
    Type(&'static str, &'static str),
    #[error("param `{name}` is not a valid {ty}")]
    Param { name: String, ty: &'static str },
    #[error("stored feature `{0}` must be null, a boolean, a number, a string or an array of numbers/strings")]
    Stored(String),
}

pub fn run(transform: &Transform, reader: Box<dyn BufRead>, out: &mut impl Write) -> Result<ExitCode> {
    let mut worker = transform.request_worker()?;
    let (mut ok, mut failed) = (0u64, 0u64);
    for (i, line) in reader.lines().enumerate() {
        let line_no = i + 1;
        let line = line?;
        if is_blank(&line) {
            continue;
        }
        let input = match parse_line(&line, transform.info()) {
            Ok(input) => input,
            Err(e) => {
                failed += 1;
                eprintln!("line {line_no}: invalid request line: {e} [invalid_request]");
                continue;
            }
        };
        // One call per line, as a serving request would make for one entity.
        match worker.compute(std::slice::from_ref(&input)).map(|mut r| r.pop()) {
            Ok(Some(Ok(features))) => {
                ok += 1;
                let j = serde_json::json!({"line": line_no, "entity_key": input.entity_key, "features": features_to_json(&features)});
                serde_json::to_writer(&mut *out, &j)?;
                out.write_all(b"\n")?;
            }
            Ok(Some(Err(e))) | Err(e) => {
                failed += 1;
                eprintln!("line {line_no}: {e} [{}]", e.code());
            }
            Ok(None) => {
                failed += 1;
                eprintln!("line {line_no}: the transform returned no result [contract]");
            }
        }
    }
    out.flush()?;
    eprintln!("{} requests: {ok} ok, {failed} failed", ok + failed);
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn parse_line(line: &str, info: &TransformInfo) -> Result<RequestInput, LineError> {
    let j: Json = serde_json::from_str(line).map_err(|e| LineError::Json(e.to_string()))?;
    let obj = j.as_object().ok_or_else(|| LineError::Json("found another JSON value".into()))?;
    let entity_key = obj
        .get("entity_key")
        .ok_or(LineError::Missing("entity_key"))?
        .as_str()
        .ok_or(LineError::Type("entity_key", "a string"))?;
    let request_time_ms = match obj.get("request_time_ms") {
        None => 0,
        Some(t) => t.as_i64().ok_or(LineError::Type("request_time_ms", "an integer (milliseconds)"))?,
    };
    let empty = Map::new();
    let params_json = match obj.get("params") {
        None => &empty,
        Some(p) => p.as_object().ok_or(LineError::Type("params", "an object"))?,
    };
    let mut params = Vec::with_capacity(info.params.len());
    for spec in &info.params {
        // Missing params are left out: the transform reports them as bad input.
        let Some(v) = params_json.get(&spec.name) else { continue };
        let value = value_from_json(spec.value_type, v)
            .ok_or_else(|| LineError::Param { name: spec.name.clone(), ty: type_name(spec.value_type) })?;
        params.push(Feature { name: spec.name.clone(), value });
    }
    let stored_json = match obj.get("stored") {
        None => &empty,
        Some(s) => s.as_object().ok_or(LineError::Type("stored", "an object"))?,
    };
    let stored = info
        .reads
        .iter()
        .map(|name| {
            let value = match stored_json.get(name) {
                None => Value::Null,
                Some(v) => infer(v).ok_or_else(|| LineError::Stored(name.clone()))?,
            };
            Ok(StoredFeature { name: name.clone(), value, event_time_ms: None })
        })
        .collect::<Result<_, LineError>>()?;
    Ok(RequestInput { entity_key: entity_key.to_string(), request_time_ms, params, stored })
}

fn type_name(t: wafer_runtime::ValueType) -> &'static str {
    use wafer_runtime::ValueType as T;
    match t {
        T::Boolean => "boolean",
        T::Int64 => "int64",
        T::Float64 => "float64",
        T::Text => "text",
        T::Bytes => "bytes (base64)",
        T::Float32s => "float32s",
        T::Int64s => "int64s",
        T::Texts => "texts",
    }
}

/// A stored value's type from its JSON.
fn infer(v: &Json) -> Option<Value> {
    Some(match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int64(i),
            None => Value::Float64(n.as_f64()?),
        },
        Json::String(s) => Value::Text(s.clone()),
        Json::Array(a) if a.iter().all(|x| x.is_i64()) => Value::Int64s(a.iter().filter_map(Json::as_i64).collect()),
        Json::Array(a) if a.iter().all(Json::is_number) => {
            Value::Float32s(a.iter().filter_map(|x| x.as_f64().map(|f| f as f32)).collect())
        }
        Json::Array(a) if a.iter().all(Json::is_string) => {
            Value::Texts(a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
        }
        _ => return None,
    })
}
