//! Backfilling a view from a Kafka topic's history (`wafer backfill --from kafka:<topic>`).
//!
//! Reads every partition from a start position (beginning, an offset, or a time) up to the
//! partition's high watermark *as of the start of the run* (the end of history), then stops.
//! Batches are applied with the topic's own `(topic, partition)` watermark, the same one live
//! consumption (`sources::kafka`) uses: a rerun resumes where the last one stopped, and
//! `wafer serve` afterwards skips every offset the backfill applied, so nothing is counted twice.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::kafka::to_event;
use crate::bindings::types::Event;
use crate::offline::backfill::BackfillReport;
use crate::pipeline::StreamView;
use crate::store::{Applied, OnlineStore, SourceMark, StoreError};

/// Give up on a partition that delivers nothing for this long before reaching its end (e.g. the
/// last offsets are transaction markers that are never delivered).
const IDLE: Duration = Duration::from_secs(15);
const META_TIMEOUT: Duration = Duration::from_secs(10);

/// Where history starts in every partition (a stored watermark further on wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryStart {
    Beginning,
    Offset(i64),
    /// First message with a timestamp ≥ this (ms since the epoch).
    Time(i64),
}

#[derive(Debug, thiserror::Error)]
pub enum KafkaHistoryError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("topic `{0}` does not exist or has no partitions")]
    NoTopic(String),
    #[error("online store: {0}")]
    Store(#[from] StoreError),
    #[error(
        "no messages for {IDLE:?} before the end of history: (partition, position, end) {stalled:?}; what was read is applied, rerun to resume"
    )]
    Stalled { stalled: Vec<(i32, i64, i64)> },
    #[error(
        "partition {partition} was advanced to {watermark} by someone else (is `wafer serve` or another backfill consuming it?)"
    )]
    Concurrent { partition: i32, watermark: i64 },
}

/// Backfill `topic` into `store` through `view`. `on_progress(done, total, report)` is called
/// after every batch with events read and the history's size.
pub async fn backfill(
    view: &StreamView,
    store: &dyn OnlineStore,
    brokers: &str,
    topic: &str,
    start: HistoryStart,
    batch_size: usize,
    on_progress: &mut (dyn FnMut(u64, u64, &BackfillReport) + Send),
) -> Result<BackfillReport, KafkaHistoryError> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("wafer-backfill.{}", view.id.replace('/', ".")))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), META_TIMEOUT)?;
    let partitions: Vec<i32> =
        md.topics().iter().filter(|t| t.name() == topic).flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    if partitions.is_empty() {
        return Err(KafkaHistoryError::NoTopic(topic.into()));
    }
    // Per partition: [from, end) to apply.
    let mut ranges: HashMap<i32, (i64, i64)> = HashMap::new();
    let mut report = BackfillReport::default();
    for &p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, META_TIMEOUT)?;
        let from = match start {
            HistoryStart::Beginning => low,
            HistoryStart::Offset(o) => o.max(low),
            HistoryStart::Time(t) => {
                let mut q = TopicPartitionList::new();
                q.add_partition_offset(topic, p, Offset::Offset(t))?;
                match consumer.offsets_for_times(q, META_TIMEOUT)?.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => high,
                }
            }
        };
        let wm = store.watermark(&view.id, topic, p).await?.unwrap_or(0);
        report.resumed_from += (wm - from).clamp(0, (high - from).max(0));
        let from = from.max(wm);
        if from < high {
            ranges.insert(p, (from, high));
        }
    }
    let total: u64 = ranges.values().map(|(f, e)| (e - f) as u64).sum();
    if ranges.is_empty() {
        on_progress(0, 0, &report);
        return Ok(report);
    }
    let mut tpl = TopicPartitionList::new();
    for (p, (from, _)) in &ranges {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*from))?;
    }
    consumer.assign(&tpl)?;
    let mut buffers: HashMap<i32, Vec<Event>> = HashMap::new();
    let mut read = 0u64;
    while !ranges.is_empty() {
        let msg = match tokio::time::timeout(IDLE, consumer.recv()).await {
            Err(_) => {
                // Nothing for a while: partitions whose position reached the end are complete
                // (their last offsets were control records, never delivered); others stalled.
                let positions = consumer.position()?;
                let mut stalled = Vec::new();
                for (p, (_, end)) in ranges.clone() {
                    match positions.find_partition(topic, p).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) if o >= end => {
                            if let Some(events) = buffers.remove(&p) {
                                apply(view, store, topic, p, &events, &mut report).await?;
                            }
                            ranges.remove(&p);
                        }
                        other => stalled.push((p, other.and_then(|o| o.to_raw()).unwrap_or(-1), end)),
                    }
                }
                if !stalled.is_empty() {
                    for (p, events) in std::mem::take(&mut buffers) {
                        apply(view, store, topic, p, &events, &mut report).await?;
                    }
                    return Err(KafkaHistoryError::Stalled { stalled });
                }
                continue;
            }
            Ok(m) => m?,
        };
        let p = msg.partition();
        let Some(&(_, end)) = ranges.get(&p) else { continue };
        if msg.offset() >= end {
            continue;
        }
        read += 1;
        let buf = buffers.entry(p).or_default();
        buf.push(to_event(&msg));
        drop(msg);
        let done = buf.last().is_some_and(|e| e.offset + 1 >= end);
        if buf.len() >= batch_size || done {
            let events = std::mem::take(buf);
            apply(view, store, topic, p, &events, &mut report).await?;
            on_progress(read, total, &report);
            if done {
                ranges.remove(&p);
            }
        }
    }
    on_progress(read, total, &report);
    report.failures.sort_by_key(|f| f.0);
    Ok(report)
}

async fn apply(
    view: &StreamView,
    store: &dyn OnlineStore,
    topic: &str,
    partition: i32,
    events: &[Event],
    report: &mut BackfillReport,
) -> Result<(), KafkaHistoryError> {
    let (Some(first), Some(last)) = (events.first(), events.last()) else { return Ok(()) };
    let mark = SourceMark { source: topic.into(), partition, first_offset: first.offset, next_offset: last.offset + 1 };
    let prepared = view.prepare(events);
    if let Applied::Stale { watermark } = view.commit(store, &prepared, Some(mark)).await? {
        return Err(KafkaHistoryError::Concurrent { partition, watermark });
    }
    report.events += events.len() as u64;
    report.rows += prepared.rows as u64;
    for f in prepared.failures {
        report.fail(events[f.index].offset, f.code, f.message);
    }
    report.next_offset = report.next_offset.max(last.offset + 1);
    Ok(())
}
