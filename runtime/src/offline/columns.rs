//! Typed access to the Arrow columns Wafer reads from Parquet (event files and spines), so every
//! reader accepts the same column types and reports the same errors.

use std::borrow::Cow;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int32Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, TimeUnit};

/// A time column: `Int64` milliseconds since the Unix epoch, or any Arrow `Timestamp`.
pub enum TimeColumn<'a> {
    Millis(&'a arrow_array::Int64Array),
    Timestamp(&'a ArrayRef, TimeUnit),
}

impl<'a> TimeColumn<'a> {
    pub fn new(a: &'a ArrayRef) -> Result<Self, String> {
        match a.data_type() {
            DataType::Int64 => Ok(Self::Millis(a.as_primitive::<Int64Type>())),
            DataType::Timestamp(unit, _) => Ok(Self::Timestamp(a, *unit)),
            other => Err(format!("has type {other}; expected Int64 (ms since the Unix epoch) or a Timestamp")),
        }
    }

    /// Milliseconds since the epoch (sub-millisecond timestamps are floored), `None` for null.
    pub fn ms(&self, i: usize) -> Option<i64> {
        match self {
            Self::Millis(a) => a.is_valid(i).then(|| a.value(i)),
            Self::Timestamp(a, unit) => {
                if a.is_null(i) {
                    return None;
                }
                Some(match unit {
                    TimeUnit::Second => a.as_primitive::<TimestampSecondType>().value(i).saturating_mul(1000),
                    TimeUnit::Millisecond => a.as_primitive::<TimestampMillisecondType>().value(i),
                    TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().value(i).div_euclid(1000),
                    TimeUnit::Nanosecond => a.as_primitive::<TimestampNanosecondType>().value(i).div_euclid(1_000_000),
                })
            }
        }
    }
}

/// A text-like column: strings, or integers rendered in decimal (entity ids are often integers).
pub enum TextColumn<'a> {
    Utf8(&'a arrow_array::StringArray),
    LargeUtf8(&'a arrow_array::LargeStringArray),
    Utf8View(&'a arrow_array::StringViewArray),
    Int64(&'a arrow_array::Int64Array),
    Int32(&'a arrow_array::Int32Array),
}

impl<'a> TextColumn<'a> {
    pub fn new(a: &'a ArrayRef) -> Result<Self, String> {
        match a.data_type() {
            DataType::Utf8 => Ok(Self::Utf8(a.as_string::<i32>())),
            DataType::LargeUtf8 => Ok(Self::LargeUtf8(a.as_string::<i64>())),
            DataType::Utf8View => Ok(Self::Utf8View(a.as_string_view())),
            DataType::Int64 => Ok(Self::Int64(a.as_primitive::<Int64Type>())),
            DataType::Int32 => Ok(Self::Int32(a.as_primitive::<Int32Type>())),
            other => Err(format!("has type {other}; expected a string (or integer) column")),
        }
    }

    pub fn get(&self, i: usize) -> Option<Cow<'a, str>> {
        match self {
            Self::Utf8(a) => a.is_valid(i).then(|| Cow::Borrowed(a.value(i))),
            Self::LargeUtf8(a) => a.is_valid(i).then(|| Cow::Borrowed(a.value(i))),
            Self::Utf8View(a) => a.is_valid(i).then(|| Cow::Borrowed(a.value(i))),
            Self::Int64(a) => a.is_valid(i).then(|| Cow::Owned(a.value(i).to_string())),
            Self::Int32(a) => a.is_valid(i).then(|| Cow::Owned(a.value(i).to_string())),
        }
    }
}

/// A bytes-like column (binary or UTF-8 text, taken as its bytes).
pub enum BytesColumn<'a> {
    Text(TextColumn<'a>),
    Binary(&'a arrow_array::BinaryArray),
    LargeBinary(&'a arrow_array::LargeBinaryArray),
}

impl<'a> BytesColumn<'a> {
    pub fn new(a: &'a ArrayRef) -> Result<Self, String> {
        match a.data_type() {
            DataType::Binary => Ok(Self::Binary(a.as_binary::<i32>())),
            DataType::LargeBinary => Ok(Self::LargeBinary(a.as_binary::<i64>())),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Ok(Self::Text(TextColumn::new(a)?)),
            other => Err(format!("has type {other}; expected Binary or Utf8")),
        }
    }

    pub fn get(&self, i: usize) -> Option<Cow<'a, [u8]>> {
        match self {
            Self::Binary(a) => a.is_valid(i).then(|| Cow::Borrowed(a.value(i))),
            Self::LargeBinary(a) => a.is_valid(i).then(|| Cow::Borrowed(a.value(i))),
            Self::Text(t) => t.get(i).map(|s| match s {
                Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
                Cow::Owned(s) => Cow::Owned(s.into_bytes()),
            }),
        }
    }
}

/// An optional `Int64`/`Int32` column.
pub fn int_column(a: &ArrayRef) -> Result<impl Fn(usize) -> Option<i64> + '_, String> {
    match a.data_type() {
        DataType::Int64 | DataType::Int32 => {}
        other => return Err(format!("has type {other}; expected Int64 or Int32")),
    }
    Ok(move |i: usize| {
        if a.is_null(i) {
            return None;
        }
        match a.data_type() {
            DataType::Int64 => Some(a.as_primitive::<Int64Type>().value(i)),
            _ => Some(i64::from(a.as_primitive::<Int32Type>().value(i))),
        }
    })
}

/// One cell as JSON (for request params taken from spine columns): numbers, strings, booleans,
/// timestamps as ms; `None` for a type that has no JSON form here.
pub fn json_cell(a: &ArrayRef, i: usize) -> Option<serde_json::Value> {
    use serde_json::Value as Json;
    if a.is_null(i) {
        return Some(Json::Null);
    }
    Some(match a.data_type() {
        DataType::Boolean => Json::Bool(a.as_boolean().value(i)),
        DataType::Int64 => Json::from(a.as_primitive::<Int64Type>().value(i)),
        DataType::Int32 => Json::from(a.as_primitive::<Int32Type>().value(i)),
        DataType::Float64 => Json::from(a.as_primitive::<arrow_array::types::Float64Type>().value(i)),
        DataType::Float32 => Json::from(f64::from(a.as_primitive::<arrow_array::types::Float32Type>().value(i))),
        DataType::Timestamp(..) => Json::from(TimeColumn::new(a).ok()?.ms(i)?),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            Json::String(TextColumn::new(a).ok()?.get(i)?.into_owned())
        }
        _ => return None,
    })
}

/// One cell as a feature value, for the columns Wafer itself writes ([`super::parquet_out`]
/// types): `None` for null.
pub fn value_cell(a: &ArrayRef, i: usize) -> Result<Option<crate::bindings::types::Value>, String> {
    use crate::bindings::types::Value;
    use arrow_array::types::{Float32Type, Float64Type};
    if a.is_null(i) {
        return Ok(None);
    }
    Ok(Some(match a.data_type() {
        DataType::Boolean => Value::Boolean(a.as_boolean().value(i)),
        DataType::Int64 => Value::Int64(a.as_primitive::<Int64Type>().value(i)),
        DataType::Float64 => Value::Float64(a.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 => Value::Text(a.as_string::<i32>().value(i).to_string()),
        DataType::Binary => Value::Bytes(a.as_binary::<i32>().value(i).to_vec()),
        DataType::List(f) => {
            let l = a.as_list::<i32>().value(i);
            match f.data_type() {
                DataType::Float32 => Value::Float32s(l.as_primitive::<Float32Type>().values().to_vec()),
                DataType::Int64 => Value::Int64s(l.as_primitive::<Int64Type>().values().to_vec()),
                DataType::Utf8 => {
                    Value::Texts(l.as_string::<i32>().iter().map(|s| s.unwrap_or_default().to_string()).collect())
                }
                other => return Err(format!("unexpected list of {other}")),
            }
        }
        other => return Err(format!("unexpected column type {other}")),
    }))
}
