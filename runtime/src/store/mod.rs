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

pub mod embedded;
pub mod redis;

use std::collections::HashMap;

use async_trait::async_trait;

use crate::aggregate::ops::EntityOps;
use crate::aggregate::read::FieldSource;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("store: {0}")]
    Other(String),
}

impl StoreError {
    /// Whether retrying later may succeed (connection loss, timeouts, loading, ...).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Redis(e) => {
                e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() || e.is_io_error() || e.is_cluster_error()
                    || matches!(e.kind(), ::redis::ErrorKind::Server(::redis::ServerErrorKind::BusyLoading | ::redis::ServerErrorKind::TryAgain | ::redis::ServerErrorKind::ClusterDown | ::redis::ServerErrorKind::MasterDown))
            }
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
    Stale { watermark: i64 },
}

/// The stored fields of one entity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntityRecord {
    pub fields: HashMap<String, String>,
    pub hlls: HashMap<String, Vec<u8>>,
}

impl EntityRecord {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.hlls.is_empty()
    }
}

impl FieldSource for EntityRecord {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
    fn hll(&self, name: &str) -> Option<&[u8]> {
        self.hlls.get(name).map(Vec::as_slice)
    }
}

#[async_trait]
pub trait OnlineStore: Send + Sync {
    /// Apply a batch atomically (with its watermark, if any).
    async fn apply(&self, batch: &WriteBatch<'_>) -> Result<Applied, StoreError>;
    /// The watermark (next offset to apply) of a source partition.
    async fn watermark(&self, view: &str, source: &str, partition: i32) -> Result<Option<i64>, StoreError>;
    /// Read the given fields and HLL sketches of several entities in one round trip.
    async fn read(&self, view: &str, entities: &[&str], fields: &[String], hlls: &[String]) -> Result<Vec<EntityRecord>, StoreError>;
    /// Remove everything of a view.
    async fn delete_view(&self, view: &str) -> Result<(), StoreError>;
}
