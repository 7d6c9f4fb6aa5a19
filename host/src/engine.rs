//! The process-wide wasmtime [`Engine`], its configuration knobs, and the epoch ticker that
//! drives CPU deadlines.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Engine-wide knobs. Every transform in the process shares one engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Use wasmtime's pooling instance allocator.
    ///
    /// Trade-off: pooling pre-reserves virtual memory for `pool_instances` instances and makes
    /// instantiate/drop about 2x faster for compiled guests (Rust/C: ~5 µs instead of ~10 µs)
    /// and avoids the kernel mmap lock under many threads. It caps how many instances can live at
    /// once (instantiation fails beyond it) and gains nothing for Python guests, whose start-up
    /// code dominates. Default: on. See `runtime/benches/stream_throughput.rs` (`pooling` group).
    pub pooling: bool,
    /// Maximum live instances (component instances) when pooling. Each stream worker and each
    /// in-flight request holds one.
    pub pool_instances: u32,
    /// Hard ceiling on one linear memory, in bytes. Per-transform caps ([`crate::Limits`]) are
    /// enforced below this by a `ResourceLimiter`; this bounds the pool's reservations.
    pub max_memory_bytes: usize,
    /// How often the epoch advances. Deadlines are rounded up to whole ticks, so a deadline is
    /// honoured to within one tick. Smaller ticks cost a little more CPU in the ticker thread.
    pub epoch_tick: Duration,
    /// Maximum wasm stack per call, in bytes.
    pub max_wasm_stack: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            pooling: true,
            pool_instances: 256,
            max_memory_bytes: 1 << 30,
            epoch_tick: Duration::from_millis(1),
            max_wasm_stack: 1 << 20,
        }
    }
}

impl EngineConfig {
    fn wasmtime_config(&self) -> Config {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.max_wasm_stack(self.max_wasm_stack);
        if self.pooling {
            let mut pool = PoolingAllocationConfig::default();
            let n = self.pool_instances;
            // Interpreted guests (Python, JS) instantiate many core modules, memories and tables
            // per component; size the pool for them, not for a single-module Rust guest.
            pool.total_component_instances(n)
                .total_core_instances(n * 10)
                .total_memories(n * 2)
                .total_tables(n * 4)
                // Fiber stacks for async calls (request transforms): a store keeps its stack
                // between calls, so one per live request instance; each reserves
                // `async_stack_size` (2 MiB) of address space, touched only as used.
                .total_stacks(n)
                .max_memories_per_module(2)
                .max_tables_per_module(4)
                .table_elements(200_000)
                .max_core_instance_size(8 << 20)
                .max_component_instance_size(8 << 20)
                .max_memory_size(self.max_memory_bytes)
                // Keep a little of each slot resident so reusing a slot is a memset, not a fault.
                .linear_memory_keep_resident(64 << 10)
                .table_keep_resident(64 << 10);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        config
    }

    /// An engine with the same code-affecting settings but a one-instance pool: it only compiles
    /// (see `component::budget`), and its artifacts load in an engine built from `self`.
    pub fn compile_only_engine(&self) -> wasmtime::Result<Engine> {
        Engine::new(&EngineConfig { pool_instances: 1, ..self.clone() }.wasmtime_config())
    }

    /// A stable fingerprint of the settings that change generated code; part of the artifact
    /// cache key together with wasmtime's own compatibility hash.
    pub fn fingerprint(&self) -> String {
        format!("epoch=1;stack={}", self.max_wasm_stack)
    }
}

/// The engine plus its epoch ticker. Cheap to clone.
#[derive(Clone)]
pub struct WaferEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    config: EngineConfig,
}

impl WaferEngine {
    /// Build the engine and start the epoch ticker thread (which stops when the engine is dropped).
    pub fn new(config: EngineConfig) -> wasmtime::Result<Self> {
        let engine = Engine::new(&config.wasmtime_config())?;
        let weak = engine.weak();
        let tick = config.epoch_tick;
        std::thread::Builder::new()
            .name("wafer-epoch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| wasmtime::format_err!("cannot start the epoch ticker thread: {e}"))?;
        Ok(Self { inner: Arc::new(Inner { engine, config }) })
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Number of epoch ticks that covers `deadline` (rounded up, at least 1).
    pub fn ticks_for(&self, deadline: Duration) -> u64 {
        let tick = self.inner.config.epoch_tick.as_nanos().max(1);
        (deadline.as_nanos().div_ceil(tick) as u64).max(1)
    }
}
