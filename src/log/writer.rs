//! The writer thread: the only code that appends to the log.
//!
//! It takes typed requests from a bounded channel, gathers whatever is
//! queued into one batch, appends the batch with one write, publishes the
//! new positions in the index, and answers. Requests for durability in the
//! batch (fsync, sync points, close) share one fdatasync: group commit. A
//! group that does not fit the current segment seals it (summary, footer,
//! fdatasync) and opens the next one, reusing a recycled file when there is
//! one. Any I/O failure poisons the volume.

use super::catalog::SyncPoint;
use super::{Shared, lock, segment};
use crate::error::{Error, Result, io};
use crate::format::record::{FLAG_GROUP_END, RECORD_HEADER_LEN};
use crate::format::segment::{FOOTER_LEN, SEGMENT_HEADER_LEN};
use crate::format::{Footer, Lsn, Record, SegmentHeader, SummaryEntry, SyncInfo};
use crossbeam_channel::{Receiver, Sender};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

/// Bound of the request channel: callers wait when the writer falls behind.
pub const QUEUE_LEN: usize = 1024;
/// Most requests gathered into one batch.
const BATCH_MAX: usize = 256;
/// Most bytes gathered into one write.
const BATCH_BYTES_MAX: usize = 16 << 20;

pub type Reply<T> = Sender<Result<T>>;

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
    /// Stop at once, writing nothing more, as if the process were killed.
    Crash,
}

/// The segment being appended to.
pub struct Tail {
    pub file: File,
    pub header: SegmentHeader,
    pub pos: u32,
    pub last_crc: u32,
    /// Encoded summary entries of the records written so far.
    pub summary: Vec<u8>,
    pub count: u32,
}

pub struct Writer {
    shared: Arc<Shared>,
    tail: Tail,
    next_sync_id: u64,
}

/// What one batch has written and owes its requesters.
#[derive(Default)]
struct Batch {
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    at: u32,
    /// Records written (or to be written) with their position and length.
    written: Vec<(Lsn, Record, u32)>,
    appends: Vec<(Reply<Vec<Lsn>>, Vec<Lsn>)>,
    syncs: Vec<Reply<()>>,
    points: Vec<(Reply<SyncPoint>, SyncPoint)>,
    close: Option<Reply<Lsn>>,
    need_sync: bool,
}

impl Batch {
    fn fail(self, err: &Error) {
        let msg = err.to_string();
        for (r, _) in self.appends {
            let _ = r.send(poisoned(&msg));
        }
        for r in self.syncs {
            let _ = r.send(poisoned(&msg));
        }
        for (r, _) in self.points {
            let _ = r.send(poisoned(&msg));
        }
        if let Some(r) = self.close {
            let _ = r.send(poisoned(&msg));
        }
    }
}

/// Largest atomic group that fits in an empty segment of `segment_size`.
pub fn group_max(segment_size: u64) -> usize {
    segment_size as usize - SEGMENT_HEADER_LEN - FOOTER_LEN
}

fn summary_len(record: &Record) -> usize {
    let value = if record.kind().value_in_summary() {
        record.value_len()
    } else {
        0
    };
    14 + record.key_len() + value
}

impl Writer {
    pub fn new(shared: Arc<Shared>, tail: Tail, next_sync_id: u64) -> Self {
        Writer {
            shared,
            tail,
            next_sync_id,
        }
    }

    /// Starts the writer thread. Everything before the tail is durable
    /// from the start: recovery read it from disk.
    pub fn spawn(self, rx: Receiver<Request>) -> Result<JoinHandle<()>> {
        self.shared.set_durable(self.end());
        std::thread::Builder::new()
            .name("lsvfs-writer".into())
            .spawn(move || self.run(rx))
            .map_err(io("cannot start the writer thread"))
    }

    fn run(mut self, rx: Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < BATCH_MAX {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            if !self.handle(batch) {
                return;
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
    fn handle(&mut self, requests: Vec<Request>) -> bool {
        let mut b = Batch {
            at: self.tail.pos,
            ..Default::default()
        };
        let mut go_on = true;
        for req in requests {
            if let Request::Crash = req {
                return false;
            }
            if let Err(e) = self.shared.check() {
                refuse(req, e);
                continue;
            }
            let step = match req {
                Request::Append { records, reply } => match self.append(&mut b, records) {
                    Ok(lsns) => {
                        b.appends.push((reply, lsns));
                        Ok(())
                    }
                    Err(e @ (Error::Invalid(_) | Error::TooLarge { .. })) => {
                        let _ = reply.send(Err(e));
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                Request::Sync { reply } => {
                    b.need_sync = true;
                    b.syncs.push(reply);
                    Ok(())
                }
                Request::SyncPoint {
                    label,
                    requester,
                    reply,
                } => self.sync_point(&mut b, label, requester).map(|p| {
                    b.points.push((reply, p));
                }),
                Request::Close { reply } => {
                    b.need_sync = true;
                    b.close = Some(reply);
                    go_on = false;
                    Ok(())
                }
                Request::Crash => unreachable!("handled above"),
            };
            if let Err(e) = step {
                self.shared.poison(&e);
                b.fail(&e);
                return true;
            }
            if b.buf.len() >= BATCH_BYTES_MAX
                && let Err(e) = self.flush(&mut b)
            {
                self.shared.poison(&e);
                b.fail(&e);
                return true;
            }
        }
        if let Err(e) = self.finish(&mut b) {
            self.shared.poison(&e);
            b.fail(&e);
            return go_on;
        }
        for (r, lsns) in b.appends {
            let _ = r.send(Ok(lsns));
        }
        for r in b.syncs {
            let _ = r.send(Ok(()));
        }
        for (r, p) in b.points {
            let _ = r.send(Ok(p));
        }
        if let Some(r) = b.close {
            let _ = r.send(Ok(self.end()));
        }
        go_on
    }

    /// Writes the batch, makes it durable if asked, records sync points.
    fn finish(&mut self, b: &mut Batch) -> Result<()> {
        self.flush(b)?;
        if b.need_sync {
            self.tail
                .file
                .sync_data()
                .map_err(io(format!("cannot fsync segment {}", self.tail.header.seq)))?;
            self.shared.set_durable(self.end());
        }
        let points: Vec<SyncPoint> = b.points.iter().map(|(_, p)| p.clone()).collect();
        lock(&self.shared.catalog).append(&points)
    }

    /// Encodes an atomic group into the batch; returns the records' positions.
    fn append(&mut self, b: &mut Batch, records: Vec<Record>) -> Result<Vec<Lsn>> {
        let block_size = self.shared.block_size as usize;
        let mut len = 0;
        let mut sum_len = 0;
        for r in &records {
            r.validate(block_size)
                .map_err(|why| Error::Invalid(why.to_string()))?;
            len += r.encoded_len();
            sum_len += summary_len(r);
        }
        let max = group_max(self.shared.segment_size);
        if len + sum_len > max {
            return Err(Error::TooLarge { len, max });
        }
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let room = self.shared.segment_size as usize
            - FOOTER_LEN
            - self.tail.pos as usize
            - self.tail.summary.len();
        if len + sum_len > room {
            self.rotate(b)?;
        }
        let last = records.len() - 1;
        let mut lsns = Vec::with_capacity(records.len());
        for (i, r) in records.into_iter().enumerate() {
            let flags = if i == last { FLAG_GROUP_END } else { 0 };
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
        let lsn = self.append(b, vec![Record::SyncPoint(info.clone())])?[0];
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
        self.tail
            .file
            .write_all_at(&b.buf, b.at as u64)
            .map_err(io(format!("cannot write segment {seq} at offset {}", b.at)))?;
        let mut index = self.shared.index.write().unwrap_or_else(|p| p.into_inner());
        for (lsn, record, len) in b.written.drain(..) {
            index.apply(lsn, &record, len);
        }
        drop(index);
        b.buf.clear();
        b.at = self.tail.pos;
        Ok(())
    }

    /// Seals the current segment and opens the next.
    fn rotate(&mut self, b: &mut Batch) -> Result<()> {
        self.flush(b)?;
        let t = &self.tail;
        let seq = t.header.seq;
        let footer = Footer {
            seq,
            records_end: t.pos,
            record_count: t.count,
            last_crc: t.last_crc,
            summary_len: t.summary.len() as u32,
            summary_crc: crc32c::crc32c(&t.summary),
        };
        let footer_at = self.shared.segment_size - FOOTER_LEN as u64;
        t.file
            .write_all_at(&t.summary, t.pos as u64)
            .and_then(|_| t.file.write_all_at(&footer.encode(), footer_at))
            .and_then(|_| t.file.sync_data())
            .map_err(io(format!("cannot seal segment {seq}")))?;
        self.tail = open_segment(&self.shared, seq + 1, self.next_sync_id)?;
        b.at = self.tail.pos;
        self.shared.set_durable(self.end());
        log::debug!("sealed segment {seq}, opened {}", seq + 1);
        Ok(())
    }
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
    let file = segment::create(&shared.seg_dir, &header, reuse.as_deref())?;
    let (_, crc) = header.encode();
    Ok(Tail {
        file,
        header,
        pos: SEGMENT_HEADER_LEN as u32,
        last_crc: crc,
        summary: Vec::new(),
        count: 0,
    })
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
        Request::Crash => {}
    }
}

fn poisoned<T>(why: &str) -> Result<T> {
    Err(Error::Poisoned(why.to_string()))
}
