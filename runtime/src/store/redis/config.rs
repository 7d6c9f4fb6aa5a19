//! `[redis]` of the manifest: where the online store is and how it is written and read.

use serde::Deserialize;

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
    pub fn options(&self) -> super::RedisOptions {
        let mut urls = vec![self.url.clone()];
        urls.extend(self.seeds.iter().cloned());
        super::RedisOptions { cluster: self.cluster || urls.len() > 1, urls, wait_replicas: self.wait_replicas }
    }
}
