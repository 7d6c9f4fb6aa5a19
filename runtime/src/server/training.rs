//! `POST /v1/training-data`: point-in-time training data for small jobs, as JSON.
//!
//! Body: `{"features": ["txn:amount_sum_1h", ...], "spine": [{"entity": "u1", "timestamp_ms": 1700000000000}, ...],
//! "events": [<event objects in the JSONL event format>, ...]}` (everything inline, within the
//! request body limit). Response: `{"rows": [{"entity", "timestamp_ms", "features": {name: value}}],
//! "events": n, "failed_events": m}`, rows in spine order. Same code as `wafer training-data`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::{App, Resp, error, json_resp};
use crate::events::parse_line;
use crate::offline::spine::Spine;
use crate::offline::training::{EventSource, TrainingJob, parse_features, run};
use crate::transform::json_out::value_to_json;

/// Largest spine accepted inline (bigger jobs: `wafer training-data`).
const MAX_SPINE: usize = 100_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TrainingRequest {
    features: Vec<String>,
    spine: Vec<SpinePoint>,
    events: Vec<Json>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpinePoint {
    entity: Option<String>,
    timestamp_ms: i64,
}

pub(super) async fn training_data(app: &App, body: Json) -> Resp {
    let r: TrainingRequest = match serde_json::from_value(body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request", e.to_string()),
    };
    if r.spine.len() > MAX_SPINE {
        return error(StatusCode::BAD_REQUEST, "spine_too_large", format!("{} spine rows; at most {MAX_SPINE} inline (use `wafer training-data`)", r.spine.len()));
    }
    let features = match parse_features(&r.features.join(",")) {
        Ok(f) if !f.is_empty() => f,
        Ok(_) => return error(StatusCode::BAD_REQUEST, "invalid_request", "`features` must not be empty"),
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request", e.to_string()),
    };
    let mut events = Vec::with_capacity(r.events.len());
    for (i, item) in r.events.iter().enumerate() {
        match parse_line(&item.to_string(), "events", i as i64) {
            Ok(e) => events.push(e),
            Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_event", format!("events[{i}]: {e}")),
        }
    }
    let schema = Arc::new(Schema::new(vec![Field::new("entity", DataType::Utf8, true), Field::new("timestamp_ms", DataType::Int64, false)]));
    let entities: ArrayRef = Arc::new(StringArray::from(r.spine.iter().map(|p| p.entity.as_deref()).collect::<Vec<_>>()));
    let times: ArrayRef = Arc::new(Int64Array::from(r.spine.iter().map(|p| p.timestamp_ms).collect::<Vec<_>>()));
    let batch = match RecordBatch::try_new(schema.clone(), vec![entities, times]) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    };
    let spine = Spine::new(schema, vec![batch]);
    let views = app.views.clone();
    let result = tokio::task::spawn_blocking(move || {
        let job = TrainingJob {
            views: &views,
            features,
            events: HashMap::from([(String::new(), EventSource::Inline(events))]),
            entity_column: Some("entity".into()),
            time_column: "timestamp_ms".into(),
            full_names: false,
            batch_size: 512,
            threads: 1,
            topics: HashMap::new(),
        };
        run(&job, &spine, &mut |_| {}).map(|(cols, stats)| (cols, stats, spine))
    })
    .await;
    let (cols, stats, _spine) = match result {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, "invalid_request", e.to_string()),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    };
    let rows: Vec<Json> = r
        .spine
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut m = serde_json::Map::new();
            for c in &cols {
                m.insert(c.name.clone(), value_to_json(&c.values[i]));
            }
            json!({"entity": p.entity, "timestamp_ms": p.timestamp_ms, "features": m})
        })
        .collect();
    json_resp(StatusCode::OK, &json!({"rows": rows, "events": stats.events, "failed_events": stats.failed_events}))
}
