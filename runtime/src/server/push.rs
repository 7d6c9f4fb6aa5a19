//! `POST /v1/views/{view}/events`: HTTP-pushed events, processed synchronously (read-after-write).

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::App;
use super::respond::{Resp, body, error, json_resp};
use crate::bindings::types::Event;
use crate::events::parse_line;
use crate::pipeline::View;
use crate::pipeline::breaker::Verdict;
use crate::tenant::TenantApp;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushRequest {
    events: Vec<Json>,
}

pub async fn push_events(app: &App, t: &TenantApp, view: &str, req: Request<Incoming>) -> Resp {
    let Some(v) = t.views.get(view) else {
        return error(StatusCode::NOT_FOUND, "unknown_view", format!("no stream view `{view}`"));
    };
    let items = match body::<PushRequest>(req).await {
        Ok(b) => b.events,
        Err(r) => return r,
    };
    let mut events = Vec::with_capacity(items.len());
    let mut index = Vec::with_capacity(items.len());
    let mut failures = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match parse_line(&item.to_string(), view, i as i64) {
            Ok(e) => {
                events.push(e);
                index.push(i);
            }
            Err(e) => failures.push(json!({"index": i, "code": "invalid_event", "error": e.to_string()})),
        }
    }
    ingest(app, v, view, &events, &index, failures).await
}

/// Run parsed `events` through the view's pipeline and write them (read-after-write): 200 with
/// `{"accepted", "rows", "failed"}`; `index[i]` is event `i`'s position in the request, and
/// `failures` are the request's items already refused.
pub(super) async fn ingest(
    app: &App,
    v: &View,
    view: &str,
    events: &[Event],
    index: &[usize],
    mut failures: Vec<Json>,
) -> Resp {
    if let Some(until) = v.breaker.paused_until() {
        return paused(view, until.saturating_duration_since(std::time::Instant::now()));
    }
    v.metrics.events.add(&v.id, "invalid_event", failures.len() as u64);
    let prepared = v.prepare(events);
    if let Verdict::Tripped { pause } = v.judge(&prepared) {
        return paused(view, pause);
    }
    if let Err(e) = v.commit(app.store.as_ref(), &prepared, None).await {
        v.metrics.store_errors.add(&v.id, "push", 1);
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("online store: {e}; nothing was written, retry"),
        );
    }
    let outcome = prepared;
    for f in &outcome.failures {
        failures.push(json!({"index": index[f.index], "code": f.code, "error": f.message}));
    }
    failures.sort_by_key(|f| f["index"].as_u64());
    let accepted = events.len() - outcome.failures.len();
    json_resp(StatusCode::OK, &json!({"accepted": accepted, "rows": outcome.rows, "failed": failures}))
}

/// 503 while the view's circuit breaker is open; nothing of the batch was written.
fn paused(view: &str, retry_after: std::time::Duration) -> Resp {
    let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "view_paused",
        format!("view `{view}` is paused: its transform failed persistently; nothing was written, retry after {secs}s"),
    );
    r.headers_mut().insert(hyper::header::RETRY_AFTER, hyper::header::HeaderValue::from(secs));
    r
}
