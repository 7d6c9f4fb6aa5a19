//! **Where a tenant's limits are enforced** and what a tenant is on a node: its views, catalog,
//! quotas and rate limiter ([`TenantApp`]), built from a manifest or from the registry
//! ([`TenantSpec`]). Quotas ([`Quotas`]): CPU deadline and memory per call (views may not ask
//! for more), live instances per transform and concurrent calls across all the tenant's views
//! ([`crate::transform::pool`]), number of views, request rate ([`rate`]), events per push,
//! rows, entities, output and CPU per batch ([`crate::Limits`]), breaker settings, upload size,
//! compile budget and versions kept (`server::control`), records kept in the online store
//! ([`crate::store::quota`]).

pub mod build;
pub mod rate;

use std::collections::HashMap;
use std::sync::Arc;

use crate::pipeline::StreamView;
use crate::registry::{Quotas, Snapshot, ViewKind};
use crate::serving::Catalog;
use crate::view::{BatchViewConfig, FeatureServiceConfig, Manifest, RequestViewConfig, StreamViewConfig};
pub use build::{BuildError, build_tenant};
pub use rate::RateLimiter;

/// Why a tenant's configuration in the registry cannot be read as a [`TenantSpec`].
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The snapshot has no such tenant.
    #[error("no tenant `{0}`")]
    NoTenant(String),
    /// A view's stored configuration is not a valid view of its kind.
    #[error("view `{view}`: {source}")]
    Config {
        /// The view's name.
        view: String,
        /// Why its configuration does not parse.
        source: serde_json::Error,
    },
}

/// A tenant's views as configuration.
#[derive(Debug, Clone, Default)]
pub struct TenantSpec {
    pub name: String,
    pub quotas: Quotas,
    pub streams: Vec<StreamViewConfig>,
    pub batches: Vec<BatchViewConfig>,
    pub requests: Vec<RequestViewConfig>,
    pub services: Vec<FeatureServiceConfig>,
}

impl TenantSpec {
    /// The manifest's views, for its `[server].tenant` (quotas: no limit beyond the views' own,
    /// except the request and batch caps that protect the node and the store, at their defaults).
    pub fn from_manifest(m: &Manifest) -> Self {
        let quotas = Quotas {
            deadline_ms: u64::MAX,
            memory_mib: usize::MAX,
            max_instances: 64,
            max_views: usize::MAX,
            requests_per_second: 0,
            upload_mib: usize::MAX,
            compute_slots: 0,
            max_stored_entities: u64::MAX,
            ..Quotas::default()
        };
        Self {
            name: m.server.tenant.clone(),
            quotas,
            streams: m.views.clone(),
            batches: m.batch_views.clone(),
            requests: m.request_views.clone(),
            services: m.feature_services.clone(),
        }
    }

    /// A tenant's views from the registry. Topics are namespaced: `<tenant>.<topic>`.
    pub fn from_registry(snap: &Snapshot, tenant: &str) -> Result<Self, SpecError> {
        let t = snap.tenants.get(tenant).ok_or_else(|| SpecError::NoTenant(tenant.into()))?;
        let mut spec = Self { name: tenant.into(), quotas: t.quotas, ..Self::default() };
        let mut views: Vec<_> = snap.views.get(tenant).map(|v| v.values().collect()).unwrap_or_default();
        views.sort_by(|a, b| a.name.cmp(&b.name));
        for v in views {
            let bad = |source: serde_json::Error| SpecError::Config { view: v.name.clone(), source };
            match v.kind {
                ViewKind::Stream => {
                    let mut c: StreamViewConfig = serde_json::from_value(v.config.clone()).map_err(bad)?;
                    c.topic = c.topic.map(|t| format!("{tenant}.{t}"));
                    c.dead_letter_topic = c.dead_letter_topic.map(|t| format!("{tenant}.{t}"));
                    spec.streams.push(c);
                }
                ViewKind::Batch => spec.batches.push(serde_json::from_value(v.config.clone()).map_err(bad)?),
                ViewKind::Request => spec.requests.push(serde_json::from_value(v.config.clone()).map_err(bad)?),
            }
        }
        Ok(spec)
    }

    pub fn view_count(&self) -> usize {
        self.streams.len() + self.batches.len() + self.requests.len()
    }
}

/// A Kafka-consumed stream view of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamSource {
    pub tenant: String,
    pub view: String,
    pub topic: String,
    pub dead_letter_topic: Option<String>,
    pub batch_size: usize,
}

/// A tenant, running on this node.
pub struct TenantApp {
    pub name: String,
    pub quotas: Quotas,
    /// Stream views by name (push targets, Kafka consumers).
    pub views: HashMap<String, Arc<StreamView>>,
    /// Everything servable: stream, batch and request views, feature services.
    pub catalog: Catalog,
    pub rate: RateLimiter,
    pub sources: Vec<StreamSource>,
    /// Identifies the configuration it was built from (rebuilt only when it changes).
    pub fingerprint: u64,
}
