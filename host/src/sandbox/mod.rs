//! The sandbox around every guest call: limits, the WASI context, and host imports.
//!
//! A guest gets: no env, args, stdin, preopens, sockets or DNS (WASI's defaults plus explicit
//! denials); clocks that read the event/request time of the current call; random seeded per call;
//! stdout/stderr and the `log` import routed to `tracing`, truncated and rate-limited. The only
//! ambient resource it may get is a read-only asset directory, granted per transform.

mod clock;
pub mod cpu;
mod limiter;
mod log;

use std::path::PathBuf;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

pub use clock::{CallClock, seed_from as clock_seed};
pub use limiter::MemoryLimiter;
pub use log::GuestLog;

/// Per-transform limits, enforced on every call.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock CPU deadline for one call (a whole batch for stream transforms), enforced by
    /// epoch interruption. Overrunning traps the call with [`crate::TransformError::Deadline`].
    pub deadline: Duration,
    /// Cap on the instance's linear memory. Growth beyond it fails inside the guest; if the guest
    /// then traps, the call fails with [`crate::TransformError::OutOfMemory`].
    pub memory_bytes: usize,
    /// After a call, an instance whose memory exceeds this is discarded and a fresh one is made
    /// for the next call (linear memory never shrinks; JS heaps grow with calls).
    pub recycle_memory_bytes: usize,
    /// Recycle an instance after this many calls regardless of memory (0 = never).
    pub recycle_after_calls: u64,
    /// Live instances of this transform per node (a tenant quota); more concurrent calls wait.
    pub max_instances: usize,
    /// Cap on the size of one call's output (sum of rows, names and values), and of one batch's
    /// output over all its calls (re-runs of single events included).
    pub output_bytes: usize,
    /// Thread CPU time one batch may spend in the guest, re-runs included; events left when it
    /// is spent fail with [`crate::TransformError::BudgetExceeded`] instead of running.
    pub batch_cpu: Duration,
    /// Feature rows one batch may produce; beyond it the whole batch is refused.
    pub batch_rows: usize,
    /// Distinct entities one batch may write; beyond it the whole batch is refused.
    pub batch_entities: usize,
    /// Longest entity key a row may carry (bytes); a longer one fails its event.
    pub entity_key_bytes: usize,
    /// Longest guest log line kept; longer ones are truncated.
    pub log_line_bytes: usize,
    /// Guest log lines (log import + stdout/stderr lines) kept per call; the rest are counted
    /// and dropped.
    pub log_lines_per_call: u32,
    /// Wall-clock (and CPU) budget for compiling the component, when compiled in a worker.
    pub compile_time: Duration,
    /// Memory budget for compiling the component, when compiled in a worker.
    pub compile_memory_bytes: usize,
    /// Optional read-only directory visible to the guest as `/assets`.
    pub asset_dir: Option<PathBuf>,
}

impl Limits {
    /// Default limits with this deadline and memory cap; instances are recycled at ¾ of the cap.
    pub fn capped(deadline: Duration, memory_bytes: usize) -> Self {
        Self { deadline, memory_bytes, recycle_memory_bytes: memory_bytes / 4 * 3, ..Self::default() }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_millis(50),
            memory_bytes: 64 << 20,
            recycle_memory_bytes: 48 << 20,
            recycle_after_calls: 0,
            max_instances: 64,
            output_bytes: 16 << 20,
            batch_cpu: Duration::from_millis(250),
            batch_rows: 100_000,
            batch_entities: 20_000,
            entity_key_bytes: 1024,
            compile_time: Duration::from_secs(20),
            compile_memory_bytes: 1 << 30,
            log_line_bytes: 1024,
            log_lines_per_call: 20,
            asset_dir: None,
        }
    }
}

/// Everything a guest instance's `Store` carries.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) clock: CallClock,
    pub(crate) log: GuestLog,
    /// Epoch ticks left in the current async call (request transforms; see
    /// `transform::instance::new_async_store`).
    pub(crate) ticks_left: u64,
}

impl HostState {
    /// Build the sandboxed state for a new instance of transform `name`.
    pub fn new(name: &str, limits: &Limits) -> Result<Self, std::io::Error> {
        let clock = CallClock::new();
        let log = GuestLog::new(name, limits.log_line_bytes, limits.log_lines_per_call);
        let mut b = WasiCtxBuilder::new();
        b.wall_clock(clock.wall())
            .monotonic_clock(clock.monotonic())
            .secure_random(clock.rng())
            .insecure_random(clock.rng())
            .insecure_random_seed(0x5afe_fea7_0000_0001)
            .stdout(log.stdio("stdout"))
            .stderr(log.stdio("stderr"))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        if let Some(dir) = &limits.asset_dir {
            b.preopened_dir(dir, "/assets", FsPerms::ReadOnly)
                .map_err(|e| std::io::Error::other(format!("asset dir {}: {e}", dir.display())))?;
        }
        Ok(Self {
            wasi: b.build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(limits.memory_bytes),
            clock,
            log,
            ticks_left: 0,
        })
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl crate::bindings::host::Host for HostState {
    fn log(&mut self, level: crate::bindings::host::Level, message: String) {
        self.log.log(level, &message);
    }
}

impl crate::bindings::types::Host for HostState {}
