//! Reading records by position, from any thread, without the writer.
//!
//! Keeps one read-only handle per segment, opened on first use. Reads go to
//! the page cache or the disk directly; segments retired from primary
//! storage are read through [`RetiredSegments`] (the archive, with its
//! verified frame cache).
//! Every record is checksummed and its key compared with what the caller
//! expects before any byte is handed out.
//!
//! A reader may hold a position in a segment that the archiver retires
//! before the read happens (the live index moved on meanwhile). Retiring
//! takes the write side of `pin` while it marks the segment retired, and
//! primary reads hold the read side, so no read ever lands in a recycled
//! file that was reused for a newer segment: it goes to the archive, which
//! holds the same bytes.

use super::inode_cache::InodeCache;
use super::recovery::{SegmentRecords, segment_records};
use super::retired::RetiredSegments;
use super::segment;
use crate::disk::{Disk, FileIo};
use crate::error::{Error, Result};
use crate::format::record::RECORD_HEADER_LEN;
use crate::format::{DecodeError, Lsn, RecordView, VolumeId};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Records longer than this are read in two steps (header, then the rest).
const FIRST_READ: usize = 8192;

pub struct Segments {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    volume_id: VolumeId,
    segment_size: u64,
    files: RwLock<HashMap<u64, Arc<dyn FileIo>>>,
    retired: Arc<dyn RetiredSegments>,
    /// Segments below this are no longer in primary storage.
    retired_below: AtomicU64,
    pin: RwLock<()>,
    /// Another process appends and recycles (a view opened beside a
    /// mount): after each primary read, check the file is still there.
    foreign: bool,
    /// The segment being appended to (0: unknown). Its handle reads with
    /// the kernel's read-ahead off: read-ahead past the records would fill
    /// the page cache with zeros of the unwritten rest of the file, which
    /// the writer then overwrites (measured: 40 % of the daemon's time in a
    /// sequential write went to that zeroing). Sealed segments read ahead.
    tail: AtomicU64,
    /// Inode records decoded, by position.
    inodes: InodeCache,
}

impl Segments {
    pub fn new(
        disk: Arc<dyn Disk>,
        dir: PathBuf,
        volume_id: VolumeId,
        segment_size: u64,
        retired: Arc<dyn RetiredSegments>,
        retired_below: u64,
    ) -> Self {
        Segments {
            disk,
            dir,
            volume_id,
            segment_size,
            files: RwLock::new(HashMap::new()),
            retired,
            retired_below: AtomicU64::new(retired_below),
            pin: RwLock::new(()),
            foreign: false,
            tail: AtomicU64::new(0),
            inodes: InodeCache::default(),
        }
    }

    /// Reads of a volume whose primary storage is not here (a store read
    /// on another host): every segment comes from `retired`.
    pub fn retired_only(
        volume_id: VolumeId,
        segment_size: u64,
        retired: Arc<dyn RetiredSegments>,
    ) -> Self {
        Segments::new(
            crate::disk::real(),
            PathBuf::new(),
            volume_id,
            segment_size,
            retired,
            u64::MAX,
        )
    }

    /// Inode records decoded, by position: filled by readers and by the
    /// writer as it appends.
    pub fn inodes(&self) -> &InodeCache {
        &self.inodes
    }

    /// The writer opened segment `seq` as its tail; the one before it is
    /// sealed and may be read ahead again.
    pub fn set_tail(&self, seq: u64) {
        self.tail.store(seq, Ordering::SeqCst);
        let files = self.files.read().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = seq.checked_sub(1).and_then(|s| files.get(&s)) {
            f.advise_random(false);
        }
    }

    /// For readers beside another process that owns the volume: the pin
    /// does not reach into that process, so every primary read is followed
    /// by a check that the file read is still segment `seq`; a file
    /// recycled meanwhile (it is in the archive by then) is read from the
    /// archive instead. Recycling renames before it reuses, so a file still
    /// under its name after the read was not being reused during it.
    pub fn shared_with_a_writer(mut self) -> Self {
        self.foreign = true;
        self
    }

    /// Whether the handle of segment `seq` still is the file of that name.
    fn still_there(&self, seq: u64, file: &dyn FileIo) -> bool {
        if !self.foreign {
            return true;
        }
        let here = self
            .disk
            .stat(&segment::segment_path(&self.dir, seq), false);
        match (here, file.identity()) {
            (Ok(a), Ok(b)) => (a.dev, a.ino) == b,
            _ => false,
        }
    }

    fn in_primary(&self, seq: u64) -> bool {
        seq >= self.retired_below.load(Ordering::SeqCst)
    }

    /// Forgets a segment another process recycled.
    fn gone(&self, seq: u64) {
        self.files
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&seq);
    }

    /// Marks segments up to `seq` retired: from now on they are read from
    /// the archive. Waits for reads of them in progress.
    pub fn retire(&self, seq: u64) {
        let _pin = self.pin.write().unwrap_or_else(|p| p.into_inner());
        self.retired_below.fetch_max(seq + 1, Ordering::SeqCst);
        self.files
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|&s, _| s > seq);
    }

    /// The records of segment `seq`, from primary storage or the archive.
    pub fn records(&self, seq: u64) -> Result<SegmentRecords> {
        if self.in_primary(seq) {
            let _pin = self.pin.read().unwrap_or_else(|p| p.into_inner());
            if self.in_primary(seq) {
                match segment_records(&*self.disk, &self.dir, seq, self.volume_id) {
                    Err(Error::SegmentMissing { .. }) => {}
                    Ok((file, r)) if self.still_there(seq, &*file) => return Ok(r),
                    Ok(_) => self.gone(seq),
                    Err(e) if !self.foreign => return Err(e),
                    // Read while it was being recycled: the archive has it.
                    Err(_) => self.gone(seq),
                }
            }
        }
        self.retired.records(seq)
    }

    fn file(&self, seq: u64) -> Result<Arc<dyn FileIo>> {
        if let Some(f) = self
            .files
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&seq)
        {
            return Ok(f.clone());
        }
        let file: Arc<dyn FileIo> = segment::open_read(&*self.disk, &self.dir, seq)?.into();
        if seq == self.tail.load(Ordering::SeqCst) {
            file.advise_random(true);
        }
        let mut files = self.files.write().unwrap_or_else(|p| p.into_inner());
        Ok(files.entry(seq).or_insert(file).clone())
    }

    /// Reads up to `len` bytes at `lsn`, fewer if the segment ends first.
    pub fn read(&self, lsn: Lsn, len: usize) -> Result<Vec<u8>> {
        if self.in_primary(lsn.seq) {
            let _pin = self.pin.read().unwrap_or_else(|p| p.into_inner());
            if self.in_primary(lsn.seq) {
                match self.file(lsn.seq) {
                    Ok(file) => {
                        let len = len.min((self.segment_size - lsn.offset as u64) as usize);
                        let buf = segment::read_vec_at(&*file, lsn.seq, len, lsn.offset as u64)?;
                        if self.still_there(lsn.seq, &*file) {
                            return Ok(buf);
                        }
                        self.gone(lsn.seq);
                    }
                    Err(Error::SegmentMissing { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.retired.read(lsn.seq, lsn.offset as u64, len)
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
