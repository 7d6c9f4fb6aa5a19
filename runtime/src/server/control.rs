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
//!   `transform` naming an uploaded transform (403 `quota_exceeded` naming the quota when the view
//!   asks more than one allows, 400 `invalid_view` when it does not build); `DELETE
//!   /v1/views/{name}` (also removes its data)
//!
//! On a node serving a manifest every one of them is 404 `no_control_plane`.

use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{Value as Json, json};

use super::error::ApiError;
use super::respond::{Resp, json_resp};
use crate::control::Control;
use crate::node::Node;
use crate::registry::{ViewKind, ViewRecord};
use crate::tenant::TenantApp;
use crate::transform::schema::valid_name;

/// The node's control plane, or 404 `no_control_plane` on a node serving a manifest.
fn control(app: &Node) -> Result<Arc<Control>, ApiError> {
    app.control.clone().ok_or(ApiError::NoControlPlane(
        "this server runs a manifest; uploads and view changes need registry mode ([control] in the manifest)",
    ))
}

/// After a change made through this node: read your writes here (the others follow within a
/// poll interval).
async fn reload(app: &Arc<Node>, control: &Arc<Control>) {
    if let Err(e) = crate::control::sync::reload(app, control).await {
        tracing::warn!(error = %e, "reload after a change failed");
    }
}

/// `GET /v1/transforms`.
pub(super) async fn list(app: &Node, t: &TenantApp) -> Result<Resp, ApiError> {
    let control = control(app)?;
    list_transforms(&control, t).await
}

/// `GET /v1/transforms/{name}`.
pub(super) async fn get_transform(app: &Node, t: &TenantApp, name: &str) -> Result<Resp, ApiError> {
    match control(app)?.registry.transform(&t.name, name).await? {
        Some(r) => Ok(json_resp(StatusCode::OK, &json!(r))),
        None => Err(ApiError::not_found(format!("no transform `{name}`"))),
    }
}

/// `PUT /v1/transforms/{name}[?activate=false]`.
pub(super) async fn put_transform(
    app: &Arc<Node>,
    t: &TenantApp,
    name: &str,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let control = control(app)?;
    let activate = !req.uri().query().is_some_and(|q| q.split('&').any(|kv| kv == "activate=false"));
    let r = upload(app, &control, t, name, activate, req).await?;
    reload(app, &control).await;
    Ok(r)
}

/// `POST /v1/transforms/{name}/activate`.
pub(super) async fn activate_version(
    app: &Arc<Node>,
    t: &TenantApp,
    name: &str,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let control = control(app)?;
    let r = activate(&control, t, name, req).await?;
    reload(app, &control).await;
    Ok(r)
}

/// `PUT /v1/views/{view}`.
pub(super) async fn put(app: &Arc<Node>, t: &TenantApp, name: &str, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let control = control(app)?;
    let r = put_view(app, &control, t, name, req).await?;
    reload(app, &control).await;
    Ok(r)
}

/// `DELETE /v1/views/{view}` (waits until this node stopped serving it).
pub(super) async fn delete(app: &Arc<Node>, t: &TenantApp, name: &str) -> Result<Resp, ApiError> {
    delete_view(app, &control(app)?, t, name).await
}

async fn list_transforms(control: &Control, t: &TenantApp) -> Result<Resp, ApiError> {
    let m = control.registry.transforms(&t.name).await?;
    let mut list: Vec<Json> = m.values().map(|r| json!(r)).collect();
    list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(json_resp(StatusCode::OK, &json!({"transforms": list})))
}

async fn upload(
    app: &Node,
    control: &Arc<Control>,
    t: &TenantApp,
    name: &str,
    activate: bool,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    if !valid_name(name) {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!("transform name `{name}`: 1-128 of [A-Za-z0-9_.-], starting with a letter"),
        ));
    }
    super::respond::require_content_type(&req, &["application/wasm", "application/octet-stream"])?;
    let cap = t.quotas.upload_mib.saturating_mul(1 << 20);
    let too_large = || {
        app.metrics.quota_exceeded.add(&t.name, "upload_mib", 1);
        ApiError::TooLarge {
            code: "upload_too_large",
            message: format!("components are limited to {} MiB for tenant `{}`", t.quotas.upload_mib, t.name),
        }
    };
    let declared =
        req.headers().get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > cap) {
        return Err(too_large());
    }
    let bytes: Bytes = match super::respond::limited_body(req, cap).await {
        Ok(b) => b,
        Err(super::respond::BodyError::TooLarge) => return Err(too_large()),
        Err(super::respond::BodyError::Api(e)) => return Err(e),
    };
    let now = crate::time::now_ms();
    let v = match crate::control::upload::validate(control, &t.name, &t.quotas, Arc::new(bytes.to_vec()), now).await {
        Ok(v) => v,
        Err(source) => {
            app.metrics.serve_errors.add(&t.name, source.code(), 1);
            if let crate::component::LoadError::CompileBudgetExceeded(_) = source {
                app.metrics.quota_exceeded.add(&t.name, "compile_budget", 1);
            }
            return Err(ApiError::Upload { name: name.into(), source });
        }
    };
    let version = v.version.clone();
    let keep = t.quotas.versions_per_transform;
    let rec = control.registry.add_version(&t.name, name, v.version, &bytes, activate, keep).await?;
    control.changed.notify_one();
    tracing::info!(tenant = %t.name, transform = name, version = %version.id, compile_ms = version.compile_ms, "transform uploaded");
    Ok(json_resp(
        StatusCode::CREATED,
        &json!({"name": name, "version": version.id, "world": version.world, "schema": version.info, "compile_ms": version.compile_ms, "bytes": version.bytes, "active": rec.active}),
    ))
}

async fn activate(control: &Control, t: &TenantApp, name: &str, req: Request<Incoming>) -> Result<Resp, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        version: String,
    }
    let b: Body = super::respond::body(req).await?;
    let rec = control.registry.activate(&t.name, name, &b.version).await?;
    control.changed.notify_one();
    tracing::info!(tenant = %t.name, transform = name, version = %b.version, "version activated");
    Ok(json_resp(StatusCode::OK, &json!(rec)))
}

async fn put_view(
    app: &Node,
    control: &Arc<Control>,
    t: &TenantApp,
    name: &str,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    if !valid_name(name) {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!("view name `{name}`: 1-128 of [A-Za-z0-9_.-], starting with a letter"),
        ));
    }
    let mut body: Json = super::respond::body(req).await?;
    let Some(obj) = body.as_object_mut() else {
        return Err(ApiError::bad_request("invalid_request", "a view is a JSON object"));
    };
    let kind: ViewKind = match obj.remove("kind").map(serde_json::from_value) {
        Some(Ok(k)) => k,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "`kind` must be \"stream\", \"batch\" or \"request\"",
            ));
        }
    };
    match obj.get("name") {
        None => {
            obj.insert("name".into(), json!(name));
        }
        Some(n) if n == name => {}
        Some(n) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("body name {n} differs from the path's `{name}`"),
            ));
        }
    }
    let record = ViewRecord { name: name.into(), kind, config: body, updated_ms: crate::time::now_ms() };
    // Dry run: the tenant with this view added or replaced must build.
    let mut snap = control.registry.snapshot().await?;
    snap.views.entry(t.name.clone()).or_default().insert(name.into(), record.clone());
    if let Err(e) = crate::control::sync::build_from_snapshot(app, control, &snap, &t.name).await {
        if let Some((quota, _, _)) = e.quota() {
            app.metrics.quota_exceeded.add(&t.name, quota, 1);
        }
        return Err(ApiError::ViewRejected(e));
    }
    control.registry.put_view(&t.name, &record).await?;
    control.changed.notify_one();
    Ok(json_resp(StatusCode::OK, &json!(record)))
}

async fn delete_view(app: &Node, control: &Arc<Control>, t: &TenantApp, name: &str) -> Result<Resp, ApiError> {
    control.registry.delete_view(&t.name, name).await?;
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
        Ok(()) => Ok(json_resp(StatusCode::OK, &json!({"deleted": name}))),
        Err(e) => Err(ApiError::unavailable(
            "store_unavailable",
            format!("view removed, but its online data was not deleted: {e}"),
        )),
    }
}
