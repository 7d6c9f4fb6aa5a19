//! From bytes to a runnable [`Transform`], cheapest checks first: the header, the world and
//! import allow-list read from the raw bytes ([`precheck`]), precompilation within a time and
//! memory budget ([`budget`], when a compile worker is configured), the same checks on the
//! compiled types, and one sandboxed `describe` call. Only a component that passed all of them
//! is written to the artifact cache.

pub mod budget;
pub mod precheck;
pub mod validate;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};

use crate::artifact_cache::{ArtifactCache, CacheError};
pub use crate::bindings::WorldKind;
use crate::engine::WaferEngine;
use crate::sandbox::{HostState, Limits};
pub use crate::transform::LoadStats;
use crate::transform::{BuildError, Transform, TransformError};

/// Why a component was rejected. Every variant names the problem precisely.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("not a WebAssembly binary: {reason}")]
    NotWasm { reason: String },
    #[error(
        "this is a core WebAssembly module, not a component; Wafer needs a component \
         (Rust: build for --target wasm32-wasip2; C: run `wasm-tools component new`)"
    )]
    CoreModule,
    #[error("invalid component: {0}")]
    Invalid(String),
    #[error("the component does not implement a Wafer world: it is missing {missing} (it exports: {exports})")]
    WrongWorld { exports: String, missing: String },
    #[error(
        "the component exports both the stream and the request interface; a transform implements exactly one world"
    )]
    AmbiguousWorld,
    #[error("the component's exports do not match Wafer's WIT ({world}): {detail}")]
    ExportMismatch { world: &'static str, detail: String },
    #[error(
        "the component imports `{name}`, which Wafer does not provide (transforms may import only wafer:transform/host@0.1.0 and sandboxed WASI 0.2); all unsupported imports: {all}"
    )]
    ForbiddenImport { name: String, all: String },
    #[error("the component's imports do not match what Wafer provides: {0}")]
    ImportMismatch(String),
    #[error("calling `describe` failed: {0}")]
    Describe(TransformError),
    #[error("`describe` returned an invalid declaration: {0}")]
    InvalidInfo(String),
    #[error("the transform is a {found:?} transform, but a {expected:?} transform is required here")]
    UnexpectedWorld { expected: WorldKind, found: WorldKind },
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("precompiling failed: {0}")]
    Compile(String),
    #[error("compilation exceeded its budget: {0} (quotas compile_seconds, compile_memory_mib)")]
    CompileBudgetExceeded(String),
}

/// A built transform's failures keep the loader's codes (`export_mismatch`, ...).
impl From<BuildError> for LoadError {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::ExportMismatch { world, detail } => LoadError::ExportMismatch { world, detail },
            BuildError::Describe(e) => LoadError::Describe(e),
            BuildError::InvalidInfo(m) => LoadError::InvalidInfo(m),
            BuildError::UnexpectedWorld { expected, found } => LoadError::UnexpectedWorld { expected, found },
        }
    }
}

impl LoadError {
    /// A short stable code for metrics and API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            LoadError::Read { .. } => "read_failed",
            LoadError::NotWasm { .. } => "not_wasm",
            LoadError::CoreModule => "core_module_not_component",
            LoadError::Invalid(_) => "invalid_component",
            LoadError::WrongWorld { .. } => "wrong_world",
            LoadError::AmbiguousWorld => "ambiguous_world",
            LoadError::ExportMismatch { .. } => "export_mismatch",
            LoadError::ForbiddenImport { .. } => "forbidden_import",
            LoadError::ImportMismatch(_) => "import_mismatch",
            LoadError::Describe(_) => "describe_failed",
            LoadError::InvalidInfo(_) => "invalid_describe",
            LoadError::UnexpectedWorld { .. } => "unexpected_world",
            LoadError::Cache(_) => "artifact_cache",
            LoadError::Compile(_) => "compile_failed",
            LoadError::CompileBudgetExceeded(_) => "compile_budget_exceeded",
        }
    }
}

/// Loads components into one engine. Holds the shared [`Linker`]s (WASI + Wafer's host import):
/// a synchronous one for stream transforms, which run on blocking threads, and an async one for
/// request transforms, which run on the serving task itself.
#[derive(Clone)]
pub struct Loader {
    engine: WaferEngine,
    linker: Arc<Linker<HostState>>,
    async_linker: Arc<Linker<HostState>>,
    cache: Option<Arc<ArtifactCache>>,
    /// Compile in budgeted worker processes (else in this process, without a budget).
    worker: Option<Arc<budget::CompileWorker>>,
}

impl Loader {
    /// A loader caching compiled artifacts under `cache_dir` (none: compile every time).
    pub fn new(engine: WaferEngine, cache_dir: Option<&Path>) -> Result<Self, LoadError> {
        let invalid = |e: wasmtime::Error| LoadError::Invalid(format!("{e:#}"));
        let mut linker = Linker::<HostState>::new(engine.engine());
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(invalid)?;
        crate::bindings::host::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s).map_err(invalid)?;
        let mut async_linker = Linker::<HostState>::new(engine.engine());
        wasmtime_wasi::p2::add_to_linker_async(&mut async_linker).map_err(invalid)?;
        crate::bindings::host::add_to_linker::<HostState, HasSelf<HostState>>(&mut async_linker, |s| s)
            .map_err(invalid)?;
        let cache = match cache_dir {
            Some(dir) => Some(Arc::new(ArtifactCache::open(dir, engine.engine(), &engine.config().fingerprint())?)),
            None => None,
        };
        Ok(Self { engine, linker: Arc::new(linker), async_linker: Arc::new(async_linker), cache, worker: None })
    }

    /// Bound the artifact cache's total size (least recently used artifacts are evicted).
    pub fn with_cache_max_bytes(self, max: u64) -> Self {
        if let Some(c) = &self.cache {
            c.set_max_bytes(max);
        }
        self
    }

    /// The artifact cache, if any.
    pub fn cache(&self) -> Option<&ArtifactCache> {
        self.cache.as_deref()
    }

    /// Compile uncached components in worker processes of `exe` (its `compile-worker` command),
    /// each within the budget of the transform's [`Limits`].
    pub fn with_compile_worker(mut self, exe: PathBuf) -> Self {
        self.worker = Some(Arc::new(budget::CompileWorker { exe }));
        self
    }

    pub fn engine(&self) -> &WaferEngine {
        &self.engine
    }

    /// Load a component file.
    pub fn load_file(&self, path: &Path, limits: Limits) -> Result<Transform, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read { path: path.to_owned(), source })?;
        self.load(&bytes, limits)
    }

    /// A loader sharing this one's engine and linker whose artifact cache is the tenant's own
    /// subdirectory.
    pub fn for_tenant(&self, tenant: &str) -> Result<Self, LoadError> {
        let cache = match &self.cache {
            Some(c) => Some(Arc::new(c.namespace(tenant)?)),
            None => None,
        };
        Ok(Self {
            engine: self.engine.clone(),
            linker: self.linker.clone(),
            async_linker: self.async_linker.clone(),
            cache,
            worker: self.worker.clone(),
        })
    }

    /// Validate, compile (or fetch from cache), describe: a ready [`Transform`]. The compiled
    /// artifact is cached only once all of that succeeded.
    pub fn load(&self, bytes: &[u8], limits: Limits) -> Result<Transform, LoadError> {
        let start = Instant::now();
        validate::check_header(bytes)?;
        precheck::precheck(bytes)?;
        let sha256 = hex::encode(Sha256::digest(bytes));
        let budget = budget::CompileBudget { time: limits.compile_time, memory_bytes: limits.compile_memory_bytes };
        let (component, compile, from_cache, artifact) = self.compile(bytes, &sha256, budget)?;
        let engine = self.engine.engine();
        let kind = validate::world_of(engine, &component)?;
        let imports = validate::imports_of(engine, &component);
        validate::check_imports(&imports)?;
        let linker = match kind {
            WorldKind::Stream => &self.linker,
            WorldKind::Request => &self.async_linker,
        };
        let pre = linker.instantiate_pre(&component).map_err(|e| LoadError::ImportMismatch(format!("{e:#}")))?;
        let stats = LoadStats {
            sha256: sha256.clone(),
            wasm_bytes: bytes.len(),
            compile,
            from_cache,
            total: Duration::ZERO,
            imports,
        };
        let mut transform = Transform::new(self.engine.clone(), kind, pre, limits, stats)?;
        if let (Some(cache), Some(artifact)) = (&self.cache, artifact) {
            cache.store(&sha256, &artifact)?;
        }
        transform.set_total_load_time(start.elapsed());
        Ok(transform)
    }

    /// The component, compile time, whether it came from the cache, and the artifact to cache
    /// once the component is validated (none when cached already or when there is no cache).
    #[allow(clippy::type_complexity)]
    fn compile(
        &self,
        bytes: &[u8],
        sha256: &str,
        budget: budget::CompileBudget,
    ) -> Result<(Component, Duration, bool, Option<Vec<u8>>), LoadError> {
        let engine = self.engine.engine();
        if let Some(cache) = &self.cache
            && let Some(path) = cache.lookup(sha256)
        {
            // SAFETY: the cache holds only artifacts this code wrote with `precompile_component`
            // for an engine with the same compatibility hash (the directory name); it is never
            // filled from user input.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok((c, Duration::ZERO, true, None)),
                Err(e) => {
                    tracing::warn!(artifact = %path.display(), error = %e, "discarding unusable cached artifact");
                    cache.evict(sha256);
                }
            }
        }
        let t = Instant::now();
        let artifact = match &self.worker {
            Some(w) => w.compile(self.engine.config(), bytes, budget)?,
            None if self.cache.is_none() => {
                let c = Component::new(engine, bytes).map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
                return Ok((c, t.elapsed(), false, None));
            }
            None => engine.precompile_component(bytes).map_err(|e| LoadError::Invalid(format!("{e:#}")))?,
        };
        let compile = t.elapsed();
        // SAFETY: produced by `precompile_component` (here or in our own compile worker, from an
        // engine with this engine's code-affecting settings); never bytes from a user.
        let c =
            unsafe { Component::deserialize(engine, &artifact) }.map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        Ok((c, compile, false, self.cache.is_some().then_some(artifact)))
    }
}
