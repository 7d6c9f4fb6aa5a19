//! Which tiles a window read covers (the semantics in the module docs, in code).
//!
//! A window with an offset (`Window::Sliding { offset, .. }`, `offset > 0`) is the same run of `len / g` tiles shifted back by
//! `offset / g` tiles: complete tiles only, so it covers `end − len ≤ e < end` with
//! `end = floor(t/g)·g + g − offset`.

use super::spec::Window;

/// Start of the tile of size `g` containing `t`.
pub fn tile_start(t: i64, g: i64) -> i64 {
    t.div_euclid(g) * g
}

/// Tile starts (size `g = w.tile()`) covered by window `w` read at `t`, oldest first; for
/// lifetime, the single lifetime tile (start 0).
pub fn tiles_for(w: Window, t: i64) -> Vec<i64> {
    match (w.length(), w.tile()) {
        (Some(len), Some(g)) => {
            let last = tile_start(t, g) - w.offset();
            let n = len / g;
            (0..n).map(|i| last - (n - 1 - i) * g).collect()
        }
        _ => vec![0],
    }
}

/// Whether a row at event time `e` counts for window `w` read at `t`.
pub fn covers(w: Window, t: i64, e: i64) -> bool {
    if e > t {
        return false;
    }
    match (w.length(), w.tile()) {
        (Some(len), Some(g)) => {
            let end = tile_start(t, g) + g - w.offset();
            e >= end - len && e < end
        }
        _ => true,
    }
}

/// How long tiles of size `g` must be kept for the given windows (the longest reach — length
/// plus offset — of a window using `g`, plus one tile of slack).
pub fn retention(g: i64, windows: impl Iterator<Item = Window>) -> i64 {
    windows.filter(|w| w.tile() == Some(g)).filter_map(|w| w.reach()).map(|reach| reach + g).max().unwrap_or(0)
}
