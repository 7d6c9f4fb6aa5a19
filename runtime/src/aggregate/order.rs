//! The order of values where an aggregation must choose between them: `min`/`max` of signed
//! zeros, and ties at the same event time in `last_n` and latest values (greater value first).
//!
//! One rule on every path (fold, embedded store, the Redis write script, read-time merge, hence
//! training data): **numbers compare as numbers, everything else by bytes**.
//! - `int64`: by integer value (exact, also beyond 2⁵³).
//! - `float64`: by value, with `−0.0` below `0.0` and `NaN` above `+∞` (as [`f64::total_cmp`] on
//!   the values Wafer stores); `min`/`max` follow the same rule, so `min{0.0, −0.0} = −0.0` and
//!   `max{0.0, −0.0} = 0.0` whatever the arrival order.
//! - `text`: by the UTF-8 bytes of the text (not its JSON encoding).
//! - anything else (`boolean`, `bytes`, lists): by the bytes of the value's JSON text.
//!
//! Values are compared in the stored form: the *key* of a `last_n` item ([`value_key`]: the
//! text itself for text, the JSON text otherwise) and the JSON text of a latest value. The Redis
//! script (`store/redis/write.rs`) implements the same comparisons in Lua on the same strings
//! (bytewise, never with Lua's locale-dependent string `<`); the tests in this module and the
//! cross-store tests pin that they agree.
//!
//! [`value_key`]: super::fold::value_key

use std::cmp::Ordering;

use crate::bindings::types::{Value, ValueType};

/// How the values of one column order (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TieOrder {
    Int,
    Float,
    Text,
    /// Bytes of the JSON text.
    Json,
}

impl TieOrder {
    pub fn of_value(v: &Value) -> Self {
        match v {
            Value::Int64(_) => TieOrder::Int,
            Value::Float64(_) => TieOrder::Float,
            Value::Text(_) => TieOrder::Text,
            _ => TieOrder::Json,
        }
    }

    pub fn of_type(t: ValueType) -> Self {
        match t {
            ValueType::Int64 => TieOrder::Int,
            ValueType::Float64 => TieOrder::Float,
            ValueType::Text => TieOrder::Text,
            _ => TieOrder::Json,
        }
    }

    /// The one-letter code the Redis write script takes.
    pub fn code(self) -> &'static str {
        match self {
            TieOrder::Int => "i",
            TieOrder::Float => "f",
            TieOrder::Text => "t",
            TieOrder::Json => "j",
        }
    }
}

/// Order of two `last_n` keys (the text itself for text, the JSON text otherwise).
pub fn cmp_keys(order: TieOrder, a: &str, b: &str) -> Ordering {
    match order {
        TieOrder::Int => cmp_int_text(a, b),
        TieOrder::Float => cmp_float_text(a, b),
        TieOrder::Text | TieOrder::Json => a.as_bytes().cmp(b.as_bytes()),
    }
}

/// Order of two latest values as stored (JSON text): text compares by its decoded bytes.
pub fn cmp_json(order: TieOrder, a: &str, b: &str) -> Ordering {
    match order {
        TieOrder::Text => text_of_json(a).as_bytes().cmp(text_of_json(b).as_bytes()),
        other => cmp_keys(other, a, b),
    }
}

/// The text a JSON string holds (the input itself if it is not one).
fn text_of_json(json: &str) -> std::borrow::Cow<'_, str> {
    match serde_json::from_str::<String>(json) {
        Ok(s) => s.into(),
        Err(_) => json.into(),
    }
}

/// Canonical decimal integers (as serde_json writes them) by value: sign, then length, then
/// digits. Exact for every i64, and what the Lua script does.
fn cmp_int_text(a: &str, b: &str) -> Ordering {
    let (na, nb) = (a.starts_with('-'), b.starts_with('-'));
    match (na, nb) {
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => {
            let by_magnitude = a.len().cmp(&b.len()).then_with(|| a.as_bytes().cmp(b.as_bytes()));
            if na { by_magnitude.reverse() } else { by_magnitude }
        }
    }
}

/// A float key's class and value: numbers (0), `"NaN"` (1), anything unparseable (2).
fn float_rank(s: &str) -> (u8, f64) {
    match s {
        "\"NaN\"" => (1, 0.0),
        "\"Infinity\"" => (0, f64::INFINITY),
        "\"-Infinity\"" => (0, f64::NEG_INFINITY),
        _ => match s.parse::<f64>() {
            Ok(x) if !x.is_nan() => (0, x),
            _ => (2, 0.0),
        },
    }
}

/// Float keys by value (`−0.0` below `0.0`, NaN above everything), then by bytes.
fn cmp_float_text(a: &str, b: &str) -> Ordering {
    let ((ca, x), (cb, y)) = (float_rank(a), float_rank(b));
    ca.cmp(&cb).then_with(|| cmp_f64(x, y)).then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// Two non-NaN floats by value, `−0.0` below `0.0`.
pub fn cmp_f64(x: f64, y: f64) -> Ordering {
    x.partial_cmp(&y).unwrap_or(Ordering::Equal).then_with(|| y.is_sign_negative().cmp(&x.is_sign_negative()))
}

/// Whether `new` replaces `cur` as a minimum (`−0.0` is below `0.0`).
pub fn min_wins(new: f64, cur: f64) -> bool {
    cmp_f64(new, cur) == Ordering::Less
}

/// Whether `new` replaces `cur` as a maximum (`0.0` is above `−0.0`).
pub fn max_wins(new: f64, cur: f64) -> bool {
    cmp_f64(new, cur) == Ordering::Greater
}

/// The smaller of two floats under [`cmp_f64`] (for read-time merges).
pub fn min_f64(a: f64, b: f64) -> f64 {
    if min_wins(b, a) { b } else { a }
}

/// The larger of two floats under [`cmp_f64`].
pub fn max_f64(a: f64, b: f64) -> f64 {
    if max_wins(b, a) { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted_desc(order: TieOrder, keys: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = keys.iter().map(|s| s.to_string()).collect();
        v.sort_by(|a, b| cmp_keys(order, b, a));
        v
    }

    #[test]
    fn numbers_order_by_value_not_text() {
        assert_eq!(sorted_desc(TieOrder::Float, &["9.5", "10.25", "3e-6", "1.69"]), ["10.25", "9.5", "1.69", "3e-6"]);
        assert_eq!(
            sorted_desc(TieOrder::Float, &["-0.0", "0.0", "\"NaN\"", "\"-Infinity\"", "\"Infinity\"", "-1e300"]),
            ["\"NaN\"", "\"Infinity\"", "0.0", "-0.0", "-1e300", "\"-Infinity\""]
        );
        assert_eq!(
            sorted_desc(TieOrder::Int, &["9", "10", "-9", "-10", "0", "9223372036854775807", "9223372036854775806"]),
            ["9223372036854775807", "9223372036854775806", "10", "9", "0", "-9", "-10"]
        );
    }

    #[test]
    fn text_orders_by_bytes_of_the_text() {
        assert_eq!(sorted_desc(TieOrder::Text, &["a", "B", "c", "D", "e", "F"]), ["e", "c", "a", "F", "D", "B"]);
        // As latest values (JSON text): `a"` (0x22) is below `a#` (0x23), though `\` (0x5C) of
        // its JSON escape is above.
        assert_eq!(cmp_json(TieOrder::Text, r#""a\"""#, r##""a#""##), Ordering::Less);
        assert_eq!(cmp_json(TieOrder::Float, "10.25", "9.5"), Ordering::Greater);
    }

    #[test]
    fn min_and_max_of_signed_zeros_do_not_depend_on_order() {
        for (a, b) in [(0.0, -0.0), (-0.0, 0.0)] {
            assert_eq!(min_f64(a, b).to_bits(), (-0.0f64).to_bits());
            assert_eq!(max_f64(a, b).to_bits(), 0.0f64.to_bits());
        }
        assert!(!min_wins(0.0, -0.0) && min_wins(-0.0, 0.0));
        assert!(max_wins(0.0, -0.0) && !max_wins(-0.0, 0.0));
        assert!(!min_wins(1.0, 1.0) && !max_wins(1.0, 1.0));
    }
}
