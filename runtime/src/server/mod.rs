//! HTTP API (hyper; HTTP/1.1 keep-alive and HTTP/2). Routes are listed in [`ROUTES`] and
//! documented in `runtime/openapi.json` (served at `GET /openapi.json`):
//! - `POST /v1/views/{view}/events`: push events (`{"events": [...]}` in the JSONL event format);
//!   processed synchronously, so when the response arrives the features are readable.
//! - `POST /v1/features`: native feature reads (stored, aggregated and request-view features).
//! - `POST /get-online-features`: Feast-compatible reads.
//! - `POST /v1/training-data`: point-in-time training data for small inline jobs ([`training`]).
//! - `GET /v1/views`, `GET /metrics` (Prometheus text), `GET /healthz`, `GET /openapi.json`.
//!
//! Errors are JSON `{"error": {"code": "...", "message": "...", ...}}` with a 4xx/5xx status.

pub mod build;
mod features;
mod push;
mod training;
pub mod respond;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;

use crate::pipeline::{Metrics, View};
use crate::serving::Catalog;
use crate::store::OnlineStore;
pub use build::{BuildError, build_app};
use respond::{Resp, bytes_resp, error, json_resp};

/// The OpenAPI document of every route.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// Every route (method, path template), as documented in [`OPENAPI`].
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/v1/views"),
    ("POST", "/v1/views/{view}/events"),
    ("POST", "/v1/features"),
    ("POST", "/get-online-features"),
    ("POST", "/v1/training-data"),
];

pub struct App {
    /// Stream views by name (push targets).
    pub views: HashMap<String, Arc<View>>,
    /// Everything servable: stream, batch and request views, feature services.
    pub catalog: Catalog,
    pub store: Arc<dyn OnlineStore>,
    pub metrics: Arc<Metrics>,
}

/// Serve until the listener fails.
pub async fn serve(app: Arc<App>, listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, _peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(&app, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

async fn handle(app: &App, req: Request<Incoming>) -> Resp {
    let started = Instant::now();
    let method = req.method().clone();
    let (route, resp) = match (&method, req.uri().path()) {
        (&Method::POST, "/v1/features") => ("features", features::native(app, req).await),
        (&Method::POST, "/get-online-features") => ("feast", features::feast(app, req).await),
        (&Method::POST, "/v1/training-data") => ("training_data", training::training_data(app, req).await),
        (&Method::POST, p) if p.starts_with("/v1/views/") && p.ends_with("/events") && p.len() > "/v1/views//events".len() => {
            let view = p["/v1/views/".len()..p.len() - "/events".len()].to_string();
            ("push", push::push_events(app, &view, req).await)
        }
        (&Method::GET, "/healthz") => ("healthz", json_resp(StatusCode::OK, &json!({"status": "ok"}))),
        (&Method::GET, "/metrics") => ("metrics", bytes_resp(StatusCode::OK, "text/plain; version=0.0.4", app.metrics.render())),
        (&Method::GET, "/openapi.json") => ("openapi", bytes_resp(StatusCode::OK, "application/json", OPENAPI)),
        (&Method::GET, "/v1/views") => ("views", list_views(app)),
        (m, p) => {
            let known = ROUTES.iter().any(|(_, r)| *r == p);
            let resp = if known {
                error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("{m} is not allowed on {p}"))
            } else {
                error(StatusCode::NOT_FOUND, "not_found", format!("no route {m} {p}"))
            };
            ("unknown", resp)
        }
    };
    app.metrics.requests.add(route, resp.status().as_str(), 1);
    app.metrics.request_seconds.observe(route, started.elapsed().as_secs_f64());
    resp
}

fn list_views(app: &App) -> Resp {
    let mut views: Vec<Json> = app
        .catalog
        .stored_views()
        .iter()
        .map(|v| {
            let kind = if app.views.contains_key(v.name()) { "stream" } else { "batch" };
            json!({
                "name": v.name(),
                "kind": kind,
                "entity": v.spec.entity,
                "transform": app.views.get(v.name()).map(|s| s.transform.name()),
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
            "params": info.params.iter().map(|p| json!({"name": p.name, "type": p.value_type.as_str(), "nullable": p.nullable})).collect::<Vec<_>>(),
            "reads": info.reads,
            "features": info.outputs.iter().map(|o| json!({"name": o.name, "type": o.value_type.as_str()})).collect::<Vec<_>>(),
        }));
    }
    views.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    json_resp(StatusCode::OK, &json!({"views": views}))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
