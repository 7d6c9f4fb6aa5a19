//! `[kafka]` of the manifest: brokers, group, librdkafka overrides and the stall detector's
//! threshold, and the consumer/producer configurations Wafer builds from them.

use serde::Deserialize;

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
