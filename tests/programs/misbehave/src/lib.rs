//! A stream transform that does what the event's `mode` says, to test the sandbox.

use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};

use wafer_sdk::prelude::*;

/// Events seen by this instance (resets on a fresh instance).
static SEEN: AtomicI64 = AtomicI64::new(0);

struct Misbehave;

impl StreamTransform for Misbehave {
    fn describe() -> TransformInfo {
        stream_transform("misbehave", "0")
            .output(int64("x"))
            .output(text("detail").nullable())
            .output(int64("now_ms").nullable())
    }

    fn process(event: &Event) -> Result<Vec<FeatureRow>, TransformError> {
        let seen = SEEN.fetch_add(1, Ordering::Relaxed) + 1;
        let v = json::parse(&event.value)?;
        let mode = json::str(&v, "mode")?;
        let row = |x: i64| Row::new("e1", event.timestamp_ms).int64("x", x);
        let detail = |x: i64, d: String| Ok(vec![row(x).text("detail", &d).build()]);
        match mode {
            "ok" => Ok(vec![row(json::i64(&v, "x").unwrap_or(1)).build()]),
            "seen" => Ok(vec![row(seen).build()]),
            "loop" => loop {
                black_box(seen);
            },
            "alloc" => {
                let mut hog: Vec<Vec<u8>> = Vec::new();
                loop {
                    hog.push(black_box(vec![1u8; 1 << 20]));
                }
            }
            "trap" => panic!("boom on purpose"),
            // One row for each of `entities` distinct entities (a fan-out transform).
            "fanout" => {
                let n = json::i64(&v, "entities")?;
                Ok((0..n).map(|i| Row::new(&format!("e{i}"), event.timestamp_ms).int64("x", i).build()).collect())
            }
            "long_key" => {
                let n = json::i64(&v, "bytes")? as usize;
                Ok(vec![Row::new(&"k".repeat(n), event.timestamp_ms).int64("x", 1).build()])
            }
            "bad_input" => Err(TransformError::BadInput("told to reject".into())),
            "retryable" => Err(TransformError::Retryable("try later".into())),
            "undeclared" => Ok(vec![row(1).int64("nope", 1).build()]),
            "wrong_type" => Ok(vec![Row::new("e1", event.timestamp_ms).text("x", "not an int").build()]),
            "null" => Ok(vec![Row::new("e1", event.timestamp_ms).null("x").build()]),
            "empty_key" => Ok(vec![Row::new("", event.timestamp_ms).int64("x", 1).build()]),
            "big_output" => {
                let n = json::i64(&v, "bytes")? as usize;
                detail(1, "y".repeat(n))
            }
            "read_file" => {
                let path = json::str(&v, "path")?;
                match std::fs::read_to_string(path) {
                    Ok(s) => detail(1, format!("read:{s}")),
                    Err(e) => detail(0, format!("error:{:?}", e.kind())),
                }
            }
            "write_file" => {
                let path = json::str(&v, "path")?;
                match std::fs::write(path, b"x") {
                    Ok(()) => detail(1, "wrote".into()),
                    Err(e) => detail(0, format!("error:{:?}", e.kind())),
                }
            }
            "socket" => {
                let addr = json::str(&v, "addr")?;
                match std::net::TcpStream::connect(addr) {
                    Ok(_) => detail(1, "connected".into()),
                    Err(e) => detail(0, format!("error:{:?}", e.kind())),
                }
            }
            "env" => detail(std::env::vars().count() as i64 + std::env::args().count() as i64, String::new()),
            "clock" => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(-1);
                Ok(vec![row(1).int64("now_ms", now).build()])
            }
            "log" => {
                for i in 0..100 {
                    log::info(&format!("log line {i}"));
                }
                println!("hello from stdout");
                Ok(vec![row(1).build()])
            }
            other => Err(TransformError::BadInput(format!("unknown mode {other}"))),
        }
    }
}

export_stream_transform!(Misbehave);
