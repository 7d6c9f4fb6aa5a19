//! Writing a training set: the spine's columns, unchanged, plus one typed, nullable column per
//! feature (int64 → Int64, float64 → Float64, text → Utf8, boolean → Boolean, bytes → Binary,
//! int64s / texts / float32s → List of Int64 / Utf8 / Float32).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Float32Builder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::spine::Spine;
use crate::bindings::types::{Value, ValueType};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("creating {path}: {source}")]
    Create { path: String, source: std::io::Error },
    #[error("writing Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("building the output table: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("feature `{column}` produced {found:?}, but its declared type is {declared}")]
    TypeMismatch { column: String, declared: &'static str, found: Value },
    #[error("output column `{0}` is also a spine column (rename it in the spine, or use --full-names)")]
    Clash(String),
}

/// One feature column of the output: a value per spine row, in spine order.
pub struct FeatureColumn {
    pub name: String,
    pub ty: ValueType,
    pub values: Vec<Value>,
}

pub fn arrow_type(ty: ValueType) -> DataType {
    let list = |t: DataType| DataType::List(Arc::new(Field::new_list_field(t, true)));
    match ty {
        ValueType::Boolean => DataType::Boolean,
        ValueType::Int64 => DataType::Int64,
        ValueType::Float64 => DataType::Float64,
        ValueType::Text => DataType::Utf8,
        ValueType::Bytes => DataType::Binary,
        ValueType::Float32s => list(DataType::Float32),
        ValueType::Int64s => list(DataType::Int64),
        ValueType::Texts => list(DataType::Utf8),
    }
}

/// An Arrow array of `values` typed `ty` (`Value::Null` → null).
pub fn to_array(name: &str, ty: ValueType, values: &[Value]) -> Result<ArrayRef, WriteError> {
    let mismatch =
        |v: &Value| WriteError::TypeMismatch { column: name.into(), declared: ty.as_str(), found: v.clone() };
    macro_rules! build {
        ($builder:expr, $($pat:pat => $append:expr),+) => {{
            let mut b = $builder;
            for v in values {
                match v {
                    Value::Null => b.append_null(),
                    $($pat => $append(&mut b),)+
                    other => return Err(mismatch(other)),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Ok(match ty {
        ValueType::Boolean => {
            build!(BooleanBuilder::with_capacity(values.len()), Value::Boolean(x) => |b: &mut BooleanBuilder| b.append_value(*x))
        }
        ValueType::Int64 => {
            build!(Int64Builder::with_capacity(values.len()), Value::Int64(x) => |b: &mut Int64Builder| b.append_value(*x))
        }
        ValueType::Float64 => {
            build!(Float64Builder::with_capacity(values.len()), Value::Float64(x) => |b: &mut Float64Builder| b.append_value(*x))
        }
        ValueType::Text => build!(StringBuilder::new(), Value::Text(x) => |b: &mut StringBuilder| b.append_value(x)),
        ValueType::Bytes => build!(BinaryBuilder::new(), Value::Bytes(x) => |b: &mut BinaryBuilder| b.append_value(x)),
        ValueType::Float32s => {
            build!(ListBuilder::new(Float32Builder::new()), Value::Float32s(x) => |b: &mut ListBuilder<Float32Builder>| {
                b.values().append_slice(x);
                b.append(true)
            })
        }
        ValueType::Int64s => {
            build!(ListBuilder::new(Int64Builder::new()), Value::Int64s(x) => |b: &mut ListBuilder<Int64Builder>| {
                b.values().append_slice(x);
                b.append(true)
            })
        }
        ValueType::Texts => {
            build!(ListBuilder::new(StringBuilder::new()), Value::Texts(x) => |b: &mut ListBuilder<StringBuilder>| {
                for s in x {
                    b.values().append_value(s);
                }
                b.append(true)
            })
        }
    })
}

/// The output schema: the spine's fields, then one nullable field per feature.
pub fn schema(spine: &Spine, features: &[FeatureColumn]) -> Result<Arc<Schema>, WriteError> {
    let mut fields: Vec<Arc<Field>> = spine.schema.fields().iter().cloned().collect();
    for f in features {
        if fields.iter().any(|x| x.name() == &f.name) {
            return Err(WriteError::Clash(f.name.clone()));
        }
        fields.push(Arc::new(Field::new(&f.name, arrow_type(f.ty), true)));
    }
    Ok(Arc::new(Schema::new_with_metadata(fields, spine.schema.metadata().clone())))
}

/// The output as record batches aligned with the spine's batches.
pub fn batches(spine: &Spine, features: &[FeatureColumn]) -> Result<(Arc<Schema>, Vec<RecordBatch>), WriteError> {
    let schema = schema(spine, features)?;
    let mut out = Vec::with_capacity(spine.batches.len());
    let mut offset = 0;
    for b in &spine.batches {
        let n = b.num_rows();
        let mut cols: Vec<ArrayRef> = b.columns().to_vec();
        for f in features {
            cols.push(to_array(&f.name, f.ty, &f.values[offset..offset + n])?);
        }
        out.push(RecordBatch::try_new(schema.clone(), cols)?);
        offset += n;
    }
    Ok((schema, out))
}

/// Write the training set to `path` (Snappy-compressed Parquet).
pub fn write(path: &Path, spine: &Spine, features: &[FeatureColumn]) -> Result<(), WriteError> {
    let (schema, batches) = batches(spine, features)?;
    let file = File::create(path).map_err(|source| WriteError::Create { path: path.display().to_string(), source })?;
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut w = ArrowWriter::try_new(file, schema, Some(props))?;
    for b in &batches {
        w.write(b)?;
    }
    w.close()?;
    Ok(())
}
