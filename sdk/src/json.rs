//! Decoding JSON event payloads, with `bad-input` errors that name the field.

pub use serde_json::Value as Json;

use crate::TransformError;

fn bad(msg: String) -> TransformError {
    TransformError::BadInput(msg)
}

/// Parse a JSON object payload.
pub fn parse(bytes: &[u8]) -> Result<Json, TransformError> {
    let v: Json = serde_json::from_slice(bytes).map_err(|e| bad(format!("payload is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(bad("payload must be a JSON object".into()));
    }
    Ok(v)
}

fn field<'a>(v: &'a Json, name: &str) -> Result<&'a Json, TransformError> {
    match v.get(name) {
        None | Some(Json::Null) => Err(bad(format!("missing field `{name}`"))),
        Some(x) => Ok(x),
    }
}

/// A required string field.
pub fn str<'a>(v: &'a Json, name: &str) -> Result<&'a str, TransformError> {
    field(v, name)?.as_str().ok_or_else(|| bad(format!("field `{name}` must be a string")))
}

/// An optional string field (`None` if absent or null).
pub fn opt_str<'a>(v: &'a Json, name: &str) -> Result<Option<&'a str>, TransformError> {
    match v.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(x) => x.as_str().map(Some).ok_or_else(|| bad(format!("field `{name}` must be a string"))),
    }
}

/// A required number field, as f64.
pub fn f64(v: &Json, name: &str) -> Result<f64, TransformError> {
    field(v, name)?.as_f64().ok_or_else(|| bad(format!("field `{name}` must be a number")))
}

/// A required integer field.
pub fn i64(v: &Json, name: &str) -> Result<i64, TransformError> {
    field(v, name)?.as_i64().ok_or_else(|| bad(format!("field `{name}` must be an integer")))
}

/// A required boolean field.
pub fn bool(v: &Json, name: &str) -> Result<bool, TransformError> {
    field(v, name)?.as_bool().ok_or_else(|| bad(format!("field `{name}` must be a boolean")))
}
