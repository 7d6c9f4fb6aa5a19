//! HTTP API (hyper; HTTP/1.1 keep-alive and HTTP/2). Routes are one table ([`routes::TABLE`]:
//! it dispatches, decides 404/405, credentials and rate limits; [`ROUTES`] is derived from it)
//! and are documented in `runtime/openapi.json` (served at `GET /openapi.json`):
//! - `POST /v1/views/{view}/events`: push events (`{"events": [...]}` in the JSONL event format);
//!   processed synchronously, so when the response arrives the features are readable.
//! - `POST /v1/features`: native feature reads (stored, aggregated and request-view features).
//! - Feast's feature-server protocol (`feast.rs`): `POST /get-online-features`,
//!   `POST /write-to-online-store`, `POST /push`, `GET /health`.
//! - `POST /v1/training-data`: point-in-time training data for small inline jobs (`training.rs`).
//! - `GET /v1/views`, `GET /metrics` (Prometheus text), `GET /healthz` (liveness),
//!   `GET /readyz` (readiness: 503 while a source partition is stalled), `GET /openapi.json`.
//! - `GET /v1/view-health`: each stream view's breaker and source state, events by outcome and
//!   the last minutes of rates and freshness (`view_health.rs`).
//! - `GET /ui`: the console (`console.rs`), a page over this same API.
//!
//! Connections (accept loop, connection cap, header and idle timeouts): [`listen`].
//!
//! Errors are [`ApiError`]s: JSON `{"error": {"code": "...", "message": "...", ...}}` with a
//! 4xx/5xx status (Feast's routes answer Feast's shapes).

pub mod admin;
pub mod auth;
mod console;
pub mod control;
pub mod error;
mod feast;
mod features;
pub mod listen;
mod push;
pub mod respond;
pub mod routes;
mod training;
mod view_health;

use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{Value as Json, json};

use crate::node::Node;
use crate::tenant::TenantApp;
pub use error::ApiError;
pub use listen::{ListenConfig, serve, serve_until, serve_with};
use respond::{Resp, json_resp};

/// The OpenAPI document of every route.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// Every route (method, path template), as documented in [`OPENAPI`]: derived from the route
/// table ([`routes::TABLE`]) that dispatches requests.
pub const ROUTES: &[(&str, &str)] = &routes::PAIRS;

async fn handle(app: &Arc<Node>, req: Request<Incoming>) -> Resp {
    let started = Instant::now();
    let (route, resp) = match routes::dispatch(app, req).await {
        (route, Ok(r)) => (route, r),
        (route, Err(e)) => (route, e.into_response()),
    };
    app.metrics.requests.add(route, resp.status().as_str(), 1);
    app.metrics.request_seconds.observe(route, started.elapsed().as_secs_f64());
    resp
}

/// Only the metric lines of one tenant: the series with its `tenant` label (per-view series carry
/// one too), and the comments.
fn tenant_metrics(all: &str, tenant: &str) -> String {
    let label = format!("tenant=\"{tenant}\"");
    all.lines().filter(|l| l.starts_with('#') || l.contains(&label)).fold(String::new(), |mut o, l| {
        o.push_str(l);
        o.push('\n');
        o
    })
}

/// Readiness: not ready while any source partition is stalled (the stall detector in
/// `sources::kafka` recovers it by itself). Missing source topics are listed but do not fail it:
/// one tenant deleting its topic must not take the node out of service for every tenant.
fn readyz(app: &Node) -> Resp {
    let stalled: Vec<Json> =
        app.metrics.source_stalled.nonzero().into_iter().map(|(v, p)| json!({"view": v, "partition": p})).collect();
    let missing = app.metrics.source_missing.nonzero();
    let ready = stalled.is_empty();
    json_resp(
        if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE },
        &json!({"status": if ready { "ready" } else { "not_ready" }, "stalled": stalled, "missing_sources": missing}),
    )
}

/// One aggregation of a view as `GET /v1/views` lists it.
fn aggregation(a: &crate::aggregate::spec::AggSpec) -> Json {
    json!({
        "column": a.column,
        "function": a.function.name(),
        "windows": a.windows.iter().map(|w| w.label()).collect::<Vec<_>>(),
    })
}

fn list_views(app: &TenantApp) -> Resp {
    let mut views: Vec<Json> = app
        .catalog
        .stored_views()
        .iter()
        .map(|v| {
            let stream = app.views.get(v.name());
            json!({
                "name": v.name(),
                "kind": if stream.is_some() { "stream" } else { "batch" },
                "entity": v.spec.entity,
                "transform": stream.map(|s| s.transform.name()),
                "version": stream.map(|s| s.transform.load_stats().sha256.as_str()),
                "ttl_ms": v.spec.ttl_ms,
                "aggregations": v.spec.aggs.iter().map(aggregation).collect::<Vec<_>>(),
                "features": v.spec.feature_types().iter().map(|(n, t)| json!({"name": n, "type": t.as_str()})).collect::<Vec<_>>(),
            })
        })
        .collect();
    for rv in app.catalog.request_views() {
        let info = rv.transform.info();
        views.push(json!({
            "name": rv.name,
            "kind": "request",
            "entity": rv.entity,
            "transform": rv.transform.name(),
            "version": rv.transform.load_stats().sha256,
            "params": info.params.iter().map(|p| json!({"name": p.name, "type": p.value_type.as_str(), "nullable": p.nullable})).collect::<Vec<_>>(),
            "reads": info.reads,
            "features": info.outputs.iter().map(|o| json!({"name": o.name, "type": o.value_type.as_str()})).collect::<Vec<_>>(),
        }));
    }
    views.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    json_resp(StatusCode::OK, &json!({"views": views}))
}
