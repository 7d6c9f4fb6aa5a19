//! Guest logging: the `wafer:transform/host.log` import and stdout/stderr, both sent to
//! `tracing` (inside the caller's span, which names tenant, transform and version), truncated to
//! a line length and rate-limited per call.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use parking_lot::Mutex;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use crate::bindings::host::Level;

struct Shared {
    transform: Box<str>,
    line_bytes: usize,
    lines_per_call: u32,
    emitted_this_call: AtomicU32,
    dropped_this_call: AtomicU32,
    total: AtomicU64,
}

/// The log sink of one instance.
#[derive(Clone)]
pub struct GuestLog {
    shared: Arc<Shared>,
}

impl GuestLog {
    pub fn new(transform: &str, line_bytes: usize, lines_per_call: u32) -> Self {
        Self {
            shared: Arc::new(Shared {
                transform: transform.into(),
                line_bytes,
                lines_per_call,
                emitted_this_call: AtomicU32::new(0),
                dropped_this_call: AtomicU32::new(0),
                total: AtomicU64::new(0),
            }),
        }
    }

    /// Reset the per-call budget; report what was dropped in the previous call.
    pub fn begin_call(&self) {
        let s = &self.shared;
        s.emitted_this_call.store(0, Ordering::Relaxed);
        let dropped = s.dropped_this_call.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(transform = %s.transform, dropped, "guest log lines dropped (rate limit)");
        }
    }

    /// Total lines accepted since the instance was created.
    pub fn total(&self) -> u64 {
        self.shared.total.load(Ordering::Relaxed)
    }

    pub fn log(&self, level: Level, message: &str) {
        self.emit(level, "log", message);
    }

    fn emit(&self, level: Level, source: &'static str, message: &str) {
        let s = &self.shared;
        if s.emitted_this_call.fetch_add(1, Ordering::Relaxed) >= s.lines_per_call {
            s.dropped_this_call.fetch_add(1, Ordering::Relaxed);
            return;
        }
        s.total.fetch_add(1, Ordering::Relaxed);
        let msg = truncate(message, s.line_bytes);
        let t = &*s.transform;
        match level {
            Level::Trace => tracing::trace!(target: "wafer::guest", transform = t, source, "{msg}"),
            Level::Debug => tracing::debug!(target: "wafer::guest", transform = t, source, "{msg}"),
            Level::Info => tracing::info!(target: "wafer::guest", transform = t, source, "{msg}"),
            Level::Warn => tracing::warn!(target: "wafer::guest", transform = t, source, "{msg}"),
            Level::Error => tracing::error!(target: "wafer::guest", transform = t, source, "{msg}"),
        }
    }

    pub(crate) fn stdio(&self, name: &'static str) -> GuestStdio {
        GuestStdio { log: self.clone(), name, buf: Arc::new(Mutex::new(Vec::new())) }
    }
}

fn truncate(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [truncated {} bytes]", &s[..end], s.len() - end).into()
}

/// Guest stdout/stderr: split into lines, each logged like a `log` call (info for stdout, warn
/// for stderr). Writes never fail, so a chatty guest cannot trap itself by printing.
#[derive(Clone)]
pub(crate) struct GuestStdio {
    log: GuestLog,
    name: &'static str,
    buf: Arc<Mutex<Vec<u8>>>,
}

impl GuestStdio {
    fn push(&self, data: &[u8]) {
        let mut buf = self.buf.lock();
        let cap = self.log.shared.line_bytes;
        for &b in data {
            if b == b'\n' {
                self.flush_line(&mut buf);
            } else if buf.len() < cap + 1 {
                buf.push(b);
            }
        }
    }

    fn flush_line(&self, buf: &mut Vec<u8>) {
        let line = String::from_utf8_lossy(buf);
        let level = if self.name == "stderr" { Level::Warn } else { Level::Info };
        self.log.emit(level, self.name, line.trim_end_matches('\r'));
        buf.clear();
    }
}

impl IsTerminal for GuestStdio {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStdio {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for GuestStdio {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for GuestStdio {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestStdio {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.push(data);
        Poll::Ready(Ok(data.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
