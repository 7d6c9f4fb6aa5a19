//! The `wafer` command line: `run`, `inspect`, `--help`, errors said once.

use std::process::Command;

use crate::support::{guests, target_dir, wafer_bin};

fn write_events(lines: &[&str]) -> tempfile::NamedTempFile {
    use std::io::Write;
    let mut f = tempfile::NamedTempFile::new().unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    f
}

fn wafer() -> Command {
    let mut c = Command::new(wafer_bin());
    c.env("WAFER_CACHE_DIR", target_dir().join("test-artifact-cache"));
    c
}

#[test]
fn run_prints_rows_and_reports_failures_by_line() {
    let events = write_events(&[
        r#"{"timestamp_ms":1700000000000,"value":{"user_id":"u1","amount":12.5,"country":"DE","merchant":"m9"},"headers":{"channel":"web"}}"#,
        "",
        "# a comment",
        r#"{"timestamp_ms":1700000000000,"value":{"amount":3}}"#,
        "this is not json",
        r#"{"value":{"user_id":"u1"}}"#,
        r#"{"timestamp_ms":1700003600000,"value_text":"{\"user_id\":\"u2\",\"amount\":1,\"country\":\"FR\",\"merchant\":\"m\"}"}"#,
    ]);
    let out =
        wafer().args(["run", "--transform", guests::RUST_CARD_TXN, "--events"]).arg(events.path()).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "some events failed\n{stderr}");
    let rows: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["line"], 1);
    assert_eq!(rows[0]["features"]["channel"], "web");
    assert_eq!(rows[1]["line"], 7);
    assert_eq!(rows[1]["entity_key"], "u2");
    let errs: Vec<&str> = stderr.lines().filter(|l| l.starts_with("line ")).collect();
    assert_eq!(errs.len(), 3, "{stderr}");
    assert!(errs[0].starts_with("line 4: bad input: missing field `user_id`"), "{stderr}");
    assert!(errs[1].starts_with("line 5: invalid event line"), "{stderr}");
    assert!(errs[2].starts_with("line 6: invalid event line: missing `timestamp_ms`"), "{stderr}");
}

#[test]
fn run_exits_zero_when_every_event_succeeds() {
    let events =
        write_events(&[r#"{"timestamp_ms":1,"value":{"user_id":"u1","amount":1,"country":"DE","merchant":"m"}}"#]);
    let out =
        wafer().args(["run", "--transform", guests::RUST_CARD_TXN, "--events"]).arg(events.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn run_refuses_an_invalid_component_with_exit_code_2() {
    let events = write_events(&[]);
    let out =
        wafer().args(["run", "--transform", guests::FORBIDDEN_IMPORT, "--events"]).arg(events.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("acme:evil/net@0.1.0"));
}

#[test]
fn inspect_shows_world_schema_and_imports() {
    let out = wafer().args(["inspect", "--json", guests::RUST_TXN_RISK]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["world"], "wafer:transform/request-transform@0.1.0");
    assert_eq!(j["name"], "txn_risk");
    assert_eq!(j["params"][0]["name"], "amount");
    assert_eq!(j["reads"][2], "user_stats:last_country");
    assert!(j["imports"].as_array().unwrap().iter().any(|i| i.as_str().unwrap().starts_with("wasi:cli/stdout")));
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["inspect", "--help"],
        &["serve", "--help"],
        &["dev", "--help"],
        &["materialize", "--help"],
        &["deploy", "--help"],
        &["tenants", "--help"],
        &["views", "--help"],
    ] {
        let out = wafer().args(args).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Usage:"), "{args:?}: {text}");
    }
}

#[test]
fn a_missing_manifest_is_said_once_with_what_the_command_needs() {
    let dir = tempfile::tempdir().unwrap();
    let out = wafer().args(["serve", "--config", "nope.toml"]).current_dir(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "error: wafer serve needs a manifest (--config FILE, default wafer.toml; see README.md): \
         reading nope.toml: No such file or directory (os error 2)\n"
    );
    // `wafer dev` outside the repository.
    let out = wafer().arg("dev").current_dir(dir.path()).output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("run it from the repository's root"), "{stderr}");
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "{stderr}");
}

#[test]
fn inspect_names_the_bytes_a_non_wasm_file_starts_with_in_hex() {
    let f = write_events(&["#!/bin/sh"]);
    let out = wafer().arg("inspect").arg(f.path()).output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("does not start with the Wasm magic bytes 00 61 73 6d (found 23 21 2f 62)"), "{stderr}");
}

