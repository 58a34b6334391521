//! The segment being appended to: its file, shared by the writer and group
//! commits with their fdatasyncs serialised, the writer's position in it,
//! sealing it when full, and creating the next one.

use super::{Shared, SyncSite, segment};
use crate::disk::FileIo;
use crate::error::{Error, Result, io};
use crate::format::segment::{FOOTER_LEN, SEGMENT_HEADER_LEN};
use crate::format::{Footer, Lsn, SegmentHeader};
use crate::sync::lock;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// The segment being appended to, shared by the writer (which seals it)
/// and group commits (which make appends durable). Their fdatasyncs are
/// serialised with their error handling: Linux reports a writeback error
/// once per open file, so of two concurrent callers one could see the
/// error and the other a false success.
pub struct TailFile {
    file: Box<dyn FileIo>,
    seq: u64,
    /// Serialises the fdatasyncs; holds whether the file's name may not be
    /// durable yet. A new segment is renamed into place without a
    /// directory fsync (see [`segment::create`]), and a tail found by
    /// recovery may have been named by a killed process that never fsynced
    /// the directory: the first fdatasync fsyncs it before, so no record is
    /// ever durable, and acknowledged, in a file a power loss could unname.
    sync: Mutex<bool>,
}

impl std::ops::Deref for TailFile {
    type Target = dyn FileIo;
    fn deref(&self) -> &(dyn FileIo + 'static) {
        &*self.file
    }
}

impl TailFile {
    pub fn new(file: Box<dyn FileIo>, seq: u64) -> Self {
        TailFile {
            file,
            seq,
            sync: Mutex::new(true),
        }
    }

    /// fdatasync, refused once the volume is poisoned, and poisoning it on
    /// failure before anyone else may fdatasync this file: a success after
    /// an error someone else took proves nothing. The first one makes the
    /// file's name durable before.
    pub fn sync_data(&self, shared: &Shared, site: SyncSite) -> Result<()> {
        let mut unnamed = lock(&self.sync);
        shared.check()?;
        Self::name(shared, &mut unnamed)?;
        let done = match &shared.fdatasync_hook {
            Some(hook) => hook(site, self.seq),
            None => self.file.sync_data(),
        };
        if let Err(e) = done.map_err(io(format!("cannot fsync segment {}", self.seq))) {
            shared.poison(&e);
            return Err(e);
        }
        Ok(())
    }

    /// Makes the file's name durable now, for a tail whose end counts as
    /// durable without an fdatasync (the writer's start, see
    /// [`super::resume`]).
    pub fn make_named(&self, shared: &Shared) -> Result<()> {
        Self::name(shared, &mut lock(&self.sync))
    }

    /// fsyncs the segments directory if `unnamed`, poisoning the volume
    /// on failure.
    fn name(shared: &Shared, unnamed: &mut bool) -> Result<()> {
        if *unnamed {
            if let Err(e) = segment::fsync_dir(&*shared.disk, &shared.seg_dir) {
                shared.poison(&e);
                return Err(e);
            }
            *unnamed = false;
        }
        Ok(())
    }
}

/// The segment being appended to.
pub struct Tail {
    /// Shared with group commits, which fdatasync it outside the writer's
    /// lock.
    pub file: Arc<TailFile>,
    pub header: SegmentHeader,
    pub pos: u32,
    pub last_crc: u32,
    /// Encoded summary entries of the records written so far.
    pub summary: Vec<u8>,
    pub count: u32,
    /// Summary and footer are written: nothing more goes in. Set when the
    /// next segment could not be created yet (a full disk); the next group
    /// tries again.
    pub sealed: bool,
    /// Offset up to which writeback was started (see the writer's
    /// `WRITEBACK_CHUNK`).
    pub hinted: u32,
    /// Offset up to which the file's blocks are known to be written (see
    /// [`Tail::zero_ahead`]).
    pub zeroed: u32,
}

/// Bytes of zeros written ahead of the records at a time.
const ZERO_CHUNK: u32 = 1 << 20;

impl Tail {
    /// Makes sure the file's blocks up to `end` have been written before
    /// records land there, by writing zeros a chunk at a time ahead of
    /// them. A new segment file is allocated with fallocate, which ext4 and
    /// XFS record as unwritten extents: the first write into one converts
    /// it, a metadata change that the next fdatasync has to commit to the
    /// journal. Written once a chunk ahead, the conversion costs one journal
    /// commit per chunk instead of one per fdatasync (measured: fdatasync
    /// after a 4 KiB append p50 386 µs → 263 µs). The zeros go to the page
    /// cache and are written out with the records; recycled files were
    /// written before and need none.
    pub fn zero_ahead(&mut self, end: u32, segment_size: u64) -> Result<()> {
        let limit = (segment_size - FOOTER_LEN as u64) as u32;
        while self.zeroed < end.min(limit) {
            let n = ZERO_CHUNK.min(limit - self.zeroed);
            self.file
                .write_all_at(&vec![0; n as usize], self.zeroed as u64)
                .map_err(io(format!(
                    "cannot write zeros ahead in segment {}",
                    self.header.seq
                )))?;
            self.zeroed += n;
        }
        Ok(())
    }
}

/// Seals `tail` where it ends: its summary after the last record, then the
/// footer in the segment's last bytes, each made durable (a footer never
/// vouches for a summary that is not on disk). Nothing is appended to a
/// sealed segment again.
pub fn seal(shared: &Shared, tail: &mut Tail) -> Result<()> {
    let seq = tail.header.seq;
    let footer = Footer {
        seq,
        records_end: tail.pos,
        record_count: tail.count,
        last_crc: tail.last_crc,
        summary_len: tail.summary.len() as u32,
        summary_crc: crc32c::crc32c(&tail.summary),
    };
    let footer_at = shared.segment_size - FOOTER_LEN as u64;
    let ctx = || format!("cannot seal segment {seq}");
    tail.file
        .write_all_at(&tail.summary, tail.pos as u64)
        .map_err(io(ctx()))?;
    tail.file.sync_data(shared, SyncSite::Seal)?;
    tail.file
        .write_all_at(&footer.encode(), footer_at)
        .map_err(io(ctx()))?;
    tail.file.sync_data(shared, SyncSite::Seal)?;
    tail.sealed = true;
    shared.set_durable(Lsn {
        seq,
        offset: tail.pos,
    });
    shared.sealed.store(seq, Ordering::SeqCst);
    Ok(())
}

/// Makes a spare file for segment `seq` and adds it to the free pool (see
/// [`segment::make_spare`]).
pub fn make_spare(shared: &Shared, seq: u64) -> Result<()> {
    let path = segment::make_spare(&*shared.disk, &shared.seg_dir, seq, shared.segment_size)?;
    lock(&shared.free).push(path);
    Ok(())
}

/// Creates segment `seq` (reusing a recycled file if any) as the new tail.
pub fn open_segment(shared: &Shared, seq: u64, next_sync_id: u64) -> Result<Tail> {
    let header = SegmentHeader {
        volume_id: shared.volume_id,
        seq,
        segment_size: shared.segment_size,
        block_size: shared.block_size,
        window_start: shared.window_start.load(Ordering::SeqCst),
        created_ns: crate::time::now_ns(),
        next_ino: shared.next_ino.load(Ordering::SeqCst),
        next_sync_id,
    };
    let reuse = lock(&shared.free).pop();
    let zeroed = match &reuse {
        Some(path) if !segment::is_spare(path) => shared.segment_size as u32,
        _ => SEGMENT_HEADER_LEN as u32,
    };
    let file = match segment::create(&*shared.disk, &shared.seg_dir, &header, reuse.as_deref()) {
        Ok(file) => file,
        Err(e) => {
            if let Some(path) = reuse {
                lock(&shared.free).push(path);
            }
            return Err(match e {
                Error::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                    Error::NoSpace(format!(
                        "no room in {} for segment {seq}",
                        shared.seg_dir.display()
                    ))
                }
                e => e,
            });
        }
    };
    let (_, crc) = header.encode();
    Ok(Tail {
        file: Arc::new(TailFile::new(file, seq)),
        header,
        pos: SEGMENT_HEADER_LEN as u32,
        last_crc: crc,
        summary: Vec::new(),
        count: 0,
        sealed: false,
        hinted: SEGMENT_HEADER_LEN as u32,
        zeroed,
    })
}
