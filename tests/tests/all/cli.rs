//! The `wafer` command line: `run`, `inspect`, `push`, talking to a server (credentials), errors
//! said once, logs, and every flag the docs mention checked against `--help`.

use std::process::Command;

use serde_json::json;

use crate::support::{RedisServer, Wafer, free_port, guests, now_ms, post_with, target_dir, wafer_bin};

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
        &["push", "--help"],
    ] {
        let out = wafer().args(args).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Usage:"), "{args:?}: {text}");
    }
}

/// The subcommands a `--help` text lists under `Commands:` (without `help`).
fn subcommands_in(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// The code a Markdown text shows, with its line numbers: each line of a fenced block (a trailing
/// `\` joins the next line; a shell comment is cut), and each inline code span elsewhere.
fn code_segments(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    let mut continued: Option<(usize, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            let code = line.split(" #").next().unwrap_or("");
            let (start, mut text) = continued.take().unwrap_or((i + 1, String::new()));
            text.push_str(code.trim_end().trim_end_matches('\\'));
            text.push(' ');
            if code.trim_end().ends_with('\\') {
                continued = Some((start, text));
            } else {
                out.push((start, text));
            }
        } else {
            out.extend(line.split('`').skip(1).step_by(2).map(|span| (i + 1, span.to_owned())));
        }
    }
    out
}

/// Each `wafer <words…>` invocation in a piece of code: its words (up to the next `wafer `, `;`
/// or `&&`), where `wafer` is a word of its own or a path's last part (`./target/release/wafer`).
fn invocations(code: &str) -> Vec<Vec<&str>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("wafer ") {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + "wafer ".len()..];
        rest = after;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_' || c == '.') {
            continue;
        }
        let end = ["wafer ", ";", "&&"].iter().filter_map(|s| after.find(s)).min().unwrap_or(after.len());
        out.push(after[..end].split_whitespace().collect());
    }
    out
}

/// The `--flag` names among an invocation's words (`[--from file]` → `--from`, `--x=1` → `--x`).
fn flags<'a>(words: &[&'a str]) -> Vec<&'a str> {
    words
        .iter()
        .map(|w| w.trim_start_matches(['[', '(']))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            let end = w[2..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).map_or(w.len(), |i| i + 2);
            &w[..end]
        })
        .collect()
}

/// Whether a `--help` text lists `flag` (exactly: `--config` is not `--config-dir`).
fn help_lists(help: &str, flag: &str) -> bool {
    help.match_indices(flag)
        .any(|(i, _)| help[i + flag.len()..].chars().next().is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-')))
}

fn markdown_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            markdown_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
}

#[test]
fn every_flag_the_docs_mention_is_in_its_commands_help() {
    let root = std::path::Path::new(guests::WAFER_ROOT);
    let mut files = vec![root.join("README.md"), root.join("runtime/src/bin/wafer/templates/common/README.md")];
    markdown_files(&root.join("docs"), &mut files);
    let mut helps: std::collections::HashMap<Vec<String>, String> = std::collections::HashMap::new();
    let mut help = |command: &[&str]| -> String {
        let key: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        helps
            .entry(key)
            .or_insert_with(|| {
                let out = wafer().args(command).arg("--help").output().unwrap();
                assert!(out.status.success(), "wafer {command:?} --help");
                String::from_utf8(out.stdout).unwrap()
            })
            .clone()
    };
    let commands = subcommands_in(&help(&[]));
    assert!(commands.iter().any(|c| c == "serve") && commands.iter().any(|c| c == "push"), "{commands:?}");
    let (mut checked, mut wrong) = (0, Vec::new());
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.strip_prefix(root).unwrap().display().to_string();
        for (line, code) in code_segments(&text) {
            for words in invocations(&code) {
                let Some(&command) = words.first().filter(|w| commands.iter().any(|c| c == *w)) else { continue };
                // `wafer tenants create …`: the nested command's help, and its parent's.
                let nested = words.get(1).filter(|w| subcommands_in(&help(&[command])).iter().any(|c| c == *w));
                let mut texts = vec![help(&[command])];
                if let Some(&sub) = nested {
                    texts.push(help(&[command, sub]));
                }
                for flag in flags(&words) {
                    checked += 1;
                    if !texts.iter().any(|h| help_lists(h, flag)) {
                        wrong.push(format!("{name}:{line}: `wafer {}` has no {flag}", words.join(" ")));
                    }
                }
            }
        }
    }
    assert!(wrong.is_empty(), "flags the docs mention that the CLI does not have:\n{}", wrong.join("\n"));
    assert!(checked >= 30, "only {checked} flags found: the scan no longer sees the docs' commands");
}

#[test]
fn the_flag_scan_reads_code_blocks_spans_and_nested_commands() {
    let md = "Run `wafer serve --config x.toml` or `wafer-bench serving --worker-threads 2`.\n\
              ```sh\n\
              wafer training-data --config w.toml \\\n  --features a,b --out t.parquet   # or --full-names\n\
              ./target/release/wafer tenants create acme --quotas '{}' && wafer views list\n\
              ```\n";
    let mut found = Vec::new();
    for (line, code) in code_segments(md) {
        for words in invocations(&code) {
            let head: Vec<String> = words.iter().take(2).map(|w| w.to_string()).collect();
            let f: Vec<String> = flags(&words).into_iter().map(str::to_owned).collect();
            found.push((line, head, f));
        }
    }
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        found,
        vec![
            (1, strings(&["serve", "--config"]), strings(&["--config"])),
            (3, strings(&["training-data", "--config"]), strings(&["--config", "--features", "--out"])),
            (5, strings(&["tenants", "create"]), strings(&["--quotas"])),
            (5, strings(&["views", "list"]), vec![]),
        ]
    );
    assert!(help_lists("  --config <FILE>\n", "--config") && !help_lists("  --config-dir <DIR>\n", "--config"));
}

/// A manifest-mode node (embedded store, no keys) with view `txn` on the Rust card_txn guest.
fn manifest_node() -> (tempfile::TempDir, Wafer) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wafer.toml");
    std::fs::write(&config, txn_manifest()).unwrap();
    let node = Wafer::start(&config, free_port());
    (dir, node)
}

fn txn_manifest() -> String {
    format!(
        "[server]\ntenant = \"t\"\n[[stream_view]]\nname = \"txn\"\nentity = \"user\"\ntransform = \"{}\"\n\
         features = [\"country\"]\n[[stream_view.aggregations]]\ncolumn = \"amount\"\nfunctions = [\"count\"]\n\
         windows = [\"lifetime\"]\n",
        guests::RUST_CARD_TXN
    )
}

fn txn_event(ts: i64, user: &str) -> String {
    json!({"timestamp_ms": ts, "value": {"user_id": user, "amount": 1.5, "country": "DE", "merchant": "m"}}).to_string()
}

fn count_lifetime(port: u16, user: &str, key: Option<&str>) -> serde_json::Value {
    let auth = key.map(|k| format!("authorization: Bearer {k}"));
    let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
    let (code, body) = post_with(
        port,
        "/v1/features",
        &json!({"view": "txn", "entities": [user], "features": ["amount_count_lifetime"]}),
        &headers,
    );
    assert_eq!(code, 200, "{body}");
    body["results"][0]["features"]["amount_count_lifetime"]["value"].clone()
}

#[test]
fn push_sends_a_file_in_chunks_and_reports_each_failure() {
    let (_dir, node) = manifest_node();
    let now = now_ms();
    // 10,002 events: more than one request may hold (the `push_events` quota, 10,000), two of
    // them bad, with a blank line and a comment that are not events.
    let mut lines = vec!["# card transactions".to_string(), String::new()];
    for i in 0..10_000 {
        lines.push(txn_event(now - i, if i % 2 == 0 { "u1" } else { "u2" }));
    }
    lines.push("{not json".into());
    lines.push(json!({"timestamp_ms": now, "value": {"amount": 3}}).to_string());
    let file = write_events(&lines.iter().map(String::as_str).collect::<Vec<_>>());
    let server = format!("http://127.0.0.1:{}", node.port);
    let out = wafer().args(["push", "txn"]).arg(file.path()).args(["--server", &server]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    assert_eq!(out.status.code(), Some(1), "some events failed\n{stderr}");
    assert_eq!(stdout, "view `txn`: 10000 accepted (10000 rows), 2 failed (10002 events, 2 requests)\n");
    let failures: Vec<&str> = stderr.lines().collect();
    assert_eq!(failures.len(), 2, "{stderr}");
    assert!(
        failures[0].starts_with("line 10003 (event 10000): not valid JSON: ")
            && failures[0].ends_with(" [invalid_event]")
    );
    assert!(failures[1].starts_with("line 10004 (event 10001): bad input: missing field `user_id`"), "{stderr}");
    assert!(failures[1].ends_with(" [bad_input]"), "{stderr}");
    // Readable when the push returns.
    assert_eq!(count_lifetime(node.port, "u1", None), 5000);
    assert_eq!(count_lifetime(node.port, "u2", None), 5000);

    // stdin, all accepted: exit 0.
    let mut child = wafer()
        .args(["push", "txn", "-", "--server", &server])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "{}", txn_event(now, "u3")).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "view `txn`: 1 accepted (1 rows), 0 failed (1 events, 1 request)\n"
    );
    assert_eq!(count_lifetime(node.port, "u3", None), 1);

    // A request refused as a whole stops the push: exit 2, naming the server's error.
    let out = wafer().args(["push", "nope"]).arg(file.path()).args(["--server", &server]).output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("error: HTTP 404 Not Found unknown_view: no stream view `nope`\n"), "{stderr}");
    assert!(stderr.contains("the events from line 3 on were not pushed"), "{stderr}");
    let out = wafer().args(["push", "txn", "--chunk-size", "0"]).arg(file.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "--chunk-size 0 is refused");
}

/// The docs' "Upload and serve" on a platform: tenant and key, deploy, view, push, read; and a
/// missing or wrong credential says where it comes from.
#[test]
fn deploy_view_push_and_read_on_a_platform_with_keys_from_the_environment() {
    const ADMIN: &str = "cli-test-admin-token-0123";
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("platform.toml");
    std::fs::write(&config, format!("[redis]\nurl = \"{}\"\n[control]\n", redis.url())).unwrap();
    let node = Wafer::start_with(&config, free_port(), &[("WAFER_ADMIN_TOKEN", ADMIN)]);
    let cli = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = wafer();
        c.env_remove("WAFER_API_KEY").env_remove("WAFER_ADMIN_TOKEN");
        c.env("WAFER_SERVER", format!("http://127.0.0.1:{}", node.port)).envs(env.iter().copied()).args(args);
        let out = c.current_dir(dir.path()).output().unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    let admin = [("WAFER_ADMIN_TOKEN", ADMIN)];
    let (code, _, err) = cli(&["tenants", "create", "acme", "--quotas", r#"{"max_stored_entities": 1}"#], &admin);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = cli(&["tenants", "key", "acme"], &admin);
    assert_eq!(code, Some(0), "{err}");
    let key = serde_json::from_str::<serde_json::Value>(&out).unwrap()["key"].as_str().unwrap().to_owned();
    let tenant = [("WAFER_API_KEY", key.as_str())];
    let (code, out, err) = cli(&["deploy", "--name", "card_txn", guests::RUST_CARD_TXN], &tenant);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("\"version\""), "{out}");
    std::fs::write(
        dir.path().join("txn.json"),
        json!({"kind": "stream", "entity": "user", "transform": "card_txn", "features": ["country"],
               "aggregations": [{"column": "amount", "functions": ["count"], "windows": ["lifetime"]}]})
        .to_string(),
    )
    .unwrap();
    let (code, _, err) = cli(&["views", "put", "txn", "txn.json"], &tenant);
    assert_eq!(code, Some(0), "{err}");
    std::fs::write(
        dir.path().join("events.jsonl"),
        format!("{}\n{}\n", txn_event(now_ms(), "u1"), txn_event(now_ms(), "u1")),
    )
    .unwrap();
    // The node picks the new view up within a registry poll.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (code, out, err) = loop {
        let r = cli(&["push", "txn", "events.jsonl"], &tenant);
        if r.0 == Some(0) || std::time::Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "view `txn`: 2 accepted (2 rows), 0 failed (2 events, 1 request)\n");
    assert_eq!(count_lifetime(node.port, "u1", Some(&key)), 2);
    // The tenant's store quota (one entity) keeps a new entity out: said, and exit 1.
    std::fs::write(dir.path().join("more.jsonl"), format!("{}\n", txn_event(now_ms(), "u2"))).unwrap();
    let (code, out, err) = cli(&["push", "txn", "more.jsonl"], &tenant);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.starts_with("not stored: ") && err.trim_end().ends_with("[store_quota_exceeded]"), "{err}");
    assert_eq!(
        out,
        "view `txn`: 1 accepted (1 rows), 0 failed (1 events, 1 request); 1 new entities not stored (store quota)\n"
    );

    // No key, a wrong key, no admin token: the error says where the credential comes from.
    let hint = "pass the tenant's API key with --key or set WAFER_API_KEY";
    let (code, _, err) = cli(&["views", "list"], &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("HTTP 401 Unauthorized missing_credentials: ") && err.contains(hint), "{err}");
    let (code, _, err) = cli(&["push", "txn", "events.jsonl", "--key", "wfr_wrong"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("HTTP 401 Unauthorized invalid_api_key: unknown API key; ") && err.contains(hint), "{err}");
    let (code, _, err) = cli(&["tenants", "list"], &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("pass the operator's token with --admin-token or set WAFER_ADMIN_TOKEN"), "{err}");
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

#[test]
fn the_first_load_of_a_component_says_it_is_compiling_once_in_plain_text() {
    let cache = tempfile::tempdir().unwrap();
    let events = write_events(&[&txn_event(1, "u1")]);
    let run = || {
        let out = wafer()
            .env("WAFER_CACHE_DIR", cache.path())
            .args(["run", "--transform", guests::RUST_CARD_TXN, "--events"])
            .arg(events.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8(out.stderr).unwrap()
    };
    let first = run();
    let compiling: Vec<&str> = first.lines().filter(|l| l.starts_with("compiling ")).collect();
    assert_eq!(compiling.len(), 1, "{first}");
    assert!(compiling[0].contains("card_txn.wasm") && compiling[0].ends_with("from the artifact cache..."), "{first}");
    assert!(!first.contains('\r') && !first.contains('\x1b'), "no spinner or colour on a pipe: {first:?}");
    let second = run();
    assert!(!second.contains("compiling"), "cached: {second}");
}

/// `wafer serve` with `--log-format` and its log on a pipe: (stderr, exit code) after SIGTERM.
fn serve_log(format: &str) -> (String, Option<i32>) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wafer.toml");
    std::fs::write(&config, txn_manifest()).unwrap();
    let port = free_port();
    let mut child = wafer()
        .args(["serve", "--log-format", format, "--listen", &format!("127.0.0.1:{port}"), "--config"])
        .arg(&config)
        .env("WAFER_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none(), "serve did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    (String::from_utf8(out.stderr).unwrap(), out.status.code())
}

#[test]
fn logs_on_a_pipe_are_plain_text_or_json_lines() {
    let (text, code) = serve_log("text");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("listening on http://") && text.contains("shutting down: draining connections"), "{text}");
    assert!(!text.contains('\x1b'), "no colour codes on a pipe: {text:?}");

    let (log, code) = serve_log("json");
    assert_eq!(code, Some(0), "{log}");
    let lines: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))).collect();
    let message = |m: &str| lines.iter().any(|l| l["fields"]["message"].as_str().is_some_and(|s| s.contains(m)));
    assert!(message("listening on http://") && message("shutting down: draining connections"), "{log}");
    assert!(lines.iter().all(|l| l["level"].is_string() && l["timestamp"].is_string()), "{log}");
}
