//! CSV sources: a header row naming the columns; empty cells are null.

use std::fs::File;
use std::path::Path;

use super::MaterializeError;
use super::cell::Cell;
use super::source::{Chunk, Columns, RowError, RowSource};

pub struct CsvSource {
    reader: csv::Reader<File>,
    columns: Columns,
    /// Indices of entity, timestamp, then each feature.
    idx: Vec<usize>,
    total: u64,
    next_row: u64,
    record: csv::StringRecord,
}

impl CsvSource {
    pub fn open(path: &Path, columns: Columns) -> Result<Self, MaterializeError> {
        let io = |e: std::io::Error| MaterializeError::Io { path: path.into(), source: e };
        let total = count_lines(path).map_err(io)?.saturating_sub(1);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_path(path)
            .map_err(|e| MaterializeError::Parse { path: path.into(), message: e.to_string() })?;
        let headers = reader
            .headers()
            .map_err(|e| MaterializeError::Parse { path: path.into(), message: e.to_string() })?
            .clone();
        let find = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| MaterializeError::MissingColumn { path: path.into(), column: name.into() })
        };
        let mut idx = vec![find(&columns.entity)?, find(&columns.timestamp)?];
        for (f, _) in &columns.features {
            idx.push(find(f)?);
        }
        Ok(Self { reader, columns, idx, total, next_row: 0, record: csv::StringRecord::new() })
    }
}

fn count_lines(path: &Path) -> std::io::Result<u64> {
    use std::io::Read;
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            return Ok(n);
        }
        n += buf[..k].iter().filter(|b| **b == b'\n').count() as u64;
    }
}

impl RowSource for CsvSource {
    fn total_rows(&self) -> Option<u64> {
        Some(self.total)
    }

    fn next_chunk(&mut self, max: usize) -> Result<Option<Chunk>, MaterializeError> {
        let mut chunk = Chunk { first_row: self.next_row, ..Chunk::default() };
        while (chunk.len as usize) < max {
            let row = self.next_row;
            match self.reader.read_record(&mut self.record) {
                Ok(false) => break,
                Ok(true) => {
                    let cell = |i: usize| {
                        self.record.get(i).map_or(Cell::Null, |s| if s.is_empty() { Cell::Null } else { Cell::Str(s) })
                    };
                    match self.columns.row(cell(self.idx[0]), cell(self.idx[1]), self.idx[2..].iter().map(|i| cell(*i)))
                    {
                        Ok(r) => chunk.rows.push(r),
                        Err(message) => chunk.errors.push(RowError { row, message }),
                    }
                }
                Err(e) => chunk.errors.push(RowError { row, message: e.to_string() }),
            }
            self.next_row += 1;
            chunk.len += 1;
        }
        Ok((chunk.len > 0).then_some(chunk))
    }
}
