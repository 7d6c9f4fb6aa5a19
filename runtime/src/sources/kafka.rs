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
use crate::pipeline::View;
use crate::server::{App, now_ms};
use crate::store::{Applied, SourceMark};
use crate::tenant::StreamSource;
use crate::view::KafkaConfig;

/// Longest wait to fill a batch once its first event arrived.
const LINGER: Duration = Duration::from_millis(5);

/// Start consuming `src.topic` for a tenant's stream view (group `<group_id>.<tenant>.<view>`).
/// The task looks the view up before every batch, so a hot swap takes effect at the next batch
/// and a deleted view stops its consumer.
pub fn spawn_consumer(kafka: &KafkaConfig, app: Arc<App>, src: StreamSource) -> Result<tokio::task::JoinHandle<()>> {
    let group = format!("{}.{}.{}", kafka.group_id, src.tenant, src.view);
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("fetch.wait.max.ms", "5")
        .create()
        .with_context(|| format!("creating the Kafka consumer for view `{}`", src.view))?;
    consumer.subscribe(&[&src.topic]).with_context(|| format!("subscribing to `{}`", src.topic))?;
    let dlq = match &src.dead_letter_topic {
        Some(t) => Some((
            t.clone(),
            ClientConfig::new().set("bootstrap.servers", &kafka.brokers).set("linger.ms", "1").create::<FutureProducer>().context("creating the dead-letter producer")?,
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
            .map(|hs| hs.iter().map(|h| EventHeader { key: h.key.to_string(), value: h.value.unwrap_or_default().to_vec() }).collect())
            .unwrap_or_default(),
    }
}

async fn consume(consumer: StreamConsumer, app: Arc<App>, src: StreamSource, dlq: Option<(String, FutureProducer)>) {
    let mut watermarks: HashMap<i32, i64> = HashMap::new();
    let (topic, batch_size) = (src.topic.clone(), src.batch_size);
    loop {
        // Gather a batch: block for the first message, then linger briefly.
        let mut events: Vec<Event> = Vec::with_capacity(batch_size);
        match consumer.recv().await {
            Ok(m) => events.push(to_event(&m)),
            Err(e) => {
                tracing::warn!(tenant = %src.tenant, view = %src.view, error = %e, "kafka receive failed");
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
        let Some(view) = app.view(&src.tenant, &src.view) else {
            tracing::info!(tenant = %src.tenant, view = %src.view, "view deleted: consumer stops");
            return;
        };
        let mut by_partition: HashMap<i32, Vec<Event>> = HashMap::new();
        for e in events {
            by_partition.entry(e.partition).or_default().push(e);
        }
        let mut commit = TopicPartitionList::new();
        for (partition, mut evs) in by_partition {
            let next = evs.iter().map(|e| e.offset).max().unwrap_or(0) + 1;
            let wm = match watermarks.get(&partition) {
                Some(w) => *w,
                None => {
                    let w = retry_store(&view, || app.store.watermark(&view.id, &topic, partition)).await.flatten().unwrap_or(0);
                    watermarks.insert(partition, w);
                    w
                }
            };
            let before = evs.len();
            evs.retain(|e| e.offset >= wm);
            if evs.len() < before {
                view.metrics.replays.add(&view.id, "kafka", (before - evs.len()) as u64);
            }
            if !evs.is_empty() {
                let mark = SourceMark { source: topic.clone(), partition, first_offset: evs[0].offset.max(wm), next_offset: next };
                // A persistently failing transform pauses the view: the same batch is retried
                // after the breaker's cooldown, nothing is dead-lettered or committed meanwhile.
                let prepared = loop {
                    let p = view.prepare(&evs);
                    match view.judge(&p) {
                        crate::pipeline::breaker::Verdict::Tripped { pause } => tokio::time::sleep(pause).await,
                        _ => break p,
                    }
                };
                // Dead letters go out (and are acked) before the write that advances the
                // watermark: a crash in between re-sends them on replay instead of losing them.
                if let Some((dlq_topic, producer)) = &dlq {
                    futures::future::join_all(
                        prepared.failures.iter().map(|f| send_dead_letter(producer, dlq_topic, &evs[f.index], f.code, &f.message)),
                    )
                    .await;
                }
                match retry_store(&view, || view.commit(app.store.as_ref(), &prepared, Some(mark.clone()))).await {
                    Some(Applied::Applied) => {
                        let now = now_ms();
                        view.metrics.freshness_seconds.observe_many(&view.id, evs.iter().map(|e| (now - e.timestamp_ms).max(0) as f64 / 1e3));
                        for f in &prepared.failures {
                            tracing::warn!(view = %view.id, partition, offset = evs[f.index].offset, code = f.code, error = %f.message, "event failed");
                        }
                    }
                    Some(Applied::Stale { watermark }) => {
                        // Another consumer applied these offsets (rebalance); resync.
                        view.metrics.replays.add(&view.id, "kafka", evs.len() as u64);
                        watermarks.insert(partition, watermark);
                        let _ = commit.add_partition_offset(&topic, partition, Offset::Offset(watermark));
                        continue;
                    }
                    None => continue,
                }
            }
            watermarks.insert(partition, next.max(wm));
            let _ = commit.add_partition_offset(&topic, partition, Offset::Offset(next.max(wm)));
        }
        if commit.count() > 0 {
            if let Err(e) = consumer.commit(&commit, CommitMode::Async) {
                tracing::warn!(view = %view.id, error = %e, "offset commit failed (replays are skipped by the watermark)");
            }
        }
    }
}

/// Retry a store operation with backoff while the error is transient (consumption pauses).
async fn retry_store<T, F, Fut>(view: &View, mut op: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::store::StoreError>>,
{
    let mut backoff = Duration::from_millis(50);
    loop {
        match op().await {
            Ok(v) => return Some(v),
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
