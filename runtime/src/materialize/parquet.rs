//! Parquet sources (arrow-rs), read in record batches of only the needed columns.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use super::MaterializeError;
use super::cell::Cell;
use super::source::{Chunk, Columns, RowError, RowSource};

pub struct ParquetSource {
    path: PathBuf,
    reader: ParquetRecordBatchReader,
    columns: Columns,
    /// Position in the projected batches of entity, timestamp, then each feature.
    idx: Vec<usize>,
    total: u64,
    next_row: u64,
    /// The current record batch and the next row in it.
    current: Option<(RecordBatch, usize)>,
}

impl ParquetSource {
    pub fn open(path: &Path, columns: Columns) -> Result<Self, MaterializeError> {
        let parse = |message: String| MaterializeError::Parse { path: path.into(), message };
        let file = File::open(path).map_err(|e| MaterializeError::Io { path: path.into(), source: e })?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parse(e.to_string()))?;
        let total = builder.metadata().file_metadata().num_rows().max(0) as u64;
        let schema = builder.schema().clone();
        let mut roots = Vec::new();
        for name in
            std::iter::once(&columns.entity).chain([&columns.timestamp]).chain(columns.features.iter().map(|(f, _)| f))
        {
            let i = schema
                .index_of(name)
                .map_err(|_| MaterializeError::MissingColumn { path: path.into(), column: name.clone() })?;
            roots.push(i);
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let reader = builder.with_projection(mask).with_batch_size(8192).build().map_err(|e| parse(e.to_string()))?;
        // The projection keeps the file's column order: look each column up again.
        let projected = arrow_array::RecordBatchReader::schema(&reader);
        let idx = std::iter::once(&columns.entity)
            .chain([&columns.timestamp])
            .chain(columns.features.iter().map(|(f, _)| f))
            .map(|n| projected.index_of(n).map_err(|e| parse(e.to_string())))
            .collect::<Result<_, _>>()?;
        Ok(Self { path: path.into(), reader, columns, idx, total, next_row: 0, current: None })
    }
}

/// One cell of an Arrow array.
pub fn cell_at(a: &ArrayRef, i: usize) -> Result<Cell<'_>, String> {
    if a.is_null(i) {
        return Ok(Cell::Null);
    }
    Ok(match a.data_type() {
        DataType::Int64 => Cell::Int(a.as_primitive::<Int64Type>().value(i)),
        DataType::Int32 => Cell::Int(a.as_primitive::<Int32Type>().value(i).into()),
        DataType::Int16 => Cell::Int(a.as_primitive::<Int16Type>().value(i).into()),
        DataType::Int8 => Cell::Int(a.as_primitive::<Int8Type>().value(i).into()),
        DataType::UInt32 => Cell::Int(a.as_primitive::<UInt32Type>().value(i).into()),
        DataType::UInt16 => Cell::Int(a.as_primitive::<UInt16Type>().value(i).into()),
        DataType::UInt8 => Cell::Int(a.as_primitive::<UInt8Type>().value(i).into()),
        DataType::UInt64 => {
            let v = a.as_primitive::<UInt64Type>().value(i);
            Cell::Int(i64::try_from(v).map_err(|_| format!("unsigned value {v} does not fit int64"))?)
        }
        DataType::Float64 => Cell::Float(a.as_primitive::<Float64Type>().value(i)),
        DataType::Float32 => Cell::Float(a.as_primitive::<Float32Type>().value(i).into()),
        DataType::Boolean => Cell::Bool(a.as_boolean().value(i)),
        DataType::Utf8 => Cell::Str(a.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Cell::Str(a.as_string::<i64>().value(i)),
        DataType::Utf8View => Cell::Str(a.as_string_view().value(i)),
        DataType::Timestamp(unit, _) => Cell::TimestampMs(match unit {
            TimeUnit::Second => a.as_primitive::<TimestampSecondType>().value(i) * 1000,
            TimeUnit::Millisecond => a.as_primitive::<TimestampMillisecondType>().value(i),
            TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().value(i).div_euclid(1000),
            TimeUnit::Nanosecond => a.as_primitive::<TimestampNanosecondType>().value(i).div_euclid(1_000_000),
        }),
        DataType::Date32 => Cell::TimestampMs(i64::from(a.as_primitive::<Date32Type>().value(i)) * 86_400_000),
        DataType::Date64 => Cell::TimestampMs(a.as_primitive::<Date64Type>().value(i)),
        other => return Err(format!("unsupported Parquet column type {other}")),
    })
}

impl RowSource for ParquetSource {
    fn total_rows(&self) -> Option<u64> {
        Some(self.total)
    }

    fn next_chunk(&mut self, max: usize) -> Result<Option<Chunk>, MaterializeError> {
        let mut chunk = Chunk { first_row: self.next_row, ..Chunk::default() };
        while (chunk.len as usize) < max {
            let (batch, pos) = match &mut self.current {
                Some((b, p)) if *p < b.num_rows() => (b.clone(), p),
                _ => match self.reader.next() {
                    None => break,
                    Some(b) => {
                        let b =
                            b.map_err(|e| MaterializeError::Parse { path: self.path.clone(), message: e.to_string() })?;
                        self.current = Some((b, 0));
                        continue;
                    }
                },
            };
            let cols = batch.columns();
            let end = (*pos + max - chunk.len as usize).min(batch.num_rows());
            for i in *pos..end {
                let row = self.next_row;
                self.next_row += 1;
                chunk.len += 1;
                let idx = &self.idx;
                let cell = |c: usize| cell_at(&cols[idx[c]], i);
                let built = (|| {
                    let feats: Vec<Cell<'_>> = (2..idx.len()).map(cell).collect::<Result<_, _>>()?;
                    self.columns.row(cell(0)?, cell(1)?, feats.into_iter())
                })();
                match built {
                    Ok(r) => chunk.rows.push(r),
                    Err(message) => chunk.errors.push(RowError { row, message }),
                }
            }
            *pos = end;
        }
        Ok((chunk.len > 0).then_some(chunk))
    }
}
