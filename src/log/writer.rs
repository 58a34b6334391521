//! The writer: appends to the log in the calling threads.
//!
//! A caller takes the writer's lock, encodes its atomic group, writes it
//! with one pwrite, publishes the new positions in the index and returns:
//! no thread is woken on the way of a write. Durability (fsync, sync
//! points, close) is a group commit in the calling threads too (see
//! [`super::commit`]): the fdatasync runs outside the lock while others
//! append. A group that does not fit the current segment seals it
//! (summary, fdatasync, footer, fdatasync) and opens the next one, reusing
//! a recycled file when there is one. A full disk at that point fails the
//! group with ENOSPC; any other I/O failure poisons the volume.
//!
//! The archiver copies records forward through the same lock, and its
//! copies never wait for space: user writes wait, releasing the lock,
//! while primary storage holds its limit of segments (back-pressure),
//! until the archiver has recycled one.

use super::Shared;
use super::catalog::SyncPoint;
use super::commit::GroupCommit;
use super::tail::{Tail, make_spare, open_segment, seal};
use crate::error::{Error, Result, io};
use crate::format::record::{FLAG_COPIED, FLAG_GROUP_END, RECORD_HEADER_LEN};
use crate::format::segment::{FOOTER_LEN, SEGMENT_HEADER_LEN, segment_cost};
use crate::format::{Lsn, Record, SummaryEntry, SyncInfo};
use crate::sync::lock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// A copy-forward's buffer is written out once it holds this many bytes.
const BATCH_BYTES_MAX: usize = 16 << 20;
/// Bytes appended between two writeback hints: the writer asks the kernel
/// to start writing what it appended without waiting, so the fdatasync that
/// seals a full segment, or that a sync point or fsync asks for, finds most
/// of it already written. Small writes are not hinted: the call costs more
/// than it saves when an fdatasync follows at once.
const WRITEBACK_CHUNK: u32 = 1 << 20;
/// How often a writer waiting for space looks again without being woken.
const SPACE_POLL: Duration = Duration::from_secs(1);

pub struct Writer {
    shared: Arc<Shared>,
    state: Mutex<State>,
    /// Signalled when the archiver recycled a segment or stopped.
    space: Condvar,
    commit: GroupCommit,
    /// The segment a spare file is wanted for (0: none), see
    /// [`Writer::make_spare`].
    spare: AtomicU64,
}

/// What the writer's lock guards.
struct State {
    tail: Tail,
    next_sync_id: u64,
    /// Most segments user writes may fill in primary storage.
    limit: u64,
    waiting: bool,
    /// The last group's buffer, emptied: reused so that every group does
    /// not fault in fresh zeroed pages from the kernel.
    spare: Vec<u8>,
    /// Closed, or stopped as if killed: nothing more is appended.
    closed: bool,
}

impl State {
    fn end(&self) -> Lsn {
        Lsn {
            seq: self.tail.header.seq,
            offset: self.tail.pos,
        }
    }
}

/// Records encoded and not yet written.
#[derive(Default)]
struct Batch {
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    at: u32,
    /// Records encoded with their position and length.
    written: Vec<(Lsn, Record, u32)>,
}

/// Errors that fail one request and leave the volume healthy.
fn caller_error(e: &Error) -> bool {
    matches!(
        e,
        Error::Invalid(_) | Error::TooLarge { .. } | Error::NoSpace(_)
    )
}

/// Largest atomic group that fits in an empty segment of `segment_size`.
pub fn group_max(segment_size: u64) -> usize {
    segment_size as usize - SEGMENT_HEADER_LEN - FOOTER_LEN
}

impl Writer {
    /// A writer appending to `tail`. `limit` is the number of segments user
    /// writes may fill in primary storage before they wait for the
    /// archiver (u64::MAX without one). Everything before the tail's end is
    /// durable from the start: recovery read it from disk.
    pub fn new(shared: Arc<Shared>, tail: Tail, next_sync_id: u64, limit: u64) -> Self {
        let state = State {
            tail,
            next_sync_id,
            limit,
            waiting: false,
            spare: Vec::new(),
            closed: false,
        };
        let end = state.end();
        shared.set_durable(end);
        Writer {
            shared,
            state: Mutex::new(state),
            space: Condvar::new(),
            commit: GroupCommit::new(end),
            spare: AtomicU64::new(0),
        }
    }

    /// Takes the lock, refusing once the volume is poisoned or closed.
    fn open_state(&self) -> Result<MutexGuard<'_, State>> {
        self.shared.check()?;
        let st = lock(&self.state);
        if st.closed {
            return Err(Error::Closed);
        }
        Ok(st)
    }

    /// Appends an atomic group of records: after a crash, all or none of
    /// them. Returns their positions once they are readable.
    pub fn append(&self, records: Vec<Record>) -> Result<Vec<Lsn>> {
        self.append_locked(self.open_state()?, records).1
    }

    /// Appends a user group under the lock `st`, waiting (without it) while
    /// primary storage holds its limit of segments; hands the lock back.
    fn append_locked<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        records: Vec<Record>,
    ) -> (MutexGuard<'a, State>, Result<Vec<Lsn>>) {
        let cost = match self.check_group(&records, false) {
            Ok(cost) => cost,
            Err(e) => return (st, Err(e)),
        };
        loop {
            let mut b = self.batch(&mut st);
            match self.make_room(&mut st, &mut b, cost, false) {
                Ok(true) => {
                    let lsns = self.encode(&mut st, &mut b, records, 0, &self.shared.user_bytes);
                    let done = self.finish(&mut st, b, Ok(lsns));
                    return (st, done);
                }
                Ok(false) => {
                    st.spare = b.buf;
                    let waited;
                    (st, waited) = self.wait_for_space(st);
                    if let Err(e) = waited {
                        return (st, Err(e));
                    }
                }
                Err(e) => {
                    let done = self.finish(&mut st, b, Err(e));
                    return (st, done);
                }
            }
        }
    }

    /// The archiver's: appends again every record that is still the newest
    /// of its key (found at its position); returns the bytes appended.
    /// Copies never wait for space: they are what makes room.
    pub fn copy_forward(&self, records: Vec<(Lsn, Record)>) -> Result<u64> {
        let mut st = self.open_state()?;
        let mut b = self.batch(&mut st);
        // The records name distinct keys (one segment's records, at most one
        // current per key), so copying one does not change whether another
        // is current; under the lock the index holds every position written.
        let current: Vec<Record> = {
            let index = self.shared.index.read().unwrap_or_else(|p| p.into_inner());
            records
                .into_iter()
                .filter(|(lsn, r)| index.is_current(*lsn, r))
                .map(|(_, r)| r)
                .collect()
        };
        let copy = || {
            let mut bytes = 0;
            for record in current {
                let cost = self.check_group(std::slice::from_ref(&record), true)?;
                self.make_room(&mut st, &mut b, cost, true)?;
                bytes += record.encoded_len() as u64;
                let counter = &self.shared.copied_bytes;
                self.encode(&mut st, &mut b, vec![record], FLAG_COPIED, counter);
                if b.buf.len() >= BATCH_BYTES_MAX {
                    self.flush(&mut st, &mut b)?;
                }
            }
            Ok(bytes)
        };
        let bytes = copy();
        self.finish(&mut st, b, bytes)
    }

    /// Makes everything appended so far durable; concurrent callers share
    /// one fdatasync.
    pub fn sync(&self) -> Result<()> {
        let end = self.open_state()?.end();
        self.wait_durable(end)
    }

    /// Appends a sync record and returns once it is durable and in the
    /// catalog.
    pub fn sync_point(&self, label: String, requester: String) -> Result<SyncPoint> {
        let st = self.open_state()?;
        let info = SyncInfo {
            id: st.next_sync_id,
            time_ns: crate::time::now_ns(),
            label,
            requester,
        };
        let (mut st, lsns) = self.append_locked(st, vec![Record::SyncPoint(info.clone())]);
        let point = SyncPoint {
            lsn: lsns?[0],
            info,
        };
        st.next_sync_id += 1;
        // Under the lock, so that sync points reach the catalog in order.
        self.commit.add_point(point.clone());
        let end = st.end();
        drop(st);
        self.wait_durable(end)?;
        Ok(point)
    }

    /// Makes everything durable and appends nothing more; returns the end
    /// of the log. Also closes a poisoned volume (with its error).
    pub fn close(&self) -> Result<Lsn> {
        let end = {
            let mut st = lock(&self.state);
            st.closed = true;
            st.end()
        };
        self.wait_durable(end)?;
        self.shared.sync_catalog()?;
        Ok(end)
    }

    /// Stops at once, writing nothing more, as if the process were killed.
    pub fn crash(&self) {
        lock(&self.state).closed = true;
        self.commit.stop();
    }

    /// Makes the spare file the last rotation asked for, if any: called
    /// outside every lock by the archiver, which a rotation wakes. A
    /// rotation that finds no recycled file (a volume's first working set
    /// of segments) creates and allocates one under the writer's lock, a
    /// journal commit there (under pgbench p50 2.9 ms, p99 17 ms); so one
    /// that leaves the pool empty asks for a spare for the next. Not made
    /// where it would take primary storage past its limit; a failure is
    /// logged and the segment is created when needed, as without a spare.
    pub fn make_spare(&self) {
        let seq = self.spare.swap(0, Ordering::SeqCst);
        if seq == 0 {
            return;
        }
        if let Err(e) = make_spare(&self.shared, seq) {
            log::warn!("cannot make a spare file for segment {seq} ahead: {e}");
        }
    }

    /// The archiver recycled a segment: writers waiting for room look again.
    pub fn space_made(&self) {
        self.space.notify_all();
    }

    /// The archiver has stopped (closing, or halted by an error it logged):
    /// nothing will make room any more, so writes stop waiting for it.
    pub fn archiver_gone(&self) {
        let mut st = lock(&self.state);
        if st.limit != u64::MAX {
            log::info!("the archiver stopped; writes go on past the working set");
        }
        st.limit = u64::MAX;
        drop(st);
        self.space.notify_all();
    }

    fn wait_durable(&self, target: Lsn) -> Result<()> {
        self.commit.wait_durable(&self.shared, target, || {
            let st = lock(&self.state);
            (st.tail.file.clone(), st.end())
        })
    }

    fn batch(&self, st: &mut State) -> Batch {
        Batch {
            buf: std::mem::take(&mut st.spare),
            at: st.tail.pos,
            written: Vec::new(),
        }
    }

    /// Writes out what `b` still holds after `outcome`. A failure that
    /// concerns only the caller leaves the volume healthy; any other
    /// poisons it.
    fn finish<T>(&self, st: &mut State, mut b: Batch, outcome: Result<T>) -> Result<T> {
        let outcome = outcome.and_then(|v| self.flush(st, &mut b).map(|()| v));
        let outcome = match outcome {
            Err(e) if caller_error(&e) => self.flush(st, &mut b).and(Err(e)),
            other => other,
        };
        match outcome {
            Ok(v) => {
                // The buffer is written out: keep its memory for the next group.
                st.spare = std::mem::take(&mut b.buf);
                Ok(v)
            }
            Err(e) if caller_error(&e) || matches!(e, Error::Poisoned(_) | Error::Closed) => Err(e),
            Err(e) => {
                self.shared.poison(&e);
                Err(Error::Poisoned(e.to_string()))
            }
        }
    }

    /// Checks a group before anything of it is written: its records are
    /// valid, it fits in a segment and, unless it is the archiver's copies,
    /// in the capacity rule. Returns the segment bytes it takes.
    fn check_group(&self, records: &[Record], copy: bool) -> Result<usize> {
        let block_size = self.shared.block_size as usize;
        let (mut len, mut cost) = (0, 0);
        for r in records {
            r.validate(block_size)
                .map_err(|why| Error::Invalid(why.to_string()))?;
            len += r.encoded_len();
            cost += segment_cost(r, r.encoded_len() as u32) as usize;
        }
        let max = group_max(self.shared.segment_size);
        if cost > max {
            return Err(Error::TooLarge { len, max });
        }
        if !copy {
            self.check_capacity(records)?;
        }
        Ok(cost)
    }

    /// Makes room for `cost` bytes in the tail, sealing it and opening the
    /// next segment if needed. Returns false when a user group must first
    /// wait for the archiver to make room in primary storage.
    fn make_room(&self, st: &mut State, b: &mut Batch, cost: usize, copy: bool) -> Result<bool> {
        while cost > self.room(st) {
            if !copy && self.over_limit(st) {
                return Ok(false);
            }
            self.flush(st, b)?;
            self.rotate(st)?;
            b.at = st.tail.pos;
        }
        Ok(true)
    }

    /// Encodes a checked group, which fits the tail, into the batch with
    /// `flags` on every record; returns the records' positions. `counter`
    /// counts its bytes (user or copied).
    fn encode(
        &self,
        st: &mut State,
        b: &mut Batch,
        records: Vec<Record>,
        flags: u8,
        counter: &AtomicU64,
    ) -> Vec<Lsn> {
        let Some(last) = records.len().checked_sub(1) else {
            return Vec::new();
        };
        let len: usize = records.iter().map(|r| r.encoded_len()).sum();
        counter.fetch_add(len as u64, Ordering::Relaxed);
        let mut lsns = Vec::with_capacity(records.len());
        let tail = &mut st.tail;
        for (i, r) in records.into_iter().enumerate() {
            let flags = flags | if i == last { FLAG_GROUP_END } else { 0 };
            let start = b.buf.len();
            tail.last_crc = r.encode(flags, tail.last_crc, &mut b.buf);
            let bytes = &b.buf[start..];
            let key_end = RECORD_HEADER_LEN + r.key_len();
            let value: &[u8] = if r.kind().value_in_summary() {
                &bytes[key_end..]
            } else {
                &[]
            };
            let lsn = Lsn {
                seq: tail.header.seq,
                offset: tail.pos,
            };
            SummaryEntry::encode_parts(
                &mut tail.summary,
                lsn.offset,
                bytes.len() as u32,
                r.kind(),
                flags,
                &bytes[RECORD_HEADER_LEN..key_end],
                value,
            );
            tail.pos += bytes.len() as u32;
            tail.count += 1;
            b.written.push((lsn, r, bytes.len() as u32));
            lsns.push(lsn);
        }
        lsns
    }

    /// Writes what the batch holds and publishes it in the index.
    fn flush(&self, st: &mut State, b: &mut Batch) -> Result<()> {
        if b.buf.is_empty() {
            return Ok(());
        }
        let t = &mut st.tail;
        let seq = t.header.seq;
        t.zero_ahead(b.at + b.buf.len() as u32, self.shared.segment_size)?;
        t.file
            .write_all_at(&b.buf, b.at as u64)
            .map_err(io(format!("cannot write segment {seq} at offset {}", b.at)))?;
        if t.pos - t.hinted >= WRITEBACK_CHUNK {
            t.file
                .start_writeback(t.hinted as u64, (t.pos - t.hinted) as u64);
            t.hinted = t.pos;
        }
        for (lsn, record, _) in &b.written {
            if let Record::Inode { attrs, .. } = record {
                self.shared.segments.inodes().insert(*lsn, attrs.clone());
            }
        }
        let mut index = self.shared.index.write().unwrap_or_else(|p| p.into_inner());
        for (lsn, record, len) in b.written.drain(..) {
            index.apply(lsn, &record, len);
        }
        drop(index);
        b.buf.clear();
        b.at = t.pos;
        Ok(())
    }

    /// Refuses a group that would take the live records past the capacity
    /// rule: data blocks and metadata (inodes, directory entries, xattrs,
    /// symlink targets) alike, counted in the segment bytes they take.
    /// Beyond it, retiring a segment could copy forward as much as it
    /// frees, and the working set would stop making progress. Overwrites
    /// that take no more room than what they replace, truncates and deletes
    /// always pass.
    fn check_capacity(&self, records: &[Record]) -> Result<()> {
        let index = self.shared.index.read().unwrap_or_else(|p| p.into_inner());
        let (mut added, mut freed) = (0u64, 0u64);
        for r in records {
            if !r.is_value() {
                continue;
            }
            added += segment_cost(r, r.encoded_len() as u32) as u64;
            freed += index.replaced_cost(r);
        }
        let live = index.live_cost();
        let cap = self.shared.capacity_bytes;
        if added <= freed || live + (added - freed) <= cap {
            return Ok(());
        }
        Err(Error::NoSpace(format!(
            "live data would exceed the volume's capacity of {cap} bytes of records ({live} in use, {} more asked); delete data or enlarge the working set",
            added - freed
        )))
    }

    /// Bytes left in the tail for records and their summary entries.
    fn room(&self, st: &State) -> usize {
        if st.tail.sealed {
            return 0;
        }
        self.shared.segment_size as usize
            - FOOTER_LEN
            - st.tail.pos as usize
            - st.tail.summary.len()
    }

    /// Whether opening the next segment would take primary storage past
    /// what user writes may fill.
    fn over_limit(&self, st: &State) -> bool {
        let oldest = self.shared.primary_oldest.load(Ordering::SeqCst);
        (st.tail.header.seq + 2).saturating_sub(oldest) > st.limit
    }

    /// Waits, without the lock, until the archiver may have made room in
    /// primary storage (its copies take the lock meanwhile: they are what
    /// makes room); hands the lock back, also with an error.
    fn wait_for_space<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
    ) -> (MutexGuard<'a, State>, Result<()>) {
        if !st.waiting {
            st.waiting = true;
            self.shared.waiting.store(true, Ordering::SeqCst);
            log::warn!(
                "primary storage holds {} segments, the working set and its reserve; writes wait for the archiver",
                st.limit
            );
        }
        let (mut st, _) = self
            .space
            .wait_timeout(st, SPACE_POLL)
            .unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.shared.check() {
            return (st, Err(e));
        }
        if st.closed {
            return (st, Err(Error::Closed));
        }
        if !self.over_limit(&st) {
            st.waiting = false;
            self.shared.waiting.store(false, Ordering::SeqCst);
            log::info!("the archiver made room; writes resume");
        }
        (st, Ok(()))
    }

    /// Seals the current segment, then opens the next. In this order a
    /// crash leaves either the old segment unsealed and last (recovery
    /// scans it) or sealed; never an unsealed one behind a newer file. The
    /// next one's name becomes durable with its first fdatasync, outside
    /// the lock (see [`TailFile`](super::tail::TailFile)).
    fn rotate(&self, st: &mut State) -> Result<()> {
        let seq = st.tail.header.seq;
        if !st.tail.sealed {
            seal(&self.shared, &mut st.tail)?;
            let _ = self.shared.archiver_wake.0.try_send(());
        }
        // A full disk fails only the group that needed the segment.
        st.tail = open_segment(&self.shared, seq + 1, st.next_sync_id)?;
        self.shared.segments.set_tail(seq + 1);
        if lock(&self.shared.free).is_empty() && !self.over_limit(st) {
            self.spare.store(seq + 2, Ordering::SeqCst);
            let _ = self.shared.archiver_wake.0.try_send(());
        }
        log::debug!("sealed segment {seq}, opened {}", seq + 1);
        Ok(())
    }
}
