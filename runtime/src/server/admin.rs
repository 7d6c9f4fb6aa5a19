//! Operator routes (admin token): tenants and their API keys.
//!
//! - `GET /v1/admin/tenants`
//! - `POST /v1/admin/tenants` `{"name": "acme", "quotas": {...}}` → 201 (409 if it exists)
//! - `PATCH /v1/admin/tenants/{tenant}` `{"disabled": true, "quotas": {...}}`
//! - `POST /v1/admin/tenants/{tenant}/keys` → 201 `{"id", "key"}` (the secret is shown once)
//! - `DELETE /v1/admin/tenants/{tenant}/keys/{id}` (revoked on every node within a second)

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::error::ApiError;
use super::respond::{Resp, body, json_resp};
use crate::control::Control;
use crate::node::Node;
use crate::registry::{Quotas, Tenant};
use crate::transform::schema::valid_name;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    name: String,
    #[serde(default)]
    quotas: Quotas,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantPatch {
    #[serde(default)]
    disabled: Option<bool>,
    #[serde(default)]
    quotas: Option<Quotas>,
}

/// 409 `quota_conflict` when the tenant's current views, transforms and versions do not fit
/// `t.quotas` (a dry run of building the tenant with them).
async fn check_quotas_fit(app: &Node, control: &Arc<Control>, t: &Tenant) -> Result<(), ApiError> {
    let mut snap = control.registry.snapshot().await?;
    let versions = snap.transforms.get(&t.name).map_or(0, |m| m.values().map(|r| r.versions.len()).max().unwrap_or(0));
    if versions > t.quotas.versions_per_transform {
        return Err(ApiError::QuotaConflict {
            message: format!(
                "tenant `{}` keeps {versions} versions of a transform; `versions_per_transform` {} would be below that (delete versions first)",
                t.name, t.quotas.versions_per_transform
            ),
        });
    }
    snap.tenants.insert(t.name.clone(), t.clone());
    match crate::control::sync::build_from_snapshot(app, control, &snap, &t.name).await {
        Ok(_) => Ok(()),
        Err(e) => Err(ApiError::QuotaConflict {
            message: format!(
                "the new quotas conflict with tenant `{}`'s current state: {e}; nothing was changed",
                t.name
            ),
        }),
    }
}

/// A valid tenant name: it becomes part of Redis keys, topic names and a cache directory.
pub fn valid_tenant(name: &str) -> bool {
    valid_name(name) && name.len() <= 64 && !name.contains('.')
}

/// The node's control plane, or 404 `no_control_plane` on a node serving a manifest.
fn control(app: &Node) -> Result<Arc<Control>, ApiError> {
    app.control.clone().ok_or(ApiError::NoControlPlane("tenants need registry mode ([control] in the manifest)"))
}

/// After a change made through this node: read your writes here (the others follow within a
/// poll interval).
async fn reload(app: &Arc<Node>, control: &Arc<Control>) {
    if let Err(e) = crate::control::sync::reload(app, control).await {
        tracing::warn!(error = %e, "reload after an admin change failed");
    }
}

/// `GET /v1/admin/tenants`.
pub(super) async fn list_tenants(app: &Node) -> Result<Resp, ApiError> {
    let s = control(app)?.registry.snapshot().await?;
    let mut ts: Vec<Json> = s
        .tenants
        .values()
        .map(|t| {
            let keys: Vec<Json> = s
                .keys
                .values()
                .filter(|k| k.tenant == t.name)
                .map(|k| json!({"id": k.id, "revoked": k.revoked, "created_ms": k.created_ms}))
                .collect();
            json!({"name": t.name, "disabled": t.disabled, "quotas": t.quotas, "created_ms": t.created_ms, "keys": keys})
        })
        .collect();
    ts.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(json_resp(StatusCode::OK, &json!({"tenants": ts})))
}

/// `POST /v1/admin/tenants`.
pub(super) async fn create_tenant(app: &Arc<Node>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let control = control(app)?;
    let b: NewTenant = body(req).await?;
    if !valid_tenant(&b.name) {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!("tenant name `{}`: 1-64 of [A-Za-z0-9_-], starting with a letter", b.name),
        ));
    }
    let t = Tenant { name: b.name, disabled: false, quotas: b.quotas, created_ms: crate::time::now_ms() };
    control.registry.create_tenant(&t).await?;
    reload(app, &control).await;
    Ok(json_resp(StatusCode::CREATED, &json!(t)))
}

/// `PATCH /v1/admin/tenants/{tenant}`.
pub(super) async fn patch_tenant(app: &Arc<Node>, name: &str, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let control = control(app)?;
    let b: TenantPatch = body(req).await?;
    let mut t = control.registry.tenant(name).await?;
    if let Some(d) = b.disabled {
        t.disabled = d;
    }
    if let Some(q) = b.quotas.filter(|q| *q != t.quotas) {
        t.quotas = q;
        // The tenant's current views must still build under the new quotas, or a node started
        // later would serve none of them.
        check_quotas_fit(app, &control, &t).await?;
    }
    control.registry.update_tenant(&t).await?;
    reload(app, &control).await;
    Ok(json_resp(StatusCode::OK, &json!(t)))
}

/// `POST /v1/admin/tenants/{tenant}/keys`.
pub(super) async fn issue_key(app: &Arc<Node>, name: &str) -> Result<Resp, ApiError> {
    let control = control(app)?;
    let secret = crate::control::new_secret()
        .map_err(|e| ApiError::Internal { code: "no_randomness", message: e.to_string() })?;
    let k = control.registry.issue_key(name, &secret, crate::time::now_ms()).await?;
    reload(app, &control).await;
    Ok(json_resp(StatusCode::CREATED, &json!({"id": k.id, "tenant": k.tenant, "key": secret})))
}

/// `DELETE /v1/admin/tenants/{tenant}/keys/{key}`.
pub(super) async fn revoke_key(app: &Arc<Node>, name: &str, id: &str) -> Result<Resp, ApiError> {
    let control = control(app)?;
    control.registry.revoke_key(name, id).await?;
    reload(app, &control).await;
    Ok(json_resp(StatusCode::OK, &json!({"revoked": id})))
}
