//! The ceiling: Wafer's consume loop with the transform and aggregation taken out. Same batching as
//! `runtime/src/sources/kafka.rs` (block for the first message, linger 1 ms, at most 512), one
//! pipelined `HINCRBY` per event, offsets committed after the write.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const LINGER: Duration = Duration::from_millis(1);
const BATCH: usize = 512;

/// Consume `n` events of `topic` into Redis; events/s over the last 80% (steady state).
pub async fn run(brokers: &str, redis_url: &str, topic: &str, n: usize) -> Result<f64> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bench-ceiling-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("fetch.wait.max.ms", "5")
        .create()
        .context("creating the ceiling consumer")?;
    consumer.subscribe(&[topic])?;
    let client = redis::Client::open(redis_url)?;
    let mut conn = redis::aio::ConnectionManager::new(client).await.context("connecting to Redis")?;

    let (mut done, mut started) = (0usize, None::<(Instant, usize)>);
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut pipe = redis::pipe();
    let mut key = String::with_capacity(32);
    while done < n {
        pipe.clear();
        let mut batch = 0;
        let first =
            tokio::time::timeout(Duration::from_secs(60), consumer.recv()).await.context("no event for 60 s")??;
        let mut add = |m: &rdkafka::message::BorrowedMessage<'_>, pipe: &mut redis::Pipeline| {
            key.clear();
            key.push_str("ceil:");
            key.push_str(std::str::from_utf8(m.key().unwrap_or_default()).unwrap_or(""));
            pipe.cmd("HINCRBY").arg(&key).arg("n").arg(1).ignore();
            let e = next.entry(m.partition()).or_insert(0);
            *e = (*e).max(m.offset() + 1);
        };
        add(&first, &mut pipe);
        batch += 1;
        drop(first);
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch < BATCH {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(m)) => {
                    add(&m, &mut pipe);
                    batch += 1;
                }
                _ => break,
            }
        }
        pipe.query_async::<()>(&mut conn).await.context("HINCRBY pipeline")?;
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &next {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*o))?;
        }
        consumer.commit(&tpl, CommitMode::Async)?;
        done += batch;
        // Measure the steady state: the first batches come from the prefetched queue.
        if started.is_none() && done * 5 >= n {
            started = Some((Instant::now(), done));
        }
    }
    let (t0, done0) = started.context("no events")?;
    let secs = t0.elapsed().as_secs_f64();
    // The counters must add up: nothing lost, nothing counted twice.
    let mut total = 0i64;
    let keys: Vec<String> = redis::cmd("KEYS").arg("ceil:*").query_async(&mut conn).await?;
    for k in keys {
        let v: i64 = redis::cmd("HGET").arg(&k).arg("n").query_async(&mut conn).await?;
        total += v;
    }
    if total != n as i64 {
        bail!("ceiling consumer counted {total} events, expected {n}");
    }
    Ok((n - done0) as f64 / secs)
}
