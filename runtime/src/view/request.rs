//! Request (on-demand) feature views and feature services.

use std::path::PathBuf;

use serde::Deserialize;

/// A request transform served as a view: `describe()` declares its request params and the stored
/// `view:feature`s it reads; the host prefetches those and calls it once per request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestViewConfig {
    pub name: String,
    pub transform: PathBuf,
    /// CPU deadline per call (all entities of one request), in milliseconds.
    #[serde(default = "default_deadline")]
    pub deadline_ms: u64,
    #[serde(default = "default_memory")]
    pub memory_mib: usize,
}

fn default_deadline() -> u64 {
    20
}
fn default_memory() -> usize {
    64
}

/// A named list of `view:feature`s (Feast's `feature_service`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureServiceConfig {
    pub name: String,
    pub features: Vec<String>,
}
