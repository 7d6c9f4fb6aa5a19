//! Merging the tiles a window covers into a feature value, at read time.

use std::collections::BTreeMap;

use super::decay;
use super::decimal;
use super::hll;
use super::moments::{self, Variance};
use super::ops::{MergeList, latest_field, merge_first_n, merge_last_n, tile_field, write_tile_field};
use super::order::{TieOrder, max_f64, min_f64};
use super::quantile;
use super::spec::{AggFunction, AggSpec, Window};
use super::window::tiles_for;
use crate::bindings::types::{Value, ValueType};

/// Stored fields of one entity, however the store keeps them.
pub trait FieldSource {
    fn field(&self, name: &str) -> Option<&str>;
    fn hll(&self, name: &str) -> Option<&[u8]>;
}

fn components(f: AggFunction) -> &'static [&'static str] {
    match f {
        AggFunction::Count => &["n"],
        AggFunction::Sum => &["s"],
        AggFunction::Mean => &["n", "s"],
        AggFunction::VarPop | AggFunction::VarSamp | AggFunction::StddevPop | AggFunction::StddevSamp => {
            &["n", "s", "q"]
        }
        AggFunction::Min => &["mn"],
        AggFunction::Max => &["mx"],
        AggFunction::ApproxPercentile(_) => &["d"],
        AggFunction::LastN(_)
        | AggFunction::FirstN(_)
        | AggFunction::CountDistinct(_)
        | AggFunction::ApproxCountDistinct
        | AggFunction::DecayedCount(_)
        | AggFunction::DecayedSum(_) => &[],
    }
}

/// Fields (and HLL sketches) a read of `spec` over `w` at `t` needs.
pub fn fields_for(spec: &AggSpec, w: Window, t: i64, fields: &mut Vec<String>, hlls: &mut Vec<String>) {
    for (g, start) in tiles_for(w, t) {
        for c in components(spec.function) {
            fields.push(tile_field(g, start, &spec.column, c));
        }
        match spec.function {
            AggFunction::LastN(k) => fields.push(tile_field(g, start, &spec.column, &format!("l{k}"))),
            AggFunction::FirstN(k) => fields.push(tile_field(g, start, &spec.column, &format!("e{k}"))),
            AggFunction::CountDistinct(k) => fields.push(tile_field(g, start, &spec.column, &format!("c{k}"))),
            AggFunction::DecayedCount(h) => fields.push(tile_field(g, start, &spec.column, &format!("kc{h}"))),
            AggFunction::DecayedSum(h) => {
                fields.push(tile_field(g, start, &spec.column, &format!("kp{h}")));
                fields.push(tile_field(g, start, &spec.column, &format!("kn{h}")));
            }
            AggFunction::ApproxCountDistinct => hlls.push(tile_field(g, start, &spec.column, "h")),
            _ => {}
        }
    }
}

/// The type a function yields for a column type.
pub fn output_type(f: AggFunction, column: ValueType) -> ValueType {
    match f {
        AggFunction::Count | AggFunction::ApproxCountDistinct | AggFunction::CountDistinct(_) => ValueType::Int64,
        AggFunction::Mean
        | AggFunction::VarPop
        | AggFunction::VarSamp
        | AggFunction::StddevPop
        | AggFunction::StddevSamp
        | AggFunction::ApproxPercentile(_)
        | AggFunction::DecayedCount(_)
        | AggFunction::DecayedSum(_) => ValueType::Float64,
        AggFunction::Sum | AggFunction::Min | AggFunction::Max => {
            if column == ValueType::Int64 {
                ValueType::Int64
            } else {
                ValueType::Float64
            }
        }
        AggFunction::LastN(_) | AggFunction::FirstN(_) => {
            if column == ValueType::Int64 {
                ValueType::Int64s
            } else {
                ValueType::Texts
            }
        }
    }
}

/// `min(distinct values over the tiles, cap)`. Each tile holds at most `cap` values; one that holds
/// `cap` already answers `cap`, so the union stops growing there.
fn count_distinct_capped<'a>(tiles: impl Iterator<Item = &'a str>, cap: u16) -> usize {
    let cap = usize::from(cap);
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    for raw in tiles {
        let items: Vec<(i64, String)> = serde_json::from_str(raw).unwrap_or_default();
        for (_, v) in items {
            seen.insert(v);
            if seen.len() >= cap {
                return cap;
            }
        }
    }
    seen.len()
}

/// The value of `spec` over window `w` read at `t`.
pub fn compute(spec: &AggSpec, w: Window, t: i64, column: ValueType, src: &dyn FieldSource) -> Value {
    let starts = tiles_for(w, t);
    let int_col = column == ValueType::Int64;
    // One name buffer for every lookup of this read (no allocation per tile).
    let name = std::cell::RefCell::new(String::new());
    let get = |(g, start): (i64, i64), comp: &str| {
        let mut n = name.borrow_mut();
        write_tile_field(&mut n, g, start, &spec.column, comp);
        src.field(&n)
    };
    let sum_i = |comp: &str| -> i64 { starts.iter().filter_map(|s| get(*s, comp)?.parse::<i64>().ok()).sum() };
    let nums = |comp: &str| starts.iter().filter_map(|s| get(*s, comp)?.parse::<f64>().ok()).collect::<Vec<f64>>();
    let typed = |x: f64| if int_col { Value::Int64(x as i64) } else { Value::Float64(x) };
    match spec.function {
        AggFunction::Count => Value::Int64(sum_i("n")),
        AggFunction::Sum => {
            let s = sum_i("s");
            if int_col { Value::Int64(s / 1_000_000) } else { Value::Float64(s as f64 / 1e6) }
        }
        AggFunction::Mean => {
            let n = sum_i("n");
            if n == 0 { Value::Null } else { Value::Float64(sum_i("s") as f64 / 1e6 / n as f64) }
        }
        AggFunction::Min => nums("mn").into_iter().reduce(min_f64).map_or(Value::Null, typed),
        AggFunction::Max => nums("mx").into_iter().reduce(max_f64).map_or(Value::Null, typed),
        AggFunction::CountDistinct(k) => {
            let comp = format!("c{k}");
            Value::Int64(count_distinct_capped(starts.iter().filter_map(|s| get(*s, &comp)), k) as i64)
        }
        AggFunction::LastN(k) | AggFunction::FirstN(k) => {
            let (comp, merge): (String, MergeList) = match spec.function {
                AggFunction::FirstN(_) => (format!("e{k}"), merge_first_n),
                _ => (format!("l{k}"), merge_last_n),
            };
            let mut merged: Vec<(i64, String)> = Vec::new();
            for s in &starts {
                if let Some(raw) = get(*s, &comp) {
                    let items: Vec<(i64, String)> = serde_json::from_str(raw).unwrap_or_default();
                    merge(&mut merged, &items, k as usize, TieOrder::of_type(column));
                }
            }
            if int_col {
                Value::Int64s(merged.iter().filter_map(|(_, v)| v.parse().ok()).collect())
            } else {
                Value::Texts(merged.into_iter().map(|(_, v)| v).collect())
            }
        }
        AggFunction::VarPop | AggFunction::VarSamp | AggFunction::StddevPop | AggFunction::StddevSamp => {
            let kind = match spec.function {
                AggFunction::VarPop | AggFunction::StddevPop => Variance::Population,
                _ => Variance::Sample,
            };
            let sum: i128 = starts.iter().filter_map(|s| get(*s, "s")?.parse::<i64>().ok()).map(i128::from).sum();
            let squares = starts
                .iter()
                .filter_map(|s| get(*s, "q"))
                .fold(num_bigint::BigUint::default(), |acc, q| acc + decimal::parse_decimal(q));
            let var = moments::variance(kind, sum_i("n"), sum, &squares);
            let stddev = matches!(spec.function, AggFunction::StddevPop | AggFunction::StddevSamp);
            var.map_or(Value::Null, |v| Value::Float64(if stddev { v.sqrt() } else { v }))
        }
        AggFunction::DecayedCount(h) | AggFunction::DecayedSum(h) => {
            let (positive, negative) = match spec.function {
                AggFunction::DecayedCount(_) => (format!("kc{h}"), None),
                _ => (format!("kp{h}"), Some(format!("kn{h}"))),
            };
            let big =
                |tile: (i64, i64), comp: Option<&str>| comp.and_then(|c| get(tile, c)).map(decimal::parse_decimal);
            let tiles: Vec<_> = starts
                .iter()
                .map(|s| {
                    let pos = big(*s, Some(&positive)).unwrap_or_default();
                    (*s, pos, big(*s, negative.as_deref()).unwrap_or_default())
                })
                .collect();
            Value::Float64(decay::read(&tiles, h, t))
        }
        AggFunction::ApproxPercentile(p) => {
            let mut buckets = BTreeMap::new();
            for s in &starts {
                if let Some(raw) = get(*s, "d") {
                    quantile::decode_into(raw, &mut buckets);
                }
            }
            quantile::quantile(&buckets, f64::from(p) / 1e4).map_or(Value::Null, Value::Float64)
        }
        AggFunction::ApproxCountDistinct => {
            let mut regs: Vec<u8> = Vec::new();
            for s in &starts {
                if let Some(r) = src.hll(&tile_field(s.0, s.1, &spec.column, "h")) {
                    hll::merge_into(&mut regs, r);
                }
            }
            if regs.iter().all(|r| *r == 0) {
                Value::Int64(0)
            } else {
                Value::Int64(hll::estimate(&regs).round() as i64)
            }
        }
    }
}

/// A plain feature's latest value and event time, decoded with its declared type.
pub fn latest(name: &str, ty: ValueType, src: &dyn FieldSource) -> Option<(i64, Value)> {
    latest_stored(&latest_field(name), ty, src)
}

/// [`latest`] by the stored field's name (`f:<name>`, from [`latest_field`]), so a reader can
/// build the name once rather than per entity.
pub fn latest_stored(field: &str, ty: ValueType, src: &dyn FieldSource) -> Option<(i64, Value)> {
    let raw = src.field(field)?;
    let (t, json) = raw.split_once('|')?;
    Some((t.parse().ok()?, decode_value(ty, json)?))
}

/// A stored value's JSON as type `ty`, as [`value_from_json`](crate::transform::json_out::value_from_json)
/// decodes it; scalars are parsed straight into their type (no JSON tree) and anything else
/// (null, `"NaN"`, lists) goes through the tree.
fn decode_value(ty: ValueType, json: &str) -> Option<Value> {
    let direct = match ty {
        ValueType::Int64 => serde_json::from_str(json).ok().map(Value::Int64),
        ValueType::Float64 => serde_json::from_str(json).ok().map(Value::Float64),
        ValueType::Text => serde_json::from_str(json).ok().map(Value::Text),
        ValueType::Boolean => serde_json::from_str(json).ok().map(Value::Boolean),
        _ => None,
    };
    direct.or_else(|| crate::transform::json_out::value_from_json(ty, &serde_json::from_str(json).ok()?))
}

#[cfg(test)]
mod decode_tests {
    use super::*;
    use crate::transform::json_out::value_from_json;

    #[test]
    fn direct_decoding_equals_the_json_tree() {
        let inputs = [
            "0",
            "-7",
            "42",
            "3.0",
            "1e3",
            "0.30000000000000004",
            "-1.5e-7",
            "18446744073709551615",
            "\"NaN\"",
            "\"Infinity\"",
            "\"DE\"",
            "\"a \\\"q\\\" \\u00e9\"",
            "true",
            "false",
            "null",
            "[1,2]",
            "\"\"",
            "007",
            "+5",
            " 5",
            "x",
        ];
        for ty in [ValueType::Int64, ValueType::Float64, ValueType::Text, ValueType::Boolean, ValueType::Int64s] {
            for j in inputs {
                let tree = serde_json::from_str(j).ok().and_then(|v| value_from_json(ty, &v));
                let got = decode_value(ty, j);
                // NaN != NaN: compare the debug text.
                assert_eq!(format!("{got:?}"), format!("{tree:?}"), "{ty:?} {j}");
            }
        }
    }
}
