//! What the registry stores (JSON in Redis hashes).

use serde::{Deserialize, Serialize};

/// Per-tenant limits. Exceeding one affects only that tenant and is counted by limit name.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quotas {
    /// CPU deadline per transform call (ms); views may ask for less, not more.
    pub deadline_ms: u64,
    /// Memory per instance (MiB); views may ask for less, not more.
    pub memory_mib: usize,
    /// Live instances per transform and node (more concurrent calls wait for one).
    pub max_instances: usize,
    /// Views (stream, batch, request) of the tenant.
    pub max_views: usize,
    /// Requests per second per node (token bucket; burst = one second's worth; 0 = unlimited).
    pub requests_per_second: u32,
    /// Largest component upload (MiB).
    pub upload_mib: usize,
    /// Events in one push request (413 `too_many_events` beyond).
    pub push_events: usize,
    /// Feature rows one batch (a push, a Kafka batch) may produce (422 `too_many_rows`).
    pub batch_rows: usize,
    /// Distinct entities one batch may write (422 `too_many_entities`).
    pub batch_entities: usize,
    /// Output of one transform call, and of one batch with its re-runs (MiB).
    pub output_mib: usize,
    /// Thread CPU time one batch may spend in the guest, re-runs of single events included (ms);
    /// the events left when it is spent fail with `batch_budget_exceeded`.
    pub batch_cpu_ms: u64,
    /// Thread CPU time one request (e.g. an inline training-data job, all its batches) may spend
    /// in guests (ms); the events left when it is spent fail with `batch_budget_exceeded`.
    pub request_cpu_ms: u64,
    /// Largest `breaker_trip_after` a view may set.
    pub breaker_trip_after: u32,
    /// Transform calls of the tenant running at once on a node, across all its views: its
    /// share of the node's cores (0 = one per core).
    pub compute_slots: usize,
    /// Longest entity key a transform may emit (bytes).
    pub entity_key_bytes: usize,
    /// Entity records (one per entity per view) the tenant may keep in the shared online store;
    /// at the quota, existing entities keep updating and new ones are refused (see
    /// [`crate::store::quota`]). The default, 1M records, is ~0.5–2 GB of Redis memory at
    /// typical record sizes (a few to a few dozen features and tiles per record).
    pub max_stored_entities: u64,
    /// Versions kept per transform; the oldest inactive ones beyond are deleted.
    pub versions_per_transform: usize,
    /// Wall-clock time one upload may spend compiling (s), and CPU time this times the cores;
    /// `compile_budget_exceeded` beyond. The default leaves room for the largest first-class
    /// guests (componentize-py's ~18 MB components: ~12 s on an idle 2-core machine).
    pub compile_seconds: u64,
    /// Memory one upload's compilation may use (MiB); `compile_budget_exceeded` beyond.
    pub compile_memory_mib: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            deadline_ms: 50,
            memory_mib: 64,
            max_instances: 8,
            max_views: 20,
            requests_per_second: 2000,
            upload_mib: 50,
            push_events: 10_000,
            batch_rows: 100_000,
            batch_entities: 20_000,
            output_mib: 16,
            batch_cpu_ms: 250,
            request_cpu_ms: 2000,
            breaker_trip_after: 10,
            compute_slots: 1,
            entity_key_bytes: 1024,
            max_stored_entities: 1_000_000,
            versions_per_transform: 10,
            compile_seconds: 60,
            compile_memory_mib: 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub name: String,
    pub disabled: bool,
    pub quotas: Quotas,
    pub created_ms: i64,
}

/// An API key, stored under the sha256 of the secret (the secret itself is never stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Public id (first 16 hex of the hash), to list and revoke.
    pub id: String,
    pub tenant: String,
    pub created_ms: i64,
    pub revoked: bool,
}

/// One uploaded version of a transform (content-addressed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    /// sha256 of the component (hex): the version id.
    pub id: String,
    pub world: String,
    /// `describe()` output: name, version, outputs, params, reads.
    pub info: serde_json::Value,
    pub bytes: usize,
    pub compile_ms: u64,
    pub uploaded_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransformRecord {
    pub name: String,
    pub active: Option<String>,
    pub versions: Vec<Version>,
}

impl TransformRecord {
    pub fn version(&self, id: &str) -> Option<&Version> {
        self.versions.iter().find(|v| v.id == id)
    }
    pub fn active_version(&self) -> Option<&Version> {
        self.active.as_deref().and_then(|a| self.version(a))
    }
}

/// A view as submitted through the API: `kind` plus the manifest table's fields, with
/// `transform` naming an uploaded transform (its active version runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewRecord {
    pub name: String,
    pub kind: ViewKind,
    pub config: serde_json::Value,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ViewKind {
    Stream,
    Batch,
    Request,
}
