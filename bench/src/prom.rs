//! Reading Wafer's `/metrics` (Prometheus text): counters and histogram quantiles.

/// The value of the series whose name-and-labels part is exactly `series`
/// (e.g. `wafer_events_total{tenant="bench",view="txn",outcome="ok"}`).
pub fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Cumulative bucket counts `(le, count)` of one histogram series, `+Inf` last; `labels` are the
/// series' labels before `le` (e.g. `tenant="bench",view="fresh"`).
pub fn buckets(text: &str, name: &str, labels: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{{labels},le=\"");
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// Bucket counts observed between two scrapes.
pub fn diff(after: &[(f64, f64)], before: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after.iter().map(|(le, c)| (*le, c - before.iter().find(|(b, _)| b == le).map_or(0.0, |(_, c)| *c))).collect()
}

/// `histogram_quantile` as Prometheus computes it: linear interpolation inside the bucket.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
    let Some(&(_, total)) = buckets.last() else { return f64::NAN };
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let (mut lo, mut below) = (0.0, 0.0);
    for &(le, c) in buckets {
        if c >= rank {
            if le.is_infinite() {
                return lo;
            }
            return lo + (le - lo) * (rank - below) / (c - below).max(f64::MIN_POSITIVE);
        }
        (lo, below) = (le, c);
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "wafer_events_total{tenant=\"b\",view=\"t\",outcome=\"ok\"} 42\n\
        wafer_events_total{tenant=\"b\",view=\"t\",outcome=\"ok2\"} 7\n\
        h_bucket{tenant=\"b\",view=\"t\",le=\"0.001\"} 10\n\
        h_bucket{tenant=\"b\",view=\"t\",le=\"0.002\"} 90\n\
        h_bucket{tenant=\"b\",view=\"t\",le=\"+Inf\"} 100\n\
        h_bucket{view=\"x\",le=\"0.001\"} 5\n";

    #[test]
    fn reads_exact_series_and_interpolates_quantiles() {
        assert_eq!(value(TEXT, "wafer_events_total{tenant=\"b\",view=\"t\",outcome=\"ok\"}"), Some(42.0));
        assert_eq!(value(TEXT, "wafer_events_total{tenant=\"b\",view=\"t\",outcome=\"missing\"}"), None);
        let b = buckets(TEXT, "h", "tenant=\"b\",view=\"t\"");
        assert_eq!(b, vec![(0.001, 10.0), (0.002, 90.0), (f64::INFINITY, 100.0)]);
        assert!((quantile(0.5, &b) - 0.0015).abs() < 1e-12);
        assert_eq!(quantile(0.99, &b), 0.002);
        let d = diff(&b, &[(0.001, 10.0), (0.002, 10.0), (f64::INFINITY, 10.0)]);
        assert_eq!(d, vec![(0.001, 0.0), (0.002, 80.0), (f64::INFINITY, 90.0)]);
    }
}
