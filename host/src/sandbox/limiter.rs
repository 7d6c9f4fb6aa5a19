//! Memory cap per instance, with peak tracking for recycling and a record of refused growth so a
//! following trap can be reported as "out of memory".

use wasmtime::ResourceLimiter;

pub struct MemoryLimiter {
    cap: usize,
    /// Sum of all linear memories' current sizes.
    current: usize,
    /// Largest size a refused `memory.grow` asked for, since the last reset.
    refused: Option<usize>,
}

impl MemoryLimiter {
    pub fn new(cap: usize) -> Self {
        Self { cap, current: 0, refused: None }
    }
    pub fn cap(&self) -> usize {
        self.cap
    }
    pub fn current(&self) -> usize {
        self.current
    }
    /// Take the refused-growth record (cleared for the next call).
    pub fn take_refused(&mut self) -> Option<usize> {
        self.refused.take()
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.current - current.min(self.current) + desired;
        if total > self.cap {
            self.refused = Some(self.refused.map_or(total, |r| r.max(total)));
            return Ok(false);
        }
        self.current = total;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        // Tables hold function references; interpreted guests need thousands, nobody needs millions.
        Ok(desired <= 1_000_000)
    }
}
