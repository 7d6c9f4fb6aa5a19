//! Operator routes (admin token): tenants and their API keys.
//!
//! - `GET /v1/admin/tenants`
//! - `POST /v1/admin/tenants` `{"name": "acme", "quotas": {...}}` → 201 (409 if it exists)
//! - `PATCH /v1/admin/tenants/{tenant}` `{"disabled": true, "quotas": {...}}`
//! - `POST /v1/admin/tenants/{tenant}/keys` → 201 `{"id", "key"}` (the secret is shown once)
//! - `DELETE /v1/admin/tenants/{tenant}/keys/{id}` (revoked on every node within a second)

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::App;
use super::respond::{Resp, body, error, json_resp, registry_error};
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
async fn check_quotas_fit(app: &App, control: &Arc<crate::control::Control>, t: &Tenant) -> Result<(), Resp> {
    let mut snap = control.registry.snapshot().await.map_err(|e| registry_error(&e))?;
    let versions = snap.transforms.get(&t.name).map_or(0, |m| m.values().map(|r| r.versions.len()).max().unwrap_or(0));
    if versions > t.quotas.versions_per_transform {
        return Err(error(
            StatusCode::CONFLICT,
            "quota_conflict",
            format!(
                "tenant `{}` keeps {versions} versions of a transform; `versions_per_transform` {} would be below that (delete versions first)",
                t.name, t.quotas.versions_per_transform
            ),
        ));
    }
    snap.tenants.insert(t.name.clone(), t.clone());
    match crate::control::sync::build_from_snapshot(app, control, &snap, &t.name).await {
        Ok(_) => Ok(()),
        Err(e) => Err(error(
            StatusCode::CONFLICT,
            "quota_conflict",
            format!("the new quotas conflict with tenant `{}`'s current state: {e}; nothing was changed", t.name),
        )),
    }
}

/// A valid tenant name: it becomes part of Redis keys, topic names and a cache directory.
pub fn valid_tenant(name: &str) -> bool {
    valid_name(name) && name.len() <= 64 && !name.contains('.')
}

pub async fn handle(app: &Arc<App>, req: Request<Incoming>, method: &Method, path: &str) -> Resp {
    let Some(control) = app.control.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "no_control_plane",
            "tenants need registry mode ([control] in the manifest)",
        );
    };
    let reg = &control.registry;
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let now = super::now_ms();
    let resp = match (method, parts.as_slice()) {
        (&Method::GET, ["v1", "admin", "tenants"]) => match reg.snapshot().await {
            Ok(s) => {
                let mut ts: Vec<Json> = s
                    .tenants
                    .values()
                    .map(|t| {
                        let keys: Vec<Json> = s.keys.values().filter(|k| k.tenant == t.name).map(|k| json!({"id": k.id, "revoked": k.revoked, "created_ms": k.created_ms})).collect();
                        json!({"name": t.name, "disabled": t.disabled, "quotas": t.quotas, "created_ms": t.created_ms, "keys": keys})
                    })
                    .collect();
                ts.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
                json_resp(StatusCode::OK, &json!({"tenants": ts}))
            }
            Err(e) => registry_error(&e),
        },
        (&Method::POST, ["v1", "admin", "tenants"]) => {
            let b: NewTenant = match body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            if !valid_tenant(&b.name) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_name",
                    format!("tenant name `{}`: 1-64 of [A-Za-z0-9_-], starting with a letter", b.name),
                );
            }
            let t = Tenant { name: b.name, disabled: false, quotas: b.quotas, created_ms: now };
            match reg.create_tenant(&t).await {
                Ok(()) => json_resp(StatusCode::CREATED, &json!(t)),
                Err(e) => registry_error(&e),
            }
        }
        (&Method::PATCH, ["v1", "admin", "tenants", name]) => {
            let b: TenantPatch = match body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let mut t = match reg.tenant(name).await {
                Ok(t) => t,
                Err(e) => return registry_error(&e),
            };
            if let Some(d) = b.disabled {
                t.disabled = d;
            }
            if let Some(q) = b.quotas.filter(|q| *q != t.quotas) {
                t.quotas = q;
                // The tenant's current views must still build under the new quotas, or a node
                // started later would serve none of them.
                if let Err(r) = check_quotas_fit(app, &control, &t).await {
                    return r;
                }
            }
            match reg.update_tenant(&t).await {
                Ok(()) => json_resp(StatusCode::OK, &json!(t)),
                Err(e) => registry_error(&e),
            }
        }
        (&Method::POST, ["v1", "admin", "tenants", name, "keys"]) => {
            let secret = match crate::control::new_secret() {
                Ok(s) => s,
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "no_randomness", e.to_string()),
            };
            match reg.issue_key(name, &secret, now).await {
                Ok(k) => json_resp(StatusCode::CREATED, &json!({"id": k.id, "tenant": k.tenant, "key": secret})),
                Err(e) => registry_error(&e),
            }
        }
        (&Method::DELETE, ["v1", "admin", "tenants", name, "keys", id]) => match reg.revoke_key(name, id).await {
            Ok(()) => json_resp(StatusCode::OK, &json!({"revoked": id})),
            Err(e) => registry_error(&e),
        },
        _ => error(StatusCode::NOT_FOUND, "not_found", format!("no admin route {method} {path}")),
    };
    // Read your writes on this node; the others follow within a poll interval.
    if resp.status().is_success() && method != Method::GET {
        if let Err(e) = crate::control::sync::reload(app, &control).await {
            tracing::warn!(error = %e, "reload after an admin change failed");
        }
    }
    resp
}
