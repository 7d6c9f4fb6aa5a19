//! The JSONL event file format read by `wafer run` (and `wafer backfill`).
//!
//! One JSON object per line:
//!
//! ```json
//! {"timestamp_ms": 1700000000000, "value": {"user_id": "u1", "amount": 12.5},
//!  "key": "u1", "topic": "txns", "partition": 0, "offset": 7, "headers": {"source": "pos"}}
//! ```
//!
//! - `timestamp_ms` (required): event time, ms since the Unix epoch. It is the transform's clock.
//! - the payload, exactly one of: `value` (any JSON; the payload is its compact JSON text),
//!   `value_text` (a string; the payload is its UTF-8 bytes), `value_base64` (binary payload).
//! - `key` (optional): string (UTF-8 bytes) or `key_base64`.
//! - `topic` (default: the file's topic, `events`), `partition` (default 0), `offset` (default:
//!   the 0-based line number among events).
//! - `headers` (optional): object of string values.
//!
//! Blank lines and lines starting with `#` are skipped.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;

use crate::bindings::types::{Event, Header};

/// A line that is not a valid event.
#[derive(Debug, thiserror::Error)]
pub enum EventLineError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("missing `timestamp_ms` (event time in ms since the Unix epoch)")]
    MissingTimestamp,
    #[error("the payload must be given by exactly one of `value`, `value_text`, `value_base64`")]
    Payload,
    #[error("`{field}` is not valid base64: {error}")]
    Base64 { field: &'static str, error: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    timestamp_ms: Option<i64>,
    value: Option<serde_json::Value>,
    value_text: Option<String>,
    value_base64: Option<String>,
    key: Option<String>,
    key_base64: Option<String>,
    topic: Option<String>,
    partition: Option<i32>,
    offset: Option<i64>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
}

/// Parse one line into an event. `default_offset` is used when the line has no `offset`.
pub fn parse_line(line: &str, default_topic: &str, default_offset: i64) -> Result<Event, EventLineError> {
    let l: Line = serde_json::from_str(line).map_err(|e| EventLineError::Json(e.to_string()))?;
    let timestamp_ms = l.timestamp_ms.ok_or(EventLineError::MissingTimestamp)?;
    let value = match (l.value, l.value_text, l.value_base64) {
        (Some(v), None, None) => serde_json::to_vec(&v).map_err(|e| EventLineError::Json(e.to_string()))?,
        (None, Some(t), None) => t.into_bytes(),
        (None, None, Some(b)) => {
            B64.decode(b).map_err(|e| EventLineError::Base64 { field: "value_base64", error: e.to_string() })?
        }
        _ => return Err(EventLineError::Payload),
    };
    let key = match (l.key, l.key_base64) {
        (Some(k), _) => Some(k.into_bytes()),
        (None, Some(b)) => {
            Some(B64.decode(b).map_err(|e| EventLineError::Base64 { field: "key_base64", error: e.to_string() })?)
        }
        (None, None) => None,
    };
    Ok(Event {
        topic: l.topic.unwrap_or_else(|| default_topic.to_string()),
        partition: l.partition.unwrap_or(0),
        offset: l.offset.unwrap_or(default_offset),
        timestamp_ms,
        key,
        value,
        headers: l.headers.into_iter().map(|(key, v)| Header { key, value: v.into_bytes() }).collect(),
    })
}

/// Whether a line carries no event.
pub fn is_blank(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}
