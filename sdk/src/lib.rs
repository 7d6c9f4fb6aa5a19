//! Write Wafer feature transforms in Rust.
//!
//! A stream transform maps one event to feature rows; a request transform maps a request
//! context plus stored features to features. Implement the trait, export it, build with
//! `cargo build --release --target wasm32-wasip2`:
//!
//! ```ignore
//! use wafer_sdk::prelude::*;
//!
//! struct Clicks;
//! impl StreamTransform for Clicks {
//!     fn describe() -> TransformInfo {
//!         stream_transform("clicks", "1").output(float64("dwell_s"))
//!     }
//!     fn process(event: &Event) -> Result<Vec<FeatureRow>, TransformError> {
//!         let v = json::parse(&event.value)?;
//!         Ok(vec![Row::new(json::str(&v, "user")?, event.timestamp_ms)
//!             .float64("dwell_s", json::f64(&v, "dwell_s")?)
//!             .build()])
//!     }
//! }
//! export_stream_transform!(Clicks);
//! ```
//!
//! Transforms are pure: use `event.timestamp_ms` as "now" (the WASI clock reads it too), and
//! don't expect files or network.

#[doc(hidden)]
pub mod bindings;
pub mod json;
pub mod log;
mod row;
mod spec;

pub use bindings::request::exports::wafer::transform::request::{RequestInput, StoredFeature};
pub use bindings::stream::wafer::transform::types::{
    Event, Feature, FeatureRow, FeatureSpec, Header, TransformError, TransformInfo, Value, ValueType,
};
pub use row::{Features, Row};
pub use spec::*;

/// Everything a transform usually needs.
pub mod prelude {
    pub use crate::spec::*;
    pub use crate::{
        Event, EventExt, Feature, FeatureRow, FeatureSpec, Features, RequestInput, RequestInputExt, RequestTransform,
        Row, StoredFeature, StreamTransform, TransformError, TransformInfo, Value, ValueExt, ValueType,
        export_request_transform, export_stream_transform, json, log,
    };
}

/// A stream transform: one event in, zero or more feature rows out.
pub trait StreamTransform {
    /// Name and output schema. Called once when the host loads the component.
    fn describe() -> TransformInfo;
    /// Map one event. Return `TransformError::BadInput` for input that can never succeed.
    fn process(event: &Event) -> Result<Vec<FeatureRow>, TransformError>;
}

/// A request (on-demand) transform: request params and stored features in, features out.
pub trait RequestTransform {
    /// Name, output schema, request params and stored features read.
    fn describe() -> TransformInfo;
    /// Compute the features of one entity.
    fn compute(input: &RequestInput) -> Result<Vec<Feature>, TransformError>;
}

#[doc(hidden)]
pub mod __private {
    use super::*;
    pub fn process_batch<T: StreamTransform>(events: Vec<Event>) -> Vec<Result<Vec<FeatureRow>, TransformError>> {
        events.iter().map(T::process).collect()
    }
    pub fn compute_batch<T: RequestTransform>(inputs: Vec<RequestInput>) -> Vec<Result<Vec<Feature>, TransformError>> {
        inputs.iter().map(T::compute).collect()
    }
}

/// Export a [`StreamTransform`] implementation as the component's `stream-transform` world.
#[macro_export]
macro_rules! export_stream_transform {
    ($t:ty) => {
        const _: () = {
            struct WaferStreamExport;
            impl $crate::bindings::stream::exports::wafer::transform::describe::Guest for WaferStreamExport {
                fn describe() -> $crate::TransformInfo {
                    <$t as $crate::StreamTransform>::describe()
                }
            }
            impl $crate::bindings::stream::exports::wafer::transform::stream_processor::Guest for WaferStreamExport {
                fn process(
                    events: ::std::vec::Vec<$crate::Event>,
                ) -> ::std::vec::Vec<::std::result::Result<::std::vec::Vec<$crate::FeatureRow>, $crate::TransformError>>
                {
                    $crate::__private::process_batch::<$t>(events)
                }
            }
    $crate::bindings::stream::export_stream_world!(WaferStreamExport with_types_in $crate::bindings::stream);
        };
    };
}

/// Export a [`RequestTransform`] implementation as the component's `request-transform` world.
#[macro_export]
macro_rules! export_request_transform {
    ($t:ty) => {
        const _: () = {
            struct WaferRequestExport;
            impl $crate::bindings::request::exports::wafer::transform::describe::Guest for WaferRequestExport {
                fn describe() -> $crate::TransformInfo {
                    <$t as $crate::RequestTransform>::describe()
                }
            }
            impl $crate::bindings::request::exports::wafer::transform::request::Guest for WaferRequestExport {
                fn compute(
                    inputs: ::std::vec::Vec<$crate::RequestInput>,
                ) -> ::std::vec::Vec<::std::result::Result<::std::vec::Vec<$crate::Feature>, $crate::TransformError>> {
                    $crate::__private::compute_batch::<$t>(inputs)
                }
            }
            $crate::bindings::request::export_request_world!(WaferRequestExport with_types_in $crate::bindings::request);
        };
    };
}

/// Accessors on [`RequestInput`].
pub trait RequestInputExt {
    /// A request parameter by name (`Value::Null` when absent).
    fn param(&self, name: &str) -> &Value;
    /// A stored feature by `view:feature` name (`Value::Null` when missing or expired).
    fn stored(&self, name: &str) -> &Value;
    /// A required numeric parameter (int64 or float64), as f64.
    fn param_f64(&self, name: &str) -> Result<f64, TransformError>;
    /// A required text parameter.
    fn param_str(&self, name: &str) -> Result<&str, TransformError>;
}

impl RequestInputExt for RequestInput {
    fn param(&self, name: &str) -> &Value {
        self.params.iter().find(|f| f.name == name).map_or(&Value::Null, |f| &f.value)
    }
    fn stored(&self, name: &str) -> &Value {
        self.stored.iter().find(|f| f.name == name).map_or(&Value::Null, |f| &f.value)
    }
    fn param_f64(&self, name: &str) -> Result<f64, TransformError> {
        self.param(name)
            .as_f64()
            .ok_or_else(|| TransformError::BadInput(format!("request param `{name}` must be a number")))
    }
    fn param_str(&self, name: &str) -> Result<&str, TransformError> {
        self.param(name)
            .as_str()
            .ok_or_else(|| TransformError::BadInput(format!("request param `{name}` must be text")))
    }
}

/// Accessors on [`Value`].
pub trait ValueExt {
    /// Numeric value (int64 or float64) as f64.
    fn as_f64(&self) -> Option<f64>;
    fn as_i64(&self) -> Option<i64>;
    fn as_str(&self) -> Option<&str>;
    fn as_bool(&self) -> Option<bool>;
    fn is_null(&self) -> bool;
}

impl ValueExt for Value {
    fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float64(f) => Some(*f),
            Value::Int64(i) => Some(*i as f64),
            _ => None,
        }
    }
    fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int64(i) => Some(*i),
            _ => None,
        }
    }
    fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
    fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }
    fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// Accessors on [`Event`].
pub trait EventExt {
    /// A header value by key.
    fn header(&self, key: &str) -> Option<&[u8]>;
}

impl EventExt for Event {
    fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers.iter().find(|h| h.key == key).map(|h| h.value.as_slice())
    }
}
