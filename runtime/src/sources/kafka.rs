//! Kafka consumption: one consumer group per view (`<group_id>.<tenant>.<view>`), batched polls,
//! effectively-once results.
//!
//! For each batch, per partition:
//! 1. skip offsets below the partition's watermark (already applied: a replay after a crash or
//!    rebalance), read from the store the first time the partition is seen;
//! 2. transform + fold;
//! 3. send failed events to the dead-letter topic (with `wafer-error-code` / `wafer-error`
//!    headers) and wait for the broker's ack, *before* the write that advances the watermark
//!    (so a crash re-sends dead letters rather than losing them: at-least-once);
//! 4. one atomic store write that also advances the watermark (retried without re-running the
//!    transform), and only then commit the offsets. If the store is unavailable, nothing is committed and the
//!    batch is retried with backoff (consumption pauses), so nothing is lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::bindings::types::{Event, Header as EventHeader};
use crate::pipeline::breaker::Verdict;
use crate::pipeline::{Prepared, View};
use crate::server::{App, now_ms};
use crate::store::{Applied, SourceMark};
use crate::view::{KafkaConfig, Manifest};

/// Longest wait to fill a batch once its first event arrived. Short: under load the fetched
/// queue already holds a full batch (and events keep arriving while the previous write is in
/// flight); when caught up, every millisecond here is freshness lost.
const LINGER: Duration = Duration::from_millis(1);

pub fn spawn_consumers(kafka: &KafkaConfig, manifest: &Manifest, app: Arc<App>) -> Result<()> {
    for cfg in &manifest.views {
        let Some(topic) = cfg.topic.clone() else { continue };
        let view = app.views.get(&cfg.name).cloned().context("view not loaded")?;
        let group = format!("{}.{}.{}", kafka.group_id, manifest.server.tenant, cfg.name);
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &kafka.brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("fetch.wait.max.ms", "5")
            .create()
            .with_context(|| format!("creating the Kafka consumer for view `{}`", cfg.name))?;
        consumer.subscribe(&[&topic]).with_context(|| format!("subscribing to `{topic}`"))?;
        let dlq = match &cfg.dead_letter_topic {
            Some(t) => Some((
                t.clone(),
                ClientConfig::new()
                    .set("bootstrap.servers", &kafka.brokers)
                    .set("linger.ms", "1")
                    .create::<FutureProducer>()
                    .context("creating the dead-letter producer")?,
            )),
            None => None,
        };
        tracing::info!(view = %cfg.name, %topic, %group, "consuming");
        let batch_size = cfg.batch_size.max(1);
        let app = app.clone();
        tokio::spawn(async move { consume(consumer, view, app, topic, batch_size, dlq).await });
    }
    Ok(())
}

fn to_event(m: &BorrowedMessage<'_>) -> Event {
    Event {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().unwrap_or_default().to_vec(),
        headers: m
            .headers()
            .map(|hs| hs.iter().map(|h| EventHeader { key: h.key.to_string(), value: h.value.unwrap_or_default().to_vec() }).collect())
            .unwrap_or_default(),
    }
}

/// One partition's share of a batch: its events are `range` of the batch.
struct Part {
    partition: i32,
    /// The watermark after this batch (one past its highest offset).
    next: i64,
    range: std::ops::Range<usize>,
    /// `None` when every event was below the watermark (already applied).
    mark: Option<SourceMark>,
}

/// A batch whose transform ran, waiting for its write.
struct Ready {
    events: Vec<Event>,
    parts: Vec<Part>,
    prepared: Vec<Prepared>,
}

/// What the write of one partition's share did.
enum Written {
    Applied,
    /// Refused (the watermark, the events refused).
    Stale(i64, u64),
    Skipped,
}

/// The batch loop. Batch k+1 is received and transformed while batch k's store write is in
/// flight (at most one write at a time, so watermarks advance in order); k's offsets are committed
/// once its write is done. Per batch the order stays: dead letters acked → watermark-advancing
/// write → offset commit.
async fn consume(consumer: StreamConsumer, view: Arc<View>, app: Arc<App>, topic: String, batch_size: usize, dlq: Option<(String, FutureProducer)>) {
    let mut watermarks: HashMap<i32, i64> = HashMap::new();
    let mut inflight: Option<tokio::task::JoinHandle<Vec<(i32, i64, Written)>>> = None;
    loop {
        // Block for the first message (finishing the write in flight if it completes first),
        // then linger briefly to fill the batch.
        let first = loop {
            let Some(h) = inflight.as_mut() else { break consumer.recv().await };
            let done = tokio::select! {
                m = consumer.recv() => break m,
                r = h => r,
            };
            inflight = None;
            finish(&consumer, &view, &topic, &mut watermarks, done);
        };
        let mut events: Vec<Event> = Vec::with_capacity(batch_size);
        match first {
            Ok(m) => events.push(to_event(&m)),
            Err(e) => {
                tracing::warn!(view = %view.id, error = %e, "kafka receive failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        }
        let deadline = tokio::time::Instant::now() + LINGER;
        while events.len() < batch_size {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(m)) => events.push(to_event(&m)),
                _ => break,
            }
        }
        // Stable: offsets stay in order within each partition.
        events.sort_by_key(|e| e.partition);
        let mut ready = prepare(&view, &app, &topic, &mut watermarks, events).await;
        if let Some(h) = inflight.take() {
            // A refused (stale) write moved a watermark this batch was filtered against: redo it.
            if finish(&consumer, &view, &topic, &mut watermarks, h.await) {
                ready = prepare(&view, &app, &topic, &mut watermarks, ready.events).await;
            }
        }
        // Dead letters go out (and are acked) before the write that advances the watermark: a
        // crash in between re-sends them on replay instead of losing them.
        if let Some((dlq_topic, producer)) = &dlq {
            let sends = ready.parts.iter().zip(&ready.prepared).flat_map(|(p, prep)| {
                let evs = &ready.events[p.range.clone()];
                prep.failures.iter().map(move |f| send_dead_letter(producer, dlq_topic, &evs[f.index], f.code, &f.message))
            });
            futures::future::join_all(sends).await;
        }
        inflight = Some(tokio::spawn(write(view.clone(), app.clone(), ready)));
    }
}

/// Split a partition-sorted batch by partition, drop what is below each watermark, transform it
/// once and fold it per partition (retrying after the breaker's pause while the view is paused).
async fn prepare(view: &View, app: &App, topic: &str, watermarks: &mut HashMap<i32, i64>, events: Vec<Event>) -> Ready {
    let mut kept: Vec<Event> = Vec::with_capacity(events.len());
    let mut parts: Vec<Part> = Vec::new();
    let mut replayed = 0;
    let mut rest = events.into_iter().peekable();
    while let Some(partition) = rest.peek().map(|e| e.partition) {
        let wm = match watermarks.get(&partition) {
            Some(w) => *w,
            None => {
                let w = retry_store(view, || app.store.watermark(&view.id, topic, partition)).await.unwrap_or(0);
                watermarks.insert(partition, w);
                w
            }
        };
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
        let mark = (!range.is_empty()).then(|| SourceMark { source: topic.to_owned(), partition, first_offset: kept[start].offset, next_offset: next });
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
async fn write(view: Arc<View>, app: Arc<App>, ready: Ready) -> Vec<(i32, i64, Written)> {
    let writes = ready.parts.iter().zip(&ready.prepared).map(|(p, prep)| {
        let (view, app) = (&view, &app);
        async move {
            let Some(mark) = &p.mark else { return Written::Skipped };
            match retry_store(view, || view.commit(app.store.as_ref(), prep, Some(mark.clone()))).await {
                Applied::Applied => Written::Applied,
                Applied::Stale { watermark } => Written::Stale(watermark, p.range.len() as u64),
            }
        }
    });
    let results = futures::future::join_all(writes).await;
    let now = now_ms();
    let applied = ready.parts.iter().zip(&results).filter(|(_, w)| matches!(w, Written::Applied));
    view.metrics.freshness_seconds.observe_many(&view.id, applied.clone().flat_map(|(p, _)| ready.events[p.range.clone()].iter().map(|e| (now - e.timestamp_ms).max(0) as f64 / 1e3)));
    for ((p, _), prep) in ready.parts.iter().zip(&results).zip(&ready.prepared).filter(|((_, w), _)| matches!(w, Written::Applied)) {
        for f in &prep.failures {
            tracing::warn!(view = %view.id, partition = p.partition, offset = ready.events[p.range.start + f.index].offset, code = f.code, error = %f.message, "event failed");
        }
    }
    ready.parts.iter().zip(results).map(|(p, w)| (p.partition, p.next, w)).collect()
}

/// After a batch's write: advance the watermarks and commit the offsets. True when a write was
/// refused as stale (another consumer applied those offsets: the watermark is resynced).
fn finish(consumer: &StreamConsumer, view: &View, topic: &str, watermarks: &mut HashMap<i32, i64>, done: Result<Vec<(i32, i64, Written)>, tokio::task::JoinError>) -> bool {
    let results = match done {
        Ok(r) => r,
        // Only a panic ends the write task: let it end this view's consumption, as it would
        // have without the task (nothing of the batch is committed).
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    let mut commit = TopicPartitionList::new();
    let mut stale = false;
    for (partition, next, w) in results {
        let to = match w {
            Written::Applied | Written::Skipped => next.max(watermarks.get(&partition).copied().unwrap_or(0)),
            Written::Stale(watermark, events) => {
                view.metrics.replays.add(&view.id, "kafka", events);
                stale = true;
                watermark
            }
        };
        watermarks.insert(partition, to);
        let _ = commit.add_partition_offset(topic, partition, Offset::Offset(to));
    }
    if commit.count() > 0 {
        if let Err(e) = consumer.commit(&commit, CommitMode::Async) {
            tracing::warn!(view = %view.id, error = %e, "offset commit failed (replays are skipped by the watermark)");
        }
    }
    stale
}

/// Retry a store operation with backoff while the error is transient (consumption pauses).
async fn retry_store<T, F, Fut>(view: &View, mut op: F) -> T
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

async fn send_dead_letter(producer: &FutureProducer, topic: &str, e: &Event, code: &str, message: &str) {
    let headers = OwnedHeaders::new()
        .insert(Header { key: "wafer-error-code", value: Some(code) })
        .insert(Header { key: "wafer-error", value: Some(message) })
        .insert(Header { key: "wafer-source-topic", value: Some(e.topic.as_str()) })
        .insert(Header { key: "wafer-source-partition", value: Some(&e.partition.to_string()) })
        .insert(Header { key: "wafer-source-offset", value: Some(&e.offset.to_string()) });
    loop {
        let mut rec = FutureRecord::to(topic).payload(&e.value).headers(headers.clone()).timestamp(e.timestamp_ms);
        if let Some(k) = &e.key {
            rec = rec.key(k);
        }
        match producer.send(rec, Duration::from_secs(5)).await {
            Ok(_) => return,
            Err((err, _)) => {
                tracing::warn!(%topic, error = %err, "dead-letter send failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
