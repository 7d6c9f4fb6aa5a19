//! Stream feature views: the manifest (`wafer.toml`) and its validation against the transform.
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
//! ttl = "7d"                    # online TTL of latest values
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

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub mod batch;
pub mod request;

pub use batch::{BatchViewConfig, SourceFormat};
pub use request::{FeatureServiceConfig, RequestViewConfig};

use crate::aggregate::read::output_type;
use crate::aggregate::spec::{DAY, HOUR, MINUTE};
use crate::aggregate::{AggFunction, AggSpec, Window};
use crate::bindings::types::ValueType;
use crate::transform::schema::valid_name;

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
pub struct ControlConfig {
    /// Environment variable holding the admin token (never put the token itself in a file).
    #[serde(default = "default_admin_env")]
    pub admin_token_env: String,
    /// Uploads compiled at once (compiles take CPU from serving).
    #[serde(default = "default_compile_slots")]
    pub compile_slots: usize,
}

fn default_admin_env() -> String {
    "WAFER_ADMIN_TOKEN".into()
}
fn default_compile_slots() -> usize {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://…` of the server, or of one Cluster node.
    pub url: String,
    /// Connect as a Redis Cluster client (implied by `seeds`).
    #[serde(default)]
    pub cluster: bool,
    /// More Cluster nodes to discover the topology from (besides `url`).
    #[serde(default)]
    pub seeds: Vec<String>,
    /// After each write, `WAIT` for this many replicas of every master (0: asynchronous
    /// replication, so a failover may lose the last writes acknowledged by a master).
    #[serde(default)]
    pub wait_replicas: u32,
    /// Serving deadline of a feature read (ms): a read Redis does not answer in time fails with
    /// 503 at once instead of waiting the connection's response timeout (which the write path
    /// keeps).
    #[serde(default = "default_read_timeout_ms")]
    pub read_timeout_ms: u64,
}

fn default_read_timeout_ms() -> u64 {
    300
}

impl RedisConfig {
    /// The store's connection options.
    pub fn options(&self) -> crate::store::redis::RedisOptions {
        let mut urls = vec![self.url.clone()];
        urls.extend(self.seeds.iter().cloned());
        crate::store::redis::RedisOptions {
            cluster: self.cluster || urls.len() > 1,
            urls,
            wait_replicas: self.wait_replicas,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub brokers: String,
    #[serde(default = "default_group")]
    pub group_id: String,
    /// librdkafka consumer properties applied over Wafer's defaults (`enable.auto.commit` and
    /// `group.id` stay Wafer's: offsets are committed only after the batch's write).
    #[serde(default)]
    pub consumer: std::collections::BTreeMap<String, String>,
    /// librdkafka producer properties (dead-letter producer) applied over Wafer's defaults.
    #[serde(default)]
    pub producer: std::collections::BTreeMap<String, String>,
    /// A partition that is assigned and has unread events but delivers nothing for this long
    /// (while the consumer is waiting for events) is stalled: logged, `wafer_source_stalled`,
    /// `/readyz` fails, and the consumer recovers by itself.
    #[serde(default = "default_stall_after_ms")]
    pub stall_after_ms: u64,
    /// Static group membership (`group.instance.id = <instance_id>.<tenant>.<view>`): a node
    /// restarted within the session timeout gets its partitions back without a rebalance. Each
    /// node needs its own, stable id.
    #[serde(default)]
    pub instance_id: Option<String>,
}

fn default_stall_after_ms() -> u64 {
    30_000
}

/// librdkafka's own default `fetch.wait.max.ms`, used when a stalled consumer is rebuilt.
pub const LIBRDKAFKA_FETCH_WAIT_MS: &str = "500";

impl KafkaConfig {
    /// The consumer's librdkafka configuration for `group` (`<group_id>.<tenant>.<view>`):
    /// Wafer's defaults, the manifest's `consumer` overrides, then the settings effectively-once
    /// delivery depends on. `safe_fetch` (a consumer rebuilt after a stall) drops the `fetch.*`
    /// overrides and waits librdkafka's default 500 ms per fetch.
    pub fn consumer_config(&self, group: &str, safe_fetch: bool) -> rdkafka::ClientConfig {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            // Broker-side wait when a fetch finds nothing new. Kafka answers as soon as data
            // arrives, so this costs no freshness there; brokers that hold every fetch for the
            // full wait (tansu) add up to this much latency when idle. Too short a wait makes
            // such brokers answer every fetch empty: 0 ms fetches nothing from tansu, and 5 ms
            // (Wafer's old default) stalled a restarted node with a backlog for good.
            .set("fetch.wait.max.ms", "100")
            // Per-partition fetch state for the stall detector (parsed once a second).
            .set("statistics.interval.ms", "1000")
            // A deleted source topic shows within 10 s (librdkafka's default: 5 min).
            .set("topic.metadata.refresh.interval.ms", "10000");
        for (k, v) in &self.consumer {
            if !(safe_fetch && k.starts_with("fetch.")) {
                c.set(k, v);
            }
        }
        if safe_fetch {
            c.set("fetch.wait.max.ms", LIBRDKAFKA_FETCH_WAIT_MS);
        }
        if let Some(id) = &self.instance_id {
            let suffix = group.strip_prefix(self.group_id.as_str()).unwrap_or(group);
            c.set("group.instance.id", format!("{id}{suffix}"));
        }
        c.set("group.id", group).set("enable.auto.commit", "false");
        c
    }

    /// The dead-letter producer's librdkafka configuration. Its `message.max.bytes` (10 MiB)
    /// is above librdkafka's 1 MB default, so a dead letter as large as the biggest record the
    /// source can deliver (plus Wafer's headers) is not refused by the client.
    pub fn producer_config(&self) -> rdkafka::ClientConfig {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers).set("linger.ms", "1").set("message.max.bytes", "10485760");
        for (k, v) in &self.producer {
            c.set(k, v);
        }
        c
    }
}

fn default_group() -> String {
    "wafer".into()
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamViewConfig {
    pub name: String,
    pub entity: String,
    pub transform: PathBuf,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    #[serde(default)]
    pub features: Vec<String>,
    #[serde(default)]
    pub aggregations: Vec<AggConfig>,
    #[serde(default = "default_ttl")]
    pub ttl: String,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default = "default_deadline")]
    pub deadline_ms: u64,
    #[serde(default = "default_memory")]
    pub memory_mib: usize,
    /// Consecutive batches with ≥ 90% failed events that pause the view (circuit breaker).
    #[serde(default = "default_trip_after")]
    pub breaker_trip_after: u32,
    /// First pause of a tripped view (doubles per consecutive trip, up to 60 s).
    #[serde(default = "default_cooldown")]
    pub breaker_cooldown: String,
}

fn default_trip_after() -> u32 {
    3
}
fn default_cooldown() -> String {
    "5s".into()
}

fn default_ttl() -> String {
    "7d".into()
}
fn default_batch() -> usize {
    512
}
fn default_deadline() -> u64 {
    50
}
fn default_memory() -> usize {
    64
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggConfig {
    pub column: String,
    pub functions: Vec<String>,
    pub windows: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("view `{view}`: {message}")]
    Invalid { view: String, message: String },
}

impl Manifest {
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
            if v.source.is_relative() {
                v.source = base.join(&v.source);
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

/// Parse a TTL like `30s`, `15m`, `1h`, `7d`.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = num.parse().ok()?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => MINUTE,
        "h" => HOUR,
        "d" => DAY,
        _ => return None,
    };
    (n > 0).then_some(n * unit_ms)
}

/// A view's configuration checked against its transform's declared outputs.
#[derive(Debug, Clone)]
pub struct ViewSpec {
    pub name: String,
    pub entity: String,
    pub latest: Vec<(String, ValueType)>,
    pub aggs: Vec<AggSpec>,
    /// Declared type of each aggregated column.
    pub column_types: Vec<(String, ValueType)>,
    pub ttl_ms: i64,
    pub breaker: crate::pipeline::breaker::BreakerConfig,
}

impl ViewSpec {
    pub fn new(cfg: &StreamViewConfig, outputs: &[crate::FeatureSpec]) -> Result<Self, ViewError> {
        let err = |message: String| ViewError::Invalid { view: cfg.name.clone(), message };
        if !valid_name(&cfg.name) {
            return Err(err("view name must be 1-128 of [A-Za-z0-9_.-], starting with a letter".into()));
        }
        let ty = |name: &str| outputs.iter().find(|o| o.name == name).map(|o| o.value_type);
        let mut latest = Vec::new();
        for f in &cfg.features {
            let t = ty(f).ok_or_else(|| err(format!("feature `{f}` is not an output of the transform")))?;
            latest.push((f.clone(), t));
        }
        let mut aggs = Vec::new();
        let mut column_types = Vec::new();
        for a in &cfg.aggregations {
            let t = ty(&a.column)
                .ok_or_else(|| err(format!("aggregated column `{}` is not an output of the transform", a.column)))?;
            let windows = a.windows.iter().map(|w| Window::parse(w).map_err(&err)).collect::<Result<Vec<_>, _>>()?;
            if windows.is_empty() {
                return Err(err(format!("aggregation of `{}` has no windows", a.column)));
            }
            for f in &a.functions {
                let function = AggFunction::parse(f).map_err(&err)?;
                if function.numeric() && !matches!(t, ValueType::Int64 | ValueType::Float64) {
                    return Err(err(format!("`{f}` needs a numeric column, but `{}` is {}", a.column, t.as_str())));
                }
                aggs.push(AggSpec { column: a.column.clone(), function, windows: windows.clone() });
            }
            if !column_types.iter().any(|(c, _): &(String, ValueType)| *c == a.column) {
                column_types.push((a.column.clone(), t));
            }
        }
        let ttl_ms = parse_duration_ms(&cfg.ttl)
            .ok_or_else(|| err(format!("ttl `{}`: expected e.g. 30s, 15m, 1h, 7d", cfg.ttl)))?;
        let cooldown = parse_duration_ms(&cfg.breaker_cooldown)
            .ok_or_else(|| err(format!("breaker_cooldown `{}`: expected e.g. 500ms, 5s, 1m", cfg.breaker_cooldown)))?;
        if cfg.breaker_trip_after == 0 {
            return Err(err("breaker_trip_after must be at least 1".into()));
        }
        let breaker = crate::pipeline::breaker::BreakerConfig {
            trip_after: cfg.breaker_trip_after,
            cooldown: std::time::Duration::from_millis(cooldown as u64),
            ..Default::default()
        };
        let spec =
            Self { name: cfg.name.clone(), entity: cfg.entity.clone(), latest, aggs, column_types, ttl_ms, breaker };
        let mut seen = std::collections::HashSet::new();
        for n in spec.feature_names() {
            if !seen.insert(n.clone()) {
                return Err(err(format!("feature `{n}` is defined twice")));
            }
        }
        Ok(spec)
    }

    /// Every feature the view serves, with its type.
    pub fn feature_types(&self) -> Vec<(String, ValueType)> {
        let mut v = self.latest.clone();
        for a in &self.aggs {
            let ct = self.column_type(&a.column);
            for w in &a.windows {
                v.push((a.feature_name(*w), output_type(a.function, ct)));
            }
        }
        v
    }

    pub fn feature_names(&self) -> Vec<String> {
        self.feature_types().into_iter().map(|(n, _)| n).collect()
    }

    pub fn column_type(&self, column: &str) -> ValueType {
        self.column_types.iter().find(|(c, _)| c == column).map_or(ValueType::Float64, |(_, t)| *t)
    }

    /// Longest sliding window (ms).
    pub fn longest_window(&self) -> i64 {
        self.aggs
            .iter()
            .flat_map(|a| a.windows.iter())
            .filter_map(|w| match w {
                Window::Sliding(l) => Some(*l),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::KafkaConfig;

    #[test]
    fn consumer_overrides_apply_but_never_the_delivery_settings() {
        let k: KafkaConfig = toml::from_str(
            r#"brokers = "b:9092"
            consumer = { "fetch.wait.max.ms" = "2", "enable.auto.commit" = "true", "group.id" = "theirs", "client.id" = "x" }
            producer = { "linger.ms" = "7" }"#,
        )
        .unwrap();
        let c = k.consumer_config("wafer.t.v", false);
        assert_eq!(c.get("fetch.wait.max.ms"), Some("2"), "an override replaces Wafer's default");
        assert_eq!(c.get("group.instance.id"), None, "dynamic membership unless an instance id is set");
        assert_eq!(c.get("client.id"), Some("x"), "other librdkafka properties pass through");
        assert_eq!(c.get("auto.offset.reset"), Some("earliest"), "defaults stay where not overridden");
        assert_eq!(c.get("enable.auto.commit"), Some("false"), "offsets are committed by Wafer after the write");
        assert_eq!(c.get("group.id"), Some("wafer.t.v"), "the group is per tenant and view");
        assert_eq!(k.producer_config().get("linger.ms"), Some("7"));
        assert_eq!(k.producer_config().get("bootstrap.servers"), Some("b:9092"));
        let safe = k.consumer_config("wafer.t.v", true);
        assert_eq!(safe.get("fetch.wait.max.ms"), Some("500"), "a rebuilt consumer drops the fetch overrides");
        assert_eq!(safe.get("client.id"), Some("x"), "and keeps the others");
    }

    #[test]
    fn defaults_fetch_long_enough_and_static_membership_is_per_view() {
        let k: KafkaConfig = toml::from_str("brokers = \"b:9092\"\ninstance_id = \"node-a\"").unwrap();
        let c = k.consumer_config("wafer.t.v", false);
        assert_eq!(c.get("fetch.wait.max.ms"), Some("100"));
        assert_eq!(c.get("group.instance.id"), Some("node-a.t.v"));
        assert_eq!(k.stall_after_ms, 30_000);
        assert_eq!(k.producer_config().get("message.max.bytes"), Some("10485760"));
    }
}
