//! The archiver thread: ships every sealed segment to the backing store as
//! soon as it is sealed, and keeps primary storage at the working set by
//! retiring the oldest segment whenever primary holds more than W.
//!
//! Shipping segment S: read it (sealed, so it never changes again),
//! compress it, store it, read it back and verify. History so leaves the
//! machine as the log seals, not only when segments retire.
//!
//! Retiring segment S, in this order (a crash between any two steps leaves
//! a volume that recovers with nothing missing):
//! 1. read S (it is sealed and no longer written);
//! 2. copy forward, through the writer, every record of S that the index
//!    still points to (the writer checks again and skips a record
//!    overwritten meanwhile), then make the copies durable; from here S
//!    holds no live record and the window starts after it;
//! 3. make sure S is stored and verified: shipped already (the usual case),
//!    or stored now;
//! 4. only then recycle S's primary file for a later segment.
//!
//! Retiring comes first when both are pending: it is what makes room.
//! A failing store is retried with capped exponential backoff, logging one
//! line when it starts failing and one when it recovers; meanwhile writes
//! go on into the reserve and then wait (see the writer). Nothing is ever
//! dropped.

use crate::archive::{Archive, background};
use crate::error::{Error, Result};
use crate::format::{Lsn, Record, RecordView};
use crate::log::Shared;
use crate::log::retired::RetiredSegments;
use crate::log::segment::SealedSegment;
use crate::log::writer::Writer;
use crate::store::ArchiveError;
use crate::sync::lock;
use crossbeam_channel::{Receiver, Sender, bounded, select};
use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most record bytes sent to the writer in one copy-forward request. The
/// writer's lock is held for each: under pgbench, 4 MiB held it for up to
/// 25 ms (p99 11 ms), with every FUSE thread that wrote meanwhile waiting,
/// 1 MiB for up to 2.5 ms (p99 1.3 ms) at the same copy rate.
const COPY_CHUNK: usize = 1 << 20;
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often the archiver looks at the working set without being woken.
const POLL: Duration = Duration::from_secs(1);
/// How often an idle archiver lists the store again, so that what a prune
/// from another process deleted leaves the figures `status` shows.
const RELIST: Duration = Duration::from_secs(60);

/// The points between retire steps, for crash tests: the archiver stops
/// for good once it has reached the one it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Copies appended but not yet durable.
    Copied,
    /// Copies durable; the segment is not yet stored.
    CopiedDurable,
    /// Stored and verified; the primary file is not yet recycled.
    Stored,
    /// Recycled.
    Recycled,
}

/// What the archiver has done since the volume was opened, and how the
/// store is doing.
#[derive(Debug, Default)]
pub struct Stats {
    pub retired: AtomicU64,
    pub raw_bytes: AtomicU64,
    pub stored_bytes: AtomicU64,
    /// Bytes of partial objects stored (each replaced by a newer one or by
    /// the whole segment's object, so traffic rather than space).
    pub partial_bytes: AtomicU64,
    /// Time spent compressing, storing and verifying, in microseconds.
    pub archive_us: AtomicU64,
    pub health: Mutex<Health>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Health {
    /// Whether the last call to the store succeeded.
    pub ok: bool,
    /// The last failure, while failing.
    pub error: Option<String>,
    /// Unix time in seconds of the last change between ok and failing.
    pub since: u64,
}

/// How much the archiver keeps in primary, and how soon it ships.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Segments primary storage holds before the oldest retires.
    pub working_set: u64,
    /// Most time between a sync point and the moment the store alone can
    /// serve it.
    pub ship_interval: Duration,
}

pub struct Archiver {
    shared: Arc<Shared>,
    archive: Arc<Archive>,
    writer: Arc<Writer>,
    stop: Receiver<()>,
    working_set: u64,
    ship_interval: Duration,
    stats: Arc<Stats>,
    halt_at: Option<Step>,
    /// Segments in primary that this archiver stored and verified.
    shipped: RefCell<BTreeSet<u64>>,
    /// Wait after a failed partial object, doubled while it fails.
    partial_backoff: Cell<Duration>,
    /// The buffer segments are read into, kept from one to the next (see
    /// [`crate::log::segment::read_prefix_into`]): it stays as large as a
    /// segment.
    buf: RefCell<Vec<u8>>,
    /// The automatic prune, run when there is nothing else to do.
    prune: RefCell<crate::prune::Auto>,
    /// When the store was last listed.
    listed_at: Cell<Instant>,
}

/// The running archiver: stops when dropped.
pub struct Handle {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<Stats>,
}

impl Handle {
    /// Whether the thread has ended (stopped, halted, or failed).
    pub fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    pub fn stop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A writer's answer; None once the volume is closing.
fn open<T>(answer: Result<T>) -> Result<Option<T>> {
    match answer {
        Err(Error::Closed) => Ok(None),
        other => other.map(Some),
    }
}

fn now_s() -> u64 {
    crate::time::now_ns() / 1_000_000_000
}

impl Archiver {
    /// Starts the archiver, which copies forward through `writer` and
    /// tells it when it made room or stopped.
    pub fn spawn(
        shared: Arc<Shared>,
        archive: Arc<Archive>,
        writer: Arc<Writer>,
        pace: Pace,
        halt_at: Option<Step>,
        prune: crate::prune::Auto,
    ) -> Result<Handle> {
        let (stop_tx, stop) = bounded(0);
        let stats = Arc::new(Stats::default());
        *lock(&stats.health) = Health {
            ok: true,
            error: None,
            since: now_s(),
        };
        let archiver = Archiver {
            shared,
            archive,
            writer,
            stop,
            working_set: pace.working_set,
            ship_interval: pace.ship_interval,
            stats: stats.clone(),
            halt_at,
            shipped: RefCell::new(BTreeSet::new()),
            partial_backoff: Cell::new(BACKOFF_FIRST),
            buf: RefCell::new(Vec::new()),
            prune: RefCell::new(prune),
            listed_at: Cell::new(Instant::now()),
        };
        let thread = std::thread::Builder::new()
            .name("lsvfs-archiver".into())
            .spawn(move || {
                let writer = archiver.writer.clone();
                archiver.run();
                writer.archiver_gone();
            })
            .map_err(crate::error::io("cannot start the archiver thread"))?;
        Ok(Handle {
            stop: Some(stop_tx),
            thread: Some(thread),
            stats,
        })
    }

    /// The oldest segment in primary, if primary holds more than the
    /// working set and it is sealed.
    fn due(&self) -> Option<u64> {
        let over = self.shared.segments_in_primary() > self.working_set;
        self.shared.oldest_sealed().filter(|_| over)
    }

    /// The oldest sealed segment in primary whose object is not known to be
    /// stored, from `*cursor` on (which it moves past the stored ones).
    fn unshipped(&self, cursor: &mut u64) -> Option<u64> {
        let oldest = self.shared.oldest_sealed()?;
        *cursor = (*cursor).max(oldest);
        let sealed = self.shared.sealed();
        while *cursor <= sealed && self.archive.contains(*cursor) == Some(true) {
            *cursor += 1;
        }
        (*cursor <= sealed).then_some(*cursor)
    }

    /// Retires what is due, else ships the oldest sealed segment not yet
    /// stored, else waits to be woken by a seal.
    fn run(self) {
        let wake = self.shared.sealed_signal();
        let mut cursor = 0;
        loop {
            self.writer.make_spare();
            let (what, done) = match (self.due(), self.unshipped(&mut cursor)) {
                (Some(seq), _) => ("retiring", self.guarded(seq, |s| self.retire(s))),
                (None, Some(seq)) => ("shipping", self.guarded(seq, |s| self.ship(s))),
                (None, None) => match self.partial_due() {
                    Some((seq, upto)) => (
                        "shipping part of",
                        self.guarded(seq, |s| self.ship_partial(s, upto)),
                    ),
                    None => {
                        self.idle();
                        select! {
                            recv(self.stop) -> _ => return,
                            recv(wake) -> _ => {},
                            default(POLL.min(self.ship_interval / 4)) => {},
                        }
                        continue;
                    }
                },
            };
            match done {
                Ok(true) => {}
                Ok(false) => return,
                Err((seq, e)) => {
                    log::error!("archiver stopped: {what} segment {seq} failed: {e}");
                    self.shared.poison(&e);
                    return;
                }
            }
        }
    }

    /// With nothing to ship or retire: the automatic prune if due, and a
    /// fresh listing of the store now and then.
    fn idle(&self) {
        let stored = self.stats.stored_bytes.load(Ordering::Relaxed);
        self.prune.borrow_mut().tick(&self.archive, stored);
        if self.listed_at.get().elapsed() >= RELIST {
            self.listed_at.set(Instant::now());
            if let Err(e) = self.archive.relist() {
                log::debug!("cannot list the backing store: {e}");
            }
        }
    }

    /// Whether the archiver must stop here (test failpoints).
    fn halt(&self, step: Step) -> bool {
        if self.halt_at == Some(step) {
            log::info!("archiver halted after step {step:?} (test failpoint)");
            return true;
        }
        false
    }

    /// Runs `step` on segment `seq`, turning a panic into an error: the
    /// volume is then poisoned and says why, rather than archiving silently
    /// stopping.
    fn guarded(
        &self,
        seq: u64,
        step: impl FnOnce(u64) -> Result<bool>,
    ) -> std::result::Result<bool, (u64, Error)> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| step(seq)))
            .unwrap_or_else(|panic| {
                let why = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("a panic");
                Err(Error::Inconsistent(format!(
                    "the archiver failed on segment {seq}: {why}"
                )))
            })
            .map_err(|e| (seq, e))
    }

    /// Ships sealed segment `seq` to the store as soon as it is sealed, so
    /// that history leaves the machine before the segment retires. Returns
    /// false when the archiver must stop.
    fn ship(&self, seq: u64) -> Result<bool> {
        let sealed = self.read_sealed(seq)?;
        let stored = self.store(seq, &sealed, false);
        self.buf.replace(sealed.raw);
        stored
    }

    /// The sync points in the segment being written that the store cannot
    /// serve yet, once the oldest of them is half a ship interval old: the
    /// segment and the newest of them (shipping up to the newest covers
    /// all). Half, so that shipping (and a poll) fit in the interval.
    fn partial_due(&self) -> Option<(u64, u32)> {
        let sealed = self.shared.sealed();
        let catalog = lock(self.shared.catalog());
        let entries = catalog.entries();
        let newest = entries.last().filter(|p| p.lsn.seq > sealed)?;
        let seq = newest.lsn.seq;
        let shipped = self.archive.partial_end(seq).unwrap_or(0);
        // Entries are in log order: those not shipped yet end the catalog,
        // so the walk (under the writer's catalog lock) is as long as they
        // are, not as the history.
        let unshipped = entries.iter().rev();
        let oldest = unshipped
            .take_while(|p| p.lsn.seq == seq && p.lsn.offset >= shipped)
            .last()?;
        let age = crate::time::now_ns().saturating_sub(oldest.info.time_ns);
        (age >= self.ship_interval.as_nanos() as u64 / 2).then_some((seq, newest.lsn.offset))
    }

    /// Ships the first bytes of segment `seq`, still being written, up to
    /// the sync record at `upto`, as a partial object. A failing store is
    /// retried at the next poll. Returns false when the archiver must stop.
    fn ship_partial(&self, seq: u64, upto: u32) -> Result<bool> {
        let (disk, dir, id) = (
            self.shared.disk(),
            self.shared.dir(),
            self.shared.volume_id(),
        );
        let buf = self.buf.take();
        let Some(prefix) = super::partial::read_prefix(disk, dir, id, seq, upto, buf)? else {
            return Ok(true);
        };
        let (raw, footer, summary) = (&prefix.raw, &prefix.footer, &prefix.summary);
        let archive = &self.archive;
        let put = background::run(|| archive.put_partial(seq, raw, footer, summary));
        self.buf.replace(prefix.raw);
        match put {
            Ok(stored) => {
                let partial = &self.stats.partial_bytes;
                partial.fetch_add(stored.stored, Ordering::Relaxed);
                self.partial_backoff.set(BACKOFF_FIRST);
                self.set_health(None);
            }
            Err(e) => {
                self.set_health(Some(format!("segment {seq} (partial): {e}")));
                let backoff = self.partial_backoff.get();
                self.partial_backoff.set((backoff * 2).min(BACKOFF_MAX));
                select! {
                    recv(self.stop) -> _ => return Ok(false),
                    default(backoff) => {},
                }
            }
        }
        Ok(true)
    }

    /// Retires segment `seq`. Returns false when the archiver must stop.
    fn retire(&self, seq: u64) -> Result<bool> {
        let sealed = self.read_sealed(seq)?;
        // Always copied forward, also when the segment was shipped before
        // (its object says nothing of its live records) or a crash came
        // after its copies: a record copied already is not current here
        // any more, so the copy costs a read.
        let Some(copies) = self.copy_forward(seq, &sealed.raw, &sealed.entries)? else {
            return Ok(false);
        };
        log::debug!("segment {seq}: copied {copies} bytes forward");
        if self.halt(Step::Copied) {
            return Ok(false);
        }
        if open(self.writer.sync())?.is_none() {
            return Ok(false);
        }
        // Recovery finds the sync records of the window only: those of this
        // segment must be in the catalog for good before it leaves.
        self.shared.sync_catalog()?;
        self.shared.advance_window(seq);
        if self.halt(Step::CopiedDurable) {
            return Ok(false);
        }
        // Only an object holding exactly these bytes counts as stored: one
        // this archiver put (and read back), or one found in the store that
        // holds them (another volume with the same id must not let the
        // segment go).
        let stored = self.shipped.borrow_mut().remove(&seq)
            || (self.archive.contains(seq) == Some(true)
                && self
                    .archive
                    .holds_segment(seq, &sealed.raw)
                    .unwrap_or(false));
        // Writes may be waiting for the space: stored at the archiver's
        // own priority.
        if !stored && !self.store(seq, &sealed, true)? {
            return Ok(false);
        }
        if self.halt(Step::Stored) {
            return Ok(false);
        }
        // The copies' durability is what makes recycling safe: after any
        // failed fdatasync nothing is known to be durable, so S stays.
        self.shared.check()?;
        let SealedSegment { file, raw, .. } = sealed;
        drop(file);
        self.buf.replace(raw);
        self.shared.recycle(seq)?;
        self.stats.retired.fetch_add(1, Ordering::Relaxed);
        self.writer.space_made();
        log::debug!("retired segment {seq}");
        Ok(!self.halt(Step::Recycled))
    }

    /// Reads sealed segment `seq` from primary storage.
    fn read_sealed(&self, seq: u64) -> Result<SealedSegment> {
        let (dir, disk) = (self.shared.dir(), self.shared.disk());
        let buf = self.buf.take();
        SealedSegment::read(disk, dir, seq, self.shared.volume_id(), buf)?.ok_or(Error::Corrupt {
            seq,
            offset: 0,
            what: "segment",
            source: crate::format::DecodeError::Invalid("retiring a segment that is not sealed"),
        })
    }

    /// Stores the segment in the backing store, retrying a failing store
    /// with backoff; in the background (see [`background`]) unless
    /// `foreground`. Returns false when the archiver must stop.
    fn store(&self, seq: u64, sealed: &SealedSegment, foreground: bool) -> Result<bool> {
        let summary = sealed.summary();
        let mut backoff = BACKOFF_FIRST;
        loop {
            let started = Instant::now();
            if !self.archive.listed() {
                let _ = self.archive.relist();
            }
            let archive = &self.archive;
            let put = || archive.put_segment(seq, &sealed.raw, &sealed.footer, &summary);
            let put = if foreground {
                put()
            } else {
                background::run(put)
            };
            match put {
                Err(e @ ArchiveError::Conflict { .. }) => {
                    // Not a failure that time mends: stop archiving (the
                    // segment stays in primary; writes go on past the
                    // working set) and say so in the log and in status.
                    log::error!("archiver stopped: {e}");
                    let mut h = lock(&self.stats.health);
                    (h.ok, h.error, h.since) = (false, Some(e.to_string()), now_s());
                    return Ok(false);
                }
                Ok(stored) => {
                    self.shipped.borrow_mut().insert(seq);
                    let s = &self.stats;
                    s.archive_us
                        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    s.raw_bytes.fetch_add(stored.raw, Ordering::Relaxed);
                    s.stored_bytes.fetch_add(stored.stored, Ordering::Relaxed);
                    self.set_health(None);
                    return Ok(true);
                }
                Err(e) => {
                    self.set_health(Some(format!("segment {seq}: {e}")));
                    select! {
                        recv(self.stop) -> _ => return Ok(false),
                        default(backoff) => {},
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Sends every record of the segment that is still current to the
    /// writer. Returns the bytes copied, or None if the volume is closing.
    fn copy_forward(
        &self,
        seq: u64,
        raw: &[u8],
        entries: &[crate::format::SummaryEntry],
    ) -> Result<Option<u64>> {
        let mut chunk: Vec<(Lsn, Record)> = Vec::new();
        let mut chunk_bytes = 0;
        let mut copied = 0;
        let last = entries.len();
        for (i, e) in entries.iter().enumerate() {
            let lsn = Lsn {
                seq,
                offset: e.offset,
            };
            let bytes = &raw[e.offset as usize..(e.offset + e.len) as usize];
            let corrupt = crate::log::reader::corrupt(lsn);
            let view = RecordView::parse(bytes).map_err(&corrupt)?;
            let record =
                Record::decode_parts(view.header.kind, view.key, view.value).map_err(&corrupt)?;
            let current = self
                .shared
                .index()
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .is_current(lsn, &record);
            if current {
                chunk_bytes += bytes.len();
                chunk.push((lsn, record));
            }
            if !chunk.is_empty() && (chunk_bytes >= COPY_CHUNK || i + 1 == last) {
                let records = std::mem::take(&mut chunk);
                chunk_bytes = 0;
                match open(self.writer.copy_forward(records))? {
                    Some(n) => copied += n,
                    None => return Ok(None),
                }
            }
        }
        Ok(Some(copied))
    }

    /// Records the store's state, logging only changes.
    fn set_health(&self, error: Option<String>) {
        let mut h = lock(&self.stats.health);
        match (&error, h.ok) {
            (Some(e), true) => log::warn!(
                "backing store {} is failing ({e}); retrying with backoff, segments wait in primary storage",
                self.archive.store().describe()
            ),
            (None, false) => log::info!(
                "backing store {} works again; archiving resumes",
                self.archive.store().describe()
            ),
            _ => {}
        }
        if h.ok != error.is_none() {
            h.since = now_s();
        }
        h.ok = error.is_none();
        h.error = error;
    }
}
