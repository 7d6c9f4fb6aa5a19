//! Guest bindings generated from `wit/transform.wit`.

/// The `request-transform` world.
pub use wafer_sdk_request_bindings as request;
/// The `stream-transform` world (and the shared `types` and `host` interfaces).
pub use wafer_sdk_stream_bindings as stream;
