//! Where the CLI's logs go: `tracing` to stderr, filtered by `$WAFER_LOG` (default `info`), as
//! text (coloured only when stderr is a terminal) or, for `serve` and `dev` with
//! `--log-format json`, one JSON object per line. [`status`] prints the commands' own status
//! lines (listening, stopped) so that a JSON log stays all JSON.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::ValueEnum;

/// How log lines are written.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colour only on a terminal).
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`), for log collectors.
    Json,
}

/// Whether the log is JSON (then status lines are log events too).
static JSON: AtomicBool = AtomicBool::new(false);

/// Install the process's log subscriber.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WAFER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        // Colour only for a person at a terminal: log files, pipes and CI logs get plain text.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => {
            JSON.store(true, Ordering::Relaxed);
            builder.json().with_ansi(false).init();
        }
    }
}

/// A status line of a long-running command: plain text on stderr, or an `info` log event when
/// the log is JSON.
pub fn status(message: impl std::fmt::Display) {
    if JSON.load(Ordering::Relaxed) {
        tracing::info!(target: "wafer", "{message}");
    } else {
        eprintln!("{message}");
    }
}
