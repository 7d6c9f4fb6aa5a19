//! Helpers shared by the test modules.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use wafer_runtime::{EngineConfig, Event, Limits, Loader, Transform, WaferEngine};

pub use wafer_tests::guests;

/// One engine and loader per test process, caching artifacts under the target dir.
pub fn loader() -> &'static Loader {
    static LOADER: OnceLock<Loader> = OnceLock::new();
    LOADER.get_or_init(|| {
        let engine = WaferEngine::new(EngineConfig { pool_instances: 64, ..EngineConfig::default() }).expect("engine");
        let cache = target_dir().join("test-artifact-cache");
        Loader::new(engine, Some(&cache)).expect("loader")
    })
}

pub fn load(path: &str) -> Transform {
    load_with(path, Limits::default())
}

pub fn load_with(path: &str, limits: Limits) -> Transform {
    loader().load_file(Path::new(path), limits).unwrap_or_else(|e| panic!("loading {path}: {e}"))
}

/// An event whose payload is `value`'s JSON text.
pub fn event(offset: i64, ts: i64, value: serde_json::Value) -> Event {
    Event {
        topic: "t".into(),
        partition: 0,
        offset,
        timestamp_ms: ts,
        key: None,
        value: serde_json::to_vec(&value).unwrap(),
        headers: vec![],
    }
}

pub fn target_dir() -> PathBuf {
    Path::new(guests::WAFER_ROOT).join("target")
}

/// The `wafer` binary, built (incrementally) once per test run in this test build's profile.
pub fn wafer_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let release = !cfg!(debug_assertions);
        let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
        cmd.args(["build", "-q", "-p", "wafer-runtime", "--bin", "wafer"]).current_dir(guests::WAFER_ROOT);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build for the wafer binary");
        assert!(status.success(), "building the wafer binary failed");
        target_dir().join(if release { "release" } else { "debug" }).join("wafer")
    })
}
