//! In-process store for `wafer dev` and single-node use. Same contract as Redis: a batch and its
//! watermark are applied under one lock (so a batch is never applied in part, and a replay is
//! refused whole); a push's idempotency key is remembered per view; records expire `keep_ms`
//! after their last write. Records are counted per tenant, exactly, for the
//! [`EntityQuota`]; expired records count until a write replaces them
//! or a refused tenant's recount sweeps them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::quota::EntityQuota;
use super::{Applied, EntityRecord, FieldNames, OnlineStore, Outcome, StoreError, WriteBatch};
use crate::aggregate::ops::{
    EntityOps, MergeList, TileOp, f64_repr, latest_wins, merge_first_n, merge_last_n, parse_tile_field,
};
use crate::aggregate::order::{max_wins, min_wins};

/// Everything stored for one entity, by field name.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Data {
    pub(crate) fields: HashMap<String, String>,
    pub(crate) hlls: HashMap<String, Vec<u8>>,
}

#[derive(Default)]
struct Record {
    data: Data,
    expires: Option<Instant>,
    /// Newest tile start per tile size (as the Redis store's `m:<g>` markers): old tiles are
    /// swept only when a newer tile starts, not on every write.
    newest: Vec<(i64, i64)>,
}

#[derive(Default)]
struct State {
    /// view → entity → record (nested, so reads look up by `&str` without allocating).
    records: HashMap<String, HashMap<String, Record>>,
    /// view → (source, partition) → next offset.
    watermarks: HashMap<String, HashMap<(String, i32), i64>>,
    /// view → idempotency key of an applied push → when it is forgotten.
    pushes: HashMap<String, HashMap<String, Instant>>,
    /// tenant → records held in its views (expired ones included until swept).
    held: HashMap<String, u64>,
}

/// The tenant of a namespaced view id (`tenant/view`).
fn tenant_of(view: &str) -> &str {
    view.split_once('/').map_or(view, |(t, _)| t)
}

impl State {
    /// Drop the tenant's expired records and recount what it holds.
    fn sweep_expired(&mut self, tenant: &str, now: Instant) -> u64 {
        let mut held = 0;
        for (_, records) in self.records.iter_mut().filter(|(v, _)| tenant_of(v) == tenant) {
            records.retain(|_, r| r.expires.is_none_or(|x| x > now));
            held += records.len() as u64;
        }
        self.held.insert(tenant.to_string(), held);
        held
    }

    /// Add `n` records to the tenant's count (allocating its name only the first time).
    fn add_held(&mut self, tenant: &str, n: u64) {
        match self.held.get_mut(tenant) {
            Some(h) => *h += n,
            None if n > 0 => {
                self.held.insert(tenant.to_string(), n);
            }
            None => {}
        }
    }

    /// The indices of `entities` new to `view` that the tenant's quota refuses (each approved
    /// one counts against the quota while the rest are judged; the caller counts what it creates).
    fn refuse_new(
        &mut self,
        view: &str,
        entities: &[EntityOps],
        q: &EntityQuota,
        now: Instant,
        now_ms: i64,
    ) -> Vec<usize> {
        let (mut refused, mut approved) = (Vec::new(), 0u64);
        for (i, e) in entities.iter().enumerate() {
            if self.records.get(view).is_some_and(|r| r.contains_key(&e.entity)) {
                continue;
            }
            if self.may_create(q, approved, now, now_ms) {
                approved += 1;
            } else {
                refused.push(i);
            }
        }
        refused
    }

    /// Whether the tenant may create one more record now, with `pending` already approved in
    /// this batch (recounting, at most every interval, when not).
    fn may_create(&mut self, quota: &EntityQuota, pending: u64, now: Instant, now_ms: i64) -> bool {
        let held = self.held.get(quota.tenant()).copied().unwrap_or(0);
        if held + pending < quota.max() {
            return true;
        }
        if quota.claim_recount(now_ms) {
            let n = self.sweep_expired(quota.tenant(), now);
            quota.recounted(Some(n), now_ms);
            return n + pending < quota.max();
        }
        false
    }
}

#[derive(Default)]
pub struct EmbeddedStore {
    state: Mutex<State>,
}

impl EmbeddedStore {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Apply one op to a record (shared semantics with the Redis script).
pub(crate) fn apply_op(rec: &mut Data, op: &TileOp) {
    match op {
        TileOp::Incr { field, delta } => {
            let cur: i64 = rec.fields.get(field).and_then(|v| v.parse().ok()).unwrap_or(0);
            rec.fields.insert(field.clone(), (cur + delta).to_string());
        }
        TileOp::Min { field, value } | TileOp::Max { field, value } => {
            let is_min = matches!(op, TileOp::Min { .. });
            let better = match rec.fields.get(field).and_then(|v| v.parse::<f64>().ok()) {
                None => true,
                Some(cur) => {
                    if is_min {
                        min_wins(*value, cur)
                    } else {
                        max_wins(*value, cur)
                    }
                }
            };
            if better {
                rec.fields.insert(field.clone(), f64_repr(*value));
            }
        }
        TileOp::LastN { field, k, order, items } | TileOp::FirstN { field, k, order, items } => {
            let merge = if matches!(op, TileOp::FirstN { .. }) { merge_first_n } else { merge_last_n as MergeList };
            let mut cur: Vec<(i64, String)> =
                rec.fields.get(field).and_then(|v| serde_json::from_str(v).ok()).unwrap_or_default();
            merge(&mut cur, items, *k as usize, *order);
            rec.fields.insert(field.clone(), serde_json::to_string(&cur).unwrap_or_default());
        }
        TileOp::AddDecimal { field, delta } => {
            let sum = crate::aggregate::decimal::add_decimal(rec.fields.get(field).map(String::as_str), delta);
            rec.fields.insert(field.clone(), sum);
        }
        TileOp::Buckets { field, counts } => {
            let merged = crate::aggregate::quantile::add_counts(rec.fields.get(field).map(String::as_str), counts);
            rec.fields.insert(field.clone(), merged);
        }
        TileOp::Hll { field, registers } => {
            crate::aggregate::hll::update(rec.hlls.entry(field.clone()).or_default(), registers);
        }
        TileOp::Latest { field, event_time, order, value } => {
            let replace = match rec.fields.get(field).and_then(|v| v.split_once('|')) {
                None => true,
                Some((t, v)) => latest_wins(*order, *event_time, value, t.parse().unwrap_or(i64::MIN), v),
            };
            if replace {
                rec.fields.insert(field.clone(), format!("{event_time}|{value}"));
            }
        }
    }
}

/// Advance the record's newest-tile markers with a batch's ops; true if any moved.
fn advance_markers(newest: &mut Vec<(i64, i64)>, ops: &[TileOp]) -> bool {
    let mut moved = false;
    for op in ops {
        if let Some((g, s)) = parse_tile_field(op.field()) {
            if g == 0 {
                continue;
            }
            match newest.iter_mut().find(|(ng, _)| *ng == g) {
                Some(n) if n.1 >= s => {}
                Some(n) => {
                    n.1 = s;
                    moved = true;
                }
                None => {
                    newest.push((g, s));
                    moved = true;
                }
            }
        }
    }
    moved
}

/// Delete tiles older than their retention relative to the newest tile of the same size.
pub(crate) fn sweep(rec: &mut Data, retention: &[(i64, i64)], newest: &[(i64, i64)]) {
    let keep = |f: &String| match parse_tile_field(f) {
        Some((g, s)) if g > 0 => {
            match (retention.iter().find(|(rg, _)| *rg == g), newest.iter().find(|(ng, _)| *ng == g)) {
                (Some((_, keep)), Some((_, n))) => s > n - keep,
                _ => true,
            }
        }
        _ => true,
    };
    rec.fields.retain(|f, _| keep(f));
    rec.hlls.retain(|f, _| keep(f));
}

#[async_trait]
impl OnlineStore for EmbeddedStore {
    async fn write(&self, batch: &WriteBatch<'_>) -> Result<Outcome, StoreError> {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        if let Some(m) = &batch.mark {
            let wms = st.watermarks.entry(batch.view.to_string()).or_default();
            let key = (m.source.clone(), m.partition);
            if let Some(&wm) = wms.get(&key)
                && wm > m.first_offset
            {
                return Ok(Applied::Stale { watermark: wm }.into());
            }
            wms.insert(key, m.next_offset);
        }
        let now = Instant::now();
        if let (None, Some(key)) = (&batch.mark, batch.idempotency_key) {
            let seen = st.pushes.entry(batch.view.to_string()).or_default();
            if seen.get(key).is_some_and(|until| *until > now) {
                return Ok(Applied::Applied.into());
            }
            if seen.len() >= 1024 {
                seen.retain(|_, until| *until > now);
            }
            seen.insert(key.to_string(), now + Duration::from_millis(super::redis::IDEMPOTENCY_TTL_MS as u64));
        }
        let tenant = tenant_of(batch.view);
        let now_ms = crate::time::now_ms();
        let refused = match batch.quota {
            Some(q) => st.refuse_new(batch.view, batch.entities, q, now, now_ms),
            None => Vec::new(),
        };
        let mut created = 0u64;
        let mut skip = refused.iter().copied().peekable();
        let records = st.records.entry(batch.view.to_string()).or_default();
        for (i, e) in batch.entities.iter().enumerate() {
            if skip.next_if_eq(&i).is_some() {
                continue;
            }
            if !records.contains_key(&e.entity) {
                records.insert(e.entity.clone(), Record::default());
                created += 1;
            }
            let Some(rec) = records.get_mut(&e.entity) else { continue };
            if rec.expires.is_some_and(|x| x <= now) {
                *rec = Record::default();
            }
            for op in &e.ops {
                apply_op(&mut rec.data, op);
            }
            if advance_markers(&mut rec.newest, &e.ops) {
                sweep(&mut rec.data, batch.retention, &rec.newest);
            }
            rec.expires = Some(now + Duration::from_millis(batch.keep_ms.max(1) as u64));
        }
        st.add_held(tenant, created);
        if let Some(q) = batch.quota
            && (created > 0 || !q.counted())
        {
            q.set_stored(st.held.get(tenant).copied().unwrap_or(0), now_ms);
        }
        Ok(Outcome { applied: Applied::Applied, refused })
    }

    async fn watermark(&self, view: &str, source: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        Ok(self.state.lock().watermarks.get(view).and_then(|w| w.get(&(source.to_string(), partition))).copied())
    }

    async fn read(
        &self,
        view: &str,
        entities: &[&str],
        fields: &[String],
        hlls: &[String],
    ) -> Result<Vec<EntityRecord>, StoreError> {
        let names = FieldNames::new(fields, hlls);
        let st = self.state.lock();
        let records = st.records.get(view);
        let now = Instant::now();
        Ok(entities
            .iter()
            .map(|e| {
                let mut rec = EntityRecord::new(names.clone());
                if let Some(r) = records.and_then(|r| r.get(*e)).filter(|r| r.expires.is_none_or(|x| x > now)) {
                    for (i, f) in fields.iter().enumerate() {
                        if let Some(v) = r.data.fields.get(f) {
                            rec.set_field(i, v.clone());
                        }
                    }
                    for (i, h) in hlls.iter().enumerate() {
                        if let Some(v) = r.data.hlls.get(h) {
                            rec.set_hll(i, v.clone());
                        }
                    }
                }
                rec
            })
            .collect())
    }

    async fn delete_view(&self, view: &str) -> Result<(), StoreError> {
        let mut st = self.state.lock();
        if let Some(records) = st.records.remove(view)
            && let Some(held) = st.held.get_mut(tenant_of(view))
        {
            *held = held.saturating_sub(records.len() as u64);
        }
        st.watermarks.remove(view);
        st.pushes.remove(view);
        Ok(())
    }
}
