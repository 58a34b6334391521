//! Reading records by position, from any thread, without the writer.
//!
//! Keeps one read-only handle per segment, opened on first use. Reads go to
//! the page cache or the disk directly; every record is checksummed and its
//! key compared with what the caller expects before any byte is handed out.

use super::segment;
use crate::error::{Error, Result};
use crate::format::record::RECORD_HEADER_LEN;
use crate::format::{DecodeError, Lsn, RecordView};
use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// Records longer than this are read in two steps (header, then the rest).
const FIRST_READ: usize = 8192;

pub struct Segments {
    dir: PathBuf,
    segment_size: u64,
    files: RwLock<HashMap<u64, Arc<File>>>,
}

impl Segments {
    pub fn new(dir: PathBuf, segment_size: u64) -> Self {
        Segments {
            dir,
            segment_size,
            files: RwLock::new(HashMap::new()),
        }
    }

    fn file(&self, seq: u64) -> Result<Arc<File>> {
        if let Some(f) = self
            .files
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&seq)
        {
            return Ok(f.clone());
        }
        let file = Arc::new(segment::open_read(&self.dir, seq)?);
        let mut files = self.files.write().unwrap_or_else(|p| p.into_inner());
        Ok(files.entry(seq).or_insert(file).clone())
    }

    /// Drops the handle of a segment whose primary file went away.
    pub fn forget(&self, seq: u64) {
        self.files
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&seq);
    }

    /// Reads up to `len` bytes at `lsn`, fewer if the segment ends first.
    pub fn read(&self, lsn: Lsn, len: usize) -> Result<Vec<u8>> {
        let len = len.min((self.segment_size - lsn.offset as u64) as usize);
        let mut buf = vec![0u8; len];
        segment::read_exact_at(&*self.file(lsn.seq)?, lsn.seq, &mut buf, lsn.offset as u64)?;
        Ok(buf)
    }

    /// Reads the whole record at `lsn` and verifies its checksum.
    pub fn read_record(&self, lsn: Lsn) -> Result<Vec<u8>> {
        let mut buf = self.read(lsn, FIRST_READ)?;
        let header = crate::format::RecordHeader::decode(&buf).map_err(corrupt(lsn))?;
        let len = header.len as usize;
        if len > buf.len() {
            if len < RECORD_HEADER_LEN || lsn.offset as u64 + len as u64 > self.segment_size {
                return Err(corrupt(lsn)(DecodeError::Invalid("record length")));
            }
            buf = self.read(lsn, len)?;
        }
        buf.truncate(len);
        RecordView::parse(&buf).map_err(corrupt(lsn))?;
        Ok(buf)
    }
}

/// Maps a decode failure of the record at `lsn` to a corruption error.
pub fn corrupt(lsn: Lsn) -> impl Fn(DecodeError) -> Error {
    move |source| Error::Corrupt {
        seq: lsn.seq,
        offset: lsn.offset as u64,
        what: "record",
        source,
    }
}
