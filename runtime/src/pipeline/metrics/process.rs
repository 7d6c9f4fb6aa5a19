//! The process's own metrics in the standard Prometheus names (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`,
//! `process_max_fds`, `process_threads`, `process_start_time_seconds`), read from `/proc/self`
//! when scraped. Where `/proc` cannot be read (not Linux), the families are left out.

use std::fmt::Write as _;

/// What `/proc/self/stat` says about this process (times in clock ticks, memory in pages).
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    utime: u64,
    stime: u64,
    threads: u64,
    /// Ticks after boot at which the process started.
    start: u64,
    vsize_bytes: u64,
    rss_pages: u64,
}

/// Parse `/proc/self/stat` (proc(5)): fields after the command name, which is in parentheses
/// and may itself hold spaces and parentheses, so the fields start after the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    // rest[0] is field 3 (state); field n is rest[n - 3].
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        threads: field(20)?,
        start: field(22)?,
        vsize_bytes: field(23)?,
        rss_pages: field(24)?,
    })
}

/// The boot time (`btime`, seconds since the epoch) from `/proc/stat`.
fn parse_btime(text: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|v| *v > 0)
}

/// The soft limit on open file descriptors.
fn max_fds() -> Option<u64> {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct it is given.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } == 0).then_some(l.rlim_cur)
}

fn family(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
}

/// Append the process families to `out`.
pub fn render(out: &mut String) {
    let Some(stat) = std::fs::read_to_string("/proc/self/stat").ok().and_then(|t| parse_stat(&t)) else { return };
    let ticks = sysconf(libc::_SC_CLK_TCK).unwrap_or(100) as f64;
    let page = sysconf(libc::_SC_PAGESIZE).unwrap_or(4096);
    let cpu = (stat.utime + stat.stime) as f64 / ticks;
    family(out, "process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.", cpu);
    let rss = (stat.rss_pages * page) as f64;
    family(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", rss);
    let vsize = stat.vsize_bytes as f64;
    family(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", vsize);
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        // The directory handle being read is one of them.
        let open = fds.count().saturating_sub(1) as f64;
        family(out, "process_open_fds", "gauge", "Number of open file descriptors.", open);
    }
    if let Some(max) = max_fds() {
        family(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.", max as f64);
    }
    family(out, "process_threads", "gauge", "Number of OS threads in the process.", stat.threads as f64);
    if let Some(btime) = std::fs::read_to_string("/proc/stat").ok().and_then(|t| parse_btime(&t)) {
        let start = btime as f64 + stat.start as f64 / ticks;
        family(out, "process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch.", start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        // A command name with spaces and parentheses; fields 14, 15, 20, 22, 23, 24 are
        // 1413, 201, 9, 88012, 1234567168, 5120.
        let text = "4242 (wafer (dev) x) S 1 4242 4242 0 -1 4194560 3000 0 0 0 1413 201 0 0 20 0 9 0 \
                    88012 1234567168 5120 18446744073709551615 1 1 0 0 0 0 0 4096 17922 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                utime: 1413,
                stime: 201,
                threads: 9,
                start: 88012,
                vsize_bytes: 1_234_567_168,
                rss_pages: 5120
            })
        );
        assert_eq!(parse_stat("4242 (truncated) S 1"), None);
        assert_eq!(parse_btime("cpu  1 2 3\nbtime 1764633600\nprocesses 9\n"), Some(1_764_633_600));
    }

    #[test]
    fn this_process_is_rendered() {
        let mut out = String::new();
        render(&mut out);
        let value = |name: &str| -> f64 {
            let prefix = format!("{name} ");
            out.lines().find_map(|l| l.strip_prefix(&prefix)?.parse().ok()).unwrap_or_else(|| panic!("{name}:\n{out}"))
        };
        assert!(value("process_resident_memory_bytes") > 0.0);
        assert!(value("process_open_fds") >= 1.0);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let started = value("process_start_time_seconds");
        assert!(started <= now + 1.0 && started > now - 86_400.0, "started {started}, now {now}");
        assert!(value("process_cpu_seconds_total") >= 0.0);
        assert!(value("process_threads") >= 1.0);
    }
}
