//! Building HTTP responses (JSON bodies) and reading request bodies; errors are
//! [`ApiError`]s.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::Value as Json;

use super::error::ApiError;

/// A response of the API.
pub type Resp = Response<Full<Bytes>>;

/// Largest accepted request body.
pub const MAX_BODY: usize = 16 << 20;

/// A response with `status` and a body of `content_type`.
pub fn bytes_resp(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    r
}

/// A JSON response.
pub fn json_resp(status: StatusCode, body: &Json) -> Resp {
    bytes_resp(status, "application/json", body.to_string())
}

/// 415 `unsupported_media_type` unless the request declares no content type or one of
/// `accepted` (media types; `+json` suffixes count as `application/json`).
pub fn require_content_type(req: &Request<Incoming>, accepted: &[&str]) -> Result<(), ApiError> {
    let Some(v) = req.headers().get(hyper::header::CONTENT_TYPE) else { return Ok(()) };
    let media = v.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let json_suffix = media.ends_with("+json") && accepted.contains(&"application/json");
    if json_suffix || accepted.contains(&media.as_str()) {
        return Ok(());
    }
    Err(ApiError::UnsupportedMediaType { media, accepted: accepted.join(" or ") })
}

/// Read and parse a JSON body into `T` (415 for a non-JSON content type; 400 naming the problem;
/// 413 past [`MAX_BODY`]).
pub async fn body<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    require_content_type(&req, &["application/json"])?;
    let bytes = body_bytes(req).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let code = if e.is_data() { "invalid_request" } else { "invalid_json" };
        ApiError::bad_request(code, format!("request body: {e}"))
    })
}

/// Read a whole body (413 past [`MAX_BODY`]).
pub async fn body_bytes(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    Ok(Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| ApiError::TooLarge {
            code: "body_too_large",
            message: format!("request body: {e} (limit {MAX_BODY} bytes)"),
        })?
        .to_bytes())
}
