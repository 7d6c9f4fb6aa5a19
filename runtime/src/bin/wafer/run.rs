//! `wafer run`: a stream transform over a JSONL file of events (request transforms: run_request.rs).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use wafer_runtime::events::{is_blank, parse_line};
use wafer_runtime::transform::json_out::row_to_json;
use wafer_runtime::{Event, WorldKind};

use crate::SandboxArgs;

#[derive(Args)]
pub struct RunArgs {
    /// The transform component (.wasm): a stream transform, or a request transform (then each
    /// line is a request input, see below).
    #[arg(long, value_name = "FILE")]
    transform: PathBuf,
    /// JSONL file of events, or of request inputs for a request transform ("-" for stdin).
    #[arg(long, value_name = "FILE")]
    events: PathBuf,
    /// Events per call into the transform.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=65536))]
    batch_size: u32,
    /// Topic name for events that do not set one.
    #[arg(long, default_value = "events")]
    topic: String,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let loader = args.sandbox.loader()?;
    let transform = crate::progress::load_transform(&loader, &args.transform, args.sandbox.limits())
        .with_context(|| format!("loading {}", args.transform.display()))?;
    let reader: Box<dyn BufRead> = if args.events.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin().lock()))
    } else {
        Box::new(BufReader::new(
            File::open(&args.events).with_context(|| format!("opening {}", args.events.display()))?,
        ))
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if transform.kind() == WorldKind::Request {
        return crate::run_request::run(&transform, reader, &mut out);
    }
    let mut worker =
        transform.stream_worker().with_context(|| format!("{} cannot be run over events", args.transform.display()))?;
    let batch_size = args.batch_size as usize;
    let mut batch: Vec<Event> = Vec::with_capacity(batch_size);
    let mut lines: Vec<usize> = Vec::with_capacity(batch_size);
    let (mut ok, mut failed, mut rows) = (0u64, 0u64, 0u64);
    let mut flush = |batch: &mut Vec<Event>, lines: &mut Vec<usize>, out: &mut BufWriter<_>| -> Result<()> {
        for (result, line) in worker.process(batch).into_iter().zip(lines.iter()) {
            match result {
                Ok(r) => {
                    ok += 1;
                    for row in &r {
                        rows += 1;
                        let mut j = row_to_json(row);
                        j["line"] = (*line).into();
                        serde_json::to_writer(&mut *out, &j)?;
                        out.write_all(b"\n")?;
                    }
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("line {line}: {} [{}]", e, e.code());
                }
            }
        }
        batch.clear();
        lines.clear();
        Ok(())
    };
    let mut n_events = 0i64;
    let mut invalid = 0u64;
    for (i, line) in reader.lines().enumerate() {
        let line_no = i + 1;
        let line = line.with_context(|| format!("reading line {line_no}"))?;
        if is_blank(&line) {
            continue;
        }
        match parse_line(&line, &args.topic, n_events) {
            Ok(ev) => {
                batch.push(ev);
                lines.push(line_no);
            }
            Err(e) => {
                // Report in line order: finish the events before this line first.
                flush(&mut batch, &mut lines, &mut out)?;
                invalid += 1;
                eprintln!("line {line_no}: invalid event line: {e} [invalid_event]");
            }
        }
        n_events += 1;
        if batch.len() >= batch_size {
            flush(&mut batch, &mut lines, &mut out)?;
        }
    }
    flush(&mut batch, &mut lines, &mut out)?;
    failed += invalid;
    out.flush()?;
    eprintln!("{} events: {ok} ok, {failed} failed, {rows} rows", ok + failed);
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
