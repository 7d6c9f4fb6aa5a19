//! Loaded transforms and the workers that call them.
//!
//! A [`Transform`] is immutable and shared (`Arc`): the precompiled component, its typed
//! `InstancePre`, the declared schema and the limits. Workers ([`StreamWorker`],
//! [`RequestWorker`]) own one live instance each, reuse it across calls, and replace it after a
//! trap, a deadline, an OOM, or when its memory passes the recycle mark.

mod error;
mod instance;
pub mod json_out;
pub mod pool;
pub mod request;
pub mod schema;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::InstancePre;

pub use error::TransformError;
pub use request::RequestWorker;
pub use schema::{Schema, SchemaError};
pub use stream::{EventResult, StreamWorker};

use crate::bindings::WorldKind;
use crate::bindings::{request as req_bindings, stream as stream_bindings, types::TransformInfo};
use crate::engine::WaferEngine;
use crate::sandbox::{HostState, Limits};

/// The deadline of the one `describe` call at load: at least this, whatever the per-call
/// deadline. It runs on a fresh instance, so it also pays the guest runtime's start (a
/// StarlingMonkey component initializes its JS engine), and the deadline is wall-clock: on a
/// node whose cores are busy compiling other uploads, 50 ms — and even 1 s, seen in the test
/// suite — is not enough. A load is rare and runs under the tenant's upload quota, so a longer
/// budget costs little; it is still bounded.
pub const DESCRIBE_DEADLINE: Duration = Duration::from_secs(5);

/// How a load went, for `wafer inspect`, upload responses and benchmarks.
#[derive(Debug, Clone)]
pub struct LoadStats {
    pub sha256: String,
    pub wasm_bytes: usize,
    /// Time spent compiling (zero when the artifact came from the cache).
    pub compile: Duration,
    pub from_cache: bool,
    /// Total time from bytes to a described, runnable transform.
    pub total: Duration,
    pub imports: Vec<String>,
}

/// Why a compiled component could not become a [`Transform`] (the loader reports each with its
/// own code: see `component::LoadError`).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The component's exports do not match the world's.
    #[error("the component's exports do not match Wafer's WIT ({world}): {detail}")]
    ExportMismatch {
        /// The world expected.
        world: &'static str,
        /// What the instantiation check said.
        detail: String,
    },
    /// The guest's `describe` trapped or failed.
    #[error("calling `describe` failed: {0}")]
    Describe(TransformError),
    /// `describe` returned a declaration the host refuses.
    #[error("`describe` returned an invalid declaration: {0}")]
    InvalidInfo(String),
    /// A worker of the other world was asked for.
    #[error("the transform is a {found:?} transform, but a {expected:?} transform is required here")]
    UnexpectedWorld {
        /// The world asked for.
        expected: WorldKind,
        /// The transform's world.
        found: WorldKind,
    },
}

/// Counters a worker keeps; summed into metrics by callers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerStats {
    pub calls: u64,
    pub items: u64,
    pub instantiations: u64,
    pub recycles: u64,
    pub traps: u64,
    pub deadlines: u64,
    pub out_of_memory: u64,
    /// Batches re-run one item per call (after a failure, or because the guest read the clock).
    pub per_item_reruns: u64,
    pub log_lines: u64,
}

#[derive(Clone)]
pub(crate) enum TypedPre {
    Stream(stream_bindings::StreamTransformPre<HostState>),
    Request(req_bindings::RequestTransformPre<HostState>),
}

pub(crate) struct Inner {
    pub(crate) engine: WaferEngine,
    pub(crate) kind: WorldKind,
    pub(crate) pre: TypedPre,
    pub(crate) info: TransformInfo,
    pub(crate) schema: Schema,
    pub(crate) limits: Limits,
    pub(crate) ticks: u64,
    pub(crate) stats: LoadStats,
    /// Request transforms: set while this transform's calls outlive an epoch tick, so that its
    /// next calls start off the async workers (see `request::drive`).
    pub(crate) runs_long: std::sync::atomic::AtomicBool,
}

/// A loaded, validated transform. Cheap to clone and share between threads.
#[derive(Clone)]
pub struct Transform {
    pub(crate) inner: Arc<Inner>,
}

impl Transform {
    pub(crate) fn new(
        engine: WaferEngine,
        kind: WorldKind,
        pre: InstancePre<HostState>,
        limits: Limits,
        stats: LoadStats,
    ) -> Result<Self, BuildError> {
        let typed = match kind {
            WorldKind::Stream => TypedPre::Stream(
                stream_bindings::StreamTransformPre::new(pre)
                    .map_err(|e| BuildError::ExportMismatch { world: kind.world_name(), detail: format!("{e:#}") })?,
            ),
            WorldKind::Request => TypedPre::Request(
                req_bindings::RequestTransformPre::new(pre)
                    .map_err(|e| BuildError::ExportMismatch { world: kind.world_name(), detail: format!("{e:#}") })?,
            ),
        };
        // Its own budget for the one describe call; every later call gets the per-call deadline.
        let describe_limits = Limits { deadline: limits.deadline.max(DESCRIBE_DEADLINE), ..limits.clone() };
        let describe_ticks = engine.ticks_for(describe_limits.deadline);
        let info =
            instance::describe(&engine, &typed, &describe_limits, describe_ticks).map_err(BuildError::Describe)?;
        let ticks = engine.ticks_for(limits.deadline);
        let schema =
            Schema::from_info(&info).map_err(BuildError::InvalidInfo)?.with_entity_key_cap(limits.entity_key_bytes);
        if kind == WorldKind::Stream && (!info.params.is_empty() || !info.reads.is_empty()) {
            return Err(BuildError::InvalidInfo(
                "a stream transform cannot declare request params or stored reads".into(),
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                kind,
                pre: typed,
                info,
                schema,
                limits,
                ticks,
                stats,
                runs_long: false.into(),
            }),
        })
    }

    pub(crate) fn set_total_load_time(&mut self, d: Duration) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.stats.total = d;
        }
    }

    pub fn kind(&self) -> WorldKind {
        self.inner.kind
    }
    pub fn info(&self) -> &TransformInfo {
        &self.inner.info
    }
    pub fn name(&self) -> &str {
        &self.inner.info.name
    }
    pub fn schema(&self) -> &Schema {
        &self.inner.schema
    }
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }
    pub fn load_stats(&self) -> &LoadStats {
        &self.inner.stats
    }

    /// A worker for a stream transform (one live instance, created lazily).
    pub fn stream_worker(&self) -> Result<StreamWorker, BuildError> {
        match self.inner.kind {
            WorldKind::Stream => Ok(StreamWorker::new(self.clone())),
            found => Err(BuildError::UnexpectedWorld { expected: WorldKind::Stream, found }),
        }
    }

    /// A worker for a request transform (one live instance, created lazily).
    pub fn request_worker(&self) -> Result<RequestWorker, BuildError> {
        match self.inner.kind {
            WorldKind::Request => Ok(RequestWorker::new(self.clone())),
            found => Err(BuildError::UnexpectedWorld { expected: WorldKind::Request, found }),
        }
    }
}
