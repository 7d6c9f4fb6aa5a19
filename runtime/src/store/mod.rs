//! Online stores: where features, aggregation tiles and source watermarks live.
//!
//! Two real implementations share one contract (tested by the same scenarios in
//! `tests/tests/all/aggregate.rs` and `tests/tests/all/cluster.rs`): [`redis::RedisStore`] for
//! production (a single Redis or a Redis Cluster; per-entity atomic scripts) and
//! [`embedded::EmbeddedStore`] for `wafer dev` and single-node use (one lock per batch).
//!
//! **Effectively-once**: a batch from a partitioned source carries a [`SourceMark`]
//! (`first_offset..next_offset`). Each entity of the batch is applied at most once per offset:
//! an entity that already holds offsets of the batch is not applied, and when it holds only the
//! start of the batch the store answers [`Applied::Stale`] with the first offset it lacks, which
//! the caller re-folds and writes again from there (see `redis`'s module doc for the argument).
//! The `(view, source, partition)` watermark advances to `next_offset` once every entity is
//! applied; the pipeline resumes a partition from it and skips offsets below it.
//! A push (no mark) may carry an idempotency key: each entity applies it at most once.
//!
//! **Quota**: a batch may carry its tenant's [`quota::EntityQuota`]; at the quota, entities the
//! batch would create are refused ([`Outcome::refused`]) while existing ones keep updating.

pub mod deadline;
pub mod embedded;
pub mod quota;
pub mod redis;

use std::sync::Arc;

use async_trait::async_trait;

use crate::aggregate::ops::EntityOps;
use crate::aggregate::read::FieldSource;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// The write may have been applied in part (a timeout, or a failure after some of the
    /// batch's calls succeeded): a retry is safe only with offsets or an idempotency key.
    #[error("redis (outcome unknown): {0}")]
    OutcomeUnknown(::redis::RedisError),
    /// `wait_replicas` was not reached in time: the write is on the master only.
    #[error("write acknowledged by {acked} replica(s), {wanted} required")]
    NotReplicated { acked: i64, wanted: u32 },
    #[error("store: {0}")]
    Other(String),
    /// A serving read missed its deadline ([`deadline::ReadDeadline`]).
    #[error("store: no answer within the serving deadline of {0:?}")]
    Timeout(std::time::Duration),
}

impl StoreError {
    /// Whether retrying later may succeed (connection loss, timeouts, loading, ...).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::NotReplicated { .. } => true,
            StoreError::Redis(e) | StoreError::OutcomeUnknown(e) => redis_is_transient(e),
            StoreError::Timeout(_) => true,
            StoreError::Other(_) => false,
        }
    }

    /// Whether part of the write may have been applied (see [`StoreError::OutcomeUnknown`]).
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, StoreError::OutcomeUnknown(_) | StoreError::NotReplicated { .. })
    }
}

/// Whether a Redis error may go away by itself: connection loss, timeouts, a server loading its
/// data, a cluster reconfiguring, or `BUSY` (another client's script is running past the
/// server's busy threshold).
pub fn redis_is_transient(e: &::redis::RedisError) -> bool {
    e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_io_error()
        || e.is_cluster_error()
        || e.code() == Some("BUSY")
        || matches!(
            e.kind(),
            ::redis::ErrorKind::Server(
                ::redis::ServerErrorKind::BusyLoading
                    | ::redis::ServerErrorKind::TryAgain
                    | ::redis::ServerErrorKind::ClusterDown
                    | ::redis::ServerErrorKind::MasterDown
            )
        )
}

/// Source position of a batch, for the effectively-once watermark.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceMark {
    /// Source name (e.g. the Kafka topic).
    pub source: String,
    pub partition: i32,
    /// Lowest offset in the batch.
    pub first_offset: i64,
    /// One past the highest offset in the batch: the watermark after applying it.
    pub next_offset: i64,
}

/// One batch of writes for one view.
#[derive(Debug, Clone)]
pub struct WriteBatch<'a> {
    /// Namespaced view id (`tenant/view`).
    pub view: &'a str,
    pub mark: Option<SourceMark>,
    pub entities: &'a [EntityOps],
    /// How long an entity's record lives after its last write (ms): the longer of the view's
    /// online TTL and its longest window.
    pub keep_ms: i64,
    /// Per tile size (ms), how long its tiles are needed; older tiles are deleted when a new tile
    /// starts. Lifetime tiles (size 0) are never deleted.
    pub retention: &'a [(i64, i64)],
    /// A push's idempotency key: each entity applies a batch with a given key at most once
    /// (remembered for [`redis::IDEMPOTENCY_TTL_MS`]). Unused with a `mark`.
    pub idempotency_key: Option<&'a str>,
    /// The tenant's cap on stored records: at the cap, entities new to the store are refused.
    pub quota: Option<&'a Arc<quota::EntityQuota>>,
}

/// What a write did: [`Applied`], and the entities a quota kept from being created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub applied: Applied,
    /// Indices (into [`WriteBatch::entities`]) of the entities not written because the tenant
    /// is at its [`quota::EntityQuota`]: they do not exist in the store and were not created.
    pub refused: Vec<usize>,
}

impl From<Applied> for Outcome {
    fn from(applied: Applied) -> Self {
        Self { applied, refused: Vec::new() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// Not (entirely) applied: the store already holds offsets of this batch. If `watermark`
    /// is inside the batch, the entities it names are applied up to `watermark` only and the
    /// rest of the batch was applied: write the batch's events from `watermark` on again.
    /// Otherwise (`watermark >= next_offset`) the whole batch was applied before.
    Stale {
        watermark: i64,
    },
}

/// The field and sketch names of one read, shared by every entity's [`EntityRecord`].
#[derive(Debug, Default, PartialEq)]
pub struct FieldNames {
    fields: Vec<String>,
    hlls: Vec<String>,
    /// `fields` is sorted: look names up by binary search.
    sorted: bool,
}

impl FieldNames {
    pub fn new(fields: &[String], hlls: &[String]) -> Arc<Self> {
        Arc::new(Self { fields: fields.to_vec(), hlls: hlls.to_vec(), sorted: fields.is_sorted() })
    }

    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    pub fn hlls(&self) -> &[String] {
        &self.hlls
    }

    fn field_pos(&self, name: &str) -> Option<usize> {
        if self.sorted {
            self.fields.binary_search_by(|f| f.as_str().cmp(name)).ok()
        } else {
            self.fields.iter().position(|f| f == name)
        }
    }
}

/// The stored fields of one entity, as read: values by position in the read's [`FieldNames`]
/// (no per-entity map or name copies).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntityRecord {
    names: Arc<FieldNames>,
    values: Vec<Option<String>>,
    hlls: Vec<Option<Vec<u8>>>,
    /// The store could not be read for this entity (its Cluster shard is down).
    unavailable: bool,
}

impl EntityRecord {
    /// A record with nothing stored yet.
    pub fn new(names: Arc<FieldNames>) -> Self {
        let (values, hlls) = (vec![None; names.fields.len()], vec![None; names.hlls.len()]);
        Self { names, values, hlls, unavailable: false }
    }

    /// A record that could not be read (e.g. its shard is down): served as `unavailable`.
    pub fn unavailable(names: Arc<FieldNames>) -> Self {
        Self { unavailable: true, ..Self::new(names) }
    }

    /// Whether the store could not be read for this entity.
    pub fn is_unavailable(&self) -> bool {
        self.unavailable
    }

    /// Set the value of the `i`-th field name (ignored past the end).
    pub fn set_field(&mut self, i: usize, value: String) {
        if let Some(v) = self.values.get_mut(i) {
            *v = Some(value);
        }
    }

    /// Set the `i`-th sketch (ignored past the end).
    pub fn set_hll(&mut self, i: usize, registers: Vec<u8>) {
        if let Some(v) = self.hlls.get_mut(i) {
            *v = Some(registers);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.iter().all(Option::is_none) && self.hlls.iter().all(Option::is_none)
    }
}

impl FieldSource for EntityRecord {
    fn field(&self, name: &str) -> Option<&str> {
        self.values.get(self.names.field_pos(name)?)?.as_deref()
    }
    fn hll(&self, name: &str) -> Option<&[u8]> {
        let i = self.names.hlls.iter().position(|h| h == name)?;
        self.hlls.get(i)?.as_deref()
    }
}

#[async_trait]
pub trait OnlineStore: Send + Sync {
    /// Apply a batch (with its watermark, if any), within its quota: see the module doc.
    async fn write(&self, batch: &WriteBatch<'_>) -> Result<Outcome, StoreError>;
    /// [`Self::write`] when only [`Applied`] matters (no quota, or refusals counted elsewhere).
    async fn apply(&self, batch: &WriteBatch<'_>) -> Result<Applied, StoreError> {
        Ok(self.write(batch).await?.applied)
    }
    /// The watermark (next offset to apply) of a source partition.
    async fn watermark(&self, view: &str, source: &str, partition: i32) -> Result<Option<i64>, StoreError>;
    /// Read the given fields and HLL sketches of several entities in one round trip. On a
    /// sharded store, an entity whose shard cannot be read in time comes back
    /// [`EntityRecord::unavailable`] (an error only when no entity could be read).
    async fn read(
        &self,
        view: &str,
        entities: &[&str],
        fields: &[String],
        hlls: &[String],
    ) -> Result<Vec<EntityRecord>, StoreError>;
    /// Remove everything of a view.
    async fn delete_view(&self, view: &str) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn positional_record_finds_values_by_name_sorted_or_not() {
        for fields in [names(&["a", "b", "c"]), names(&["c", "a", "b", "a"])] {
            let n = FieldNames::new(&fields, &names(&["h1"]));
            let mut r = EntityRecord::new(n.clone());
            assert!(r.is_empty());
            assert_eq!(r.field("a"), None);
            let pos_b = fields.iter().position(|f| f == "b").unwrap();
            r.set_field(pos_b, "2".into());
            r.set_field(99, "ignored".into());
            assert!(!r.is_empty());
            assert_eq!((r.field("b"), r.field("a"), r.field("zz")), (Some("2"), None, None));
            r.set_hll(0, vec![1, 2]);
            assert_eq!((r.hll("h1"), r.hll("h2")), (Some(&[1u8, 2][..]), None));
        }
    }
}
