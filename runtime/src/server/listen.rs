//! The TCP accept loop and per-connection limits: no client can stop a node from serving.
//!
//! - **Accept errors are never fatal.** Running out of file descriptors (`EMFILE`/`ENFILE`) or
//!   kernel buffers backs off (10 ms doubling to 1 s) and retries; per-connection errors
//!   (`ECONNABORTED`, ...) are skipped. Each is counted in `wafer_connections_total{outcome}`.
//! - **A connection cap** ([`ListenConfig::max_connections`], by default below the process's
//!   file-descriptor limit so that Redis, Kafka and artifact files always have descriptors left).
//!   A connection over the cap gets an immediate `503` with code `too_many_connections` and is
//!   closed.
//! - **Header-read timeout**: a client that has not sent a complete request head within
//!   [`ListenConfig::header_timeout`] of connecting (or, on a kept-alive HTTP/1 connection, of
//!   starting the next head) is disconnected (slow-header attacks).
//! - **Idle timeout**: a connection with no request in flight for [`ListenConfig::idle_timeout`]
//!   is closed.
//! - **Graceful shutdown** ([`serve_until`]): stop accepting, finish the requests in flight,
//!   close each connection after its response, within a drain timeout.
//! - **Body-read timeout**: a request whose body has not fully arrived within
//!   [`ListenConfig::body_timeout`] of its head is answered `408 body_timeout` (slow-body
//!   attacks; the deadline travels with the request as a [`BodyDeadline`] extension that every
//!   body reader honours).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use super::respond::BodyDeadline;
use crate::node::Node;

/// Connection limits of the HTTP listener.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// Open connections served at once; more are refused with 503 `too_many_connections`.
    pub max_connections: usize,
    /// Time a client has to send a complete request head.
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Time a client has, after the request head, to send the whole body. Longer allows
    /// large uploads over slow links; shorter frees a slow client's connection sooner.
    pub body_timeout: Duration,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// File descriptors kept free of client connections (store and broker connections, artifact
/// files, compile workers): a quarter of the limit, at least 64.
fn reserved_fds(limit: u64) -> u64 {
    (limit / 4).max(64)
}

/// The default cap: 10,000, or less when the soft `RLIMIT_NOFILE` leaves less room (at least 16).
pub fn default_max_connections() -> usize {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct we pass.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    let soft = if ok { lim.rlim_cur } else { 1024 };
    let room = soft.saturating_sub(reserved_fds(soft)).max(16);
    room.min(10_000) as usize
}

/// Serve HTTP on `listener` forever with the default [`ListenConfig`].
pub async fn serve(app: Arc<Node>, listener: TcpListener) -> std::io::Result<()> {
    serve_with(app, listener, ListenConfig::default()).await
}

/// Serve HTTP on `listener` forever. Only a failure to even inspect the listener returns.
pub async fn serve_with(app: Arc<Node>, listener: TcpListener, cfg: ListenConfig) -> std::io::Result<()> {
    serve_until(app, listener, cfg, std::future::pending(), Duration::ZERO).await
}

/// Serve HTTP on `listener` until `shutdown` completes, then shut down gracefully: stop
/// accepting (new connections are refused by the kernel once the listener is dropped), let
/// every request in flight finish and close each connection after its current response, and
/// return once no connection is open or `drain` has passed (connections still open then are
/// dropped with the runtime).
pub async fn serve_until(
    app: Arc<Node>,
    listener: TcpListener,
    cfg: ListenConfig,
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let open = Arc::new(AtomicUsize::new(0));
    let cfg = Arc::new(cfg);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut backoff = Duration::ZERO;
    tracing::info!(addr = %listener.local_addr()?, max_connections = cfg.max_connections, "accepting connections");
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => {
                backoff = Duration::ZERO;
                stream
            }
            Err(e) => {
                let kind = accept_error_kind(&e);
                app.metrics.connections.add("http", kind, 1);
                if kind == "resource_exhausted" {
                    backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                    tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed: out of descriptors or buffers; backing off");
                    tokio::time::sleep(backoff).await;
                } else {
                    tracing::debug!(error = %e, "accept failed for one connection");
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if open.load(Ordering::Relaxed) >= cfg.max_connections {
            app.metrics.connections.add("http", "refused", 1);
            tokio::spawn(refuse(stream, cfg.max_connections));
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        app.metrics.connections.add("http", "accepted", 1);
        app.metrics.open_connections.set("http", open.load(Ordering::Relaxed) as f64);
        let (app, open, cfg, stop) = (app.clone(), open.clone(), cfg.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let closed = connection(&app, stream, &cfg, stop).await;
            if closed {
                app.metrics.connections.add("http", "idle_closed", 1);
            }
            let n = open.fetch_sub(1, Ordering::Relaxed) - 1;
            app.metrics.open_connections.set("http", n as f64);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let in_flight = open.load(Ordering::Relaxed);
    tracing::info!(
        open_connections = in_flight,
        drain_ms = drain.as_millis() as u64,
        "shutting down: draining connections"
    );
    let deadline = Instant::now() + drain;
    while open.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = open.load(Ordering::Relaxed);
    if left > 0 {
        tracing::warn!(open_connections = left, "drain timeout passed; closing the remaining connections");
    }
    Ok(())
}

fn accept_error_kind(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => "resource_exhausted",
        _ => "accept_error",
    }
}

/// Tell a client over the cap why it is refused (the API's 503 `too_many_connections`), then
/// close. The connection is never handed to hyper, so the response is written by hand.
async fn refuse(mut stream: tokio::net::TcpStream, cap: usize) {
    let refusal = super::ApiError::Unavailable {
        code: "too_many_connections",
        message: format!("the node serves at most {cap} connections at once; retry shortly"),
        retry_after_secs: Some(1),
    };
    let bytes = http1_bytes(refusal.into_response()).await;
    let write = async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// A response as HTTP/1.1 bytes, with `connection: close`.
async fn http1_bytes(resp: super::respond::Resp) -> Vec<u8> {
    use http_body_util::BodyExt;
    let (parts, body) = resp.into_parts();
    let body = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(never) => match never {},
    };
    let reason = parts.status.canonical_reason().unwrap_or("");
    let mut out = format!("HTTP/1.1 {} {reason}\r\n", parts.status.as_u16()).into_bytes();
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(&body);
    out
}

/// Requests in flight on one connection and when the last one ended (ms since the start).
struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    last_ms: AtomicU64,
}

impl Activity {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// Ends a request's activity when dropped (also when the client goes away mid-request).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last_ms.store(self.0.now_ms(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serve one connection until it ends; `true` when it was closed for being idle or slow.
///
/// Once `stop` turns `true` the connection finishes its request in flight and closes.
async fn connection(
    app: &Arc<Node>,
    stream: tokio::net::TcpStream,
    cfg: &ListenConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> bool {
    let activity = Arc::new(Activity {
        started: Instant::now(),
        in_flight: AtomicUsize::new(0),
        requests: AtomicU64::new(0),
        last_ms: AtomicU64::new(0),
    });
    let body_timeout = cfg.body_timeout;
    let svc = {
        let (app, activity) = (app.clone(), activity.clone());
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let app = app.clone();
            let at = tokio::time::Instant::now() + body_timeout;
            req.extensions_mut().insert(BodyDeadline { at, timeout: body_timeout });
            activity.in_flight.fetch_add(1, Ordering::Relaxed);
            activity.requests.fetch_add(1, Ordering::Relaxed);
            let guard = InFlight(activity.clone());
            async move {
                let r = super::handle(&app, req).await;
                drop(guard);
                Ok::<_, Infallible>(r)
            }
        })
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(cfg.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let check = (cfg.header_timeout.min(cfg.idle_timeout) / 4).max(Duration::from_millis(50));
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            _ = conn.as_mut() => return false,
            // Changed to `true`, or closed (the server is gone): shut down either way.
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(check) => {
                if activity.in_flight.load(Ordering::Relaxed) > 0 {
                    continue;
                }
                let now = activity.now_ms();
                // No request yet: the client has `header_timeout` to send one (this also covers
                // the protocol-detection read, before hyper's own header timeout starts).
                let limit = if activity.requests.load(Ordering::Relaxed) == 0 { cfg.header_timeout } else { cfg.idle_timeout };
                if now.saturating_sub(activity.last_ms.load(Ordering::Relaxed)) >= limit.as_millis() as u64 {
                    return true;
                }
            }
        }
    }
}
