//! `POST /v1/training-data`: point-in-time training data for small jobs, as JSON.
//!
//! Body: `{"features": ["txn:amount_sum_1h", ...], "spine": [{"entity": "u1", "timestamp_ms":
//! 1700000000000, <request params>...}, ...], "events": [<event objects in the JSONL event
//! format>, ...]}` (everything inline, within the request body limit; the events feed every
//! stream view involved). Response: `{"rows": [{"entity", "timestamp_ms", "features": {name:
//! value}}], "events": n, "failed_events": m}`, rows in spine order. Same code as
//! `wafer training-data`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::error::ApiError;
use super::respond::{Resp, body, json_resp};
use crate::events::parse_line;
use crate::offline::spine::Spine;
use crate::offline::training::{EventSource, TrainingJob, parse_features, run};
use crate::tenant::TenantApp;
use crate::transform::json_out::value_to_json;

/// Largest spine accepted inline (bigger jobs: `wafer training-data`).
const MAX_SPINE: usize = 100_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainingRequest {
    features: Vec<String>,
    spine: Vec<Map<String, Json>>,
    events: Vec<Json>,
}

pub(super) async fn training_data(tenant: &TenantApp, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let r: TrainingRequest = body(req).await?;
    if r.events.len() > tenant.quotas.push_events {
        return Err(ApiError::TooLarge {
            code: "too_many_events",
            message: format!(
                "{} inline events, over the tenant's `push_events` quota of {} (bigger jobs: `wafer training-data`)",
                r.events.len(),
                tenant.quotas.push_events
            ),
        });
    }
    if r.spine.len() > MAX_SPINE {
        return Err(ApiError::bad_request(
            "spine_too_large",
            format!("{} spine rows; at most {MAX_SPINE} inline (use `wafer training-data`)", r.spine.len()),
        ));
    }
    let features = match parse_features(&r.features.join(",")) {
        Ok(f) if !f.is_empty() => f,
        Ok(_) => return Err(ApiError::bad_request("invalid_request", "`features` must not be empty")),
        Err(e) => return Err(ApiError::bad_request("invalid_request", e.to_string())),
    };
    let mut events = Vec::with_capacity(r.events.len());
    for (i, item) in r.events.iter().enumerate() {
        match parse_line(&item.to_string(), "events", i as i64) {
            Ok(e) => events.push(e),
            Err(e) => return Err(ApiError::bad_request("invalid_event", format!("events[{i}]: {e}"))),
        }
    }
    let spine = spine_table(&r.spine).map_err(|message| ApiError::bad_request("invalid_request", message))?;
    let job = TrainingJob {
        views: &tenant.views,
        catalog: &tenant.catalog,
        batches: &[],
        features,
        events: HashMap::from([(String::new(), EventSource::Inline(events))]),
        entity_column: Some("entity".into()),
        time_column: "timestamp_ms".into(),
        full_names: false,
        batch_size: 512,
        threads: 1,
        topics: HashMap::new(),
        row_cache: None,
    };
    // CPU-bound, with its own threads: keep it off the async workers. The guests' share of it is
    // bounded by the tenant's per-request CPU budget (events past it fail without running).
    let budget = std::time::Duration::from_millis(tenant.quotas.request_cpu_ms);
    let (cols, stats) = tokio::task::block_in_place(|| {
        let _budget = crate::sandbox::cpu::RequestBudget::enter(budget);
        run(&job, &spine, &Default::default())
    })
    .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
    let rows: Vec<Json> = r
        .spine
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut m = Map::new();
            for c in &cols {
                m.insert(c.name.clone(), value_to_json(&c.values[i]));
            }
            json!({"entity": p.get("entity"), "timestamp_ms": p.get("timestamp_ms"), "features": m})
        })
        .collect();
    Ok(json_resp(StatusCode::OK, &json!({"rows": rows, "events": stats.events, "failed_events": stats.failed_events})))
}

/// The inline spine as a table: `entity` (string or null), `timestamp_ms`, and every other
/// property as a request-param column (numbers, strings or booleans, typed from the first
/// non-null value).
fn spine_table(rows: &[Map<String, Json>]) -> Result<Spine, String> {
    let mut entity = Vec::with_capacity(rows.len());
    let mut time = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        entity.push(match r.get("entity") {
            None | Some(Json::Null) => None,
            Some(Json::String(s)) => Some(s.clone()),
            Some(other) => return Err(format!("spine[{i}].entity: expected a string, got {other}")),
        });
        time.push(
            r.get("timestamp_ms")
                .and_then(Json::as_i64)
                .ok_or_else(|| format!("spine[{i}].timestamp_ms: expected an integer (ms since the epoch)"))?,
        );
    }
    let mut fields =
        vec![Field::new("entity", DataType::Utf8, true), Field::new("timestamp_ms", DataType::Int64, false)];
    let mut cols: Vec<ArrayRef> = vec![Arc::new(StringArray::from(entity)), Arc::new(Int64Array::from(time))];
    let mut names: Vec<&String> =
        rows.iter().flat_map(|r| r.keys()).filter(|k| *k != "entity" && *k != "timestamp_ms").collect();
    names.sort();
    names.dedup();
    for name in names {
        let vals: Vec<&Json> = rows.iter().map(|r| r.get(name).unwrap_or(&Json::Null)).collect();
        let (ty, col): (DataType, ArrayRef) = match vals.iter().find(|v| !v.is_null()) {
            Some(Json::Bool(_)) => (
                DataType::Boolean,
                Arc::new(arrow_array::BooleanArray::from(vals.iter().map(|v| v.as_bool()).collect::<Vec<_>>())),
            ),
            Some(Json::Number(n)) if n.is_i64() => {
                (DataType::Int64, Arc::new(Int64Array::from(vals.iter().map(|v| v.as_i64()).collect::<Vec<_>>())))
            }
            Some(Json::Number(_)) => (
                DataType::Float64,
                Arc::new(arrow_array::Float64Array::from(vals.iter().map(|v| v.as_f64()).collect::<Vec<_>>())),
            ),
            _ => (DataType::Utf8, Arc::new(StringArray::from(vals.iter().map(|v| v.as_str()).collect::<Vec<_>>()))),
        };
        fields.push(Field::new(name, ty, true));
        cols.push(col);
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), cols).map_err(|e| e.to_string())?;
    Ok(Spine::new(schema, vec![batch]))
}
