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

use crate::bindings::{request as req_bindings, stream as stream_bindings, types::TransformInfo};
use crate::component::{LoadError, LoadStats, WorldKind};
use crate::engine::WaferEngine;
use crate::sandbox::{HostState, Limits};

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
    ) -> Result<Self, LoadError> {
        let typed = match kind {
            WorldKind::Stream => TypedPre::Stream(
                stream_bindings::StreamTransformPre::new(pre)
                    .map_err(|e| LoadError::ExportMismatch { world: kind.world_name(), detail: format!("{e:#}") })?,
            ),
            WorldKind::Request => TypedPre::Request(
                req_bindings::RequestTransformPre::new(pre)
                    .map_err(|e| LoadError::ExportMismatch { world: kind.world_name(), detail: format!("{e:#}") })?,
            ),
        };
        let ticks = engine.ticks_for(limits.deadline);
        let info = instance::describe(&engine, &typed, &limits, ticks).map_err(LoadError::Describe)?;
        let schema =
            Schema::from_info(&info).map_err(LoadError::InvalidInfo)?.with_entity_key_cap(limits.entity_key_bytes);
        if kind == WorldKind::Stream && (!info.params.is_empty() || !info.reads.is_empty()) {
            return Err(LoadError::InvalidInfo(
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
    pub fn stream_worker(&self) -> Result<StreamWorker, LoadError> {
        match self.inner.kind {
            WorldKind::Stream => Ok(StreamWorker::new(self.clone())),
            found => Err(LoadError::UnexpectedWorld { expected: WorldKind::Stream, found }),
        }
    }

    /// A worker for a request transform (one live instance, created lazily).
    pub fn request_worker(&self) -> Result<RequestWorker, LoadError> {
        match self.inner.kind {
            WorldKind::Request => Ok(RequestWorker::new(self.clone())),
            found => Err(LoadError::UnexpectedWorld { expected: WorldKind::Request, found }),
        }
    }
}
