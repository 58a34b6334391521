//! The segment log: files, the writer, group commit, recovery and the
//! catalog of sync points. [`Shared`] is the state the writer publishes and
//! readers use.

pub mod catalog;
mod commit;
pub mod inode_cache;
pub mod lock;
pub mod reader;
pub mod recovery;
pub mod retired;
pub mod segment;
pub mod tail;
pub mod writer;

use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::format::{Lsn, VolumeId};
use crate::index::Index;
use crate::sync::lock;
use catalog::Catalog;
use crossbeam_channel::{Receiver, Sender, bounded};
use reader::Segments;
use recovery::Recovered;
use retired::RetiredSegments;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Who asks for an fdatasync of the tail segment (for [`FdatasyncHook`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncSite {
    /// The writer sealing a full segment.
    Seal,
    /// A group commit for fsync, sync points, close.
    Commit,
}

/// A test hook called in place of fdatasync on a tail segment, to inject
/// the writeback errors a real disk gives at its own moments.
#[doc(hidden)]
pub type FdatasyncHook = Arc<dyn Fn(SyncSite, u64) -> std::io::Result<()> + Send + Sync>;

/// Where a log's segments are and their fixed shape.
pub struct LogConfig {
    /// Where the volume's files are.
    pub disk: Arc<dyn Disk>,
    /// The segments directory.
    pub dir: PathBuf,
    pub volume_id: VolumeId,
    pub block_size: u32,
    pub segment_size: u64,
    /// Most segment bytes the live records may take (the capacity rule).
    pub capacity_bytes: u64,
    /// Tests: replaces fdatasync of tail segments.
    pub fdatasync_hook: Option<FdatasyncHook>,
}

/// State shared by the writer and every reader of the live volume.
/// The working set moves only through its methods: the writer seals and
/// opens segments, the archiver advances the window and recycles.
pub struct Shared {
    disk: Arc<dyn Disk>,
    volume_id: VolumeId,
    seg_dir: PathBuf,
    block_size: u32,
    segment_size: u64,
    index: RwLock<Index>,
    segments: Arc<Segments>,
    catalog: Mutex<Catalog>,
    /// The next inode number to hand out; inode numbers are never reused.
    next_ino: AtomicU64,
    /// The oldest segment that may still hold a live record.
    window_start: AtomicU64,
    /// The oldest segment whose file is in primary storage.
    primary_oldest: AtomicU64,
    /// The newest sealed segment (0 if none): the archiver's horizon.
    sealed: AtomicU64,
    /// Whether user writes are waiting for the archiver to make room.
    waiting: AtomicBool,
    /// Record bytes appended for users and copied forward by the archiver,
    /// since the volume was opened: their ratio is the write amplification.
    user_bytes: AtomicU64,
    copied_bytes: AtomicU64,
    capacity_bytes: u64,
    /// The writer wakes the archiver through this when it sealed a segment.
    archiver_wake: (Sender<()>, Receiver<()>),
    /// Recycled segment files waiting to be reused.
    free: Mutex<Vec<PathBuf>>,
    fdatasync_hook: Option<FdatasyncHook>,
    poison: Mutex<Option<String>>,
    durable: Mutex<Lsn>,
}

/// Write amplification's two parts, since the volume was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Appended {
    pub user_bytes: u64,
    pub copied_bytes: u64,
}

impl Shared {
    fn new(
        config: LogConfig,
        segments: Arc<Segments>,
        catalog: Catalog,
        recovered: &mut Recovered,
    ) -> Self {
        let index = std::mem::replace(&mut recovered.index, Index::new(config.block_size));
        Shared {
            disk: config.disk,
            volume_id: config.volume_id,
            segments,
            seg_dir: config.dir,
            block_size: config.block_size,
            segment_size: config.segment_size,
            index: RwLock::new(index),
            catalog: Mutex::new(catalog),
            next_ino: AtomicU64::new(recovered.next_ino),
            window_start: AtomicU64::new(recovered.window_start),
            primary_oldest: AtomicU64::new(recovered.primary_oldest),
            sealed: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            user_bytes: AtomicU64::new(0),
            copied_bytes: AtomicU64::new(0),
            archiver_wake: bounded(1),
            capacity_bytes: config.capacity_bytes,
            free: Mutex::new(std::mem::take(&mut recovered.free)),
            fdatasync_hook: config.fdatasync_hook,
            poison: Mutex::new(None),
            durable: Mutex::new(Lsn { seq: 0, offset: 0 }),
        }
    }

    pub fn disk(&self) -> &dyn Disk {
        &*self.disk
    }

    /// The segments directory.
    pub fn dir(&self) -> &Path {
        &self.seg_dir
    }

    pub fn volume_id(&self) -> VolumeId {
        self.volume_id
    }

    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// The live index.
    pub fn index(&self) -> &RwLock<Index> {
        &self.index
    }

    /// Reads records by position, from primary storage or retired.
    pub fn segments(&self) -> &Arc<Segments> {
        &self.segments
    }

    pub fn catalog(&self) -> &Mutex<Catalog> {
        &self.catalog
    }

    /// Woken when the writer sealed a segment.
    pub fn sealed_signal(&self) -> Receiver<()> {
        self.archiver_wake.1.clone()
    }

    /// Segment files in primary storage (sealed and open).
    pub fn segments_in_primary(&self) -> u64 {
        let oldest = self.primary_oldest.load(Ordering::SeqCst);
        (self.sealed.load(Ordering::SeqCst) + 2).saturating_sub(oldest)
    }

    /// The oldest segment in primary storage, if it is sealed (so it may
    /// be retired).
    pub fn oldest_sealed(&self) -> Option<u64> {
        let oldest = self.primary_oldest.load(Ordering::SeqCst);
        (oldest <= self.sealed.load(Ordering::SeqCst)).then_some(oldest)
    }

    /// The newest sealed segment (0 if none).
    pub fn sealed(&self) -> u64 {
        self.sealed.load(Ordering::SeqCst)
    }

    /// Segment `seq` holds no live record any more (its live records were
    /// copied forward and are durable): the window starts after it.
    pub fn advance_window(&self, seq: u64) {
        self.window_start.fetch_max(seq + 1, Ordering::SeqCst);
    }

    /// Takes segment `seq`, stored in the backing store, out of primary
    /// storage: reads go to the retired copy from now on, and its file is
    /// recycled for a later segment.
    pub fn recycle(&self, seq: u64) -> Result<()> {
        self.segments.retire(seq);
        let free = segment::recycle(&*self.disk, &self.seg_dir, seq)?;
        lock(&self.free).push(free);
        self.primary_oldest.fetch_max(seq + 1, Ordering::SeqCst);
        Ok(())
    }

    /// Whether user writes wait for the archiver to make room.
    pub fn writes_blocked(&self) -> bool {
        self.waiting.load(Ordering::SeqCst)
    }

    pub fn appended(&self) -> Appended {
        Appended {
            user_bytes: self.user_bytes.load(Ordering::Relaxed),
            copied_bytes: self.copied_bytes.load(Ordering::Relaxed),
        }
    }

    /// Refuses work once a write or fsync failed.
    pub fn check(&self) -> Result<()> {
        match &*lock(&self.poison) {
            Some(why) => Err(Error::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    /// Marks the volume failed: no write is accepted after this.
    pub fn poison(&self, why: &Error) {
        let mut p = lock(&self.poison);
        if p.is_none() {
            log::error!("volume poisoned, refusing further writes: {why}");
            *p = Some(why.to_string());
        }
    }

    /// Everything before this position is on stable storage.
    pub fn durable(&self) -> Lsn {
        *lock(&self.durable)
    }

    /// Moves the durable position forward (seals and group commits both
    /// report it; never backward).
    fn set_durable(&self, lsn: Lsn) {
        let mut durable = lock(&self.durable);
        *durable = (*durable).max(lsn);
    }

    /// Makes the catalog's entries durable; a failure poisons the volume
    /// (a writeback error is reported once: a later fsync could not vouch
    /// for the entries).
    pub fn sync_catalog(&self) -> Result<()> {
        self.check()?;
        let synced = lock(&self.catalog).sync();
        if let Err(e) = &synced {
            self.poison(e);
        }
        synced
    }

    pub fn allocate_ino(&self) -> u64 {
        self.next_ino.fetch_add(1, Ordering::SeqCst)
    }
}

/// Starts the log where recovery left it: the shared state, and the tail
/// the writer appends to. A tail cut at a torn record is sealed where the
/// valid log ends and appending goes on in a new segment: appending after
/// the cut in place could make the stale records behind it valid again
/// (the chain of CRCs would accept them if the first new record came out
/// byte for byte as the torn one; copy-forward and orphan deletion
/// re-encode deterministically).
pub fn resume(
    config: LogConfig,
    retired: Arc<dyn RetiredSegments>,
    catalog: Catalog,
    mut recovered: Recovered,
) -> Result<(Arc<Shared>, tail::Tail)> {
    let segments = Arc::new(Segments::new(
        config.disk.clone(),
        config.dir.clone(),
        config.volume_id,
        config.segment_size,
        retired,
        recovered.primary_oldest,
    ));
    let shared = Arc::new(Shared::new(config, segments, catalog, &mut recovered));
    let next_sync_id = recovered.next_sync_id;
    let tail = match recovered.tail {
        Some(mut t) if recovered.cut => {
            tail::seal(&shared, &mut t)?;
            tail::open_segment(&shared, t.header.seq + 1, next_sync_id)?
        }
        Some(t) => t,
        None => tail::open_segment(&shared, recovered.next_seq, next_sync_id)?,
    };
    // The writer counts the tail's end as durable from the start (a clean
    // close may record it as such): its name must be, too.
    tail.file.make_named(&shared)?;
    shared.sealed.store(tail.header.seq - 1, Ordering::SeqCst);
    shared.segments.set_tail(tail.header.seq);
    Ok((shared, tail))
}
