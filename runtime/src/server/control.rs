//! A tenant's control routes (registry mode): upload transforms, activate versions (hot swap,
//! rollback), create/replace/delete views. Every change is validated first; a refused change
//! leaves the registry untouched.
//!
//! - `PUT /v1/transforms/{name}[?activate=false]` (body: the component) → 201 with the version id
//!   (sha256), world, declared schema and compile time. 413 beyond the tenant's upload quota;
//!   400 with the loader's code (`not_wasm`, `core_module`, `wrong_world`, `forbidden_import`, …);
//!   422 `compile_budget_exceeded` when compiling needs more time or memory than the tenant's
//!   quotas allow; 415 unless the content type is `application/wasm` or `application/octet-stream`.
//! - `GET /v1/transforms`, `GET /v1/transforms/{name}`
//! - `POST /v1/transforms/{name}/activate` `{"version": "<sha256>"}`
//! - `PUT /v1/views/{name}` `{"kind": "stream"|"batch"|"request", ...manifest fields}` with
//!   `transform` naming an uploaded transform; `DELETE /v1/views/{name}` (also removes its data)

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::{Value as Json, json};

use super::App;
use super::respond::{Resp, error, json_resp, registry_error};
use crate::control::Control;
use crate::registry::{ViewKind, ViewRecord};
use crate::tenant::TenantApp;
use crate::transform::schema::valid_name;

pub fn is_control_path(p: &str) -> bool {
    p == "/v1/transforms"
        || p.starts_with("/v1/transforms/")
        || (p.starts_with("/v1/views/") && !p.ends_with("/events") && p.len() > "/v1/views/".len())
}

pub async fn handle(app: &Arc<App>, t: &TenantApp, req: Request<Incoming>, method: &Method, path: &str) -> Resp {
    let Some(control) = app.control.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "no_control_plane",
            "this server runs a manifest; uploads and view changes need registry mode ([control] in the manifest)",
        );
    };
    let rest: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let resp = route(app, &control, t, req, method, path, &rest).await;
    // Read your writes on this node (deletes already waited for it); the others follow within a
    // poll interval.
    if resp.status().is_success() && *method != Method::GET && *method != Method::DELETE {
        if let Err(e) = crate::control::sync::reload(app, &control).await {
            tracing::warn!(error = %e, "reload after a change failed");
        }
    }
    resp
}

async fn route(
    app: &Arc<App>,
    control: &Arc<Control>,
    t: &TenantApp,
    req: Request<Incoming>,
    method: &Method,
    path: &str,
    rest: &[&str],
) -> Resp {
    let control = control.clone();
    match (method, rest) {
        (&Method::GET, ["v1", "transforms"]) => list_transforms(&control, t).await,
        (&Method::GET, ["v1", "transforms", name]) => match control.registry.transform(&t.name, name).await {
            Ok(Some(r)) => json_resp(StatusCode::OK, &json!(r)),
            Ok(None) => error(StatusCode::NOT_FOUND, "not_found", format!("no transform `{name}`")),
            Err(e) => registry_error(&e),
        },
        (&Method::PUT, ["v1", "transforms", name]) => {
            let activate = !req.uri().query().is_some_and(|q| q.split('&').any(|kv| kv == "activate=false"));
            upload(app, &control, t, name, activate, req).await
        }
        (&Method::POST, ["v1", "transforms", name, "activate"]) => activate(&control, t, name, req).await,
        (&Method::PUT, ["v1", "views", name]) => put_view(app, &control, t, name, req).await,
        (&Method::DELETE, ["v1", "views", name]) => delete_view(app, &control, t, name).await,
        _ if super::ROUTES.iter().any(|(_, r)| super::matches_template(r, path)) => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("{method} is not allowed on {path}"))
        }
        _ => error(StatusCode::NOT_FOUND, "not_found", format!("no route {method} {path}")),
    }
}

async fn list_transforms(control: &Control, t: &TenantApp) -> Resp {
    match control.registry.transforms(&t.name).await {
        Ok(m) => {
            let mut list: Vec<Json> = m.values().map(|r| json!(r)).collect();
            list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            json_resp(StatusCode::OK, &json!({"transforms": list}))
        }
        Err(e) => registry_error(&e),
    }
}

async fn upload(
    app: &App,
    control: &Arc<Control>,
    t: &TenantApp,
    name: &str,
    activate: bool,
    req: Request<Incoming>,
) -> Resp {
    if !valid_name(name) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_name",
            format!("transform name `{name}`: 1-128 of [A-Za-z0-9_.-], starting with a letter"),
        );
    }
    if let Err(r) = super::respond::require_content_type(&req, &["application/wasm", "application/octet-stream"]) {
        return r;
    }
    let cap = t.quotas.upload_mib.saturating_mul(1 << 20);
    let too_large = || {
        app.metrics.quota_exceeded.add(&t.name, "upload_mib", 1);
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "upload_too_large",
            format!("components are limited to {} MiB for tenant `{}`", t.quotas.upload_mib, t.name),
        )
    };
    let declared =
        req.headers().get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > cap) {
        return too_large();
    }
    let bytes: Bytes = match Limited::new(req.into_body(), cap).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return too_large(),
    };
    let now = super::now_ms();
    let v = match crate::control::upload::validate(control, &t.name, &t.quotas, Arc::new(bytes.to_vec()), now).await {
        Ok(v) => v,
        Err(e) => {
            app.metrics.serve_errors.add(&t.name, e.code(), 1);
            let status = match e {
                crate::component::LoadError::CompileBudgetExceeded(_) => {
                    app.metrics.quota_exceeded.add(&t.name, "compile_budget", 1);
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                _ => StatusCode::BAD_REQUEST,
            };
            return error(status, e.code(), format!("transform `{name}` rejected: {e}"));
        }
    };
    let version = v.version.clone();
    let keep = t.quotas.versions_per_transform;
    match control.registry.add_version(&t.name, name, v.version, &bytes, activate, keep).await {
        Ok(rec) => {
            control.changed.notify_one();
            tracing::info!(tenant = %t.name, transform = name, version = %version.id, compile_ms = version.compile_ms, "transform uploaded");
            json_resp(
                StatusCode::CREATED,
                &json!({"name": name, "version": version.id, "world": version.world, "schema": version.info, "compile_ms": version.compile_ms, "bytes": version.bytes, "active": rec.active}),
            )
        }
        Err(e) => registry_error(&e),
    }
}

async fn activate(control: &Control, t: &TenantApp, name: &str, req: Request<Incoming>) -> Resp {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        version: String,
    }
    let b: Body = match super::respond::body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match control.registry.activate(&t.name, name, &b.version).await {
        Ok(rec) => {
            control.changed.notify_one();
            tracing::info!(tenant = %t.name, transform = name, version = %b.version, "version activated");
            json_resp(StatusCode::OK, &json!(rec))
        }
        Err(e) => registry_error(&e),
    }
}

async fn put_view(app: &App, control: &Arc<Control>, t: &TenantApp, name: &str, req: Request<Incoming>) -> Resp {
    if !valid_name(name) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_name",
            format!("view name `{name}`: 1-128 of [A-Za-z0-9_.-], starting with a letter"),
        );
    }
    let mut body: Json = match super::respond::body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(obj) = body.as_object_mut() else {
        return error(StatusCode::BAD_REQUEST, "invalid_request", "a view is a JSON object");
    };
    let kind: ViewKind = match obj.remove("kind").map(serde_json::from_value) {
        Some(Ok(k)) => k,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "`kind` must be \"stream\", \"batch\" or \"request\"",
            );
        }
    };
    match obj.get("name") {
        None => {
            obj.insert("name".into(), json!(name));
        }
        Some(n) if n == name => {}
        Some(n) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("body name {n} differs from the path's `{name}`"),
            );
        }
    }
    let record = ViewRecord { name: name.into(), kind, config: body, updated_ms: super::now_ms() };
    // Dry run: the tenant with this view added or replaced must build.
    let mut snap = match control.registry.snapshot().await {
        Ok(s) => s,
        Err(e) => return registry_error(&e),
    };
    snap.views.entry(t.name.clone()).or_default().insert(name.into(), record.clone());
    if let Err(e) = crate::control::sync::build_from_snapshot(app, control, &snap, &t.name).await {
        let (status, code) = if e.contains("quota") {
            (StatusCode::FORBIDDEN, "quota_exceeded")
        } else {
            (StatusCode::BAD_REQUEST, "invalid_view")
        };
        if status == StatusCode::FORBIDDEN {
            app.metrics.quota_exceeded.add(&t.name, if e.contains("views") { "max_views" } else { "view_limits" }, 1);
        }
        return error(status, code, e);
    }
    match control.registry.put_view(&t.name, &record).await {
        Ok(()) => {
            control.changed.notify_one();
            json_resp(StatusCode::OK, &json!(record))
        }
        Err(e) => registry_error(&e),
    }
}

async fn delete_view(app: &App, control: &Arc<Control>, t: &TenantApp, name: &str) -> Resp {
    if let Err(e) = control.registry.delete_view(&t.name, name).await {
        return registry_error(&e);
    }
    // Stop consuming and serving it on every node first (this one within a poll, the others
    // within two), then remove its online data, so no late batch re-creates it.
    control.changed.notify_one();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while app.tenant(&t.name).is_some_and(|x| {
        x.catalog.stored_views().iter().any(|v| v.name() == name)
            || x.catalog.request_views().iter().any(|v| v.name == name)
    }) && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(crate::control::sync::POLL * 2).await;
    let id = format!("{}/{name}", t.name);
    match app.store.delete_view(&id).await {
        Ok(()) => json_resp(StatusCode::OK, &json!({"deleted": name})),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("view removed, but its online data was not deleted: {e}"),
        ),
    }
}
