//! Restore tests of sync points and their results: `VOLUME/checks`.
//!
//! An agent that proved a sync point restorable (`lsvfs agent postgres
//! --verify`: a clone of its view, the database started on it and
//! checked) records the outcome here, and the listing of sync points
//! shows it. A sync point is immutable, its check is a later fact, so the
//! result lives in a file of its own beside the catalog, newest result
//! per sync point, replaced whole and durably at each record.

use crate::disk::Disk;
use crate::error::{Error, Result, io};
use crate::format::DecodeError;
use std::collections::BTreeMap;
use std::path::Path;

pub const CHECKS_FILE: &str = "checks";
const HEADER: &str = "lsvfs checks 1";
/// The most bytes of a check's detail kept: what a listing can show.
pub const DETAIL_MAX: usize = 1000;

/// The outcome of one restore test of a sync point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub sync_point: u64,
    /// When the test ended, nanoseconds since the epoch (UTC).
    pub time_ns: u64,
    pub ok: bool,
    /// What checked it: one word, e.g. `pg_amcheck`.
    pub tool: String,
    /// What it said, one line (e.g. why it failed).
    pub detail: String,
}

impl Check {
    /// A check with `tool` made one word and `detail` one bounded line.
    pub fn new(sync_point: u64, ok: bool, tool: &str, detail: &str) -> Check {
        let tool: String = tool.split_whitespace().collect::<Vec<_>>().join("_");
        let mut detail = detail.split_whitespace().collect::<Vec<_>>().join(" ");
        if detail.len() > DETAIL_MAX {
            let cut = (0..=DETAIL_MAX)
                .rev()
                .find(|&i| detail.is_char_boundary(i))
                .unwrap_or(0);
            detail.truncate(cut);
        }
        Check {
            sync_point,
            time_ns: crate::time::now_ns(),
            ok,
            tool: if tool.is_empty() { "-".into() } else { tool },
            detail,
        }
    }
}

/// The newest check of each sync point, by id.
pub type Checks = BTreeMap<u64, Check>;

/// The checks recorded in the volume directory `dir` (none if the file is
/// absent).
pub fn load(disk: &dyn Disk, dir: &Path) -> Result<Checks> {
    let path = dir.join(CHECKS_FILE);
    match disk.read(&path) {
        Ok(bytes) => decode(&bytes).map_err(|source| Error::Damaged {
            what: path.display().to_string(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Checks::new()),
        Err(e) => Err(io(format!("cannot read {}", path.display()))(e)),
    }
}

/// Records `check` in `dir`, replacing an older one of its sync point.
/// One process records at a time (the agent of the volume).
pub fn record(disk: &dyn Disk, dir: &Path, check: Check) -> Result<()> {
    let mut checks = load(disk, dir)?;
    checks.insert(check.sync_point, check);
    crate::layout::write_durably(disk, &dir.join(CHECKS_FILE), encode(&checks).as_bytes())
}

// Text, one line per check after the header:
//   ID TIME_NS ok|failed TOOL DETAIL
// ID and TIME_NS decimal; TOOL one word; DETAIL the rest of the line.
fn encode(checks: &Checks) -> String {
    let mut text = format!("{HEADER}\n");
    for c in checks.values() {
        let result = if c.ok { "ok" } else { "failed" };
        text.push_str(&format!(
            "{} {} {result} {} {}\n",
            c.sync_point, c.time_ns, c.tool, c.detail
        ));
    }
    text
}

fn decode(bytes: &[u8]) -> Result<Checks, DecodeError> {
    let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::Invalid("not UTF-8"))?;
    let mut lines = text.split_terminator('\n');
    if lines.next() != Some(HEADER) {
        return Err(DecodeError::Magic);
    }
    let mut checks = Checks::new();
    for line in lines {
        let mut words = line.splitn(5, ' ');
        let mut word = || words.next().ok_or(DecodeError::Invalid("a short line"));
        let number = |w: &str| {
            w.parse::<u64>()
                .map_err(|_| DecodeError::Invalid("a number"))
        };
        let sync_point = number(word()?)?;
        let time_ns = number(word()?)?;
        let ok = match word()? {
            "ok" => true,
            "failed" => false,
            _ => return Err(DecodeError::Invalid("a result (ok or failed)")),
        };
        let tool = word()?.to_string();
        let detail = word().unwrap_or("").to_string();
        let check = Check {
            sync_point,
            time_ns,
            ok,
            tool,
            detail,
        };
        checks.insert(sync_point, check);
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::Real;

    #[test]
    fn the_newest_check_of_a_sync_point_is_kept_across_records() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(load(&Real, tmp.path()).unwrap().is_empty());
        record(
            &Real,
            tmp.path(),
            Check::new(3, false, "pg_amcheck", "bad\npage"),
        )
        .unwrap();
        record(&Real, tmp.path(), Check::new(5, true, "pg amcheck", "")).unwrap();
        record(&Real, tmp.path(), Check::new(3, true, "pg_amcheck", "fine")).unwrap();
        let checks = load(&Real, tmp.path()).unwrap();
        assert_eq!(checks.len(), 2);
        assert!(checks[&3].ok && checks[&3].detail == "fine");
        assert_eq!(
            (checks[&5].tool.as_str(), checks[&5].detail.as_str()),
            ("pg_amcheck", "")
        );
    }

    #[test]
    fn a_detail_is_one_bounded_line() {
        let long = "é".repeat(DETAIL_MAX);
        let c = Check::new(1, false, "t", &format!("a\nb  {long}"));
        assert!(c.detail.starts_with("a b é"));
        assert!(c.detail.len() <= DETAIL_MAX);
        assert_eq!(
            decode(encode(&[(1, c.clone())].into()).as_bytes()).unwrap()[&1],
            c
        );
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        record(&Real, tmp.path(), Check::new(2, true, "t", "d")).unwrap();
        let path = tmp.path().join(CHECKS_FILE);
        let good = std::fs::read_to_string(&path).unwrap();
        for bad in [
            good.replace("lsvfs checks 1", "lsvfs checks 9"),
            good.replace(" ok ", " maybe "),
            good.replacen("2 ", "x ", 1),
            format!("{good}7 8\n"),
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = load(&Real, tmp.path()).unwrap_err().to_string();
            assert!(err.contains("checks is damaged"), "{err}");
        }
    }
}
