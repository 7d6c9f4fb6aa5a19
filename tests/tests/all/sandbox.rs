//! The sandbox: deadlines, memory caps, traps, no files/sockets/env, event-time clocks, logs.

use std::time::{Duration, Instant};

use serde_json::json;
use wafer_runtime::{Limits, TransformError, Value};

use crate::support::{event, guests, load, load_with};

fn misbehave(limits: Limits) -> wafer_runtime::StreamWorker {
    load_with(guests::MISBEHAVE, limits).stream_worker().unwrap()
}

fn x_of(r: &Result<Vec<wafer_runtime::FeatureRow>, TransformError>) -> i64 {
    let rows = r.as_ref().unwrap_or_else(|e| panic!("expected rows, got {e}"));
    match rows[0].features.iter().find(|f| f.name == "x").map(|f| &f.value) {
        Some(Value::Int64(x)) => *x,
        other => panic!("no int x: {other:?}"),
    }
}

fn detail_of(r: &Result<Vec<wafer_runtime::FeatureRow>, TransformError>) -> String {
    let rows = r.as_ref().unwrap_or_else(|e| panic!("expected rows, got {e}"));
    match rows[0].features.iter().find(|f| f.name == "detail").map(|f| &f.value) {
        Some(Value::Text(s)) => s.clone(),
        other => panic!("no detail: {other:?}"),
    }
}

#[test]
fn infinite_loop_is_stopped_by_the_deadline_and_a_fresh_instance_takes_over() {
    let mut w = misbehave(Limits { deadline: Duration::from_millis(50), ..Limits::default() });
    assert_eq!(x_of(&w.process(&[event(0, 1, json!({"mode":"seen"}))])[0]), 1);
    assert_eq!(x_of(&w.process(&[event(1, 1, json!({"mode":"seen"}))])[0]), 2, "instance is reused");
    let t = Instant::now();
    let r = w.process(&[event(2, 1, json!({"mode":"loop"}))]);
    let took = t.elapsed();
    assert_eq!(r[0], Err(TransformError::Deadline(Duration::from_millis(50))));
    assert!(took < Duration::from_secs(5), "deadline enforcement took {took:?}");
    // The next call runs on a fresh instance (its counter restarted) and succeeds.
    assert_eq!(x_of(&w.process(&[event(3, 1, json!({"mode":"seen"}))])[0]), 1);
    assert_eq!(w.stats().deadlines, 1);
}

#[test]
fn unbounded_allocation_gets_the_memory_error() {
    let mut w = misbehave(Limits { memory_bytes: 32 << 20, ..Limits::default() });
    let r = w.process(&[event(0, 1, json!({"mode":"alloc"}))]);
    match &r[0] {
        Err(TransformError::OutOfMemory { limit, requested }) => {
            assert_eq!(*limit, 32 << 20);
            assert!(*requested > 32 << 20);
        }
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
    assert!(x_of(&w.process(&[event(1, 1, json!({"mode":"ok"}))])[0]) == 1);
}

#[test]
fn a_trap_fails_only_the_poison_event_of_a_batch() {
    let mut w = misbehave(Limits::default());
    let mut batch: Vec<_> = (0..10).map(|i| event(i, 1, json!({"mode":"ok","x":i}))).collect();
    batch[4] = event(4, 1, json!({"mode":"trap"}));
    batch[7] = event(7, 1, json!({"mode":"bad_input"}));
    let r = w.process(&batch);
    assert_eq!(r.len(), 10);
    for (i, res) in r.iter().enumerate() {
        match i {
            4 => assert!(matches!(res, Err(TransformError::Trap(m)) if m.contains("unreachable")), "{res:?}"),
            7 => assert_eq!(res, &Err(TransformError::BadInput("told to reject".into()))),
            _ => assert_eq!(x_of(res), i as i64),
        }
    }
    assert_eq!(w.stats().traps, 2, "the batch call and the isolated poison event");
    assert_eq!(w.stats().per_item_reruns, 1);
}

#[test]
fn retryable_and_bad_input_are_distinguished() {
    let mut w = misbehave(Limits::default());
    let r = w.process(&[event(0, 1, json!({"mode":"retryable"})), event(1, 1, json!({"mode":"bad_input"}))]);
    assert!(r[0].as_ref().unwrap_err().is_retryable());
    assert!(!r[1].as_ref().unwrap_err().is_retryable());
}

#[test]
fn guest_cannot_read_files_without_a_grant() {
    let mut w = misbehave(Limits::default());
    let r = w.process(&[event(0, 1, json!({"mode":"read_file","path":"/etc/passwd"}))]);
    assert_eq!(x_of(&r[0]), 0);
    assert!(detail_of(&r[0]).starts_with("error:"), "{}", detail_of(&r[0]));
}

#[test]
fn asset_dir_is_readable_but_not_writable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("table.txt"), "DE=1\n").unwrap();
    let mut w = misbehave(Limits { asset_dir: Some(dir.path().to_owned()), ..Limits::default() });
    let r = w.process(&[
        event(0, 1, json!({"mode":"read_file","path":"/assets/table.txt"})),
        event(1, 1, json!({"mode":"write_file","path":"/assets/new.txt"})),
        event(2, 1, json!({"mode":"read_file","path":"/assets/../../etc/passwd"})),
    ]);
    assert_eq!(detail_of(&r[0]), "read:DE=1\n");
    assert_eq!(x_of(&r[1]), 0, "write must fail: {}", detail_of(&r[1]));
    assert!(!dir.path().join("new.txt").exists());
    assert_eq!(x_of(&r[2]), 0, "escape must fail: {}", detail_of(&r[2]));
}

#[test]
fn guest_cannot_open_sockets() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut w = misbehave(Limits::default());
    let r = w.process(&[event(0, 1, json!({"mode":"socket","addr":addr}))]);
    assert_eq!(x_of(&r[0]), 0, "{}", detail_of(&r[0]));
    assert_eq!(listener.accept().unwrap_err().kind(), std::io::ErrorKind::WouldBlock, "nothing may connect");
}

#[test]
fn guest_sees_no_env_or_args() {
    let mut w = misbehave(Limits::default());
    assert_eq!(x_of(&w.process(&[event(0, 1, json!({"mode":"env"}))])[0]), 0);
}

fn now_of(r: &Result<Vec<wafer_runtime::FeatureRow>, TransformError>) -> i64 {
    match &r.as_ref().unwrap()[0].features.iter().find(|f| f.name == "now_ms").unwrap().value {
        Value::Int64(v) => *v,
        v => panic!("{v:?}"),
    }
}

#[test]
fn the_clock_reads_event_time_whatever_the_batching() {
    let mut w = misbehave(Limits::default());
    let ts = [1_600_000_000_123i64, 1_650_000_000_000, 1_234];
    let batch: Vec<_> = ts.iter().enumerate().map(|(i, t)| event(i as i64, *t, json!({"mode":"clock"}))).collect();
    // In one batch, each event still sees its own time (the host re-runs clock readers per event).
    let r = w.process(&batch);
    let seen: Vec<i64> = r.iter().map(now_of).collect();
    assert_eq!(seen, ts);
    for (i, e) in batch.iter().enumerate() {
        assert_eq!(now_of(&w.process(std::slice::from_ref(e))[0]), ts[i]);
    }
}

#[test]
fn oversized_output_is_rejected_for_that_event() {
    let mut w = misbehave(Limits { output_bytes: 1 << 20, ..Limits::default() });
    let r = w.process(&[event(0, 1, json!({"mode":"big_output","bytes": 2 << 20})), event(1, 1, json!({"mode":"ok"}))]);
    assert!(
        matches!(r[0], Err(TransformError::OutputTooLarge { cap, .. }) if cap == 1 << 20),
        "{:?}",
        r[0].as_ref().err()
    );
    assert_eq!(x_of(&r[1]), 1);
}

#[test]
fn guest_logs_are_rate_limited_per_call() {
    let mut w = misbehave(Limits { log_lines_per_call: 20, ..Limits::default() });
    let r = w.process(&[event(0, 1, json!({"mode":"log"}))]);
    assert_eq!(x_of(&r[0]), 1);
    assert_eq!(w.stats().log_lines, 20, "100 log lines + 1 stdout line, capped at 20 per call");
}

#[test]
fn request_transform_loop_and_trap_are_typed_errors() {
    use wafer_runtime::bindings::RequestInput;
    let t = load_with(guests::REQUEST_MISBEHAVE, Limits { deadline: Duration::from_millis(30), ..Limits::default() });
    let mut w = t.request_worker().unwrap();
    let input = |mode: &str| RequestInput {
        entity_key: "e".into(),
        request_time_ms: 42,
        params: vec![wafer_runtime::Feature { name: "mode".into(), value: Value::Text(mode.into()) }],
        stored: vec![],
    };
    assert_eq!(w.compute(&[input("loop")]).unwrap_err(), TransformError::Deadline(Duration::from_millis(30)));
    assert!(matches!(w.compute(&[input("trap")]).unwrap_err(), TransformError::Trap(_)));
    let ok = w.compute(&[input("ok")]).unwrap();
    assert_eq!(ok[0].as_ref().unwrap()[0].value, Value::Float64(42.0));
    let wrong = w.compute(&[input("wrong_type")]).unwrap();
    assert_eq!(wrong[0].as_ref().unwrap_err().code(), "schema_violation");
    let _ = load(guests::RUST_TXN_RISK);
}
