//! The writer thread: the only code that appends to the log.
//!
//! It takes typed requests from a bounded channel, gathers whatever is
//! queued into one batch, appends the batch with one write, publishes the
//! new positions in the index, and answers. Requests for durability (fsync,
//! sync points, close) are handed with their batch to the syncer thread,
//! which fdatasyncs while the writer appends the next batches; batches
//! waiting for it meanwhile share its next fdatasync: group commit. A
//! group that does not fit the current segment seals it (summary,
//! fdatasync, footer, fdatasync) and opens the next one, reusing a recycled
//! file when there is one. A full disk at that point fails the group with
//! ENOSPC; any other I/O failure poisons the volume.
//!
//! The archiver talks to the writer on a channel of its own: its
//! copy-forward requests are served even while user writes wait for space
//! because primary storage holds its limit of segments (back-pressure).

use super::Shared;
use super::catalog::SyncPoint;
pub use super::replies::Reply;
use super::replies::{Owed, poisoned};
use super::syncer::{SYNC_QUEUE_LEN, SyncJob, sync_loop};
use super::tail::{Tail, open_segment, seal};
use crate::error::{Error, Result, io};
use crate::format::record::{FLAG_COPIED, FLAG_GROUP_END, RECORD_HEADER_LEN};
use crate::format::segment::{FOOTER_LEN, SEGMENT_HEADER_LEN, segment_cost};
use crate::format::{Lsn, Record, SummaryEntry, SyncInfo};
use crossbeam_channel::{Receiver, Sender, bounded, never, select};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Bound of the request channel: callers wait when the writer falls behind.
pub const QUEUE_LEN: usize = 1024;
/// Most requests gathered into one batch.
const BATCH_MAX: usize = 256;
/// A batch is written out once its buffer holds this many bytes; it may
/// hold several requests, and one request may take it past this.
const BATCH_BYTES_MAX: usize = 16 << 20;
/// Bytes appended between two writeback hints: the writer asks the kernel
/// to start writing what it appended without waiting, so the fdatasync that
/// seals a full segment, or that a sync point or fsync asks for, finds most
/// of it already written. Small writes are not hinted: the call costs more
/// than it saves when an fdatasync follows at once.
const WRITEBACK_CHUNK: u32 = 1 << 20;
/// How often a writer waiting for space looks again without being woken.
const SPACE_POLL: Duration = Duration::from_secs(1);

pub enum Request {
    /// Append an atomic group of records: after a crash, all or none of them.
    Append {
        records: Vec<Record>,
        reply: Reply<Vec<Lsn>>,
    },
    /// Make everything appended so far durable.
    Sync { reply: Reply<()> },
    /// Append a sync record and make it durable.
    SyncPoint {
        label: String,
        requester: String,
        reply: Reply<SyncPoint>,
    },
    /// Make everything durable and stop; answers with the end of the log.
    Close { reply: Reply<Lsn> },
    /// The archiver's: append these records again, each found at its
    /// position, unless a newer record of its key was written meanwhile.
    /// Answers with the number of bytes appended.
    CopyForward {
        records: Vec<(Lsn, Record)>,
        reply: Reply<u64>,
    },
    /// Stop at once, writing nothing more, as if the process were killed.
    Crash,
}

pub struct Writer {
    shared: Arc<Shared>,
    tail: Tail,
    next_sync_id: u64,
    /// Requests of the archiver.
    archiver: Receiver<Request>,
    /// Signalled by the archiver when it recycled a segment.
    space: Receiver<()>,
    /// Most segments user writes may fill in primary storage.
    limit: u64,
    waiting: bool,
    /// The last batch's buffer, emptied: reused so that every batch does
    /// not fault in fresh zeroed pages from the kernel.
    spare: Vec<u8>,
    /// Batches whose durability the syncer owes (set by `spawn`).
    syncer: Option<Sender<SyncJob>>,
    /// Set by `Crash`: the syncer then drops what it still holds unsynced.
    crashed: Arc<AtomicBool>,
}

/// How the writer is connected to the archiver.
pub struct ArchiverLink {
    pub requests: Receiver<Request>,
    pub space: Receiver<()>,
    /// Segments user writes may fill in primary before they wait.
    pub limit: u64,
}

impl ArchiverLink {
    /// For a volume without an archiver: no requests, no limit.
    pub fn none() -> Self {
        ArchiverLink {
            requests: never(),
            space: never(),
            limit: u64::MAX,
        }
    }
}

/// What one batch has written and owes its requesters.
#[derive(Default)]
struct Batch {
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    at: u32,
    /// Records written (or to be written) with their position and length.
    written: Vec<(Lsn, Record, u32)>,
    owed: Owed,
    need_sync: bool,
    /// An archiver batch: appends are copies and never wait for space.
    copy: bool,
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
    pub fn new(shared: Arc<Shared>, tail: Tail, next_sync_id: u64, link: ArchiverLink) -> Self {
        Writer {
            shared,
            tail,
            next_sync_id,
            archiver: link.requests,
            space: link.space,
            limit: link.limit,
            waiting: false,
            spare: Vec::new(),
            syncer: None,
            crashed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Starts the writer thread. Everything before the tail is durable
    /// from the start: recovery read it from disk.
    pub fn spawn(mut self, rx: Receiver<Request>) -> Result<JoinHandle<()>> {
        self.shared.set_durable(self.end());
        let (jobs, queue) = bounded(SYNC_QUEUE_LEN);
        let (shared, crashed) = (self.shared.clone(), self.crashed.clone());
        let syncer = std::thread::Builder::new()
            .name("lsvfs-syncer".into())
            .spawn(move || sync_loop(shared, queue, crashed))
            .map_err(io("cannot start the syncer thread"))?;
        self.syncer = Some(jobs);
        std::thread::Builder::new()
            .name("lsvfs-writer".into())
            .spawn(move || {
                self.run(rx);
                // What the syncer still owes is answered before the writer
                // is seen to stop.
                self.syncer.take();
                let _ = syncer.join();
            })
            .map_err(io("cannot start the writer thread"))
    }

    fn run(&mut self, rx: Receiver<Request>) {
        loop {
            let archiver = self.archiver.clone();
            select! {
                recv(archiver) -> r => match r {
                    Ok(req) => {
                        self.handle(vec![req], true);
                    }
                    Err(_) => self.archiver_gone(),
                },
                recv(rx) -> r => {
                    let Ok(first) = r else { return };
                    let mut batch = vec![first];
                    while batch.len() < BATCH_MAX {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    if !self.handle(batch, false) {
                        return;
                    }
                }
            }
        }
    }

    fn end(&self) -> Lsn {
        Lsn {
            seq: self.tail.header.seq,
            offset: self.tail.pos,
        }
    }

    /// Handles one batch; returns false when the writer must stop.
    fn handle(&mut self, requests: Vec<Request>, copy: bool) -> bool {
        let mut b = Batch {
            buf: std::mem::take(&mut self.spare),
            at: self.tail.pos,
            copy,
            ..Default::default()
        };
        let mut go_on = true;
        for req in requests {
            if let Request::Crash = req {
                self.crashed.store(true, Ordering::SeqCst);
                return false;
            }
            if let Request::Close { .. } = req {
                go_on = false;
            }
            if let Err(e) = self.shared.check() {
                refuse(req, e);
                continue;
            }
            let step = self
                .step(&mut b, req)
                .and_then(|()| match b.buf.len() >= BATCH_BYTES_MAX {
                    true => self.flush(&mut b),
                    false => Ok(()),
                });
            if let Err(e) = step {
                self.shared.poison(&e);
                // Nothing of a failed batch is written: its buffer goes too.
                std::mem::take(&mut b).owed.settle(Err(&e.to_string()));
            }
        }
        // Written out here; durability, if asked, is the syncer's.
        if let Err(e) = self.flush(&mut b) {
            self.shared.poison(&e);
            b.owed.settle(Err(&e.to_string()));
            return go_on;
        }
        // The buffer is written out: keep its memory for the next batch.
        self.spare = std::mem::take(&mut b.buf);
        let durable = b.owed.take_durable();
        b.owed.settle(Ok(self.end()));
        if b.need_sync {
            let job = SyncJob {
                file: self.tail.file.clone(),
                seq: self.tail.header.seq,
                end: self.end(),
                owed: durable,
            };
            let syncer = self
                .syncer
                .as_ref()
                .expect("the syncer runs with the writer");
            if let Err(unsent) = syncer.send(job) {
                unsent
                    .into_inner()
                    .owed
                    .settle(Err("the syncer thread is gone"));
            }
        }
        go_on
    }

    /// Adds one request to the batch. A failure that concerns only this
    /// request is answered here; any other is returned, after answering
    /// this request, and poisons the volume.
    fn step(&mut self, b: &mut Batch, req: Request) -> Result<()> {
        fn answer<T>(reply: &Reply<T>, e: Error) -> Result<()> {
            if caller_error(&e) {
                let _ = reply.send(Err(e));
                return Ok(());
            }
            let _ = reply.send(poisoned(&e.to_string()));
            Err(e)
        }
        match req {
            Request::Append { records, reply } => match self.append(b, records, 0) {
                Ok(lsns) => b.owed.appends.push((reply, lsns)),
                Err(e) => return answer(&reply, e),
            },
            Request::Sync { reply } => {
                b.need_sync = true;
                b.owed.syncs.push(reply);
            }
            Request::SyncPoint {
                label,
                requester,
                reply,
            } => match self.sync_point(b, label, requester) {
                Ok(p) => b.owed.points.push((reply, p)),
                Err(e) => return answer(&reply, e),
            },
            Request::Close { reply } => {
                b.need_sync = true;
                b.owed.close = Some(reply);
            }
            Request::CopyForward { records, reply } => match self.copy_forward(b, records) {
                Ok(n) => b.owed.copies.push((reply, n)),
                Err(e) => return answer(&reply, e),
            },
            Request::Crash => unreachable!("handled by the caller"),
        }
        Ok(())
    }

    /// Appends again every record that is still the newest of its key.
    fn copy_forward(&mut self, b: &mut Batch, records: Vec<(Lsn, Record)>) -> Result<u64> {
        // Positions encoded earlier in this batch must be in the index before
        // it says what is current. The records name distinct keys (one
        // segment's records, at most one current per key), so copying one
        // does not change whether another is current.
        self.flush(b)?;
        let current: Vec<Record> = {
            let index = self.shared.index.read().unwrap_or_else(|p| p.into_inner());
            records
                .into_iter()
                .filter(|(lsn, r)| index.is_current(*lsn, r))
                .map(|(_, r)| r)
                .collect()
        };
        let mut bytes = 0;
        for record in current {
            bytes += record.encoded_len() as u64;
            self.append(b, vec![record], FLAG_COPIED)?;
        }
        Ok(bytes)
    }

    /// Encodes an atomic group into the batch with `flags` on every record;
    /// returns the records' positions.
    fn append(&mut self, b: &mut Batch, records: Vec<Record>, flags: u8) -> Result<Vec<Lsn>> {
        let block_size = self.shared.block_size as usize;
        let (mut len, mut cost) = (0, 0);
        for r in &records {
            r.validate(block_size)
                .map_err(|why| Error::Invalid(why.to_string()))?;
            len += r.encoded_len();
            cost += segment_cost(r, r.encoded_len() as u32) as usize;
        }
        let max = group_max(self.shared.segment_size);
        if cost > max {
            return Err(Error::TooLarge { len, max });
        }
        if records.is_empty() {
            return Ok(Vec::new());
        }
        if !b.copy {
            self.check_capacity(&records)?;
        }
        while cost > self.room() {
            if !b.copy && self.over_limit() {
                self.wait_for_space(b)?;
                continue;
            }
            self.rotate(b)?;
        }
        let counter = match b.copy {
            true => &self.shared.copied_bytes,
            false => &self.shared.user_bytes,
        };
        counter.fetch_add(len as u64, Ordering::Relaxed);
        let last = records.len() - 1;
        let mut lsns = Vec::with_capacity(records.len());
        for (i, r) in records.into_iter().enumerate() {
            let flags = flags | if i == last { FLAG_GROUP_END } else { 0 };
            let start = b.buf.len();
            self.tail.last_crc = r.encode(flags, self.tail.last_crc, &mut b.buf);
            let bytes = &b.buf[start..];
            let key_end = RECORD_HEADER_LEN + r.key_len();
            let value: &[u8] = if r.kind().value_in_summary() {
                &bytes[key_end..]
            } else {
                &[]
            };
            let lsn = self.end();
            SummaryEntry::encode_parts(
                &mut self.tail.summary,
                lsn.offset,
                bytes.len() as u32,
                r.kind(),
                flags,
                &bytes[RECORD_HEADER_LEN..key_end],
                value,
            );
            self.tail.pos += bytes.len() as u32;
            self.tail.count += 1;
            b.written.push((lsn, r, bytes.len() as u32));
            lsns.push(lsn);
        }
        Ok(lsns)
    }

    fn sync_point(&mut self, b: &mut Batch, label: String, requester: String) -> Result<SyncPoint> {
        let time_ns = crate::time::now_ns();
        let info = SyncInfo {
            id: self.next_sync_id,
            time_ns,
            label,
            requester,
        };
        let lsn = self.append(b, vec![Record::SyncPoint(info.clone())], 0)?[0];
        self.next_sync_id += 1;
        b.need_sync = true;
        Ok(SyncPoint { lsn, info })
    }

    /// Writes what the batch holds and publishes it in the index.
    fn flush(&mut self, b: &mut Batch) -> Result<()> {
        if b.buf.is_empty() {
            return Ok(());
        }
        let seq = self.tail.header.seq;
        let end = b.at + b.buf.len() as u32;
        self.tail.zero_ahead(end, self.shared.segment_size)?;
        self.tail
            .file
            .write_all_at(&b.buf, b.at as u64)
            .map_err(io(format!("cannot write segment {seq} at offset {}", b.at)))?;
        let t = &mut self.tail;
        if t.pos - t.hinted >= WRITEBACK_CHUNK {
            t.file
                .start_writeback(t.hinted as u64, (t.pos - t.hinted) as u64);
            t.hinted = t.pos;
        }
        let mut index = self.shared.index.write().unwrap_or_else(|p| p.into_inner());
        for (lsn, record, len) in b.written.drain(..) {
            index.apply(lsn, &record, len);
        }
        drop(index);
        b.buf.clear();
        b.at = self.tail.pos;
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
    fn room(&self) -> usize {
        if self.tail.sealed {
            return 0;
        }
        self.shared.segment_size as usize
            - FOOTER_LEN
            - self.tail.pos as usize
            - self.tail.summary.len()
    }

    /// Whether opening the next segment would take primary storage past
    /// what user writes may fill.
    fn over_limit(&self) -> bool {
        let oldest = self.shared.primary_oldest.load(Ordering::SeqCst);
        (self.tail.header.seq + 2).saturating_sub(oldest) > self.limit
    }

    /// Waits until the archiver has made room in primary storage, serving
    /// its requests meanwhile (they are what makes room).
    fn wait_for_space(&mut self, b: &mut Batch) -> Result<()> {
        self.flush(b)?;
        if !self.waiting {
            self.waiting = true;
            self.shared.waiting.store(true, Ordering::SeqCst);
            log::warn!(
                "primary storage holds {} segments, the working set and its reserve; writes wait for the archiver",
                self.limit
            );
        }
        let archiver = self.archiver.clone();
        select! {
            recv(archiver) -> r => match r {
                Ok(req) => {
                    self.handle(vec![req], true);
                    self.shared.check()?;
                }
                Err(_) => self.archiver_gone(),
            },
            recv(self.space) -> r => if r.is_err() {
                self.archiver_gone();
            },
            default(SPACE_POLL) => {}
        }
        b.at = self.tail.pos;
        if !self.over_limit() {
            self.waiting = false;
            self.shared.waiting.store(false, Ordering::SeqCst);
            log::info!("the archiver made room; writes resume");
        }
        Ok(())
    }

    /// The archiver has stopped (closing, or halted by an error it logged):
    /// nothing will make room any more, so writes stop waiting for it.
    fn archiver_gone(&mut self) {
        if self.limit != u64::MAX {
            log::info!("the archiver stopped; writes go on past the working set");
        }
        self.archiver = never();
        self.space = never();
        self.limit = u64::MAX;
    }

    /// Seals the current segment, then opens the next. In this order a
    /// crash leaves either the old segment unsealed and last (recovery
    /// scans it) or sealed; never an unsealed one behind a newer file.
    fn rotate(&mut self, b: &mut Batch) -> Result<()> {
        self.flush(b)?;
        let seq = self.tail.header.seq;
        if !self.tail.sealed {
            seal(&self.shared, &mut self.tail)?;
            let _ = self.shared.archiver_wake.0.try_send(());
        }
        // A full disk fails only the group that needed the segment.
        self.tail = open_segment(&self.shared, seq + 1, self.next_sync_id)?;
        self.shared.segments.set_tail(seq + 1);
        b.at = self.tail.pos;
        log::debug!("sealed segment {seq}, opened {}", seq + 1);
        Ok(())
    }
}

fn refuse(req: Request, e: Error) {
    let msg = match e {
        Error::Poisoned(why) => why,
        other => other.to_string(),
    };
    match req {
        Request::Append { reply, .. } => drop(reply.send(poisoned(&msg))),
        Request::Sync { reply } => drop(reply.send(poisoned(&msg))),
        Request::SyncPoint { reply, .. } => drop(reply.send(poisoned(&msg))),
        Request::Close { reply } => drop(reply.send(poisoned(&msg))),
        Request::CopyForward { reply, .. } => drop(reply.send(poisoned(&msg))),
        Request::Crash => {}
    }
}
