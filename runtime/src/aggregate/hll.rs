//! HyperLogLog (p = 12: 4096 one-byte registers, ~1.6% standard error) over xxh3-64 hashes.
//!
//! Register updates are `(index, rank)` pairs so a store can merge them with register-wise max
//! inside its write script, which no HLL crate exposes; the hash is the well-kept `xxhash-rust`
//! xxh3, so sketches are stable across versions and machines.
//!
//! ## Stored encodings
//! A tile's sketch usually holds few registers (a minute of one user's events), so it is
//! stored **sparse** until it has more than [`SPARSE_MAX`] registers: [`SPARSE_TAG`], then
//! 3 bytes per set register (index big-endian, rank), by index. Past that it becomes **dense**:
//! one byte per register (all [`REGISTERS`] of them when converted; a dense sketch written
//! before sparse sketches existed may be shorter: missing registers are 0). A dense sketch never
//! starts with [`SPARSE_TAG`] (ranks are at most 64 − P + 1 = 53). [`update`] is the one
//! definition of an update; the Redis write script implements it again in Lua, byte for byte
//! (checked by `tests/tests/all/aggregate.rs`), and readers merge either form ([`merge_into`]).
//! Size: a sparse tile of n registers is 1 + 3n bytes (≤ 1,537), a dense one 4,096.

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

/// First byte of a sparse sketch (see the module doc).
pub const SPARSE_TAG: u8 = 0xFF;

/// Most registers a sparse sketch holds; an update past it converts the sketch to dense.
pub const SPARSE_MAX: usize = 512;

/// Whether a stored sketch is sparse (an empty one is treated as a new, sparse sketch).
fn is_sparse(stored: &[u8]) -> bool {
    stored.first().is_none_or(|b| *b == SPARSE_TAG)
}

/// The `(index, rank)` entries of a sparse sketch.
fn sparse_entries(stored: &[u8]) -> impl Iterator<Item = (u16, u8)> + '_ {
    stored.get(1..).unwrap_or_default().chunks_exact(3).map(|e| (u16::from_be_bytes([e[0], e[1]]), e[2]))
}

/// Register-wise max of a stored sketch `src` (dense or sparse) into the dense registers `dst`
/// (missing bytes are 0).
pub fn merge_into(dst: &mut Vec<u8>, src: &[u8]) {
    if !src.is_empty() && is_sparse(src) {
        for (i, r) in sparse_entries(src) {
            raise(dst, i, r);
        }
        return;
    }
    if dst.len() < src.len() {
        dst.resize(src.len(), 0);
    }
    for (d, s) in dst.iter_mut().zip(src) {
        *d = (*d).max(*s);
    }
}

/// Raise register `i` of dense registers to at least `rank` (growing them as needed).
fn raise(dense: &mut Vec<u8>, i: u16, rank: u8) {
    let i = usize::from(i);
    if i >= REGISTERS {
        return;
    }
    if dense.len() <= i {
        dense.resize(i + 1, 0);
    }
    dense[i] = dense[i].max(rank);
}

/// Apply register updates to a stored sketch (empty: none yet), in its encoding: a dense sketch
/// stays dense; a sparse one stays sparse while it holds at most [`SPARSE_MAX`] registers, else
/// becomes dense with every register.
pub fn update(stored: &mut Vec<u8>, updates: &[(u16, u8)]) {
    if !is_sparse(stored) {
        for (i, r) in updates {
            raise(stored, *i, *r);
        }
        return;
    }
    let mut regs: std::collections::BTreeMap<u16, u8> = sparse_entries(stored).collect();
    for (i, r) in updates.iter().filter(|(i, _)| usize::from(*i) < REGISTERS) {
        let cur = regs.entry(*i).or_insert(0);
        *cur = (*cur).max(*r);
    }
    stored.clear();
    if regs.len() > SPARSE_MAX {
        stored.resize(REGISTERS, 0);
        for (i, r) in regs {
            stored[usize::from(i)] = r;
        }
        return;
    }
    stored.reserve(1 + 3 * regs.len());
    stored.push(SPARSE_TAG);
    for (i, r) in regs {
        stored.extend_from_slice(&i.to_be_bytes());
        stored.push(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense_of(stored: &[u8]) -> Vec<u8> {
        let mut d = Vec::new();
        merge_into(&mut d, stored);
        d.resize(REGISTERS, 0);
        d
    }

    #[test]
    fn sketches_stay_sparse_until_the_threshold_and_merge_the_same_either_way() {
        let mut s = Vec::new();
        update(&mut s, &[(7, 3), (2, 1), (7, 2)]);
        assert_eq!(s, [SPARSE_TAG, 0, 2, 1, 0, 7, 3], "sorted by index, max rank kept");
        let mut dense = vec![0u8; REGISTERS];
        for i in 2..SPARSE_MAX as u16 {
            update(&mut s, &[(i * 7, 1 + (i % 5) as u8)]);
            dense[usize::from(i * 7)] = dense[usize::from(i * 7)].max(1 + (i % 5) as u8);
        }
        dense[2] = dense[2].max(1);
        dense[7] = dense[7].max(3);
        assert_eq!(s[0], SPARSE_TAG, "{} registers: still sparse", sparse_entries(&s).count());
        assert_eq!(s.len(), 1 + 3 * SPARSE_MAX);
        assert_eq!(dense_of(&s), dense);
        update(&mut s, &[(4095, 9)]);
        dense[4095] = 9;
        assert_eq!((s.len(), &s), (REGISTERS, &dense), "past the threshold: dense, every register");
        update(&mut s, &[(1, 4)]);
        dense[1] = 4;
        assert_eq!(s, dense, "dense stays dense");
        // A short dense sketch (written before sparse sketches) is merged and updated in place.
        let mut old = vec![0u8, 3, 0, 5];
        update(&mut old, &[(5, 2)]);
        assert_eq!(old, [0, 3, 0, 5, 0, 2]);
        assert_eq!(estimate(&dense_of(&s)).round(), estimate(&dense).round());
    }
}
