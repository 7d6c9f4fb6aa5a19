//! Kafka consumption: one consumer group per view (`<group_id>.<tenant>.<view>`), batched polls,
//! effectively-once results.
//!
//! For each batch (one Wasm call for the whole batch; the rest per partition, see `batch.rs`):
//! 1. skip offsets below the partition's watermark (already applied: a replay after a crash or
//!    rebalance), read from the store the first time the partition is seen;
//! 2. transform (once) + fold (per partition);
//! 3. send failed events to the dead-letter topic (with `wafer-error-code` / `wafer-error`
//!    headers) and wait for the broker's ack, *before* the write that advances the watermark
//!    (so a crash re-sends dead letters rather than losing them: at-least-once);
//! 4. one atomic store write that also advances the watermark (retried without re-running the
//!    transform), and only then commit the offsets. If the store is unavailable, nothing is committed and the
//!    batch is retried with backoff (consumption pauses), so nothing is lost.
//!
//! Batches overlap by one: batch k+1 is received and transformed while batch k's write is in
//! flight; k+1's dead letters and write start only after k's write finished and its offsets were
//! committed, so watermarks and commits advance in order.
//!
//! Faults are noticed, not waited out silently (`kafka/health.rs`): a stalled partition is logged,
//! counted in `wafer_source_stalled`, fails `/readyz` and is recovered (seek, then a rebuilt
//! consumer); a missing (deleted) source topic shows as `wafer_source_missing`; a dead letter the
//! broker refuses for good (too large, not authorized, no such topic) is sent truncated or counted
//! as `dead_letter_failed` and the view moves on.

use std::collections::HashMap;
use std::time::{Duration, Instant};

mod batch;
pub(crate) mod health;

use anyhow::{Context, Result};
use futures::FutureExt as _;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset};

use crate::bindings::types::{Event, Header as EventHeader};
use crate::pipeline::StreamView;
use crate::sources::SourceEnv;
use crate::tenant::StreamSource;
use crate::view::KafkaConfig;
use batch::{Commits, Marks, Written, finish, prepare, write};
use health::{KafkaConsumer, Recovery, SourceContext, StallDetector};

/// Offsets are committed at most this often (and when the consumer goes idle). Effectively-once
/// rests on the store's watermarks, not on commits, so committing less often only means more
/// already-applied events skipped after a restart; each commit is a broker request, and one per
/// batch at small batches is a load the broker feels.
const COMMIT_INTERVAL: Duration = Duration::from_millis(100);

/// How often the consumer's health (stalls, see [`health`]) is checked.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// A batch that took longer than this to process (store retries, a paused view) counts as time
/// the consumer was not receiving, so it does not count towards a stall.
const BUSY: Duration = Duration::from_millis(500);

/// Dead letters the broker refuses as too large are sent again with the payload cut to this.
const DEAD_LETTER_TRUNCATE: usize = 64 * 1024;

/// Start consuming `src.topic` for a tenant's stream view (group `<group_id>.<tenant>.<view>`).
/// The task looks the view up before every batch, so a hot swap takes effect at the next batch
/// and a deleted view stops its consumer.
pub fn spawn_consumer(kafka: &KafkaConfig, env: SourceEnv, src: StreamSource) -> Result<tokio::task::JoinHandle<()>> {
    let consumer = new_consumer(kafka, &src, false)?;
    let dlq = match &src.dead_letter_topic {
        Some(t) => Some((
            t.clone(),
            kafka.producer_config().create::<FutureProducer>().context("creating the dead-letter producer")?,
        )),
        None => None,
    };
    let kafka = kafka.clone();
    Ok(tokio::spawn(async move { run(kafka, env, src, consumer, dlq).await }))
}

/// A subscribed consumer (`safe_fetch`: librdkafka's fetch defaults, after a stall).
fn new_consumer(kafka: &KafkaConfig, src: &StreamSource, safe_fetch: bool) -> Result<KafkaConsumer> {
    let group = format!("{}.{}.{}", kafka.group_id, src.tenant, src.view);
    let config: ClientConfig = kafka.consumer_config(&group, safe_fetch);
    let consumer: KafkaConsumer = config
        .create_with_context(SourceContext::new(&src.topic))
        .with_context(|| format!("creating the Kafka consumer for view `{}`", src.view))?;
    consumer.subscribe(&[&src.topic]).with_context(|| format!("subscribing to `{}`", src.topic))?;
    tracing::info!(tenant = %src.tenant, view = %src.view, topic = %src.topic, %group, safe_fetch, "consuming");
    Ok(consumer)
}

/// Why [`consume`] returned.
enum Exit {
    /// The view was deleted.
    Stopped,
    /// A partition stayed stalled after a seek: rebuild the consumer.
    Rebuild,
}

/// Consume until the view is deleted, rebuilding the consumer when a stall survives a seek.
async fn run(
    kafka: KafkaConfig,
    env: SourceEnv,
    src: StreamSource,
    consumer: KafkaConsumer,
    dlq: Option<(String, FutureProducer)>,
) {
    let stall_after = Duration::from_millis(kafka.stall_after_ms.max(1));
    let mut next = Some(consumer);
    loop {
        let consumer = match next.take() {
            Some(c) => c,
            None => match new_consumer(&kafka, &src, true) {
                Ok(c) => {
                    tracing::error!(tenant = %src.tenant, view = %src.view, topic = %src.topic, "a stalled partition did not recover after a seek: consumer rebuilt with librdkafka's fetch defaults");
                    c
                }
                Err(e) => {
                    tracing::error!(view = %src.view, error = %e, "rebuilding the stalled consumer failed; retrying");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
            },
        };
        match consume(&consumer, &env, &src, dlq.as_ref(), stall_after).await {
            Exit::Stopped => return,
            // Leave the group before the new consumer joins it (a member closing during a join
            // can wedge a group on some brokers); closing is a broker round trip: off the workers.
            Exit::Rebuild => {
                let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
            }
        }
    }
}

pub(crate) fn to_event(m: &BorrowedMessage<'_>) -> Event {
    Event {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().unwrap_or_default().to_vec(),
        headers: m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| EventHeader { key: h.key.to_string(), value: h.value.unwrap_or_default().to_vec() })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The batch loop. Batch k+1 is received and transformed while batch k's store write is in
/// flight (at most one write at a time, so watermarks advance in order); k's offsets are committed
/// once its write is done. Per batch the order stays: dead letters acked → watermark-advancing
/// write → offset commit. Returns when the view is deleted or the consumer must be rebuilt
/// (after finishing the write in flight and committing it).
async fn consume(
    consumer: &KafkaConsumer,
    env: &SourceEnv,
    src: &StreamSource,
    dlq: Option<&(String, FutureProducer)>,
    stall_after: Duration,
) -> Exit {
    let (topic, batch_size) = (src.topic.clone(), src.batch_size);
    let Some(mut view) = env.view(&src.tenant, &src.view) else { return Exit::Stopped };
    let mut marks = Marks::default();
    // Partitions that delivered offsets below their watermark: the highest such offset, until the
    // statistics show whether the log restarted (rewound) or it was an ordinary replay.
    let mut suspects: HashMap<i32, i64> = HashMap::new();
    let mut inflight: Option<tokio::task::JoinHandle<Vec<(i32, i64, Written)>>> = None;
    let mut commits = Commits::new(COMMIT_INTERVAL);
    let mut stalls = StallDetector::new(stall_after);
    let mut check = tokio::time::interval(HEALTH_INTERVAL);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut missing = false;
    loop {
        // Block for the first message, finishing the write in flight if it completes first,
        // committing what is due once idle and checking the partitions' health.
        let first = loop {
            let Some(h) = inflight.as_mut() else {
                let idle = commits.pending();
                tokio::select! {
                    m = consumer.recv() => break m,
                    _ = tokio::time::sleep(COMMIT_INTERVAL), if idle => {
                        commits.flush(consumer, &view, &topic);
                        continue;
                    }
                    _ = check.tick() => {
                        if check_health(consumer, &view, env, &topic, &mut stalls, &mut marks, &mut suspects).await {
                            commits.flush(consumer, &view, &topic);
                            return Exit::Rebuild;
                        }
                        continue;
                    }
                }
            };
            let done = tokio::select! {
                m = consumer.recv() => break m,
                r = h => r,
            };
            inflight = None;
            finish(&mut commits, &view, &mut marks, done);
            commits.flush_if_due(consumer, &view, &topic);
        };
        let started = Instant::now();
        let mut events: Vec<Event> = Vec::with_capacity(batch_size);
        match first {
            Ok(m) => events.push(to_event(&m)),
            Err(e) => {
                if is_missing_topic(&e) {
                    if !missing {
                        tracing::error!(tenant = %src.tenant, view = %src.view, %topic, error = %e, "the source topic does not exist (deleted?): nothing is consumed until it is back");
                        view.metrics.source_missing.set(&view.id, 1.0);
                        missing = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                } else {
                    tracing::warn!(tenant = %src.tenant, view = %src.view, error = %e, "kafka receive failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                continue;
            }
        }
        if missing {
            tracing::info!(view = %view.id, %topic, "the source topic is back");
            view.metrics.source_missing.set(&view.id, 0.0);
            missing = false;
        }
        // The batch is what has already arrived: no linger. Under load the previous batch's write
        // lets the next one fill; caught up, every event goes out at once.
        while events.len() < batch_size {
            match consumer.recv().now_or_never() {
                Some(Ok(m)) => events.push(to_event(&m)),
                _ => break,
            }
        }
        let received = crate::time::now_ms();
        view.metrics
            .source_lag_seconds
            .observe_many(&view.id, events.iter().map(|e| (received - e.timestamp_ms).max(0) as f64 / 1e3));
        // The current version of the view (a hot swap takes effect here; a deleted view stops).
        match env.view(&src.tenant, &src.view) {
            Some(v) => view = v,
            None => {
                if let Some(h) = inflight.take() {
                    finish(&mut commits, &view, &mut marks, h.await);
                }
                commits.flush(consumer, &view, &topic);
                tracing::info!(tenant = %src.tenant, view = %src.view, "view deleted: consumer stops");
                return Exit::Stopped;
            }
        }
        // Stable: offsets stay in order within each partition.
        events.sort_by_key(|e| e.partition);
        note_received(&mut stalls, &view, &topic, &events);
        for chunk in events.chunk_by(|a, b| a.partition == b.partition) {
            let p = chunk[0].partition;
            if marks.wm.get(&p).is_some_and(|w| chunk[0].offset < *w) {
                let last = chunk[chunk.len() - 1].offset;
                suspects.entry(p).and_modify(|o| *o = (*o).max(last)).or_insert(last);
            }
        }
        let mut ready = prepare(&view, env, &topic, &mut marks, events).await;
        if let Some(h) = inflight.take() {
            // A refused (stale) write moved a watermark this batch was filtered against: redo it.
            let stale = finish(&mut commits, &view, &mut marks, h.await);
            commits.flush_if_due(consumer, &view, &topic);
            if stale {
                ready = prepare(&view, env, &topic, &mut marks, ready.events).await;
            }
        }
        // Dead letters go out (and are acked) before the write that advances the watermark: a
        // crash in between re-sends them on replay instead of losing them.
        if let Some((dlq_topic, producer)) = dlq {
            let sends = ready.parts.iter().zip(&ready.prepared).flat_map(|(p, prep)| {
                let evs = &ready.events[p.range.clone()];
                prep.failures
                    .iter()
                    .map(move |f| send_dead_letter(producer, dlq_topic, &evs[f.index], f.code, &f.message))
            });
            let failed = futures::future::join_all(sends).await.into_iter().filter(|ok| !ok).count();
            view.metrics.events.add(&view.id, "dead_letter_failed", failed as u64);
        }
        inflight = Some(tokio::spawn(write(view.clone(), env.clone(), ready)));
        let took = started.elapsed();
        if took > BUSY {
            stalls.busy(took);
        }
    }
}

/// Whether a receive error says the topic (or partition) does not exist.
fn is_missing_topic(e: &KafkaError) -> bool {
    matches!(e.rdkafka_error_code(), Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic))
}

/// Tell the stall detector which partitions delivered (a partition-sorted batch); a partition
/// that was stalled has recovered.
fn note_received(stalls: &mut StallDetector, view: &StreamView, topic: &str, events: &[Event]) {
    let now = Instant::now();
    for chunk in events.chunk_by(|a, b| a.partition == b.partition) {
        let (p, next) = (chunk[0].partition, chunk[chunk.len() - 1].offset + 1);
        if stalls.received(p, next, now) {
            tracing::info!(view = %view.id, %topic, partition = p, "stalled partition recovered");
            view.metrics.source_stalled.set(&view.id, p, 0.0);
        }
    }
}

/// Check the partitions against the latest statistics: a partition that delivered offsets below
/// its watermark while its log ends below the watermark was re-created (or lost its log): log
/// it, count it, start a new watermark epoch and read it again from the start. Then run the
/// stall detector: log and flag new stalls and seek them. True when a stall survived its seek
/// (the consumer must be rebuilt).
async fn check_health(
    consumer: &KafkaConsumer,
    view: &StreamView,
    env: &SourceEnv,
    topic: &str,
    stalls: &mut StallDetector,
    marks: &mut Marks,
    suspects: &mut HashMap<i32, i64>,
) -> bool {
    let mut stats = consumer.context().partitions();
    probe_log_ends(consumer, view, topic, stalls, &mut stats);
    let mut rewound = Vec::new();
    suspects.retain(|p, last| {
        // Only statistics taken after those offsets were fetched know the log end that served them.
        let Some(s) = stats.get(p).filter(|s| s.next > *last) else { return true };
        let wm = marks.wm.get(p).copied().unwrap_or(0);
        if s.hi >= 0 && s.hi < wm {
            rewound.push((*p, s.hi, wm));
        }
        false
    });
    for (p, end, wm) in rewound {
        let epoch = marks.new_epoch(view, env, topic, p).await;
        tracing::error!(view = %view.id, %topic, partition = p, log_end = end, watermark = wm, epoch, "the partition's log ends below the view's watermark (topic re-created or log lost): its events are new; reading it again from the start under a new watermark epoch");
        view.metrics.source_rewound.add(&view.id, &p.to_string(), 1);
        if let Err(e) = consumer.seek(topic, p, Offset::Beginning, Duration::from_secs(1)) {
            tracing::warn!(view = %view.id, %topic, partition = p, error = %e, "seeking the re-created partition failed");
        }
    }
    for p in stalls.retain(&stats) {
        view.metrics.source_stalled.set(&view.id, p, 0.0);
    }
    let (newly, actions) = stalls.check(&stats, Instant::now());
    for (p, unread) in newly {
        tracing::error!(view = %view.id, %topic, partition = p, unread, "source partition stalled: assigned with unread events, nothing received; seeking it");
        view.metrics.source_stalled.set(&view.id, p, 1.0);
    }
    let mut rebuild = false;
    for a in actions {
        match a {
            Recovery::Seek(p, at) => {
                let to = at.map_or(Offset::Beginning, Offset::Offset);
                if let Err(e) = consumer.seek(topic, p, to, Duration::from_secs(1)) {
                    tracing::warn!(view = %view.id, %topic, partition = p, error = %e, "seeking the stalled partition failed");
                }
            }
            Recovery::Rebuild => rebuild = true,
        }
    }
    rebuild
}

/// Ask the broker (`ListOffsets`) for the log end of the partitions the stall detector wants
/// probed, and put it in `stats`. A blocking call of at most a second per partition, made only
/// for quiet partitions whose end the statistics do not know, at most once per `stall_after`.
fn probe_log_ends(
    consumer: &KafkaConsumer,
    view: &StreamView,
    topic: &str,
    stalls: &mut StallDetector,
    stats: &mut HashMap<i32, health::PartStat>,
) {
    for p in stalls.partitions_to_probe(stats, Instant::now()) {
        let answer = tokio::task::block_in_place(|| consumer.fetch_watermarks(topic, p, Duration::from_secs(1)));
        match answer {
            Ok((_, hi)) => {
                if let Some(s) = stats.get_mut(&p) {
                    s.hi = hi;
                }
            }
            Err(e) => {
                tracing::warn!(view = %view.id, %topic, partition = p, error = %e, "asking the broker for a quiet partition's log end failed")
            }
        }
    }
}

/// Send one dead letter, retrying transient failures (the view waits: dead letters are acked
/// before the batch's write). A refusal that retrying cannot fix is final: a record too large is
/// sent once more with its payload cut to [`DEAD_LETTER_TRUNCATE`] bytes (header
/// `wafer-truncated: <original size>`); if that fails too, or for any other permanent refusal,
/// the failure is logged and false is returned (counted as `dead_letter_failed`).
async fn send_dead_letter(producer: &FutureProducer, topic: &str, e: &Event, code: &str, message: &str) -> bool {
    let headers = OwnedHeaders::new()
        .insert(Header { key: "wafer-error-code", value: Some(code) })
        .insert(Header { key: "wafer-error", value: Some(message) })
        .insert(Header { key: "wafer-source-topic", value: Some(e.topic.as_str()) })
        .insert(Header { key: "wafer-source-partition", value: Some(&e.partition.to_string()) })
        .insert(Header { key: "wafer-source-offset", value: Some(&e.offset.to_string()) });
    let mut payload: &[u8] = &e.value;
    let mut headers = headers;
    loop {
        let mut rec = FutureRecord::to(topic).payload(payload).headers(headers.clone()).timestamp(e.timestamp_ms);
        if let Some(k) = &e.key {
            rec = rec.key(k);
        }
        let err = match producer.send(rec, Duration::from_secs(5)).await {
            Ok(_) => return true,
            Err((err, _)) => err,
        };
        match err.rdkafka_error_code() {
            Some(RDKafkaErrorCode::MessageSizeTooLarge) if payload.len() > DEAD_LETTER_TRUNCATE => {
                tracing::warn!(%topic, size = e.value.len(), error = %err, "dead letter too large: sending it truncated");
                headers = headers.insert(Header { key: "wafer-truncated", value: Some(&e.value.len().to_string()) });
                payload = &e.value[..DEAD_LETTER_TRUNCATE];
            }
            Some(c) if is_permanent(c) => {
                tracing::error!(%topic, source_topic = %e.topic, partition = e.partition, offset = e.offset, error = %err, "dead letter refused for good: dropped (counted as dead_letter_failed)");
                return false;
            }
            _ => {
                tracing::warn!(%topic, error = %err, "dead-letter send failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Produce errors that retrying the same record cannot fix.
fn is_permanent(c: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as E;
    matches!(
        c,
        E::MessageSizeTooLarge
            | E::InvalidMessageSize
            | E::InvalidMessage
            | E::InvalidRecord
            | E::InvalidTopic
            | E::UnknownTopic
            | E::UnknownTopicOrPartition
            | E::TopicAuthorizationFailed
            | E::ClusterAuthorizationFailed
            | E::UnsupportedForMessageFormat
            | E::InvalidRequiredAcks
    )
}
