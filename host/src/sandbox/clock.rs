//! Deterministic time and randomness for guests.
//!
//! WASI's wall and monotonic clocks read the event time (stream) or request time (request) of
//! the current call, never the host's clock, so an offline replay sees the same "now" as the
//! online run. Random (secure and insecure alike) is a SplitMix64 stream reseeded before every
//! call from the call's inputs. Either being read is recorded, so the stream runner can fall back
//! to one event per call and give each event its own time and seed (see `transform::stream`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

#[derive(Default)]
struct Shared {
    now_ms: AtomicI64,
    rng_state: AtomicU64,
    observed: AtomicBool,
}

/// Shared handle to the clock and RNG of one instance.
#[derive(Clone, Default)]
pub struct CallClock {
    shared: Arc<Shared>,
}

impl CallClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the time and seed for the next call and clear the "observed" flag.
    pub fn begin_call(&self, now_ms: i64, seed: u64) {
        self.shared.now_ms.store(now_ms, Ordering::Relaxed);
        self.shared.rng_state.store(seed, Ordering::Relaxed);
        self.shared.observed.store(false, Ordering::Relaxed);
    }

    /// Whether the guest read the clock or random since `begin_call`.
    pub fn observed(&self) -> bool {
        self.shared.observed.load(Ordering::Relaxed)
    }

    pub(crate) fn wall(&self) -> WallClock {
        WallClock(self.clone())
    }
    pub(crate) fn monotonic(&self) -> MonotonicClock {
        MonotonicClock(self.clone())
    }
    pub(crate) fn rng(&self) -> SeededRng {
        SeededRng(self.clone())
    }

    fn now(&self) -> i64 {
        self.shared.observed.store(true, Ordering::Relaxed);
        self.shared.now_ms.load(Ordering::Relaxed)
    }
}

/// Derive a per-call seed from stable inputs (FNV-1a over the bytes, then mixed).
pub fn seed_from(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    splitmix(h)
}

fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub(crate) struct WallClock(CallClock);
impl HostWallClock for WallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.now().max(0) as u64)
    }
}

pub(crate) struct MonotonicClock(CallClock);
impl HostMonotonicClock for MonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        (self.0.now().max(0) as u64).saturating_mul(1_000_000)
    }
}

pub(crate) struct SeededRng(CallClock);
impl SeededRng {
    fn next(&mut self) -> u64 {
        let s = &self.0.shared;
        s.observed.store(true, Ordering::Relaxed);
        splitmix(s.rng_state.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed))
    }
}
impl rand::TryRng for SeededRng {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.next() as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.next())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}
