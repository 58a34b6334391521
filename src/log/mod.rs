//! The segment log: files, the writer thread, recovery and the catalog of
//! sync points. [`Shared`] is the state the writer publishes and readers use.

pub mod catalog;
pub mod lock;
pub mod reader;
pub mod recovery;
pub mod segment;
pub mod writer;

use crate::disk::{Disk, FileIo};
use crate::error::{Error, Result, io};
use crate::format::{Lsn, VolumeId};
use crate::index::Index;
use crate::sync::lock;
use catalog::Catalog;
use crossbeam_channel::{Receiver, Sender, bounded};
use reader::Segments;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Who asks for an fdatasync of the tail segment (for [`FdatasyncHook`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncSite {
    /// The writer sealing a full segment.
    Seal,
    /// The syncer making a batch durable for fsync, sync points, close.
    Syncer,
}

/// A test hook called in place of fdatasync on a tail segment, to inject
/// the writeback errors a real disk gives at its own moments.
#[doc(hidden)]
pub type FdatasyncHook = Arc<dyn Fn(SyncSite, u64) -> std::io::Result<()> + Send + Sync>;

/// The segment being appended to, shared by the writer (which seals it)
/// and the syncer (which makes batches durable). Their fdatasyncs are
/// serialised with their error handling: Linux reports a writeback error
/// once per open file, so of two concurrent callers one could see the
/// error and the other a false success.
pub struct TailFile {
    file: Box<dyn FileIo>,
    seq: u64,
    sync: Mutex<()>,
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
            sync: Mutex::new(()),
        }
    }

    /// fdatasync, refused once the volume is poisoned, and poisoning it on
    /// failure before anyone else may fdatasync this file: a success after
    /// an error someone else took proves nothing.
    pub fn sync_data(&self, shared: &Shared, site: SyncSite) -> Result<()> {
        let _serial = lock(&self.sync);
        shared.check()?;
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
}

/// State shared by the writer thread and every reader of the live volume.
pub struct Shared {
    /// Where the volume's files are.
    pub disk: Arc<dyn Disk>,
    pub volume_id: VolumeId,
    pub seg_dir: PathBuf,
    pub block_size: u32,
    pub segment_size: u64,
    pub index: RwLock<Index>,
    pub segments: Arc<Segments>,
    pub catalog: Mutex<Catalog>,
    /// The next inode number to hand out; inode numbers are never reused.
    pub next_ino: AtomicU64,
    /// The oldest segment that may still hold a live record.
    pub window_start: AtomicU64,
    /// The oldest segment whose file is in primary storage.
    pub primary_oldest: AtomicU64,
    /// The newest sealed segment (0 if none): the archiver's horizon.
    pub sealed: AtomicU64,
    /// Whether user writes are waiting for the archiver to make room.
    pub waiting: AtomicBool,
    /// Record bytes appended for users and copied forward by the archiver,
    /// since the volume was opened: their ratio is the write amplification.
    pub user_bytes: AtomicU64,
    pub copied_bytes: AtomicU64,
    /// Most segment bytes the live records may take (the capacity rule).
    pub capacity_bytes: u64,
    /// The writer wakes the archiver through this when it sealed a segment.
    pub archiver_wake: (Sender<()>, Receiver<()>),
    /// Recycled segment files waiting to be reused.
    pub free: Mutex<Vec<PathBuf>>,
    /// Tests: replaces fdatasync of tail segments.
    pub fdatasync_hook: Option<FdatasyncHook>,
    poison: Mutex<Option<String>>,
    durable: Mutex<Lsn>,
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        disk: Arc<dyn Disk>,
        volume_id: VolumeId,
        seg_dir: PathBuf,
        block_size: u32,
        segment_size: u64,
        segments: Arc<Segments>,
        index: Index,
        catalog: Catalog,
        next_ino: u64,
        window_start: u64,
        primary_oldest: u64,
        capacity_bytes: u64,
        free: Vec<PathBuf>,
    ) -> Self {
        Shared {
            disk,
            volume_id,
            segments,
            seg_dir,
            block_size,
            segment_size,
            index: RwLock::new(index),
            catalog: Mutex::new(catalog),
            next_ino: AtomicU64::new(next_ino),
            window_start: AtomicU64::new(window_start),
            primary_oldest: AtomicU64::new(primary_oldest),
            sealed: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            user_bytes: AtomicU64::new(0),
            copied_bytes: AtomicU64::new(0),
            archiver_wake: bounded(1),
            capacity_bytes,
            free: Mutex::new(free),
            fdatasync_hook: None,
            poison: Mutex::new(None),
            durable: Mutex::new(Lsn { seq: 0, offset: 0 }),
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

    /// Moves the durable position forward (the writer's seals and the
    /// syncer's fdatasyncs both report it; never backward).
    fn set_durable(&self, lsn: Lsn) {
        let mut durable = lock(&self.durable);
        *durable = (*durable).max(lsn);
    }

    pub fn allocate_ino(&self) -> u64 {
        self.next_ino.fetch_add(1, Ordering::SeqCst)
    }
}
