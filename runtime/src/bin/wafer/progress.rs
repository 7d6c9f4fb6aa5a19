//! Saying what a slow step is doing, on stderr: a spinner with the elapsed time when stderr is a
//! terminal, else one plain line (a status line: JSON when the log is). Loading a component that
//! is not in the artifact cache compiles it to native code, which takes 10–20 s for a Python
//! component: [`load_transform`] says so instead of staying silent.

use std::path::Path;
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use wafer_runtime::{Limits, LoadError, Loader, Transform};

/// A slow step being shown; the spinner (if any) is cleared when it is dropped.
pub struct Activity {
    spinner: Option<ProgressBar>,
}

impl Drop for Activity {
    fn drop(&mut self) {
        if let Some(s) = &self.spinner {
            s.finish_and_clear();
        }
    }
}

/// Start showing `message`.
pub fn start(message: String) -> Activity {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        crate::log::status(format_args!("{message}..."));
        return Activity { spinner: None };
    }
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    spinner.set_message(message);
    spinner.enable_steady_tick(Duration::from_millis(100));
    Activity { spinner: Some(spinner) }
}

/// [`Loader::load_file`], saying that the component is being compiled when it is not in the
/// artifact cache.
pub fn load_transform(loader: &Loader, path: &Path, limits: Limits) -> Result<Transform, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read { path: path.to_owned(), source })?;
    let cached = loader.cache().is_some_and(|c| c.lookup(&hex::encode(Sha256::digest(&bytes))).is_some());
    let _activity = (!cached).then(|| {
        start(format!(
            "compiling {} ({}) to native code: the first load of a component takes a while \
             (a Python one 10-20 s); later loads come from the artifact cache",
            path.display(),
            HumanBytes(bytes.len() as u64)
        ))
    });
    loader.load(&bytes, limits)
}
