//! A serving deadline over any online store's reads, separate from the store's own timeouts
//! (which the write path needs long: a batch retried after 5 s is fine, a feature request
//! waiting 5 s is not).
//!
//! A read that misses the deadline fails as [`StoreError::Timeout`] (503). For one deadline after
//! a miss, reads fail at once instead of each waiting the deadline out again, so a burst of
//! requests against an unresponsive store answers in microseconds, not a deadline each. Writes,
//! watermarks and deletes pass through untouched.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{EntityRecord, OnlineStore, Outcome, StoreError, WriteBatch};

pub struct ReadDeadline<S> {
    inner: S,
    deadline: Duration,
    /// Reads fail fast until this many µs after `epoch` (0: no recent miss).
    fail_fast_until_us: AtomicU64,
    epoch: Instant,
}

impl<S: OnlineStore> ReadDeadline<S> {
    pub fn new(inner: S, deadline: Duration) -> Self {
        Self { inner, deadline, fail_fast_until_us: AtomicU64::new(0), epoch: Instant::now() }
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
}

#[async_trait]
impl<S: OnlineStore> OnlineStore for ReadDeadline<S> {
    async fn write(&self, batch: &WriteBatch<'_>) -> Result<Outcome, StoreError> {
        self.inner.write(batch).await
    }

    async fn watermark(&self, view: &str, source: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        self.inner.watermark(view, source, partition).await
    }

    async fn read(
        &self,
        view: &str,
        entities: &[&str],
        fields: &[String],
        hlls: &[String],
    ) -> Result<Vec<EntityRecord>, StoreError> {
        if self.now_us() < self.fail_fast_until_us.load(Relaxed) {
            return Err(StoreError::Timeout(self.deadline));
        }
        match tokio::time::timeout(self.deadline, self.inner.read(view, entities, fields, hlls)).await {
            Ok(r) => r,
            Err(_) => {
                self.fail_fast_until_us.store(self.now_us() + self.deadline.as_micros() as u64, Relaxed);
                Err(StoreError::Timeout(self.deadline))
            }
        }
    }

    async fn delete_view(&self, view: &str) -> Result<(), StoreError> {
        self.inner.delete_view(view).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    /// A store whose reads never answer (an unresponsive Redis).
    struct Frozen(EmbeddedStore);

    #[async_trait]
    impl OnlineStore for Frozen {
        async fn write(&self, batch: &WriteBatch<'_>) -> Result<Outcome, StoreError> {
            self.0.write(batch).await
        }
        async fn watermark(&self, view: &str, source: &str, partition: i32) -> Result<Option<i64>, StoreError> {
            self.0.watermark(view, source, partition).await
        }
        async fn read(&self, _: &str, _: &[&str], _: &[String], _: &[String]) -> Result<Vec<EntityRecord>, StoreError> {
            std::future::pending().await
        }
        async fn delete_view(&self, view: &str) -> Result<(), StoreError> {
            self.0.delete_view(view).await
        }
    }

    #[tokio::test]
    async fn a_read_past_the_deadline_fails_and_the_next_ones_fail_fast() {
        let s = ReadDeadline::new(Frozen(EmbeddedStore::new()), Duration::from_millis(50));
        let e = s.read("v", &["a"], &["f".into()], &[]).await.unwrap_err();
        assert!(matches!(e, StoreError::Timeout(_)) && e.is_transient(), "{e}");
        let t = Instant::now();
        assert!(matches!(s.read("v", &["a"], &["f".into()], &[]).await, Err(StoreError::Timeout(_))));
        assert!(t.elapsed() < Duration::from_millis(50), "the second read did not wait the deadline out");
        tokio::time::sleep(Duration::from_millis(60)).await;
        let t = Instant::now();
        assert!(s.read("v", &["a"], &["f".into()], &[]).await.is_err());
        assert!(t.elapsed() >= Duration::from_millis(50), "after the fail-fast window reads try the store again");
        let ok = ReadDeadline::new(EmbeddedStore::new(), Duration::from_millis(50));
        assert_eq!(ok.read("v", &["a"], &["f".into()], &[]).await.unwrap().len(), 1);
    }
}
