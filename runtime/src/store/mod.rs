//! Online stores: where features, aggregation tiles and source watermarks live.
//!
//! Two real implementations share one contract (tested by the same suite in
//! `tests/tests/all/store_contract.rs`): [`redis::RedisStore`] for production (pipelined, one
//! atomic Lua script per batch) and [`embedded::EmbeddedStore`] for `wafer dev` and single-node use.
//!
//! **Effectively-once**: a batch from a partitioned source carries a [`SourceMark`]
//! (`first_offset..next_offset`). The store applies the batch's ops and advances the
//! `(view, source, partition)` watermark to `next_offset` atomically, and refuses a batch whose
//! `first_offset` is below the stored watermark ([`Applied::Stale`]); the pipeline reads the
//! watermark when it gets a partition and skips offsets below it, so a replay after a crash
//! never double-counts.

pub mod deadline;
pub mod embedded;
pub mod redis;

use std::sync::Arc;

use async_trait::async_trait;

use crate::aggregate::ops::EntityOps;
use crate::aggregate::read::FieldSource;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
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
            StoreError::Redis(e) => {
                e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout()
                    || e.is_io_error()
                    || e.is_cluster_error()
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
            StoreError::Timeout(_) => true,
            StoreError::Other(_) => false,
        }
    }
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// The watermark is already past this batch's first offset; nothing was written.
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
}

impl EntityRecord {
    /// A record with nothing stored yet.
    pub fn new(names: Arc<FieldNames>) -> Self {
        let (values, hlls) = (vec![None; names.fields.len()], vec![None; names.hlls.len()]);
        Self { names, values, hlls }
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

#[async_trait]
pub trait OnlineStore: Send + Sync {
    /// Apply a batch atomically (with its watermark, if any).
    async fn apply(&self, batch: &WriteBatch<'_>) -> Result<Applied, StoreError>;
    /// The watermark (next offset to apply) of a source partition.
    async fn watermark(&self, view: &str, source: &str, partition: i32) -> Result<Option<i64>, StoreError>;
    /// Read the given fields and HLL sketches of several entities in one round trip.
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
