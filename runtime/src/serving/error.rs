//! Why a feature request was refused or failed: each kind has a stable code and HTTP status.

use serde_json::{Value as Json, json};

use crate::store::StoreError;
use crate::transform::TransformError;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("unknown view(s): {}", .0.join(", "))]
    UnknownViews(Vec<String>),
    #[error("unknown feature(s): {}", .0.join(", "))]
    UnknownFeatures(Vec<String>),
    #[error("unknown feature service `{0}`")]
    UnknownService(String),
    #[error("missing entity keys: the request needs a `{0}` column")]
    MissingEntity(String),
    #[error("request view `{view}` needs request data {}", .params.join(", "))]
    MissingRequestData { view: String, params: Vec<String> },
    #[error("request data `{param}` row {row}: {message}")]
    BadRequestData { param: String, row: usize, message: String },
    #[error("request view `{view}` rejected entity `{entity}`: {message}")]
    Rejected { view: String, entity: String, message: String },
    #[error("request view `{view}`: transform `{transform}` failed: {error}")]
    Transform { view: String, transform: String, error: TransformError },
    #[error("online store: {0}")]
    Store(#[from] StoreError),
}

impl ServeError {
    /// Stable machine-readable code (also the metric label).
    pub fn code(&self) -> &'static str {
        match self {
            ServeError::Invalid(_) => "invalid_request",
            ServeError::UnknownViews(_) => "unknown_views",
            ServeError::UnknownFeatures(_) => "unknown_features",
            ServeError::UnknownService(_) => "unknown_feature_service",
            ServeError::MissingEntity(_) => "missing_entity",
            ServeError::MissingRequestData { .. } => "missing_request_data",
            ServeError::BadRequestData { .. } => "invalid_request_data",
            ServeError::Rejected { .. } => "request_rejected",
            ServeError::Transform { error: TransformError::Deadline(_), .. } => "transform_deadline",
            ServeError::Transform { .. } => "transform_failed",
            ServeError::Store(_) => "store_unavailable",
        }
    }

    /// HTTP status: the caller's mistakes are 4xx, ours 5xx.
    pub fn status(&self) -> u16 {
        match self {
            ServeError::Transform { error: TransformError::Deadline(_), .. } => 504,
            ServeError::Transform { .. } => 500,
            ServeError::Store(_) => 503,
            _ => 400,
        }
    }

    /// The JSON error body: `{"error": {"code", "message", ...details}}`.
    pub fn body(&self) -> Json {
        let mut e = json!({"code": self.code(), "message": self.to_string()});
        let details = match self {
            ServeError::UnknownViews(v) => json!({"unknown": v}),
            ServeError::UnknownFeatures(v) => json!({"unknown": v}),
            ServeError::MissingRequestData { view, params } => json!({"view": view, "missing": params}),
            ServeError::BadRequestData { param, row, .. } => json!({"param": param, "row": row}),
            ServeError::Rejected { view, entity, .. } => json!({"view": view, "entity": entity}),
            ServeError::Transform { view, transform, error } => {
                json!({"view": view, "transform": transform, "reason": error.code()})
            }
            _ => json!({}),
        };
        if let (Some(m), Json::Object(d)) = (e.as_object_mut(), details) {
            m.extend(d);
        }
        json!({"error": e})
    }
}
