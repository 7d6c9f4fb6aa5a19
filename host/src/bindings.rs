//! Host bindings generated from `wit/transform.wit` (the single source of truth).

/// Bindings for the `stream-transform` world (and the shared `types` and `host` interfaces).
pub mod stream {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "stream-transform",
        additional_derives: [PartialEq],
    });
}

/// Bindings for the `request-transform` world; shares types with [`stream`]. Its exports are
/// called asynchronously (on a fiber, from the serving task itself): WASI's async bindings then
/// never block a runtime thread, and a long call (one that ran through a whole epoch tick)
/// yields to the executor at every tick.
pub mod request {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "request-transform",
        additional_derives: [PartialEq],
        exports: { default: async },
        with: {
            "wafer:transform/types": super::stream::wafer::transform::types,
            "wafer:transform/host": super::stream::wafer::transform::host,
        },
    });
}

pub use request::exports::wafer::transform::request::{RequestInput, StoredFeature};
pub use stream::wafer::transform::host;
pub use stream::wafer::transform::types;

/// Fully qualified interface names, as they appear in a component's imports and exports.
pub mod names {
    pub const PACKAGE: &str = "wafer:transform@0.1.0";
    pub const HOST: &str = "wafer:transform/host@0.1.0";
    pub const DESCRIBE: &str = "wafer:transform/describe@0.1.0";
    pub const STREAM: &str = "wafer:transform/stream-processor@0.1.0";
    pub const REQUEST: &str = "wafer:transform/request@0.1.0";
}

impl types::ValueType {
    pub fn as_str(self) -> &'static str {
        use types::ValueType as T;
        match self {
            T::Boolean => "boolean",
            T::Int64 => "int64",
            T::Float64 => "float64",
            T::Text => "text",
            T::Bytes => "bytes",
            T::Float32s => "float32s",
            T::Int64s => "int64s",
            T::Texts => "texts",
        }
    }
}

impl types::Value {
    /// The type of a non-null value; `None` for `null`.
    pub fn value_type(&self) -> Option<types::ValueType> {
        use types::{Value as V, ValueType as T};
        Some(match self {
            V::Null => return None,
            V::Boolean(_) => T::Boolean,
            V::Int64(_) => T::Int64,
            V::Float64(_) => T::Float64,
            V::Text(_) => T::Text,
            V::Bytes(_) => T::Bytes,
            V::Float32s(_) => T::Float32s,
            V::Int64s(_) => T::Int64s,
            V::Texts(_) => T::Texts,
        })
    }

    /// Approximate heap size, used for the output-size cap.
    pub fn approx_size(&self) -> usize {
        use types::Value as V;
        8 + match self {
            V::Null | V::Boolean(_) | V::Int64(_) | V::Float64(_) => 0,
            V::Text(s) => s.len(),
            V::Bytes(b) => b.len(),
            V::Float32s(v) => v.len() * 4,
            V::Int64s(v) => v.len() * 8,
            V::Texts(v) => v.iter().map(|s| s.len() + 8).sum(),
        }
    }
}

/// The two worlds a transform can implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorldKind {
    Stream,
    Request,
}

impl WorldKind {
    pub fn world_name(self) -> &'static str {
        match self {
            WorldKind::Stream => "wafer:transform/stream-transform@0.1.0",
            WorldKind::Request => "wafer:transform/request-transform@0.1.0",
        }
    }
}
