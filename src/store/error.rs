//! The errors of backing stores and of the archived objects in them. They
//! sit beside the store trait, below the log and the archive, so that the
//! engine's [`crate::Error`] wraps them without depending on the archive.

use crate::format::DecodeError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("object {name} is not in the backing store {store}")]
    NotFound { store: String, name: String },
    #[error(
        "object {name} in {store} has {size} bytes; cannot read {len} bytes at offset {offset}"
    )]
    Range {
        store: String,
        name: String,
        offset: u64,
        len: u64,
        size: u64,
    },
    #[error("invalid object name {0:?}")]
    InvalidName(String),
    #[error("object {name} already exists in the backing store {store}")]
    Exists { store: String, name: String },
    #[error("cannot {op} {name} in backing store {store}: {source}")]
    Io {
        store: String,
        op: &'static str,
        name: String,
        source: std::io::Error,
    },
    /// A remote store whose endpoint answers no connection (after retries).
    #[error(
        "cannot {op} {name} in backing store {store}: endpoint {endpoint} is unreachable: {reason}"
    )]
    Unreachable {
        store: String,
        endpoint: String,
        op: &'static str,
        name: String,
        reason: String,
    },
    #[error("cannot {op} {name} in backing store {store}: bucket {bucket} does not exist")]
    NoBucket {
        store: String,
        bucket: String,
        op: &'static str,
        name: String,
    },
    /// The server refused the credentials or the request (401, 403).
    #[error(
        "cannot {op} {name} in backing store {store}: access denied ({reason}); check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket's policy"
    )]
    Denied {
        store: String,
        op: &'static str,
        name: String,
        reason: String,
    },
    /// The store cannot be set up from its URL and the environment.
    #[error("cannot use backing store {store}: {reason}")]
    Config { store: String, reason: String },
}

impl StoreError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
}

#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("archived segment {seq} ({object} in {store}) is damaged: {source}")]
    Damaged {
        seq: u64,
        object: String,
        store: String,
        source: DecodeError,
    },
    #[error(
        "object {object} in {store} holds other bytes than segment {seq} of this volume: another volume with the same id (a copy of this volume's directory?) stores into it; refusing to replace it or to recycle the segment"
    )]
    Conflict {
        seq: u64,
        object: String,
        store: String,
    },
    #[error("archived object {object} in {store} does not hold segment {seq} of this volume")]
    Foreign {
        seq: u64,
        object: String,
        store: String,
    },
    #[error(
        "segment {seq} is neither in primary storage nor in the backing store {store} (object {object})"
    )]
    Lost {
        seq: u64,
        object: String,
        store: String,
    },
    #[error("cannot compress segment {seq}: {source}")]
    Compress { seq: u64, source: std::io::Error },
    #[error(
        "segment {seq} read back from {store} differs from what was written; the object is not trusted"
    )]
    Mismatch { seq: u64, store: String },
}
