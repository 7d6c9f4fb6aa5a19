//! HTTP API (hyper; HTTP/1.1 keep-alive and HTTP/2). Routes are listed in [`ROUTES`] and
//! documented in `runtime/openapi.json` (served at `GET /openapi.json`):
//! - `POST /v1/views/{view}/events`: push events (`{"events": [...]}` in the JSONL event format);
//!   processed synchronously, so when the response arrives the features are readable.
//! - `POST /v1/features`: native feature reads (stored, aggregated and request-view features).
//! - Feast's feature-server protocol ([`feast`]): `POST /get-online-features`,
//!   `POST /write-to-online-store`, `POST /push`, `GET /health`.
//! - `POST /v1/training-data`: point-in-time training data for small inline jobs ([`training`]).
//! - `GET /v1/views`, `GET /metrics` (Prometheus text), `GET /healthz` (liveness),
//!   `GET /readyz` (readiness: 503 while a source partition is stalled), `GET /openapi.json`.
//!
//! Connections (accept loop, connection cap, header and idle timeouts): [`listen`].
//!
//! Errors are JSON `{"error": {"code": "...", "message": "...", ...}}` with a 4xx/5xx status.

pub mod admin;
pub mod auth;
pub mod control;
pub mod error;
mod feast;
mod features;
pub mod listen;
mod push;
pub mod respond;
mod training;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::{Value as Json, json};

use parking_lot::RwLock;

use crate::pipeline::{Metrics, View};
use crate::registry::ApiKey;
use crate::store::OnlineStore;
use crate::tenant::TenantApp;
pub use error::ApiError;
pub use listen::{ListenConfig, serve, serve_with};
use respond::{Resp, bytes_resp, json_resp};

/// The OpenAPI document of every route.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// Every route (method, path template), as documented in [`OPENAPI`].
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/v1/views"),
    ("POST", "/v1/views/{view}/events"),
    ("POST", "/v1/features"),
    ("POST", "/get-online-features"),
    ("POST", "/write-to-online-store"),
    ("POST", "/push"),
    ("GET", "/health"),
    ("POST", "/v1/training-data"),
    ("GET", "/v1/metrics"),
    ("GET", "/v1/transforms"),
    ("GET", "/v1/transforms/{name}"),
    ("PUT", "/v1/transforms/{name}"),
    ("POST", "/v1/transforms/{name}/activate"),
    ("PUT", "/v1/views/{view}"),
    ("DELETE", "/v1/views/{view}"),
    ("GET", "/v1/admin/tenants"),
    ("POST", "/v1/admin/tenants"),
    ("PATCH", "/v1/admin/tenants/{tenant}"),
    ("POST", "/v1/admin/tenants/{tenant}/keys"),
    ("DELETE", "/v1/admin/tenants/{tenant}/keys/{key}"),
];

/// A node: the online store, metrics, and the tenants it serves (swapped atomically when the
/// registry changes; requests in flight keep the state they started with).
pub struct App {
    pub store: Arc<dyn OnlineStore>,
    pub metrics: Arc<Metrics>,
    state: RwLock<Arc<NodeState>>,
    /// The control plane (registry mode); `None` serves one manifest tenant without keys.
    pub control: Option<Arc<crate::control::Control>>,
}

/// What the node serves right now.
#[derive(Default)]
pub struct NodeState {
    pub tenants: HashMap<String, Arc<TenantApp>>,
    /// sha256(secret) → key (registry mode).
    pub keys: HashMap<String, ApiKey>,
    /// Manifest mode: every request is this tenant's, no key needed.
    pub open_tenant: Option<String>,
    /// Registry version this state was built from.
    pub version: u64,
    /// Registry change id this state was built from (see [`crate::registry::Revision`]).
    pub change: String,
}

impl App {
    /// Manifest mode: one tenant, no keys.
    pub fn single(tenant: TenantApp, store: Arc<dyn OnlineStore>, metrics: Arc<Metrics>) -> Self {
        let name = tenant.name.clone();
        let state = NodeState {
            tenants: HashMap::from([(name.clone(), Arc::new(tenant))]),
            open_tenant: Some(name),
            ..NodeState::default()
        };
        Self { store, metrics, state: RwLock::new(Arc::new(state)), control: None }
    }

    /// Registry mode: tenants and keys come from the control plane's sync loop.
    pub fn registry(control: Arc<crate::control::Control>, store: Arc<dyn OnlineStore>, metrics: Arc<Metrics>) -> Self {
        Self { store, metrics, state: RwLock::new(Arc::new(NodeState::default())), control: Some(control) }
    }

    pub fn state(&self) -> Arc<NodeState> {
        self.state.read().clone()
    }

    pub fn swap_state(&self, s: NodeState) {
        *self.state.write() = Arc::new(s);
    }

    pub fn tenant(&self, name: &str) -> Option<Arc<TenantApp>> {
        self.state.read().tenants.get(name).cloned()
    }

    /// The current stream view `view` of `tenant` (a hot swap replaces it between batches).
    pub fn view(&self, tenant: &str, view: &str) -> Option<Arc<View>> {
        self.state.read().tenants.get(tenant)?.views.get(view).cloned()
    }
}

async fn handle(app: &Arc<App>, req: Request<Incoming>) -> Resp {
    let started = Instant::now();
    let (route, resp) = match route(app, req).await {
        (route, Ok(r)) => (route, r),
        (route, Err(e)) => (route, e.into_response()),
    };
    app.metrics.requests.add(route, resp.status().as_str(), 1);
    app.metrics.request_seconds.observe(route, started.elapsed().as_secs_f64());
    resp
}

async fn route(app: &Arc<App>, req: Request<Incoming>) -> (&'static str, Result<Resp, ApiError>) {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    match (&method, path.as_str()) {
        (&Method::GET, "/healthz") => return ("healthz", Ok(json_resp(StatusCode::OK, &json!({"status": "ok"})))),
        // Feast's health check: 200 with an empty body.
        (&Method::GET, "/health") => return ("health", Ok(bytes_resp(StatusCode::OK, "text/plain", ""))),
        (&Method::GET, "/readyz") => return ("readyz", Ok(readyz(app))),
        (&Method::GET, "/openapi.json") => {
            return ("openapi", Ok(bytes_resp(StatusCode::OK, "application/json", OPENAPI)));
        }
        (&Method::GET, "/metrics") => {
            // Every tenant's metrics: the operator's (admin token in registry mode).
            if let Err(e) = auth::admin(app, &req) {
                return ("metrics", Err(e));
            }
            return ("metrics", Ok(bytes_resp(StatusCode::OK, "text/plain; version=0.0.4", app.metrics.render())));
        }
        _ => {}
    }
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if let ["v1", "admin", ..] = segs.as_slice() {
        if let Err(e) = auth::admin(app, &req) {
            return ("admin", Err(e));
        }
        let r = match (&method, segs.as_slice()) {
            (&Method::GET, ["v1", "admin", "tenants"]) => admin::list_tenants(app).await,
            (&Method::POST, ["v1", "admin", "tenants"]) => admin::create_tenant(app, req).await,
            (&Method::PATCH, ["v1", "admin", "tenants", name]) => admin::patch_tenant(app, name, req).await,
            (&Method::POST, ["v1", "admin", "tenants", name, "keys"]) => admin::issue_key(app, name).await,
            (&Method::DELETE, ["v1", "admin", "tenants", name, "keys", id]) => admin::revoke_key(app, name, id).await,
            _ => Err(ApiError::NoRoute { method: method.clone(), path: path.clone() }),
        };
        return ("admin", r);
    }
    let allowed: Vec<&str> =
        ROUTES.iter().filter(|(_, r)| matches_template(r, &path)).map(|(m, _)| *m).collect::<Vec<_>>();
    if allowed.is_empty() {
        return ("unknown", Err(ApiError::NoRoute { method: method.clone(), path: path.clone() }));
    }
    let tenant = match auth::tenant(app, &req) {
        Ok(t) => t,
        Err(e) => return ("auth", Err(e)),
    };
    if let Err(retry_after) = tenant.rate.check() {
        app.metrics.quota_exceeded.add(&tenant.name, "requests_per_second", 1);
        let e = ApiError::RateLimited {
            tenant: tenant.name.clone(),
            per_second: tenant.quotas.requests_per_second,
            retry_after_secs: retry_after,
        };
        return ("rate_limited", Err(e));
    }
    let t = &tenant;
    match (&method, segs.as_slice()) {
        (&Method::POST, ["v1", "features"]) => ("features", features::native(app, t, req).await),
        (&Method::POST, ["get-online-features"]) => ("feast", feast::get_online_features(app, t, req).await),
        (&Method::POST, ["write-to-online-store"]) => ("feast_write", feast::write_to_online_store(app, t, req).await),
        (&Method::POST, ["push"]) => ("feast_push", feast::push(app, t, req).await),
        (&Method::POST, ["v1", "training-data"]) => ("training_data", training::training_data(t, req).await),
        (&Method::GET, ["v1", "views"]) => ("views", Ok(list_views(t))),
        (&Method::GET, ["v1", "metrics"]) => (
            "metrics",
            Ok(bytes_resp(StatusCode::OK, "text/plain; version=0.0.4", tenant_metrics(&app.metrics.render(), &t.name))),
        ),
        (&Method::POST, ["v1", "views", view, "events"]) if !view.is_empty() => {
            ("push", push::push_events(app, t, view, req).await)
        }
        (&Method::GET, ["v1", "transforms"]) => ("control", control::list(app, t).await),
        (&Method::GET, ["v1", "transforms", name]) => ("control", control::get_transform(app, t, name).await),
        (&Method::PUT, ["v1", "transforms", name]) => ("control", control::put_transform(app, t, name, req).await),
        (&Method::POST, ["v1", "transforms", name, "activate"]) => {
            ("control", control::activate_version(app, t, name, req).await)
        }
        (&Method::PUT, ["v1", "views", name]) => ("control", control::put(app, t, name, req).await),
        (&Method::DELETE, ["v1", "views", name]) => ("control", control::delete(app, t, name).await),
        _ => (
            "unknown",
            Err(ApiError::MethodNotAllowed { method: method.clone(), path: path.clone(), allow: allowed.join(", ") }),
        ),
    }
}

/// Whether `path` matches a route template such as `/v1/views/{view}/events`.
fn matches_template(template: &str, path: &str) -> bool {
    let (mut t, mut p) = (template.split('/'), path.split('/'));
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.starts_with('{') && !b.is_empty() => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// Only the metric lines of one tenant (views are `tenant/view`; tenant labels are the name).
fn tenant_metrics(all: &str, tenant: &str) -> String {
    let view = format!("view=\"{tenant}/");
    let label = format!("tenant=\"{tenant}\"");
    all.lines().filter(|l| l.starts_with('#') || l.contains(&view) || l.contains(&label)).fold(
        String::new(),
        |mut o, l| {
            o.push_str(l);
            o.push('\n');
            o
        },
    )
}

/// Readiness: not ready while any source partition is stalled (the stall detector in
/// `sources::kafka` recovers it by itself). Missing source topics are listed but do not fail it:
/// one tenant deleting its topic must not take the node out of service for every tenant.
fn readyz(app: &App) -> Resp {
    let stalled: Vec<Json> =
        app.metrics.source_stalled.nonzero().into_iter().map(|(v, p)| json!({"view": v, "partition": p})).collect();
    let missing = app.metrics.source_missing.nonzero();
    let ready = stalled.is_empty();
    json_resp(
        if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE },
        &json!({"status": if ready { "ready" } else { "not_ready" }, "stalled": stalled, "missing_sources": missing}),
    )
}

fn list_views(app: &TenantApp) -> Resp {
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
