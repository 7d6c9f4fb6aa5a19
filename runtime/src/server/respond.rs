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

/// Read a whole body (413 past [`MAX_BODY`]; 408 past the body deadline).
pub async fn body_bytes(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    limited_body(req, MAX_BODY).await.map_err(|e| match e {
        BodyError::TooLarge => ApiError::TooLarge {
            code: "body_too_large",
            message: format!("request body: larger than the limit of {MAX_BODY} bytes"),
        },
        BodyError::Api(e) => e,
    })
}

/// When a request's body must have arrived by: set per request by the listener (see
/// [`super::ListenConfig::body_timeout`]) as a request extension.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline {
    /// The instant the whole body must have arrived by.
    pub at: tokio::time::Instant,
    /// The timeout it was computed from, for the error message.
    pub timeout: std::time::Duration,
}

/// Why [`limited_body`] did not return a body.
#[derive(Debug)]
pub enum BodyError {
    /// The body is larger than the cap (the caller names the limit).
    TooLarge,
    /// The body timed out (408) or the connection failed while reading it (400).
    Api(ApiError),
}

/// Read and drop what a refused request is still sending, at most `cap` bytes and before its
/// [`BodyDeadline`] (then give up: the connection closes). A response sent while the client is
/// still uploading, followed by closing a socket with unread data, makes the kernel reset the
/// connection, and the client may lose the response (a 401 to a large upload arrived as a reset).
pub async fn discard_body(req: Request<Incoming>, cap: usize) {
    let deadline = req.extensions().get::<BodyDeadline>().map(|d| d.at);
    let mut body = req.into_body();
    let mut read = 0usize;
    let drain = async {
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |d| d.len());
            if read > cap {
                break;
            }
        }
    };
    match deadline {
        Some(at) => {
            let _ = tokio::time::timeout_at(at, drain).await;
        }
        None => drain.await,
    }
}

/// Read a whole body of at most `cap` bytes before the request's [`BodyDeadline`] (none: no
/// deadline, e.g. in unit tests that build requests by hand).
pub async fn limited_body(req: Request<Incoming>, cap: usize) -> Result<Bytes, BodyError> {
    let deadline = req.extensions().get::<BodyDeadline>().copied();
    let read = Limited::new(req.into_body(), cap).collect();
    let collected = match deadline {
        Some(d) => match tokio::time::timeout_at(d.at, read).await {
            Ok(r) => r,
            Err(_) => {
                let timeout_ms = d.timeout.as_millis() as u64;
                return Err(BodyError::Api(ApiError::BodyTimeout { timeout_ms }));
            }
        },
        None => read.await,
    };
    match collected {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(e) => Err(BodyError::Api(ApiError::bad_request("invalid_body", format!("reading the request body: {e}")))),
    }
}
