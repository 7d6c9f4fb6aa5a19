//! One cell of a source file, whatever the format, and its conversion to a feature value,
//! an entity key or an event time.

use crate::bindings::types::{Value, ValueType};
use crate::time::parse_rfc3339;

/// A cell as read from CSV (always text), JSON or Parquet (typed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(&'a str),
    /// A Parquet/Arrow timestamp, already in ms.
    TimestampMs(i64),
}

impl Cell<'_> {
    pub fn from_json(j: &serde_json::Value) -> Cell<'_> {
        match j {
            serde_json::Value::Null => Cell::Null,
            serde_json::Value::Bool(b) => Cell::Bool(*b),
            serde_json::Value::Number(n) => {
                n.as_i64().map_or_else(|| Cell::Float(n.as_f64().unwrap_or(f64::NAN)), Cell::Int)
            }
            serde_json::Value::String(s) => Cell::Str(s),
            _ => Cell::Null,
        }
    }

    fn describe(&self) -> String {
        match self {
            Cell::Null => "null".into(),
            Cell::Int(i) => format!("integer {i}"),
            Cell::Float(f) => format!("number {f}"),
            Cell::Bool(b) => format!("boolean {b}"),
            Cell::Str(s) => format!("text {s:?}"),
            Cell::TimestampMs(t) => format!("timestamp {t}"),
        }
    }

    /// The value as a feature of type `ty`. `Null` (and empty CSV text) is `Value::Null`.
    pub fn to_value(self, ty: ValueType) -> Result<Value, String> {
        let bad = || Err(format!("expected {}, got {}", ty.as_str(), self.describe()));
        Ok(match (ty, self) {
            (_, Cell::Null) => Value::Null,
            (ValueType::Text, Cell::Str("")) => Value::Text(String::new()),
            (_, Cell::Str("")) => Value::Null,
            (ValueType::Int64, Cell::Int(i) | Cell::TimestampMs(i)) => Value::Int64(i),
            (ValueType::Int64, Cell::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::Int64(f as i64),
            (ValueType::Int64, Cell::Str(s)) => match s.trim().parse() {
                Ok(i) => Value::Int64(i),
                Err(_) => return bad(),
            },
            (ValueType::Float64, Cell::Int(i)) => Value::Float64(i as f64),
            (ValueType::Float64, Cell::Float(f)) => Value::Float64(f),
            (ValueType::Float64, Cell::Str(s)) => match s.trim().parse() {
                Ok(f) => Value::Float64(f),
                Err(_) => return bad(),
            },
            (ValueType::Text, Cell::Str(s)) => Value::Text(s.to_owned()),
            (ValueType::Text, Cell::Int(i)) => Value::Text(i.to_string()),
            (ValueType::Boolean, Cell::Bool(b)) => Value::Boolean(b),
            (ValueType::Boolean, Cell::Int(i @ (0 | 1))) => Value::Boolean(i == 1),
            (ValueType::Boolean, Cell::Str(s)) => match s.trim() {
                "true" | "True" | "TRUE" | "1" => Value::Boolean(true),
                "false" | "False" | "FALSE" | "0" => Value::Boolean(false),
                _ => return bad(),
            },
            _ => return bad(),
        })
    }

    /// The cell as an entity key (text, or an integer's decimal text).
    pub fn to_key(self) -> Result<String, String> {
        match self {
            Cell::Str(s) if !s.is_empty() => Ok(s.to_owned()),
            Cell::Int(i) => Ok(i.to_string()),
            other => Err(format!("entity key must be non-empty text or an integer, got {}", other.describe())),
        }
    }

    /// The cell as an event time in ms: integer ms, an Arrow timestamp, or RFC 3339 text.
    pub fn to_time_ms(self) -> Result<i64, String> {
        match self {
            Cell::Int(i) | Cell::TimestampMs(i) => Ok(i),
            Cell::Float(f) if f.is_finite() => Ok(f as i64),
            Cell::Str(s) => s
                .trim()
                .parse()
                .ok()
                .or_else(|| parse_rfc3339(s))
                .ok_or_else(|| format!("event time {s:?} is neither integer ms nor RFC 3339")),
            other => {
                Err(format!("event time must be integer ms, a timestamp or RFC 3339 text, got {}", other.describe()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(Cell::Str("12").to_value(ValueType::Int64), Ok(Value::Int64(12)));
        assert_eq!(Cell::Str("").to_value(ValueType::Float64), Ok(Value::Null));
        assert_eq!(Cell::Int(3).to_value(ValueType::Float64), Ok(Value::Float64(3.0)));
        assert!(Cell::Str("abc").to_value(ValueType::Int64).unwrap_err().contains("expected int64"));
        assert_eq!(Cell::Str("2024-05-01T12:00:00Z").to_time_ms(), Ok(1_714_564_800_000));
        assert_eq!(Cell::Int(42).to_key(), Ok("42".into()));
        assert!(Cell::Null.to_key().is_err());
    }
}
