//! `wafer new`: every language's scaffold builds with its own build.sh, and its test.sh
//! (`wafer run` over the sample, dated when the project was made) gives the exact rows, the
//! sample's bad line as a typed error and the guest's log line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::support::{guests, target_dir, wafer_bin};

/// The `wasm-c` tool, built (incrementally) once per test run.
fn wasm_c_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let status = Command::new(option_env!("CARGO").unwrap_or("cargo"))
            .args(["build", "-q", "--release", "-p", "wasm-c"])
            .current_dir(guests::WAFER_ROOT)
            .status()
            .expect("running cargo build for wasm-c");
        assert!(status.success(), "building wasm-c failed");
        target_dir().join("release/wasm-c")
    })
}

fn wafer() -> Command {
    let mut c = Command::new(wafer_bin());
    c.env("WAFER_CACHE_DIR", target_dir().join("test-artifact-cache"));
    c
}

fn sh(dir: &Path, script: &str) -> Output {
    let mut c = Command::new(dir.join(script));
    c.current_dir(dir)
        .env("WAFER", wafer_bin())
        .env("WAFER_CACHE_DIR", target_dir().join("test-artifact-cache"))
        .env("WASM_C", wasm_c_bin())
        // Share the Rust guests' build cache (same release profile): only the new crate compiles.
        .env("CARGO_TARGET_DIR", target_dir().join("wasm-guests"));
    if let Some(p) = guests::TOOL_COMPONENTIZE_PY {
        c.env("COMPONENTIZE_PY", p);
    }
    if let Some(p) = guests::TOOL_COMPONENTIZE_QJS {
        c.env("COMPONENTIZE_QJS", p);
    }
    for var in ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "RUSTC_WORKSPACE_WRAPPER"] {
        c.env_remove(var);
    }
    c.output().unwrap_or_else(|e| panic!("running {script} in {}: {e}", dir.display()))
}

/// The sample's times: `timestamp_ms` (events) or `request_time_ms` (requests), in line order.
fn sample_times(dir: &Path, kind: &str) -> Vec<i64> {
    let (file, field) =
        if kind == "stream" { ("events.jsonl", "timestamp_ms") } else { ("requests.jsonl", "request_time_ms") };
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()[field].as_i64().unwrap())
        .collect()
}

fn scaffold_builds_and_runs(lang: &str, kind: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let name = format!("my-{lang}-{kind}");
    let dir = tmp.path().join(&name);
    let before = crate::support::now_ms();
    let out = wafer().args(["new", "--lang", lang, "--kind", kind, &name, "--dir"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The sample is dated when the project was made: whole minutes, a minute apart (events), the
    // last a minute before then, so a server reading now serves it within its windows.
    let times = sample_times(&dir, kind);
    let last = *times.last().unwrap();
    assert!(last % 60_000 == 0 && last < before && last >= before - 3 * 60_000, "{times:?}, made at {before}");
    if kind == "stream" {
        assert_eq!(times, [last - 120_000, last - 60_000, last]);
    } else {
        assert!(times.iter().all(|t| *t == last), "{times:?}");
    }
    for f in ["wit/transform.wit", "build.sh", "test.sh", "README.md"] {
        assert!(dir.join(f).is_file(), "{lang}: no {f}");
    }
    if lang == "python" && kind == "stream" {
        let app = std::fs::read_to_string(dir.join("app.py")).unwrap();
        assert!(app.contains("@wafer.stream_transform("), "a decorated function, not the WIT classes:\n{app}");
        let authoring = std::fs::read_to_string(dir.join("wafer.py")).unwrap();
        let package = std::fs::read_to_string(Path::new(guests::WAFER_ROOT).join("python/wafer/authoring.py")).unwrap();
        assert_eq!(authoring, package, "wafer.py is the package's authoring module, verbatim");
    }
    let build = sh(&dir, "build.sh");
    assert!(
        build.status.success(),
        "{lang} {kind} build failed:\n{}{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    assert!(dir.join(format!("{name}.wasm")).is_file());

    let run = sh(&dir, "test.sh");
    let stdout = String::from_utf8(run.stdout).unwrap();
    let stderr = String::from_utf8(run.stderr).unwrap();
    // The sample's last line is bad input on purpose.
    assert_eq!(run.status.code(), Some(1), "{lang} {kind}:\n{stderr}");
    let rows: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    if kind == "stream" {
        assert_eq!(
            rows,
            [
                serde_json::json!({"line": 2, "entity_key": "u1", "event_time_ms": times[0], "features": {"amount": 12.5, "is_large": false}}),
                serde_json::json!({"line": 3, "entity_key": "u2", "event_time_ms": times[1], "features": {"amount": 250.0, "is_large": true}}),
            ],
            "{lang}"
        );
        // Python's decorated function: the message names the user's line (`app.py, line N, in fn: …`).
        let bad = if lang == "python" { "line 4: bad input: app.py, line " } else { "line 4: bad input: field" };
        assert!(stderr.contains(bad), "{lang}: {stderr}");
        assert!(stderr.contains("field `amount` must be non-negative, got -3"), "{lang}: {stderr}");
        assert!(stderr.contains("rejecting negative amount -3"), "{lang}: the guest's log line is missing: {stderr}");
    } else {
        assert_eq!(
            rows,
            [
                serde_json::json!({"line": 2, "entity_key": "u1", "features": {"amount_vs_mean": 2.0}}),
                serde_json::json!({"line": 3, "entity_key": "u2", "features": {"amount_vs_mean": 10.0}}),
            ],
            "{lang}"
        );
        assert!(
            stderr.contains("line 4: bad input: request param `amount` must be a number [bad_input]"),
            "{lang}: {stderr}"
        );
        assert!(stderr.contains("WARN"), "{lang}: the guest's log line is missing: {stderr}");
    }
}

#[test]
fn new_c_stream() {
    scaffold_builds_and_runs("c", "stream");
}

#[test]
fn new_c_request() {
    scaffold_builds_and_runs("c", "request");
}

#[test]
fn new_js_stream() {
    scaffold_builds_and_runs("js", "stream");
}

#[test]
fn new_js_request() {
    scaffold_builds_and_runs("js", "request");
}

#[test]
fn new_python_stream() {
    scaffold_builds_and_runs("python", "stream");
}

#[test]
fn new_rust_stream() {
    scaffold_builds_and_runs("rust", "stream");
}

#[test]
fn new_rust_request() {
    scaffold_builds_and_runs("rust", "request");
}

#[test]
fn new_refuses_bad_names_and_non_empty_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = wafer().args(["new", "--lang", "js", "Bad Name", "--dir"]).arg(tmp.path().join("x")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid transform name `Bad Name`"));
    std::fs::write(tmp.path().join("keep.txt"), "x").unwrap();
    let out = wafer().args(["new", "--lang", "c", "ok_name", "--dir"]).arg(tmp.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists and is not empty"));
    assert_eq!(std::fs::read_to_string(tmp.path().join("keep.txt")).unwrap(), "x");
}
