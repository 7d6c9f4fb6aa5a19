//! JSONL sources: one JSON object per line; absent keys are null; blank lines are skipped.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::MaterializeError;
use super::cell::Cell;
use super::source::{Chunk, Columns, RowError, RowSource};

pub struct JsonlSource {
    path: PathBuf,
    lines: std::io::Lines<BufReader<File>>,
    columns: Columns,
    next_row: u64,
}

impl JsonlSource {
    pub fn open(path: &Path, columns: Columns) -> Result<Self, MaterializeError> {
        let f = File::open(path).map_err(|e| MaterializeError::Io { path: path.into(), source: e })?;
        Ok(Self { path: path.into(), lines: BufReader::new(f).lines(), columns, next_row: 0 })
    }
}

impl RowSource for JsonlSource {
    fn total_rows(&self) -> Option<u64> {
        None
    }

    fn next_chunk(&mut self, max: usize) -> Result<Option<Chunk>, MaterializeError> {
        let mut chunk = Chunk { first_row: self.next_row, ..Chunk::default() };
        while (chunk.len as usize) < max {
            let Some(line) = self.lines.next() else { break };
            let line = line.map_err(|e| MaterializeError::Io { path: self.path.clone(), source: e })?;
            if line.trim().is_empty() {
                continue;
            }
            let row = self.next_row;
            self.next_row += 1;
            chunk.len += 1;
            let obj = match serde_json::from_str::<serde_json::Value>(&line) {
                Ok(serde_json::Value::Object(m)) => m,
                Ok(_) => {
                    chunk.errors.push(RowError { row, message: "not a JSON object".into() });
                    continue;
                }
                Err(e) => {
                    chunk.errors.push(RowError { row, message: format!("invalid JSON: {e}") });
                    continue;
                }
            };
            let cell = |name: &str| obj.get(name).map_or(Cell::Null, Cell::from_json);
            match self.columns.row(
                cell(&self.columns.entity),
                cell(&self.columns.timestamp),
                self.columns.features.iter().map(|(f, _)| cell(f)),
            ) {
                Ok(r) => chunk.rows.push(r),
                Err(message) => chunk.errors.push(RowError { row, message }),
            }
        }
        Ok((chunk.len > 0).then_some(chunk))
    }
}
