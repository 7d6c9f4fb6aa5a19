//! Building HTTP responses: JSON bodies and JSON errors.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value as Json, json};

use crate::serving::ServeError;

pub type Resp = Response<Full<Bytes>>;

/// Largest accepted request body.
pub const MAX_BODY: usize = 16 << 20;

pub fn bytes_resp(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    r
}

pub fn json_resp(status: StatusCode, body: &Json) -> Resp {
    bytes_resp(status, "application/json", body.to_string())
}

pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Resp {
    json_resp(status, &json!({"error": {"code": code, "message": message.into()}}))
}

/// A registry failure: 409 for an existing tenant, 404 for anything not found, else 503.
pub fn registry_error(e: &crate::registry::RegistryError) -> Resp {
    match e {
        crate::registry::RegistryError::TenantExists(_) => error(StatusCode::CONFLICT, "tenant_exists", e.to_string()),
        e if e.is_not_found() => error(StatusCode::NOT_FOUND, "not_found", e.to_string()),
        e => error(StatusCode::SERVICE_UNAVAILABLE, "registry_unavailable", e.to_string()),
    }
}

pub fn serve_error(e: &ServeError) -> Resp {
    json_resp(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &e.body())
}

/// 415 `unsupported_media_type` unless the request declares no content type or one of
/// `accepted` (media types; `+json` suffixes count as `application/json`).
pub fn require_content_type(req: &Request<Incoming>, accepted: &[&str]) -> Result<(), Resp> {
    let Some(v) = req.headers().get(hyper::header::CONTENT_TYPE) else { return Ok(()) };
    let media = v.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let json_suffix = media.ends_with("+json") && accepted.contains(&"application/json");
    if json_suffix || accepted.contains(&media.as_str()) {
        return Ok(());
    }
    Err(error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("content type `{media}` is not accepted here; send {}", accepted.join(" or ")),
    ))
}

/// Read and parse a JSON body into `T` (415 for a non-JSON content type; 400 naming the problem;
/// 413 past [`MAX_BODY`]).
pub async fn body<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, Resp> {
    require_content_type(&req, &["application/json"])?;
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request body: {e} (limit {MAX_BODY} bytes)"),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        let code = if e.is_data() { "invalid_request" } else { "invalid_json" };
        error(StatusCode::BAD_REQUEST, code, format!("request body: {e}"))
    })
}
