//! Which files hold an event history: `--events` may name a file, a directory (Hive-style
//! partitions such as `events/date=2026-11-01/part-0.parquet`) or a glob pattern, and partitions
//! that cannot hold an event the job could see are not read.
//!
//! - A **directory** stands for every `.parquet`, `.jsonl`, `.ndjson` and `.json` file below it,
//!   at any depth (hidden entries and names starting with `_`, such as Spark's `_SUCCESS`, are
//!   skipped), in path order.
//! - A **glob** (`*`, `?`, `[...]`, `**`) stands for the files it matches, in path order.
//! - **Partition pruning**: a path component `date=YYYY-MM-DD` (also `dt=` and `day=`), optionally
//!   refined by a later `hour=HH`, says every event of the file lies in that day (hour), UTC.
//!   A point-in-time job never sees an event later than its latest spine time, so files whose
//!   partition starts after it are skipped. Earlier partitions are all read (lifetime
//!   aggregations and TTLs reach back without bound). A file whose events do not match its
//!   partition's name gives wrong results only where the name lies, as in any Hive reader.

use std::path::{Path, PathBuf};

use crate::time::parse_rfc3339;

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

#[derive(Debug, thiserror::Error)]
pub enum EventPathError {
    #[error("event path {0}: no such file or directory, and not a glob pattern")]
    Missing(PathBuf),
    #[error("event pattern {pattern}: {message}")]
    Pattern { pattern: String, message: String },
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("event path {0}: no event files (.parquet, .jsonl, .ndjson, .json) found")]
    Empty(PathBuf),
}

/// The event files `arg` stands for (see the module doc).
pub fn expand(arg: &Path) -> Result<Vec<PathBuf>, EventPathError> {
    if arg.is_file() {
        return Ok(vec![arg.to_path_buf()]);
    }
    let mut files = Vec::new();
    if arg.is_dir() {
        walk(arg, &mut files)?;
    } else if is_pattern(arg) {
        let pattern = arg.to_string_lossy().into_owned();
        let matches = glob::glob(&pattern)
            .map_err(|e| EventPathError::Pattern { pattern: pattern.clone(), message: e.to_string() })?;
        for m in matches {
            let path = m.map_err(|e| EventPathError::Pattern { pattern: pattern.clone(), message: e.to_string() })?;
            if path.is_file() && is_event_file(&path) {
                files.push(path);
            }
        }
    } else {
        return Err(EventPathError::Missing(arg.to_path_buf()));
    }
    files.sort();
    if files.is_empty() {
        return Err(EventPathError::Empty(arg.to_path_buf()));
    }
    Ok(files)
}

fn is_pattern(p: &Path) -> bool {
    p.to_string_lossy().contains(['*', '?', '['])
}

fn is_event_file(p: &Path) -> bool {
    let visible = p.file_name().and_then(|n| n.to_str()).is_some_and(|n| !n.starts_with(['.', '_']));
    let ext = p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    visible && matches!(ext.as_deref(), Some("parquet" | "jsonl" | "ndjson" | "json"))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), EventPathError> {
    let io = |source| EventPathError::Io { path: dir.to_path_buf(), source };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let hidden = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(['.', '_']));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, out)?;
        } else if is_event_file(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// The start of the time range (ms, UTC) a Hive partition path promises its events lie in, if
/// it names one: `date=`/`dt=`/`day=` `YYYY-MM-DD`, plus `hour=HH` if a later component has it.
pub fn partition_start(path: &Path) -> Option<i64> {
    let mut start = None;
    for c in path.components() {
        let c = c.as_os_str().to_str()?;
        let Some((key, value)) = c.split_once('=') else { continue };
        match key {
            "date" | "dt" | "day" => start = parse_rfc3339(&format!("{value}T00:00:00Z")),
            "hour" | "hr" => {
                let h: i64 = value.parse().ok().filter(|h| (0..24).contains(h))?;
                start = start.map(|day: i64| day.div_euclid(DAY_MS) * DAY_MS + h * HOUR_MS);
            }
            _ => {}
        }
    }
    start
}

/// `files` without the partitions that start after `until` (the latest time the job reads at),
/// and how many were left out.
pub fn prune(files: Vec<PathBuf>, until: Option<i64>) -> (Vec<PathBuf>, usize) {
    let Some(until) = until else { return (files, 0) };
    let before = files.len();
    let kept: Vec<PathBuf> = files.into_iter().filter(|f| partition_start(f).is_none_or(|s| s <= until)).collect();
    let pruned = before - kept.len();
    (kept, pruned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_name_their_day_and_hour() {
        let d = |s: &str| partition_start(Path::new(s));
        let nov1 = 1_761_955_200_000; // 2025-11-01T00:00:00Z
        assert_eq!(d("ev/date=2025-11-01/part-0.parquet"), Some(nov1));
        assert_eq!(d("ev/dt=2025-11-01/hour=07/x.jsonl"), Some(nov1 + 7 * HOUR_MS));
        assert_eq!(d("ev/region=eu/day=2025-11-01/x.parquet"), Some(nov1));
        assert_eq!(d("ev/x.parquet"), None);
        assert_eq!(d("ev/date=yesterday/x.parquet"), None);
        let files = ["a/date=2025-11-01/x.parquet", "a/date=2025-11-02/x.parquet", "a/other.parquet"]
            .map(PathBuf::from)
            .to_vec();
        let (kept, pruned) = prune(files.clone(), Some(nov1 + DAY_MS - 1));
        assert_eq!((kept, pruned), (vec![files[0].clone(), files[2].clone()], 1));
        assert_eq!(prune(files.clone(), Some(nov1 + DAY_MS)).1, 0, "a partition starting at the read time is read");
        assert_eq!(prune(files, None).1, 0);
    }

    #[test]
    fn directories_and_globs_expand_to_event_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["date=2025-11-02/b.parquet", "date=2025-11-01/a.jsonl", "date=2025-11-01/_SUCCESS", ".hidden/x.jsonl"]
        {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "").unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), "").unwrap();
        let names = |v: Vec<PathBuf>| {
            v.iter().map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string()).collect::<Vec<_>>()
        };
        assert_eq!(names(expand(dir.path()).unwrap()), ["date=2025-11-01/a.jsonl", "date=2025-11-02/b.parquet"]);
        assert_eq!(names(expand(&dir.path().join("*/*.parquet")).unwrap()), ["date=2025-11-02/b.parquet"]);
        assert!(matches!(expand(&dir.path().join("nope.jsonl")), Err(EventPathError::Missing(_))));
        assert!(matches!(expand(&dir.path().join("*.csv")), Err(EventPathError::Empty(_))));
    }
}
