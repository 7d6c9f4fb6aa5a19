//! A tenant's cap on the entity records it keeps in the shared online store (quota
//! `max_stored_entities`): where a tenant's storage limit is enforced.
//!
//! A record is one entity of one view (the same user in three views is three records). While
//! the tenant holds fewer records than its quota, writes create records freely; at the quota, a
//! write still updates the tenant's existing records but creates none: the entities it would
//! have created come back in [`Outcome::refused`](super::Outcome::refused) and their ops are not
//! applied. Existing entities never stop updating, so a tenant at its quota keeps serving exact
//! features for what it has.
//!
//! **How the count is kept.** The embedded store counts exactly (it holds every record). On
//! Redis, records of one tenant spread over every slot of a Cluster, so no script can count them
//! atomically: each write script reports how many records it created and the store adds them to
//! a per-tenant counter key (`INCRBY`), whose answer is the count this node acts on. Records that
//! expire (TTL) or are deleted do not decrement it, so while a tenant is refused the store
//! recounts its records (`SCAN … TYPE hash`, every master) at most every
//! [`RECOUNT_EVERY_MS`] and sets the counter to the result. Consequences, documented for
//! operators: the quota is enforced per write, so concurrent writers (several nodes, or batches
//! in flight) can overshoot it by what they create at once; a tenant whose records expired is
//! refused until the next recount (at most [`RECOUNT_EVERY_MS`] later).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};

/// How often (at most) a refused tenant's records are recounted from the store (ms).
pub const RECOUNT_EVERY_MS: i64 = 30_000;

/// How often (at most) refusals of one tenant are logged (ms); every refusal is counted.
const WARN_EVERY_MS: i64 = 10_000;

/// One tenant's record quota and what this node knows of its usage, shared by the tenant's views.
#[derive(Debug)]
pub struct EntityQuota {
    tenant: String,
    max: u64,
    /// Records the tenant holds, as last learned from the store.
    stored: AtomicU64,
    /// When the store was last asked for the count (ms since the epoch; 0: never).
    counted_ms: AtomicI64,
    /// A recount is running (at most one per tenant and node).
    recounting: AtomicBool,
    /// When a refusal was last logged (ms since the epoch).
    warned_ms: AtomicI64,
    /// Least time between recounts (ms).
    recount_every_ms: i64,
}

impl EntityQuota {
    /// The quota of `tenant`: at most `max` records.
    pub fn new(tenant: &str, max: u64) -> Self {
        Self {
            tenant: tenant.to_string(),
            max,
            stored: AtomicU64::new(0),
            counted_ms: AtomicI64::new(0),
            recounting: AtomicBool::new(false),
            warned_ms: AtomicI64::new(0),
            recount_every_ms: RECOUNT_EVERY_MS,
        }
    }

    /// Recount at most every `ms` instead of [`RECOUNT_EVERY_MS`] (each recount scans the
    /// store's keys: shorter intervals cost Redis more while the tenant is at its quota).
    pub fn with_recount_every_ms(mut self, ms: i64) -> Self {
        self.recount_every_ms = ms;
        self
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The most records the tenant may hold.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Records the tenant holds, as this node last learned.
    pub fn stored(&self) -> u64 {
        self.stored.load(Relaxed)
    }

    /// Whether a write may create new records now.
    pub fn allows_new(&self) -> bool {
        self.stored() < self.max
    }

    /// Record the store's count (after a write created records, or a recount).
    pub fn set_stored(&self, n: u64, now_ms: i64) {
        self.stored.store(n, Relaxed);
        self.counted_ms.store(now_ms, Relaxed);
    }

    /// Whether the store's count has been read at least once by this node.
    pub fn counted(&self) -> bool {
        self.counted_ms.load(Relaxed) != 0
    }

    /// Claim the recount if the last count is older than the recount interval and none is
    /// running; the caller recounts and then calls [`Self::recounted`].
    pub fn claim_recount(&self, now_ms: i64) -> bool {
        now_ms - self.counted_ms.load(Relaxed) >= self.recount_every_ms
            && self.recounting.compare_exchange(false, true, Relaxed, Relaxed).is_ok()
    }

    /// A claimed recount ended (with the count, or `None` when it failed: retried later).
    pub fn recounted(&self, n: Option<u64>, now_ms: i64) {
        match n {
            Some(n) => self.set_stored(n, now_ms),
            None => self.counted_ms.store(now_ms, Relaxed),
        }
        self.recounting.store(false, Relaxed);
    }

    /// Whether a refusal should be logged now (at most every few seconds per tenant).
    pub fn should_warn(&self, now_ms: i64) -> bool {
        let last = self.warned_ms.load(Relaxed);
        now_ms - last >= WARN_EVERY_MS && self.warned_ms.compare_exchange(last, now_ms, Relaxed, Relaxed).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_at_its_quota_is_refused_and_recounted_at_most_every_interval() {
        let q = EntityQuota::new("acme", 2);
        assert!(q.allows_new() && !q.counted());
        q.set_stored(2, 1_000);
        assert!(!q.allows_new());
        assert!(!q.claim_recount(1_000 + RECOUNT_EVERY_MS - 1), "too soon after a count");
        assert!(q.claim_recount(1_000 + RECOUNT_EVERY_MS));
        assert!(!q.claim_recount(1_000 + 2 * RECOUNT_EVERY_MS), "one recount at a time");
        q.recounted(Some(1), 1_000 + RECOUNT_EVERY_MS);
        assert!(q.allows_new());
        assert!(q.should_warn(50_000) && !q.should_warn(50_001));
    }
}
