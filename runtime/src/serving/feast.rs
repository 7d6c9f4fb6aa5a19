//! Feast's feature-server protocol (as Feast 0.67's Python server defines it), so Feast's own SDK
//! (`online_store: type: remote`) and plain HTTP clients of `feast serve` can point at Wafer.
//!
//! **Reads**, `POST /get-online-features`: `{"features": ["view:feature", ...]` or
//! `"feature_service": "name"`, `"entities": {"<join key>": [...], "<request data column>": [...]},
//! "full_feature_names": bool}`. A column whose name is the `entity` of a view is a join key; every
//! other column is request data. Entity values may be strings or integers (integers are keyed by
//! their decimal text). Response: `{"metadata": {"feature_names": [join keys..., features...]},
//! "results": [{"values", "statuses", "event_timestamps"}, ...]}`, one result per column, join-key
//! columns first (sorted by name). Statuses: `PRESENT`, `NOT_FOUND`, `OUTSIDE_MAX_AGE`; timestamps
//! RFC 3339 UTC, the epoch when there is none. Feature names are `feature` or, with
//! `full_feature_names`, `view__feature`.
//!
//! **Writes**: `POST /write-to-online-store` `{"feature_view_name", "df": {column: [...]}}` (what the
//! SDK's `write_to_online_store()` and `push()` send to a remote store) writes the rows of a batch
//! view (newest event time wins, as `wafer materialize`), or runs them through a stream view's
//! pipeline as events; `POST /push` `{"push_source_name", "df", "to"}` does the same for the view
//! named by the push source. The event time is the `event_timestamp` column (RFC 3339, naive
//! means UTC, or integer ms), else the request time.
//!
//! As in Feast (pydantic models), unknown request fields are ignored and a field of the wrong type
//! is refused (422 `{"detail": [...]}`).
//!
//! **Errors** are Feast's: the body is a JSON string holding `{"module", "class", "message"}`,
//! which the SDK turns back into that exception class. An unknown view is 404
//! `FeatureViewNotFoundException`, an unknown feature service 404
//! `FeatureServiceNotFoundException`, missing request data 404
//! `RequestDataNotFoundInEntityRowsException`, an unknown push source 422
//! `PushSourceNotFoundException`. Where Feast raises a plain Python error (500 with its text:
//! unknown feature in a known view, missing join key, bad values), Wafer answers 400 with class
//! `FeastError`; transform and store failures keep Wafer's 500/503/504. Every error also carries
//! Wafer's code in the `x-wafer-error-code` header.
//!
//! **Remaining differences**: `to: "offline"` pushes are refused (Wafer has no offline store for
//! pushes); `include_feature_view_version_metadata` is accepted and ignored (no versioned views);
//! `transform_on_write` and `allow_registry_cache` are ignored (a stream view always runs its
//! transform; the catalog is always current); join-key columns come before features sorted by
//! name; `/materialize`, `/retrieve-online-documents` and `/search` are not served.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value as Json;

use super::{Catalog, Entities, Plan, ServeError, Table};
use crate::bindings::types::{Event, FeatureRow, ValueType};
use crate::materialize::cell::Cell;
use crate::time::write_rfc3339;
use crate::transform::TransformError;
use crate::transform::json_out::{write_str, write_value};

/// A read request. Unknown fields are ignored, as Feast ignores them.
#[derive(Debug, Deserialize)]
pub struct FeastRequest {
    #[serde(default)]
    pub features: Option<Vec<String>>,
    #[serde(default)]
    pub feature_service: Option<String>,
    pub entities: HashMap<String, Vec<Json>>,
    #[serde(default)]
    pub full_feature_names: bool,
    /// Sent by the SDK on every read; Wafer has no versioned views, so it changes nothing.
    #[serde(default)]
    pub include_feature_view_version_metadata: bool,
    /// Wafer extension: serve as of this time (ms since the epoch); default now.
    #[serde(default)]
    pub as_of: Option<i64>,
}

/// Columns of rows, as Feast's `df` (a pandas `DataFrame.to_dict(orient="list")`).
pub type Df = HashMap<String, Vec<Json>>;

/// `POST /write-to-online-store`.
#[derive(Debug, Deserialize)]
pub struct WriteRequest {
    pub feature_view_name: String,
    pub df: Df,
    #[serde(default)]
    pub allow_registry_cache: Option<bool>,
    #[serde(default)]
    pub transform_on_write: Option<bool>,
}

/// `POST /push`.
#[derive(Debug, Deserialize)]
pub struct PushRequest {
    pub push_source_name: String,
    pub df: Df,
    #[serde(default)]
    pub allow_registry_cache: Option<bool>,
    #[serde(default = "online")]
    pub to: String,
    #[serde(default)]
    pub transform_on_write: Option<bool>,
}

fn online() -> String {
    "online".into()
}

/// The column holding each row's event time.
pub const EVENT_TIMESTAMP: &str = "event_timestamp";
/// Columns the SDK adds to written rows that are not features.
const META_COLUMNS: [&str; 2] = [EVENT_TIMESTAMP, "created"];

/// A Feast error: status, Feast's exception class, message, and Wafer's code.
#[derive(Debug, Clone, PartialEq)]
pub struct FeastError {
    pub status: u16,
    /// A class of the `feast.errors` module.
    pub class: &'static str,
    pub message: String,
    /// Wafer's stable code (metric label, `x-wafer-error-code`).
    pub code: &'static str,
}

impl FeastError {
    /// A 400 for input Feast would refuse with a plain Python error.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self { status: 400, class: "FeastError", message: message.into(), code }
    }

    pub fn view_not_found(name: &str) -> Self {
        Self {
            status: 404,
            class: "FeatureViewNotFoundException",
            message: format!("Feature view {name} does not exist"),
            code: "unknown_views",
        }
    }

    pub fn push_source_not_found(name: &str) -> Self {
        Self {
            status: 422,
            class: "PushSourceNotFoundException",
            message: format!("Unable to find push source '{name}'."),
            code: "unknown_push_source",
        }
    }

    /// Feast's body: a JSON string whose text is `{"module","class","message"}` (what
    /// `FeastError.to_error_detail()` returns and FastAPI encodes once more).
    pub fn body(&self) -> Vec<u8> {
        let detail = serde_json::json!({"module": "feast.errors", "class": self.class, "message": self.message});
        let mut out = Vec::with_capacity(self.message.len() + 96);
        write_str(&mut out, &detail.to_string());
        out
    }
}

impl From<&ServeError> for FeastError {
    fn from(e: &ServeError) -> Self {
        let code = e.code();
        let (status, class, message) = match e {
            ServeError::UnknownViews(v) => {
                let mut m = format!("Feature view {} does not exist", v.first().map_or("", String::as_str));
                if v.len() > 1 {
                    m.push_str(&format!(" (unknown views: {})", v.join(", ")));
                }
                (404, "FeatureViewNotFoundException", m)
            }
            ServeError::UnknownService(s) => {
                (404, "FeatureServiceNotFoundException", format!("Feature service {s} does not exist"))
            }
            ServeError::MissingRequestData { view, params } => (
                404,
                "RequestDataNotFoundInEntityRowsException",
                format!(
                    "Required request data source features [{}] not found in the entity rows, but required by feature views (`{view}`)",
                    params.iter().map(|p| format!("'{p}'")).collect::<Vec<_>>().join(", ")
                ),
            ),
            ServeError::Transform { error: TransformError::Deadline(_), .. } => (504, "FeastError", e.to_string()),
            ServeError::Transform { .. } => (500, "FeastError", e.to_string()),
            ServeError::Store(_) => (503, "FeastError", e.to_string()),
            _ => (400, "FeastError", e.to_string()),
        };
        Self { status, class, message, code }
    }
}

impl From<ServeError> for FeastError {
    fn from(e: ServeError) -> Self {
        Self::from(&e)
    }
}

/// A Feast request split into what [`Catalog::get`] takes.
pub struct Parsed {
    pub plan: std::sync::Arc<Plan>,
    /// Join-key columns (in request order) with their keys as sent.
    pub join_keys: Vec<(String, Vec<Json>)>,
    pub keys: HashMap<String, Vec<String>>,
    pub request_data: HashMap<String, Vec<Json>>,
}

pub fn parse(catalog: &Catalog, req: FeastRequest) -> Result<Parsed, ServeError> {
    let features: &[String] = match (&req.features, &req.feature_service) {
        (Some(f), None) => f,
        (None, Some(s)) => catalog.service(s)?,
        // The SDK sends a service and no list; Feast's server prefers the service when both come.
        (Some(f), Some(s)) if f.is_empty() => catalog.service(s)?,
        (Some(_), Some(_)) => {
            return Err(ServeError::Invalid("give either `features` or `feature_service`, not both".into()));
        }
        (None, None) => return Err(ServeError::Invalid("`features` or `feature_service` is required".into())),
    };
    let plan = catalog.plan_shared(features, None)?;
    let mut columns: Vec<(String, Vec<Json>)> = req.entities.into_iter().collect();
    columns.sort_by(|a, b| a.0.cmp(&b.0));
    let (mut join_keys, mut keys, mut request_data) = (Vec::new(), HashMap::new(), HashMap::new());
    for (name, values) in columns {
        if catalog.is_entity(&name) {
            let mut ks = Vec::with_capacity(values.len());
            for (row, v) in values.iter().enumerate() {
                ks.push(key_text(v).ok_or_else(|| {
                    ServeError::Invalid(format!("entity `{name}` row {row}: keys must be strings or integers, got {v}"))
                })?);
            }
            keys.insert(name.clone(), ks);
            join_keys.push((name, values));
        } else {
            request_data.insert(name, values);
        }
    }
    Ok(Parsed { plan, join_keys, keys, request_data })
}

/// An entity key as text: a string, or an integer's decimal text.
fn key_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// Serve a parsed Feast request.
pub async fn serve(
    catalog: &Catalog,
    store: &dyn crate::store::OnlineStore,
    p: &Parsed,
    t: i64,
) -> Result<Table, ServeError> {
    catalog.get(store, &p.plan, &Entities::ByType(&p.keys), &p.request_data, t).await
}

/// Feast's response body, written straight to bytes.
pub fn response(p: &Parsed, table: &Table, full_feature_names: bool) -> Vec<u8> {
    let n = table.rows.len();
    let cols = p.join_keys.len() + p.plan.names.len();
    let mut out = Vec::with_capacity(64 + cols * (48 + n * 48));
    out.extend_from_slice(b"{\"metadata\":{\"feature_names\":[");
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
    };
    for (k, _) in &p.join_keys {
        sep(&mut out);
        write_str(&mut out, k);
    }
    for f in &p.plan.names {
        sep(&mut out);
        match (f.split_once(':'), full_feature_names) {
            (Some((v, x)), true) => {
                out.push(b'"');
                // View and feature names are plain identifiers, but escape them anyway.
                let mut s = Vec::with_capacity(f.len() + 2);
                write_str(&mut s, v);
                out.extend_from_slice(&s[1..s.len() - 1]);
                out.extend_from_slice(b"__");
                s.clear();
                write_str(&mut s, x);
                out.extend_from_slice(&s[1..s.len() - 1]);
                out.push(b'"');
            }
            (Some((_, x)), false) => write_str(&mut out, x),
            (None, _) => write_str(&mut out, f),
        }
    }
    out.extend_from_slice(b"]},\"results\":[");
    for (i, (_, vals)) in p.join_keys.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"values\":");
        let _ = serde_json::to_writer(&mut out, vals);
        out.extend_from_slice(b",\"statuses\":[");
        repeat(&mut out, b"\"PRESENT\"", n);
        out.extend_from_slice(b"],\"event_timestamps\":[");
        repeat(&mut out, b"\"1970-01-01T00:00:00Z\"", n);
        out.extend_from_slice(b"]}");
    }
    for col in 0..p.plan.names.len() {
        if col > 0 || !p.join_keys.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"values\":[");
        for (r, row) in table.rows.iter().enumerate() {
            if r > 0 {
                out.push(b',');
            }
            write_value(&mut out, &row[col].value);
        }
        out.extend_from_slice(b"],\"statuses\":[");
        for (r, row) in table.rows.iter().enumerate() {
            if r > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(row[col].status.feast().as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b"],\"event_timestamps\":[");
        // Rows of a column often share a time (request-view outputs: the request's; batch rows:
        // their load): write each distinct run once.
        let mut last: Option<(i64, std::ops::Range<usize>)> = None;
        for (r, row) in table.rows.iter().enumerate() {
            if r > 0 {
                out.push(b',');
            }
            let ms = row[col].event_time_ms.unwrap_or(0);
            match &last {
                Some((t, text)) if *t == ms => out.extend_from_within(text.clone()),
                _ => {
                    let start = out.len();
                    out.push(b'"');
                    write_rfc3339(&mut out, ms);
                    out.push(b'"');
                    last = Some((ms, start..out.len()));
                }
            }
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}");
    out
}

fn repeat(out: &mut Vec<u8>, item: &[u8], n: usize) {
    for i in 0..n {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
}

/// The number of rows of a `df` (every column must have it).
fn df_len(df: &Df) -> Result<usize, FeastError> {
    let n = df.values().next().map_or(0, Vec::len);
    if let Some((name, col)) = df.iter().find(|(_, c)| c.len() != n) {
        return Err(FeastError::invalid(
            "invalid_request",
            format!("df column `{name}` has {} values, others {n}", col.len()),
        ));
    }
    Ok(n)
}

/// The event time of row `row`: the `event_timestamp` column, else `now`.
fn event_time(df: &Df, row: usize, now: i64) -> Result<i64, String> {
    match df.get(EVENT_TIMESTAMP).and_then(|c| c.get(row)) {
        None | Some(Json::Null) => Ok(now),
        Some(v) => Cell::from_json(v).to_time_ms().map_err(|e| format!("column `{EVENT_TIMESTAMP}`: {e}")),
    }
}

/// Most bad rows named in one error.
const MAX_NAMED_ROWS: usize = 5;

/// A batch view's rows from `df`: the `entity` column, the event time, and each feature (typed as
/// declared; a feature column absent from `df` is written as null). Every bad row is refused at
/// once (the first few named), so nothing of a bad request is written.
pub fn df_rows(
    df: &Df,
    entity: &str,
    features: &[(String, ValueType)],
    now: i64,
) -> Result<Vec<FeatureRow>, FeastError> {
    let n = df_len(df)?;
    let Some(keys) = df.get(entity) else {
        return Err(FeastError::invalid("missing_entity", format!("df has no join key column `{entity}`")));
    };
    if let Some(unknown) = df
        .keys()
        .find(|c| *c != entity && !META_COLUMNS.contains(&c.as_str()) && !features.iter().any(|(f, _)| f == *c))
    {
        return Err(FeastError::invalid(
            "unknown_features",
            format!("df column `{unknown}` is not a feature of the view"),
        ));
    }
    let columns = crate::materialize::Columns {
        entity: entity.to_owned(),
        timestamp: EVENT_TIMESTAMP.to_owned(),
        features: features.to_vec(),
    };
    let cols: Vec<Option<&Vec<Json>>> = features.iter().map(|(f, _)| df.get(f)).collect();
    let (mut rows, mut bad) = (Vec::with_capacity(n), Vec::new());
    // `row` indexes every column and names the row in errors: a range is the clear loop here.
    #[allow(clippy::needless_range_loop)]
    for row in 0..n {
        let ts = match event_time(df, row, now) {
            Ok(t) => Cell::Int(t),
            Err(e) => {
                bad.push(format!("row {row}: {e}"));
                continue;
            }
        };
        let cells = cols.iter().map(|c| c.and_then(|c| c.get(row)).map_or(Cell::Null, Cell::from_json));
        match columns.row(Cell::from_json(&keys[row]), ts, cells) {
            Ok(r) => rows.push(r),
            Err(e) => bad.push(format!("row {row}: {e}")),
        }
    }
    if !bad.is_empty() {
        let more = bad.len().saturating_sub(MAX_NAMED_ROWS);
        bad.truncate(MAX_NAMED_ROWS);
        let tail = if more > 0 { format!(" (and {more} more)") } else { String::new() };
        return Err(FeastError::invalid("invalid_rows", format!("nothing written: {}{tail}", bad.join("; "))));
    }
    Ok(rows)
}

/// A stream view's events from `df`: each row becomes one event whose value is the row as a JSON
/// object (without `event_timestamp` and `created`), at its event time.
pub fn df_events(df: &Df, topic: &str, now: i64) -> Result<Vec<Event>, FeastError> {
    let n = df_len(df)?;
    let cols: Vec<(&String, &Vec<Json>)> = df.iter().filter(|(c, _)| !META_COLUMNS.contains(&c.as_str())).collect();
    let mut events = Vec::with_capacity(n);
    let mut value = Vec::with_capacity(128);
    for row in 0..n {
        let timestamp_ms =
            event_time(df, row, now).map_err(|e| FeastError::invalid("invalid_rows", format!("row {row}: {e}")))?;
        value.clear();
        value.push(b'{');
        for (i, (name, col)) in cols.iter().enumerate() {
            if i > 0 {
                value.push(b',');
            }
            write_str(&mut value, name);
            value.push(b':');
            let _ = serde_json::to_writer(&mut value, &col[row]);
        }
        value.push(b'}');
        events.push(Event {
            topic: topic.to_owned(),
            partition: 0,
            offset: row as i64,
            timestamp_ms,
            key: None,
            value: value.clone(),
            headers: Vec::new(),
        });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_what_the_sdk_decodes() {
        let e = FeastError::view_not_found("nope");
        let outer: Json = serde_json::from_slice(&e.body()).unwrap();
        let inner: Json = serde_json::from_str(outer.as_str().expect("a JSON string")).unwrap();
        assert_eq!(
            inner,
            serde_json::json!({"module": "feast.errors", "class": "FeatureViewNotFoundException", "message": "Feature view nope does not exist"})
        );
        let e = FeastError::from(ServeError::MissingRequestData { view: "risk".into(), params: vec!["amount".into()] });
        assert_eq!(
            (e.status, e.class, e.code),
            (404, "RequestDataNotFoundInEntityRowsException", "missing_request_data")
        );
        assert!(e.message.starts_with("Required request data source features ['amount'] not found"), "{}", e.message);
        let e = FeastError::from(ServeError::UnknownFeatures(vec!["v:x".into()]));
        assert_eq!((e.status, e.class), (400, "FeastError"));
    }

    #[test]
    fn unknown_request_fields_are_ignored() {
        let r: FeastRequest = serde_json::from_str(
            r#"{"features":["v:a"],"entities":{"user":[1]},"include_feature_view_version_metadata":false,"later":1}"#,
        )
        .unwrap();
        assert_eq!(r.features.unwrap(), ["v:a"]);
        assert!(serde_json::from_str::<FeastRequest>(r#"{"features":"v:a","entities":{}}"#).is_err());
    }

    fn df(j: Json) -> Df {
        serde_json::from_value(j).unwrap()
    }

    #[test]
    fn df_rows_are_typed_and_every_bad_row_refuses_the_write() {
        let feats = vec![("n".to_string(), ValueType::Int64), ("c".to_string(), ValueType::Text)];
        let d = df(serde_json::json!({"user_id": [7, "u2"], "n": [1, null], "c": ["DE", "FR"],
            "event_timestamp": ["2024-05-01T12:00:00", null], "created": [null, null]}));
        let rows = df_rows(&d, "user_id", &feats, 99).unwrap();
        assert_eq!((rows[0].entity_key.as_str(), rows[0].event_time_ms), ("7", 1_714_564_800_000));
        assert_eq!((rows[1].entity_key.as_str(), rows[1].event_time_ms), ("u2", 99));
        assert_eq!(rows[1].features[0].value, crate::bindings::types::Value::Null);
        let bad = df(serde_json::json!({"user_id": [1, 2, 3], "n": ["x", 2, "y"], "c": ["a", "b", "c"]}));
        let e = df_rows(&bad, "user_id", &feats, 0).unwrap_err();
        assert!(e.message.contains("row 0:") && e.message.contains("row 2:") && !e.message.contains("row 1:"), "{e:?}");
        let e = df_rows(&df(serde_json::json!({"user_id": [1], "zz": [1]})), "user_id", &feats, 0).unwrap_err();
        assert_eq!(e.code, "unknown_features");
        let e = df_rows(&df(serde_json::json!({"n": [1]})), "user_id", &feats, 0).unwrap_err();
        assert_eq!(e.code, "missing_entity");
    }

    #[test]
    fn df_events_carry_the_row_without_timestamps() {
        let d = df(serde_json::json!({"user_id": [1], "amount": [2.5], "event_timestamp": [1000], "created": [null]}));
        let ev = df_events(&d, "txn", 0).unwrap();
        assert_eq!(ev[0].timestamp_ms, 1000);
        let v: Json = serde_json::from_slice(&ev[0].value).unwrap();
        assert_eq!(v, serde_json::json!({"user_id": 1, "amount": 2.5}));
    }
}
