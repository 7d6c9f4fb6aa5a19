//! Which tiles a window read covers (the semantics in the module docs, in code).
//!
//! A window with an offset (`Window::Sliding { offset, .. }`, `offset > 0`) is the same run of
//! `len / g` tiles shifted back by `offset / g` tiles: complete tiles only, so it covers
//! `end − len ≤ e < end` with `end = floor(t/g)·g + g − offset`.
//!
//! **Roll-ups**: a window with a roll-up size `G` (a multiple of `g`) reads the same rows from
//! fewer tiles: every coarse tile `[c, c + G)` (`c` a multiple of `G`) that lies inside the run of
//! fine tiles replaces its `G/g` fine tiles, so a read touches at most `2(G/g − 1) + len/G`
//! tiles instead of `len/g`. Every function merges tiles exactly, so the values are the same
//! (decayed sums up to their weights' quantization, which is relative to each tile's end).

use super::spec::Window;

/// Start of the tile of size `g` containing `t`.
pub fn tile_start(t: i64, g: i64) -> i64 {
    t.div_euclid(g) * g
}

/// The tiles `(size, start)` covered by window `w` read at `t`, oldest first; for lifetime, the
/// single lifetime tile `(0, 0)`.
pub fn tiles_for(w: Window, t: i64) -> Vec<(i64, i64)> {
    let (Some(len), Some(g)) = (w.length(), w.tile()) else { return vec![(0, 0)] };
    let last = tile_start(t, g) - w.offset();
    let first = last - (len / g - 1) * g;
    let mut tiles = Vec::new();
    let mut s = first;
    while s <= last {
        match w.rollup() {
            // A whole coarse tile starts here and ends within the run.
            Some(big) if s.rem_euclid(big) == 0 && s + big - g <= last => {
                tiles.push((big, s));
                s += big;
            }
            _ => {
                tiles.push((g, s));
                s += g;
            }
        }
    }
    tiles
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
/// plus offset — of a window using `g` as its tile or its roll-up, plus one tile of slack).
pub fn retention(g: i64, windows: impl Iterator<Item = Window>) -> i64 {
    windows
        .filter(|w| w.tile() == Some(g) || w.rollup() == Some(g))
        .filter_map(|w| w.reach())
        .map(|reach| reach + g)
        .max()
        .unwrap_or(0)
}

/// Every tile size the windows write: their tiles and roll-ups (lifetime is not included).
pub fn tile_sizes(windows: impl Iterator<Item = Window>) -> Vec<i64> {
    let mut sizes: Vec<i64> = windows.flat_map(|w| [w.tile(), w.rollup()]).flatten().collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::spec::{HOUR, MINUTE};

    #[test]
    fn a_rollup_replaces_the_fine_tiles_it_covers() {
        let w = Window::parse_with_tiles("2h", None, Some(10 * MINUTE)).unwrap();
        // Read at 03:25:30: fine tiles 01:26 .. 03:25.
        let t = 3 * HOUR + 25 * MINUTE + 30_000;
        let tiles = tiles_for(w, t);
        let fine = tiles_for(Window::parse("2h").unwrap(), t);
        assert_eq!(fine.len(), 120);
        // 01:26..01:29 (4 fine), 01:30..03:20 (11 coarse), 03:20..03:25 (6 fine).
        assert_eq!(tiles.len(), 4 + 11 + 6, "{tiles:?}");
        let covered: i64 = tiles.iter().map(|(g, _)| g).sum();
        assert_eq!(covered, 2 * HOUR);
        assert_eq!(tiles.first(), Some(&(MINUTE, HOUR + 26 * MINUTE)));
        assert_eq!(tiles.last(), Some(&(MINUTE, 3 * HOUR + 25 * MINUTE)));
        // Never a coarse tile reaching past the current fine tile.
        assert!(tiles.iter().all(|(g, s)| s + g <= 3 * HOUR + 26 * MINUTE));
        assert_eq!(tile_sizes([w].into_iter()), vec![MINUTE, 10 * MINUTE]);
        assert_eq!(retention(10 * MINUTE, [w].into_iter()), 2 * HOUR + 10 * MINUTE);
    }
}
