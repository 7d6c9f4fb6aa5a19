//! `GET /v1/view-health`: the live health of each of the tenant's stream views, for the console
//! and for scripts: whether the view is paused by its circuit breaker, whether its source topic
//! is missing or a partition stalled, its events by outcome (`ok` or the error code) and breaker
//! trips since the node started, and the last minutes of events/s, errors/s and freshness
//! p50/p99 from the node's in-memory history ([`crate::pipeline::metrics::history`]).

use hyper::StatusCode;
use serde_json::{Map, Value as Json, json};

use super::respond::{Resp, json_resp};
use crate::node::Node;
use crate::pipeline::metrics::history::{HISTORY_LEN, SAMPLE_INTERVAL};
use crate::tenant::TenantApp;

/// A counter's series of one view as a JSON object `{kind: count}`.
fn counts(series: Vec<(String, u64)>) -> Json {
    Json::Object(series.into_iter().map(|(k, n)| (k, json!(n))).collect::<Map<_, _>>())
}

/// `GET /v1/view-health`.
pub(super) fn view_health(app: &Node, t: &TenantApp) -> Resp {
    let m = &app.metrics;
    let stalled = m.source_stalled.nonzero();
    let mut names: Vec<&String> = t.views.keys().collect();
    names.sort();
    let views: Vec<Json> = names
        .into_iter()
        .filter_map(|name| t.views.get(name))
        .map(|v| {
            let partitions: Vec<i32> = stalled.iter().filter(|(id, _)| *id == v.id).map(|(_, p)| *p).collect();
            json!({
                "name": v.spec.name,
                "transform": v.transform.name(),
                "paused": m.paused.get(&v.id).unwrap_or(0.0) != 0.0,
                "source_missing": m.source_missing.get(&v.id).unwrap_or(0.0) != 0.0,
                "stalled_partitions": partitions,
                "events": counts(m.events.of(&v.id)),
                "breaker_trips": counts(m.breaker_trips.of(&v.id)),
                "series": m.history.series(&v.id),
            })
        })
        .collect();
    json_resp(
        StatusCode::OK,
        &json!({
            "interval_ms": SAMPLE_INTERVAL.as_millis() as u64,
            "intervals_kept": HISTORY_LEN,
            "views": views,
        }),
    )
}
