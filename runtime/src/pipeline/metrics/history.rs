//! **A short history of each view's health**, kept in memory so the console can chart the last
//! minutes without a Prometheus: every [`SAMPLE_INTERVAL`] the node samples its own counters and
//! histograms ([`super::Metrics::sample_history`]) and keeps, per view, one [`Point`] per
//! interval for the last [`HISTORY_LEN`] intervals (10 minutes).
//!
//! Only the rates and quantiles of each interval are kept (about 40 bytes per view and
//! interval), plus one raw snapshot per view to diff the next sample against: 1,000 views cost
//! about 5 MB. A Prometheus scraping `/metrics` keeps the long history (see `deploy/grafana`).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

/// How often the node samples its metrics into the history.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// Intervals kept per view (10 minutes at [`SAMPLE_INTERVAL`]).
pub const HISTORY_LEN: usize = 120;

/// One view's health over one interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// When the interval ended (ms since the epoch).
    pub at_ms: i64,
    /// Events processed per second (`ok` outcomes).
    pub events_per_s: f64,
    /// Events that failed per second (every other outcome: bad input, traps, quota refusals…).
    pub errors_per_s: f64,
    /// Median produce → readable time of the interval's events (ms); `None` without events from
    /// a source that stamps produce times (Kafka).
    pub freshness_p50_ms: Option<f64>,
    /// 99th percentile of the same (ms).
    pub freshness_p99_ms: Option<f64>,
    /// 99th percentile of produce → received by the consumer (ms): the broker's share.
    pub source_lag_p99_ms: Option<f64>,
}

/// What a view's counters and histograms held at the last sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Raw {
    /// Events with outcome `ok`.
    pub ok: u64,
    /// Events with any other outcome.
    pub errors: u64,
    /// Freshness histogram: per-bucket (not cumulative) counts, then the count past the last
    /// bucket.
    pub freshness: Vec<u64>,
    /// Source-lag histogram, the same way.
    pub source_lag: Vec<u64>,
}

#[derive(Default)]
struct Inner {
    last_at_ms: Option<i64>,
    last: BTreeMap<String, Raw>,
    series: BTreeMap<String, VecDeque<Point>>,
}

/// The history of every view (see the module doc).
#[derive(Default)]
pub struct History {
    inner: Mutex<Inner>,
}

impl History {
    /// Record a sample taken at `at_ms`: one [`Point`] per view, from the difference with the
    /// previous sample. The first sample only sets the baseline. `bounds` are the bucket upper
    /// bounds (seconds) the freshness and source-lag histograms share.
    pub fn record(&self, at_ms: i64, now: BTreeMap<String, Raw>, bounds: &[f64]) {
        let mut inner = self.inner.lock();
        let Some(last_at) = inner.last_at_ms.filter(|last| *last < at_ms) else {
            inner.last_at_ms = Some(at_ms);
            inner.last = now;
            return;
        };
        let secs = (at_ms - last_at) as f64 / 1000.0;
        let empty = Raw::default();
        let mut points = Vec::with_capacity(now.len());
        for (view, raw) in &now {
            let before = inner.last.get(view).unwrap_or(&empty);
            let freshness = delta(&raw.freshness, &before.freshness);
            let lag = delta(&raw.source_lag, &before.source_lag);
            points.push((
                view.clone(),
                Point {
                    at_ms,
                    events_per_s: raw.ok.saturating_sub(before.ok) as f64 / secs,
                    errors_per_s: raw.errors.saturating_sub(before.errors) as f64 / secs,
                    freshness_p50_ms: quantile(&freshness, bounds, 0.5).map(to_ms),
                    freshness_p99_ms: quantile(&freshness, bounds, 0.99).map(to_ms),
                    source_lag_p99_ms: quantile(&lag, bounds, 0.99).map(to_ms),
                },
            ));
        }
        for (view, point) in points {
            let series = inner.series.entry(view).or_default();
            if series.len() == HISTORY_LEN {
                series.pop_front();
            }
            series.push_back(point);
        }
        inner.last_at_ms = Some(at_ms);
        inner.last = now;
    }

    /// The points of `view`, oldest first (empty before two samples).
    pub fn series(&self, view: &str) -> Vec<Point> {
        self.inner.lock().series.get(view).map(|s| s.iter().copied().collect()).unwrap_or_default()
    }
}

fn to_ms(seconds: f64) -> f64 {
    seconds * 1000.0
}

/// `now - before`, bucket by bucket (a bucket `before` lacks counts from 0).
fn delta(now: &[u64], before: &[u64]) -> Vec<u64> {
    now.iter().enumerate().map(|(i, n)| n.saturating_sub(before.get(i).copied().unwrap_or(0))).collect()
}

/// The `q` quantile of a histogram's per-bucket counts (the last count is past the last bound),
/// interpolated linearly inside its bucket as Prometheus' `histogram_quantile` does; a quantile
/// past the last bound is that bound. `None` when the histogram is empty.
pub fn quantile(counts: &[u64], bounds: &[f64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0u64;
    for (i, c) in counts.iter().enumerate() {
        let Some(upper) = bounds.get(i).copied() else { break };
        if *c > 0 && (seen + c) as f64 >= rank {
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            let into = (rank - seen as f64) / *c as f64;
            return Some(lower + (upper - lower) * into.clamp(0.0, 1.0));
        }
        seen += c;
    }
    bounds.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: &[f64] = &[0.001, 0.01, 0.1];

    fn raw(ok: u64, errors: u64, freshness: [u64; 4]) -> Raw {
        Raw { ok, errors, freshness: freshness.to_vec(), source_lag: vec![0; 4] }
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket_and_stop_at_the_last_bound() {
        // 10 values in (0.001, 0.01]: the median is half way through that bucket.
        let median = quantile(&[0, 10, 0, 0], BOUNDS, 0.5).unwrap();
        assert!((median - 0.0055).abs() < 1e-12, "{median}");
        // 99 fast, 1 past every bound: p99 is still in the first bucket, p100 the last bound.
        assert_eq!(quantile(&[99, 0, 0, 1], BOUNDS, 0.99), Some(0.001));
        assert_eq!(quantile(&[99, 0, 0, 1], BOUNDS, 1.0), Some(0.1));
        assert_eq!(quantile(&[0, 0, 0, 0], BOUNDS, 0.5), None);
    }

    #[test]
    fn each_point_is_the_rate_and_quantiles_of_its_own_interval() {
        let h = History::default();
        let view = || "acme/txn".to_string();
        h.record(10_000, BTreeMap::from([(view(), raw(100, 0, [100, 0, 0, 0]))]), BOUNDS);
        assert!(h.series("acme/txn").is_empty(), "the first sample is only a baseline");
        // 5 s later: 500 more ok, 10 failed, and this interval's freshness is all in (0.01, 0.1].
        h.record(15_000, BTreeMap::from([(view(), raw(600, 10, [100, 0, 50, 0]))]), BOUNDS);
        let s = h.series("acme/txn");
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].at_ms, s[0].events_per_s, s[0].errors_per_s), (15_000, 100.0, 2.0));
        let p50 = s[0].freshness_p50_ms.unwrap();
        assert!((p50 - 55.0).abs() < 1e-9, "{p50}");
        assert_eq!(s[0].source_lag_p99_ms, None);
        // A quiet interval: zero rates, no quantiles.
        h.record(20_000, BTreeMap::from([(view(), raw(600, 10, [100, 0, 50, 0]))]), BOUNDS);
        let quiet = h.series("acme/txn")[1];
        assert_eq!((quiet.events_per_s, quiet.freshness_p99_ms), (0.0, None));
    }

    #[test]
    fn the_history_keeps_only_the_last_intervals() {
        let h = History::default();
        for i in 0..(HISTORY_LEN as u64 + 10) {
            h.record(i as i64 * 5_000, BTreeMap::from([("a/v".to_string(), raw(i * 5, 0, [0; 4]))]), BOUNDS);
        }
        let s = h.series("a/v");
        assert_eq!(s.len(), HISTORY_LEN);
        assert_eq!(s.last().map(|p| p.at_ms), Some((HISTORY_LEN as i64 + 9) * 5_000));
        assert!(s.iter().all(|p| p.events_per_s == 1.0));
        // A clock that went back is a new baseline, not a negative interval.
        h.record(0, BTreeMap::new(), BOUNDS);
        assert_eq!(h.series("a/v").len(), HISTORY_LEN);
    }
}
