//! The online store on a Redis Cluster (3 masters on loopback ports, started per test) and the
//! per-entity guarantees that make it possible, checked on every store they apply to:
//! - exact aggregates through the store (the `aggregate` scenario), HTTP push and Kafka with a
//!   SIGKILL of `wafer serve`; a view's entities spread over every master;
//! - a batch applied in part (a crash between its per-entity writes) and then replayed with other
//!   batch boundaries counts every event exactly once;
//! - a v1 store (one slot per view) migrated to the per-entity layout keeps its values and
//!   refuses replays below its watermarks;
//! - a push retried with the same `Idempotency-Key` is applied once (embedded, Redis, Cluster);
//! - with one master frozen, entities on the other masters are read, the frozen ones come back
//!   unavailable, and a write retried after the master returns converges exactly.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::FutureProducer;
use serde_json::json;

use wafer_runtime::aggregate::ops::{EntityOps, TileOp};
use wafer_runtime::store::quota::EntityQuota;
use wafer_runtime::store::redis::RedisStore;
use wafer_runtime::store::{Applied, OnlineStore, SourceMark, StoreError, WriteBatch};

use crate::aggregate::scenario;
use crate::streaming::{brokers, manifest_with, produce, wait_exact, wait_progress};
use crate::support::{RedisCluster, RedisServer, Wafer, free_port, post, post_with};

const COUNT: &str = "t:0:0:n:n";

fn cluster_section(c: &RedisCluster) -> String {
    let seeds: Vec<String> = c.seeds().iter().skip(1).map(|s| format!("\"{s}\"")).collect();
    format!("[redis]\nurl = \"{}\"\ncluster = true\nseeds = [{}]\n", c.seeds()[0], seeds.join(", "))
}

fn batch<'a>(view: &'a str, mark: Option<SourceMark>, ops: &'a [EntityOps]) -> WriteBatch<'a> {
    WriteBatch { view, mark, entities: ops, keep_ms: 3_600_000, retention: &[], idempotency_key: None, quota: None }
}

fn mark(first: i64, next: i64) -> Option<SourceMark> {
    Some(SourceMark { source: "txns".into(), partition: 0, first_offset: first, next_offset: next })
}

/// The ops of events at `offsets`: entity `a` at even offsets, `b` at odd ones, each a count.
fn ops(offsets: std::ops::Range<i64>) -> Vec<EntityOps> {
    let mut v = Vec::new();
    for (name, parity) in [("a", 0), ("b", 1)] {
        let n = offsets.clone().filter(|o| o % 2 == parity).count() as i64;
        if n > 0 {
            v.push(EntityOps { entity: name.into(), ops: vec![TileOp::Incr { field: COUNT.into(), delta: n }] });
        }
    }
    v
}

async fn counts(store: &dyn OnlineStore, view: &str) -> Vec<Option<String>> {
    let recs = store.read(view, &["a", "b"], &[COUNT.to_string()], &[]).await.unwrap();
    recs.iter().map(|r| wafer_runtime::aggregate::read::FieldSource::field(r, COUNT).map(str::to_string)).collect()
}

/// The store is as a crash between the per-entity writes of batch [0, 8) leaves it (see
/// [`crash_after_a`]): entity `a` written, `b` not, the watermark not advanced. The replay comes
/// in other batch boundaries ([0, 5), then [5, 10)), as a restarted consumer may form them.
async fn replay_after_partial_batch(store: &dyn OnlineStore) {
    let view = "t1/partial";
    // [0, 5): a already holds offsets up to 8 (skipped), b is applied.
    assert_eq!(store.apply(&batch(view, mark(0, 5), &ops(0..5))).await.unwrap(), Applied::Applied);
    assert_eq!(store.watermark(view, "txns", 0).await.unwrap(), Some(5));
    // [5, 10): a holds [5, 8) already: the store asks for the rest from 8; b is applied.
    assert_eq!(store.apply(&batch(view, mark(5, 10), &ops(5..10))).await.unwrap(), Applied::Stale { watermark: 8 });
    assert_eq!(store.apply(&batch(view, mark(8, 10), &ops(8..10))).await.unwrap(), Applied::Applied);
    assert_eq!(store.watermark(view, "txns", 0).await.unwrap(), Some(10));
    // Offsets 0..10, every one counted once: a = 0,2,4,6,8; b = 1,3,5,7,9.
    assert_eq!(counts(store, view).await, vec![Some("5".to_string()), Some("5".to_string())]);
    // A retry of an applied batch (a lost reply) changes nothing.
    assert_eq!(store.apply(&batch(view, mark(8, 10), &ops(8..10))).await.unwrap(), Applied::Stale { watermark: 10 });
    assert_eq!(counts(store, view).await, vec![Some("5".to_string()), Some("5".to_string())]);
}

/// Apply entity `a`'s share of [0, 8) only and drop the watermark, as a crash would leave it.
async fn crash_after_a(store: &dyn OnlineStore, conn: &mut wafer_runtime::store::redis::Conn) {
    let only_a: Vec<EntityOps> = ops(0..8).into_iter().filter(|e| e.entity == "a").collect();
    assert_eq!(store.apply(&batch("t1/partial", mark(0, 8), &only_a)).await.unwrap(), Applied::Applied);
    let _: () = redis::cmd("DEL").arg("wafer:{t1/partial}:wm:txns:0").query_async(conn).await.unwrap();
}

#[tokio::test]
async fn cluster_store_aggregates_exactly_and_spreads_entities_over_every_master() {
    let c = RedisCluster::start(3, 0);
    let store = RedisStore::connect_cluster(&c.seeds()).await.unwrap();
    scenario(&store, "t1/txn").await;
    let ops: Vec<EntityOps> = (0..300)
        .map(|i| EntityOps { entity: format!("e{i}"), ops: vec![TileOp::Incr { field: COUNT.into(), delta: i }] })
        .collect();
    assert_eq!(store.apply(&batch("t1/spread", None, &ops)).await.unwrap(), Applied::Applied);
    let masters = c.master_ports();
    assert_eq!(masters.len(), 3);
    for p in &masters {
        assert!(c.dbsize(*p) >= 50, "master {p} holds {} keys: the view is not spread", c.dbsize(*p));
    }
    let names: Vec<String> = (0..300).map(|i| format!("e{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let recs = store.read("t1/spread", &refs, &[COUNT.to_string()], &[]).await.unwrap();
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(wafer_runtime::aggregate::read::FieldSource::field(r, COUNT), Some(i.to_string().as_str()));
    }
    store.delete_view("t1/txn").await.unwrap();
    store.delete_view("t1/spread").await.unwrap();
    assert_eq!(masters.iter().map(|p| c.dbsize(*p)).sum::<u64>(), 0, "delete_view removed every key");
}

#[tokio::test]
async fn a_batch_applied_in_part_then_replayed_counts_every_event_once() {
    let redis = RedisServer::start();
    let single = RedisStore::connect(&redis.url()).await.unwrap();
    crash_after_a(&single, &mut single.conn().clone()).await;
    replay_after_partial_batch(&single).await;

    let c = RedisCluster::start(3, 0);
    let cluster = RedisStore::connect_cluster(&c.seeds()).await.unwrap();
    crash_after_a(&cluster, &mut cluster.conn().clone()).await;
    replay_after_partial_batch(&cluster).await;
}

/// Write v1 keys by hand (as the previous release did), migrate, and read them back.
async fn migrate_v1(store: &RedisStore) {
    let mut c = store.conn().clone();
    let v1 = "wafer:{t1/old}:e:a";
    let _: () = redis::cmd("HSET")
        .arg(v1)
        .arg(COUNT)
        .arg(3)
        .arg("f:country")
        .arg("5|\"DE\"")
        .query_async(&mut c)
        .await
        .unwrap();
    let _: () = redis::cmd("PEXPIRE").arg(v1).arg(3_600_000).query_async(&mut c).await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("wafer:{t1/old}:e:a|t:0:0:country:h")
        .arg("\u{1}\u{2}")
        .query_async(&mut c)
        .await
        .unwrap();
    let _: () = redis::cmd("SET").arg("wafer:{t1/old}:wm:txns:0").arg(6).query_async(&mut c).await.unwrap();
    let done = store.migrate_v1(None).await.unwrap();
    assert_eq!((done.entities, done.sketches), (1, 1));
    let exists: i64 = redis::cmd("EXISTS").arg(v1).query_async(&mut c).await.unwrap();
    assert_eq!(exists, 0, "the v1 key is gone");
    let hll = ["t:0:0:country:h".to_string()];
    let rec = store.read("t1/old", &["a"], &[COUNT.to_string()], &hll).await.unwrap().remove(0);
    use wafer_runtime::aggregate::read::FieldSource;
    assert_eq!((rec.field(COUNT), rec.hll(&hll[0])), (Some("3"), Some(&[1u8, 2][..])));
    // Offsets below the v1 watermark are already in the entity: a replay is refused.
    let one = vec![EntityOps { entity: "a".into(), ops: vec![TileOp::Incr { field: COUNT.into(), delta: 1 }] }];
    assert_eq!(store.apply(&batch("t1/old", mark(4, 6), &one)).await.unwrap(), Applied::Stale { watermark: 6 });
    assert_eq!(store.apply(&batch("t1/old", mark(6, 7), &one)).await.unwrap(), Applied::Applied);
    let rec = store.read("t1/old", &["a"], &[COUNT.to_string()], &[]).await.unwrap().remove(0);
    assert_eq!(rec.field(COUNT), Some("4"));
    // A second run finds nothing left to move.
    assert_eq!(store.migrate_v1(None).await.unwrap().entities, 0);
}

#[tokio::test]
async fn a_v1_store_migrates_to_the_per_entity_layout() {
    let redis = RedisServer::start();
    migrate_v1(&RedisStore::connect(&redis.url()).await.unwrap()).await;
    let c = RedisCluster::start(3, 0);
    migrate_v1(&RedisStore::connect_cluster(&c.seeds()).await.unwrap()).await;
}

/// Push the same 10 events (10 users) with and without an idempotency key.
fn pushes_apply_once_per_idempotency_key(port: u16) {
    let now = crate::support::now_ms();
    let evs = json!({"events": (0..10).map(|i| json!({"timestamp_ms": now, "value": {"user_id": format!("p{i}"), "amount": 1.5, "country": "DE", "merchant": "m"}})).collect::<Vec<_>>()});
    let push = |headers: &[&str]| {
        let (code, body) = post_with(port, "/v1/views/txn/events", &evs, headers);
        assert_eq!((code, &body["accepted"]), (200, &json!(10)), "{body}");
    };
    let count = || {
        let users: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
        let (code, body) = post(
            port,
            "/v1/features",
            &json!({"view": "txn", "entities": users, "features": ["amount_count_lifetime", "amount_sum_lifetime"]}),
        );
        assert_eq!(code, 200, "{body}");
        let r = body["results"].as_array().unwrap();
        let c: Vec<i64> = r.iter().map(|r| r["features"]["amount_count_lifetime"]["value"].as_i64().unwrap()).collect();
        assert!(c.iter().all(|x| *x == c[0]), "{body}");
        c[0]
    };
    push(&["Idempotency-Key: k-1"]);
    push(&["Idempotency-Key: k-1"]);
    assert_eq!(count(), 1, "a retry with the same key is applied once");
    push(&["Idempotency-Key: k-2"]);
    assert_eq!(count(), 2);
    push(&[]);
    push(&[]);
    assert_eq!(count(), 4, "pushes without a key are each applied");
    let (code, body) = post_with(port, "/v1/views/txn/events", &evs, &["Idempotency-Key: has space"]);
    assert_eq!((code, body["error"]["code"].as_str()), (400, Some("invalid_idempotency_key")), "{body}");
    assert_eq!(count(), 4);
}

#[test]
fn a_push_retried_with_its_idempotency_key_is_applied_once_on_every_store() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    let cluster = RedisCluster::start(3, 0);
    for section in [String::new(), format!("[redis]\nurl = \"{}\"\n", redis.url()), cluster_section(&cluster)] {
        let config = manifest_with(dir.path(), &section, None, "unused");
        let port = free_port();
        let _w = Wafer::start(&config, port);
        pushes_apply_once_per_idempotency_key(port);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_stream_with_a_sigkill_is_exact_on_a_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("cluster-{}", free_port());
    let topic = format!("txns-{tag}");
    let config = manifest_with(dir.path(), &cluster_section(&cluster), Some(&topic), &format!("g-{tag}"));
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", brokers()).set("linger.ms", "5").create().unwrap();
    let n = 4000;
    produce(&producer, &topic, 0..n / 2).await;
    let port = free_port();
    let wafer = Wafer::start(&config, port);
    wait_progress(port, 200, Duration::from_secs(60));
    wafer.kill9();
    produce(&producer, &topic, n / 2..n).await;
    let wafer = Wafer::start(&config, port);
    wait_exact(wafer.port, n, Duration::from_secs(120));
    for p in cluster.master_ports() {
        assert!(cluster.dbsize(p) > 0, "master {p} holds none of the view's entities");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_one_shard_down_the_others_are_served_and_writes_converge_when_it_returns() {
    let c = RedisCluster::start(3, 0);
    let store = RedisStore::connect_cluster(&c.seeds()).await.unwrap();
    let view = "t1/down";
    let names: Vec<String> = (0..60).map(|i| format!("e{i}")).collect();
    let ones: Vec<EntityOps> = names
        .iter()
        .map(|n| EntityOps { entity: n.clone(), ops: vec![TileOp::Incr { field: COUNT.into(), delta: 1 }] })
        .collect();
    assert_eq!(store.apply(&batch(view, mark(0, 60), &ones)).await.unwrap(), Applied::Applied);
    // Which entities live on the master we freeze.
    let down = &c.nodes[0];
    let on_down: Vec<bool> =
        names.iter().map(|n| c.cli(down.port, &["exists", &RedisStore::entity_key(view, n)]).trim() == "1").collect();
    assert!(on_down.iter().any(|d| *d) && !on_down.iter().all(|d| *d), "{on_down:?}");
    let pid = down.pid().to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let read = store.read(view, &refs, &[COUNT.to_string()], &[]).await.unwrap();
    use wafer_runtime::aggregate::read::FieldSource;
    for ((r, d), n) in read.iter().zip(&on_down).zip(&names) {
        if *d {
            assert!(r.is_unavailable(), "{n} is on the frozen master");
        } else {
            assert_eq!((r.is_unavailable(), r.field(COUNT)), (false, Some("1")), "{n} is on a healthy master");
        }
    }
    // A write while the shard is down fails for its entities only; the retry after it returns
    // applies exactly what is missing.
    let second = store.apply(&batch(view, mark(60, 120), &ones)).await;
    assert!(second.as_ref().is_err_and(|e| e.is_transient()), "{second:?}");
    assert!(std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    let mut tries = 0;
    loop {
        match store.apply(&batch(view, mark(60, 120), &ones)).await {
            // Stale: the frozen master ran the timed-out writes when it resumed; the guards
            // turn the retry into a no-op instead of a second count.
            Ok(a) => {
                assert!(matches!(a, Applied::Applied | Applied::Stale { watermark: 120 }), "{a:?}");
                break;
            }
            Err(e) => {
                tries += 1;
                assert!(e.is_transient() && tries < 100, "{e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let read = store.read(view, &refs, &[COUNT.to_string()], &[]).await.unwrap();
    for (r, n) in read.iter().zip(&names) {
        assert_eq!(r.field(COUNT), Some("2"), "{n}: applied once per batch");
    }
}

/// When one phase of the failover test must be done by.
fn phase_deadline() -> std::time::Instant {
    std::time::Instant::now() + Duration::from_secs(90)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "issue 13: in 1 run of 3 recorded (a cold checkout on 2026-12-02) the client still read entities as unavailable 90 s after the failover; the cause (topology refresh of the cluster-async client) is not yet found"]
async fn with_wait_replicas_nothing_acknowledged_is_lost_when_a_master_fails_over() {
    use wafer_runtime::aggregate::read::FieldSource;
    use wafer_runtime::store::redis::RedisOptions;
    let mut c = RedisCluster::start(3, 1);
    let opts = RedisOptions { urls: c.seeds(), cluster: true, wait_replicas: 1 };
    let store = RedisStore::open(&opts).await.unwrap();
    let view = "t1/failover";
    let names: Vec<String> = (0..60).map(|i| format!("e{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let ones: Vec<EntityOps> = names
        .iter()
        .map(|n| EntityOps { entity: n.clone(), ops: vec![TileOp::Incr { field: COUNT.into(), delta: 1 }] })
        .collect();
    for b in 0..10 {
        assert_eq!(store.apply(&batch(view, mark(b * 60, (b + 1) * 60), &ones)).await.unwrap(), Applied::Applied);
    }
    // Kill a master at once after its last acknowledged write; its replica takes over.
    let master = c.nodes.iter().position(|n| c.cli(n.port, &["role"]).starts_with("master")).unwrap();
    c.nodes.remove(master).stop();
    let survivor = c.nodes[0].port;
    // Each phase has its own deadline: under a loaded CI machine a failover plus the client's
    // topology refresh (5 s response timeouts on the dead node) takes tens of seconds.
    let deadline = phase_deadline();
    while !c.cli(survivor, &["cluster", "info"]).contains("cluster_state:ok") || c.master_ports().len() < 3 {
        assert!(std::time::Instant::now() < deadline, "no replica was promoted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every acknowledged write survived the failover (read once the client sees the new master).
    let deadline = phase_deadline();
    let read = loop {
        let read = store.read(view, &refs, &[COUNT.to_string()], &[]).await;
        match read {
            Ok(r) if r.iter().all(|e| !e.is_unavailable()) => break r,
            other => {
                let seen = other.map(|r| r.iter().filter(|e| e.is_unavailable()).count());
                assert!(
                    std::time::Instant::now() < deadline,
                    "entities still unavailable after the failover (last read: {seen:?} unavailable)"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    for (r, n) in read.iter().zip(&names) {
        assert_eq!(r.field(COUNT), Some("10"), "{n}: every acknowledged batch survived, once");
    }
    // The promoted master has no replica: a write is applied there but never acknowledged.
    let promoted = c
        .master_ports()
        .into_iter()
        .find(|p| c.cli(*p, &["info", "replication"]).contains("connected_slaves:0"))
        .expect("the promoted master has no replica");
    let deadline = phase_deadline();
    loop {
        match store.apply(&batch(view, mark(600, 660), &ones)).await {
            Err(StoreError::NotReplicated { acked: 0, wanted: 1 }) => break,
            Ok(a) => panic!("acknowledged without a replica: {a:?}"),
            Err(e) => {
                assert!(e.is_transient(), "{e}");
                assert!(std::time::Instant::now() < deadline, "still failing after the phase deadline: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    // With a replica again, the retry is acknowledged; the guards make the applied part a no-op.
    c.add_replica(promoted);
    let deadline = phase_deadline();
    loop {
        match store.apply(&batch(view, mark(600, 660), &ones)).await {
            Ok(Applied::Applied | Applied::Stale { watermark: 660 }) => break,
            Ok(a) => panic!("{a:?}"),
            Err(e) => {
                assert!(e.is_transient(), "{e}");
                assert!(std::time::Instant::now() < deadline, "still failing after the phase deadline: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let next = 11;
    let read = store.read(view, &refs, &[COUNT.to_string()], &[]).await.unwrap();
    for (r, n) in read.iter().zip(&names) {
        assert_eq!(r.field(COUNT), Some(next.to_string().as_str()), "{n}: every acknowledged batch, once");
    }
}

/// Write one count to each of `users` in `view` under `quota`; the users refused.
async fn write_within(
    store: &dyn OnlineStore,
    quota: &std::sync::Arc<EntityQuota>,
    view: &str,
    users: &[&str],
    keep_ms: i64,
) -> Vec<String> {
    let ents: Vec<EntityOps> = users
        .iter()
        .map(|u| EntityOps { entity: u.to_string(), ops: vec![TileOp::Incr { field: COUNT.into(), delta: 1 }] })
        .collect();
    let b = WriteBatch { keep_ms, quota: Some(quota), ..batch(view, None, &ents) };
    let out = store.write(&b).await.unwrap();
    assert_eq!(out.applied, Applied::Applied);
    out.refused.iter().map(|i| users[*i].to_string()).collect()
}

/// The count of each of `users` in `view` (None: not stored).
async fn count_of(store: &dyn OnlineStore, view: &str, users: &[&str]) -> Vec<Option<String>> {
    let recs = store.read(view, users, &[COUNT.to_string()], &[]).await.unwrap();
    recs.iter().map(|r| wafer_runtime::aggregate::read::FieldSource::field(r, COUNT).map(str::to_string)).collect()
}

/// Issue 20, defect 10, at the store: with 3 records allowed, a tenant's writes update what it
/// has and create nothing more (across its views); records that expired stop counting at the
/// next recount; another tenant is not affected.
async fn store_quota_holds(store: &dyn OnlineStore) {
    let quota = std::sync::Arc::new(EntityQuota::new("q1", 3).with_recount_every_ms(0));
    let none: Vec<String> = Vec::new();
    assert_eq!(write_within(store, &quota, "q1/a", &["u1", "u2"], 3_600_000).await, none);
    // A record is one entity of one view: u1 in q1/b is the third, and it expires soon.
    assert_eq!(write_within(store, &quota, "q1/b", &["u1"], 400).await, none);
    assert_eq!(quota.stored(), 3);
    assert_eq!(write_within(store, &quota, "q1/a", &["u2", "u3", "u1"], 3_600_000).await, ["u3"]);
    let two = Some("2".to_string());
    assert_eq!(count_of(store, "q1/a", &["u1", "u2", "u3"]).await, [two.clone(), two, None]);
    let other = std::sync::Arc::new(EntityQuota::new("q2", 3));
    assert_eq!(write_within(store, &other, "q2/a", &["u3", "u4", "u5"], 3_600_000).await, none);

    // q1/b's record expires; the recount (in the background on Redis) lets u3 in.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !write_within(store, &quota, "q1/a", &["u3"], 3_600_000).await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "the expired record was never uncounted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count_of(store, "q1/a", &["u3"]).await, [Some("1".to_string())], "refused writes wrote nothing");
    assert_eq!(write_within(store, &quota, "q1/a", &["u4"], 3_600_000).await, ["u4"], "at the quota again");
}

#[tokio::test]
async fn a_tenant_at_its_store_quota_creates_no_entity_on_every_store() {
    store_quota_holds(&wafer_runtime::store::embedded::EmbeddedStore::new()).await;
    let redis = RedisServer::start();
    store_quota_holds(&RedisStore::connect(&redis.url()).await.unwrap()).await;
    let cluster = RedisCluster::start(3, 0);
    store_quota_holds(&RedisStore::connect_cluster(&cluster.seeds()).await.unwrap()).await;
}
