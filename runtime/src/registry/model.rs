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
