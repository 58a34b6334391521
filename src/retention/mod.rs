//! Retention: which sync points a volume keeps, and the state that prune
//! leaves behind.
//!
//! The policy ([`Retention`], the `[retention]` table of `lsvfs.toml`)
//! holds restic's rules ([`Keep`]), the pinned sync points and whether the
//! archiver prunes by itself. [`select`] applies the rules to a list of
//! sync points and says why each one is kept. [`forgotten`] is the durable
//! set of sync points that prune forgot; [`lease`] marks the sync points
//! whose views are open, which prune does not take away from under them.
//! The prune itself is [`crate::prune`].

pub mod forgotten;
pub mod lease;

use crate::disk::{Disk, FileIo, OpenMode};
use crate::error::{Error, Result, io};
use crate::log::catalog::SyncPoint;
use crate::policy::{POLICY_FILE, Policy, PolicyError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// The lock file that makes prune, pin, unpin and set take turns.
pub const LOCK_FILE: &str = "prune.lock";

/// The rules, as restic names them. A sync point is kept when any rule
/// keeps it; one no rule keeps is forgotten.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keep {
    /// The newest N.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<u32>,
    /// The newest of each of the last N hours that have sync points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly: Option<u32>,
    /// The newest of each of the last N days (UTC) that have sync points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<u32>,
    /// The newest of each of the last N weeks (Monday to Sunday, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<u32>,
    /// The newest of each of the last N calendar months (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly: Option<u32>,
    /// Every sync point at most this many seconds older than the newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_s: Option<u64>,
    /// Every sync point whose label matches one of these globs (`*` any
    /// text, `?` one character).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

impl Keep {
    /// Whether no rule is set: such a policy would forget everything, so
    /// prune refuses it.
    pub fn is_empty(&self) -> bool {
        *self == Keep::default()
    }

    /// The rules in `other` replace these one by one (a run's command-line
    /// flags over the volume's policy).
    pub fn overridden_by(&self, other: &Keep) -> Keep {
        Keep {
            last: other.last.or(self.last),
            hourly: other.hourly.or(self.hourly),
            daily: other.daily.or(self.daily),
            weekly: other.weekly.or(self.weekly),
            monthly: other.monthly.or(self.monthly),
            within_s: other.within_s.or(self.within_s),
            labels: match other.labels.is_empty() {
                true => self.labels.clone(),
                false => other.labels.clone(),
            },
        }
    }

    /// The rules as `lsvfs` flags, for messages and listings.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let counts = [
            ("last", self.last),
            ("hourly", self.hourly),
            ("daily", self.daily),
            ("weekly", self.weekly),
            ("monthly", self.monthly),
        ];
        for (name, n) in counts {
            if let Some(n) = n {
                parts.push(format!("--keep-{name} {n}"));
            }
        }
        if let Some(s) = self.within_s {
            parts.push(format!("--keep-within {}", format_duration(s)));
        }
        for l in &self.labels {
            parts.push(format!("--keep-label {l:?}"));
        }
        match parts.is_empty() {
            true => "none (keep everything)".into(),
            false => parts.join(" "),
        }
    }
}

/// The `[retention]` table of `lsvfs.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Prune by itself in the archiver, after each segment it stores.
    #[serde(default)]
    pub auto: bool,
    /// Sync points that are never pruned (`lsvfs pin`), ascending.
    #[serde(default)]
    pub pinned: Vec<u64>,
    #[serde(default)]
    pub keep: Keep,
}

impl Retention {
    /// One line: the rules, how prune runs, the pins.
    pub fn describe(&self) -> String {
        let pinned = match self.pinned.is_empty() {
            true => String::new(),
            false => format!(", pinned {:?}", self.pinned),
        };
        if self.keep.is_empty() {
            return format!("no rules, every sync point is kept{pinned}");
        }
        let auto = match self.auto {
            true => "pruned automatically",
            false => "pruned by `lsvfs prune`",
        };
        format!("keep {} ({auto}{pinned})", self.keep.describe())
    }

    /// Checks the rules; the message names the flag.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let invalid = |field: &'static str, reason: &str| PolicyError::Invalid {
            field,
            reason: reason.to_string(),
        };
        let k = &self.keep;
        let counts = [
            ("keep_last", k.last),
            ("keep_hourly", k.hourly),
            ("keep_daily", k.daily),
            ("keep_weekly", k.weekly),
            ("keep_monthly", k.monthly),
        ];
        for (field, n) in counts {
            if n == Some(0) {
                return Err(invalid(
                    field,
                    "must be at least 1 (leave it out to not use it)",
                ));
            }
        }
        if k.within_s == Some(0) {
            return Err(invalid("keep_within", "must be at least 1s"));
        }
        if k.labels.iter().any(|l| l.is_empty()) {
            return Err(invalid("keep_label", "a pattern must not be empty"));
        }
        if self.auto && k.is_empty() {
            return Err(invalid(
                "auto_prune",
                "needs a rule (--keep-last, --keep-hourly, ...): without one every sync point would be forgotten",
            ));
        }
        Ok(())
    }
}

/// Takes the retention lock of the volume in `dir`; with `wait`, waits
/// for the holder, else fails at once with [`Error::Locked`]. Released
/// when the file is dropped.
pub fn lock(disk: &dyn Disk, dir: &Path, wait: bool) -> Result<Box<dyn FileIo>> {
    let path = dir.join(LOCK_FILE);
    let ctx = format!("cannot lock {}", path.display());
    let file = disk
        .open(&path, OpenMode::Create)
        .map_err(io(ctx.clone()))?;
    let started = Instant::now();
    let mut told = false;
    while !file.try_lock().map_err(io(ctx.clone()))? {
        if !wait {
            return Err(Error::Locked {
                path: dir.to_path_buf(),
                holder: "a prune, pin or set".into(),
            });
        }
        if !told && started.elapsed() > Duration::from_secs(1) {
            log::warn!(
                "waiting for another prune, pin or set of {} to finish",
                dir.display()
            );
            told = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(file)
}

/// Changes the `[retention]` table of the volume in `dir` with `change`
/// (given the listed sync points), checks it and writes the policy file
/// again, durably, under the retention lock. A mounted volume's archiver
/// reads the table at each automatic prune.
pub fn update(
    disk: &dyn Disk,
    dir: &Path,
    mut change: impl FnMut(&mut Retention, &[SyncPoint]) -> Result<()>,
) -> Result<Retention> {
    crate::layout::check_volume(disk, dir)?;
    let mut changed = || -> Result<Policy> {
        let mut policy = Policy::load(disk, dir)?;
        let forgotten = forgotten::Forgotten::load(disk, dir)?;
        let points = crate::prune::listed(disk, dir, &forgotten)?;
        change(&mut policy.retention, &points)?;
        policy.retention.pinned.sort_unstable();
        policy.retention.pinned.dedup();
        policy.validate()?;
        Ok(policy)
    };
    // A change refused leaves the volume's files as they were, lock
    // file included; one accepted is decided again under the lock.
    changed()?;
    let _lock = lock(disk, dir, true)?;
    let policy = changed()?;
    crate::layout::write_durably(disk, &dir.join(POLICY_FILE), policy.to_toml().as_bytes())?;
    Ok(policy.retention)
}

/// Why a sync point is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    Pinned,
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Within,
    Label,
    /// A view of it is open (it stays until the view is closed).
    OpenView,
    /// A rollback under way needs it (its target, or the state before).
    Rollback,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::Pinned => "pinned",
            Reason::Last => "last",
            Reason::Hourly => "hourly",
            Reason::Daily => "daily",
            Reason::Weekly => "weekly",
            Reason::Monthly => "monthly",
            Reason::Within => "within",
            Reason::Label => "label",
            Reason::OpenView => "open-view",
            Reason::Rollback => "rollback",
        }
    }
}

/// Why each of `points` (oldest first, as listed) is kept, in the same
/// order; an empty list means it is forgotten. Rules as restic applies
/// them: walking from the newest, a bucket rule keeps a sync point when
/// its hour, day, week or month differs from that of the last one the rule
/// kept, until it has kept N; `within` counts back from the newest sync
/// point, not from now, so that a volume left alone keeps its history.
pub fn select(points: &[SyncPoint], keep: &Keep, pinned: &BTreeSet<u64>) -> Vec<Vec<Reason>> {
    type Bucket = fn(u64) -> i64;
    fn day(ns: u64) -> i64 {
        (ns / 86_400_000_000_000) as i64
    }
    let hour: Bucket = |ns| (ns / 3_600_000_000_000) as i64;
    // 1970-01-01 was a Thursday: +3 days puts week boundaries on Mondays.
    let week: Bucket = |ns| (day(ns) + 3).div_euclid(7);
    let month: Bucket = |ns| {
        let (y, m, _) = crate::time::civil_from_days(day(ns));
        y * 12 + m as i64
    };
    let mut rules: Vec<(Reason, u32, Bucket, Option<i64>)> = [
        (Reason::Hourly, keep.hourly, hour),
        (Reason::Daily, keep.daily, day),
        (Reason::Weekly, keep.weekly, week),
        (Reason::Monthly, keep.monthly, month),
    ]
    .into_iter()
    .filter_map(|(r, n, b)| n.map(|n| (r, n, b, None)))
    .collect();
    let mut last = keep.last.unwrap_or(0);
    let newest = points.iter().map(|p| p.info.time_ns).max().unwrap_or(0);
    let mut out = vec![Vec::new(); points.len()];
    for (i, p) in points.iter().enumerate().rev() {
        let reasons = &mut out[i];
        let t = p.info.time_ns;
        if pinned.contains(&p.info.id) {
            reasons.push(Reason::Pinned);
        }
        if last > 0 {
            last -= 1;
            reasons.push(Reason::Last);
        }
        for (reason, left, bucket, seen) in &mut rules {
            let b = bucket(t);
            if *left > 0 && *seen != Some(b) {
                *left -= 1;
                *seen = Some(b);
                reasons.push(*reason);
            }
        }
        if keep
            .within_s
            .is_some_and(|s| newest - t <= s.saturating_mul(1_000_000_000))
        {
            reasons.push(Reason::Within);
        }
        if keep.labels.iter().any(|g| glob(g, &p.info.label)) {
            reasons.push(Reason::Label);
        }
    }
    out
}

/// Whether `text` matches `pattern`: `*` is any text, `?` one character,
/// everything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Classic two-pointer match with backtracking to the last star.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// Parses a duration such as `90s`, `30m`, `12h`, `7d`, `2w`, `1y` or a sum
/// of them (`1d12h`), in seconds; a year is 365 days.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 90s, 30m, 12h, 7d, 2w, 1y, 1d12h)");
    let mut total: u64 = 0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let split = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (digits, tail) = rest.split_at(split);
        let unit = tail.chars().next().ok_or_else(bad)?;
        let scale: u64 = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            'y' => 365 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(scale)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        rest = &tail[1..];
    }
    match total {
        0 => Err(format!("{s:?}: a duration must be at least 1s")),
        t => Ok(t),
    }
}

/// Seconds in the largest units that divide them: `7d`, `36h`, `90s`.
pub fn format_duration(s: u64) -> String {
    for (unit, n) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if s >= n && s.is_multiple_of(n) {
            return format!("{}{unit}", s / n);
        }
    }
    format!("{s}s")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Lsn, SyncInfo};

    const H: u64 = 3_600_000_000_000;

    fn points(times_h: &[u64]) -> Vec<SyncPoint> {
        times_h
            .iter()
            .enumerate()
            .map(|(i, &h)| SyncPoint {
                lsn: Lsn { seq: 1, offset: 0 },
                info: SyncInfo {
                    id: i as u64 + 1,
                    time_ns: h * H + 60_000_000_000 * i as u64,
                    label: if i % 3 == 0 {
                        "release-1".into()
                    } else {
                        "auto".into()
                    },
                    requester: String::new(),
                },
            })
            .collect()
    }

    fn kept(points: &[SyncPoint], keep: &Keep, pinned: &[u64]) -> Vec<u64> {
        let pinned = pinned.iter().copied().collect();
        select(points, keep, &pinned)
            .iter()
            .zip(points)
            .filter(|(r, _)| !r.is_empty())
            .map(|(_, p)| p.info.id)
            .collect()
    }

    #[test]
    fn last_keeps_the_newest_and_pins_always_win() {
        let p = points(&[0, 1, 2, 3, 4]);
        let keep = Keep {
            last: Some(2),
            ..Keep::default()
        };
        assert_eq!(kept(&p, &keep, &[]), [4, 5]);
        assert_eq!(kept(&p, &keep, &[1]), [1, 4, 5]);
        assert_eq!(kept(&p, &Keep::default(), &[]), Vec::<u64>::new());
    }

    #[test]
    fn buckets_keep_the_newest_of_each_period_that_has_sync_points() {
        // Hours 0, 0, 1, 3, 3, 3 (two sync points in hour 0, three in 3).
        let p = points(&[0, 0, 1, 3, 3, 3]);
        let hourly = |n| Keep {
            hourly: Some(n),
            ..Keep::default()
        };
        assert_eq!(kept(&p, &hourly(2), &[]), [3, 6], "hours 3 and 1");
        assert_eq!(kept(&p, &hourly(9), &[]), [2, 3, 6], "every hour once");
        let daily = Keep {
            daily: Some(1),
            ..Keep::default()
        };
        assert_eq!(kept(&p, &daily, &[]), [6]);
        // Days 0..14: weekly keeps the newest of each Monday-to-Sunday
        // week; day 4 (1970-01-05) was the first Monday.
        let days: Vec<u64> = (0..14).map(|d| d * 24).collect();
        let weekly = Keep {
            weekly: Some(5),
            ..Keep::default()
        };
        assert_eq!(kept(&points(&days), &weekly, &[]), [4, 11, 14]);
        let months: Vec<u64> = [0, 20, 40, 60].iter().map(|d| d * 24).collect();
        let monthly = Keep {
            monthly: Some(2),
            ..Keep::default()
        };
        // Days 0, 20 (January), 40 (February), 60 (March).
        assert_eq!(kept(&points(&months), &monthly, &[]), [3, 4]);
    }

    #[test]
    fn within_counts_from_the_newest_and_labels_match_globs() {
        let p = points(&[0, 10, 20, 30]);
        let within = Keep {
            within_s: Some(10 * 3600),
            ..Keep::default()
        };
        assert_eq!(kept(&p, &within, &[]), [4], "30 h minus 20 h plus a minute");
        let labels = Keep {
            labels: vec!["release-*".into()],
            ..Keep::default()
        };
        assert_eq!(kept(&p, &labels, &[]), [1, 4]);
        assert!(glob("a*b?c", "axxbyc"));
        assert!(glob("*", ""));
        assert!(!glob("a*b", "acbx"));
        assert!(glob("*-*-x", "a-b-c-x"));
    }

    #[test]
    fn flags_override_the_policy_rule_by_rule() {
        let policy = Keep {
            last: Some(10),
            hourly: Some(24),
            ..Keep::default()
        };
        let flags = Keep {
            last: Some(3),
            ..Keep::default()
        };
        let run = policy.overridden_by(&flags);
        assert_eq!((run.last, run.hourly), (Some(3), Some(24)));
        assert_eq!(run.describe(), "--keep-last 3 --keep-hourly 24");
    }

    #[test]
    fn durations_parse_in_units_and_sums() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("1d12h"), Ok(36 * 3600));
        assert_eq!(parse_duration("2w"), Ok(14 * 86_400));
        assert_eq!(format_duration(36 * 3600), "36h");
        assert_eq!(format_duration(7 * 86_400), "7d");
        for bad in ["", "10", "1x", "d", "0s", "99999999999999999999y"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
