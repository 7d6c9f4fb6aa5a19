//! Folding a batch of rows into per-entity tile ops (one op per entity and field per batch).

use std::collections::HashMap;

use super::decay;
use super::decimal::DecimalSum;
use super::hll;
use super::ops::{EntityOps, TileOp, latest_field, latest_wins, merge_first_n, merge_last_n, tile_field};
use super::order::{TieOrder, max_wins, min_wins};
use super::quantile;
use super::spec::{AggFunction, AggSpec};
use super::window::tile_start;
use crate::bindings::types::{FeatureRow, Value};
use crate::transform::json_out::value_to_json;

/// Values ≤ this many micro-units fit an i64 sum.
const MICRO: f64 = 1e6;

/// Why a row's value could not be aggregated (the row's other features still apply).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FoldError {
    #[error("column `{column}`: {value} is outside the summable range (|x| < 9.2e12)")]
    OutOfRange { column: String, value: f64 },
}

/// What a view aggregates and stores, precomputed for folding.
#[derive(Debug, Clone)]
pub struct FoldPlan {
    /// Plain features stored as latest values.
    pub latest: Vec<String>,
    /// Per aggregated column: the components needed at each tile size.
    pub columns: Vec<ColumnPlan>,
}

#[derive(Debug, Clone)]
pub struct ColumnPlan {
    pub column: String,
    /// Tile sizes in ms (0 = lifetime).
    pub tiles: Vec<i64>,
    pub count: bool,
    pub sum: bool,
    /// Sum of squares (variances).
    pub squares: bool,
    pub min: bool,
    pub max: bool,
    pub last_n: Vec<u16>,
    pub first_n: Vec<u16>,
    /// Caps of `count_distinct(k)`.
    pub distinct: Vec<u16>,
    pub hll: bool,
    /// DDSketch buckets (percentiles).
    pub sketch: bool,
    /// Half-lives (ms) of decayed counts and of decayed sums.
    pub decayed_counts: Vec<i64>,
    pub decayed_sums: Vec<i64>,
}

impl FoldPlan {
    pub fn new(latest: Vec<String>, aggs: &[AggSpec]) -> Self {
        let mut columns: Vec<ColumnPlan> = Vec::new();
        for a in aggs {
            let idx = match columns.iter().position(|c| c.column == a.column) {
                Some(i) => i,
                None => {
                    columns.push(ColumnPlan {
                        column: a.column.clone(),
                        tiles: vec![],
                        count: false,
                        sum: false,
                        squares: false,
                        min: false,
                        max: false,
                        last_n: vec![],
                        first_n: vec![],
                        distinct: vec![],
                        hll: false,
                        sketch: false,
                        decayed_counts: vec![],
                        decayed_sums: vec![],
                    });
                    columns.len() - 1
                }
            };
            let c = &mut columns[idx];
            for w in &a.windows {
                for g in [Some(w.tile().unwrap_or(0)), w.rollup()].into_iter().flatten() {
                    push_once(&mut c.tiles, g);
                }
            }
            match a.function {
                AggFunction::Count => c.count = true,
                AggFunction::Sum => c.sum = true,
                AggFunction::Mean => {
                    c.count = true;
                    c.sum = true
                }
                AggFunction::Min => c.min = true,
                AggFunction::Max => c.max = true,
                AggFunction::LastN(k) => push_once(&mut c.last_n, k),
                AggFunction::FirstN(k) => push_once(&mut c.first_n, k),
                AggFunction::CountDistinct(k) => push_once(&mut c.distinct, k),
                AggFunction::ApproxCountDistinct => c.hll = true,
                AggFunction::VarPop | AggFunction::VarSamp | AggFunction::StddevPop | AggFunction::StddevSamp => {
                    c.count = true;
                    c.sum = true;
                    c.squares = true
                }
                AggFunction::ApproxPercentile(_) => c.sketch = true,
                AggFunction::DecayedCount(h) => push_once(&mut c.decayed_counts, h),
                AggFunction::DecayedSum(h) => push_once(&mut c.decayed_sums, h),
            }
        }
        Self { latest, columns }
    }
}

/// Add `x` to a plan's list unless it is there already.
fn push_once<T: PartialEq>(list: &mut Vec<T>, x: T) {
    if !list.contains(&x) {
        list.push(x);
    }
}

/// Which stored field an accumulator feeds (formatted into a field name once, when emitting).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum FieldKey {
    /// Index into `FoldPlan::latest`.
    Latest(usize),
    /// Tile size, tile start, index into `FoldPlan::columns`, component.
    Tile(i64, i64, usize, Comp),
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Comp {
    Count,
    Sum,
    Squares,
    Min,
    Max,
    LastN(u16),
    FirstN(u16),
    /// `count_distinct(k)`: the tile's `k` greatest distinct values.
    Distinct(u16),
    Hll,
    Sketch,
    /// Decay-weighted count, and positive and negative decay-weighted sums, per half-life.
    DecayCount(i64),
    DecayPositive(i64),
    DecayNegative(i64),
}

impl FieldKey {
    fn name(self, plan: &FoldPlan) -> String {
        match self {
            FieldKey::Latest(i) => latest_field(&plan.latest[i]),
            FieldKey::Tile(g, start, c, comp) => {
                let column = &plan.columns[c].column;
                match comp {
                    Comp::Count => tile_field(g, start, column, "n"),
                    Comp::Sum => tile_field(g, start, column, "s"),
                    Comp::Squares => tile_field(g, start, column, "q"),
                    Comp::Min => tile_field(g, start, column, "mn"),
                    Comp::Max => tile_field(g, start, column, "mx"),
                    Comp::LastN(k) => tile_field(g, start, column, &format!("l{k}")),
                    Comp::FirstN(k) => tile_field(g, start, column, &format!("e{k}")),
                    Comp::Distinct(k) => tile_field(g, start, column, &format!("c{k}")),
                    Comp::Hll => tile_field(g, start, column, "h"),
                    Comp::Sketch => tile_field(g, start, column, "d"),
                    Comp::DecayCount(h) => tile_field(g, start, column, &format!("kc{h}")),
                    Comp::DecayPositive(h) => tile_field(g, start, column, &format!("kp{h}")),
                    Comp::DecayNegative(h) => tile_field(g, start, column, &format!("kn{h}")),
                }
            }
        }
    }
}

enum Acc {
    Incr(i64),
    /// A non-negative decimal sum (squares, decay-weighted terms).
    Decimal(DecimalSum),
    Min(f64),
    Max(f64),
    LastN(u16, TieOrder, Vec<(i64, String)>),
    FirstN(u16, TieOrder, Vec<(i64, String)>),
    Hll(HashMap<u16, u8>),
    Buckets(HashMap<i64, i64>),
    Latest(i64, TieOrder, String),
}

/// Numeric value of a row value, in micro-units for sums.
fn micros(column: &str, v: &Value) -> Result<Option<(f64, i64)>, FoldError> {
    match v {
        Value::Int64(i) => match i.checked_mul(1_000_000) {
            Some(m) => Ok(Some((*i as f64, m))),
            None => Err(FoldError::OutOfRange { column: column.into(), value: *i as f64 }),
        },
        Value::Float64(f) if f.is_finite() => {
            let m = (f * MICRO).round();
            if m.abs() >= 9.2e18 {
                return Err(FoldError::OutOfRange { column: column.into(), value: *f });
            }
            Ok(Some((*f, m as i64)))
        }
        _ => Ok(None),
    }
}

/// Text form of a value for `last_n` and HLL (text as-is, everything else as JSON): values are
/// distinct when these texts differ (so `-0.0` and `0.0` are two values).
pub fn value_key(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        other => value_to_json(other).to_string(),
    }
}

/// Fold rows into ops, grouped by entity. Returns the ops and per-row fold errors (row index).
pub fn fold(plan: &FoldPlan, rows: &[FeatureRow]) -> (Vec<EntityOps>, Vec<(usize, FoldError)>) {
    let mut per_entity: HashMap<&str, HashMap<FieldKey, Acc>> = HashMap::new();
    let mut errors = Vec::new();
    for (ri, row) in rows.iter().enumerate() {
        let accs = per_entity.entry(row.entity_key.as_str()).or_default();
        let t = row.event_time_ms;
        let mut add = |key: FieldKey, delta: Delta| match accs.get_mut(&key) {
            None => {
                accs.insert(key, delta.into_acc());
            }
            Some(existing) => merge_delta(existing, delta),
        };
        for f in &row.features {
            if f.value == Value::Null {
                continue;
            }
            if let Some(li) = plan.latest.iter().position(|l| *l == f.name) {
                let order = TieOrder::of_value(&f.value);
                add(FieldKey::Latest(li), Delta::Acc(Acc::Latest(t, order, value_to_json(&f.value).to_string())));
            }
            let Some(ci) = plan.columns.iter().position(|c| c.column == f.name) else { continue };
            let col = &plan.columns[ci];
            let num = match micros(&col.column, &f.value) {
                Ok(n) => n,
                Err(e) => {
                    errors.push((ri, e));
                    continue;
                }
            };
            let key = (col.hll || !col.last_n.is_empty() || !col.first_n.is_empty() || !col.distinct.is_empty())
                .then(|| value_key(&f.value));
            let order = TieOrder::of_value(&f.value);
            let reg = col.hll.then(|| hll::register_of(key.as_deref().unwrap_or_default().as_bytes()));
            for &g in &col.tiles {
                let start = if g == 0 { 0 } else { tile_start(t, g) };
                let tile = |comp| FieldKey::Tile(g, start, ci, comp);
                if col.count {
                    add(tile(Comp::Count), Delta::Acc(Acc::Incr(1)));
                }
                if let Some((x, m)) = num {
                    if col.sum {
                        add(tile(Comp::Sum), Delta::Acc(Acc::Incr(m)));
                    }
                    if col.squares {
                        add(tile(Comp::Squares), Delta::Decimal(DecimalSum::square_of(m)));
                    }
                    if col.sketch {
                        add(tile(Comp::Sketch), Delta::Bucket(quantile::bucket_of(x)));
                    }
                    if col.min {
                        add(tile(Comp::Min), Delta::Acc(Acc::Min(x)));
                    }
                    if col.max {
                        add(tile(Comp::Max), Delta::Acc(Acc::Max(x)));
                    }
                }
                for &k in &col.last_n {
                    add(
                        tile(Comp::LastN(k)),
                        Delta::Acc(Acc::LastN(k, order, vec![(t, key.clone().unwrap_or_default())])),
                    );
                }
                // Decay weighs rows against their tile's end: sliding tiles only.
                if g > 0 {
                    for &h in &col.decayed_counts {
                        let (w, _) = decay::term(1_000_000, t, start, g, h);
                        add(tile(Comp::DecayCount(h)), Delta::Decimal(DecimalSum::of(w)));
                    }
                    if let Some((_, m)) = num {
                        for &h in &col.decayed_sums {
                            let (w, negative) = decay::term(m, t, start, g, h);
                            let comp = if negative { Comp::DecayNegative(h) } else { Comp::DecayPositive(h) };
                            add(tile(comp), Delta::Decimal(DecimalSum::of(w)));
                        }
                    }
                }
                for &k in &col.first_n {
                    add(
                        tile(Comp::FirstN(k)),
                        Delta::Acc(Acc::FirstN(k, order, vec![(t, key.clone().unwrap_or_default())])),
                    );
                }
                // Every item at time 0: `first_n`'s merge then keeps the k greatest distinct
                // values, whatever the order rows arrive in.
                for &k in &col.distinct {
                    add(
                        tile(Comp::Distinct(k)),
                        Delta::Acc(Acc::FirstN(k, order, vec![(0, key.clone().unwrap_or_default())])),
                    );
                }
                if let Some((idx, rank)) = reg {
                    add(tile(Comp::Hll), Delta::Register(idx, rank));
                }
            }
        }
    }
    let mut out: Vec<EntityOps> = per_entity
        .into_iter()
        .map(|(entity, accs)| {
            let mut ops: Vec<TileOp> = accs.into_iter().map(|(key, acc)| to_op(key.name(plan), acc)).collect();
            ops.sort_by(|a, b| a.field().cmp(b.field()));
            EntityOps { entity: entity.to_string(), ops }
        })
        .collect();
    out.sort_by(|a, b| a.entity.cmp(&b.entity));
    (out, errors)
}

/// One row's contribution to an accumulator: a whole [`Acc`], or for the sketches and decimal
/// sums the one bucket, register or term, so a row adds to an existing accumulator without
/// allocating.
enum Delta {
    Acc(Acc),
    Bucket(i64),
    Register(u16, u8),
    Decimal(DecimalSum),
}

impl Delta {
    fn into_acc(self) -> Acc {
        match self {
            Delta::Acc(acc) => acc,
            Delta::Bucket(b) => Acc::Buckets(HashMap::from([(b, 1)])),
            Delta::Register(idx, rank) => Acc::Hll(HashMap::from([(idx, rank)])),
            Delta::Decimal(sum) => Acc::Decimal(sum),
        }
    }
}

fn merge_delta(existing: &mut Acc, delta: Delta) {
    match (existing, delta) {
        (Acc::Buckets(m), Delta::Bucket(b)) => *m.entry(b).or_insert(0) += 1,
        (Acc::Hll(m), Delta::Register(idx, rank)) => {
            let r = m.entry(idx).or_insert(0);
            *r = (*r).max(rank);
        }
        (Acc::Decimal(a), Delta::Decimal(b)) => a.add(&b),
        (existing, delta) => merge_acc(existing, delta.into_acc()),
    }
}

fn merge_acc(existing: &mut Acc, new: Acc) {
    match (existing, new) {
        (Acc::Incr(a), Acc::Incr(b)) => *a += b,
        (Acc::Decimal(a), Acc::Decimal(b)) => a.add(&b),
        (Acc::Min(a), Acc::Min(b)) if min_wins(b, *a) => *a = b,
        (Acc::Max(a), Acc::Max(b)) if max_wins(b, *a) => *a = b,
        (Acc::LastN(k, order, a), Acc::LastN(_, _, b)) => merge_last_n(a, &b, *k as usize, *order),
        (Acc::FirstN(k, order, a), Acc::FirstN(_, _, b)) => merge_first_n(a, &b, *k as usize, *order),
        (Acc::Buckets(a), Acc::Buckets(b)) => {
            for (key, c) in b {
                *a.entry(key).or_insert(0) += c;
            }
        }
        (Acc::Latest(ot, order, ov), Acc::Latest(t, _, v)) if latest_wins(*order, t, &v, *ot, ov) => {
            *ot = t;
            *ov = v;
        }
        (Acc::Hll(a), Acc::Hll(b)) => {
            for (i, r) in b {
                let e = a.entry(i).or_insert(0);
                *e = (*e).max(r);
            }
        }
        _ => {}
    }
}

fn to_op(field: String, acc: Acc) -> TileOp {
    match acc {
        Acc::Incr(delta) => TileOp::Incr { field, delta },
        Acc::Decimal(sum) => TileOp::AddDecimal { field, delta: sum.to_decimal() },
        Acc::Min(value) => TileOp::Min { field, value },
        Acc::Max(value) => TileOp::Max { field, value },
        Acc::LastN(k, order, items) => TileOp::LastN { field, k, order, items },
        Acc::FirstN(k, order, items) => TileOp::FirstN { field, k, order, items },
        Acc::Buckets(buckets) => {
            let mut counts: Vec<(i64, i64)> = buckets.into_iter().collect();
            counts.sort_unstable();
            TileOp::Buckets { field, counts }
        }
        Acc::Hll(regs) => {
            let mut registers: Vec<(u16, u8)> = regs.into_iter().collect();
            registers.sort_unstable();
            TileOp::Hll { field, registers }
        }
        Acc::Latest(event_time, order, value) => TileOp::Latest { field, event_time, order, value },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Window;
    use crate::bindings::types::Feature;

    fn rows(values: &[Value]) -> Vec<FeatureRow> {
        values
            .iter()
            .map(|v| FeatureRow {
                entity_key: "u".into(),
                event_time_ms: 5,
                features: vec![Feature { name: "x".into(), value: v.clone() }],
            })
            .collect()
    }

    fn plan(functions: &[AggFunction]) -> FoldPlan {
        let aggs: Vec<AggSpec> = functions
            .iter()
            .map(|f| AggSpec { column: "x".into(), function: *f, windows: vec![Window::Lifetime] })
            .collect();
        FoldPlan::new(vec!["x".into()], &aggs)
    }

    fn op<'a>(ops: &'a [EntityOps], field: &str) -> &'a TileOp {
        ops[0].ops.iter().find(|o| o.field() == field).unwrap_or_else(|| panic!("no op {field}"))
    }

    #[test]
    fn min_and_max_of_signed_zeros_in_one_batch_do_not_depend_on_order() {
        let p = plan(&[AggFunction::Min, AggFunction::Max]);
        for zeros in [[0.0, -0.0], [-0.0, 0.0]] {
            let (ops, _) = fold(&p, &rows(&zeros.map(Value::Float64)));
            let TileOp::Min { value: mn, .. } = op(&ops, "t:0:0:x:mn") else { panic!() };
            let TileOp::Max { value: mx, .. } = op(&ops, "t:0:0:x:mx") else { panic!() };
            assert_eq!((mn.to_bits(), mx.to_bits()), ((-0.0f64).to_bits(), 0.0f64.to_bits()), "{zeros:?}");
        }
    }

    #[test]
    fn ties_in_one_batch_order_numbers_by_value() {
        let p = plan(&[AggFunction::LastN(3)]);
        let values = [9.5, 10.25, 3e-6, 1.69].map(Value::Float64);
        let (ops, _) = fold(&p, &rows(&values));
        let TileOp::LastN { items, order, .. } = op(&ops, "t:0:0:x:l3") else { panic!() };
        assert_eq!(*order, TieOrder::Float);
        let keys: Vec<&str> = items.iter().map(|(_, k)| k.as_str()).collect();
        assert_eq!(keys, ["10.25", "9.5", "1.69"]);
        let TileOp::Latest { value, .. } = op(&ops, "f:x") else { panic!() };
        assert_eq!(value, "10.25");
    }

    #[test]
    fn first_n_keeps_the_earliest_time_of_each_value() {
        let p = plan(&[AggFunction::FirstN(2)]);
        let mut rs = rows(&["b", "a", "b", "c"].map(|v| Value::Text(v.into())));
        for (r, t) in rs.iter_mut().zip([9, 7, 3, 5]) {
            r.event_time_ms = t;
        }
        let (ops, _) = fold(&p, &rs);
        let TileOp::FirstN { items, .. } = op(&ops, "t:0:0:x:e2") else { panic!() };
        assert_eq!(items, &[(3, "b".to_string()), (5, "c".to_string())]);
    }

    #[test]
    fn variances_fold_count_sum_and_exact_squares() {
        let p = plan(&[AggFunction::StddevSamp]);
        let (ops, _) = fold(&p, &rows(&[Value::Float64(1.5), Value::Int64(-2), Value::Float64(9e12)]));
        let TileOp::Incr { delta: n, .. } = op(&ops, "t:0:0:x:n") else { panic!() };
        let TileOp::Incr { delta: s, .. } = op(&ops, "t:0:0:x:s") else { panic!() };
        let TileOp::AddDecimal { delta: q, .. } = op(&ops, "t:0:0:x:q") else { panic!() };
        assert_eq!((*n, *s), (3, 1_500_000 - 2_000_000 + 9_000_000_000_000_000_000));
        // 1.5e6² + 2e6² + 9e18² = 2.25e12 + 4e12 + 8.1e37, exactly.
        assert_eq!(q, "81000000000000000000000006250000000000");
    }
}
