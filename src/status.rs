//! What `lsvfs status` reports: working-set fill, live data, the reserve,
//! the archive and the store's health. One shape serves the mount's
//! `.lsvfs/status` file and the command's `--json`, so it is stable and
//! documented in lsvfs-status(1).

use crate::retention::Retention;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub segment_size: u64,
    pub working_set: u64,
    pub reserve: u64,
    /// Segment files in primary storage, the open one included.
    pub segments_in_primary: u64,
    /// Segments in primary divided by the working set (above 1 while the
    /// reserve is in use).
    pub working_set_fill: f64,
    /// Segments of the reserve in use: primary beyond the working set.
    pub reserve_in_use: u64,
    /// Sealed segments the archiver has still to retire.
    pub waiting_for_archive: u64,
    /// Sealed segments in primary not yet stored in the backing store
    /// (their history has not left the machine).
    pub waiting_for_ship: u64,
    /// Whether writes are waiting for the archiver (reserve full).
    pub writes_blocked: bool,
    /// Live data (mapped blocks × block size) and the capacity rule's limit.
    pub live_bytes: u64,
    pub capacity_bytes: u64,
    /// Objects in the backing store and their total size.
    pub archived_segments: u64,
    pub archived_bytes: u64,
    /// Since the volume was opened: raw and stored bytes of the segments
    /// archived, their ratio, and the archiver's throughput.
    pub session_archived_raw_bytes: u64,
    pub session_archived_stored_bytes: u64,
    /// Since the volume was opened: bytes of partial objects stored (each
    /// later replaced, so traffic to the store rather than space in it).
    pub session_partial_bytes: u64,
    pub compression_ratio: Option<f64>,
    pub archive_mib_per_s: Option<f64>,
    /// Since the volume was opened: record bytes appended for users and
    /// copied forward by the archiver, and (user + copied) / user.
    pub user_bytes: u64,
    pub copied_forward_bytes: u64,
    pub write_amplification: Option<f64>,
    pub store: StoreStatus,
    /// The retention policy, as `lsvfs.toml` holds it now.
    pub retention: RetentionStatus,
    /// A mount's freeze (`lsvfs freeze`); absent for an unmounted volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze: Option<FreezeStatus>,
}

/// The freeze of a mount.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FreezeStatus {
    pub frozen: bool,
    /// Seconds until a freeze in force ends by itself.
    pub thaws_in_s: Option<f64>,
    /// Changes waiting for the thaw.
    pub parked: u64,
    /// How the last freeze ended: "thawed", or "timed out after N s".
    pub last: Option<String>,
}

/// The retention policy with every rule named (null when not set).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RetentionStatus {
    pub auto: bool,
    pub pinned: Vec<u64>,
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_within_s: Option<u64>,
    pub keep_labels: Vec<String>,
    /// The same in words, as `lsvfs status` prints it.
    pub text: String,
}

impl From<&Retention> for RetentionStatus {
    fn from(r: &Retention) -> Self {
        let k = &r.keep;
        RetentionStatus {
            auto: r.auto,
            pinned: r.pinned.clone(),
            keep_last: k.last,
            keep_hourly: k.hourly,
            keep_daily: k.daily,
            keep_weekly: k.weekly,
            keep_monthly: k.monthly,
            keep_within_s: k.within_s,
            keep_labels: k.labels.clone(),
            text: r.describe(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreStatus {
    pub location: String,
    pub ok: bool,
    pub error: Option<String>,
    /// Unix time (seconds) of the last change between working and failing.
    pub since: u64,
}

/// `a / b`, or None when there is nothing to divide by.
pub fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

impl Status {
    /// The human form, one fact per line.
    pub fn render(&self) -> String {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let opt = |v: Option<f64>, unit: &str| match v {
            Some(v) => format!("{v:.2}{unit}"),
            None => "-".to_string(),
        };
        let mut out = String::new();
        let mut line = |k: &str, v: String| out.push_str(&format!("{k:<22} {v}\n"));
        line(
            "working set",
            format!(
                "{} of {} segments ({:.0} %), {} each",
                self.segments_in_primary.min(self.working_set),
                self.working_set,
                self.working_set_fill * 100.0,
                crate::policy::format_size(self.segment_size)
            ),
        );
        line(
            "reserve in use",
            format!("{} of {} segments", self.reserve_in_use, self.reserve),
        );
        line(
            "waiting for archive",
            format!(
                "{} segments{}",
                self.waiting_for_archive,
                if self.writes_blocked {
                    " (writes are waiting for the archiver)"
                } else {
                    ""
                }
            ),
        );
        line(
            "waiting to ship",
            format!("{} sealed segments", self.waiting_for_ship),
        );
        line(
            "live data",
            format!(
                "{:.1} MiB of {:.1} MiB capacity",
                mib(self.live_bytes),
                mib(self.capacity_bytes)
            ),
        );
        line(
            "archived",
            format!(
                "{} segments, {:.1} MiB stored",
                self.archived_segments,
                mib(self.archived_bytes)
            ),
        );
        line(
            "partial objects",
            format!(
                "{:.1} MiB shipped (since open)",
                mib(self.session_partial_bytes)
            ),
        );
        line(
            "compression ratio",
            format!("{} (since open)", opt(self.compression_ratio, "")),
        );
        line(
            "archive throughput",
            format!("{} (since open)", opt(self.archive_mib_per_s, " MiB/s")),
        );
        line(
            "write amplification",
            format!("{} (since open)", opt(self.write_amplification, "")),
        );
        let health = match (&self.store.error, self.store.ok) {
            (_, true) => "ok".to_string(),
            (Some(e), false) => format!("FAILING: {e}"),
            (None, false) => "FAILING".to_string(),
        };
        line(
            "backing store",
            format!("{} ({health})", self.store.location),
        );
        line("retention", self.retention.text.clone());
        if let Some(f) = &self.freeze {
            let text = match (f.frozen, &f.last) {
                (true, _) => format!(
                    "FROZEN: {} changes waiting, thaws by itself in {:.0} s",
                    f.parked,
                    f.thaws_in_s.unwrap_or(0.0)
                ),
                (false, Some(last)) => format!("not frozen (the last freeze {last})"),
                (false, None) => "not frozen".to_string(),
            };
            line("freeze", text);
        }
        out
    }
}
