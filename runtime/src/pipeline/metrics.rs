//! Internal metrics, rendered as Prometheus text at `/metrics`. Updated per batch or request,
//! never per event. Series are atomics behind a read-mostly lock: an update takes the shared
//! lock (the exclusive one only when a series first appears), so concurrent requests never wait
//! on each other.
//!
//! Per-view series are kept under the view's id (`tenant/view`) and exposed with two labels,
//! `tenant="acme",view="txn"`. After Wafer's own families come the process's (`process_*`, read
//! from `/proc/self` when scraped: [`process`]) and `wafer_build_info{version}`.
//!
//! The node also keeps a short history of each view's rates and freshness quantiles
//! ([`history`], sampled by [`Metrics::sample_history`]) for the console's charts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::{Mutex, RwLock};

pub mod history;
pub mod process;

/// The label text of a series' first label: a view id `tenant/view` becomes
/// `tenant="tenant",view="view"`; any other label is `label="value"`.
fn first_labels(label: &str, value: &str) -> String {
    match value.split_once('/') {
        Some((tenant, view)) if label == "view" => format!("tenant=\"{}\",view=\"{}\"", esc(tenant), esc(view)),
        _ => format!("{label}=\"{}\"", esc(value)),
    }
}

/// A counter family with labels `(view, kind)`.
#[derive(Default)]
pub struct Counter {
    name: &'static str,
    help: &'static str,
    first: &'static str,
    label: &'static str,
    /// first label → second label → count (nested, so increments look up by `&str`).
    values: RwLock<BTreeMap<String, BTreeMap<String, AtomicU64>>>,
}

impl Counter {
    fn new(name: &'static str, help: &'static str, label: &'static str) -> Self {
        Self { name, help, first: "view", label, values: RwLock::new(BTreeMap::new()) }
    }
    fn with_first(mut self, first: &'static str) -> Self {
        self.first = first;
        self
    }
    pub fn add(&self, view: &str, kind: &str, n: u64) {
        if n == 0 {
            return;
        }
        if let Some(v) = self.values.read().get(view).and_then(|m| m.get(kind)) {
            v.fetch_add(n, Relaxed);
            return;
        }
        // Allocate the label strings only the first time a series appears.
        self.values
            .write()
            .entry(view.to_string())
            .or_default()
            .entry(kind.to_string())
            .or_default()
            .fetch_add(n, Relaxed);
    }
    pub fn get(&self, view: &str, kind: &str) -> u64 {
        self.values.read().get(view).and_then(|m| m.get(kind)).map_or(0, |v| v.load(Relaxed))
    }
    /// Every series of one first label value (a view's counts by kind), in label order.
    pub fn of(&self, view: &str) -> Vec<(String, u64)> {
        let values = self.values.read();
        let Some(m) = values.get(view) else { return Vec::new() };
        m.iter().map(|(k, v)| (k.clone(), v.load(Relaxed))).collect()
    }
    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} counter", self.name, self.help, self.name);
        for (view, kind, v) in self.values.read().iter().flat_map(|(view, m)| m.iter().map(move |(k, v)| (view, k, v)))
        {
            let _ = writeln!(
                out,
                "{}{{{},{}=\"{}\"}} {}",
                self.name,
                first_labels(self.first, view),
                self.label,
                esc(kind),
                v.load(Relaxed)
            );
        }
    }
}

/// A histogram family with one label (`view` by default) and fixed buckets (seconds).
pub struct Histogram {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    buckets: &'static [f64],
    values: RwLock<BTreeMap<String, Series>>,
}

/// One histogram series: per-bucket (not cumulative) counts, sum (f64 bits) and count.
struct Series {
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
    n: AtomicU64,
}

impl Series {
    fn observe(&self, buckets: &[f64], vs: impl Iterator<Item = f64>) {
        let (mut sum, mut n) = (0.0, 0);
        // One increment per value (the bucket it falls in); cumulated when rendered.
        for v in vs {
            if let Some(c) = self.counts.get(buckets.partition_point(|b| *b < v)) {
                c.fetch_add(1, Relaxed);
            }
            sum += v;
            n += 1;
        }
        let _ = self.sum.fetch_update(Relaxed, Relaxed, |s| Some((f64::from_bits(s) + sum).to_bits()));
        self.n.fetch_add(n, Relaxed);
    }
}

impl Histogram {
    fn new(name: &'static str, help: &'static str, buckets: &'static [f64]) -> Self {
        Self { name, help, label: "view", buckets, values: RwLock::new(BTreeMap::new()) }
    }
    fn with_label(mut self, label: &'static str) -> Self {
        self.label = label;
        self
    }
    pub fn observe(&self, view: &str, v: f64) {
        self.observe_many(view, std::iter::once(v));
    }
    pub fn observe_many(&self, view: &str, vs: impl Iterator<Item = f64>) {
        if let Some(series) = self.values.read().get(view) {
            series.observe(self.buckets, vs);
            return;
        }
        let mut m = self.values.write();
        let series = m.entry(view.to_string()).or_insert_with(|| Series {
            counts: self.buckets.iter().map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
            n: AtomicU64::new(0),
        });
        series.observe(self.buckets, vs);
    }
    /// A series' per-bucket (not cumulative) counts, then the count past the last bucket.
    fn counts(&self, view: &str) -> Option<Vec<u64>> {
        let values = self.values.read();
        let series = values.get(view)?;
        let mut counts: Vec<u64> = series.counts.iter().map(|c| c.load(Relaxed)).collect();
        let inside: u64 = counts.iter().sum();
        counts.push(series.n.load(Relaxed).saturating_sub(inside));
        Some(counts)
    }
    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} histogram", self.name, self.help, self.name);
        for (view, series) in self.values.read().iter() {
            let l = first_labels(self.label, view);
            let mut cumulative = 0;
            for (b, c) in self.buckets.iter().zip(&series.counts) {
                cumulative += c.load(Relaxed);
                let _ = writeln!(out, "{}_bucket{{{l},le=\"{b}\"}} {cumulative}", self.name);
            }
            let (sum, n) = (f64::from_bits(series.sum.load(Relaxed)), series.n.load(Relaxed));
            let _ = writeln!(
                out,
                "{}_bucket{{{l},le=\"+Inf\"}} {n}\n{}_sum{{{l}}} {sum}\n{}_count{{{l}}} {n}",
                self.name, self.name, self.name
            );
        }
    }
}

/// A gauge family with label `view`.
pub struct Gauge {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    values: Mutex<BTreeMap<String, f64>>,
}

impl Gauge {
    fn new(name: &'static str, help: &'static str) -> Self {
        Self { name, help, label: "view", values: Mutex::new(BTreeMap::new()) }
    }
    fn with_label(mut self, label: &'static str) -> Self {
        self.label = label;
        self
    }
    pub fn set(&self, view: &str, v: f64) {
        let mut values = self.values.lock();
        // Allocate the label only the first time a series appears (set runs per batch).
        match values.get_mut(view) {
            Some(cur) => *cur = v,
            None => {
                values.insert(view.to_owned(), v);
            }
        }
    }
    pub fn get(&self, view: &str) -> Option<f64> {
        self.values.lock().get(view).copied()
    }
    /// Every view whose value is not 0.
    pub fn nonzero(&self) -> Vec<String> {
        self.values.lock().iter().filter(|(_, v)| **v != 0.0).map(|(k, _)| k.clone()).collect()
    }
    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} gauge", self.name, self.help, self.name);
        for (view, v) in self.values.lock().iter() {
            let _ = writeln!(out, "{}{{{}}} {v}", self.name, first_labels(self.label, view));
        }
    }
}

/// A gauge family with labels `(view, partition)` (a source's partitions).
pub struct PartitionGauge {
    name: &'static str,
    help: &'static str,
    values: Mutex<BTreeMap<(String, i32), f64>>,
}

impl PartitionGauge {
    fn new(name: &'static str, help: &'static str) -> Self {
        Self { name, help, values: Mutex::new(BTreeMap::new()) }
    }
    pub fn set(&self, view: &str, partition: i32, v: f64) {
        self.values.lock().insert((view.to_owned(), partition), v);
    }
    pub fn get(&self, view: &str, partition: i32) -> Option<f64> {
        self.values.lock().get(&(view.to_owned(), partition)).copied()
    }
    /// Every `(view, partition)` whose value is not 0.
    pub fn nonzero(&self) -> Vec<(String, i32)> {
        self.values.lock().iter().filter(|(_, v)| **v != 0.0).map(|(k, _)| k.clone()).collect()
    }
    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} gauge", self.name, self.help, self.name);
        for ((view, p), v) in self.values.lock().iter() {
            let _ = writeln!(out, "{}{{{},partition=\"{p}\"}} {v}", self.name, first_labels("view", view));
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

const SERVE_LATENCY: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0];
/// Freshness is milliseconds when healthy: fine buckets at the low end.
const FRESHNESS: &[f64] = &[
    0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0,
];
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
    /// HTTP requests by route (the route table's label) and exact status code.
    pub requests: Counter,
    /// Circuit breaker trips by view and the first failure's code.
    pub breaker_trips: Counter,
    /// 1 while a view is paused by its circuit breaker.
    pub paused: Gauge,
    /// 1 while a source partition is stalled (assigned, unread events, nothing received).
    pub source_stalled: PartitionGauge,
    /// 1 while a view's source topic does not exist (deleted, or never created).
    pub source_missing: Gauge,
    /// Times a partition's log end was found below the view's watermark (topic re-created or
    /// the broker lost its log): events at offsets below the watermark are not applied.
    pub source_rewound: Counter,
    /// Requests or changes refused by a tenant quota, by tenant and limit.
    pub quota_exceeded: Counter,
    /// Entities not stored because their tenant is at its `max_stored_entities` quota, by view.
    pub quota_refused_entities: Counter,
    /// Records a tenant holds in the online store, as last counted (tenants with a store quota).
    pub stored_entities: Gauge,
    /// Feature requests refused or failed, by tenant and error code.
    pub serve_errors: Counter,
    /// Client connections by listener and outcome (`accepted`, `refused` over the cap,
    /// `idle_closed`, `resource_exhausted` / `accept_error` when accepting failed).
    pub connections: Counter,
    /// Open client connections by listener.
    pub open_connections: Gauge,
    /// Transform + fold time per batch.
    pub transform_seconds: Histogram,
    /// HTTP request handling time by route.
    pub request_seconds: Histogram,
    /// Event produced (Kafka timestamp) → its features readable in the store.
    pub freshness_seconds: Histogram,
    /// Event produced (Kafka timestamp) → its batch received by Wafer's consumer (no linger:
    /// a batch is what has arrived): the producer's and broker's share of `freshness_seconds`;
    /// the rest is Wafer's (transform, fold, store write).
    pub source_lag_seconds: Histogram,
    /// The last minutes of each view's rates and freshness (for the console).
    pub history: history::History,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            events: Counter::new("wafer_events_total", "Events processed, by outcome (ok or error code).", "outcome"),
            rows: Counter::new("wafer_rows_total", "Feature rows written.", "kind"),
            store_errors: Counter::new(
                "wafer_store_errors_total",
                "Online store failures (batches are retried).",
                "kind",
            ),
            replays: Counter::new(
                "wafer_replayed_events_total",
                "Events skipped because their offsets were already applied (replays after a restart or rebalance).",
                "source",
            ),
            requests: Counter::new("wafer_http_requests_total", "HTTP requests by route and status.", "status")
                .with_first("route"),
            breaker_trips: Counter::new(
                "wafer_breaker_trips_total",
                "Times a view's circuit breaker opened (paused the view).",
                "code",
            ),
            connections: Counter::new(
                "wafer_connections_total",
                "Client connections by listener and outcome (accepted, refused, idle_closed, accept errors).",
                "outcome",
            )
            .with_first("listener"),
            open_connections: Gauge::new("wafer_open_connections", "Open client connections.").with_label("listener"),
            paused: Gauge::new("wafer_view_paused", "1 while the view is paused by its circuit breaker."),
            source_stalled: PartitionGauge::new(
                "wafer_source_stalled",
                "1 while a source partition is assigned, has unread events and delivers nothing.",
            ),
            source_missing: Gauge::new("wafer_source_missing", "1 while the view's source topic does not exist."),
            source_rewound: Counter::new(
                "wafer_source_rewound_total",
                "Partitions found with a log end below the view's watermark (topic re-created or log lost).",
                "partition",
            ),
            quota_exceeded: Counter::new(
                "wafer_quota_exceeded_total",
                "Requests or changes refused by a tenant quota.",
                "limit",
            )
            .with_first("tenant"),
            quota_refused_entities: Counter::new(
                "wafer_quota_refused_entities_total",
                "Entities not stored because their tenant is at a store quota.",
                "limit",
            ),
            stored_entities: Gauge::new(
                "wafer_tenant_stored_entities",
                "Entity records a tenant holds in the online store (as last counted).",
            )
            .with_label("tenant"),
            serve_errors: Counter::new(
                "wafer_serve_errors_total",
                "Feature requests refused or failed, by tenant and error code.",
                "code",
            )
            .with_first("tenant"),
            request_seconds: Histogram::new(
                "wafer_http_request_seconds",
                "HTTP request handling time by route.",
                SERVE_LATENCY,
            )
            .with_label("route"),
            transform_seconds: Histogram::new(
                "wafer_transform_batch_seconds",
                "Wasm transform + fold time per batch.",
                LATENCY,
            ),
            freshness_seconds: Histogram::new(
                "wafer_freshness_seconds",
                "Time from event produce to features readable.",
                FRESHNESS,
            ),
            source_lag_seconds: Histogram::new(
                "wafer_source_lag_seconds",
                "Time from event produce to its batch received by the consumer.",
                FRESHNESS,
            ),
            history: history::History::default(),
        }
    }
}

impl Metrics {
    /// Sample every view's event counts and freshness histograms into [`Metrics::history`]
    /// (the node calls it every [`history::SAMPLE_INTERVAL`]).
    pub fn sample_history(&self, at_ms: i64) {
        let views: Vec<String> = self.events.values.read().keys().cloned().collect();
        let mut now = BTreeMap::new();
        for view in views {
            let (mut ok, mut errors) = (0, 0);
            for (outcome, n) in self.events.of(&view) {
                if outcome == "ok" {
                    ok += n;
                } else {
                    errors += n;
                }
            }
            let freshness = self.freshness_seconds.counts(&view).unwrap_or_default();
            let source_lag = self.source_lag_seconds.counts(&view).unwrap_or_default();
            now.insert(view, history::Raw { ok, errors, freshness, source_lag });
        }
        // Both histograms use the FRESHNESS buckets.
        self.history.record(at_ms, now, FRESHNESS);
    }

    /// Sample into the history every [`history::SAMPLE_INTERVAL`], for as long as the node runs.
    pub async fn sample_history_forever(self: std::sync::Arc<Self>) {
        let mut tick = tokio::time::interval(history::SAMPLE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.sample_history(crate::time::now_ms());
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in [
            &self.events,
            &self.rows,
            &self.store_errors,
            &self.replays,
            &self.requests,
            &self.serve_errors,
            &self.breaker_trips,
            &self.quota_exceeded,
            &self.quota_refused_entities,
            &self.source_rewound,
            &self.connections,
        ] {
            c.render(&mut out);
        }
        self.paused.render(&mut out);
        self.source_stalled.render(&mut out);
        self.source_missing.render(&mut out);
        self.stored_entities.render(&mut out);
        self.open_connections.render(&mut out);
        self.transform_seconds.render(&mut out);
        self.request_seconds.render(&mut out);
        self.freshness_seconds.render(&mut out);
        self.source_lag_seconds.render(&mut out);
        process::render(&mut out);
        let _ = writeln!(
            out,
            "# HELP wafer_build_info The running Wafer's version.\n# TYPE wafer_build_info gauge\n\
             wafer_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_inclusive() {
        let h = Histogram::new("h", "help", &[0.001, 0.005, 0.01]);
        h.observe_many("acme/v", [0.0005, 0.001, 0.003, 0.005, 0.02].into_iter());
        let mut out = String::new();
        h.render(&mut out);
        for line in [
            "h_bucket{tenant=\"acme\",view=\"v\",le=\"0.001\"} 2",
            "h_bucket{tenant=\"acme\",view=\"v\",le=\"0.005\"} 4",
            "h_bucket{tenant=\"acme\",view=\"v\",le=\"0.01\"} 4",
            "h_bucket{tenant=\"acme\",view=\"v\",le=\"+Inf\"} 5",
            "h_count{tenant=\"acme\",view=\"v\"} 5",
        ] {
            assert!(out.lines().any(|l| l == line), "missing `{line}` in:\n{out}");
        }
    }

    #[test]
    fn view_series_get_tenant_and_view_labels_other_labels_stay() {
        let m = Metrics::default();
        m.events.add("acme/txn", "ok", 3);
        m.paused.set("acme/txn", 1.0);
        m.source_stalled.set("acme/txn", 2, 1.0);
        m.requests.add("push", "429", 1);
        m.quota_exceeded.add("acme", "push_events", 1);
        m.open_connections.set("http", 4.0);
        let text = m.render();
        for line in [
            "wafer_events_total{tenant=\"acme\",view=\"txn\",outcome=\"ok\"} 3",
            "wafer_view_paused{tenant=\"acme\",view=\"txn\"} 1",
            "wafer_source_stalled{tenant=\"acme\",view=\"txn\",partition=\"2\"} 1",
            "wafer_http_requests_total{route=\"push\",status=\"429\"} 1",
            "wafer_quota_exceeded_total{tenant=\"acme\",limit=\"push_events\"} 1",
            "wafer_open_connections{listener=\"http\"} 4",
            &format!("wafer_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")),
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
        }
        assert!(!text.contains("acme/txn"), "{text}");
    }

    /// The metric names a PromQL expression refers to (`wafer_*` and `process_*`), with a
    /// histogram's `_bucket` suffix removed.
    fn metric_names(expr: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut rest = expr;
        while let Some(at) = rest.find(|c: char| c.is_ascii_lowercase()) {
            rest = &rest[at..];
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            let word = &rest[..end];
            if word.starts_with("wafer_") || word.starts_with("process_") {
                names.push(word.trim_end_matches("_bucket").to_owned());
            }
            rest = &rest[end..];
        }
        names
    }

    #[test]
    fn dashboard_queries_only_metrics_the_node_exports() {
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../../deploy/grafana/wafer.json")).expect("dashboard is JSON");
        let exported = Metrics::default().render();
        let mut checked = 0;
        for panel in dashboard["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                let expr = target["expr"].as_str().expect("expr");
                for name in metric_names(expr) {
                    let family = format!("# TYPE {name} ");
                    assert!(exported.contains(&family), "panel {} queries {name}, not exported", panel["title"]);
                    checked += 1;
                }
            }
        }
        assert!(checked >= 14, "only {checked} metric references found");
        assert_eq!(metric_names("rate(wafer_x_bucket{a=\"b\"}[1m]) + process_y"), ["wafer_x", "process_y"]);
    }
}
