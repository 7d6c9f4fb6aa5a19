//! The write script and its flat arguments: one `EVALSHA` applies the ops of one or more
//! entities, each atomically with its own replay guard (see the parent module's doc).
//!
//! Arguments are flat (no JSON document to decode): `KEYS[i]` is the hash of entity `i`;
//! `ARGV` is
//! `keep_ms, guard_field, first, next, idem, idem_ttl_ms, create, nret, (g, keep_ms)*nret,` then per
//! entity `nops, op*, nnewest, (g, start)*nnewest`, where an op is one of
//! - `i field delta` (HINCRBY), `n field value` (min), `x field value` (max),
//! - `l field k order count (t value)*count` (last-k distinct values, stored as a JSON list),
//!   and `e …` with the same arguments (first-k distinct values),
//! - `q field decimal` (add a non-negative decimal integer of any length: square sums),
//! - `b field count (key count)*count` (add DDSketch bucket counts, stored as
//!   [`quantile`](crate::aggregate::quantile)'s `key:count` list),
//! - `h field count (index rank)*count` (HLL registers, in the key `KEYS[i]|field`, sparse or
//!   dense exactly as [`hll::update`](crate::aggregate::hll::update) writes them),
//! - `f field order t value` (latest value, stored as `t|value`),
//!
//! where `order` is a [`TieOrder`](crate::aggregate::order::TieOrder) code (`i`, `f`, `t`,
//! `j`). The script's comparisons are those of [`crate::aggregate::order`], written again in Lua
//! on the same strings: integers by sign,
//! length and digits (exact beyond 2⁵³), floats by `tonumber` (correctly rounded, so exact on the
//! shortest round-trip decimals Wafer writes) with `−0.0` below `0.0` and NaN on top, text and
//! JSON by bytes (`bytes_gt`) — never Lua's string `<`, which uses the server's `LC_COLLATE`.
//!
//! `create` is the tenant's [quota](crate::store::quota) mode: empty (no quota), `1` (entities
//! may be created; the script counts those it creates) or `0` (the tenant is at its quota: an
//! entity whose hash does not exist is not written).
//!
//! The reply lists the entities that were *not* applied: `{i, guard, ...}` with the guard
//! (next offset already applied to that entity from this source partition; `-1` for an
//! idempotency key already seen; `-2` for an entity refused by the quota), then, when the call
//! created entities under a quota, `{0, created}`.

use redis::Cmd;

use crate::aggregate::ops::{EntityOps, TileOp, f64_repr, parse_tile_field};

/// See the module doc for the argument layout and the comparisons.
pub(super) const APPLY_LUA: &str = r#"
local function bytes_gt(a, b)
  local la, lb = #a, #b
  local n = la < lb and la or lb
  for j = 1, n do
    local x, y = string.byte(a, j), string.byte(b, j)
    if x ~= y then return x > y end
  end
  return la > lb
end
local function int_gt(a, b)
  local na, nb = string.byte(a, 1) == 45, string.byte(b, 1) == 45
  if na ~= nb then return nb end
  if #a ~= #b then
    if na then return #a < #b end
    return #a > #b
  end
  if na then return bytes_gt(b, a) end
  return bytes_gt(a, b)
end
local function num_cmp(x, y)
  if x < y then return -1 end
  if x > y then return 1 end
  if x == 0 and y == 0 then
    local px, py = 1 / x > 0, 1 / y > 0
    if px ~= py then return px and 1 or -1 end
  end
  return 0
end
local function float_rank(s)
  if s == '"NaN"' then return 1, 0 end
  if s == '"Infinity"' then return 0, math.huge end
  if s == '"-Infinity"' then return 0, -math.huge end
  local x = tonumber(s)
  if x == nil or x ~= x then return 2, 0 end
  return 0, x
end
local function float_gt(a, b)
  local ca, x = float_rank(a)
  local cb, y = float_rank(b)
  if ca ~= cb then return ca > cb end
  local c = num_cmp(x, y)
  if c ~= 0 then return c > 0 end
  return bytes_gt(a, b)
end
local function key_gt(order, a, b)
  if order == 'i' then return int_gt(a, b) end
  if order == 'f' then return float_gt(a, b) end
  return bytes_gt(a, b)
end
local function text_of_json(s)
  local ok, v = pcall(cjson.decode, s)
  if ok and type(v) == 'string' then return v end
  return s
end
local function json_gt(order, a, b)
  if order == 't' then return bytes_gt(text_of_json(a), text_of_json(b)) end
  return key_gt(order, a, b)
end
local function dec_add(x, y)
  local groups, carry = {}, 0
  local i, j = #x, #y
  while i > 0 or j > 0 or carry > 0 do
    local sum = carry
    if i > 0 then sum = sum + tonumber(string.sub(x, math.max(1, i - 6), i)); i = i - 7 end
    if j > 0 then sum = sum + tonumber(string.sub(y, math.max(1, j - 6), j)); j = j - 7 end
    if sum >= 10000000 then carry = 1; sum = sum - 10000000 else carry = 0 end
    groups[#groups + 1] = sum
  end
  if #groups == 0 then return '0' end
  local out = {string.format('%d', groups[#groups])}
  for g = #groups - 1, 1, -1 do out[#out + 1] = string.format('%07d', groups[g]) end
  return table.concat(out)
end
local HLL_SPARSE_MAX = 512
local function hll_sparse(hk, a, count)
  local cur = redis.call('GET', hk) or string.char(255)
  local n = (#cur - 1) / 3
  local changed = false
  for j = 0, count - 1 do
    local idx, rank = tonumber(ARGV[a + 2 * j]), tonumber(ARGV[a + 2 * j + 1])
    if idx < 4096 then
      local lo, hi = 0, n
      while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        local q = 2 + 3 * mid
        if string.byte(cur, q) * 256 + string.byte(cur, q + 1) < idx then lo = mid + 1 else hi = mid end
      end
      local p = 2 + 3 * lo
      if lo < n and string.byte(cur, p) * 256 + string.byte(cur, p + 1) == idx then
        if string.byte(cur, p + 2) < rank then
          cur = string.sub(cur, 1, p + 1) .. string.char(rank) .. string.sub(cur, p + 3)
          changed = true
        end
      else
        cur = string.sub(cur, 1, p - 1) .. string.char(math.floor(idx / 256), idx % 256, rank) .. string.sub(cur, p)
        n = n + 1
        changed = true
      end
    end
  end
  if not changed then return end
  if n > HLL_SPARSE_MAX then
    local d = {}
    for j = 1, 4096 do d[j] = 0 end
    for e = 0, n - 1 do
      local p = 2 + 3 * e
      d[string.byte(cur, p) * 256 + string.byte(cur, p + 1) + 1] = string.byte(cur, p + 2)
    end
    cur = string.char(unpack(d))
  end
  redis.call('SET', hk, cur)
end
local keep = ARGV[1]
local guard_field, first, next_off = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local idem, idem_ttl = ARGV[5], ARGV[6]
local create = ARGV[7]
local nret = tonumber(ARGV[8])
local ret = {}
local a = 9
for _ = 1, nret do
  ret[ARGV[a]] = tonumber(ARGV[a + 1])
  a = a + 2
end
local skipped = {}
local created = 0
for i = 1, #KEYS do
  local key = KEYS[i]
  local run = true
  if guard_field ~= '' then
    local g = redis.call('HGET', key, guard_field)
    if g and tonumber(g) > first then
      run = false
      skipped[#skipped + 1] = i
      skipped[#skipped + 1] = g
    end
  end
  local marker
  if run and idem ~= '' then
    marker = key .. '|k:' .. idem
    if redis.call('EXISTS', marker) == 1 then
      run = false
      skipped[#skipped + 1] = i
      skipped[#skipped + 1] = '-1'
    end
  end
  if run and create ~= '' and redis.call('EXISTS', key) == 0 then
    if create == '0' then
      run = false
      skipped[#skipped + 1] = i
      skipped[#skipped + 1] = '-2'
    else
      created = created + 1
    end
  end
  local nops = tonumber(ARGV[a])
  a = a + 1
  for _ = 1, nops do
    local kind, field = ARGV[a], ARGV[a + 1]
    a = a + 2
    if kind == 'i' then
      if run then redis.call('HINCRBY', key, field, ARGV[a]) end
      a = a + 1
    elseif kind == 'n' or kind == 'x' then
      if run then
        local cur = redis.call('HGET', key, field)
        local replace = true
        if cur then
          local c = num_cmp(tonumber(ARGV[a]), tonumber(cur))
          replace = (kind == 'n' and c < 0) or (kind == 'x' and c > 0)
        end
        if replace then redis.call('HSET', key, field, ARGV[a]) end
      end
      a = a + 1
    elseif kind == 'l' or kind == 'e' then
      local earliest = kind == 'e'
      local k, order, count = tonumber(ARGV[a]), ARGV[a + 1], tonumber(ARGV[a + 2])
      a = a + 3
      if run then
        local cur = redis.call('HGET', key, field)
        local items = {}
        if cur then items = cjson.decode(cur) end
        for j = 0, count - 1 do
          local t, v = tonumber(ARGV[a + 2 * j]), ARGV[a + 2 * j + 1]
          local found = false
          for _, e in ipairs(items) do
            if e[2] == v then
              if (earliest and t < e[1]) or ((not earliest) and t > e[1]) then e[1] = t end
              found = true
              break
            end
          end
          if not found then items[#items + 1] = {t, v} end
        end
        table.sort(items, function(p, q)
          if p[1] ~= q[1] then
            if earliest then return p[1] < q[1] end
            return p[1] > q[1]
          end
          return key_gt(order, p[2], q[2])
        end)
        local out = {}
        for j = 1, math.min(k, #items) do out[j] = items[j] end
        redis.call('HSET', key, field, cjson.encode(out))
      end
      a = a + 2 * count
    elseif kind == 'q' then
      if run then redis.call('HSET', key, field, dec_add(redis.call('HGET', key, field) or '0', ARGV[a])) end
      a = a + 1
    elseif kind == 'b' then
      local count = tonumber(ARGV[a])
      a = a + 1
      if run then
        local buckets, keys = {}, {}
        local cur = redis.call('HGET', key, field)
        if cur then
          for bk, c in string.gmatch(cur, '(%-?%d+):(%d+)') do
            bk = tonumber(bk)
            if not buckets[bk] then keys[#keys + 1] = bk end
            buckets[bk] = (buckets[bk] or 0) + tonumber(c)
          end
        end
        for j = 0, count - 1 do
          local bk, c = tonumber(ARGV[a + 2 * j]), tonumber(ARGV[a + 2 * j + 1])
          if not buckets[bk] then keys[#keys + 1] = bk end
          buckets[bk] = (buckets[bk] or 0) + c
        end
        table.sort(keys)
        local out = {}
        for n, bk in ipairs(keys) do out[n] = string.format('%d:%d', bk, buckets[bk]) end
        redis.call('HSET', key, field, table.concat(out, ' '))
      end
      a = a + 2 * count
    elseif kind == 'h' then
      local count = tonumber(ARGV[a])
      a = a + 1
      if run then
        local hk = key .. '|' .. field
        local head = redis.call('GETRANGE', hk, 0, 0)
        if head ~= '' and string.byte(head) ~= 255 then
          for j = 0, count - 1 do
            local idx, rank = tonumber(ARGV[a + 2 * j]), tonumber(ARGV[a + 2 * j + 1])
            local cur = redis.call('GETRANGE', hk, idx, idx)
            if cur == '' or string.byte(cur) < rank then
              redis.call('SETRANGE', hk, idx, string.char(rank))
            end
          end
        else
          hll_sparse(hk, a, count)
        end
        redis.call('PEXPIRE', hk, keep)
      end
      a = a + 2 * count
    elseif kind == 'f' then
      if run then
        local cur = redis.call('HGET', key, field)
        local order, t, v = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2]
        local replace = true
        if cur then
          local sep = string.find(cur, '|', 1, true)
          local ct = tonumber(string.sub(cur, 1, sep - 1))
          local cv = string.sub(cur, sep + 1)
          replace = t > ct or (t == ct and json_gt(order, v, cv))
        end
        if replace then redis.call('HSET', key, field, ARGV[a + 1] .. '|' .. v) end
      end
      a = a + 3
    end
  end
  local nnew = tonumber(ARGV[a])
  a = a + 1
  for _ = 1, nnew do
    local g, start = ARGV[a], tonumber(ARGV[a + 1])
    a = a + 2
    if run then
      local marker_field = 'm:' .. g
      local m = redis.call('HGET', key, marker_field)
      if (not m) or tonumber(m) < start then
        redis.call('HSET', key, marker_field, start)
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
  end
  if run then
    if guard_field ~= '' then redis.call('HSET', key, guard_field, next_off) end
    if marker then redis.call('SET', marker, '1', 'PX', idem_ttl) end
    redis.call('PEXPIRE', key, keep)
  end
end
if created > 0 then
  skipped[#skipped + 1] = 0
  skipped[#skipped + 1] = created
end
return skipped
"#;

/// What every call of one batch shares: the guard, the idempotency key and retention.
pub(super) struct Common<'a> {
    pub keep_ms: i64,
    /// `o:<source>:<partition>` for a batch with a source mark, else empty.
    pub guard_field: &'a str,
    pub first: i64,
    pub next: i64,
    /// The push's idempotency key, or empty.
    pub idem: &'a str,
    pub idem_ttl_ms: i64,
    /// The quota mode (see the module doc): `""`, `"1"` or `"0"`.
    pub create: &'a str,
    pub retention: &'a [(i64, i64)],
}

/// How many "units" (ops, HLL registers, last-n items) one call carries at most: a call stays
/// within a few milliseconds of Redis time. An entity is never split (it is applied atomically),
/// so one entity with more units gets a call of its own.
pub(super) const UNITS_PER_CALL: usize = 2048;

/// The size of one entity's write in units (see [`UNITS_PER_CALL`]).
pub(super) fn units(e: &EntityOps) -> usize {
    1 + e
        .ops
        .iter()
        .map(|op| match op {
            TileOp::LastN { items, .. } | TileOp::FirstN { items, .. } => 1 + items.len(),
            TileOp::Hll { registers, .. } => 1 + registers.len(),
            TileOp::Buckets { counts, .. } => 1 + counts.len(),
            _ => 1,
        })
        .sum::<usize>()
}

/// The `EVALSHA` of `entities` (with their keys, in the same order).
pub(super) fn call(sha: &str, c: &Common<'_>, keys: &[String], entities: &[&EntityOps]) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(sha).arg(keys.len()).arg(keys);
    cmd.arg(c.keep_ms.max(1)).arg(c.guard_field).arg(c.first).arg(c.next).arg(c.idem).arg(c.idem_ttl_ms.max(1));
    cmd.arg(c.create);
    cmd.arg(c.retention.len());
    for (g, r) in c.retention {
        cmd.arg(*g).arg(*r);
    }
    let mut newest: Vec<(i64, i64)> = Vec::new();
    for e in entities {
        cmd.arg(e.ops.len());
        newest.clear();
        for op in &e.ops {
            push_op(&mut cmd, op);
            if let Some((g, s)) = parse_tile_field(op.field())
                && g > 0
            {
                match newest.iter_mut().find(|(ng, _)| *ng == g) {
                    Some(n) => n.1 = n.1.max(s),
                    None => newest.push((g, s)),
                }
            }
        }
        cmd.arg(newest.len());
        for (g, s) in &newest {
            cmd.arg(*g).arg(*s);
        }
    }
    cmd
}

fn push_op(cmd: &mut Cmd, op: &TileOp) {
    match op {
        TileOp::Incr { field, delta } => {
            cmd.arg("i").arg(field).arg(*delta);
        }
        TileOp::Min { field, value } => {
            cmd.arg("n").arg(field).arg(f64_repr(*value));
        }
        TileOp::Max { field, value } => {
            cmd.arg("x").arg(field).arg(f64_repr(*value));
        }
        TileOp::LastN { field, k, order, items } => {
            cmd.arg("l").arg(field).arg(i64::from(*k)).arg(order.code()).arg(items.len());
            for (t, v) in items {
                cmd.arg(*t).arg(v);
            }
        }
        TileOp::FirstN { field, k, order, items } => {
            cmd.arg("e").arg(field).arg(i64::from(*k)).arg(order.code()).arg(items.len());
            for (t, v) in items {
                cmd.arg(*t).arg(v);
            }
        }
        TileOp::AddDecimal { field, delta } => {
            cmd.arg("q").arg(field).arg(delta);
        }
        TileOp::Buckets { field, counts } => {
            cmd.arg("b").arg(field).arg(counts.len());
            for (k, c) in counts {
                cmd.arg(*k).arg(*c);
            }
        }
        TileOp::Hll { field, registers } => {
            cmd.arg("h").arg(field).arg(registers.len());
            for (i, r) in registers {
                cmd.arg(i64::from(*i)).arg(i64::from(*r));
            }
        }
        TileOp::Latest { field, event_time, order, value } => {
            cmd.arg("f").arg(field).arg(order.code()).arg(*event_time).arg(value);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_script_keeps_sketches_sparse_up_to_the_same_threshold_as_the_rust_side() {
        let line = format!("local HLL_SPARSE_MAX = {}\n", crate::aggregate::hll::SPARSE_MAX);
        assert!(super::APPLY_LUA.contains(&line), "{line}");
    }
}
