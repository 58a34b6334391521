//! The control files under `.lsvfs/` in a mount, independent of FUSE: the
//! sync-point label rules and answer line, and the metrics that
//! `.lsvfs/stats` renders in the Prometheus text format.

use crate::format::record::LABEL_MAX;
use crate::log::catalog::SyncPoint;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Name of the control directory at the root of a mount.
pub const CONTROL_DIR: &str = ".lsvfs";
pub const SYNC_POINT_FILE: &str = "sync-point";
pub const STATS_FILE: &str = "stats";
/// `lsvfs status` as JSON (the shape of [`crate::status::Status`]).
pub const STATUS_FILE: &str = "status";
/// The views of every sync point, as read-only directories.
pub const SYNC_POINTS_DIR: &str = "sync-points";
/// Freezes and thaws the mount: `freeze [SECONDS]` or `thaw`.
pub const FREEZE_FILE: &str = "freeze";
/// How long a freeze lasts unless thawed or given another timeout.
pub const FREEZE_DEFAULT_S: u64 = 30;
/// The longest freeze: an hour.
pub const FREEZE_MAX_S: u64 = 3600;

/// A request written to `.lsvfs/freeze`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeRequest {
    Freeze(std::time::Duration),
    Thaw,
}

/// Parses `freeze`, `freeze SECONDS` (1 to [`FREEZE_MAX_S`]) or `thaw`,
/// with one trailing newline allowed.
pub fn parse_freeze(bytes: &[u8]) -> Option<FreezeRequest> {
    let text = std::str::from_utf8(bytes.strip_suffix(b"\n").unwrap_or(bytes)).ok()?;
    let mut words = text.split(' ');
    let request = match (words.next()?, words.next(), words.next()) {
        ("thaw", None, None) => FreezeRequest::Thaw,
        ("freeze", None, None) => {
            FreezeRequest::Freeze(std::time::Duration::from_secs(FREEZE_DEFAULT_S))
        }
        ("freeze", Some(s), None) => {
            let secs: u64 = s.parse().ok().filter(|s| (1..=FREEZE_MAX_S).contains(s))?;
            FreezeRequest::Freeze(std::time::Duration::from_secs(secs))
        }
        _ => return None,
    };
    Some(request)
}

/// Restores from a sync point (see [`crate::restore::Request`]).
pub const RESTORE_FILE: &str = "restore";

/// Why a label written to the sync-point file is refused (EINVAL).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("label is not UTF-8")]
    NotUtf8,
    #[error("label is longer than {LABEL_MAX} bytes")]
    TooLong,
    #[error("label contains a control character or a newline before its end")]
    ControlChar,
}

/// A label as written to `.lsvfs/sync-point`: UTF-8, at most 256 bytes,
/// one trailing newline allowed, no other control characters.
pub fn parse_label(bytes: &[u8]) -> Result<String, LabelError> {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if bytes.len() > LABEL_MAX {
        return Err(LabelError::TooLong);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| LabelError::NotUtf8)?;
    if text.chars().any(char::is_control) {
        return Err(LabelError::ControlChar);
    }
    Ok(text.to_string())
}

/// The line a sync-point handle reads back: `ID TIME LABEL`.
pub fn answer(point: &SyncPoint) -> String {
    format!(
        "{} {} {}\n",
        point.info.id,
        crate::time::rfc3339(point.info.time_ns),
        point.info.label
    )
}

/// Operations counted in the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lookup,
    Getattr,
    Setattr,
    Create,
    Remove,
    Rename,
    Link,
    Open,
    Read,
    Write,
    Fsync,
    Readdir,
    Xattr,
    Statfs,
    SyncPoint,
}

const OPS: [(Op, &str); 15] = [
    (Op::Lookup, "lookup"),
    (Op::Getattr, "getattr"),
    (Op::Setattr, "setattr"),
    (Op::Create, "create"),
    (Op::Remove, "remove"),
    (Op::Rename, "rename"),
    (Op::Link, "link"),
    (Op::Open, "open"),
    (Op::Read, "read"),
    (Op::Write, "write"),
    (Op::Fsync, "fsync"),
    (Op::Readdir, "readdir"),
    (Op::Xattr, "xattr"),
    (Op::Statfs, "statfs"),
    (Op::SyncPoint, "sync_point"),
];

#[derive(Default)]
struct OpStats {
    count: AtomicU64,
    errors: AtomicU64,
    nanos: AtomicU64,
}

/// Counters kept by a mount; cheap enough to update on every request.
#[derive(Default)]
pub struct Metrics {
    ops: [OpStats; OPS.len()],
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
}

/// Volume-wide gauges sampled when the stats file is opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub segments_primary: u64,
    pub working_set: u64,
    pub segment_size: u64,
    pub live_blocks: u64,
    pub block_size: u64,
    pub inodes: u64,
    pub sync_points: u64,
    /// Sealed segments beyond the working set, waiting for the archiver.
    pub archive_lag_segments: u64,
}

impl Metrics {
    pub fn record(&self, op: Op, took: Duration, ok: bool) {
        let s = &self.ops[op as usize];
        s.count.fetch_add(1, Ordering::Relaxed);
        s.nanos.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        if !ok {
            s.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn read_bytes(&self, n: usize) {
        self.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn written_bytes(&self, n: usize) {
        self.bytes_written.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition format, version 0.0.4.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        type Field = fn(&OpStats) -> &AtomicU64;
        let per_op: [(&str, &str, Field, f64); 3] = [
            (
                "operations_total",
                "Requests served, by operation.",
                |s| &s.count,
                1.0,
            ),
            (
                "operation_errors_total",
                "Requests answered with an error, by operation.",
                |s| &s.errors,
                1.0,
            ),
            (
                "operation_seconds_total",
                "Time spent serving requests, by operation; divide by operations_total for the mean latency.",
                |s| &s.nanos,
                1e9,
            ),
        ];
        for (name, help, field, divisor) in per_op {
            let samples: Vec<(String, f64)> = OPS
                .iter()
                .map(|(op, op_name)| {
                    let v = load(field(&self.ops[*op as usize])) / divisor;
                    (format!("{{op=\"{op_name}\"}}"), v)
                })
                .collect();
            metric(&mut out, name, "counter", help, &samples);
        }
        for (name, kind, help, v) in self.single_values(g) {
            metric(&mut out, name, kind, help, &[(String::new(), v)]);
        }
        out
    }

    /// The metrics with one value each: (name, type, help, value).
    fn single_values(&self, g: &Gauges) -> [(&'static str, &'static str, &'static str, f64); 9] {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        let capacity = (g.working_set * g.segment_size) as f64;
        let live = (g.live_blocks * g.block_size) as f64;
        let fill = if capacity > 0.0 { live / capacity } else { 0.0 };
        [
            (
                "read_bytes_total",
                "counter",
                "Bytes returned by reads.",
                load(&self.bytes_read),
            ),
            (
                "written_bytes_total",
                "counter",
                "Bytes accepted by writes.",
                load(&self.bytes_written),
            ),
            (
                "segments_primary",
                "gauge",
                "Segment files in primary storage.",
                g.segments_primary as f64,
            ),
            (
                "working_set_segments",
                "gauge",
                "Segments the working set holds (policy).",
                g.working_set as f64,
            ),
            ("live_bytes", "gauge", "Bytes of live file data.", live),
            (
                "working_set_fill_ratio",
                "gauge",
                "Live data as a fraction of the working set's capacity.",
                fill,
            ),
            ("inodes", "gauge", "Live inodes.", g.inodes as f64),
            (
                "sync_points",
                "gauge",
                "Sync points in the catalog.",
                g.sync_points as f64,
            ),
            (
                "archive_lag_segments",
                "gauge",
                "Sealed segments beyond the working set, waiting for the archiver.",
                g.archive_lag_segments as f64,
            ),
        ]
    }
}

/// Appends one metric with its help and type lines and its samples
/// (label set, value).
fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(
        out,
        "# HELP lsvfs_{name} {help}\n# TYPE lsvfs_{name} {kind}"
    );
    for (labels, v) in samples {
        let _ = writeln!(out, "lsvfs_{name}{labels} {v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_rules() {
        assert_eq!(parse_label(b"nightly\n").unwrap(), "nightly");
        assert_eq!(parse_label(b"").unwrap(), "");
        assert_eq!(parse_label("café ☕".as_bytes()).unwrap(), "café ☕");
        assert_eq!(parse_label(&[b'a'; 256]).unwrap().len(), 256);
        let mut max_nl = vec![b'a'; 256];
        max_nl.push(b'\n');
        assert!(parse_label(&max_nl).is_ok());
        assert_eq!(parse_label(&[b'a'; 257]), Err(LabelError::TooLong));
        assert_eq!(parse_label(b"a\nb"), Err(LabelError::ControlChar));
        assert_eq!(parse_label(b"a\n\n"), Err(LabelError::ControlChar));
        assert_eq!(parse_label(b"tab\there"), Err(LabelError::ControlChar));
        assert_eq!(parse_label(&[0xff, 0xfe]), Err(LabelError::NotUtf8));
    }

    #[test]
    fn metrics_render_as_prometheus_text() {
        let m = Metrics::default();
        m.record(Op::Write, Duration::from_micros(1500), true);
        m.record(Op::Write, Duration::from_micros(500), false);
        m.written_bytes(4096);
        let g = Gauges {
            working_set: 4,
            segment_size: 1 << 20,
            live_blocks: 256,
            block_size: 4096,
            ..Gauges::default()
        };
        let text = m.render(&g);
        assert!(
            text.contains("lsvfs_operations_total{op=\"write\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("lsvfs_operation_errors_total{op=\"write\"} 1\n"));
        assert!(text.contains("lsvfs_operation_seconds_total{op=\"write\"} 0.002\n"));
        assert!(text.contains("lsvfs_written_bytes_total 4096\n"));
        assert!(text.contains("lsvfs_working_set_fill_ratio 0.25\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("lsvfs_"), "{line}");
            value.parse::<f64>().unwrap();
        }
    }
}
