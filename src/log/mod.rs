//! The segment log: files, the writer thread, recovery and the catalog of
//! sync points. [`Shared`] is the state the writer publishes and readers use.

pub mod catalog;
pub mod lock;
pub mod reader;
pub mod recovery;
pub mod segment;
pub mod writer;

use crate::error::{Error, Result};
use crate::format::{Lsn, VolumeId};
use crate::index::Index;
use catalog::Catalog;
use reader::Segments;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// State shared by the writer thread and every reader of the live volume.
pub struct Shared {
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
    /// Recycled segment files waiting to be reused.
    pub free: Mutex<Vec<PathBuf>>,
    poison: Mutex<Option<String>>,
    durable: Mutex<Lsn>,
}

/// Locks a mutex, carrying on with the data if a panicking thread held it:
/// every structure guarded here stays consistent between statements.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        volume_id: VolumeId,
        seg_dir: PathBuf,
        block_size: u32,
        segment_size: u64,
        index: Index,
        catalog: Catalog,
        next_ino: u64,
        window_start: u64,
        free: Vec<PathBuf>,
    ) -> Self {
        Shared {
            volume_id,
            segments: Arc::new(Segments::new(seg_dir.clone(), segment_size)),
            seg_dir,
            block_size,
            segment_size,
            index: RwLock::new(index),
            catalog: Mutex::new(catalog),
            next_ino: AtomicU64::new(next_ino),
            window_start: AtomicU64::new(window_start),
            free: Mutex::new(free),
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

    fn set_durable(&self, lsn: Lsn) {
        *lock(&self.durable) = lsn;
    }

    pub fn allocate_ino(&self) -> u64 {
        self.next_ino.fetch_add(1, Ordering::SeqCst)
    }
}
