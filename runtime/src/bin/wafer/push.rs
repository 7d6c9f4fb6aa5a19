//! `wafer push VIEW FILE`: a JSONL file of events (the `wafer run` format) pushed to a stream
//! view of a running server, `POST /v1/views/{view}/events` with `{"events": [...]}`, in chunks the
//! server accepts. Prints what was accepted, each failed event with its index and code, and the
//! new entities the tenant's store quota kept out.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Args;
use serde_json::Value as Json;
use wafer_runtime::events::is_blank;

use crate::client::{Client, Credential, Server};

/// The server's default `push_events` quota: events in one request.
const DEFAULT_CHUNK_EVENTS: u64 = 10_000;
/// Request bodies stay below the server's 16 MiB body limit.
const MAX_CHUNK_BYTES: usize = 15 << 20;

#[derive(Args)]
pub struct PushArgs {
    #[command(flatten)]
    server: Server,
    /// Tenant API key (registry mode; a manifest-mode server needs none).
    #[arg(long, env = "WAFER_API_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Events per request: at most the tenant's `push_events` quota.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CHUNK_EVENTS,
          value_parser = clap::value_parser!(u64).range(1..))]
    chunk_size: u64,
    /// The stream view.
    view: String,
    /// JSONL file of events ("-" for stdin).
    file: PathBuf,
}

/// One event of the file, with where it came from.
struct Item {
    /// 0-based position among the file's events (blank and `#` lines are not events).
    index: usize,
    /// 1-based line number.
    line: usize,
    /// The event object's compact JSON text.
    json: String,
}

/// One event the server (or the file) refused.
struct Failure {
    index: usize,
    line: usize,
    code: String,
    error: String,
}

/// What a push has done so far.
#[derive(Default)]
struct Tally {
    /// Events read from the file.
    events: usize,
    accepted: u64,
    rows: u64,
    requests: usize,
    failures: Vec<Failure>,
    /// Entities the server did not create (the tenant's store quota), over all requests.
    refused: u64,
}

impl Tally {
    /// Print the failures in file order (`line N (event I): error [code]`) on stderr.
    fn print_failures(&mut self) {
        self.failures.sort_by_key(|f| f.index);
        for f in &self.failures {
            eprintln!("line {} (event {}): {} [{}]", f.line, f.index, f.error, f.code);
        }
    }

    /// `view `txn`: 4 accepted (4 rows), 1 failed (5 events, 1 request)`, and the entities the
    /// store quota kept out, if any.
    fn summary(&self, view: &str) -> String {
        let failed = self.failures.len();
        let mut s = format!(
            "view `{view}`: {} accepted ({} rows), {failed} failed ({} events, {} request{})",
            self.accepted,
            self.rows,
            self.accepted as usize + failed,
            self.requests,
            if self.requests == 1 { "" } else { "s" },
        );
        if self.refused > 0 {
            s.push_str(&format!("; {} new entities not stored (store quota)", self.refused));
        }
        s
    }
}

/// Exit code 0 when every event was accepted and stored, 1 when some failed (or new entities were
/// not stored: the store quota), 2 when the push could not be completed (file unreadable, server
/// unreachable, a request refused as a whole).
pub fn push(a: PushArgs) -> Result<ExitCode> {
    let reader: Box<dyn BufRead> = if a.file.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin().lock()))
    } else {
        Box::new(BufReader::new(std::fs::File::open(&a.file).with_context(|| format!("opening {}", a.file.display()))?))
    };
    let client = Client::new(&a.server, a.key, Credential::ApiKey)?;
    let mut tally = Tally::default();
    let mut chunk = Chunk::default();
    for (i, line) in reader.lines().enumerate() {
        let line_no = i + 1;
        let line = line.with_context(|| format!("reading line {line_no}"))?;
        if is_blank(&line) {
            continue;
        }
        let index = tally.events;
        tally.events += 1;
        match serde_json::from_str::<Json>(&line) {
            Ok(event) => {
                let json = event.to_string();
                if !chunk.items.is_empty() && chunk.bytes + json.len() > MAX_CHUNK_BYTES {
                    send(&client, &a.view, &mut chunk, &mut tally)?;
                }
                chunk.push(Item { index, line: line_no, json });
            }
            // The server would refuse it as `invalid_event` too; it is not sent.
            Err(e) => tally.failures.push(Failure {
                index,
                line: line_no,
                code: "invalid_event".into(),
                error: format!("not valid JSON: {e}"),
            }),
        }
        if chunk.items.len() as u64 >= a.chunk_size {
            send(&client, &a.view, &mut chunk, &mut tally)?;
        }
    }
    if !chunk.items.is_empty() {
        send(&client, &a.view, &mut chunk, &mut tally)?;
    }
    tally.print_failures();
    println!("{}", tally.summary(&a.view));
    Ok(if tally.failures.is_empty() && tally.refused == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The events of the next request.
#[derive(Default)]
struct Chunk {
    items: Vec<Item>,
    /// Their JSON text's length.
    bytes: usize,
}

impl Chunk {
    fn push(&mut self, item: Item) {
        self.bytes += item.json.len() + 1;
        self.items.push(item);
    }
}

/// Push one chunk and tally its answer. A request refused as a whole stops the push (what the
/// requests before it applied stays applied), saying how far it got.
fn send(client: &Client, view: &str, chunk: &mut Chunk, tally: &mut Tally) -> Result<()> {
    let items = std::mem::take(&mut chunk.items);
    chunk.bytes = 0;
    let resp = client.call("POST", &format!("/v1/views/{view}/events"), "application/json", chunk_body(&items))?;
    let Some(answer) = resp.json().filter(|_| resp.status.is_success()) else {
        tally.print_failures();
        bail!(
            "{}\nthe events from line {} on were not pushed; before them, {}",
            resp.refusal(client.credential()),
            items[0].line,
            tally.summary(view)
        );
    };
    tally.requests += 1;
    tally.accepted += answer["accepted"].as_u64().unwrap_or(0);
    tally.rows += answer["rows"].as_u64().unwrap_or(0);
    // The tenant's store quota kept new entities out (their events were accepted).
    if let Some(refused) = answer.get("refused") {
        tally.refused += refused["entities"].as_u64().unwrap_or(0);
        let (error, code) = (refused["error"].as_str().unwrap_or(""), refused["code"].as_str().unwrap_or("unknown"));
        eprintln!("not stored: {error} [{code}]");
    }
    for f in answer["failed"].as_array().into_iter().flatten() {
        // The server's index is the event's position in this request.
        let Some(item) = f["index"].as_u64().and_then(|i| items.get(i as usize)) else { continue };
        tally.failures.push(Failure {
            index: item.index,
            line: item.line,
            code: f["code"].as_str().unwrap_or("unknown").to_owned(),
            error: f["error"].as_str().unwrap_or("").to_owned(),
        });
    }
    Ok(())
}

/// `{"events": [...]}` of a chunk's events.
fn chunk_body(chunk: &[Item]) -> Bytes {
    let mut body = String::with_capacity(chunk.iter().map(|i| i.json.len() + 1).sum::<usize>() + 16);
    body.push_str("{\"events\":[");
    for (i, item) in chunk.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&item.json);
    }
    body.push_str("]}");
    Bytes::from(body)
}
