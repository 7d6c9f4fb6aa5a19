//! Internal metrics, rendered as Prometheus text at `/metrics`. Updated per batch or request,
//! never per event.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use parking_lot::Mutex;

/// A counter family with labels `(view, kind)`.
#[derive(Default)]
pub struct Counter {
    name: &'static str,
    help: &'static str,
    first: &'static str,
    label: &'static str,
    /// first label → second label → count (nested, so increments look up by `&str`).
    values: Mutex<BTreeMap<String, BTreeMap<String, u64>>>,
}

impl Counter {
    fn new(name: &'static str, help: &'static str, label: &'static str) -> Self {
        Self { name, help, first: "view", label, values: Mutex::new(BTreeMap::new()) }
    }
    fn with_first(mut self, first: &'static str) -> Self {
        self.first = first;
        self
    }
    pub fn add(&self, view: &str, kind: &str, n: u64) {
        if n == 0 {
            return;
        }
        let mut values = self.values.lock();
        // Allocate the label strings only the first time a series appears.
        match values.get_mut(view).and_then(|m| m.get_mut(kind)) {
            Some(v) => *v += n,
            None => *values.entry(view.to_string()).or_default().entry(kind.to_string()).or_default() += n,
        }
    }
    pub fn get(&self, view: &str, kind: &str) -> u64 {
        self.values.lock().get(view).and_then(|m| m.get(kind)).copied().unwrap_or(0)
    }
    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} counter", self.name, self.help, self.name);
        for (view, kind, v) in self.values.lock().iter().flat_map(|(view, m)| m.iter().map(move |(k, v)| (view, k, v))) {
            let _ = writeln!(out, "{}{{{}=\"{}\",{}=\"{}\"}} {v}", self.name, self.first, esc(view), self.label, esc(kind));
        }
    }
}

/// A histogram family with one label (`view` by default) and fixed buckets (seconds).
pub struct Histogram {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    buckets: &'static [f64],
    values: Mutex<BTreeMap<String, (Vec<u64>, f64, u64)>>,
}

impl Histogram {
    fn new(name: &'static str, help: &'static str, buckets: &'static [f64]) -> Self {
        Self { name, help, label: "view", buckets, values: Mutex::new(BTreeMap::new()) }
    }
    fn with_label(mut self, label: &'static str) -> Self {
        self.label = label;
        self
    }
    pub fn observe(&self, view: &str, v: f64) {
        self.observe_many(view, std::iter::once(v));
    }
    pub fn observe_many(&self, view: &str, vs: impl Iterator<Item = f64>) {
        let mut m = self.values.lock();
        if !m.contains_key(view) {
            m.insert(view.to_string(), (vec![0; self.buckets.len()], 0.0, 0));
        }
        let Some(e) = m.get_mut(view) else { return };
        for v in vs {
            for (i, b) in self.buckets.iter().enumerate() {
                if v <= *b {
                    e.0[i] += 1;
                }
            }
            e.1 += v;
            e.2 += 1;
        }
    }
    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} histogram", self.name, self.help, self.name);
        for (view, (counts, sum, n)) in self.values.lock().iter() {
            let (l, v) = (self.label, esc(view));
            for (b, c) in self.buckets.iter().zip(counts) {
                let _ = writeln!(out, "{}_bucket{{{l}=\"{v}\",le=\"{b}\"}} {c}", self.name);
            }
            let _ = writeln!(out, "{}_bucket{{{l}=\"{v}\",le=\"+Inf\"}} {n}\n{}_sum{{{l}=\"{v}\"}} {sum}\n{}_count{{{l}=\"{v}\"}} {n}", self.name, self.name, self.name);
        }
    }
}

/// A gauge family with label `view`.
pub struct Gauge {
    name: &'static str,
    help: &'static str,
    values: Mutex<BTreeMap<String, f64>>,
}

impl Gauge {
    fn new(name: &'static str, help: &'static str) -> Self {
        Self { name, help, values: Mutex::new(BTreeMap::new()) }
    }
    pub fn set(&self, view: &str, v: f64) {
        self.values.lock().insert(view.to_owned(), v);
    }
    pub fn get(&self, view: &str) -> Option<f64> {
        self.values.lock().get(view).copied()
    }
    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} gauge", self.name, self.help, self.name);
        for (view, v) in self.values.lock().iter() {
            let _ = writeln!(out, "{}{{view=\"{}\"}} {v}", self.name, esc(view));
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

const SERVE_LATENCY: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0];
const LATENCY: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// All of Wafer's internal metrics.
pub struct Metrics {
    /// Events by outcome (`ok` or an error code).
    pub events: Counter,
    pub rows: Counter,
    /// Store write failures and retries by kind.
    pub store_errors: Counter,
    /// Batches skipped as already applied (effectively-once replays).
    pub replays: Counter,
    /// Requests by endpoint and status class.
    pub requests: Counter,
    /// Circuit breaker trips by view and the first failure's code.
    pub breaker_trips: Counter,
    /// 1 while a view is paused by its circuit breaker.
    pub paused: Gauge,
    /// Requests or changes refused by a tenant quota, by tenant and limit.
    pub quota_exceeded: Counter,
    /// Feature requests refused or failed, by endpoint and error code.
    pub serve_errors: Counter,
    /// Transform + fold time per batch.
    pub transform_seconds: Histogram,
    /// HTTP request handling time by route.
    pub request_seconds: Histogram,
    /// Event produced (Kafka timestamp) → its features readable in the store.
    pub freshness_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            events: Counter::new("wafer_events_total", "Events processed, by outcome (ok or error code).", "outcome"),
            rows: Counter::new("wafer_rows_total", "Feature rows written.", "kind"),
            store_errors: Counter::new("wafer_store_errors_total", "Online store failures (batches are retried).", "kind"),
            replays: Counter::new("wafer_replayed_batches_total", "Batches skipped because their offsets were already applied.", "source"),
            requests: Counter::new("wafer_http_requests_total", "HTTP requests by route and status.", "status").with_first("route"),
            breaker_trips: Counter::new("wafer_breaker_trips_total", "Times a view's circuit breaker opened (paused the view).", "code"),
            paused: Gauge::new("wafer_view_paused", "1 while the view is paused by its circuit breaker."),
            quota_exceeded: Counter::new("wafer_quota_exceeded_total", "Requests or changes refused by a tenant quota.", "limit").with_first("tenant"),
            serve_errors: Counter::new("wafer_serve_errors_total", "Feature requests refused or failed, by tenant and error code.", "code").with_first("tenant"),
            request_seconds: Histogram::new("wafer_http_request_seconds", "HTTP request handling time by route.", SERVE_LATENCY).with_label("route"),
            transform_seconds: Histogram::new("wafer_transform_batch_seconds", "Wasm transform + fold time per batch.", LATENCY),
            freshness_seconds: Histogram::new("wafer_freshness_seconds", "Time from event produce to features readable.", LATENCY),
        }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in [&self.events, &self.rows, &self.store_errors, &self.replays, &self.requests, &self.serve_errors, &self.breaker_trips, &self.quota_exceeded] {
            c.render(&mut out);
        }
        self.paused.render(&mut out);
        self.transform_seconds.render(&mut out);
        self.request_seconds.render(&mut out);
        self.freshness_seconds.render(&mut out);
        out
    }
}
