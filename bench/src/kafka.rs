//! Kafka side of the streaming benchmark: topics, card-transaction events, bulk and paced produce.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

pub async fn create_topics(brokers: &str, topics: &[&str], partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().context("creating the Kafka admin client")?;
    let new: Vec<NewTopic> = topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
    for r in admin.create_topics(&new, &AdminOptions::new()).await.context("creating topics")? {
        if let Err((t, e)) = r {
            bail!("creating topic {t}: {e}");
        }
    }
    Ok(())
}

/// `linger_ms`: producer batching delay (bulk loads batch, the freshness phase sends at once).
pub fn producer(brokers: &str, linger_ms: u32) -> Result<FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", linger_ms.to_string())
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("creating the Kafka producer")
}

/// A card transaction of `user` (what `card_txn.wasm` reads), amount derived from `i`.
pub fn payload(out: &mut String, user: &str, i: usize) {
    use std::fmt::Write as _;
    out.clear();
    let cents = (i * 7919) % 100_000;
    let _ = write!(
        out,
        r#"{{"user_id":"{user}","amount":{}.{:02},"country":"DE","merchant":"m{}"}}"#,
        cents / 100,
        cents % 100,
        i % 7
    );
}

/// Enqueue one record (waiting while the local queue is full); the future resolves on delivery.
pub async fn send(p: &FutureProducer, topic: &str, key: &str, value: &str, ts_ms: i64) -> Result<DeliveryFuture> {
    loop {
        match p.send_result(FutureRecord::to(topic).key(key).payload(value).timestamp(ts_ms)) {
            Ok(f) => return Ok(f),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(1)).await
            }
            Err((e, _)) => bail!("producing to {topic}: {e}"),
        }
    }
}

/// Check that every enqueued record was acknowledged.
pub async fn delivered(futs: Vec<DeliveryFuture>) -> Result<usize> {
    let mut n = 0;
    for f in futs {
        match f.await {
            Ok(Ok(_)) => n += 1,
            Ok(Err((e, _))) => bail!("delivery failed: {e}"),
            Err(_) => bail!("producer dropped a delivery"),
        }
    }
    Ok(n)
}

/// Produce `n` events keyed by `u<i % users>`; returns the seconds it took until all were acked.
pub async fn produce_bulk(p: &FutureProducer, topic: &str, n: usize, users: usize, now_ms: i64) -> Result<f64> {
    let started = Instant::now();
    let mut futs = Vec::with_capacity(n);
    let (mut key, mut value) = (String::new(), String::new());
    for i in 0..n {
        key.clear();
        use std::fmt::Write as _;
        let _ = write!(key, "u{}", i % users);
        payload(&mut value, &key, i);
        futs.push(send(p, topic, &key, &value, now_ms).await?);
    }
    let got = delivered(futs).await?;
    if got != n {
        bail!("only {got} of {n} events were delivered");
    }
    Ok(started.elapsed().as_secs_f64())
}
