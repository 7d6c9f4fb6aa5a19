//! End to end against a real Kafka-compatible broker (tansu, started by scripts/test.sh) and a
//! private Redis: `wafer serve` consumes, aggregates and survives a SIGKILL and a Redis outage
//! with exactly the ground truth (nothing lost, nothing double-counted); poison events land in
//! the dead-letter topic with their reason. Also: HTTP push with read-after-write.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value as Json, json};

use crate::support::{RedisServer, Wafer, free_port, guests, post};

pub(crate) fn brokers() -> String {
    std::env::var("WAFER_TEST_KAFKA_BROKERS")
        .expect("WAFER_TEST_KAFKA_BROKERS is not set: run the suite with scripts/test.sh (it starts tansu)")
}

fn manifest(dir: &std::path::Path, redis: &str, topic: Option<&str>, group: &str) -> std::path::PathBuf {
    let redis = if redis.is_empty() { String::new() } else { format!("[redis]\nurl = \"{redis}\"\n") };
    manifest_with(dir, &redis, topic, group)
}

/// [`manifest`] with the whole `[redis]` section given (e.g. a Cluster's).
pub(crate) fn manifest_with(
    dir: &std::path::Path,
    redis: &str,
    topic: Option<&str>,
    group: &str,
) -> std::path::PathBuf {
    let kafka =
        topic.map_or(String::new(), |_| format!("[kafka]\nbrokers = \"{}\"\ngroup_id = \"{group}\"\n", brokers()));
    let topic = topic.map_or(String::new(), |t| format!("topic = \"{t}\"\ndead_letter_topic = \"{t}.dlq\"\n"));
    let text = format!(
        "{redis}{kafka}[server]\ntenant = \"t1\"\n\n[[stream_view]]\nname = \"txn\"\nentity = \"user\"\ntransform = \"{}\"\n{topic}features = [\"country\"]\nbatch_size = 256\n\n[[stream_view.aggregations]]\ncolumn = \"amount\"\nfunctions = [\"count\", \"sum\", \"max\"]\nwindows = [\"24h\", \"lifetime\"]\n",
        guests::RUST_CARD_TXN
    );
    let p = dir.join("wafer.toml");
    std::fs::write(&p, text).unwrap();
    p
}

pub(crate) const USERS: usize = 20;

/// Event i: user, amount in cents, poison?
pub(crate) fn event(i: usize) -> (String, i64, bool) {
    (format!("u{}", i % USERS), ((i * 7919) % 100_000) as i64, i % 97 == 13)
}

pub(crate) fn payload(i: usize) -> String {
    let (user, cents, poison) = event(i);
    if poison {
        return format!(r#"{{"amount":{}.{:02},"country":"DE","merchant":"m"}}"#, cents / 100, cents % 100);
    }
    format!(
        r#"{{"user_id":"{user}","amount":{}.{:02},"country":"DE","merchant":"m{}"}}"#,
        cents / 100,
        cents % 100,
        i % 7
    )
}

pub(crate) async fn produce(producer: &FutureProducer, topic: &str, range: std::ops::Range<usize>) {
    let now = crate::support::now_ms();
    let msgs: Vec<(String, String)> = range.map(|i| (event(i).0, payload(i))).collect();
    let futs: Vec<_> = msgs
        .iter()
        .map(|(user, p)| {
            producer.send(FutureRecord::to(topic).key(user).payload(p).timestamp(now), Duration::from_secs(10))
        })
        .collect();
    for f in futs {
        f.await.expect("delivered");
    }
}

pub(crate) fn truth(n: usize) -> BTreeMap<String, (i64, i64, i64)> {
    let mut t: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
    for i in 0..n {
        let (u, c, poison) = event(i);
        if !poison {
            let e = t.entry(u).or_insert((0, 0, i64::MIN));
            e.0 += 1;
            e.1 += c;
            e.2 = e.2.max(c);
        }
    }
    t
}

/// Poll until every user's features equal the ground truth (or time out with a diff).
pub(crate) fn wait_exact(port: u16, n: usize, timeout: Duration) {
    let want = truth(n);
    let users: Vec<String> = want.keys().cloned().collect();
    let feats = json!([
        "amount_count_lifetime",
        "amount_sum_lifetime",
        "amount_max_lifetime",
        "amount_count_24h",
        "amount_sum_24h"
    ]);
    let deadline = Instant::now() + timeout;
    let mut last = Json::Null;
    while Instant::now() < deadline {
        let (code, body) = post(port, "/v1/features", &json!({"view": "txn", "entities": users, "features": feats}));
        if code == 200 {
            let ok = body["results"].as_array().unwrap().iter().zip(&users).all(|(r, u)| {
                let (c, s, m) = want[u];
                let f = &r["features"];
                f["amount_count_lifetime"]["value"] == c
                    && f["amount_sum_lifetime"]["value"].as_f64() == Some(s as f64 / 100.0)
                    && f["amount_max_lifetime"]["value"].as_f64() == Some(m as f64 / 100.0)
                    && f["amount_count_24h"]["value"] == c
                    && f["amount_sum_24h"]["value"].as_f64() == Some(s as f64 / 100.0)
            });
            if ok {
                return;
            }
            // Overshooting means double counting: fail at once.
            for (r, u) in body["results"].as_array().unwrap().iter().zip(&users) {
                let got = r["features"]["amount_count_lifetime"]["value"].as_i64().unwrap_or(0);
                assert!(got <= want[u].0, "{u}: counted {got} events, only {} exist (double counting)", want[u].0);
            }
        }
        last = body;
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("features never matched the ground truth; last response: {last}");
}

pub(crate) fn dlq_messages(topic: &str, expected: usize) -> Vec<(String, String)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", format!("dlq-reader-{}", free_port()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < expected && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let hs = m.headers().unwrap();
            let get = |k: &str| {
                hs.iter()
                    .find(|h| h.key == k)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            out.push((get("wafer-error-code"), get("wafer-error")));
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Disruption {
    KillWafer,
    FreezeRedis,
}

async fn scenario(disruption: Disruption) {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("{}-{}", if disruption == Disruption::KillWafer { "kill" } else { "redis" }, free_port());
    let topic = format!("txns-{tag}");
    let config = manifest(dir.path(), &redis.url(), Some(&topic), &format!("g-{tag}"));
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", brokers()).set("linger.ms", "5").create().unwrap();
    let n = 4000;
    produce(&producer, &topic, 0..n / 2).await;
    let port = free_port();
    let wafer = Wafer::start(&config, port);
    // Let it consume part of the stream (the group join on tansu takes ~5 s).
    wait_progress(port, 200, Duration::from_secs(60));
    let wafer = match disruption {
        Disruption::KillWafer => {
            wafer.kill9();
            produce(&producer, &topic, n / 2..n).await;
            Wafer::start(&config, port)
        }
        Disruption::FreezeRedis => {
            let pid = redis_pid(&redis);
            Command::new("kill").args(["-STOP", &pid]).status().unwrap();
            produce(&producer, &topic, n / 2..n).await;
            std::thread::sleep(Duration::from_secs(6));
            Command::new("kill").args(["-CONT", &pid]).status().unwrap();
            wafer
        }
    };
    wait_exact(wafer.port, n, Duration::from_secs(120));
    let poison = (0..n).filter(|i| event(*i).2).count();
    let dlq = dlq_messages(&format!("{topic}.dlq"), poison);
    assert!(dlq.len() >= poison, "expected {poison} dead letters, got {}", dlq.len());
    assert!(dlq.iter().all(|(code, msg)| code == "bad_input" && msg.contains("missing field `user_id`")), "{dlq:?}");
    drop(wafer);
}

pub(crate) fn wait_progress(port: u16, min_events: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let (_, body) = post(
            port,
            "/v1/features",
            &json!({"view": "txn", "entities": ["u1"], "features": ["amount_count_lifetime"]}),
        );
        if body["results"][0]["features"]["amount_count_lifetime"]["value"].as_i64().unwrap_or(0) * USERS as i64
            >= min_events as i64
        {
            return;
        }
        assert!(Instant::now() < deadline, "no progress consuming");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn redis_pid(redis: &RedisServer) -> String {
    let out = Command::new("redis-cli").args(["-p", &redis.port.to_string(), "info", "server"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().find_map(|l| l.strip_prefix("process_id:")).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_stream_then_restart_gives_exact_aggregates() {
    scenario(Disruption::KillWafer).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_outage_mid_stream_gives_exact_aggregates() {
    scenario(Disruption::FreezeRedis).await;
}

#[test]
fn http_push_is_readable_on_return_and_bad_requests_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = manifest(dir.path(), "", None, "unused");
    let port = free_port();
    let _w = Wafer::start(&config, port);
    let now = crate::support::now_ms();
    let evs = json!({"events": [
        {"timestamp_ms": now, "value": {"user_id": "a", "amount": 10.25, "country": "DE", "merchant": "m"}},
        {"timestamp_ms": now, "value": {"user_id": "a", "amount": 0.75, "country": "FR", "merchant": "m"}},
        {"timestamp_ms": now, "value": {"amount": 1}},
        {"value": {"user_id": "a"}},
    ]});
    let (code, body) = post(port, "/v1/views/txn/events", &evs);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["failed"][0]["index"], 2);
    assert_eq!(body["failed"][0]["code"], "bad_input");
    assert_eq!(body["failed"][1]["code"], "invalid_event");
    let (code, body) = post(
        port,
        "/v1/features",
        &json!({"view": "txn", "entities": ["a", "zz"], "features": ["amount_sum_lifetime", "amount_count_24h", "country"]}),
    );
    assert_eq!(code, 200);
    let a = &body["results"][0]["features"];
    assert_eq!(a["amount_sum_lifetime"]["value"], 11.0);
    assert_eq!(a["amount_count_24h"]["value"], 2);
    assert_eq!(a["country"]["status"], "present");
    assert_eq!(body["results"][1]["features"]["country"]["status"], "missing");
    let (code, body) =
        post(port, "/v1/features", &json!({"view": "txn", "entities": ["a"], "features": ["amount_sum_2h"]}));
    assert_eq!((code, body["error"]["code"].as_str()), (400, Some("unknown_features")));
    let (code, body) = post(port, "/v1/views/nope/events", &evs);
    assert_eq!((code, body["error"]["code"].as_str()), (404, Some("unknown_view")));
    let (code, _) = post(port, "/v1/features", &json!({"view": "txn"}));
    assert_eq!(code, 400);
}

#[test]
fn a_persistently_failing_transform_pauses_only_its_view() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wafer.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ntenant = \"t1\"\n\n[[stream_view]]\nname = \"chaos\"\nentity = \"e\"\ntransform = \"{}\"\nfeatures = [\"x\"]\nbreaker_trip_after = 2\nbreaker_cooldown = \"1s\"\n\n\
             [[stream_view]]\nname = \"txn\"\nentity = \"user\"\ntransform = \"{}\"\nfeatures = [\"country\"]\n",
            guests::MISBEHAVE,
            guests::RUST_CARD_TXN
        ),
    )
    .unwrap();
    let w = Wafer::start(&config, free_port());
    let now = crate::support::now_ms();
    let ev = |mode: &str, x: i64| json!({"timestamp_ms": now, "value": {"mode": mode, "x": x}});
    let traps = json!({"events": [ev("trap", 0), ev("trap", 0), ev("trap", 0)]});
    let (code, body) = post(w.port, "/v1/views/chaos/events", &traps);
    assert_eq!((code, body["failed"].as_array().map(Vec::len)), (200, Some(3)), "{body}");
    // The second failing batch in a row trips the breaker: 503, nothing written.
    let (code, body) = post(w.port, "/v1/views/chaos/events", &traps);
    assert_eq!((code, body["error"]["code"].as_str()), (503, Some("view_paused")), "{body}");
    let (code, body) = post(w.port, "/v1/views/chaos/events", &json!({"events": [ev("ok", 5)]}));
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (503, Some("view_paused")),
        "paused views refuse pushes: {body}"
    );
    // Other views keep working.
    let (code, _) = post(
        w.port,
        "/v1/views/txn/events",
        &json!({"events": [{"timestamp_ms": now, "value": {"user_id": "a", "amount": 1, "country": "DE", "merchant": "m"}}]}),
    );
    assert_eq!(code, 200);
    let (_, metrics) = crate::support::get(w.port, "/metrics");
    assert!(metrics.contains("wafer_view_paused{tenant=\"t1\",view=\"chaos\"} 1"), "{metrics}");
    assert!(metrics.contains("wafer_breaker_trips_total{tenant=\"t1\",view=\"chaos\",code=\"trap\"} 1"), "{metrics}");
    // After the cooldown a healthy batch closes the breaker.
    std::thread::sleep(Duration::from_millis(1100));
    let (code, body) = post(w.port, "/v1/views/chaos/events", &json!({"events": [ev("ok", 5)]}));
    assert_eq!((code, body["accepted"].as_u64()), (200, Some(1)), "{body}");
    let (_, metrics) = crate::support::get(w.port, "/metrics");
    assert!(metrics.contains("wafer_view_paused{tenant=\"t1\",view=\"chaos\"} 0"), "{metrics}");
    let (_, body) = post(w.port, "/v1/features", &json!({"entities": ["e1"], "features": ["chaos:x"]}));
    assert_eq!(body["results"][0]["features"]["chaos:x"]["value"], 5, "{body}");
}

/// Events this node has applied for the view (its own `/metrics`).
fn node_events(port: u16) -> u64 {
    let (_, text) = crate::support::get(port, "/metrics");
    text.lines()
        .find(|l| l.starts_with("wafer_events_total{tenant=\"t1\",view=\"txn\",outcome=\"ok\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_split_the_partitions_and_the_survivor_finishes_exactly() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("nodes-{}", free_port());
    let topic = format!("txns-{tag}");
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers()).create().unwrap();
    let created = admin
        .create_topics(&[NewTopic::new(&topic, 4, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let config = manifest(dir.path(), &redis.url(), Some(&topic), &format!("g-{tag}"));
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", brokers()).set("linger.ms", "5").create().unwrap();
    let a = Wafer::start(&config, free_port());
    let b = Wafer::start(&config, free_port());
    // Produce until both nodes have applied events: the group spread the partitions over them.
    let n = 6000;
    let mut produced = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    while node_events(a.port) == 0 || node_events(b.port) == 0 {
        assert!(
            Instant::now() < deadline,
            "the partitions were never split: a={} b={}",
            node_events(a.port),
            node_events(b.port)
        );
        let next = (produced + 100).min(n / 2);
        produce(&producer, &topic, produced..next).await;
        produced = next;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    produce(&producer, &topic, produced..n / 2).await;
    eprintln!("split: node a applied {}, node b {}", node_events(a.port), node_events(b.port));
    // Kill one mid-stream; the survivor takes its partitions over and finishes exactly.
    let survivor = b.port;
    a.kill9();
    produce(&producer, &topic, n / 2..n).await;
    wait_exact(survivor, n, Duration::from_secs(120));
    drop(b);
}
