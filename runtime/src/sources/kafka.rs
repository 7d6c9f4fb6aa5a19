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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

mod batch;

use anyhow::{Context, Result};
use futures::FutureExt as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::bindings::types::{Event, Header as EventHeader};
use crate::server::App;
use crate::tenant::StreamSource;
use crate::view::KafkaConfig;
use batch::{Commits, Written, finish, prepare, write};

/// Offsets are committed at most this often (and when the consumer goes idle). Effectively-once
/// rests on the store's watermarks, not on commits, so committing less often only means more
/// already-applied events skipped after a restart; each commit is a broker request, and one per
/// batch at small batches is a load the broker feels.
const COMMIT_INTERVAL: Duration = Duration::from_millis(100);

/// Start consuming `src.topic` for a tenant's stream view (group `<group_id>.<tenant>.<view>`).
/// The task looks the view up before every batch, so a hot swap takes effect at the next batch
/// and a deleted view stops its consumer.
pub fn spawn_consumer(kafka: &KafkaConfig, app: Arc<App>, src: StreamSource) -> Result<tokio::task::JoinHandle<()>> {
    let group = format!("{}.{}.{}", kafka.group_id, src.tenant, src.view);
    let consumer: StreamConsumer = kafka
        .consumer_config(&group)
        .create()
        .with_context(|| format!("creating the Kafka consumer for view `{}`", src.view))?;
    consumer.subscribe(&[&src.topic]).with_context(|| format!("subscribing to `{}`", src.topic))?;
    let dlq = match &src.dead_letter_topic {
        Some(t) => Some((
            t.clone(),
            kafka.producer_config().create::<FutureProducer>().context("creating the dead-letter producer")?,
        )),
        None => None,
    };
    tracing::info!(tenant = %src.tenant, view = %src.view, topic = %src.topic, %group, "consuming");
    Ok(tokio::spawn(async move { consume(consumer, app, src, dlq).await }))
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
/// write → offset commit.
async fn consume(consumer: StreamConsumer, app: Arc<App>, src: StreamSource, dlq: Option<(String, FutureProducer)>) {
    let (topic, batch_size) = (src.topic.clone(), src.batch_size);
    let Some(mut view) = app.view(&src.tenant, &src.view) else { return };
    let mut watermarks: HashMap<i32, i64> = HashMap::new();
    let mut inflight: Option<tokio::task::JoinHandle<Vec<(i32, i64, Written)>>> = None;
    let mut commits = Commits::new(COMMIT_INTERVAL);
    loop {
        // Block for the first message, finishing the write in flight if it completes first and
        // committing what is due once idle.
        let first = loop {
            let Some(h) = inflight.as_mut() else {
                let idle = commits.pending();
                tokio::select! {
                    m = consumer.recv() => break m,
                    _ = tokio::time::sleep(COMMIT_INTERVAL), if idle => {
                        commits.flush(&consumer, &view, &topic);
                        continue;
                    }
                }
            };
            let done = tokio::select! {
                m = consumer.recv() => break m,
                r = h => r,
            };
            inflight = None;
            finish(&mut commits, &view, &mut watermarks, done);
            commits.flush_if_due(&consumer, &view, &topic);
        };
        let mut events: Vec<Event> = Vec::with_capacity(batch_size);
        match first {
            Ok(m) => events.push(to_event(&m)),
            Err(e) => {
                tracing::warn!(tenant = %src.tenant, view = %src.view, error = %e, "kafka receive failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        }
        // The batch is what has already arrived: no linger. Under load the previous batch's write
        // lets the next one fill; caught up, every event goes out at once.
        while events.len() < batch_size {
            match consumer.recv().now_or_never() {
                Some(Ok(m)) => events.push(to_event(&m)),
                _ => break,
            }
        }
        let received = crate::server::now_ms();
        view.metrics
            .source_lag_seconds
            .observe_many(&view.id, events.iter().map(|e| (received - e.timestamp_ms).max(0) as f64 / 1e3));
        // The current version of the view (a hot swap takes effect here; a deleted view stops).
        match app.view(&src.tenant, &src.view) {
            Some(v) => view = v,
            None => {
                if let Some(h) = inflight.take() {
                    finish(&mut commits, &view, &mut watermarks, h.await);
                }
                commits.flush(&consumer, &view, &topic);
                tracing::info!(tenant = %src.tenant, view = %src.view, "view deleted: consumer stops");
                return;
            }
        }
        // Stable: offsets stay in order within each partition.
        events.sort_by_key(|e| e.partition);
        let mut ready = prepare(&view, &app, &topic, &mut watermarks, events).await;
        if let Some(h) = inflight.take() {
            // A refused (stale) write moved a watermark this batch was filtered against: redo it.
            let stale = finish(&mut commits, &view, &mut watermarks, h.await);
            commits.flush_if_due(&consumer, &view, &topic);
            if stale {
                ready = prepare(&view, &app, &topic, &mut watermarks, ready.events).await;
            }
        }
        // Dead letters go out (and are acked) before the write that advances the watermark: a
        // crash in between re-sends them on replay instead of losing them.
        if let Some((dlq_topic, producer)) = &dlq {
            let sends = ready.parts.iter().zip(&ready.prepared).flat_map(|(p, prep)| {
                let evs = &ready.events[p.range.clone()];
                prep.failures
                    .iter()
                    .map(move |f| send_dead_letter(producer, dlq_topic, &evs[f.index], f.code, &f.message))
            });
            futures::future::join_all(sends).await;
        }
        inflight = Some(tokio::spawn(write(view.clone(), app.clone(), ready)));
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
