//! Who is calling: the admin (operator token) or a tenant (API key, stored hashed). Manifest mode
//! has no keys: everything is the manifest's tenant, and operator routes are open.
//!
//! - no `Authorization: Bearer …` → 401 `missing_credentials`
//! - unknown key → 401 `invalid_api_key`; revoked key → 401 `revoked_api_key`
//! - a tenant key on an admin route, or the admin token on a tenant route → 403 `forbidden`
//! - a disabled tenant's key → 403 `tenant_disabled`

use std::sync::Arc;

use hyper::Request;
use hyper::body::Incoming;

use super::error::ApiError;
use crate::node::Node;
use crate::registry::hash_secret;
use crate::tenant::TenantApp;

fn bearer(req: &Request<Incoming>) -> Option<&str> {
    req.headers().get(hyper::header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Unauthorized { code, message: message.into() }
}

fn forbidden(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Forbidden { code, message: message.into() }
}

/// Admin routes (and `/metrics` of every tenant).
pub fn admin(app: &Node, req: &Request<Incoming>) -> Result<(), ApiError> {
    let Some(control) = &app.control else { return Ok(()) };
    let Some(token) = bearer(req) else {
        return Err(unauthorized("missing_credentials", "this route needs the admin token (Authorization: Bearer …)"));
    };
    if control.is_admin(token) {
        return Ok(());
    }
    match app.state().keys.get(&hash_secret(token)) {
        Some(k) if k.revoked => return Err(unauthorized("revoked_api_key", format!("API key {} was revoked", k.id))),
        Some(_) => {
            return Err(forbidden(
                "forbidden",
                "this route is for the operator (admin token); tenant keys cannot use it",
            ));
        }
        None => {}
    }
    Err(unauthorized("invalid_credentials", "the admin token is wrong"))
}

/// The calling tenant.
pub fn tenant(app: &Node, req: &Request<Incoming>) -> Result<Arc<TenantApp>, ApiError> {
    let state = app.state();
    if let Some(open) = &state.open_tenant {
        return state
            .tenants
            .get(open)
            .cloned()
            .ok_or_else(|| ApiError::unavailable("not_ready", "the tenant is not loaded"));
    }
    let Some(secret) = bearer(req) else {
        return Err(unauthorized("missing_credentials", "this route needs a tenant API key (Authorization: Bearer …)"));
    };
    let Some(key) = state.keys.get(&hash_secret(secret)) else {
        if app.control.as_ref().is_some_and(|c| c.is_admin(secret)) {
            return Err(forbidden("forbidden", "the admin token is not a tenant key; use a tenant's API key"));
        }
        return Err(unauthorized("invalid_api_key", "unknown API key"));
    };
    if key.revoked {
        return Err(unauthorized("revoked_api_key", format!("API key {} was revoked", key.id)));
    }
    match state.tenants.get(&key.tenant) {
        Some(t) => Ok(t.clone()),
        None => Err(forbidden("tenant_disabled", format!("tenant `{}` is disabled", key.tenant))),
    }
}
