//! Aggregations are exact against a ground truth computed independently from the raw events, for
//! every function and window, with events arriving out of order, on both stores (approximate
//! functions within their stated error: HLL 5%, variances 1e-9 relative to a two-pass
//! computation, percentiles 1% of the exact value at the rank).

use std::collections::{BTreeMap, HashSet};

use wafer_runtime::aggregate::fold::{FoldPlan, fold};
use wafer_runtime::aggregate::read::{compute, fields_for, latest};
use wafer_runtime::aggregate::window::retention;
use wafer_runtime::aggregate::{AggFunction, AggSpec, Window};
use wafer_runtime::store::embedded::EmbeddedStore;
use wafer_runtime::store::redis::RedisStore;
use wafer_runtime::store::{Applied, OnlineStore, SourceMark, WriteBatch};
use wafer_runtime::{Feature, FeatureRow, Value, ValueType};

use crate::support::{RedisServer, Rng};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

#[derive(Clone, Debug)]
struct Ev {
    user: String,
    t: i64,
    cents: i64,
    country: String,
}

fn specs() -> Vec<AggSpec> {
    let w = |s: &[&str]| s.iter().map(|x| Window::parse(x).unwrap()).collect::<Vec<_>>();
    let all = w(&["1m", "5m", "1h", "24h", "7d", "lifetime", "5m_offset_2m", "24h_offset_1h", "7d_offset_1d"]);
    let mut v: Vec<AggSpec> = [
        AggFunction::Count,
        AggFunction::Sum,
        AggFunction::Mean,
        AggFunction::Min,
        AggFunction::Max,
        AggFunction::VarPop,
        AggFunction::VarSamp,
        AggFunction::StddevPop,
        AggFunction::StddevSamp,
        AggFunction::ApproxPercentile(5000),
        AggFunction::ApproxPercentile(9900),
    ]
    .into_iter()
    .map(|f| AggSpec { column: "amount".into(), function: f, windows: all.clone() })
    .collect();
    // An aggregation with its own tile size (`tile = "5m"`).
    let five = |ws: &[&str]| ws.iter().map(|x| Window::parse_with_tile(x, Some(5 * MIN)).unwrap()).collect::<Vec<_>>();
    for f in [AggFunction::Count, AggFunction::Max, AggFunction::StddevPop] {
        v.push(AggSpec { column: "amount".into(), function: f, windows: five(&["1h", "24h", "30m_offset_10m"]) });
    }
    // Aggregations with roll-ups (`rollup = "10m"` over minute tiles, `6h` over hour tiles): the
    // same values from fewer tiles, for every kind of merge.
    let rolled = |ws: &[&str], big: i64| {
        ws.iter().map(|x| Window::parse_with_tiles(x, None, Some(big)).unwrap()).collect::<Vec<_>>()
    };
    for f in [
        AggFunction::Sum,
        AggFunction::Min,
        AggFunction::VarSamp,
        AggFunction::ApproxPercentile(9000),
        AggFunction::DecayedSum(HOUR),
    ] {
        v.push(AggSpec { column: "amount".into(), function: f, windows: rolled(&["2h", "1h_offset_20m"], 10 * MIN) });
    }
    v.push(AggSpec { column: "amount".into(), function: AggFunction::Count, windows: rolled(&["2d"], 6 * HOUR) });
    for f in [AggFunction::LastN(3), AggFunction::FirstN(3), AggFunction::ApproxCountDistinct] {
        v.push(AggSpec { column: "country".into(), function: f, windows: rolled(&["2h", "90m_offset_10m"], 10 * MIN) });
    }
    v.push(AggSpec {
        column: "amount".into(),
        function: AggFunction::DecayedSum(HOUR),
        windows: w(&["5m", "1h", "24h", "24h_offset_1h"]),
    });
    v.push(AggSpec {
        column: "country".into(),
        function: AggFunction::DecayedCount(10 * MIN),
        windows: w(&["1h", "24h"]),
    });
    v.push(AggSpec {
        column: "country".into(),
        function: AggFunction::FirstN(3),
        windows: w(&["1h", "7d", "lifetime"]),
    });
    v.push(AggSpec {
        column: "country".into(),
        function: AggFunction::LastN(3),
        windows: w(&["1h", "7d", "lifetime"]),
    });
    v.push(AggSpec {
        column: "country".into(),
        function: AggFunction::ApproxCountDistinct,
        windows: w(&["24h", "lifetime"]),
    });
    // Exact distinct counts: a cap that short windows stay under and long ones reach (12
    // countries), one no window reaches, and one over a numeric column.
    let mut capped = w(&["1m", "1h", "24h", "lifetime", "24h_offset_1h"]);
    capped.extend(rolled(&["2h"], 10 * MIN));
    v.push(AggSpec { column: "country".into(), function: AggFunction::CountDistinct(5), windows: capped });
    v.push(AggSpec {
        column: "country".into(),
        function: AggFunction::CountDistinct(1000),
        windows: w(&["1h", "7d", "lifetime"]),
    });
    v.push(AggSpec { column: "amount".into(), function: AggFunction::CountDistinct(20), windows: w(&["5m", "1h"]) });
    v
}

/// The documented semantics, implemented independently: tile size g(W) is 1m for W ≤ 2h, 1h for
/// W ≤ 2d, else 1d; a read at t covers floor(t/g)·g + g − W ≤ e ≤ t.
///
/// An offset window `len_offset_o` covers the complete tiles of `[end − len, end)` with
/// `end = floor(t/g)·g + g − o` (`o = 0`: the plain window, up to `t`).
fn in_window(w: Window, t: i64, e: i64) -> bool {
    match w {
        Window::Lifetime => e <= t,
        // Roll-ups change which tiles are read, never which rows count.
        Window::Sliding { len, offset, tile, rollup: _ } => {
            let default = if len <= 2 * HOUR {
                MIN
            } else if len <= 2 * DAY {
                HOUR
            } else {
                DAY
            };
            // Windows of this test use the default tiles unless they chose 5-minute ones.
            assert!(tile == default || tile == 5 * MIN, "{w:?}");
            let end = t.div_euclid(tile) * tile + tile - offset;
            end - len <= e && e < end && e <= t
        }
    }
}

fn truth(spec: &AggSpec, w: Window, t: i64, evs: &[&Ev]) -> Value {
    let sel: Vec<&&Ev> = evs.iter().filter(|e| in_window(w, t, e.t)).collect();
    let amounts: Vec<i64> = sel.iter().map(|e| e.cents).collect();
    match spec.function {
        AggFunction::Count => Value::Int64(sel.len() as i64),
        AggFunction::Sum => Value::Float64(amounts.iter().sum::<i64>() as f64 / 100.0),
        AggFunction::Mean if sel.is_empty() => Value::Null,
        AggFunction::Mean => Value::Float64(amounts.iter().sum::<i64>() as f64 / 100.0 / sel.len() as f64),
        AggFunction::Min => amounts.iter().min().map_or(Value::Null, |c| Value::Float64(*c as f64 / 100.0)),
        AggFunction::Max => amounts.iter().max().map_or(Value::Null, |c| Value::Float64(*c as f64 / 100.0)),
        AggFunction::LastN(k) => distinct_countries(&sel, k, true),
        AggFunction::FirstN(k) => distinct_countries(&sel, k, false),
        AggFunction::ApproxCountDistinct => {
            Value::Int64(sel.iter().map(|e| e.country.as_str()).collect::<HashSet<_>>().len() as i64)
        }
        AggFunction::CountDistinct(k) => {
            let distinct = if spec.column == "amount" {
                sel.iter().map(|e| e.cents).collect::<HashSet<_>>().len()
            } else {
                sel.iter().map(|e| e.country.as_str()).collect::<HashSet<_>>().len()
            };
            Value::Int64(distinct.min(usize::from(k)) as i64)
        }
        AggFunction::VarPop | AggFunction::VarSamp | AggFunction::StddevPop | AggFunction::StddevSamp => {
            // Two passes in f64: the mean, then the squared deviations.
            let sample = matches!(spec.function, AggFunction::VarSamp | AggFunction::StddevSamp);
            let n = amounts.len();
            if n == 0 || (sample && n < 2) {
                return Value::Null;
            }
            let xs: Vec<f64> = amounts.iter().map(|c| *c as f64 / 100.0).collect();
            let mean = xs.iter().sum::<f64>() / n as f64;
            let ss: f64 = xs.iter().map(|x| (x - mean) * (x - mean)).sum();
            let var = ss / if sample { n - 1 } else { n } as f64;
            let stddev = matches!(spec.function, AggFunction::StddevPop | AggFunction::StddevSamp);
            Value::Float64(if stddev { var.sqrt() } else { var })
        }
        AggFunction::DecayedCount(h) => Value::Float64(sel.iter().map(|e| decay_weight(t, e.t, h)).sum()),
        AggFunction::DecayedSum(h) => {
            Value::Float64(sel.iter().map(|e| e.cents as f64 / 100.0 * decay_weight(t, e.t, h)).sum())
        }
        AggFunction::ApproxPercentile(p) => {
            // The exact value of rank ⌊q·(n − 1)⌋ in ascending order.
            let mut sorted = amounts.clone();
            sorted.sort_unstable();
            if sorted.is_empty() {
                return Value::Null;
            }
            let rank = (f64::from(p) / 1e4 * (sorted.len() - 1) as f64).floor() as usize;
            Value::Float64(sorted[rank] as f64 / 100.0)
        }
    }
}

/// `2^(−(t − e)/h)`, with the platform's `powf`.
fn decay_weight(t: i64, e: i64, h: i64) -> f64 {
    2f64.powf(-((t - e) as f64) / h as f64)
}

/// The error a decayed function may have: `2⁻³³` of each row's weighted magnitude (the 48-bit
/// weights), plus rounding; `Σ |x|·w` over the window.
fn decay_tolerance(spec: &AggSpec, w: Window, t: i64, evs: &[&Ev]) -> f64 {
    let h = match spec.function {
        AggFunction::DecayedCount(h) | AggFunction::DecayedSum(h) => h,
        _ => return 0.0,
    };
    let magnitude = |e: &Ev| if spec.column == "amount" { (e.cents as f64 / 100.0).abs() } else { 1.0 };
    let scale: f64 = evs.iter().filter(|e| in_window(w, t, e.t)).map(|e| magnitude(e) * decay_weight(t, e.t, h)).sum();
    scale * 1e-9 + 1e-12
}

/// The `k` distinct countries of `sel`, each at its latest (or earliest) time, most recent (or
/// earliest) first; ties by value descending.
fn distinct_countries(sel: &[&&Ev], k: u16, latest: bool) -> Value {
    let mut at: BTreeMap<&str, i64> = BTreeMap::new();
    for e in sel {
        let x = at.entry(e.country.as_str()).or_insert(e.t);
        *x = if latest { (*x).max(e.t) } else { (*x).min(e.t) };
    }
    let mut v: Vec<(i64, &str)> = at.into_iter().map(|(c, t)| (t, c)).collect();
    v.sort_by(|a, b| if latest { b.0.cmp(&a.0) } else { a.0.cmp(&b.0) }.then(b.1.cmp(a.1)));
    Value::Texts(v.into_iter().take(k as usize).map(|(_, c)| c.to_string()).collect())
}

/// Whether `got` is `want` within the function's stated error (exact for the exact functions;
/// `absolute` is the decayed functions' bound).
fn agrees(function: AggFunction, got: &Value, want: &Value, absolute: f64) -> bool {
    if let (AggFunction::DecayedCount(_) | AggFunction::DecayedSum(_), Value::Float64(g), Value::Float64(w)) =
        (function, got, want)
    {
        return (g - w).abs() <= absolute;
    }
    let relative = match function {
        AggFunction::VarPop | AggFunction::VarSamp | AggFunction::StddevPop | AggFunction::StddevSamp => 1e-9,
        AggFunction::ApproxPercentile(_) => wafer_runtime::aggregate::quantile::ALPHA * (1.0 + 1e-12),
        AggFunction::ApproxCountDistinct => 0.05,
        _ => return got == want,
    };
    match (got, want) {
        (Value::Float64(g), Value::Float64(w)) => (g - w).abs() <= relative * w.abs() + 1e-12,
        (Value::Int64(g), Value::Int64(w)) => (*g - *w).abs() as f64 <= (*w as f64 * relative).max(1.0),
        _ => got == want,
    }
}

fn row(e: &Ev) -> FeatureRow {
    FeatureRow {
        entity_key: e.user.clone(),
        event_time_ms: e.t,
        features: vec![
            Feature { name: "amount".into(), value: Value::Float64(e.cents as f64 / 100.0) },
            Feature { name: "country".into(), value: Value::Text(e.country.clone()) },
        ],
    }
}

fn events(seed: u64, n: usize) -> Vec<Ev> {
    let mut r = Rng(seed);
    let base = 1_700_000_000_000i64;
    let countries = ["DE", "FR", "US", "GB", "ES", "IT", "NL", "PL", "SE", "JP", "BR", "IN"];
    let mut evs: Vec<Ev> = (0..n)
        .map(|_| Ev {
            user: format!("u{}", r.below(5)),
            // Spread over 9 days, with clusters inside minutes and exact tile boundaries.
            t: match r.below(3) {
                0 => base + (r.below(9 * DAY as u64) as i64 / MIN) * MIN,
                _ => base + r.below(9 * DAY as u64) as i64,
            },
            cents: r.below(100_000) as i64 - 10_000,
            country: countries[r.below(countries.len() as u64) as usize].to_string(),
        })
        .collect();
    // Some events exactly on tile boundaries.
    for (i, e) in evs.iter_mut().enumerate().take(n / 10) {
        e.t = base + (i as i64 % 200) * HOUR;
    }
    evs.sort_by_key(|e| e.t);
    evs
}

pub(crate) async fn scenario(store: &dyn OnlineStore, view: &str) {
    let specs = specs();
    let plan = FoldPlan::new(vec!["country".into()], &specs);
    let all_windows: Vec<Window> = specs.iter().flat_map(|s| s.windows.iter().copied()).collect();
    let ret: Vec<(i64, i64)> = wafer_runtime::aggregate::window::tile_sizes(all_windows.iter().copied())
        .iter()
        .map(|g| (*g, retention(*g, all_windows.iter().copied())))
        .collect();
    let evs = events(7, 3000);
    let mut rng = Rng(99);
    // Checkpoints: read after applying every event ≤ t (and none later).
    let checkpoints: Vec<i64> = (1..=12).map(|i| evs[i * evs.len() / 12 - 1].t).collect();
    let mut applied = 0usize;
    let mut offset = 0i64;
    // count_distinct(5) reads at the cap and below it (the cap is exercised, not vacuous).
    let (mut at_cap, mut below_cap) = (0, 0);
    for &t in &checkpoints {
        let end = evs.iter().position(|e| e.t > t).unwrap_or(evs.len());
        let mut chunk: Vec<&Ev> = evs[applied..end].iter().collect();
        // Out of order within the chunk (spanning many tiles), in random batch sizes.
        for i in (1..chunk.len()).rev() {
            chunk.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for batch in chunk.chunks(1 + rng.below(97) as usize) {
            let rows: Vec<FeatureRow> = batch.iter().map(|e| row(e)).collect();
            let (ops, errs) = fold(&plan, &rows);
            assert!(errs.is_empty());
            let mark = SourceMark {
                source: "txns".into(),
                partition: 0,
                first_offset: offset,
                next_offset: offset + batch.len() as i64,
            };
            offset += batch.len() as i64;
            let wb = WriteBatch {
                view,
                mark: Some(mark),
                entities: &ops,
                keep_ms: 30 * DAY,
                retention: &ret,
                idempotency_key: None,
                quota: None,
            };
            assert_eq!(store.apply(&wb).await.unwrap(), Applied::Applied);
        }
        applied = end;
        let seen: Vec<&Ev> = evs[..applied].iter().collect();
        for read_t in [t, t + 1] {
            for user in ["u0", "u1", "u2", "u3", "u4", "nobody"] {
                let (mut fields, mut hlls) = (vec!["f:country".to_string()], vec![]);
                for s in &specs {
                    for w in &s.windows {
                        fields_for(s, *w, read_t, &mut fields, &mut hlls);
                    }
                }
                let rec = store.read(view, &[user], &fields, &hlls).await.unwrap().remove(0);
                let mine: Vec<&Ev> = seen.iter().copied().filter(|e| e.user == user).collect();
                for s in &specs {
                    let col = if s.column == "amount" { ValueType::Float64 } else { ValueType::Text };
                    for w in &s.windows {
                        let got = compute(s, *w, read_t, col, &rec);
                        let want = truth(s, *w, read_t, &mine);
                        if s.function == AggFunction::CountDistinct(5) && !mine.is_empty() {
                            if got == Value::Int64(5) { at_cap += 1 } else { below_cap += 1 }
                        }
                        let tolerance = decay_tolerance(s, *w, read_t, &mine);
                        assert!(
                            agrees(s.function, &got, &want, tolerance),
                            "{} for {user} at t={read_t}: {got:?}, want {want:?}",
                            s.feature_name(*w)
                        );
                    }
                }
                // Latest plain value: the newest event's country (ties: greater value).
                let newest = mine
                    .iter()
                    .max_by(|a, b| a.t.cmp(&b.t).then(format!("{:?}", a.country).cmp(&format!("{:?}", b.country))));
                let got = latest("country", ValueType::Text, &rec);
                assert_eq!(got, newest.map(|e| (e.t, Value::Text(e.country.clone()))), "latest country of {user}");
            }
        }
    }
    assert!(at_cap > 20 && below_cap > 20, "count_distinct(5): {at_cap} reads at the cap, {below_cap} below");
    // A replayed batch (offsets already applied) is refused and changes nothing.
    let rows = vec![row(&evs[0])];
    let (ops, _) = fold(&plan, &rows);
    let mark = SourceMark { source: "txns".into(), partition: 0, first_offset: 5, next_offset: 6 };
    let wb = WriteBatch {
        view,
        mark: Some(mark),
        entities: &ops,
        keep_ms: 30 * DAY,
        retention: &ret,
        idempotency_key: None,
        quota: None,
    };
    assert_eq!(store.apply(&wb).await.unwrap(), Applied::Stale { watermark: offset });
    assert_eq!(store.watermark(view, "txns", 0).await.unwrap(), Some(offset));
    assert_eq!(store.watermark(view, "txns", 1).await.unwrap(), None);
}

#[tokio::test]
async fn embedded_store_aggregates_exactly() {
    scenario(&EmbeddedStore::new(), "t1/txn").await;
}

#[tokio::test]
async fn redis_store_aggregates_exactly() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    scenario(&store, "t1/txn").await;
    // delete_view removes everything of the view.
    store.delete_view("t1/txn").await.unwrap();
    assert_eq!(store.watermark("t1/txn", "txns", 0).await.unwrap(), None);
}

#[tokio::test]
async fn records_expire_after_keep_ms_on_both_stores() {
    let redis = RedisServer::start();
    let r = RedisStore::connect(&redis.url()).await.unwrap();
    let e = EmbeddedStore::new();
    let plan = FoldPlan::new(vec!["country".into()], &[]);
    let ev = Ev { user: "u1".into(), t: 1, cents: 1, country: "DE".into() };
    let (ops, _) = fold(&plan, &[row(&ev)]);
    for store in [&r as &dyn OnlineStore, &e] {
        let wb = unmarked("t/ttl", &ops, 300);
        store.apply(&wb).await.unwrap();
        let f = ["f:country".to_string()];
        assert!(!store.read("t/ttl", &["u1"], &f, &[]).await.unwrap()[0].is_empty());
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        assert!(store.read("t/ttl", &["u1"], &f, &[]).await.unwrap()[0].is_empty(), "expired");
    }
}

/// Issue 19: a tile's sketch is stored sparse (1 + 3 bytes per register) until it holds more than
/// `hll::SPARSE_MAX` registers, then dense; Redis's script and the embedded store write the same
/// bytes at every step, and the estimate reads the same from either form.
#[tokio::test]
async fn distinct_count_sketches_are_sparse_while_small_and_identical_on_both_stores() {
    use wafer_runtime::aggregate::hll::{REGISTERS, SPARSE_MAX, SPARSE_TAG, estimate, merge_into};
    use wafer_runtime::aggregate::ops::{EntityOps, TileOp};
    use wafer_runtime::aggregate::read::FieldSource;

    let redis = RedisServer::start();
    let r = RedisStore::connect(&redis.url()).await.unwrap();
    let e = EmbeddedStore::new();
    let field = "t:60000:0:country:h".to_string();
    let mut rng = Rng(19);
    let mut regs_set = HashSet::new();
    let mut step = 0;
    while regs_set.len() <= SPARSE_MAX + 50 {
        let registers: Vec<(u16, u8)> =
            (0..1 + rng.below(40)).map(|_| (rng.below(REGISTERS as u64) as u16, 1 + rng.below(20) as u8)).collect();
        regs_set.extend(registers.iter().map(|(i, _)| *i));
        let ops = vec![EntityOps { entity: "u1".into(), ops: vec![TileOp::Hll { field: field.clone(), registers }] }];
        let mut stored = Vec::new();
        for store in [&r as &dyn OnlineStore, &e] {
            let wb = unmarked("t/hll", &ops, DAY);
            store.apply(&wb).await.unwrap();
            let rec = store.read("t/hll", &["u1"], &[], std::slice::from_ref(&field)).await.unwrap().remove(0);
            stored.push(rec.hll(&field).unwrap().to_vec());
        }
        assert_eq!(stored[0], stored[1], "step {step}: Redis and embedded bytes differ");
        let s = &stored[0];
        if regs_set.len() <= SPARSE_MAX {
            assert_eq!((s[0], s.len()), (SPARSE_TAG, 1 + 3 * regs_set.len()), "step {step}: sparse");
        } else {
            assert_eq!(s.len(), REGISTERS, "step {step}: dense past {SPARSE_MAX} registers");
        }
        let mut dense = Vec::new();
        merge_into(&mut dense, s);
        assert_eq!(dense.iter().filter(|b| **b > 0).count(), regs_set.len());
        assert!(estimate(&dense) > 0.0);
        step += 1;
    }
}

/// Issue 18: variances (exact integer power sums) and percentiles (integer bucket counts) merge to
/// the same state in any order, so two stores fed the same events in different batches and
/// orders serve the same bits, and store the same bytes.
#[tokio::test]
async fn every_function_gives_the_same_bits_on_both_stores_whatever_the_batching() {
    let redis = RedisServer::start();
    let r = RedisStore::connect(&redis.url()).await.unwrap();
    let e = EmbeddedStore::new();
    let specs = specs();
    let plan = FoldPlan::new(vec!["country".into()], &specs);
    let evs = events(18, 1500);
    let t = evs.last().unwrap().t;
    for (seed, store) in [(1u64, &r as &dyn OnlineStore), (2, &e)] {
        let mut order: Vec<&Ev> = evs.iter().collect();
        let mut rng = Rng(seed);
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for batch in order.chunks(1 + rng.below(150) as usize) {
            let rows: Vec<FeatureRow> = batch.iter().map(|e| row(e)).collect();
            let (ops, _) = fold(&plan, &rows);
            let wb = unmarked("t/bits", &ops, 30 * DAY);
            store.apply(&wb).await.unwrap();
        }
    }
    for user in ["u0", "u1", "u2", "u3", "u4"] {
        let (mut fields, mut hlls) = (vec![], vec![]);
        for s in &specs {
            for w in &s.windows {
                fields_for(s, *w, t, &mut fields, &mut hlls);
            }
        }
        let on_redis = r.read("t/bits", &[user], &fields, &hlls).await.unwrap().remove(0);
        let embedded = e.read("t/bits", &[user], &fields, &hlls).await.unwrap().remove(0);
        use wafer_runtime::aggregate::read::FieldSource;
        // Order-independent stored state: square sums, sketches, count_distinct's value sets.
        let order_free = |f: &str| f.ends_with(":q") || f.ends_with(":d") || f.contains(":c5") || f.ends_with(":c20");
        for f in fields.iter().filter(|f| order_free(f)) {
            assert_eq!(on_redis.field(f), embedded.field(f), "stored {f} of {user}");
        }
        for s in &specs {
            let col = if s.column == "amount" { ValueType::Float64 } else { ValueType::Text };
            for w in &s.windows {
                let (a, b) = (compute(s, *w, t, col, &on_redis), compute(s, *w, t, col, &embedded));
                let bits = |v: &Value| match v {
                    Value::Float64(x) => format!("{:016x}", x.to_bits()),
                    other => format!("{other:?}"),
                };
                assert_eq!(bits(&a), bits(&b), "{} of {user}: {a:?} vs {b:?}", s.feature_name(*w));
            }
        }
    }
}

/// The square sums of `var_*`/`stddev_*` are decimal integers of any length: Redis's script
/// (7-digit groups in Lua) and the embedded store add them to the same exact digits, past u128.
#[tokio::test]
async fn square_sums_add_exactly_past_u128_on_both_stores() {
    use wafer_runtime::aggregate::ops::{EntityOps, TileOp};
    use wafer_runtime::aggregate::read::FieldSource;

    let redis = RedisServer::start();
    let r = RedisStore::connect(&redis.url()).await.unwrap();
    let e = EmbeddedStore::new();
    let field = "t:0:0:amount:q".to_string();
    let deltas = [
        "0",
        "9999999",
        "1",
        "340282366920938463463374607431768211455",
        "99999999999999",
        "12345678901234567890123456789012345678901234567890",
    ];
    let want = deltas.iter().fold("0".to_string(), |acc, d| schoolbook_add(&acc, d));
    assert_eq!(want, "12345678901574850257044395252475720386333012779344");
    for store in [&r as &dyn OnlineStore, &e] {
        for d in deltas {
            let ops = vec![EntityOps {
                entity: "u1".into(),
                ops: vec![TileOp::AddDecimal { field: field.clone(), delta: d.into() }],
            }];
            let wb = unmarked("t/q", &ops, DAY);
            store.apply(&wb).await.unwrap();
        }
        let rec = store.read("t/q", &["u1"], std::slice::from_ref(&field), &[]).await.unwrap().remove(0);
        assert_eq!(rec.field(&field), Some(want.as_str()));
    }
}

/// A write of `entities` with no source mark, idempotency key, retention or quota.
fn unmarked<'a>(
    view: &'a str,
    entities: &'a [wafer_runtime::aggregate::ops::EntityOps],
    keep_ms: i64,
) -> WriteBatch<'a> {
    WriteBatch { view, mark: None, entities, keep_ms, retention: &[], idempotency_key: None, quota: None }
}

/// Digit-by-digit decimal addition (the test's own, independent of the stores').
fn schoolbook_add(a: &str, b: &str) -> String {
    let (a, b): (Vec<u8>, Vec<u8>) = (a.bytes().rev().collect(), b.bytes().rev().collect());
    let mut out = Vec::new();
    let mut carry = 0;
    for i in 0..a.len().max(b.len()) {
        let digit = |v: &Vec<u8>| v.get(i).map_or(0, |c| c - b'0');
        let s = digit(&a) + digit(&b) + carry;
        out.push(b'0' + s % 10);
        carry = s / 10;
    }
    if carry > 0 {
        out.push(b'0' + carry);
    }
    out.reverse();
    String::from_utf8(out).unwrap()
}
