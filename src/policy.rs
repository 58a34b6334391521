//! The volume's policy: block size, segment size, working set, compression
//! level and backing store, kept in `lsvfs.toml` at the top of the volume.

use crate::format::archive::SEGMENT_SIZE_MAX;
use crate::format::segment::block_cost;
use crate::format::{FORMAT_VERSION, VolumeId};
use crate::retention::Retention;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

pub const POLICY_FILE: &str = "lsvfs.toml";

pub const DEFAULT_BLOCK_SIZE: u64 = 4096;
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;
pub const DEFAULT_WORKING_SET: u32 = 64;
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 3;
pub const DEFAULT_RESERVE: u32 = 8;
pub const DEFAULT_CACHE_SIZE: u64 = 256 << 20;
/// Most seconds between a sync point and the moment the backing store
/// alone can serve it (see [`Policy::ship_interval_s`]).
pub const DEFAULT_SHIP_INTERVAL_S: u32 = 10;
/// Bounds of the ship interval, in seconds.
pub const SHIP_INTERVAL_S_RANGE: std::ops::RangeInclusive<u32> = 1..=3600;

const BLOCK_SIZE_MIN: u64 = 512;
const BLOCK_SIZE_MAX: u64 = 1 << 20;
const SEGMENT_SIZE_MIN: u64 = 64 << 10;
/// A segment must be at least this many blocks long, so that it holds a
/// useful number of full data records besides its header and summary.
const BLOCKS_PER_SEGMENT_MIN: u64 = 16;
const WORKING_SET_MIN: u32 = 4;
const WORKING_SET_MAX: u32 = 1 << 16;
/// One reserve segment takes user writes past the working set, so that the
/// archiver has work; the last is kept for the archiver's copies.
const RESERVE_MIN: u32 = 2;
/// The cache must hold at least a few archived frames.
const CACHE_SIZE_MIN: u64 = 4 << 20;

#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("cannot read policy file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("policy file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
}

/// `path` as a URL (`scheme://...`) when it is one, which no local
/// directory is meant to be: `s3://bucket` must not become `./s3:/bucket`.
pub fn store_url(path: &Path) -> Option<String> {
    let text = path.to_str()?;
    let (scheme, _) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let is_scheme = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c));
    is_scheme.then(|| text.to_string())
}

/// Where the backing store is, as the policy names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A local directory (relative paths are relative to the volume).
    Dir(PathBuf),
    /// `s3://BUCKET/PREFIX`: objects `PREFIX/NAME` in an S3-compatible
    /// bucket; endpoint, region and credentials come from the environment.
    S3 { bucket: String, prefix: String },
}

/// Parses `s3://BUCKET[/PREFIX]`. The bucket follows S3's naming rules
/// (3 to 63 of `[a-z0-9.-]`, a letter or digit at each end); the prefix is
/// `/`-separated parts of `[A-Za-z0-9._-]`, none `.` or `..` or empty (a
/// trailing `/` is dropped). Nothing else (no user, port, query) is taken:
/// the endpoint and credentials never live in the volume.
pub fn parse_s3_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{url} is not an s3:// URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b))
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !bucket_ok {
        return Err(format!(
            "{url}: bucket name {bucket:?} is not valid (3 to 63 lower-case letters, digits, dots and hyphens)"
        ));
    }
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    let part_ok = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if !prefix.is_empty() && !prefix.split('/').all(part_ok) {
        return Err(format!(
            "{url}: prefix {prefix:?} is not valid (parts of letters, digits, '.', '_' and '-' separated by '/')"
        ));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

fn invalid(field: &'static str, reason: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// The policy as stored in `lsvfs.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub format_version: u16,
    /// 32 hex digits; written in every segment header.
    pub volume_id: String,
    pub block_size: u64,
    pub segment_size: u64,
    pub working_set: u32,
    pub compression_level: i32,
    /// Where retired segments go; relative paths are relative to the volume.
    pub backing_store: PathBuf,
    /// Extra segments beyond the working set that writes may fill while the
    /// archiver is behind (store slow or down); then writes block. The last
    /// one is kept for the archiver's copies, so primary storage never
    /// holds more than working_set + reserve segments.
    #[serde(default = "default_reserve")]
    pub reserve: u32,
    /// Bytes of decompressed archived frames kept in memory for reads of
    /// retired segments (views).
    #[serde(default = "default_cache_size")]
    pub cache_size: u64,
    /// A sync point in the segment being written is shipped to the store
    /// (as a partial object of that segment) within this many seconds, so
    /// that the store alone can serve it before the segment seals.
    #[serde(default = "default_ship_interval_s")]
    pub ship_interval_s: u32,
    /// Which sync points prune keeps, the pinned ones, and whether the
    /// archiver prunes by itself (volumes made before it have none: keep
    /// everything).
    #[serde(default)]
    pub retention: Retention,
}

fn default_reserve() -> u32 {
    DEFAULT_RESERVE
}

fn default_cache_size() -> u64 {
    DEFAULT_CACHE_SIZE
}

fn default_ship_interval_s() -> u32 {
    DEFAULT_SHIP_INTERVAL_S
}

impl Policy {
    /// A policy with the defaults and a fresh volume id.
    pub fn new(volume_id: VolumeId) -> Self {
        Policy {
            format_version: FORMAT_VERSION,
            volume_id: volume_id.to_hex(),
            block_size: DEFAULT_BLOCK_SIZE,
            segment_size: DEFAULT_SEGMENT_SIZE,
            working_set: DEFAULT_WORKING_SET,
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            backing_store: PathBuf::from("archive"),
            reserve: DEFAULT_RESERVE,
            cache_size: DEFAULT_CACHE_SIZE,
            ship_interval_s: DEFAULT_SHIP_INTERVAL_S,
            retention: Retention::default(),
        }
    }

    pub fn volume_id(&self) -> Result<VolumeId, PolicyError> {
        VolumeId::from_hex(&self.volume_id).ok_or_else(|| invalid("volume_id", "not 32 hex digits"))
    }

    /// Checks every value; the message names the field and the rule.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.format_version != FORMAT_VERSION {
            return Err(invalid(
                "format_version",
                format!(
                    "volume has format version {}, this lsvfs reads version {FORMAT_VERSION}",
                    self.format_version
                ),
            ));
        }
        self.volume_id()?;
        self.validate_geometry()?;
        self.validate_archiving()?;
        self.retention.validate()
    }

    /// Block and segment size, working set and reserve.
    fn validate_geometry(&self) -> Result<(), PolicyError> {
        check_power_of_two(
            "block_size",
            self.block_size,
            BLOCK_SIZE_MIN,
            BLOCK_SIZE_MAX,
        )?;
        check_power_of_two(
            "segment_size",
            self.segment_size,
            SEGMENT_SIZE_MIN,
            SEGMENT_SIZE_MAX,
        )?;
        if self.segment_size < self.block_size * BLOCKS_PER_SEGMENT_MIN {
            return Err(invalid(
                "segment_size",
                format!(
                    "{} is too small for block size {}: use at least {}",
                    format_size(self.segment_size),
                    format_size(self.block_size),
                    format_size(self.block_size * BLOCKS_PER_SEGMENT_MIN)
                ),
            ));
        }
        if !(WORKING_SET_MIN..=WORKING_SET_MAX).contains(&self.working_set) {
            return Err(invalid(
                "working_set",
                format!(
                    "{} segments is out of range {WORKING_SET_MIN}..={WORKING_SET_MAX}",
                    self.working_set
                ),
            ));
        }
        if !(RESERVE_MIN..=WORKING_SET_MAX).contains(&self.reserve) {
            return Err(invalid(
                "reserve",
                format!(
                    "{} segments is out of range {RESERVE_MIN}..={WORKING_SET_MAX}",
                    self.reserve
                ),
            ));
        }
        Ok(())
    }

    /// Compression, cache, ship interval and backing store.
    fn validate_archiving(&self) -> Result<(), PolicyError> {
        if !(1..=22).contains(&self.compression_level) {
            return Err(invalid(
                "compression_level",
                format!("{} is out of range 1..=22", self.compression_level),
            ));
        }
        if self.cache_size < self.segment_size.min(CACHE_SIZE_MIN) {
            return Err(invalid(
                "cache_size",
                format!(
                    "{} is too small: use at least {}",
                    format_size(self.cache_size),
                    format_size(self.segment_size.min(CACHE_SIZE_MIN))
                ),
            ));
        }
        if !SHIP_INTERVAL_S_RANGE.contains(&self.ship_interval_s) {
            return Err(invalid(
                "ship_interval",
                format!(
                    "{} s is out of range: give 1 to 3600 seconds",
                    self.ship_interval_s
                ),
            ));
        }
        if self.backing_store.as_os_str().is_empty() {
            return Err(invalid("backing_store", "empty path"));
        }
        self.store_location().map(drop)
    }

    /// Where the backing store is: a local directory, or an `s3://` URL.
    /// Any other URL is refused (and no directory is made of it).
    pub fn store_location(&self) -> Result<StoreLocation, PolicyError> {
        let Some(url) = store_url(&self.backing_store) else {
            return Ok(StoreLocation::Dir(self.backing_store.clone()));
        };
        if !url.starts_with("s3://") {
            return Err(invalid(
                "backing_store",
                format!(
                    "{url}: only s3:// URLs (S3-compatible object storage) or local directories are supported"
                ),
            ));
        }
        let (bucket, prefix) = parse_s3_url(&url).map_err(|e| invalid("backing_store", e))?;
        Ok(StoreLocation::S3 { bucket, prefix })
    }

    /// Whether the backing store is a local directory (which the volume
    /// creates and checks) rather than a URL.
    pub fn store_is_local(&self) -> bool {
        matches!(self.store_location(), Ok(StoreLocation::Dir(_)))
    }

    /// Where the backing store is, for messages: its URL, or its directory
    /// resolved against the volume directory.
    pub fn store_display(&self, volume: &Path) -> String {
        match store_url(&self.backing_store) {
            Some(url) => url,
            None => self.backing_store_path(volume).display().to_string(),
        }
    }

    /// Data blocks the volume may hold: three quarters of the full data
    /// records (with their summary entries) that the working set's segments
    /// can take. The remaining quarter keeps the archiver's copy-forward
    /// cost bounded: retiring the oldest segment under uniform random
    /// overwrites copies about half of it at this fill (write amplification
    /// near 2; docs/BENCHMARKS.md), and the cost grows without bound as live
    /// data approaches the whole working set. Metadata records count too,
    /// by the bytes they take (see [`Policy::capacity_bytes`]).
    pub fn capacity_blocks(&self) -> u64 {
        let header_footer = 4096 + 64;
        let per_block = block_cost(self.block_size as u32);
        let per_segment = (self.segment_size - header_footer) / per_block;
        per_segment * self.working_set as u64 * 3 / 4
    }

    /// The capacity in segment bytes: what every live record (data blocks,
    /// inodes, directory entries, xattrs), with its summary entry, may take.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_blocks() * block_cost(self.block_size as u32)
    }

    /// The backing store directory, resolved against the volume directory
    /// (meaningful only for a local store: see [`Policy::store_location`]).
    pub fn backing_store_path(&self, volume: &Path) -> PathBuf {
        volume.join(&self.backing_store)
    }

    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).expect("policy serializes");
        format!(
            "# lsvfs volume policy. Sizes are in bytes. See lsvfs-create(1) for sizing.\n{body}"
        )
    }

    pub fn load(disk: &dyn crate::disk::Disk, volume: &Path) -> Result<Self, PolicyError> {
        let path = volume.join(POLICY_FILE);
        let bytes = disk.read(&path).map_err(|source| PolicyError::Read {
            path: path.clone(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|_| PolicyError::Parse {
            path: path.clone(),
            message: "not UTF-8 text".into(),
        })?;
        Self::parse(&text).map_err(|message| PolicyError::Parse { path, message })
    }

    /// A policy from the text of an `lsvfs.toml`, checked.
    pub fn parse(text: &str) -> Result<Self, String> {
        let policy: Policy = toml::from_str(text).map_err(|e| e.message().to_string())?;
        policy.validate().map_err(|e| e.to_string())?;
        Ok(policy)
    }
}

fn check_power_of_two(field: &'static str, v: u64, min: u64, max: u64) -> Result<(), PolicyError> {
    if !v.is_power_of_two() || v < min || v > max {
        return Err(invalid(
            field,
            format!(
                "{} must be a power of two between {} and {}",
                format_size(v),
                format_size(min),
                format_size(max)
            ),
        ));
    }
    Ok(())
}

/// Parses a size such as `4096`, `4K`, `4KiB`, `64M`, `1G` (binary units).
/// Parses a duration in whole seconds: `30`, `30s`, `5m`, `1h`.
pub fn parse_seconds(s: &str) -> Result<u32, String> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("{s:?} is not a duration (e.g. 10s, 5m, 1h)")),
    };
    digits
        .parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{s:?} is not a duration (e.g. 10s, 5m, 1h)"))
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "'{s}' is not a size: expected a number such as 4K, 64M or 1G"
        ));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is too large to be a size"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        other => {
            return Err(format!(
                "'{s}' has an unknown unit '{other}': use K, M, G or T"
            ));
        }
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("'{s}' is too large to be a size"))
}

/// Formats a byte count with the largest binary unit that divides it.
pub fn format_size(v: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if v >= 1 << shift && v.is_multiple_of(1 << shift) {
            return format!("{}{unit}", v >> shift);
        }
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::new(VolumeId([1; 16]))
    }

    #[test]
    fn durations_parse_in_whole_seconds() {
        assert_eq!(parse_seconds("10"), Ok(10));
        assert_eq!(parse_seconds("10s"), Ok(10));
        assert_eq!(parse_seconds("5m"), Ok(300));
        assert_eq!(parse_seconds("1h"), Ok(3600));
        for bad in ["", "s", "1.5s", "10ms", "-1", "99999999999s", "5000000h"] {
            assert!(parse_seconds(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("4X").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("999999999999T").is_err());
        assert_eq!(format_size(64 << 20), "64M");
        assert_eq!(format_size(1000), "1000");
    }

    #[test]
    fn defaults_are_valid_and_round_trip_through_toml() {
        let p = policy();
        p.validate().unwrap();
        let back: Policy = toml::from_str(&p.to_toml()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn every_rule_is_enforced() {
        type Case = (fn(&mut Policy), &'static str);
        let cases: Vec<Case> = vec![
            (|p| p.block_size = 3000, "block_size"),
            (|p| p.block_size = 256, "block_size"),
            (|p| p.segment_size = 3 << 20, "segment_size"),
            (|p| p.segment_size = 2 << 30, "segment_size"),
            (
                |p| {
                    p.block_size = 1 << 20;
                    p.segment_size = 8 << 20
                },
                "segment_size",
            ),
            (|p| p.working_set = 3, "working_set"),
            (|p| p.compression_level = 0, "compression_level"),
            (|p| p.compression_level = 23, "compression_level"),
            (|p| p.volume_id = "nope".into(), "volume_id"),
            (|p| p.format_version = 9, "format_version"),
            (|p| p.backing_store = PathBuf::new(), "backing_store"),
            (
                |p| p.backing_store = PathBuf::from("gs://bucket/prefix"),
                "backing_store",
            ),
            (
                |p| p.backing_store = PathBuf::from("s3://Bucket/prefix"),
                "backing_store",
            ),
            (
                |p| p.backing_store = PathBuf::from("s3://bucket/a//b"),
                "backing_store",
            ),
            (|p| p.reserve = 1, "reserve"),
            (|p| p.cache_size = 4096, "cache_size"),
            (|p| p.ship_interval_s = 0, "ship_interval"),
            (|p| p.ship_interval_s = 3601, "ship_interval"),
        ];
        for (mutate, field) in cases {
            let mut p = policy();
            mutate(&mut p);
            let err = p.validate().unwrap_err().to_string();
            assert!(err.starts_with(field), "{err} should name {field}");
        }
    }

    #[test]
    fn store_locations_are_directories_or_s3_urls() {
        let mut p = policy();
        assert_eq!(
            p.store_location().unwrap(),
            StoreLocation::Dir(PathBuf::from("archive"))
        );
        p.backing_store = PathBuf::from("s3://my-bucket/lsvfs/pg/");
        p.validate().unwrap();
        assert_eq!(
            p.store_location().unwrap(),
            StoreLocation::S3 {
                bucket: "my-bucket".into(),
                prefix: "lsvfs/pg".into()
            }
        );
        assert!(!p.store_is_local());
        assert_eq!(p.store_display(Path::new("/v")), "s3://my-bucket/lsvfs/pg/");
        p.backing_store = PathBuf::from("s3://my-bucket");
        assert_eq!(
            p.store_location().unwrap(),
            StoreLocation::S3 {
                bucket: "my-bucket".into(),
                prefix: String::new()
            }
        );
        for bad in [
            "s3://ab/x",
            "s3://-bucket/x",
            "s3://bucket/../x",
            "s3://bucket/a b",
            "s3://user@bucket/x",
            "s3://bucket:9000/x",
            "s3://bucket/x?y",
        ] {
            p.backing_store = PathBuf::from(bad);
            let e = p.validate().unwrap_err().to_string();
            assert!(e.starts_with("backing_store: s3://"), "{bad}: {e}");
        }
        p.backing_store = PathBuf::from("http://host/bucket");
        let e = p.validate().unwrap_err().to_string();
        assert!(e.contains("only s3:// URLs"), "{e}");
    }
}
