//! The write script's argument: one batch encoded as the JSON document `APPLY_LUA` decodes,
//! written straight into one string (this runs for every op of every batch).

use std::fmt::Write as _;

use crate::aggregate::ops::{TileOp, f64_repr, parse_tile_field};
use crate::store::WriteBatch;

/// Append one op as the script's JSON array (`[kind, field, args...]`), written straight into
/// the spec (no JSON tree per op: this runs for every op of every batch).
fn write_op(out: &mut String, op: &TileOp) {
    let q = |out: &mut String, s: &str| {
        // A JSON string literal: serde_json's escaping, appended in place.
        let _ = serde_json::to_writer(string_writer(out), s);
    };
    match op {
        TileOp::Incr { field, delta } => {
            out.push_str("[\"i\",");
            q(out, field);
            let _ = write!(out, ",\"{delta}\"]");
        }
        TileOp::Min { field, value } | TileOp::Max { field, value } => {
            out.push_str(if matches!(op, TileOp::Min { .. }) { "[\"mn\"," } else { "[\"mx\"," });
            q(out, field);
            out.push(',');
            q(out, &f64_repr(*value));
            out.push(']');
        }
        TileOp::LastN { field, k, items } => {
            out.push_str("[\"l\",");
            q(out, field);
            let _ = write!(out, ",{k},[");
            for (i, (t, v)) in items.iter().enumerate() {
                let _ = write!(out, "{}[{t},", if i > 0 { "," } else { "" });
                q(out, v);
                out.push(']');
            }
            out.push_str("]]");
        }
        TileOp::Hll { field, registers } => {
            out.push_str("[\"h\",");
            q(out, field);
            for (i, r) in registers {
                let _ = write!(out, ",{i},{r}");
            }
            out.push(']');
        }
        TileOp::Latest { field, event_time, value } => {
            out.push_str("[\"f\",");
            q(out, field);
            let _ = write!(out, ",\"{event_time}\",");
            q(out, value);
            out.push(']');
        }
    }
}

/// `io::Write` into a `String` for serde_json, which only ever writes valid UTF-8.
fn string_writer(out: &mut String) -> impl std::io::Write + '_ {
    struct W<'a>(&'a mut String);
    impl std::io::Write for W<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let s = std::str::from_utf8(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            self.0.push_str(s);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    W(out)
}

/// The script's ARGV[1] for a batch (see `APPLY_LUA`).
pub(super) fn spec_json(batch: &WriteBatch<'_>) -> String {
    let mut out = String::with_capacity(128 + batch.entities.iter().map(|e| 24 + e.ops.len() * 48).sum::<usize>());
    match &batch.mark {
        Some(m) => {
            let _ = write!(out, "{{\"first\":{},\"next\":\"{}\",", m.first_offset, m.next_offset);
        }
        None => out.push_str("{\"first\":null,\"next\":null,"),
    }
    let _ = write!(out, "\"keep\":{},\"ret\":[", batch.keep_ms.max(1));
    for (i, (g, r)) in batch.retention.iter().enumerate() {
        let _ = write!(out, "{}[{g},{r}]", if i > 0 { "," } else { "" });
    }
    out.push_str("],\"ents\":[");
    let mut newest: Vec<(i64, i64)> = Vec::new();
    for (i, e) in batch.entities.iter().enumerate() {
        out.push_str(if i > 0 { ",{\"ops\":[" } else { "{\"ops\":[" });
        newest.clear();
        for (j, op) in e.ops.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            write_op(&mut out, op);
            if let Some((g, s)) = parse_tile_field(op.field()) {
                if g > 0 {
                    match newest.iter_mut().find(|(ng, _)| *ng == g) {
                        Some(n) => n.1 = n.1.max(s),
                        None => newest.push((g, s)),
                    }
                }
            }
        }
        out.push_str("],\"newest\":[");
        for (k, (g, s)) in newest.iter().enumerate() {
            let _ = write!(out, "{}[{g},{s}]", if k > 0 { "," } else { "" });
        }
        out.push_str("]}");
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::aggregate::ops::EntityOps;
    use crate::store::SourceMark;

    /// The spec as a JSON tree (the straightforward encoding the writer must agree with).
    fn op_json(op: &TileOp) -> serde_json::Value {
        match op {
            TileOp::Incr { field, delta } => json!(["i", field, delta.to_string()]),
            TileOp::Min { field, value } => json!(["mn", field, f64_repr(*value)]),
            TileOp::Max { field, value } => json!(["mx", field, f64_repr(*value)]),
            TileOp::LastN { field, k, items } => json!(["l", field, k, items]),
            TileOp::Hll { field, registers } => {
                let mut v = vec![json!("h"), json!(field)];
                for (i, r) in registers {
                    v.push(json!(i));
                    v.push(json!(r));
                }
                serde_json::Value::Array(v)
            }
            TileOp::Latest { field, event_time, value } => json!(["f", field, event_time.to_string(), value]),
        }
    }

    #[test]
    fn spec_json_matches_the_json_tree_for_every_op() {
        let ops = vec![
            TileOp::Incr { field: "t:3600000:0:amount:n".into(), delta: -3 },
            TileOp::Min { field: "t:60000:120000:amount:mn".into(), value: 0.1 + 0.2 },
            TileOp::Max { field: "t:3600000:3600000:amount:mx".into(), value: 1e21 },
            TileOp::LastN { field: "t:0:0:m:l3".into(), k: 3, items: vec![(5, "a\"b".into()), (7, "é\n".into())] },
            TileOp::Hll { field: "t:0:0:m:h".into(), registers: vec![(1, 4), (900, 2)] },
            TileOp::Latest { field: "f:country".into(), event_time: 42, value: "\"DE\"".into() },
        ];
        let ents = vec![EntityOps { entity: "u1".into(), ops }, EntityOps { entity: "u2".into(), ops: vec![] }];
        let ret = [(60_000, 3_600_000), (3_600_000, 86_400_000)];
        for mark in [None, Some(SourceMark { source: "s".into(), partition: 2, first_offset: 10, next_offset: 15 })] {
            let batch = WriteBatch { view: "t/v", mark: mark.clone(), entities: &ents, keep_ms: 0, retention: &ret };
            let got: serde_json::Value = serde_json::from_str(&spec_json(&batch)).expect("valid JSON");
            let want = json!({
                "first": mark.as_ref().map(|m| m.first_offset),
                "next": mark.as_ref().map(|m| m.next_offset.to_string()),
                "keep": 1,
                "ret": ret,
                "ents": [
                    {"ops": ents[0].ops.iter().map(op_json).collect::<Vec<_>>(), "newest": [[3_600_000, 3_600_000], [60_000, 120_000]]},
                    {"ops": [], "newest": []},
                ],
            });
            assert_eq!(got, want);
        }
    }
}
