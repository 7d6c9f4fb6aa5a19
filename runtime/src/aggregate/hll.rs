//! HyperLogLog (p = 12: 4096 one-byte registers, ~1.6% standard error) over xxh3-64 hashes.
//!
//! Register updates are `(index, rank)` pairs so a store can merge them with register-wise max
//! (Redis: `GETRANGE`/`SETRANGE` inside the write script), which no HLL crate exposes; the hash is
//! the well-kept `xxhash-rust` xxh3, so sketches are stable across versions and machines.

pub const P: u32 = 12;
pub const REGISTERS: usize = 1 << P;

/// The register and rank a value sets.
pub fn register_of(bytes: &[u8]) -> (u16, u8) {
    let h = xxhash_rust::xxh3::xxh3_64(bytes);
    let idx = (h >> (64 - P)) as u16;
    let rest = h << P;
    let rank = (rest.leading_zeros().min(64 - P) + 1) as u8;
    (idx, rank)
}

/// Estimate the cardinality of merged registers (bias-corrected with linear counting for small
/// cardinalities, as in the original HLL paper).
pub fn estimate(registers: &[u8]) -> f64 {
    let m = REGISTERS as f64;
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    let mut sum = 0.0;
    let mut zeros = 0usize;
    for i in 0..REGISTERS {
        let r = registers.get(i).copied().unwrap_or(0);
        if r == 0 {
            zeros += 1;
        }
        sum += 2f64.powi(-i32::from(r));
    }
    let raw = alpha * m * m / sum;
    if raw <= 2.5 * m && zeros > 0 { m * (m / zeros as f64).ln() } else { raw }
}

/// Register-wise max of `src` into `dst` (both up to `REGISTERS` long; missing bytes are 0).
pub fn merge_into(dst: &mut Vec<u8>, src: &[u8]) {
    if dst.len() < src.len() {
        dst.resize(src.len(), 0);
    }
    for (d, s) in dst.iter_mut().zip(src) {
        *d = (*d).max(*s);
    }
}
