//! Each kind of invalid component gets its own specific error, before anything runs.

use wafer_runtime::{Limits, LoadError, WorldKind};

use crate::support::{guests, loader};

fn load_err(bytes: &[u8]) -> LoadError {
    match loader().load(bytes, Limits::default()) {
        Ok(t) => panic!("expected an error, loaded {}", t.name()),
        Err(e) => e,
    }
}

#[test]
fn not_wasm() {
    let e = load_err(b"#!/bin/sh\necho hi\n");
    assert_eq!(e.code(), "not_wasm");
    assert_eq!(
        e.to_string(),
        "not a WebAssembly binary: it does not start with the Wasm magic bytes 00 61 73 6d (found 23 21 2f 62)"
    );
    assert_eq!(load_err(b"").code(), "not_wasm");
    let e = load_err(b"(component)");
    assert!(e.to_string().contains("WebAssembly text"), "{e}");
}

#[test]
fn core_module_instead_of_component() {
    let e = load_err(b"\0asm\x01\0\0\0");
    assert!(matches!(e, LoadError::CoreModule), "{e}");
    assert!(e.to_string().contains("core WebAssembly module, not a component"));
}

#[test]
fn truncated_component_is_invalid() {
    let bytes = std::fs::read(guests::RUST_CARD_TXN).unwrap();
    let e = load_err(&bytes[..bytes.len() / 2]);
    assert_eq!(e.code(), "invalid_component", "{e}");
}

#[test]
fn wrong_world() {
    let bytes = std::fs::read(guests::NOT_A_TRANSFORM).unwrap();
    let e = load_err(&bytes);
    assert_eq!(e.code(), "wrong_world");
    let msg = e.to_string();
    assert!(msg.contains("missing wafer:transform/describe@0.1.0"), "{msg}");
    assert!(msg.contains("wasi:cli/run"), "{msg}");
}

#[test]
fn forbidden_import() {
    let bytes = std::fs::read(guests::FORBIDDEN_IMPORT).unwrap();
    match load_err(&bytes) {
        LoadError::ForbiddenImport { name, .. } => assert_eq!(name, "acme:evil/net@0.1.0"),
        e => panic!("expected ForbiddenImport, got {e}"),
    }
}

#[test]
fn a_request_transform_cannot_run_as_a_stream_transform() {
    let t = crate::support::load(guests::RUST_TXN_RISK);
    assert_eq!(t.kind(), WorldKind::Request);
    match t.stream_worker().map_err(LoadError::from) {
        Err(LoadError::UnexpectedWorld { expected: WorldKind::Stream, found: WorldKind::Request }) => {}
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("a request transform must not run as a stream transform"),
    }
}

#[test]
fn compiled_artifacts_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let engine = loader().engine().clone();
    let l = wafer_runtime::Loader::new(engine, Some(dir.path())).unwrap();
    let bytes = std::fs::read(guests::RUST_CARD_TXN).unwrap();
    let first = l.load(&bytes, Limits::default()).unwrap();
    assert!(!first.load_stats().from_cache);
    let second = l.load(&bytes, Limits::default()).unwrap();
    assert!(second.load_stats().from_cache);
    assert_eq!(first.load_stats().sha256, second.load_stats().sha256);
    // A corrupt artifact is discarded and recompiled, never trusted. (Replace the file by
    // rename, as the cache itself does: live components keep the old file mmapped.)
    for entry in walk(dir.path()) {
        let tmp = entry.with_extension("tmp");
        std::fs::write(&tmp, b"garbage").unwrap();
        std::fs::rename(&tmp, &entry).unwrap();
    }
    let third = l.load(&bytes, Limits::default()).unwrap();
    assert!(!third.load_stats().from_cache);
    assert_eq!(third.info().name, "card_txn");
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(p).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else if e.path().extension().is_some_and(|x| x == "cwasm") {
            out.push(e.path());
        }
    }
    out
}
