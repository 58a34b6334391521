//! The engine's error type. The FUSE layer maps it to errno in one place;
//! the CLI prints it as one line.

use crate::format::DecodeError;
use crate::policy::PolicyError;
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// Stored bytes failed a check: never served, always reported with where.
    #[error("corrupt {what} in segment {seq} at offset {offset}: {source}")]
    Corrupt {
        seq: u64,
        offset: u64,
        what: &'static str,
        source: DecodeError,
    },
    /// The log stops short of data that was acknowledged as durable: not a
    /// torn tail but damage, so nothing is cut and the volume is not opened.
    #[error(
        "segment {seq} is damaged at offset {offset} ({reason}), before {lost} that was acknowledged as durable; refusing to open"
    )]
    DurableDamaged {
        seq: u64,
        offset: u64,
        reason: String,
        lost: String,
    },
    /// The volume's files contradict each other; nothing is changed.
    #[error("volume is inconsistent: {0}")]
    Inconsistent(String),
    #[error("segment {seq} ({path}) belongs to another volume")]
    ForeignSegment { seq: u64, path: PathBuf },
    #[error("segment {seq} is not in primary storage")]
    SegmentMissing { seq: u64 },
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The backing store failed, or an archived object is missing or damaged.
    #[error(transparent)]
    Archive(#[from] crate::store::ArchiveError),
    #[error("volume {path} does not exist; create it with `lsvfs create {path}`")]
    NoVolume { path: PathBuf },
    #[error(
        "{path} is not an lsvfs volume (no lsvfs.toml); `lsvfs create` makes one in a new or empty directory"
    )]
    NotAVolume { path: PathBuf },
    #[error(
        "{path} is not an lsvfs volume (no lsvfs.toml), nor a backing store holding a volume's archived segments"
    )]
    NotASource { path: PathBuf },
    #[error(
        "the backing store {path} holds the segments of several volumes ({ids:?}); select one with --volume ID"
    )]
    SeveralVolumes { path: PathBuf, ids: Vec<String> },
    #[error("{path} holds no volume {id} (it holds {ids:?})")]
    NoSuchVolume {
        path: PathBuf,
        id: String,
        ids: Vec<String>,
    },
    #[error("{path} is already an lsvfs volume")]
    AlreadyAVolume { path: PathBuf },
    #[error("{path} is not empty; lsvfs create needs a new or empty directory")]
    NotEmpty { path: PathBuf },
    #[error("volume {path} is in use by {holder}; stop that process or unmount the volume first")]
    Locked { path: PathBuf, holder: String },
    #[error("volume refuses writes after an earlier failure ({0}); remount to recover")]
    Poisoned(String),
    #[error("volume is closed")]
    Closed,
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("atomic group of {len} bytes does not fit in a segment (at most {max})")]
    TooLarge { len: usize, max: usize },
    /// Live data would no longer fit the working set, or primary storage
    /// is full.
    #[error("no space: {0}")]
    NoSpace(String),
    #[error("no sync point {0}")]
    UnknownSyncPoint(String),
    #[error(
        "{path} is a copy of the volume at {original} (same volume id {id}); two volumes with one id would overwrite each other's archived segments. Open the original, or remove it if this copy replaces it (a copy with its own id is not supported yet)"
    )]
    CopiedVolume {
        path: PathBuf,
        original: PathBuf,
        id: String,
    },
    /// A directory where another user could plant links or replace files.
    #[error(
        "{path} is {why}; lsvfs keeps a volume's files only in directories no other user can change (chown it to this user, chmod go-w)"
    )]
    UnsafeDir { path: PathBuf, why: String },
    /// A file or object of lsvfs's own (not a segment) failed its check.
    #[error("{what} is damaged: {source}")]
    Damaged { what: String, source: DecodeError },
    #[error("sync point {0} was pruned (forgotten by the retention policy)")]
    Pruned(u64),
    /// For crash tests: an operation stopped on purpose after a step.
    #[doc(hidden)]
    #[error("stopped on purpose after a step (crash tests)")]
    Halted,
    #[error("several sync points are labelled {label:?} (ids {ids:?}); name one by id")]
    AmbiguousSyncPoint { label: String, ids: Vec<u64> },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps an I/O error with what was being done.
pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}
