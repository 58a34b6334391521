//! A volume: its directory, policy, lock, log and live index. Opening one
//! recovers it (backward scan from the tail) and starts the writer thread;
//! views of sync points are built from it with the same backward scan.
//!
//! Directory layout:
//! ```text
//! VOLUME/lsvfs.toml   policy          VOLUME/lock        holder, clean-close mark
//! VOLUME/syncpoints   catalog         VOLUME/segments/   segment files
//! VOLUME/archive/     default backing store
//! ```

use crate::archive::archiver::{self, Archiver};
use crate::archive::{Archive, ArchiveError};
use crate::disk::{Disk, OpenMode};
use crate::error::{Error, Result, io};
use crate::format::SegmentHeader;
use crate::format::{Lsn, Record};
use crate::index::{Index, IndexStats};
use crate::log::catalog::{Catalog, SyncPoint};
use crate::log::lock::VolumeLock;
use crate::log::reader::Segments;
use crate::log::recovery::{build_backward, segment_records};
use crate::log::writer::{self, ArchiverLink, Request, Tail, Writer};
use crate::log::{FdatasyncHook, Shared, TailFile, segment};
use crate::policy::{POLICY_FILE, Policy};
use crate::status::{Status, StoreStatus, ratio};
use crate::store::{BackingStore, LocalDir};
use crate::sync::lock;
use crate::tree::Tree;
use crate::view::View;
use crossbeam_channel::{Sender, bounded};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

pub const SEGMENTS_DIR: &str = "segments";
/// Inode number of the root directory; numbers above it are handed out.
pub const ROOT_INO: u64 = 1;

pub struct Volume {
    dir: PathBuf,
    policy: Policy,
    shared: Arc<Shared>,
    tx: Sender<Request>,
    writer: Option<JoinHandle<()>>,
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

fn write_durably(disk: &dyn Disk, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let ctx = format!("cannot write {}", path.display());
    let file = disk
        .open(&tmp, OpenMode::CreateNew)
        .map_err(io(ctx.clone()))?;
    file.write_all_at(bytes, 0)
        .and_then(|_| file.sync_all())
        .and_then(|_| disk.rename(&tmp, path))
        .map_err(io(ctx))
}

/// Creates directory `path` and its missing parents durably: each new
/// entry is fsynced in its parent (else a power loss could take it).
fn create_dirs(disk: &dyn Disk, path: &Path) -> Result<()> {
    let missing: Vec<&Path> = path.ancestors().take_while(|a| !disk.exists(a)).collect();
    disk.create_dir_all(path)
        .map_err(io(format!("cannot create {}", path.display())))?;
    for new in missing.iter().rev() {
        if let Some(parent) = new.parent() {
            segment::fsync_dir(disk, parent)?;
        }
    }
    Ok(())
}

impl Volume {
    /// Creates a volume in `dir`, which must be absent or empty.
    pub fn create(dir: &Path, policy: &Policy) -> Result<()> {
        Self::create_on(&crate::disk::Real, dir, policy)
    }

    /// Creates a volume in `dir` on `disk`; `dir` must be absent or empty.
    pub fn create_on(disk: &dyn Disk, dir: &Path, policy: &Policy) -> Result<()> {
        policy.validate()?;
        if disk.exists(&dir.join(POLICY_FILE)) {
            return Err(Error::AlreadyAVolume {
                path: dir.to_path_buf(),
            });
        }
        match disk.list(dir) {
            Ok(entries) => {
                if !entries.is_empty() {
                    return Err(Error::NotEmpty {
                        path: dir.to_path_buf(),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_dirs(disk, dir)?,
            Err(e) => return Err(io(format!("cannot read {}", dir.display()))(e)),
        }
        create_dirs(disk, &dir.join(SEGMENTS_DIR))?;
        create_dirs(disk, &policy.backing_store_path(dir))?;
        Catalog::create(disk, dir)?;
        // The policy file goes last: its presence is what makes a volume.
        write_durably(disk, &dir.join(POLICY_FILE), policy.to_toml().as_bytes())?;
        segment::fsync_dir(disk, dir)
    }

    /// Opens a volume for writing: locks it, recovers the index and starts
    /// the writer and the archiver.
    pub fn open(dir: &Path) -> Result<Volume> {
        Self::open_with(dir, OpenOptions::default())
    }

    pub fn open_with(dir: &Path, options: OpenOptions) -> Result<Volume> {
        let disk = options.disk.unwrap_or_else(crate::disk::real);
        check_volume(&*disk, dir)?;
        let policy = Policy::load(&*disk, dir)?;
        // The volume and store directories are where the user put them (a
        // symlink there is theirs); segments/ is lsvfs's own.
        let mut private = vec![(dir.to_path_buf(), true), (dir.join(SEGMENTS_DIR), false)];
        if options.store.is_none() {
            private.push((policy.backing_store_path(dir), true));
        }
        for (path, follow) in &private {
            check_private_dir(&*disk, path, *follow)?;
        }
        // Closed to others (volumes made before lsvfs did so had 0755):
        // the segments hold every user's data.
        let seg_dir = dir.join(SEGMENTS_DIR);
        crate::disk::make_dir_private(&*disk, &seg_dir)
            .map_err(io(format!("cannot make {} private", seg_dir.display())))?;
        let (mut vol_lock, found) = VolumeLock::acquire(&*disk, dir)?;
        let clean = found.clean;
        let volume_id = policy.volume_id()?;
        check_not_a_copy(&*disk, &found, &policy)?;
        let seg_dir = dir.join(SEGMENTS_DIR);
        let block_size = policy.block_size as u32;
        let listing = segment::list(&*disk, &seg_dir)?;
        // Read-only until recovery succeeded: a refused open changes nothing.
        let catalog = Catalog::open(&*disk, dir, false)?;
        let store = match options.store {
            Some(s) => s,
            None => Arc::new(
                LocalDir::open(disk.clone(), &policy.backing_store_path(dir))
                    .map_err(ArchiveError::from)?,
            ),
        };
        let archive = Arc::new(Archive::open(
            store,
            volume_id,
            policy.compression_level,
            policy.cache_size,
        ));
        // A store that cannot be listed now is not an error: the live data
        // is all in primary storage, and the archiver lists it again later.
        if let Err(e) = archive.relist() {
            log::warn!("cannot list the backing store yet: {e}");
        }

        let mut index = Index::new(block_size);
        let mut next_ino = ROOT_INO + 1;
        let mut next_sync_id = catalog.last_id() + 1;
        let mut window_start = 1;
        let mut next_seq = archive.objects().last().map_or(1, |(s, _)| s + 1);
        let mut tail = None;
        let mut missing = Vec::new();
        // Set when the log's tail was cut at a torn or stale record.
        let mut unclean = false;
        if let Some(&last) = listing.segments.last() {
            let (_, recs) = segment_records(&*disk, &seg_dir, last, volume_id)?;
            check_geometry(&recs.header, &policy)?;
            let end = Lsn {
                seq: last,
                offset: u32::MAX,
            };
            let older = |seq| {
                if listing.segments.binary_search(&seq).is_ok() {
                    return segment_records(&*disk, &seg_dir, seq, volume_id).map(|(_, r)| Some(r));
                }
                // Retired, so its live records were copied forward. A store
                // that cannot be listed now is trusted for segments older
                // than all of primary: only retiring removes those.
                let oldest = listing.segments[0];
                if archive.contains(seq) || (!archive.listed() && seq < oldest) {
                    return Ok(None);
                }
                Err(ArchiveError::Lost {
                    seq,
                    object: archive.object_name(seq),
                    store: archive.store().describe(),
                }
                .into())
            };
            let progress = options.progress.as_deref().unwrap_or(&|_, _| {});
            let built = build_backward(block_size, end, &recs, older, progress)?;
            if built.orphans > 0 {
                log::warn!(
                    "{}: {} inodes had data but no inode record; ignored",
                    dir.display(),
                    built.orphans
                );
            }
            index = built.index;
            next_ino = next_ino.max(recs.header.next_ino).max(built.max_ino + 1);
            let newest_sync = built.sync_points.iter().map(|(_, s)| s.id).max();
            next_sync_id = next_sync_id
                .max(recs.header.next_sync_id)
                .max(newest_sync.map_or(0, |id| id + 1));
            window_start = recs.header.window_start.max(listing.segments[0]);
            next_seq = next_seq.max(last + 1);
            missing = built
                .sync_points
                .into_iter()
                .filter(|(_, s)| s.id > catalog.last_id())
                .map(|(lsn, info)| SyncPoint { lsn, info })
                .collect();
            missing.sort_by_key(|p| p.info.id);
            let log_end = Lsn {
                seq: last,
                offset: recs.scan.as_ref().map_or(u32::MAX, |s| s.valid_end),
            };
            check_durable_end(&recs, log_end, clean, &catalog)?;
            if let Some(scan) = &recs.scan {
                if clean != Some(log_end) {
                    unclean = true;
                    let why = scan
                        .stopped
                        .as_ref()
                        .map(|(at, why)| format!(" (found {why} at offset {at})"))
                        .unwrap_or_default();
                    log::warn!(
                        "{}: recovered after an unclean shutdown; the log ends in segment {last} at offset {}{why}",
                        dir.display(),
                        scan.valid_end
                    );
                }
                let file = disk
                    .open(&segment::segment_path(&seg_dir, last), OpenMode::ReadWrite)
                    .map_err(io(format!("cannot open segment {last} for writing")))?;
                let mut summary = Vec::new();
                for e in &recs.entries {
                    e.encode(&mut summary);
                }
                tail = Some(Tail {
                    file: Arc::new(TailFile::new(file, last)),
                    header: recs.header,
                    pos: scan.valid_end,
                    last_crc: scan.last_crc,
                    summary,
                    count: recs.entries.len() as u32,
                    sealed: false,
                    hinted: scan.valid_end,
                });
            }
        } else if next_seq > 1 {
            return Err(Error::Inconsistent(format!(
                "{} holds no segment, but the backing store holds segments up to {}; the primary segments are lost",
                seg_dir.display(),
                next_seq - 1
            )));
        }
        let mut catalog = Catalog::open(&*disk, dir, true)?;
        catalog.append(&missing)?;
        for path in &listing.staging {
            disk.remove_file(path)
                .map_err(io(format!("cannot remove {}", path.display())))?;
        }
        vol_lock.claim()?;
        let primary_oldest = listing.segments.first().copied().unwrap_or(next_seq);
        let segments = Arc::new(Segments::new(
            disk.clone(),
            seg_dir.clone(),
            volume_id,
            policy.segment_size,
            archive,
            primary_oldest,
        ));
        let mut shared = Shared::new(
            disk,
            volume_id,
            seg_dir,
            block_size,
            policy.segment_size,
            segments,
            index,
            catalog,
            next_ino,
            window_start.max(1),
            primary_oldest,
            policy.capacity_bytes(),
            listing.free,
        );
        shared.fdatasync_hook = options.fdatasync_hook;
        let shared = Arc::new(shared);
        let tail = match tail {
            // Appending after a cut tail in place could make the stale
            // records behind the cut valid again: the chain of CRCs would
            // accept them if the first new record came out byte for byte
            // as the torn one (copy-forward and orphan deletion re-encode
            // deterministically). So the tail is sealed where the valid
            // log ends and appending goes on in a new segment.
            Some(mut t) if unclean => {
                writer::seal(&shared, &mut t)?;
                writer::open_segment(&shared, t.header.seq + 1, next_sync_id)?
            }
            Some(t) => t,
            None => writer::open_segment(&shared, next_seq, next_sync_id)?,
        };
        shared.sealed.store(tail.header.seq - 1, Ordering::SeqCst);
        shared.segments.set_tail(tail.header.seq);
        let (tx, rx) = bounded(writer::QUEUE_LEN);
        let (link, archiver) = if options.no_archiver {
            (ArchiverLink::none(), None)
        } else {
            let (atx, arx) = bounded(16);
            let (space_tx, space_rx) = bounded(1);
            let link = ArchiverLink {
                requests: arx,
                space: space_rx,
                // The last reserve segment is for the archiver's copies:
                // copies of one segment fit in one, so primary never holds
                // more than working set + reserve.
                limit: policy.working_set as u64 + policy.reserve as u64 - 1,
            };
            (link, Some((atx, space_tx)))
        };
        let handle = Writer::new(shared.clone(), tail, next_sync_id, link).spawn(rx)?;
        let archiver = match archiver {
            Some((atx, space_tx)) => Some(Archiver::spawn(
                shared.clone(),
                atx,
                space_tx,
                policy.working_set as u64,
                options.halt_at,
            )?),
            None => None,
        };
        Ok(Volume {
            dir: dir.to_path_buf(),
            policy,
            shared,
            tx,
            writer: Some(handle),
            archiver,
            lock: Some(vol_lock),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn call<T>(&self, make: impl FnOnce(writer::Reply<T>) -> Request) -> Result<T> {
        self.shared.check()?;
        let (reply, rx) = bounded(1);
        self.tx.send(make(reply)).map_err(|_| Error::Closed)?;
        rx.recv().map_err(|_| Error::Closed)?
    }

    /// Appends an atomic group of records; returns once they are readable
    /// (not yet durable: see [`Volume::fsync`]).
    pub fn commit(&self, records: Vec<Record>) -> Result<Vec<Lsn>> {
        self.call(|reply| Request::Append { records, reply })
    }

    /// Makes everything committed so far durable; concurrent callers share
    /// one fdatasync.
    pub fn fsync(&self) -> Result<()> {
        self.call(|reply| Request::Sync { reply })
    }

    /// Writes a sync point and returns once it is durable.
    pub fn sync_point(&self, label: &str, requester: &str) -> Result<SyncPoint> {
        self.call(|reply| Request::SyncPoint {
            label: label.to_string(),
            requester: requester.to_string(),
            reply,
        })
    }

    /// The sync points of the volume in `dir`, read without opening it (so
    /// also while another process has it open).
    pub fn sync_points_of(dir: &Path) -> Result<Vec<SyncPoint>> {
        let disk = &crate::disk::Real;
        check_volume(disk, dir)?;
        Policy::load(disk, dir)?;
        Ok(Catalog::open(disk, dir, false)?.entries().to_vec())
    }

    /// For each sync point of the volume in `dir`, whether its view can be
    /// built from primary storage alone: its segment and every older one
    /// of its window are still there (else the view reads the archive).
    pub fn views_in_primary(dir: &Path, points: &[SyncPoint]) -> Result<Vec<bool>> {
        let disk = &crate::disk::Real;
        let seg_dir = dir.join(SEGMENTS_DIR);
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

    /// All sync points, oldest first.
    pub fn sync_points(&self) -> Vec<SyncPoint> {
        lock(&self.shared.catalog).entries().to_vec()
    }

    /// The volume as of sync point `id`.
    pub fn view(&self, id: u64) -> Result<View> {
        let point = self
            .sync_points()
            .into_iter()
            .find(|p| p.info.id == id)
            .ok_or_else(|| Error::UnknownSyncPoint(id.to_string()))?;
        View::build(
            point,
            self.shared.segments.clone(),
            self.shared.block_size,
            &|_, _| {},
        )
    }

    /// The live tree.
    pub fn tree(&self) -> Tree<'_, RwLock<Index>> {
        Tree {
            index: &self.shared.index,
            segments: &self.shared.segments,
        }
    }

    pub fn allocate_ino(&self) -> u64 {
        self.shared.allocate_ino()
    }

    pub fn index_stats(&self) -> IndexStats {
        self.shared
            .index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .stats()
    }

    /// Segment files in primary storage (sealed and open).
    pub fn segments_in_primary(&self) -> u64 {
        let oldest = self.shared.primary_oldest.load(Ordering::SeqCst);
        (self.shared.sealed.load(Ordering::SeqCst) + 2).saturating_sub(oldest)
    }

    /// The archive of this volume (retired segments in the backing store).
    pub fn archive(&self) -> &Arc<Archive> {
        self.shared.segments.archive()
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
        let user = sh.user_bytes.load(Ordering::Relaxed);
        let copied = sh.copied_bytes.load(Ordering::Relaxed);
        let live = sh
            .index
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
            writes_blocked: sh.waiting.load(Ordering::SeqCst),
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
        if let Some(a) = &self.archiver {
            let st = &a.stats;
            let raw = st.raw_bytes.load(Ordering::Relaxed);
            let stored = st.stored_bytes.load(Ordering::Relaxed);
            let us = st.archive_us.load(Ordering::Relaxed);
            s.session_archived_raw_bytes = raw;
            s.session_archived_stored_bytes = stored;
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
        let Some(handle) = self.writer.take() else {
            return Ok(());
        };
        // Sent even to a poisoned writer (not through `call`, which would
        // refuse it here): Close is what makes the writer thread stop.
        let (reply, rx) = bounded(1);
        let end = match self.tx.send(Request::Close { reply }) {
            Ok(()) => rx.recv().unwrap_or(Err(Error::Closed)),
            Err(_) => Err(Error::Closed),
        };
        let _ = handle.join();
        let end = end?;
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
        // The archiver first: a request of its own queued behind the crash
        // would never be answered, and it would wait for the answer.
        if let Some(mut a) = self.archiver.take() {
            a.stop();
        }
        if let Some(handle) = self.writer.take() {
            let _ = self.tx.send(Request::Crash);
            let _ = handle.join();
        }
        self.lock.take();
        self.durable()
    }
}

/// Whether `dir` holds a volume: an error saying what to do when not.
pub fn check_volume(disk: &dyn Disk, dir: &Path) -> Result<()> {
    if disk.exists(&dir.join(POLICY_FILE)) {
        return Ok(());
    }
    let path = dir.to_path_buf();
    Err(if disk.exists(dir) {
        Error::NotAVolume { path }
    } else {
        Error::NoVolume { path }
    })
}

/// Refuses a volume directory that is a copy of one that still exists: the
/// lock file names a home (device, inode, path) that is not this directory,
/// and that directory is still there holding a volume of the same id. Two
/// volumes with one id would store into the same objects of a shared store.
/// A volume that was moved (its old home is gone) opens, and its new home
/// is recorded.
fn check_not_a_copy(
    disk: &dyn Disk,
    found: &crate::log::lock::Found,
    policy: &Policy,
) -> Result<()> {
    let Some(last) = &found.last_home else {
        return Ok(());
    };
    if last.same_dir(&found.home) || !last.still_there(disk) {
        return Ok(());
    }
    let same_id = Policy::load(disk, &last.path).is_ok_and(|p| p.volume_id == policy.volume_id);
    if !same_id {
        return Ok(());
    }
    Err(Error::CopiedVolume {
        path: found.home.path.clone(),
        original: last.path.clone(),
        id: policy.volume_id.clone(),
    })
}

/// Refuses a directory of the volume that another user could change: one
/// could plant a link there that an open as root would write through.
fn check_private_dir(disk: &dyn Disk, path: &Path, follow: bool) -> Result<()> {
    let why = match crate::disk::unsafe_dir(disk, path, follow) {
        // Missing: whatever opens it next says so in its own words.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        other => other.map_err(io(format!("cannot inspect {}", path.display())))?,
    };
    match why {
        Some(why) => Err(Error::UnsafeDir {
            path: path.to_path_buf(),
            why,
        }),
        None => Ok(()),
    }
}

/// Refuses segments written with another block or segment size than the
/// policy now names (an edited lsvfs.toml): they would be misread.
fn check_geometry(header: &SegmentHeader, policy: &Policy) -> Result<()> {
    if header.segment_size == policy.segment_size && header.block_size as u64 == policy.block_size {
        return Ok(());
    }
    Err(Error::Inconsistent(format!(
        "segment {} was written with segment size {} and block size {}, but lsvfs.toml says {} and {}; restore the policy file",
        header.seq, header.segment_size, header.block_size, policy.segment_size, policy.block_size
    )))
}

/// Refuses a log that ends before what was acknowledged as durable: a sync
/// point in the catalog, or the end a clean close recorded. Such a log is
/// damaged, not torn, and cutting it would silently drop acknowledged data.
fn check_durable_end(
    recs: &crate::log::recovery::SegmentRecords,
    log_end: Lsn,
    clean: Option<Lsn>,
    catalog: &Catalog,
) -> Result<()> {
    let lost = if let Some(p) = catalog.entries().iter().find(|p| p.lsn >= log_end) {
        format!("sync point {}", p.info.id)
    } else if let Some(c) = clean.filter(|c| *c > log_end) {
        format!("data up to {c} (recorded at the last clean close)")
    } else {
        return Ok(());
    };
    let (offset, reason) = match recs.scan.as_ref().and_then(|s| s.stopped.clone()) {
        Some((at, why)) => (at as u64, why),
        None => (log_end.offset as u64, "the segment ends here".to_string()),
    };
    Err(Error::DurableDamaged {
        seq: log_end.seq,
        offset,
        reason,
        lost,
    })
}

impl Drop for Volume {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            log::error!("{}: closing the volume failed: {e}", self.dir.display());
        }
    }
}
