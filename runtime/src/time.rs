//! Time: the wall clock in ms ([`now_ms`]), durations as text ([`parse_duration_ms`], the one
//! parser of TTLs, cooldowns and windows) and timestamps as text (RFC 3339 UTC formatting and
//! parsing, without a calendar dependency).

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A duration in a manifest or view that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a duration (e.g. 500ms, 30s, 15m, 1h, 7d, 1h30m): {reason}")]
pub struct DurationError {
    pub text: String,
    pub reason: String,
}

/// Parse a duration in humantime's syntax (`500ms`, `30s`, `15m`, `1h`, `7d`, `1h30m`; `m` is
/// minutes) into milliseconds. Zero, sub-millisecond and out-of-range durations are refused.
pub fn parse_duration_ms(text: &str) -> Result<i64, DurationError> {
    let err = |reason: String| DurationError { text: text.to_string(), reason };
    let d = humantime::parse_duration(text.trim()).map_err(|e| err(e.to_string()))?;
    let ms = i64::try_from(d.as_millis()).map_err(|_| err("too long".into()))?;
    if ms == 0 {
        return Err(err("must be at least 1ms".into()));
    }
    Ok(ms)
}

/// Days since 1970-01-01 → (year, month, day) (proleptic Gregorian; H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `ms` since the epoch as RFC 3339 UTC: `2024-05-01T12:00:00Z` (with `.mmm` when not whole seconds).
pub fn format_rfc3339(ms: i64) -> String {
    let mut out = Vec::with_capacity(24);
    write_rfc3339(&mut out, ms);
    String::from_utf8(out).unwrap_or_default()
}

/// [`format_rfc3339`], appended to `out` without an intermediate string.
///
/// Serving writes one per value (Feast's `event_timestamps`), so years 0–9999 are written digit by
/// digit; `write!` formatting cost ten times as much. Other years go through `write!`.
pub fn write_rfc3339(out: &mut Vec<u8>, ms: i64) {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    if !(0..=9999).contains(&y) {
        use std::io::Write as _;
        let _ = if milli == 0 {
            write!(out, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
        } else {
            write!(out, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
        };
        return;
    }
    let mut b = *b"0000-00-00T00:00:00.000Z";
    put_digits(&mut b[0..4], y as u32);
    put_digits(&mut b[5..7], mo);
    put_digits(&mut b[8..10], d);
    put_digits(&mut b[11..13], h as u32);
    put_digits(&mut b[14..16], mi as u32);
    put_digits(&mut b[17..19], s as u32);
    if milli == 0 {
        out.extend_from_slice(&b[..19]);
        out.push(b'Z');
    } else {
        put_digits(&mut b[20..23], milli as u32);
        out.extend_from_slice(&b);
    }
}

/// `n`'s last `slot.len()` decimal digits into `slot`, zero-padded.
fn put_digits(slot: &mut [u8], mut n: u32) {
    for c in slot.iter_mut().rev() {
        *c = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Parse RFC 3339 / ISO 8601 (`2024-05-01T12:00:00Z`, `2024-05-01 12:00:00.5+02:00`,
/// `2024-05-01`) into ms since the epoch. Fractions beyond milliseconds are truncated.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)? as u32, num(8..10)? as u32);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut ms = days_from_civil(y, mo, d) * 86_400_000;
    if b.len() == 10 {
        return Some(ms);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    ms += h * 3_600_000 + mi * 60_000 + sec * 1000;
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &s[start..i.min(start + 3)];
        ms += frac.parse::<i64>().ok()? * 10_i64.pow(3 - frac.len() as u32);
    }
    match &s[i..] {
        "" | "Z" | "z" => Some(ms),
        off if off.len() == 6 && (off.starts_with('+') || off.starts_with('-')) && off.as_bytes()[3] == b':' => {
            let oh: i64 = off[1..3].parse().ok()?;
            let om: i64 = off[4..6].parse().ok()?;
            let delta = (oh * 60 + om) * 60_000;
            Some(if off.starts_with('+') { ms - delta } else { ms + delta })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for ms in [0, 1_714_564_800_000, 1_714_564_800_123, -86_400_000, 951_782_400_000] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Some(ms), "{}", format_rfc3339(ms));
        }
        assert_eq!(format_rfc3339(1_714_564_800_000), "2024-05-01T12:00:00Z");
        assert_eq!(format_rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(1_714_564_800_007), "2024-05-01T12:00:00.007Z");
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339(253_402_300_800_000), "10000-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339("2024-05-01T14:00:00.5+02:00"), Some(1_714_564_800_500));
        assert_eq!(parse_rfc3339("2024-05-01"), Some(1_714_521_600_000));
        assert_eq!(parse_rfc3339("2024-13-01"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn durations_parse_in_one_syntax() {
        let cases = [("500ms", 500), ("30s", 30_000), ("15m", 900_000), ("1h", 3_600_000), ("7d", 604_800_000)];
        for (text, ms) in cases {
            assert_eq!(parse_duration_ms(text), Ok(ms), "{text}");
        }
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        for bad in ["", "7", "0s", "10us", "soon", "-1h"] {
            let e = parse_duration_ms(bad).unwrap_err();
            assert!(e.to_string().contains("is not a duration"), "{bad}: {e}");
        }
    }
}
