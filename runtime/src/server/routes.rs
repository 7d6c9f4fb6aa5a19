//! **The route table**: every route of the API, once ([`TABLE`]). It dispatches requests (a
//! [`matchit`] router built from it), and [`super::ROUTES`], the OpenAPI test and the metric
//! labels are derived from it. 404 (no route has the path) and 405 (the path has no route with
//! the method; `Allow` lists those it has) are decided here, before credentials are checked;
//! then the route's [`Access`] decides the credentials and, for tenant routes, the rate limit.

use std::sync::{Arc, LazyLock};

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::json;

use super::error::ApiError;
use super::respond::{Resp, bytes_resp, json_resp};
use super::{OPENAPI, admin, auth, console, control, feast, features, push, training, view_health};
use crate::node::Node;
use crate::tenant::TenantApp;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, readiness, the OpenAPI document).
    Public,
    /// The operator (the admin token in registry mode; open in manifest mode).
    Admin,
    /// A tenant (its API key in registry mode; the manifest's tenant otherwise), rate-limited.
    Tenant,
}

/// What a public route runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Public {
    Healthz,
    Health,
    Readyz,
    OpenApi,
    /// The console's page (`console.rs`).
    Console,
    /// One of the console's files.
    ConsoleAsset,
}

/// What an operator route runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Metrics,
    ListTenants,
    CreateTenant,
    PatchTenant,
    IssueKey,
    RevokeKey,
}

/// What a tenant route runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tenant {
    Views,
    Push,
    Features,
    FeastGet,
    FeastWrite,
    FeastPush,
    TrainingData,
    Metrics,
    ViewHealth,
    ListTransforms,
    GetTransform,
    PutTransform,
    Activate,
    PutView,
    DeleteView,
}

/// A route's handler; its kind is the route's [`Access`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handler {
    Public(Public),
    Operator(Operator),
    Tenant(Tenant),
}

/// One route: method, path template (`{param}` segments), metric label and handler.
#[derive(Debug)]
pub struct Route {
    /// The HTTP method.
    pub method: &'static str,
    /// The path template, as in `runtime/openapi.json`.
    pub path: &'static str,
    /// The `route` label of `wafer_http_requests_total` and `wafer_http_request_seconds`
    /// (`unknown` for a request no route matches).
    pub label: &'static str,
    handler: Handler,
}

impl Route {
    /// Who may call it.
    pub fn access(&self) -> Access {
        match self.handler {
            Handler::Public(_) => Access::Public,
            Handler::Operator(_) => Access::Admin,
            Handler::Tenant(_) => Access::Tenant,
        }
    }
}

const fn route(method: &'static str, path: &'static str, label: &'static str, handler: Handler) -> Route {
    Route { method, path, label, handler }
}

use Handler::{Operator as O, Public as P, Tenant as T};

/// Every route of the API.
pub const TABLE: &[Route] = &[
    route("GET", "/healthz", "healthz", P(Public::Healthz)),
    route("GET", "/readyz", "readyz", P(Public::Readyz)),
    route("GET", "/metrics", "metrics", O(Operator::Metrics)),
    route("GET", "/openapi.json", "openapi", P(Public::OpenApi)),
    route("GET", "/v1/views", "views", T(Tenant::Views)),
    route("POST", "/v1/views/{view}/events", "push", T(Tenant::Push)),
    route("POST", "/v1/features", "features", T(Tenant::Features)),
    route("POST", "/get-online-features", "feast", T(Tenant::FeastGet)),
    route("POST", "/write-to-online-store", "feast_write", T(Tenant::FeastWrite)),
    route("POST", "/push", "feast_push", T(Tenant::FeastPush)),
    // Feast's health check: 200 with an empty body, no credentials (as Feast answers it).
    route("GET", "/health", "health", P(Public::Health)),
    route("POST", "/v1/training-data", "training_data", T(Tenant::TrainingData)),
    route("GET", "/v1/metrics", "metrics", T(Tenant::Metrics)),
    route("GET", "/v1/view-health", "view_health", T(Tenant::ViewHealth)),
    route("GET", "/v1/transforms", "control", T(Tenant::ListTransforms)),
    route("GET", "/v1/transforms/{name}", "control", T(Tenant::GetTransform)),
    route("PUT", "/v1/transforms/{name}", "control", T(Tenant::PutTransform)),
    route("POST", "/v1/transforms/{name}/activate", "control", T(Tenant::Activate)),
    route("PUT", "/v1/views/{view}", "control", T(Tenant::PutView)),
    route("DELETE", "/v1/views/{view}", "control", T(Tenant::DeleteView)),
    route("GET", "/v1/admin/tenants", "admin", O(Operator::ListTenants)),
    route("POST", "/v1/admin/tenants", "admin", O(Operator::CreateTenant)),
    route("PATCH", "/v1/admin/tenants/{tenant}", "admin", O(Operator::PatchTenant)),
    route("POST", "/v1/admin/tenants/{tenant}/keys", "admin", O(Operator::IssueKey)),
    route("DELETE", "/v1/admin/tenants/{tenant}/keys/{key}", "admin", O(Operator::RevokeKey)),
    route("GET", "/ui", "console", P(Public::Console)),
    route("GET", "/ui/{asset}", "console", P(Public::ConsoleAsset)),
];

/// (method, path template) of every route in [`TABLE`], in its order.
pub const PAIRS: [(&str, &str); TABLE.len()] = {
    let mut out = [("", ""); TABLE.len()];
    let mut i = 0;
    while i < TABLE.len() {
        out[i] = (TABLE[i].method, TABLE[i].path);
        i += 1;
    }
    out
};

/// The routes of one path template.
struct PathRoutes {
    routes: Vec<&'static Route>,
    /// Their methods, for `Allow`.
    allow: String,
}

/// The router: path template → its routes. Built once; the templates are constants, so a
/// template matchit refuses is a bug caught by the unit tests, and is left out rather than
/// taking the node down.
static ROUTER: LazyLock<matchit::Router<PathRoutes>> = LazyLock::new(|| {
    let mut paths: Vec<(&'static str, Vec<&'static Route>)> = Vec::new();
    for r in TABLE {
        match paths.iter_mut().find(|(p, _)| *p == r.path) {
            Some((_, rs)) => rs.push(r),
            None => paths.push((r.path, vec![r])),
        }
    }
    let mut router = matchit::Router::new();
    for (path, routes) in paths {
        let allow = routes.iter().map(|r| r.method).collect::<Vec<_>>().join(", ");
        if let Err(e) = router.insert(path, PathRoutes { routes, allow }) {
            tracing::error!(path, error = %e, "invalid route template");
        }
    }
    router
});

/// A route's path parameters, in template order (no allocation for routes without any).
type Params = Vec<String>;

/// The route for `method` and `path`: 404 when no route has the path, 405 when none of its
/// routes has the method.
fn find(method: &Method, path: &str) -> Result<(&'static Route, Params), ApiError> {
    let m = ROUTER.at(path).map_err(|_| ApiError::NoRoute { method: method.clone(), path: path.into() })?;
    let Some(route) = m.value.routes.iter().find(|r| r.method == method.as_str()) else {
        return Err(ApiError::MethodNotAllowed {
            method: method.clone(),
            path: path.into(),
            allow: m.value.allow.clone(),
        });
    };
    Ok((route, m.params.iter().map(|(_, v)| v.to_owned()).collect()))
}

/// Route, authenticate, rate-limit and run a request: the route's metric label and its outcome.
/// A request refused for its credentials (401/403) or its rate (429) is counted under its route
/// too: the status says why.
pub(super) async fn dispatch(app: &Arc<Node>, req: Request<Incoming>) -> (&'static str, Result<Resp, ApiError>) {
    let (route, params) = match find(req.method(), req.uri().path()) {
        Ok(found) => found,
        Err(e) => return ("unknown", Err(e)),
    };
    let p = |i: usize| params.get(i).map_or("", String::as_str);
    match route.handler {
        Handler::Public(h) => (route.label, public(app, h, p(0))),
        Handler::Operator(h) => {
            if let Err(e) = auth::admin(app, &req) {
                return (route.label, refuse(req, e).await);
            }
            let r = Box::pin(operator(app, h, p(0), p(1), req)).await;
            (route.label, r)
        }
        Handler::Tenant(h) => {
            let t = match auth::tenant(app, &req) {
                Ok(t) => t,
                Err(e) => return (route.label, refuse(req, e).await),
            };
            if let Err(retry_after) = t.rate.check() {
                app.metrics.quota_exceeded.add(&t.name, "requests_per_second", 1);
                let e = ApiError::RateLimited {
                    tenant: t.name.clone(),
                    per_second: t.quotas.requests_per_second,
                    retry_after_secs: retry_after,
                };
                return (route.label, refuse(req, e).await);
            }
            (route.label, tenant(app, &t, h, p(0), req).await)
        }
    }
}

/// An operator route; `p0`, `p1` are its path parameters (tenant, key).
async fn operator(app: &Arc<Node>, h: Operator, p0: &str, p1: &str, req: Request<Incoming>) -> Result<Resp, ApiError> {
    match h {
        Operator::Metrics => Ok(bytes_resp(StatusCode::OK, "text/plain; version=0.0.4", app.metrics.render())),
        Operator::ListTenants => admin::list_tenants(app).await,
        Operator::CreateTenant => admin::create_tenant(app, req).await,
        Operator::PatchTenant => admin::patch_tenant(app, p0, req).await,
        Operator::IssueKey => admin::issue_key(app, p0).await,
        Operator::RevokeKey => admin::revoke_key(app, p0, p1).await,
    }
}

/// Most of a refused request's unread body that is read (and dropped) before answering.
const LINGER_BYTES: usize = 8 << 20;

/// Refuse a request before its handler read its body: drain the body first (bounded), so the
/// client receives the refusal instead of a connection reset.
async fn refuse(req: Request<Incoming>, e: ApiError) -> Result<Resp, ApiError> {
    super::respond::discard_body(req, LINGER_BYTES).await;
    Err(e)
}

/// A public route; `p0` is its first path parameter (the console file's name).
fn public(app: &Node, h: Public, p0: &str) -> Result<Resp, ApiError> {
    Ok(match h {
        Public::Healthz => json_resp(StatusCode::OK, &json!({"status": "ok"})),
        Public::Health => bytes_resp(StatusCode::OK, "text/plain", ""),
        Public::Readyz => super::readyz(app),
        Public::OpenApi => bytes_resp(StatusCode::OK, "application/json", OPENAPI),
        Public::Console => console::page(),
        Public::ConsoleAsset => return console::asset(p0),
    })
}

/// A tenant route; `p0` is its first path parameter (the view or transform name).
///
/// Reads are awaited in place; every other handler's future is boxed, so this future (which
/// hyper moves a few times per request) is the size of a read's, not of the largest handler's.
async fn tenant(app: &Arc<Node>, t: &TenantApp, h: Tenant, p0: &str, req: Request<Incoming>) -> Result<Resp, ApiError> {
    match h {
        Tenant::Features => features::native(app, t, req).await,
        Tenant::FeastGet => feast::get_online_features(app, t, req).await,
        Tenant::Push => Box::pin(push::push_events(app, t, p0, req)).await,
        Tenant::FeastWrite => Box::pin(feast::write_to_online_store(app, t, req)).await,
        Tenant::FeastPush => Box::pin(feast::push(app, t, req)).await,
        Tenant::TrainingData => Box::pin(training::training_data(t, req)).await,
        Tenant::Views => Ok(super::list_views(t)),
        Tenant::Metrics => Ok(bytes_resp(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            super::tenant_metrics(&app.metrics.render(), &t.name),
        )),
        Tenant::ViewHealth => Ok(view_health::view_health(app, t)),
        Tenant::ListTransforms => Box::pin(control::list(app, t)).await,
        Tenant::GetTransform => Box::pin(control::get_transform(app, t, p0)).await,
        Tenant::PutTransform => Box::pin(control::put_transform(app, t, p0, req)).await,
        Tenant::Activate => Box::pin(control::activate_version(app, t, p0, req)).await,
        Tenant::PutView => Box::pin(control::put(app, t, p0, req)).await,
        Tenant::DeleteView => Box::pin(control::delete(app, t, p0)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_routed_and_no_route_is_listed_twice() {
        assert_eq!(ROUTER.at("/v1/features").map(|m| m.value.routes.len()).ok(), Some(1));
        let mut seen = std::collections::HashSet::new();
        for r in TABLE {
            assert!(seen.insert((r.method, r.path)), "{} {} is listed twice", r.method, r.path);
            // The template itself matches its own route (params match their `{name}` text).
            let (found, _) = find(&r.method.parse().unwrap(), r.path).unwrap();
            assert_eq!((found.method, found.path, found.label), (r.method, r.path, r.label));
        }
        assert_eq!(PAIRS.len(), TABLE.len());
    }

    #[test]
    fn not_found_and_method_not_allowed_are_decided_by_the_table() {
        let e = find(&Method::GET, "/v1/nope").unwrap_err();
        assert_eq!((e.status().as_u16(), e.code()), (404, "not_found"));
        assert_eq!(e.to_string(), "no route GET /v1/nope");
        let e = find(&Method::GET, "/v1/features").unwrap_err();
        assert_eq!((e.status().as_u16(), e.code()), (405, "method_not_allowed"));
        assert_eq!(e.to_string(), "GET is not allowed on /v1/features");
        let ApiError::MethodNotAllowed { allow, .. } = find(&Method::POST, "/v1/views/x").unwrap_err() else {
            panic!("not a 405")
        };
        assert_eq!(allow, "PUT, DELETE");
        // A nested name is not a parameter.
        assert_eq!(find(&Method::PUT, "/v1/transforms/bad/name").unwrap_err().code(), "not_found");
        assert_eq!(find(&Method::POST, "/v1/views//events").unwrap_err().code(), "not_found");
    }

    #[test]
    fn a_view_named_events_is_a_view_not_the_push_route() {
        for m in [Method::PUT, Method::DELETE] {
            let (r, params) = find(&m, "/v1/views/events").unwrap();
            assert_eq!((r.path, params), ("/v1/views/{view}", vec!["events".to_string()]));
        }
        let (r, params) = find(&Method::POST, "/v1/views/events/events").unwrap();
        assert_eq!((r.label, params), ("push", vec!["events".to_string()]));
    }

    #[test]
    fn params_come_in_template_order() {
        let (r, params) = find(&Method::DELETE, "/v1/admin/tenants/acme/keys/k1").unwrap();
        assert_eq!((r.access(), params), (Access::Admin, vec!["acme".to_string(), "k1".to_string()]));
        assert_eq!(find(&Method::GET, "/healthz").unwrap().0.access(), Access::Public);
        assert_eq!(find(&Method::POST, "/push").unwrap().0.access(), Access::Tenant);
    }
}
