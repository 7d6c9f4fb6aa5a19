//! Compiling an untrusted component under a time and memory budget: in a child process (the
//! `wafer` binary's hidden `compile-worker` command) with `RLIMIT_DATA` and `RLIMIT_CPU` set and
//! a lower scheduling priority, killed at the wall-clock budget. A compile bomb then costs the
//! node at most the budget and never its memory; serving goes on meanwhile.
//!
//! Protocol: the component on the worker's stdin, the precompiled artifact on its stdout (exit
//! 0); a compile error on stderr (exit [`EXIT_INVALID`]). Death by signal (the memory or CPU
//! limit) or the wall clock is `compile_budget_exceeded`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::LoadError;
use crate::engine::EngineConfig;

/// Exit code of a worker whose input is not a valid component.
pub const EXIT_INVALID: i32 = 3;

/// How to compile in a budgeted worker process.
#[derive(Debug, Clone)]
pub struct CompileWorker {
    /// The executable whose `compile-worker` command compiles (normally the running `wafer`).
    pub exe: PathBuf,
}

/// The budget of one compilation.
#[derive(Debug, Clone, Copy)]
pub struct CompileBudget {
    /// Wall-clock time the worker may take.
    pub time: Duration,
    /// Memory the worker may map (`RLIMIT_DATA`).
    pub memory_bytes: usize,
}

impl CompileBudget {
    /// CPU time the worker may use (`RLIMIT_CPU`): the wall-clock budget on every core, since
    /// Cranelift compiles functions in parallel (the Python example, 18 MB, takes ~12 s of wall
    /// clock and ~22 s of CPU on 2 cores). The wall clock is the binding limit; the CPU limit
    /// is a backstop should the wall-clock kill fail.
    pub fn cpu(&self) -> Duration {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        self.time.saturating_mul(cores)
    }
}

impl CompileWorker {
    /// Precompile `bytes` in a worker for an engine configured as `engine` (the artifact must be
    /// loadable by it), within `budget`.
    pub fn compile(&self, engine: &EngineConfig, bytes: &[u8], budget: CompileBudget) -> Result<Vec<u8>, LoadError> {
        let spawn_err = |e: std::io::Error| LoadError::Compile(format!("starting the compile worker: {e}"));
        let mut child = Command::new(&self.exe)
            .arg("compile-worker")
            .args(["--memory-mib", &(budget.memory_bytes >> 20).max(1).to_string()])
            .args(["--cpu-seconds", &budget.cpu().as_secs().max(1).to_string()])
            .args(["--max-wasm-stack", &engine.max_wasm_stack.to_string()])
            .args(["--max-memory-bytes", &engine.max_memory_bytes.to_string()])
            .args(["--pooling", if engine.pooling { "true" } else { "false" }])
            .env("WAFER_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(LoadError::Compile("the compile worker has no pipes".into()));
        };
        let input = bytes.to_vec();
        let writer = std::thread::spawn(move || {
            // A worker that dies early closes the pipe: its exit status says why.
            let _ = stdin.write_all(&input);
        });
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = stdout.read_to_end(&mut out);
            out
        });
        let errors = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = (&mut stderr).take(64 << 10).read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        });
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if started.elapsed() >= budget.time => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(LoadError::Compile(format!("waiting for the compile worker: {e}"))),
            }
        };
        let _ = writer.join();
        let artifact = reader.join().unwrap_or_default();
        let stderr = errors.join().unwrap_or_default();
        let exceeded = |why: String| LoadError::CompileBudgetExceeded(why);
        match status {
            None => Err(exceeded(format!("compiling took longer than {:?}", budget.time))),
            Some(s) if s.success() => Ok(artifact),
            Some(s) if s.code() == Some(EXIT_INVALID) => Err(LoadError::Invalid(stderr.trim().to_string())),
            Some(s) => {
                use std::os::unix::process::ExitStatusExt;
                let why = match s.signal() {
                    Some(libc::SIGXCPU) | Some(libc::SIGKILL) => {
                        format!("compiling used more than {:?} of CPU", budget.cpu())
                    }
                    _ => format!(
                        "compiling needed more than {} MiB of memory ({})",
                        budget.memory_bytes >> 20,
                        stderr.lines().last().unwrap_or("the worker aborted")
                    ),
                };
                Err(exceeded(why))
            }
        }
    }
}

/// The worker's side: limit this process, read a component from stdin, write the artifact to
/// stdout. Returns the process exit code.
pub fn worker_main(engine: EngineConfig, memory_bytes: usize, cpu: Duration) -> i32 {
    // The engine first: its pool's table mapping is committed memory, allocated once; the
    // limits below then bound what compiling adds on top of it.
    let engine = match engine.compile_only_engine() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("creating the engine: {e:#}");
            return 1;
        }
    };
    // Parallel compilation runs on rayon's global pool; its threads' stacks are private writable
    // mappings that RLIMIT_DATA counts, so they must exist before the limit (spawning them under it
    // fails with EAGAIN and rayon panics).
    if let Err(e) = rayon::ThreadPoolBuilder::new().build_global() {
        eprintln!("starting the compile threads: {e}");
        return 1;
    }
    // SAFETY: plain libc calls on this process; the structs are fully initialised.
    unsafe {
        // The budget is what compiling adds on top of what the process already maps (engine, pool
        // threads, allocator arenas): RLIMIT_DATA counts existing mappings too.
        let limit = (data_mapped_bytes() + memory_bytes) as libc::rlim_t;
        let data = libc::rlimit { rlim_cur: limit, rlim_max: limit };
        libc::setrlimit(libc::RLIMIT_DATA, &data);
        let secs = cpu.as_secs().max(1) as libc::rlim_t;
        let cpu = libc::rlimit { rlim_cur: secs, rlim_max: secs + 1 };
        libc::setrlimit(libc::RLIMIT_CPU, &cpu);
        // Lower priority: serving threads of the node win the cores.
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut bytes) {
        eprintln!("reading the component: {e}");
        return 1;
    }
    match engine.precompile_component(&bytes) {
        Ok(artifact) => match std::io::stdout().lock().write_all(&artifact) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("writing the artifact: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("{e:#}");
            EXIT_INVALID
        }
    }
}

/// The process's data mappings now (`VmData` of /proc/self/status, what RLIMIT_DATA counts); 0 when
/// unreadable.
fn data_mapped_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmData:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .unwrap_or(0);
    kib * 1024
}
