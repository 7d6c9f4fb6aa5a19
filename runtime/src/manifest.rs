//! The manifest (`wafer.toml`): every section, each parsed by the config type of the code that
//! uses it (`[redis]` by [`RedisConfig`], `[kafka]` by [`KafkaConfig`], `[control]` by
//! [`ControlConfig`], views by [`crate::view`]), and checks that span sections.
//!
//! ```toml
//! [redis]                       # omit for the embedded store
//! url = "redis://127.0.0.1:6379/"
//! read_timeout_ms = 300         # serving deadline of a feature read (writes keep 5 s)
//! [kafka]                       # omit for HTTP push only
//! brokers = "127.0.0.1:9092"
//! group_id = "wafer"
//! consumer = { "fetch.wait.max.ms" = "50" }  # librdkafka properties over Wafer's defaults
//! producer = { "linger.ms" = "5" }           # for dead letters
//! stall_after_ms = 30000        # assigned + lag + nothing received this long: a stall (see sources::kafka)
//! instance_id = "node-a"        # static group membership: a restarted node keeps its partitions
//! [server]
//! listen = "127.0.0.1:8080"
//!
//! [[stream_view]]
//! name = "txn"
//! entity = "user"
//! transform = "card_txn.wasm"   # relative to the manifest
//! topic = "txns"                # Kafka source; omit for HTTP push only
//! dead_letter_topic = "txns.dlq"
//! features = ["country", "merchant"]   # stored as latest value per entity
//! ttl = "7d"                    # online TTL of latest values (default 30d, as batch views)
//! batch_size = 512
//! [[stream_view.aggregations]]
//! column = "amount"
//! functions = ["count", "sum", "mean", "min", "max"]
//! windows = ["1m", "1h", "24h", "7d", "lifetime"]
//!
//! [[batch_view]]                # precomputed features from a file (`wafer materialize`)
//! name = "user_stats"
//! entity = "user"
//! source = "user_stats.parquet" # .parquet, .csv or .jsonl (or set `format`)
//! entity_column = "user_id"     # default: the entity name
//! timestamp_column = "event_timestamp"  # integer ms, or RFC 3339 text
//! ttl = "30d"
//! features = { txn_count_7d = "int64", amount_mean_7d = "float64", last_country = "text" }
//!
//! [[request_view]]              # on-demand features: a request transform; its describe()
//! name = "risk"                 # declares the request params and the `view:feature`s it reads
//! transform = "txn_risk.wasm"
//! deadline_ms = 10
//!
//! [[feature_service]]           # a named feature list (Feast's `feature_service`)
//! name = "fraud_v1"
//! features = ["txn:amount_sum_1h", "risk:risk_score"]
//! ```

use std::path::Path;

use serde::Deserialize;

pub use crate::control::ControlConfig;
pub use crate::sources::kafka::KafkaConfig;
pub use crate::store::redis::RedisConfig;
use crate::tenant::TenantSpec;
use crate::view::{BatchViewConfig, FeatureServiceConfig, RequestViewConfig, StreamViewConfig, ViewError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    #[serde(default)]
    pub kafka: Option<KafkaConfig>,
    #[serde(default)]
    pub server: ServerConfig,
    /// Registry mode: tenants, keys, transforms and views live in Redis and are managed through
    /// the API (needs `[redis]`; the manifest then declares no views).
    #[serde(default)]
    pub control: Option<ControlConfig>,
    #[serde(default, rename = "stream_view")]
    pub views: Vec<StreamViewConfig>,
    #[serde(default, rename = "batch_view")]
    pub batch_views: Vec<BatchViewConfig>,
    #[serde(default, rename = "request_view")]
    pub request_views: Vec<RequestViewConfig>,
    #[serde(default, rename = "feature_service")]
    pub feature_services: Vec<FeatureServiceConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Tenant namespace for the views of this manifest.
    #[serde(default = "default_tenant")]
    pub tenant: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { listen: default_listen(), tenant: default_tenant() }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_tenant() -> String {
    "default".into()
}

impl Manifest {
    /// The manifest's views as the `[server].tenant` tenant (quotas: no limit beyond the views'
    /// own, except the request and batch caps that protect the node and the store, at their
    /// defaults; no store quota: the operator owns the store).
    pub fn tenant_spec(&self) -> TenantSpec {
        let quotas = crate::registry::Quotas {
            deadline_ms: u64::MAX,
            memory_mib: usize::MAX,
            max_instances: 64,
            max_views: usize::MAX,
            requests_per_second: 0,
            upload_mib: usize::MAX,
            compute_slots: 0,
            max_stored_entities: u64::MAX,
            ..crate::registry::Quotas::default()
        };
        TenantSpec {
            name: self.server.tenant.clone(),
            quotas,
            streams: self.views.clone(),
            batches: self.batch_views.clone(),
            requests: self.request_views.clone(),
            services: self.feature_services.clone(),
        }
    }

    pub fn load(path: &Path) -> Result<Self, ViewError> {
        let text = std::fs::read_to_string(path).map_err(|source| ViewError::Read { path: path.into(), source })?;
        let mut m: Manifest =
            toml::from_str(&text).map_err(|e| ViewError::Parse { path: path.into(), message: e.to_string() })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for v in &mut m.views {
            if v.transform.is_relative() {
                v.transform = base.join(&v.transform);
            }
        }
        for v in &mut m.request_views {
            if v.transform.is_relative() {
                v.transform = base.join(&v.transform);
            }
        }
        for v in &mut m.batch_views {
            if let Some(source) = &mut v.source
                && source.is_relative()
            {
                *source = base.join(&*source);
            }
        }
        m.check_names().map_err(|message| ViewError::Parse { path: path.into(), message })?;
        if m.control.is_some()
            && (m.redis.is_none() || !m.views.is_empty() || !m.batch_views.is_empty() || !m.request_views.is_empty())
        {
            return Err(ViewError::Parse {
                path: path.into(),
                message: "[control] (registry mode) needs [redis] and declares no views: create them through the API"
                    .into(),
            });
        }
        Ok(m)
    }

    /// View names are unique across stream, batch and request views (they share the
    /// `view:feature` namespace); feature services are unique too.
    fn check_names(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        let names = self
            .views
            .iter()
            .map(|v| &v.name)
            .chain(self.batch_views.iter().map(|v| &v.name))
            .chain(self.request_views.iter().map(|v| &v.name));
        for n in names {
            if !seen.insert(n.as_str()) {
                return Err(format!("view name `{n}` is used twice"));
            }
        }
        let mut services = std::collections::HashSet::new();
        for s in &self.feature_services {
            if !services.insert(s.name.as_str()) {
                return Err(format!("feature service `{}` is defined twice", s.name));
            }
        }
        Ok(())
    }
}
