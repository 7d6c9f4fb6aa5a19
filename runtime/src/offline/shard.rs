//! Sharding a training-data job by entity, so that any scheduler (Kubernetes indexed jobs, Spark,
//! Ray, a shell loop) can run one job over many machines.
//!
//! `--shard I/N` keeps the spine rows whose entity falls in shard `I` of `N` and nothing else
//! changes: each shard replays the whole event history but keeps only its entities' rows (the
//! sweep already keeps only the rows of entities its spine names), so a row's features depend
//! only on its own entity's history and are the same bits in a shard as in the unsharded job. The
//! `N` part files together hold every spine row exactly once; concatenated and put back in spine
//! order they equal the unsharded output.
//!
//! An entity's shard is `xxh3_64(entity key bytes) mod N` (XXH3, 64-bit, seed 0: stable across
//! machines, releases and languages; `xxhash.xxh3_64_intdigest` in Python). Rows whose entity is
//! null go to shard 1. Every shard reads every event: with events already partitioned by entity
//! (Kafka keys, Hive directories), give each shard only its own files to save the reading.

use std::fmt;
use std::str::FromStr;

use arrow_array::{BooleanArray, RecordBatch};
use xxhash_rust::xxh3::xxh3_64;

use super::columns::TextColumn;
use super::spine::{Spine, SpineError};

/// Shard `index` (0-based) of `count`; written and parsed as `I/N` with `I` from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

/// Most shards a job may be split into.
pub const MAX_SHARDS: u32 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shard `{given}`: {why} (expected I/N with 1 <= I <= N <= {MAX_SHARDS}, e.g. 2/8)")]
pub struct ShardParseError {
    given: String,
    why: &'static str,
}

impl Shard {
    /// Shard `index` (0-based) of `count`; `None` unless `index < count <= MAX_SHARDS`.
    pub fn new(index: u32, count: u32) -> Option<Self> {
        (index < count && count <= MAX_SHARDS).then_some(Self { index, count })
    }

    /// The 0-based index.
    pub fn index(self) -> u32 {
        self.index
    }

    pub fn count(self) -> u32 {
        self.count
    }

    /// The 0-based shard of `entity` among `count` (null entities: 0).
    pub fn of(entity: Option<&str>, count: u32) -> u32 {
        entity.map_or(0, |e| (xxh3_64(e.as_bytes()) % u64::from(count)) as u32)
    }

    pub fn owns(self, entity: Option<&str>) -> bool {
        Self::of(entity, self.count) == self.index
    }

    /// The spine rows of this shard, in spine order; `column` holds the entity keys.
    pub fn select(self, spine: &Spine, column: &str) -> Result<Spine, SpineError> {
        spine.entities(column)?; // names a missing or mistyped column as the job would
        let mut batches = Vec::with_capacity(spine.batches.len());
        for b in &spine.batches {
            let keep = self.mask(b, column)?;
            let kept = arrow_select::filter::filter_record_batch(b, &keep)
                .map_err(|e| SpineError::Column { column: column.into(), message: e.to_string() })?;
            batches.push(kept);
        }
        Ok(Spine::new(spine.schema.clone(), batches))
    }

    fn mask(self, batch: &RecordBatch, column: &str) -> Result<BooleanArray, SpineError> {
        let a = batch
            .column_by_name(column)
            .ok_or_else(|| SpineError::Column { column: column.into(), message: "is missing from a batch".into() })?;
        let keys = TextColumn::new(a).map_err(|message| SpineError::Column { column: column.into(), message })?;
        Ok((0..batch.num_rows()).map(|i| Some(self.owns(keys.get(i).as_deref()))).collect())
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| ShardParseError { given: s.to_string(), why };
        let (i, n) = s.split_once('/').ok_or_else(|| err("no `/`"))?;
        let i: u32 = i.trim().parse().map_err(|_| err("I is not a whole number"))?;
        let n: u32 = n.trim().parse().map_err(|_| err("N is not a whole number"))?;
        if n == 0 || n > MAX_SHARDS {
            return Err(err("N out of range"));
        }
        if i == 0 || i > n {
            return Err(err("I out of range (shards are numbered from 1)"));
        }
        Ok(Self { index: i - 1, count: n })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_based_and_names_what_is_wrong() {
        assert_eq!("1/4".parse(), Ok(Shard::new(0, 4).unwrap()));
        assert_eq!("4/4".parse::<Shard>().unwrap().to_string(), "4/4");
        for (bad, why) in [
            ("0/4", "numbered from 1"),
            ("5/4", "I out of range"),
            ("1/0", "N out of range"),
            ("3", "no `/`"),
            ("a/4", "I is not"),
            ("1/x", "N is not"),
        ] {
            let e = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn every_entity_is_in_exactly_one_shard_and_the_hash_is_pinned() {
        // Pinned (values from Python's `xxhash.xxh3_64_intdigest`), so that a change of hash, which
        // would move entities between the part files of one job run by two releases, cannot pass.
        assert_eq!(xxh3_64(b""), 3_244_421_341_483_603_138);
        assert_eq!(xxh3_64(b"u1"), 11_367_126_444_297_510_385);
        assert_eq!(Shard::of(Some("user-42"), 1000), (5_836_184_775_705_692_621u64 % 1000) as u32);
        let n = 7;
        let mut sizes = [0u32; 7];
        for k in 0..7000 {
            let key = format!("user-{k}");
            let owners: Vec<u32> = (0..n).filter(|&i| Shard::new(i, n).unwrap().owns(Some(&key))).collect();
            assert_eq!(owners.len(), 1, "{key}");
            sizes[owners[0] as usize] += 1;
        }
        assert!(sizes.iter().all(|&s| (800..1200).contains(&s)), "balanced: {sizes:?}");
        assert!(Shard::new(0, 3).unwrap().owns(None));
        assert!(!Shard::new(1, 3).unwrap().owns(None));
    }
}
