//! Wall-clock time: nanoseconds since the Unix epoch, as stored in records,
//! their RFC 3339 rendering in UTC for listings, and parsing of the same
//! form (for `--at TIME`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in nanoseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Renders `ns` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let millis = (ns % 1_000_000_000) / 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Parses `YYYY-MM-DDTHH:MM[:SS[.fraction]]Z` (a space may replace the T,
/// the Z may be left out: times are UTC) into nanoseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let s = s.trim().trim_end_matches(['Z', 'z']);
    let (date, time) = s.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (clock, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = clock.splitn(3, ':').map(|p| p.parse::<u64>().ok());
    let (hh, mm) = (t.next()??, t.next()??);
    let ss = t.next().unwrap_or(Some(0))?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos = format!("{frac:0<9}").parse::<u64>().ok()?;
    let days = days_from_civil(y, m as u32, day as u32);
    let secs = days.checked_mul(86_400)? + (hh * 3600 + mm * 60 + ss) as i64;
    u64::try_from(secs)
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(nanos)
}

/// A proleptic Gregorian date to days since 1970-01-01 (the inverse of
/// `civil_from_days`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = y - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`, public domain algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_render() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 12:34:56.789 UTC, a leap day in a century leap year.
        assert_eq!(rfc3339(951_827_696_789_000_000), "2000-02-29T12:34:56.789Z");
        // 2026-11-23 00:00:00 UTC.
        assert_eq!(
            rfc3339(1_795_392_000 * 1_000_000_000),
            "2026-11-23T00:00:00.000Z"
        );
    }

    #[test]
    fn rendered_times_parse_back() {
        for ns in [
            0,
            951_827_696_789_000_000,
            1_795_392_000 * 1_000_000_000 + 5,
        ] {
            let ms = ns / 1_000_000 * 1_000_000;
            assert_eq!(parse_rfc3339(&rfc3339(ns)), Some(ms));
        }
        assert_eq!(
            parse_rfc3339("2026-11-23 04:33"),
            Some((1_795_392_000 + 4 * 3600 + 33 * 60) * 1_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("2026-11-23T00:00:00.5Z"),
            Some(1_795_392_000_500_000_000)
        );
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00Z",
            "2026-11-23",
            "2026-11-23T25:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
