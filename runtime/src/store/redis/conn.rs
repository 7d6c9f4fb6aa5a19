//! One connection type for a single Redis and a Redis Cluster: [`Conn`] is what every store
//! command goes through (`redis::aio::ConnectionLike`), so the store code has one path.
//!
//! - Single: a `ConnectionManager` (one multiplexed connection, reconnected after failures).
//! - Cluster: the redis crate's `cluster_async::ClusterConnection` (a multiplexed connection per
//!   node; commands routed by key slot; `MOVED`/`ASK` followed; the slot map refreshed after a
//!   failover or migration). A pipeline must stay within one slot; the store sends per-entity
//!   commands concurrently instead, which the per-node connections pipeline on the wire.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// A connection to a single Redis or to a Cluster.
#[derive(Clone)]
pub enum Conn {
    /// One Redis (or a Sentinel-managed primary behind one address).
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

/// Connection and response timeouts shared by both kinds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

impl Conn {
    /// Connect to a single Redis at `url`.
    pub async fn single(url: &str) -> RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1);
        Ok(Conn::Single(ConnectionManager::new_with_config(client, cfg).await?))
    }

    /// Connect to a Redis Cluster through any of its `seeds` (the topology is discovered).
    pub async fn cluster(seeds: &[String]) -> RedisResult<Self> {
        let client = redis::cluster::ClusterClientBuilder::new(seeds.iter().map(String::as_str))
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(3)
            .min_retry_wait(10)
            .max_retry_wait(200)
            .build()?;
        Ok(Conn::Cluster(client.get_async_connection().await?))
    }

    /// Whether this is a Cluster connection (pipelines must then stay within one slot).
    pub fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }

    /// The addresses (`redis://host:port/`) of every master, for per-node work (SCAN).
    /// `None` for a single Redis: use this connection.
    pub async fn masters(&self) -> RedisResult<Option<Vec<String>>> {
        let Conn::Cluster(c) = self else { return Ok(None) };
        let mut c = c.clone();
        let slots: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut c).await?;
        let mut out = Vec::new();
        for s in slots {
            // [start, end, [host, port, id, ...], replicas...]
            let Value::Array(parts) = s else { continue };
            let Some(Value::Array(master)) = parts.get(2) else { continue };
            let host = match master.first() {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                _ => continue,
            };
            let Some(Value::Int(port)) = master.get(1) else { continue };
            let url = format!("redis://{host}:{port}/");
            if !out.contains(&url) {
                out.push(url);
            }
        }
        Ok(Some(out))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
