//! One Kafka batch after it was received: split by partition and filtered against the
//! watermarks, transformed once, written per partition, then committed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::bindings::types::Event;
use crate::pipeline::breaker::Verdict;
use crate::pipeline::{Prepared, StreamView};
use crate::sources::SourceEnv;
use crate::store::{Applied, SourceMark, WriteBatch};
use crate::time::now_ms;

use super::health::KafkaConsumer;

/// Per partition: the source its watermark is kept under and the watermark. The source is the
/// topic, or `<topic>#<epoch>` once the partition's log was found to restart below the watermark
/// (topic re-created, log lost): a new epoch starts a new watermark at 0, kept as the
/// watermark of the pseudo-source `<topic>#epoch` (so it survives restarts, and every node agrees).
#[derive(Default)]
pub(super) struct Marks {
    pub(super) wm: HashMap<i32, i64>,
    source: HashMap<i32, String>,
}

/// The watermark source of `topic` in `epoch`.
fn source_name(topic: &str, epoch: i64) -> String {
    if epoch == 0 { topic.to_owned() } else { format!("{topic}#{epoch}") }
}

impl Marks {
    /// The partition's watermark, read from the store the first time it is seen.
    async fn load(&mut self, view: &StreamView, env: &SourceEnv, topic: &str, partition: i32) -> i64 {
        if let Some(w) = self.wm.get(&partition) {
            return *w;
        }
        let epoch_src = format!("{topic}#epoch");
        let epoch = retry_store(view, || env.store.watermark(&view.id, &epoch_src, partition)).await.unwrap_or(0);
        let source = source_name(topic, epoch);
        let w = retry_store(view, || env.store.watermark(&view.id, &source, partition)).await.unwrap_or(0);
        self.source.insert(partition, source);
        self.wm.insert(partition, w);
        w
    }

    fn source<'a>(&'a self, topic: &'a str, partition: i32) -> &'a str {
        self.source.get(&partition).map_or(topic, String::as_str)
    }

    /// Start a new epoch for `partition` (its log restarted below the watermark): the next one
    /// after the one this consumer used, or the store's if another consumer already started it.
    /// Afterwards the partition's watermark is that epoch's (0 for a new one).
    pub(super) async fn new_epoch(&mut self, view: &StreamView, env: &SourceEnv, topic: &str, partition: i32) -> i64 {
        let epoch_src = format!("{topic}#epoch");
        let mine = self.source(topic, partition).rsplit_once('#').and_then(|(_, e)| e.parse().ok()).unwrap_or(0i64);
        let stored = retry_store(view, || env.store.watermark(&view.id, &epoch_src, partition)).await.unwrap_or(0);
        let epoch = if stored > mine {
            stored
        } else {
            let mark = SourceMark { source: epoch_src.clone(), partition, first_offset: mine, next_offset: mine + 1 };
            let batch = WriteBatch {
                view: &view.id,
                mark: Some(mark),
                entities: &[],
                keep_ms: 0,
                retention: &[],
                idempotency_key: None,
                quota: None,
            };
            match retry_store(view, || env.store.apply(&batch)).await {
                Applied::Applied => mine + 1,
                Applied::Stale { watermark } => watermark,
            }
        };
        let source = source_name(topic, epoch);
        let w = retry_store(view, || env.store.watermark(&view.id, &source, partition)).await.unwrap_or(0);
        self.source.insert(partition, source);
        self.wm.insert(partition, w);
        epoch
    }
}

/// One partition's share of a batch: its events are `range` of the batch.
pub(super) struct Part {
    partition: i32,
    /// The watermark after this batch (one past its highest offset).
    next: i64,
    pub(super) range: std::ops::Range<usize>,
    /// `None` when every event was below the watermark (already applied).
    mark: Option<SourceMark>,
}

/// A batch whose transform ran, waiting for its write.
pub(super) struct Ready {
    pub(super) events: Vec<Event>,
    pub(super) parts: Vec<Part>,
    pub(super) prepared: Vec<Prepared>,
}

/// What the write of one partition's share did.
pub(super) enum Written {
    Applied,
    /// Refused (the watermark, the events refused).
    Stale(i64, u64),
    Skipped,
}

/// Split a partition-sorted batch by partition, drop what is below each watermark, transform it
/// once and fold it per partition (retrying after the breaker's pause while the view is paused).
pub(super) async fn prepare(
    view: &StreamView,
    env: &SourceEnv,
    topic: &str,
    marks: &mut Marks,
    events: Vec<Event>,
) -> Ready {
    let mut kept: Vec<Event> = Vec::with_capacity(events.len());
    let mut parts: Vec<Part> = Vec::new();
    let mut replayed = 0;
    let mut rest = events.into_iter().peekable();
    while let Some(partition) = rest.peek().map(|e| e.partition) {
        let wm = marks.load(view, env, topic, partition).await;
        let start = kept.len();
        let mut next = wm;
        while let Some(e) = rest.next_if(|e| e.partition == partition) {
            next = next.max(e.offset + 1);
            if e.offset >= wm {
                kept.push(e);
            } else {
                replayed += 1;
            }
        }
        let range = start..kept.len();
        let mark = (!range.is_empty()).then(|| SourceMark {
            source: marks.source(topic, partition).to_owned(),
            partition,
            first_offset: kept[start].offset,
            next_offset: next,
        });
        parts.push(Part { partition, next, range, mark });
    }
    if replayed > 0 {
        view.metrics.replays.add(&view.id, "kafka", replayed);
    }
    // A persistently failing transform pauses the view: the same batch is retried after the
    // breaker's cooldown, nothing is dead-lettered or committed meanwhile.
    let ranges: Vec<std::ops::Range<usize>> = parts.iter().map(|p| p.range.clone()).collect();
    let prepared = loop {
        let p = view.prepare_groups(&kept, &ranges);
        if kept.is_empty() {
            break p;
        }
        match view.judge_all(&p) {
            Verdict::Tripped { pause } => tokio::time::sleep(pause).await,
            _ => break p,
        }
    };
    Ready { events: kept, parts, prepared }
}

/// Write every partition's share (concurrently: one pipelined round trip), retrying while the
/// store is unavailable, then record freshness for what was applied.
pub(super) async fn write(view: Arc<StreamView>, env: SourceEnv, ready: Ready) -> Vec<(i32, i64, Written)> {
    let writes = ready.parts.iter().zip(&ready.prepared).map(|(p, prep)| {
        let (view, env, events) = (&view, &env, &ready.events);
        async move {
            let Some(mark) = &p.mark else { return Written::Skipped };
            let mut applied = retry_store(view, || view.commit(env.store.as_ref(), prep, Some(mark.clone()))).await;
            // The store holds this range only up to `watermark` (another consumer before a
            // rebalance, or entities written before a crash): write the rest from there now, or
            // nobody ever will (our fetch position is past it). Each round moves `watermark` up.
            let mut from = mark.first_offset;
            while let Applied::Stale { watermark } = applied {
                if watermark >= p.next || watermark <= from {
                    break;
                }
                from = watermark;
                let rest: Vec<Event> =
                    events[p.range.clone()].iter().filter(|e| e.offset >= watermark).cloned().collect();
                view.metrics.replays.add(&view.id, "kafka", (p.range.len() - rest.len()) as u64);
                let prep = view.prepare(&rest);
                let mark = SourceMark { first_offset: watermark, ..mark.clone() };
                applied = retry_store(view, || view.commit(env.store.as_ref(), &prep, Some(mark.clone()))).await;
                if applied == Applied::Applied {
                    return Written::Applied;
                }
            }
            match applied {
                Applied::Applied => Written::Applied,
                Applied::Stale { watermark } => {
                    let left = events[p.range.clone()].iter().filter(|e| e.offset >= from).count();
                    Written::Stale(watermark, left as u64)
                }
            }
        }
    });
    let results = futures::future::join_all(writes).await;
    let now = now_ms();
    let applied = ready.parts.iter().zip(&results).filter(|(_, w)| matches!(w, Written::Applied));
    view.metrics.freshness_seconds.observe_many(
        &view.id,
        applied.clone().flat_map(|(p, _)| {
            ready.events[p.range.clone()].iter().map(|e| (now - e.timestamp_ms).max(0) as f64 / 1e3)
        }),
    );
    for ((p, _), prep) in
        ready.parts.iter().zip(&results).zip(&ready.prepared).filter(|((_, w), _)| matches!(w, Written::Applied))
    {
        for f in &prep.failures {
            tracing::warn!(view = %view.id, partition = p.partition, offset = ready.events[p.range.start + f.index].offset, code = f.code, error = %f.message, "event failed");
        }
    }
    ready.parts.iter().zip(results).map(|(p, w)| (p.partition, p.next, w)).collect()
}

/// After a batch's write: advance the watermarks and note the offsets to commit. True when a
/// write was refused as stale (another consumer applied those offsets: the watermark is resynced).
pub(super) fn finish(
    commits: &mut Commits,
    view: &StreamView,
    marks: &mut Marks,
    done: Result<Vec<(i32, i64, Written)>, tokio::task::JoinError>,
) -> bool {
    let results = match done {
        Ok(r) => r,
        // Only a panic ends the write task: let it end this view's consumption, as it would
        // have without the task (nothing of the batch is committed).
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    let mut stale = false;
    for (partition, next, w) in results {
        let to = match w {
            Written::Applied | Written::Skipped => next.max(marks.wm.get(&partition).copied().unwrap_or(0)),
            Written::Stale(watermark, events) => {
                view.metrics.replays.add(&view.id, "kafka", events);
                stale = true;
                watermark
            }
        };
        marks.wm.insert(partition, to);
        commits.note(partition, to);
    }
    stale
}

/// Offsets written but not yet committed, committed at most once per interval.
pub(super) struct Commits {
    pending: HashMap<i32, i64>,
    last: Instant,
    every: Duration,
}

impl Commits {
    pub(super) fn new(every: Duration) -> Self {
        Self { pending: HashMap::new(), last: Instant::now(), every }
    }

    fn note(&mut self, partition: i32, offset: i64) {
        self.pending.insert(partition, offset);
    }

    pub(super) fn pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Commit if the interval has passed since the last commit.
    pub(super) fn flush_if_due(&mut self, consumer: &KafkaConsumer, view: &StreamView, topic: &str) {
        if self.last.elapsed() >= self.every {
            self.flush(consumer, view, topic);
        }
    }

    /// Commit what is pending now (asynchronously: a lost commit only means more replays skipped
    /// by the watermark).
    pub(super) fn flush(&mut self, consumer: &KafkaConsumer, view: &StreamView, topic: &str) {
        self.last = Instant::now();
        if self.pending.is_empty() {
            return;
        }
        let mut list = TopicPartitionList::new();
        for (partition, offset) in self.pending.drain() {
            let _ = list.add_partition_offset(topic, partition, Offset::Offset(offset));
        }
        if let Err(e) = consumer.commit(&list, CommitMode::Async) {
            tracing::warn!(view = %view.id, error = %e, "offset commit failed (replays are skipped by the watermark)");
        }
    }
}

/// Retry a store operation with backoff while the error is transient (consumption pauses).
async fn retry_store<T, F, Fut>(view: &StreamView, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::store::StoreError>>,
{
    let mut backoff = Duration::from_millis(50);
    loop {
        match op().await {
            Ok(v) => return v,
            Err(e) => {
                view.metrics.store_errors.add(&view.id, if e.is_transient() { "transient" } else { "fatal" }, 1);
                tracing::warn!(view = %view.id, error = %e, retry_in_ms = backoff.as_millis() as u64, "online store unavailable; pausing consumption");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}
