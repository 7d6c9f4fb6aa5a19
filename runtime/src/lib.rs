//! Wafer's node: the streaming pipeline, online stores, serving, the offline path, the control
//! plane and the HTTP API, built on the Wasm host of the `wafer-host` crate.
//!
//! Where things live:
//! - From `wafer-host`, re-exported under the same paths: [`engine`] (the one wasmtime
//!   `Engine`), [`bindings`] (the host side of `wit/transform.wit`), [`component`] and
//!   [`artifact_cache`] (validated, precompiled uploads), [`sandbox`] (per-instance limits,
//!   event-time clocks, seeded random, log capture) and [`transform`] (running stream and request
//!   transforms, output validation, poison-event isolation).
//! - [`events`]: the JSONL event format of `wafer run` and HTTP push.
//! - [`time`]: the wall clock in ms, durations and RFC 3339 timestamps as text.
//! - [`aggregate`]: time-window aggregations (tiles: where they are folded and merged).
//! - [`store`]: online stores (Redis, embedded) with the effectively-once watermark.
//! - [`manifest`]: `wafer.toml`: every section, each parsed by its owner's config type
//!   (`[redis]` in [`store::redis`], `[kafka]` in [`sources::kafka`], `[control]` in [`control`]).
//! - [`view`]: stream, batch and request views and feature services, checked against transforms.
//! - [`pipeline`]: the streaming pipeline (transform → fold → atomic write) every source feeds,
//!   the circuit breaker and the metrics.
//! - [`sources`]: where events are consumed (Kafka, and Kafka history for backfills).
//! - [`serving`]: where features are served: catalog, stored reads, request views, Feast shapes.
//! - [`materialize`]: loading batch views from Parquet/CSV/JSONL files.
//! - [`offline`]: backfills and point-in-time training data on the same transforms and reads.
//! - [`registry`]: the shared registry in Redis (tenants, API keys, transforms, views).
//! - [`tenant`]: what a tenant is on a node, and where its quotas are enforced.
//! - [`control`]: a node's control plane (uploads on a bounded compile pool, registry sync).
//! - [`node`]: the running node (store, metrics, the tenants it serves), which every layer reads.
//! - [`server`]: the HTTP API: the route table, credentials, [`server::ApiError`].

pub mod aggregate;
pub mod control;
pub mod events;
pub mod manifest;
pub mod materialize;
pub mod node;
pub mod offline;
pub mod pipeline;
pub mod registry;
pub mod server;
pub mod serving;
pub mod sources;
pub mod store;
pub mod tenant;
pub mod time;
pub mod view;

pub use wafer_host::{artifact_cache, bindings, component, engine, sandbox, transform};

pub use bindings::types::{Event, Feature, FeatureRow, FeatureSpec, Header, TransformInfo, Value, ValueType};
pub use component::{LoadError, Loader, WorldKind};
pub use engine::{EngineConfig, WaferEngine};
pub use sandbox::Limits;
pub use transform::{RequestWorker, StreamWorker, Transform, TransformError};
