//! What can go wrong in one transform call, per event or per request entity.

use std::time::Duration;

use super::schema::SchemaError;

/// Why an event (or request entity) produced no features.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransformError {
    /// The guest rejected the input (`transform-error::bad-input`); skip it, retrying won't help.
    #[error("bad input: {0}")]
    BadInput(String),
    /// The guest reported a transient failure (`transform-error::retryable`).
    #[error("retryable failure: {0}")]
    Retryable(String),
    /// The call ran past its CPU deadline and was interrupted.
    #[error("deadline exceeded: the call ran longer than {0:?} and was interrupted")]
    Deadline(Duration),
    /// The guest tried to grow its memory past the cap and then trapped.
    #[error("memory limit exceeded: the guest tried to grow to {requested} bytes, the limit is {limit} bytes")]
    OutOfMemory { limit: usize, requested: usize },
    /// The guest trapped (panic, unreachable, out-of-bounds access, stack overflow, ...).
    #[error("guest trapped: {0}")]
    Trap(String),
    /// The output of one call exceeded the configured cap.
    #[error("output too large: {size} bytes exceeds the cap of {cap} bytes")]
    OutputTooLarge { size: usize, cap: usize },
    /// A row or feature did not match the declared schema.
    #[error("schema violation: {0}")]
    Schema(#[from] SchemaError),
    /// The guest broke the calling convention (e.g. wrong number of results).
    #[error("contract violation: {0}")]
    Contract(String),
    /// A fresh instance could not be created.
    #[error("cannot instantiate: {0}")]
    Instantiate(String),
    /// The batch spent its CPU budget (re-runs included) before this event's turn; it did not run.
    #[error("batch CPU budget exceeded: the batch used its {0:?} of CPU (batch_cpu_ms) before this event ran")]
    BudgetExceeded(Duration),
}

impl TransformError {
    /// Stable short code for metrics labels and JSON error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            TransformError::BadInput(_) => "bad_input",
            TransformError::Retryable(_) => "retryable",
            TransformError::Deadline(_) => "deadline",
            TransformError::OutOfMemory { .. } => "out_of_memory",
            TransformError::Trap(_) => "trap",
            TransformError::OutputTooLarge { .. } => "output_too_large",
            TransformError::Schema(_) => "schema_violation",
            TransformError::Contract(_) => "contract_violation",
            TransformError::Instantiate(_) => "instantiate_failed",
            TransformError::BudgetExceeded(_) => "batch_budget_exceeded",
        }
    }

    /// Whether the same input could succeed if retried later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, TransformError::Retryable(_) | TransformError::Instantiate(_))
    }
}

impl From<crate::bindings::types::TransformError> for TransformError {
    fn from(e: crate::bindings::types::TransformError) -> Self {
        match e {
            crate::bindings::types::TransformError::BadInput(m) => TransformError::BadInput(m),
            crate::bindings::types::TransformError::Retryable(m) => TransformError::Retryable(m),
        }
    }
}
