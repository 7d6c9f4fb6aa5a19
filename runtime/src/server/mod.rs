//! HTTP API (hyper; HTTP/1.1 keep-alive and HTTP/2):
//! - `POST /v1/views/{view}/events`: push events (JSON `{"events": [...]}` in the JSONL event
//!   format); processed synchronously, so when the response arrives the features are readable.
//! - `POST /v1/features`: `{"view": "txn", "entities": ["u1"], "features": ["amount_sum_1h"],
//!   "as_of": <ms, optional>}` → values, per-value status and event time.
//! - `POST /v1/training-data`: point-in-time training data for small inline jobs ([`training`]).
//! - `GET /v1/views`, `GET /metrics` (Prometheus text), `GET /healthz`.
//!
//! Errors are JSON `{"error": {"code": "...", "message": "..."}}` with a 4xx/5xx status.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;

mod training;

use crate::events::parse_line;
use crate::pipeline::{Metrics, View};
use crate::store::OnlineStore;
use crate::transform::json_out::value_to_json;

/// Largest accepted request body.
const MAX_BODY: usize = 16 << 20;

pub struct App {
    pub views: HashMap<String, Arc<View>>,
    pub store: Arc<dyn OnlineStore>,
    pub metrics: Arc<Metrics>,
}

type Resp = Response<Full<Bytes>>;

fn json_resp(status: StatusCode, body: &Json) -> Resp {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid response")
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Resp {
    json_resp(status, &json!({"error": {"code": code, "message": message.into()}}))
}

/// Serve until the listener fails.
pub async fn serve(app: Arc<App>, listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(&app, req, peer).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(app: &App, req: Request<Incoming>, _peer: SocketAddr) -> Resp {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let (route, resp) = match (&method, path.as_str()) {
        (&Method::GET, "/healthz") => ("healthz", json_resp(StatusCode::OK, &json!({"status": "ok"}))),
        (&Method::GET, "/metrics") => (
            "metrics",
            Response::builder()
                .header("content-type", "text/plain; version=0.0.4")
                .body(Full::new(Bytes::from(app.metrics.render())))
                .expect("valid response"),
        ),
        (&Method::GET, "/v1/views") => ("views", list_views(app)),
        (&Method::POST, "/v1/features") => ("features", read_features(app, req).await),
        (&Method::POST, "/v1/training-data") => (
            "training_data",
            match body_json(req).await {
                Ok(b) => training::training_data(app, b).await,
                Err(r) => r,
            },
        ),
        (&Method::POST, p) if p.starts_with("/v1/views/") && p.ends_with("/events") => {
            let view = p["/v1/views/".len()..p.len() - "/events".len()].to_string();
            ("push", push_events(app, &view, req).await)
        }
        _ => ("unknown", error(StatusCode::NOT_FOUND, "not_found", format!("no route {method} {path}"))),
    };
    app.metrics.requests.add(route, resp.status().as_str(), 1);
    resp
}

async fn body_json(req: Request<Incoming>) -> Result<Json, Resp> {
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", format!("request body: {e} (limit {MAX_BODY} bytes)")))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| error(StatusCode::BAD_REQUEST, "invalid_json", format!("request body is not valid JSON: {e}")))
}

fn list_views(app: &App) -> Resp {
    let mut views: Vec<Json> = app
        .views
        .values()
        .map(|v| {
            json!({
                "name": v.spec.name,
                "entity": v.spec.entity,
                "transform": v.transform.name(),
                "features": v.spec.feature_types().iter().map(|(n, t)| json!({"name": n, "type": t.as_str()})).collect::<Vec<_>>(),
            })
        })
        .collect();
    views.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    json_resp(StatusCode::OK, &json!({"views": views}))
}

async fn push_events(app: &App, view: &str, req: Request<Incoming>) -> Resp {
    let Some(v) = app.views.get(view) else {
        return error(StatusCode::NOT_FOUND, "unknown_view", format!("no stream view `{view}`"));
    };
    let body = match body_json(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(items) = body.get("events").and_then(Json::as_array) else {
        return error(StatusCode::BAD_REQUEST, "invalid_request", "body must be {\"events\": [ ... ]}");
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
    v.metrics.events.add(&v.id, "invalid_event", failures.len() as u64);
    let outcome = match v.process(app.store.as_ref(), &events, None).await {
        Ok(o) => o,
        Err(e) => {
            v.metrics.store_errors.add(&v.id, "push", 1);
            return error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", format!("online store: {e}; nothing was written, retry"));
        }
    };
    for f in &outcome.failures {
        failures.push(json!({"index": index[f.index], "code": f.code, "error": f.message}));
    }
    failures.sort_by_key(|f| f["index"].as_u64());
    let accepted = events.len() - outcome.failures.len();
    json_resp(StatusCode::OK, &json!({"accepted": accepted, "rows": outcome.rows, "failed": failures}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeatureRequest {
    view: String,
    entities: Vec<String>,
    features: Vec<String>,
    #[serde(default)]
    as_of: Option<i64>,
}

async fn read_features(app: &App, req: Request<Incoming>) -> Resp {
    let body = match body_json(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let r: FeatureRequest = match serde_json::from_value(body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request", e.to_string()),
    };
    let Some(v) = app.views.get(&r.view) else {
        return error(StatusCode::BAD_REQUEST, "unknown_view", format!("no view `{}`", r.view));
    };
    if r.entities.is_empty() || r.features.is_empty() {
        return error(StatusCode::BAD_REQUEST, "invalid_request", "`entities` and `features` must not be empty");
    }
    let t = r.as_of.unwrap_or_else(now_ms);
    let entities: Vec<&str> = r.entities.iter().map(String::as_str).collect();
    match v.read(app.store.as_ref(), &entities, &r.features, t).await {
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", format!("online store: {e}")),
        Ok(Err(unknown)) => json_resp(
            StatusCode::BAD_REQUEST,
            &json!({"error": {"code": "unknown_features", "message": unknown.to_string(), "unknown": unknown.unknown}}),
        ),
        Ok(Ok(rows)) => {
            let results: Vec<Json> = r
                .entities
                .iter()
                .zip(rows)
                .map(|(e, vals)| {
                    let mut m = serde_json::Map::new();
                    for (name, s) in r.features.iter().zip(vals) {
                        m.insert(name.clone(), json!({"value": value_to_json(&s.value), "status": s.status.as_str(), "event_time_ms": s.event_time_ms}));
                    }
                    json!({"entity": e, "features": m})
                })
                .collect();
            json_resp(StatusCode::OK, &json!({"as_of": t, "results": results}))
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
