//! Wafer's Wasm host: loads feature transforms (WebAssembly components implementing the worlds in
//! `wit/transform.wit`), runs them in a sandbox, and validates what they return.
//!
//! This crate knows nothing of stores, brokers or HTTP; `wafer-runtime` builds the streaming
//! pipeline, serving and the `wafer` binary on top of it and re-exports these modules under the
//! same paths.
//!
//! Where things live:
//! - [`engine`]: the one wasmtime `Engine` per process, its knobs, and the epoch ticker.
//! - [`bindings`]: the host side of `wit/transform.wit` (generated types and worlds).
//! - [`component`]: turning uploaded bytes into a validated, precompiled component
//!   ([`component::validate`] says what is wrong with bad uploads, [`artifact_cache`] keeps
//!   compiled artifacts on disk).
//! - [`sandbox`]: per-instance limits (CPU deadline, memory cap, output cap), the WASI context
//!   with event-time clocks and per-call seeded random, and guest log/stdio capture.
//! - [`transform`]: running stream and request transforms, with output validation against the
//!   declared schema, instance reuse and recycling, and poison-event isolation.

pub mod artifact_cache;
pub mod bindings;
pub mod component;
pub mod engine;
pub mod sandbox;
pub mod transform;

pub use bindings::types::{Event, Feature, FeatureRow, FeatureSpec, Header, TransformInfo, Value, ValueType};
pub use component::{LoadError, Loader, WorldKind};
pub use engine::{EngineConfig, WaferEngine};
pub use sandbox::Limits;
pub use transform::{RequestWorker, StreamWorker, Transform, TransformError};
