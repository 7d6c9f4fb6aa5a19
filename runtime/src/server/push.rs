//! `POST /v1/views/{view}/events`: HTTP-pushed events, processed synchronously (read-after-write).
//! An `Idempotency-Key` header makes a retry safe: each entity applies a key at most once. A write
//! that timed out (or failed after part of it was applied) answers `store_outcome_unknown`.
//! Entities the tenant's `max_stored_entities` quota kept from being created are listed under
//! `refused` (existing entities keep updating).

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::error::ApiError;
use super::respond::{Resp, body, json_resp};
use crate::bindings::types::Event;
use crate::events::parse_line;
use crate::node::Node;
use crate::pipeline::StreamView;
use crate::pipeline::breaker::Verdict;
use crate::tenant::TenantApp;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushRequest {
    events: Vec<Json>,
}

/// `POST /v1/views/{view}/events`.
pub async fn push_events(app: &Node, t: &TenantApp, view: &str, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let Some(v) = t.views.get(view) else {
        return Err(ApiError::NotFound { code: "unknown_view", message: format!("no stream view `{view}`") });
    };
    let key = idempotency_key(&req)?;
    let items = body::<PushRequest>(req).await?.events;
    if items.len() > t.quotas.push_events {
        app.metrics.quota_exceeded.add(&t.name, "push_events", 1);
        return Err(ApiError::TooLarge {
            code: "too_many_events",
            message: format!(
                "{} events in one push, over the tenant's `push_events` quota of {}; nothing was written, split the batch",
                items.len(),
                t.quotas.push_events
            ),
        });
    }
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
    ingest(app, &t.name, v, view, &events, &index, failures, key.as_deref()).await
}

/// Run parsed `events` through the view's pipeline and write them (read-after-write): 200 with
/// `{"accepted", "rows", "failed"}` (and `refused` when the store quota kept entities from being
/// created: see [`refused_body`]); `index[i]` is event `i`'s position in the request, and
/// `failures` are the request's items already refused.
#[allow(clippy::too_many_arguments)] // one call site per protocol; a struct would only rename them
pub(super) async fn ingest(
    app: &Node,
    tenant: &str,
    v: &StreamView,
    view: &str,
    events: &[Event],
    index: &[usize],
    mut failures: Vec<Json>,
    key: Option<&str>,
) -> Result<Resp, ApiError> {
    if let Some(until) = v.breaker.paused_until() {
        return Err(paused(view, until.saturating_duration_since(std::time::Instant::now())));
    }
    v.metrics.events.add(&v.id, "invalid_event", failures.len() as u64);
    let prepared = v.prepare(events);
    if let Some(cap) = prepared.over_cap {
        app.metrics.quota_exceeded.add(tenant, cap.cap, 1);
        v.metrics.events.add(&v.id, cap.code(), events.len() as u64);
        let message = prepared.failures.first().map_or(String::new(), |f| f.message.clone());
        return Err(ApiError::OverCap {
            code: cap.code(),
            message,
            quota: cap.cap,
            limit: cap.limit as u64,
            found: cap.found as u64,
        });
    }
    if let Verdict::Tripped { pause } = v.judge(&prepared) {
        return Err(paused(view, pause));
    }
    let written = match v.commit_keyed(app.store.as_ref(), &prepared, None, key).await {
        Ok(w) => w,
        Err(e) => return Err(store_failed(v, &e, key)),
    };
    let outcome = prepared;
    for f in &outcome.failures {
        failures.push(json!({"index": index[f.index], "code": f.code, "error": f.message}));
    }
    failures.sort_by_key(|f| f["index"].as_u64());
    let accepted = events.len() - outcome.failures.len();
    let mut body = json!({"accepted": accepted, "rows": outcome.rows, "failed": failures});
    if !written.refused.is_empty() {
        body["refused"] = refused_body(v.store_quota().map(|q| q.max()), &outcome, &written.refused);
    }
    Ok(json_resp(StatusCode::OK, &body))
}

/// At most this many refused entity keys are listed in a push's answer (all are counted).
const REFUSED_LISTED: usize = 20;

/// The `refused` member of a push's answer: `{"code": "store_quota_exceeded", "error",
/// "entities": n, "sample": [first keys]}`.
fn refused_body(max: Option<u64>, prepared: &crate::pipeline::Prepared, refused: &[usize]) -> Json {
    let sample: Vec<&str> = refused.iter().take(REFUSED_LISTED).map(|i| prepared.entity(*i)).collect();
    let quota = max.map_or_else(String::new, |m| format!(" of {m}"));
    json!({
        "code": "store_quota_exceeded",
        "error": format!(
            "{} entities are new to the store and the tenant is at its `max_stored_entities` quota{quota}: their features were not stored (existing entities were updated)",
            refused.len()
        ),
        "entities": refused.len(),
        "sample": sample,
    })
}

/// The error of a push whose store write failed (whether anything was written is said).
fn store_failed(v: &StreamView, e: &crate::store::StoreError, key: Option<&str>) -> ApiError {
    v.metrics.store_errors.add(&v.id, "push", 1);
    match (e.outcome_unknown(), key) {
        (false, _) => {
            ApiError::unavailable("store_unavailable", format!("online store: {e}; nothing was written, retry"))
        }
        (true, Some(_)) => ApiError::unavailable(
            "store_outcome_unknown",
            format!(
                "online store: {e}; the push may have been applied in part: retry with the same Idempotency-Key, which applies it exactly once"
            ),
        ),
        (true, None) => ApiError::unavailable(
            "store_outcome_unknown",
            format!(
                "online store: {e}; the push may have been applied in part: a retry may count it twice (send an Idempotency-Key header to make retries safe)"
            ),
        ),
    }
}

/// Longest accepted `Idempotency-Key` header.
const MAX_IDEMPOTENCY_KEY: usize = 200;

/// The optional `Idempotency-Key` header: printable ASCII, at most [`MAX_IDEMPOTENCY_KEY`] bytes.
fn idempotency_key(req: &Request<Incoming>) -> Result<Option<String>, ApiError> {
    let Some(h) = req.headers().get("idempotency-key") else { return Ok(None) };
    match h.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY && k.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(k.to_string()))
        }
        _ => Err(ApiError::bad_request(
            "invalid_idempotency_key",
            format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters without spaces"),
        )),
    }
}

/// 503 while the view's circuit breaker is open; nothing of the batch was written.
fn paused(view: &str, retry_after: std::time::Duration) -> ApiError {
    let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    ApiError::Unavailable {
        code: "view_paused",
        message: format!(
            "view `{view}` is paused: its transform failed persistently; nothing was written, retry after {secs}s"
        ),
        retry_after_secs: Some(secs),
    }
}
