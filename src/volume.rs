//! A volume opened for writing: its policy, lock, log, live index and
//! threads. Opening one checks its files (see [`crate::layout`]), recovers
//! the log with [`recover`], and starts the writer and the archiver; views
//! of sync points are built from it with the same backward scan.

use crate::archive::Archive;
use crate::archive::archiver::{self, Archiver};
use crate::disk::Disk;
use crate::error::{Error, Result, io};
use crate::format::{Lsn, Record};
use crate::index::{Index, IndexStats};
use crate::layout;
use crate::log::catalog::{Catalog, SyncPoint};
use crate::log::lock::VolumeLock;
use crate::log::recovery::{Known, recover};
use crate::log::tail::Tail;
use crate::log::writer::Writer;
use crate::log::{self, FdatasyncHook, Shared, segment};
use crate::policy::Policy;
use crate::retention::forgotten::Forgotten;
use crate::status::{Status, StoreStatus, ratio};
use crate::store::BackingStore;
use crate::sync::lock;
use crate::tree::Tree;
use crate::view::View;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

pub use crate::format::ROOT_INO;

pub struct Volume {
    dir: PathBuf,
    disk: Arc<dyn Disk>,
    policy: Policy,
    shared: Arc<Shared>,
    archive: Arc<Archive>,
    writer: Arc<Writer>,
    /// Set once closed or crashed.
    stopped: bool,
    archiver: Option<archiver::Handle>,
    lock: Option<VolumeLock>,
}

/// How a volume is opened; [`Volume::open`] uses the defaults.
#[derive(Default)]
pub struct OpenOptions {
    /// Where the volume's files are; by default the machine's filesystem.
    pub disk: Option<Arc<dyn Disk>>,
    /// The backing store; by default the local directory the policy names.
    pub store: Option<Arc<dyn BackingStore>>,
    /// Open without the archiver: nothing is retired (for inspection).
    pub no_archiver: bool,
    /// For crash tests: the archiver stops for good after this retire step.
    pub halt_at: Option<archiver::Step>,
    /// Told how far recovery got: (segments read, segments in the window).
    pub progress: Option<Box<dyn Fn(u64, u64)>>,
    /// For failure tests: called in place of fdatasync on tail segments.
    #[doc(hidden)]
    pub fdatasync_hook: Option<FdatasyncHook>,
}

impl Volume {
    /// Creates a volume in `dir`, which must be absent or empty.
    pub fn create(dir: &Path, policy: &Policy) -> Result<()> {
        layout::create(&crate::disk::Real, dir, policy)
    }

    /// Creates a volume in `dir` on `disk`; `dir` must be absent or empty.
    pub fn create_on(disk: &dyn Disk, dir: &Path, policy: &Policy) -> Result<()> {
        layout::create(disk, dir, policy)
    }

    /// Opens a volume for writing: locks it, recovers the index and starts
    /// the writer and the archiver.
    pub fn open(dir: &Path) -> Result<Volume> {
        Self::open_with(dir, OpenOptions::default())
    }

    /// Opens a volume: checks and locks it, recovers its log (see
    /// [`recover`]; nothing is changed on disk before that succeeds), then
    /// records what recovery found and starts the threads.
    pub fn open_with(dir: &Path, options: OpenOptions) -> Result<Volume> {
        let disk = options.disk.unwrap_or_else(crate::disk::real);
        layout::check_volume(&*disk, dir)?;
        let policy = Policy::load(&*disk, dir)?;
        layout::check_private(&*disk, dir, &policy, options.store.is_none())?;
        let (mut vol_lock, found) = VolumeLock::acquire(&*disk, dir)?;
        layout::check_not_a_copy(&*disk, &found, &policy)?;
        let catalog = Catalog::open(&*disk, dir, false)?;
        let archive = layout::open_archive(&disk, dir, &policy, options.store)?;
        // A store that cannot be listed now is not an error: the live data
        // is all in primary storage, and the archiver lists it again later.
        if let Err(e) = archive.relist() {
            ::log::warn!("cannot list the backing store yet: {e}");
        }
        let config = layout::log_config(disk.clone(), dir, &policy, options.fdatasync_hook)?;
        let known = Known {
            retired: &*archive,
            catalog: &catalog,
            clean: found.clean,
        };
        let progress = options.progress.as_deref().unwrap_or(&|_, _| {});
        let recovered = recover(&config, &known, progress)?;

        let mut catalog = Catalog::open(&*disk, dir, true)?;
        // Also makes durable what a killed process added and never synced.
        catalog.append(&recovered.missing)?;
        for path in &recovered.staging {
            disk.remove_file(path)
                .map_err(io(format!("cannot remove {}", path.display())))?;
        }
        vol_lock.claim()?;
        let next_sync_id = recovered.next_sync_id;
        let (shared, tail) = log::resume(config, archive.clone(), catalog, recovered)?;
        let threads = Threads {
            no_archiver: options.no_archiver,
            halt_at: options.halt_at,
            prune: crate::prune::Auto::new(disk.clone(), dir),
        };
        let (writer, archiver) = threads.spawn(&shared, &archive, &policy, tail, next_sync_id)?;
        let volume = Volume {
            dir: dir.to_path_buf(),
            disk,
            policy,
            shared,
            archive,
            writer,
            stopped: false,
            archiver,
            lock: Some(vol_lock),
        };
        crate::rollback::resume(&volume)?;
        Ok(volume)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the volume's files are.
    pub fn disk(&self) -> &dyn Disk {
        &*self.disk
    }

    /// Reads records by position, from primary storage or the archive.
    pub fn segments(&self) -> &crate::log::reader::Segments {
        self.shared.segments()
    }

    /// A position past every record appended so far.
    pub fn log_end(&self) -> Lsn {
        Lsn {
            seq: self.shared.sealed() + 1,
            offset: u32::MAX,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Appends an atomic group of records; returns once they are readable
    /// (not yet durable: see [`Volume::fsync`]).
    pub fn commit(&self, records: Vec<Record>) -> Result<Vec<Lsn>> {
        self.writer.append(records)
    }

    /// Makes everything committed so far durable; concurrent callers share
    /// one fdatasync.
    pub fn fsync(&self) -> Result<()> {
        self.writer.sync()
    }

    /// Writes a sync point and returns once it is durable.
    pub fn sync_point(&self, label: &str, requester: &str) -> Result<SyncPoint> {
        self.writer
            .sync_point(label.to_string(), requester.to_string())
    }

    /// The sync points of the volume in `dir`, read without opening it (so
    /// also while another process has it open).
    pub fn sync_points_of(dir: &Path) -> Result<Vec<SyncPoint>> {
        let disk = &crate::disk::Real;
        layout::check_volume(disk, dir)?;
        Policy::load(disk, dir)?;
        crate::prune::listed(disk, dir, &Forgotten::load(disk, dir)?)
    }

    /// For each sync point of the volume in `dir`, whether its view can be
    /// built from primary storage alone: its segment and every older one
    /// of its window are still there (else the view reads the archive).
    pub fn views_in_primary(dir: &Path, points: &[SyncPoint]) -> Result<Vec<bool>> {
        let disk = &crate::disk::Real;
        let seg_dir = layout::segments_dir(dir);
        let listing = segment::list(disk, &seg_dir)?;
        let Some(&oldest) = listing.segments.first() else {
            return Ok(vec![false; points.len()]);
        };
        let volume_id = Policy::load(disk, dir)?.volume_id()?;
        points
            .iter()
            .map(|p| {
                let seq = p.lsn.seq;
                if listing.segments.binary_search(&seq).is_err() {
                    return Ok(false);
                }
                match segment::open_read(disk, &seg_dir, seq) {
                    Ok(file) => {
                        let (header, _) = segment::read_header(&*file, seq, volume_id, &seg_dir)?;
                        Ok(header.window_start >= oldest)
                    }
                    // Recycled since the listing.
                    Err(Error::SegmentMissing { .. }) => Ok(false),
                    Err(e) => Err(e),
                }
            })
            .collect()
    }

    /// The sync points, oldest first: the catalog's, less those prune
    /// forgot.
    pub fn sync_points(&self) -> Result<Vec<SyncPoint>> {
        let forgotten = Forgotten::load(&*self.disk, &self.dir)?;
        let mut points = lock(self.shared.catalog()).entries().to_vec();
        points.retain(|p| !forgotten.contains(p.info.id));
        Ok(points)
    }

    /// The volume as of sync point `id`. The view holds a lease on it, so
    /// that prune keeps what it reads for as long as it is open.
    pub fn view(&self, id: u64) -> Result<View> {
        let point = self
            .sync_points()?
            .into_iter()
            .find(|p| p.info.id == id)
            .ok_or_else(|| Error::UnknownSyncPoint(id.to_string()))?;
        let lease = View::lease(&self.disk, &self.dir, id)?;
        let mut view = View::build(
            point,
            self.shared.segments().clone(),
            self.shared.block_size(),
            &|_, _| {},
        )?;
        view.lease = lease;
        Ok(view)
    }

    /// The live tree.
    pub fn tree(&self) -> Tree<'_, RwLock<Index>> {
        Tree {
            index: self.shared.index(),
            segments: self.shared.segments(),
        }
    }

    pub fn allocate_ino(&self) -> u64 {
        self.shared.allocate_ino()
    }

    pub fn index_stats(&self) -> IndexStats {
        self.shared
            .index()
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .stats()
    }

    /// Segment files in primary storage (sealed and open).
    pub fn segments_in_primary(&self) -> u64 {
        self.shared.segments_in_primary()
    }

    /// The archive of this volume (retired segments in the backing store).
    pub fn archive(&self) -> &Arc<Archive> {
        &self.archive
    }

    /// Whether the archiver thread has ended (for tests with a halt step).
    #[doc(hidden)]
    pub fn archiver_finished(&self) -> bool {
        self.archiver.as_ref().is_none_or(|a| a.finished())
    }

    /// Working set, archive and store, as `lsvfs status` shows them.
    pub fn status(&self) -> Status {
        let p = &self.policy;
        let w = p.working_set as u64;
        let primary = self.segments_in_primary();
        let objects = self.archive().objects();
        let sh = &self.shared;
        let log::Appended {
            user_bytes: user,
            copied_bytes: copied,
        } = sh.appended();
        let live = sh
            .index()
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .used_blocks();
        let mut s = Status {
            segment_size: p.segment_size,
            working_set: w,
            reserve: p.reserve as u64,
            segments_in_primary: primary,
            working_set_fill: primary as f64 / w as f64,
            reserve_in_use: primary.saturating_sub(w).min(p.reserve as u64),
            waiting_for_archive: primary.saturating_sub(w),
            waiting_for_ship: self.archive().unshipped(sh.oldest_sealed(), sh.sealed()),
            writes_blocked: sh.writes_blocked(),
            live_bytes: live * p.block_size,
            capacity_bytes: p.capacity_blocks() * p.block_size,
            archived_segments: objects.len() as u64,
            archived_bytes: objects.iter().map(|(_, n)| n).sum(),
            user_bytes: user,
            copied_forward_bytes: copied,
            write_amplification: ratio(user + copied, user),
            store: StoreStatus {
                location: self.archive().store().describe(),
                ok: true,
                ..Default::default()
            },
            ..Default::default()
        };
        // The file, not this process's copy: `lsvfs set` changes it.
        match Policy::load(&*self.disk, &self.dir) {
            Ok(now) => s.retention = (&now.retention).into(),
            Err(e) => s.retention.text = format!("unknown ({e})"),
        }
        if let Some(a) = &self.archiver {
            let st = &a.stats;
            let raw = st.raw_bytes.load(Ordering::Relaxed);
            let stored = st.stored_bytes.load(Ordering::Relaxed);
            let us = st.archive_us.load(Ordering::Relaxed);
            s.session_archived_raw_bytes = raw;
            s.session_archived_stored_bytes = stored;
            s.session_partial_bytes = st.partial_bytes.load(Ordering::Relaxed);
            s.compression_ratio = ratio(raw, stored);
            s.archive_mib_per_s = ratio(raw * 1_000_000 / (1 << 20), us);
            let h = lock(&st.health).clone();
            s.store.ok = h.ok;
            s.store.error = h.error;
            s.store.since = h.since;
        }
        s
    }

    /// Everything before this position survives a crash.
    pub fn durable(&self) -> Lsn {
        self.shared.durable()
    }

    /// Makes everything durable, stops the writer and records a clean close.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if let Some(mut a) = self.archiver.take() {
            a.stop();
        }
        if std::mem::replace(&mut self.stopped, true) {
            return Ok(());
        }
        let end = self.writer.close()?;
        if let Some(l) = self.lock.as_mut() {
            l.mark_clean(end)?;
        }
        Ok(())
    }

    /// Stops the writer as `kill -9` would: nothing more is written, nothing
    /// is flushed, and the lock is released. Returns how far the log was
    /// durable when it stopped. For crash tests.
    #[doc(hidden)]
    pub fn crash(mut self) -> Lsn {
        // The archiver first: it would go on copying.
        if let Some(mut a) = self.archiver.take() {
            a.stop();
        }
        self.stopped = true;
        self.writer.crash();
        self.lock.take();
        self.durable()
    }
}

/// Whether a volume runs the archiver thread.
struct Threads {
    no_archiver: bool,
    halt_at: Option<archiver::Step>,
    prune: crate::prune::Auto,
}

impl Threads {
    /// Makes the writer (appending to `tail`) and, unless told not to,
    /// starts the archiver.
    fn spawn(
        self,
        shared: &Arc<Shared>,
        archive: &Arc<Archive>,
        policy: &Policy,
        tail: Tail,
        next_sync_id: u64,
    ) -> Result<(Arc<Writer>, Option<archiver::Handle>)> {
        if self.no_archiver {
            let writer = Writer::new(shared.clone(), tail, next_sync_id, u64::MAX);
            return Ok((Arc::new(writer), None));
        }
        // The last reserve segment is for the archiver's copies: copies of
        // one segment fit in one, so primary never holds more than working
        // set + reserve.
        let limit = policy.working_set as u64 + policy.reserve as u64 - 1;
        let writer = Arc::new(Writer::new(shared.clone(), tail, next_sync_id, limit));
        let archiver = Archiver::spawn(
            shared.clone(),
            archive.clone(),
            writer.clone(),
            archiver::Pace {
                working_set: policy.working_set as u64,
                ship_interval: std::time::Duration::from_secs(policy.ship_interval_s as u64),
            },
            self.halt_at,
            self.prune,
        )?;
        Ok((writer, Some(archiver)))
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            ::log::error!("{}: closing the volume failed: {e}", self.dir.display());
        }
    }
}
