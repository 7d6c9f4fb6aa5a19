//! Redis online store, on a single Redis or a Redis Cluster ([`RedisStore::open`]).
//!
//! ## Layout (v2: spread by entity)
//! - `wafer:e:<view>:{<tag>}:<entity>`: hash of one entity's latest values (`f:…`), tile
//!   components (`t:…`), newest-tile markers (`m:<g>`) and replay guards (`o:<source>:<partition>`).
//!   `<tag>` is 16 hex digits of a hash of the entity key alone, so a view's entities spread over
//!   all 16,384 slots, and one entity's records in different views share a slot.
//! - `wafer:e:<view>:{<tag>}:<entity>|t:…:h`: HLL registers of one tile (same slot as the hash).
//! - `wafer:e:<view>:{<tag>}:<entity>|k:<idempotency key>`: a push applied to this entity (expires).
//! - `wafer:{<view>}:wm:<source>:<partition>`: next offset to read (the resume position).
//! - `wafer:q:{<tenant>}:entities`: the tenant's record count for its
//!   [quota](super::quota) (an estimate kept by `INCRBY`, corrected by recounts).
//!
//! Layout v1 (`wafer:{<view>}:e:<entity>`, one slot per view) is converted by
//! [`RedisStore::migrate_v1`] (`wafer migrate-store`), run once with the view's nodes stopped.
//!
//! ## Writes
//! A batch becomes `EVALSHA` calls of one script (see [`write`]): flat arguments, each call a
//! group of entities small enough to run in a few milliseconds (on a Cluster, one entity per
//! call), sent concurrently. Each entity is applied atomically with its replay guard; a batch is
//! not atomic across entities, and does not need to be:
//!
//! **Effectively-once, entity by entity.** A batch from source partition `p` covering offsets
//! `[first, next)` applies entity `e` only if `e`'s guard `o:<source>:p` is absent or `<= first`,
//! and sets it to `next` in the same script. Batches of one partition are written in offset order
//! (a consumer writes a partition's next batch after its previous one), so the guard `g` of `e`
//! means: every event of `e` below `g` is applied, none at or above it. Then:
//! - *crash or timeout mid-batch, retry or replay*: entities already written have `g >= first`
//!   and are skipped (`g >= next`) or reported back (`first < g < next`: the replay's batch has
//!   different boundaries); the caller re-folds only the events at or above `g` and writes them
//!   with `first = g` ([`Applied::Stale`] with the lowest such `g`). Nothing is applied twice,
//!   nothing is skipped that was not applied.
//! - *rebalance*: two consumers writing the same partition race per entity; each entity script is
//!   atomic and checks the guard, so whichever runs second is skipped or re-folds from `g`.
//! - *slot migration, failover*: a guard lives in the entity's own hash, so it moves with it
//!   (`MIGRATE` moves the whole key) and is replicated with it. What a failover can lose is what
//!   asynchronous replication loses (the last writes not yet on the replica); with
//!   `wait_replicas = N` a batch is acknowledged only after `WAIT N` on every master, and a write
//!   lost anyway (no replica acknowledged in time) is an error the caller retries.
//! - the partition watermark is advanced (never lowered) only after every entity of the batch is
//!   applied: it is where a consumer resumes, not what guarantees exactly-once.
//!
//! Pushes carry no offsets: a timed-out push may have been applied in part
//! ([`StoreError::OutcomeUnknown`]). A push with an idempotency key applies each entity at most
//! once per key (a marker key next to the entity, expiring after [`IDEMPOTENCY_TTL_MS`]), so a
//! client may retry it safely.
//!
//! ## Reads
//! One pipeline of `HMGET` (+ `GET` per sketch) for a single Redis; on a Cluster, one pipeline per
//! entity (all its keys share a slot), sent concurrently: every node works in parallel.

use std::fmt::Write as _;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt as _;
use redis::{RedisError, Script, Value as RValue};

mod conn;
mod migrate;
mod write;

pub use conn::Conn;
pub use migrate::Migration;

use super::quota::EntityQuota;
use super::{Applied, EntityRecord, FieldNames, OnlineStore, Outcome, StoreError, WriteBatch};
use crate::aggregate::ops::EntityOps;

/// How long a push's idempotency key is remembered per entity (ms).
pub const IDEMPOTENCY_TTL_MS: i64 = 3_600_000;

/// How long a Cluster read waits for one entity's shard before serving it as unavailable.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// At most this many script calls of one batch are in flight at once.
const CALLS_IN_FLIGHT: usize = 256;

/// Advance a watermark, never lower it; returns the (new) value.
const ADVANCE_LUA: &str = r#"
local cur = redis.call('GET', KEYS[1])
if (not cur) or tonumber(cur) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
  return ARGV[1]
end
return cur
"#;

/// Where and how to connect.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// `redis://…` URLs: the server, or a Cluster's seed nodes.
    pub urls: Vec<String>,
    /// Connect as a Cluster client (implied by more than one URL).
    pub cluster: bool,
    /// `WAIT` for this many replicas after each write (0: asynchronous replication).
    pub wait_replicas: u32,
}

/// The Redis (or Redis Cluster) store.
pub struct RedisStore {
    conn: Conn,
    apply: Script,
    advance: Script,
    wait_replicas: u32,
}

impl RedisStore {
    /// Connect to a single Redis (the connection manager reconnects by itself after failures).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::open(&RedisOptions { urls: vec![url.to_string()], ..Default::default() }).await
    }

    /// Connect to a Redis Cluster through its seed nodes.
    pub async fn connect_cluster(seeds: &[String]) -> Result<Self, StoreError> {
        Self::open(&RedisOptions { urls: seeds.to_vec(), cluster: true, ..Default::default() }).await
    }

    /// Connect as `opts` say, and load the write script on every master.
    pub async fn open(opts: &RedisOptions) -> Result<Self, StoreError> {
        let conn = match opts.urls.as_slice() {
            [] => return Err(StoreError::Other("no Redis URL configured".into())),
            [url] if !opts.cluster => Conn::single(url).await?,
            seeds => Conn::cluster(seeds).await?,
        };
        let store = Self {
            conn,
            apply: Script::new(write::APPLY_LUA),
            advance: Script::new(ADVANCE_LUA),
            wait_replicas: opts.wait_replicas,
        };
        store.load().await?;
        Ok(store)
    }

    /// The connection (for tools and tests that inspect the store).
    pub fn conn(&self) -> &Conn {
        &self.conn
    }

    /// `SCRIPT LOAD` the write script (every node of a Cluster).
    async fn load(&self) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        let _: RValue = redis::cmd("SCRIPT").arg("LOAD").arg(write::APPLY_LUA).query_async(&mut c).await?;
        Ok(())
    }

    /// The key of an entity's hash (see the module doc).
    pub fn entity_key(view: &str, entity: &str) -> String {
        let mut k = String::with_capacity(view.len() + entity.len() + 30);
        write_entity_key(&mut k, view, entity);
        k
    }

    fn wm_key(view: &str, source: &str, partition: i32) -> String {
        format!("wafer:{{{view}}}:wm:{source}:{partition}")
    }

    /// One script call; a node that lost its script cache (restart, failover) gets it again and
    /// the call is retried (`NOSCRIPT` means nothing ran).
    async fn call(&self, cmd: redis::Cmd) -> Result<Vec<RValue>, RedisError> {
        let mut c = self.conn.clone();
        match cmd.query_async::<Vec<RValue>>(&mut c).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.load().await?;
                cmd.query_async(&mut c).await
            }
            r => r,
        }
    }

    /// Apply the entities in calls of bounded size.
    async fn apply_entities(
        &self,
        common: &write::Common<'_>,
        view: &str,
        ents: &[EntityOps],
    ) -> Result<Calls, StoreError> {
        // Group entities into calls: one per entity on a Cluster, bounded size otherwise.
        let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
        let (mut start, mut units) = (0, 0);
        for (i, e) in ents.iter().enumerate() {
            let u = write::units(e);
            if i > start && (self.conn.is_cluster() || units + u > write::UNITS_PER_CALL) {
                groups.push(start..i);
                (start, units) = (i, 0);
            }
            units += u;
        }
        if start < ents.len() {
            groups.push(start..ents.len());
        }
        let sha = self.apply.get_hash();
        let mut calls = futures::stream::iter(groups.into_iter().map(|r| {
            let keys: Vec<String> = ents[r.clone()].iter().map(|e| Self::entity_key(view, &e.entity)).collect();
            let refs: Vec<&EntityOps> = ents[r.clone()].iter().collect();
            let cmd = write::call(sha, common, &keys, &refs);
            async move { (r.start, self.call(cmd).await) }
        }))
        .buffer_unordered(CALLS_IN_FLIGHT);
        let (mut out, mut ok, mut err) = (Calls::default(), 0usize, None::<RedisError>);
        while let Some((base, res)) = calls.next().await {
            match res {
                Ok(vals) => {
                    ok += 1;
                    out.add_reply(base, &vals);
                }
                Err(e) => {
                    // Keep the first error; a timeout wins (its call may have run).
                    if err.as_ref().is_none_or(|old| !old.is_timeout() && e.is_timeout()) {
                        err = Some(e);
                    }
                }
            }
        }
        match err {
            None => Ok(out),
            Some(e) if ok > 0 || e.is_timeout() => Err(StoreError::OutcomeUnknown(e)),
            Some(e) => Err(StoreError::Redis(e)),
        }
    }

    /// `WAIT` until `wait_replicas` replicas of every master acknowledged our writes.
    async fn wait_for_replicas(&self) -> Result<(), StoreError> {
        if self.wait_replicas == 0 {
            return Ok(());
        }
        let mut c = self.conn.clone();
        let acked: i64 = redis::cmd("WAIT")
            .arg(self.wait_replicas)
            .arg(1000)
            .query_async(&mut c)
            .await
            .map_err(StoreError::OutcomeUnknown)?;
        if acked < i64::from(self.wait_replicas) {
            return Err(StoreError::NotReplicated { acked, wanted: self.wait_replicas });
        }
        Ok(())
    }

    /// Before a write under `quota`: learn the tenant's count once per quota object, and
    /// the script's create mode (see [`write`]).
    async fn quota_mode(&self, quota: &EntityQuota) -> Result<&'static str, StoreError> {
        if !quota.counted() {
            let mut c = self.conn.clone();
            let n: Option<u64> = redis::cmd("GET").arg(quota_key(quota.tenant())).query_async(&mut c).await?;
            quota.set_stored(n.unwrap_or(0), crate::time::now_ms());
        }
        Ok(if quota.allows_new() { "1" } else { "0" })
    }

    /// After a write under `quota`: add what it created to the tenant's counter, and recount
    /// (in the background, at most every [`quota::RECOUNT_EVERY_MS`](super::quota::RECOUNT_EVERY_MS))
    /// while the tenant is refused. The write is done: a failure here is logged, not returned.
    async fn account(&self, quota: &Arc<EntityQuota>, created: u64) {
        let now = crate::time::now_ms();
        if created > 0 {
            let mut c = self.conn.clone();
            let key = quota_key(quota.tenant());
            match redis::cmd("INCRBY").arg(&key).arg(created).query_async::<u64>(&mut c).await {
                Ok(n) => quota.set_stored(n, now),
                Err(e) => tracing::warn!(tenant = quota.tenant(), error = %e, "could not count created records"),
            }
        }
        if !quota.allows_new() && quota.claim_recount(now) {
            let (conn, quota) = (self.conn.clone(), quota.clone());
            tokio::spawn(async move {
                let n = match recount(&conn, quota.tenant()).await {
                    Ok(n) => Some(n),
                    Err(e) => {
                        tracing::warn!(tenant = quota.tenant(), error = %e, "could not recount the tenant's records");
                        None
                    }
                };
                quota.recounted(n, crate::time::now_ms());
            });
        }
    }

    async fn advance(&self, key: &str, next: i64) -> Result<i64, RedisError> {
        let mut c = self.conn.clone();
        self.advance.key(key).arg(next).invoke_async(&mut c).await
    }
}

/// What the calls of one batch answered (see [`write`]'s reply).
#[derive(Default)]
struct Calls {
    /// `(entity index, guard)` of every entity not applied (quota refusals excluded).
    skipped: Vec<(usize, i64)>,
    /// Entities refused by the quota.
    refused: Vec<usize>,
    /// Entities created under a quota.
    created: u64,
}

impl Calls {
    /// Add the reply of the call whose first entity is `base`.
    fn add_reply(&mut self, base: usize, vals: &[RValue]) {
        for pair in vals.chunks_exact(2) {
            let i = redis::from_redis_value_ref::<usize>(&pair[0]).unwrap_or(1);
            let g = redis::from_redis_value_ref::<i64>(&pair[1]).unwrap_or(i64::MAX);
            match (i, g) {
                (0, created) => self.created += created.max(0) as u64,
                (i, -2) => self.refused.push(base + i - 1),
                (i, g) => self.skipped.push((base + i - 1, g)),
            }
        }
    }
}

/// The key of a tenant's record counter.
fn quota_key(tenant: &str) -> String {
    format!("wafer:q:{{{tenant}}}:entities")
}

/// A connection to every master (SCAN is per node); `conn` itself for a single Redis.
async fn nodes(conn: &Conn) -> Result<Vec<Conn>, StoreError> {
    match conn.masters().await? {
        None => Ok(vec![conn.clone()]),
        Some(urls) => {
            let mut c = Vec::with_capacity(urls.len());
            for u in urls {
                c.push(Conn::single(&u).await?);
            }
            Ok(c)
        }
    }
}

/// Count the tenant's entity hashes on every master (sketches and idempotency markers are
/// strings, so `TYPE hash` leaves them out) and set its counter to the result.
async fn recount(conn: &Conn, tenant: &str) -> Result<u64, StoreError> {
    let pattern = format!("wafer:e:{}/*", glob_escape(tenant));
    let mut n = 0u64;
    for mut node in nodes(conn).await? {
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .arg("TYPE")
                .arg("hash")
                .query_async(&mut node)
                .await?;
            n += keys.len() as u64;
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    let mut c = conn.clone();
    redis::cmd("SET").arg(quota_key(tenant)).arg(n).query_async::<()>(&mut c).await?;
    Ok(n)
}

/// Write an entity's key into `out` (appended).
fn write_entity_key(out: &mut String, view: &str, entity: &str) {
    let _ = write!(out, "wafer:e:{view}:{{{:016x}}}:{entity}", fnv1a(entity.as_bytes()));
}

/// FNV-1a (64 bit): a stable, cheap hash for the slot tag (never changes between versions).
fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| (h ^ u64::from(*x)).wrapping_mul(0x0100_0000_01b3))
}

/// `s` with Redis glob specials escaped, for `SCAN MATCH`.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[async_trait]
impl OnlineStore for RedisStore {
    async fn write(&self, batch: &WriteBatch<'_>) -> Result<Outcome, StoreError> {
        let guard_field = batch.mark.as_ref().map(|m| format!("o:{}:{}", m.source, m.partition)).unwrap_or_default();
        let create = match batch.quota {
            Some(q) if !batch.entities.is_empty() => self.quota_mode(q).await?,
            _ => "",
        };
        let common = write::Common {
            keep_ms: batch.keep_ms,
            guard_field: &guard_field,
            first: batch.mark.as_ref().map_or(0, |m| m.first_offset),
            next: batch.mark.as_ref().map_or(0, |m| m.next_offset),
            idem: batch.idempotency_key.unwrap_or(""),
            idem_ttl_ms: IDEMPOTENCY_TTL_MS,
            create,
            retention: batch.retention,
        };
        let calls = self.apply_entities(&common, batch.view, batch.entities).await?;
        if let Some(q) = batch.quota.filter(|_| !create.is_empty()) {
            self.account(q, calls.created).await;
        }
        let Calls { skipped, refused, .. } = calls;
        self.wait_for_replicas().await?;
        let done = |applied| Ok(Outcome { applied, refused: refused.clone() });
        let Some(m) = &batch.mark else { return done(Applied::Applied) };
        // An entity applied only up to inside this batch: the caller re-folds from there.
        if let Some(g) = skipped.iter().map(|s| s.1).filter(|g| *g > m.first_offset && *g < m.next_offset).min() {
            return done(Applied::Stale { watermark: g });
        }
        let wm_key = Self::wm_key(batch.view, &m.source, m.partition);
        if batch.entities.is_empty() {
            let mut c = self.conn.clone();
            let wm: Option<i64> = redis::cmd("GET").arg(&wm_key).query_async(&mut c).await?;
            if let Some(wm) = wm.filter(|wm| *wm > m.first_offset) {
                return done(Applied::Stale { watermark: wm });
            }
        }
        let wm = self.advance(&wm_key, m.next_offset).await.map_err(StoreError::OutcomeUnknown)?;
        if !skipped.is_empty() && skipped.len() + refused.len() == batch.entities.len() {
            // Every entity had it already (a retry, or another consumer's write).
            return done(Applied::Stale { watermark: wm });
        }
        done(Applied::Applied)
    }

    async fn watermark(&self, view: &str, source: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        let mut conn = self.conn.clone();
        let v: Option<i64> =
            redis::cmd("GET").arg(Self::wm_key(view, source, partition)).query_async(&mut conn).await?;
        Ok(v)
    }

    async fn read(
        &self,
        view: &str,
        entities: &[&str],
        fields: &[String],
        hlls: &[String],
    ) -> Result<Vec<EntityRecord>, StoreError> {
        if entities.is_empty() {
            return Ok(Vec::new());
        }
        let names = FieldNames::new(fields, hlls);
        let queue = |pipe: &mut redis::Pipeline, key: &mut String, e: &str| {
            key.clear();
            write_entity_key(key, view, e);
            if !fields.is_empty() {
                pipe.cmd("HMGET").arg(key.as_str()).arg(fields);
            }
            for h in hlls {
                pipe.cmd("GET").arg(format!("{key}|{h}"));
            }
        };
        let mut key = String::with_capacity(view.len() + 64);
        if !self.conn.is_cluster() {
            let mut pipe = redis::pipe();
            for e in entities {
                queue(&mut pipe, &mut key, e);
            }
            let mut conn = self.conn.clone();
            let values: Vec<RValue> = pipe.query_async(&mut conn).await?;
            let mut it = values.into_iter();
            return Ok(entities.iter().map(|_| record(&names, fields.len(), hlls.len(), &mut it)).collect());
        }
        // Cluster: one single-slot pipeline per entity, all in flight at once. An entity whose
        // shard does not answer within READ_TIMEOUT is unavailable; the others are served.
        let reads = entities.iter().map(|e| {
            let mut pipe = redis::pipe();
            let mut key = String::with_capacity(view.len() + 64);
            queue(&mut pipe, &mut key, e);
            let mut conn = self.conn.clone();
            async move {
                match tokio::time::timeout(READ_TIMEOUT, pipe.query_async::<Vec<RValue>>(&mut conn)).await {
                    Ok(r) => r,
                    Err(_) => Err(RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))),
                }
            }
        });
        let (mut out, mut failed) = (Vec::with_capacity(entities.len()), None);
        for values in futures::future::join_all(reads).await {
            match values {
                Ok(v) => out.push(record(&names, fields.len(), hlls.len(), &mut v.into_iter())),
                Err(e) => {
                    out.push(EntityRecord::unavailable(names.clone()));
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) if out.iter().all(EntityRecord::is_unavailable) => Err(e.into()),
            _ => Ok(out),
        }
    }

    async fn delete_view(&self, view: &str) -> Result<(), StoreError> {
        let v = glob_escape(view);
        let patterns = [format!("wafer:e:{v}:{{*"), format!("wafer:{{{v}}}:*")];
        for mut node in nodes(&self.conn).await? {
            for pattern in &patterns {
                let mut cursor: u64 = 0;
                loop {
                    let (next, keys) = scan_page(&mut node, cursor, pattern).await?;
                    // Through the main connection: a Cluster splits the keys by slot.
                    if !keys.is_empty() {
                        let mut c = self.conn.clone();
                        redis::cmd("UNLINK").arg(&keys).query_async::<()>(&mut c).await?;
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
        }
        Ok(())
    }
}

/// One `SCAN … MATCH pattern COUNT 1000` step on one node.
async fn scan_page(node: &mut Conn, cursor: u64, pattern: &str) -> Result<(u64, Vec<String>), RedisError> {
    redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000).query_async(node).await
}

/// One entity's record from its replies (an `HMGET` array, then one reply per sketch).
fn record(
    names: &std::sync::Arc<FieldNames>,
    nfields: usize,
    nhlls: usize,
    it: &mut impl Iterator<Item = RValue>,
) -> EntityRecord {
    let mut rec = EntityRecord::new(names.clone());
    if nfields > 0
        && let Some(RValue::Array(vals)) = it.next()
    {
        for (i, v) in vals.into_iter().enumerate() {
            if let RValue::BulkString(b) = v {
                // Reuses the reply's buffer (copies only if it is not UTF-8).
                rec.set_field(
                    i,
                    String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
                );
            }
        }
    }
    for i in 0..nhlls {
        if let Some(RValue::BulkString(b)) = it.next() {
            rec.set_hll(i, b);
        }
    }
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_keys_carry_a_per_entity_hash_tag() {
        let k = RedisStore::entity_key("t/v", "user{1}");
        assert_eq!(k, format!("wafer:e:t/v:{{{:016x}}}:user{{1}}", fnv1a(b"user{1}")));
        // The tag depends on the entity only: one entity's keys share a slot across views.
        let tag = |k: &str| k[k.find('{').unwrap()..=k.find('}').unwrap()].to_string();
        assert_eq!(tag(&k), tag(&RedisStore::entity_key("t/other", "user{1}")));
        assert_ne!(tag(&k), tag(&RedisStore::entity_key("t/v", "user{2}")));
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
