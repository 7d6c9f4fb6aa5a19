//! Redis online store (works against a single Redis or a Cluster).
//!
//! Layout (all keys of a view share the hash tag `{view}`, so one batch and its watermark are
//! applied by one atomic script even on a Cluster; the trade-off is that one view lives on one
//! shard):
//! - `wafer:{<view>}:e:<entity>`: hash of the entity's latest values (`f:…`) and tile components
//!   (`t:…`), plus `m:<g>` markers (newest tile start per tile size, to sweep old tiles).
//! - `wafer:{<view>}:e:<entity>|t:…:h`: HLL registers of one tile (a string, `SETRANGE`d).
//! - `wafer:{<view>}:wm:<source>:<partition>`: next offset to apply.
//!
//! Writes: one `EVALSHA` per batch (all entities). Reads: one pipeline of `HMGET` (+ `GET` for
//! sketches) for all entities of a request: one round trip.

use std::fmt::Write as _;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{Script, Value as RValue};

mod spec;

use super::{Applied, EntityRecord, FieldNames, OnlineStore, StoreError, WriteBatch};
use spec::spec_json;

/// The write script. ARGV[1] is a JSON document:
/// `{"first": n|null, "next": n|null, "keep": ms, "ret": [[g, keep_ms]...],
///   "ents": [{"ops": [[kind, field, args...]...], "newest": [[g, start]...]}...]}`;
/// KEYS[1] is the watermark key ("" for none), KEYS[1+i] the hash of entity i.
/// Numbers that must stay exact (deltas, min/max) travel as strings.
const APPLY_LUA: &str = r#"
local spec = cjson.decode(ARGV[1])
if KEYS[1] ~= '' then
  local wm = redis.call('GET', KEYS[1])
  if wm and tonumber(wm) > tonumber(spec.first) then
    return {0, wm}
  end
end
local keep = tonumber(spec.keep)
local ret = {}
for _, r in ipairs(spec.ret) do ret[tostring(r[1])] = tonumber(r[2]) end
for i, ent in ipairs(spec.ents) do
  local key = KEYS[i + 1]
  for _, op in ipairs(ent.ops) do
    local kind, field = op[1], op[2]
    if kind == 'i' then
      redis.call('HINCRBY', key, field, op[3])
    elseif kind == 'mn' or kind == 'mx' then
      local cur = redis.call('HGET', key, field)
      local v = tonumber(op[3])
      if (not cur) or (kind == 'mn' and v < tonumber(cur)) or (kind == 'mx' and v > tonumber(cur)) then
        redis.call('HSET', key, field, op[3])
      end
    elseif kind == 'l' then
      local k = tonumber(op[3])
      local cur = redis.call('HGET', key, field)
      local items = {}
      if cur then items = cjson.decode(cur) end
      for _, it in ipairs(op[4]) do
        local found = false
        for _, e in ipairs(items) do
          if e[2] == it[2] then
            if it[1] > e[1] then e[1] = it[1] end
            found = true
            break
          end
        end
        if not found then table.insert(items, {it[1], it[2]}) end
      end
      table.sort(items, function(a, b)
        if a[1] ~= b[1] then return a[1] > b[1] end
        return a[2] > b[2]
      end)
      local out = {}
      for j = 1, math.min(k, #items) do out[j] = items[j] end
      redis.call('HSET', key, field, cjson.encode(out))
    elseif kind == 'h' then
      local hk = key .. '|' .. field
      for j = 3, #op, 2 do
        local idx, rank = op[j], op[j + 1]
        local cur = redis.call('GETRANGE', hk, idx, idx)
        if cur == '' or string.byte(cur) < rank then
          redis.call('SETRANGE', hk, idx, string.char(rank))
        end
      end
      redis.call('PEXPIRE', hk, keep)
    elseif kind == 'f' then
      local cur = redis.call('HGET', key, field)
      local t = tonumber(op[3])
      local replace = true
      if cur then
        local sep = string.find(cur, '|', 1, true)
        local ct = tonumber(string.sub(cur, 1, sep - 1))
        local cv = string.sub(cur, sep + 1)
        replace = t > ct or (t == ct and op[4] > cv)
      end
      if replace then redis.call('HSET', key, field, op[3] .. '|' .. op[4]) end
    end
  end
  for _, nw in ipairs(ent.newest) do
    local g, start = tostring(nw[1]), tonumber(nw[2])
    local marker = redis.call('HGET', key, 'm:' .. g)
    if (not marker) or tonumber(marker) < start then
      redis.call('HSET', key, 'm:' .. g, nw[2])
      local r = ret[g]
      if r then
        local cutoff = start - r
        for _, f in ipairs(redis.call('HKEYS', key)) do
          local fg, fs = string.match(f, '^t:(%d+):(%-?%d+):')
          if fg == g and tonumber(fs) <= cutoff then redis.call('HDEL', key, f) end
        end
      end
    end
  end
  redis.call('PEXPIRE', key, keep)
end
if KEYS[1] ~= '' then redis.call('SET', KEYS[1], spec.next) end
if KEYS[1] ~= '' then return {1, spec.next} end
return {1, ''}
"#;

pub struct RedisStore {
    conn: ConnectionManager,
    script: Script,
}

impl RedisStore {
    /// Connect (the connection manager reconnects by itself after failures).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
            .set_response_timeout(Some(std::time::Duration::from_secs(5)))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, cfg).await?;
        Ok(Self { conn, script: Script::new(APPLY_LUA) })
    }

    fn entity_key(view: &str, entity: &str) -> String {
        format!("wafer:{{{view}}}:e:{entity}")
    }

    fn wm_key(view: &str, source: &str, partition: i32) -> String {
        format!("wafer:{{{view}}}:wm:{source}:{partition}")
    }
}

#[async_trait]
impl OnlineStore for RedisStore {
    async fn apply(&self, batch: &WriteBatch<'_>) -> Result<Applied, StoreError> {
        let mut inv = self.script.prepare_invoke();
        match &batch.mark {
            Some(m) => inv.key(Self::wm_key(batch.view, &m.source, m.partition)),
            None => inv.key(""),
        };
        for e in batch.entities {
            inv.key(Self::entity_key(batch.view, &e.entity));
        }
        inv.arg(spec_json(batch));
        let mut conn = self.conn.clone();
        let (ok, wm): (i64, Option<String>) = inv.invoke_async(&mut conn).await?;
        let wm = wm.unwrap_or_default();
        Ok(if ok == 1 { Applied::Applied } else { Applied::Stale { watermark: wm.parse().unwrap_or(i64::MAX) } })
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
        let mut pipe = redis::pipe();
        let mut key = String::with_capacity(view.len() + 32);
        for e in entities {
            key.clear();
            let _ = write!(key, "wafer:{{{view}}}:e:{e}");
            if !fields.is_empty() {
                pipe.cmd("HMGET").arg(key.as_str()).arg(fields);
            }
            for h in hlls {
                pipe.cmd("GET").arg(format!("{key}|{h}"));
            }
        }
        let mut conn = self.conn.clone();
        let values: Vec<RValue> = pipe.query_async(&mut conn).await?;
        let names = FieldNames::new(fields, hlls);
        let mut it = values.into_iter();
        let mut out = Vec::with_capacity(entities.len());
        for _ in entities {
            let mut rec = EntityRecord::new(names.clone());
            if !fields.is_empty() {
                if let Some(RValue::Array(vals)) = it.next() {
                    for (i, v) in vals.into_iter().enumerate() {
                        if let RValue::BulkString(b) = v {
                            // Reuses the reply's buffer (copies only if it is not UTF-8).
                            rec.set_field(
                                i,
                                String::from_utf8(b)
                                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
                            );
                        }
                    }
                }
            }
            for i in 0..hlls.len() {
                if let Some(RValue::BulkString(b)) = it.next() {
                    rec.set_hll(i, b);
                }
            }
            out.push(rec);
        }
        Ok(out)
    }

    async fn delete_view(&self, view: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let pattern = format!("wafer:{{{view}}}:*");
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                redis::cmd("UNLINK").arg(&keys).query_async::<()>(&mut conn).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}
