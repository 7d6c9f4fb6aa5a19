//! [`ApiError`]: every error the HTTP API answers, with its stable code, HTTP status, message
//! and details, and the one mapping to a response ([`ApiError::into_response`]).
//!
//! Wafer's own routes answer `{"error": {"code": "...", "message": "...", ...details}}`; Feast's
//! routes answer Feast's shapes ([`ApiError::Feast`], [`ApiError::FeastBody`]) with Wafer's code
//! in the `x-wafer-error-code` header. Nothing is classified by its message: each variant (or the
//! typed error it wraps) knows its code and status.

use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use serde_json::{Map, Value as Json, json};

use super::respond::{Resp, bytes_resp, json_resp};
use crate::component::LoadError;
use crate::control::sync::SyncError;
use crate::registry::RegistryError;
use crate::serving::ServeError;
use crate::serving::feast::FeastError;

/// An error answered by the HTTP API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 404 `not_found`: no route has this path.
    #[error("no route {method} {path}")]
    NoRoute {
        /// The request's method.
        method: Method,
        /// The request's path.
        path: String,
    },
    /// 405 `method_not_allowed`: the path is a route, the method is not one of it (`Allow`
    /// lists the ones that are).
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The request's method.
        method: Method,
        /// The request's path.
        path: String,
        /// The methods the path has, comma-separated (the `Allow` header).
        allow: String,
    },
    /// 404 `no_control_plane`: a registry-mode route on a node serving a manifest.
    #[error("{0}")]
    NoControlPlane(&'static str),
    /// 401 with `WWW-Authenticate: Bearer`: `missing_credentials`, `invalid_api_key`,
    /// `revoked_api_key`, `invalid_credentials`.
    #[error("{message}")]
    Unauthorized {
        /// The stable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// 403: `forbidden` (the wrong kind of credentials), `tenant_disabled`.
    #[error("{message}")]
    Forbidden {
        /// The stable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// 429 `rate_limited` with `Retry-After`.
    #[error("tenant `{tenant}` is over its quota of {per_second} requests/s")]
    RateLimited {
        /// The limited tenant.
        tenant: String,
        /// Its `requests_per_second` quota.
        per_second: u32,
        /// Seconds until a request would be admitted.
        retry_after_secs: u64,
    },
    /// 400 with a code naming the problem: `invalid_request`, `invalid_json`, `invalid_name`,
    /// `invalid_event`, `invalid_idempotency_key`, `invalid_body`, `spine_too_large`.
    #[error("{message}")]
    BadRequest {
        /// The stable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// 404 with a code: `not_found` (a named resource does not exist), `unknown_view`.
    #[error("{message}")]
    NotFound {
        /// The stable code.
        code: &'static str,
        /// What was not found.
        message: String,
    },
    /// 413: `body_too_large`, `upload_too_large`, `too_many_events`.
    #[error("{message}")]
    TooLarge {
        /// The stable code.
        code: &'static str,
        /// What limit was passed.
        message: String,
    },
    /// 408 `body_timeout`: the client did not send the whole body within the listener's
    /// body-read timeout ([`super::ListenConfig::body_timeout`]).
    #[error("the request body did not arrive within {timeout_ms} ms")]
    BodyTimeout {
        /// The timeout that passed.
        timeout_ms: u64,
    },
    /// 415 `unsupported_media_type`.
    #[error("content type `{media}` is not accepted here; send {accepted}")]
    UnsupportedMediaType {
        /// The request's media type.
        media: String,
        /// The accepted ones, as prose.
        accepted: String,
    },
    /// 503, optionally with `Retry-After`: `not_ready`, `too_many_connections`, `store_unavailable`,
    /// `store_outcome_unknown`, `view_paused`.
    #[error("{message}")]
    Unavailable {
        /// The stable code.
        code: &'static str,
        /// What is unavailable, and whether anything was written.
        message: String,
        /// The `Retry-After` header, in seconds.
        retry_after_secs: Option<u64>,
    },
    /// 500 with a code (`no_randomness`).
    #[error("{message}")]
    Internal {
        /// The stable code.
        code: &'static str,
        /// What failed.
        message: String,
    },
    /// A registry failure: 409 `tenant_exists`, 404 `not_found`, else 503 `registry_unavailable`.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A feature read that was refused or failed ([`ServeError`]'s code, status and details).
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// An upload that does not load: the loader's code; 422 for `compile_budget_exceeded`,
    /// else 400.
    #[error("transform `{name}` rejected: {source}")]
    Upload {
        /// The transform's name.
        name: String,
        /// Why it does not load.
        source: LoadError,
    },
    /// A view change that would not build: 403 `quota_exceeded` (details `quota`, `limit`,
    /// `found`) when it asks for more than a quota, else 400 `invalid_view`.
    #[error(transparent)]
    ViewRejected(SyncError),
    /// 409 `quota_conflict`: new quotas that the tenant's current state violates.
    #[error("{message}")]
    QuotaConflict {
        /// The conflict.
        message: String,
    },
    /// 422 for a batch over one of the tenant's caps (details `quota`, `limit`, `found`).
    #[error("{message}")]
    OverCap {
        /// The stable code (`too_many_rows`, `too_many_entities`).
        code: &'static str,
        /// What was over the cap.
        message: String,
        /// The quota's name.
        quota: &'static str,
        /// The quota's value.
        limit: u64,
        /// What the batch had.
        found: u64,
    },
    /// A Feast route's error, in Feast's shape (see [`FeastError::body`]).
    #[error("{}", .0.message)]
    Feast(FeastError),
    /// A Feast route's body that is not JSON or not Feast's model: 422 with FastAPI's
    /// `{"detail": [...]}`.
    #[error("request body: {message}")]
    FeastBody {
        /// FastAPI's error type (`json_invalid`, `value_error`).
        kind: &'static str,
        /// Wafer's code (`invalid_json`, `invalid_request`).
        code: &'static str,
        /// The parser's message.
        message: String,
    },
}

/// A quota a refused view change asks more than: (quota name, quota value, what was asked).
pub type QuotaBreach = (&'static str, u64, u64);

impl ApiError {
    /// A 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest { code, message: message.into() }
    }

    /// A 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound { code: "not_found", message: message.into() }
    }

    /// A 503 with `code` and no `Retry-After`.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unavailable { code, message: message.into(), retry_after_secs: None }
    }

    /// The stable machine-readable code (the body's `code`, metric labels).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoRoute { .. } => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::NoControlPlane(_) => "no_control_plane",
            Self::RateLimited { .. } => "rate_limited",
            Self::UnsupportedMediaType { .. } => "unsupported_media_type",
            Self::BodyTimeout { .. } => "body_timeout",
            Self::Unauthorized { code, .. }
            | Self::Forbidden { code, .. }
            | Self::BadRequest { code, .. }
            | Self::NotFound { code, .. }
            | Self::TooLarge { code, .. }
            | Self::Unavailable { code, .. }
            | Self::Internal { code, .. }
            | Self::OverCap { code, .. }
            | Self::FeastBody { code, .. } => code,
            Self::Registry(RegistryError::TenantExists(_)) => "tenant_exists",
            Self::Registry(e) if e.is_not_found() => "not_found",
            Self::Registry(_) => "registry_unavailable",
            Self::Serve(e) => e.code(),
            Self::Upload { source, .. } => source.code(),
            Self::ViewRejected(e) if e.quota().is_some() => "quota_exceeded",
            Self::ViewRejected(_) => "invalid_view",
            Self::QuotaConflict { .. } => "quota_conflict",
            Self::Feast(e) => e.code,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute { .. } | Self::NoControlPlane(_) | Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Registry(RegistryError::TenantExists(_)) => StatusCode::CONFLICT,
            Self::Registry(e) if e.is_not_found() => StatusCode::NOT_FOUND,
            Self::Registry(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Serve(e) => StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            Self::Upload { source: LoadError::CompileBudgetExceeded(_), .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Upload { .. } => StatusCode::BAD_REQUEST,
            Self::ViewRejected(e) if e.quota().is_some() => StatusCode::FORBIDDEN,
            Self::ViewRejected(_) => StatusCode::BAD_REQUEST,
            Self::QuotaConflict { .. } => StatusCode::CONFLICT,
            Self::OverCap { .. } | Self::FeastBody { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Feast(e) => StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
        }
    }

    /// Fields added to the error object besides `code` and `message`.
    pub fn details(&self) -> Option<Map<String, Json>> {
        let d = match self {
            Self::Serve(e) => match e.body() {
                Json::Object(mut o) => match o.remove("error") {
                    Some(Json::Object(mut e)) => {
                        e.remove("code");
                        e.remove("message");
                        return (!e.is_empty()).then_some(e);
                    }
                    _ => return None,
                },
                _ => return None,
            },
            Self::ViewRejected(e) => {
                let (quota, limit, found) = e.quota()?;
                json!({"quota": quota, "limit": limit, "found": found})
            }
            Self::OverCap { quota, limit, found, .. } => json!({"quota": quota, "limit": limit, "found": found}),
            _ => return None,
        };
        match d {
            Json::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The response: the JSON error body (Feast's shapes for [`Self::Feast`] and
    /// [`Self::FeastBody`]), with `Retry-After`, `WWW-Authenticate` or `Allow` where they apply.
    pub fn into_response(self) -> Resp {
        let status = self.status();
        let code = self.code();
        let mut r = match &self {
            Self::Feast(e) => bytes_resp(status, "application/json", e.body()),
            Self::FeastBody { kind, message, .. } => {
                json_resp(status, &json!({"detail": [{"type": kind, "loc": ["body"], "msg": message}]}))
            }
            _ => {
                let mut e = Map::new();
                e.insert("code".into(), code.into());
                e.insert("message".into(), self.to_string().into());
                if let Some(d) = self.details() {
                    e.extend(d);
                }
                json_resp(status, &json!({"error": e}))
            }
        };
        let h = r.headers_mut();
        match &self {
            Self::Feast(_) | Self::FeastBody { .. } => {
                h.insert(HeaderName::from_static("x-wafer-error-code"), HeaderValue::from_static(code));
            }
            Self::Unauthorized { .. } => {
                h.insert(hyper::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::RateLimited { retry_after_secs, .. }
            | Self::Unavailable { retry_after_secs: Some(retry_after_secs), .. } => {
                h.insert(hyper::header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            Self::MethodNotAllowed { allow, .. } => {
                if let Ok(v) = HeaderValue::from_str(allow) {
                    h.insert(hyper::header::ALLOW, v);
                }
            }
            _ => {}
        }
        r
    }
}

impl From<ApiError> for Resp {
    fn from(e: ApiError) -> Self {
        e.into_response()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    fn body(r: Resp) -> Json {
        let bytes = futures::executor::block_on(r.into_body().collect()).map(|b| b.to_bytes()).unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or(Json::Null)
    }

    #[test]
    fn wafer_errors_keep_the_documented_body() {
        let r = ApiError::bad_request("invalid_name", "bad name").into_response();
        assert_eq!(r.status(), 400);
        assert_eq!(body(r), json!({"error": {"code": "invalid_name", "message": "bad name"}}));

        let r = ApiError::RateLimited { tenant: "a".into(), per_second: 5, retry_after_secs: 1 }.into_response();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[hyper::header::RETRY_AFTER], "1");
        assert_eq!(
            body(r),
            json!({"error": {"code": "rate_limited", "message": "tenant `a` is over its quota of 5 requests/s"}})
        );

        let r = ApiError::Unauthorized { code: "invalid_api_key", message: "unknown API key".into() }.into_response();
        assert_eq!(
            (r.status().as_u16(), &r.headers()[hyper::header::WWW_AUTHENTICATE]),
            (401, &"Bearer".parse::<HeaderValue>().unwrap())
        );

        let r = ApiError::Serve(ServeError::UnknownViews(vec!["x".into()])).into_response();
        assert_eq!(r.status(), 400);
        assert_eq!(
            body(r),
            json!({"error": {"code": "unknown_views", "message": "unknown view(s): x", "unknown": ["x"]}})
        );

        let r = ApiError::OverCap {
            code: "too_many_rows",
            message: "too many".into(),
            quota: "batch_rows",
            limit: 2,
            found: 3,
        }
        .into_response();
        assert_eq!(r.status(), 422);
        assert_eq!(
            body(r),
            json!({"error": {"code": "too_many_rows", "message": "too many", "quota": "batch_rows", "limit": 2, "found": 3}})
        );

        let r =
            ApiError::MethodNotAllowed { method: Method::DELETE, path: "/v1/features".into(), allow: "POST".into() }
                .into_response();
        assert_eq!((r.status().as_u16(), r.headers()[hyper::header::ALLOW].to_str().unwrap()), (405, "POST"));
    }

    #[test]
    fn feast_errors_keep_feasts_shapes() {
        let r = ApiError::Feast(FeastError::view_not_found("v")).into_response();
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["x-wafer-error-code"], "unknown_views");
        let text = body(r);
        let inner: Json = serde_json::from_str(text.as_str().unwrap()).unwrap();
        assert_eq!(inner["class"], "FeatureViewNotFoundException");

        let r =
            ApiError::FeastBody { kind: "json_invalid", code: "invalid_json", message: "eof".into() }.into_response();
        assert_eq!(r.status(), 422);
        assert_eq!(r.headers()["x-wafer-error-code"], "invalid_json");
        assert_eq!(body(r), json!({"detail": [{"type": "json_invalid", "loc": ["body"], "msg": "eof"}]}));
    }
}
