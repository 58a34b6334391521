//! The `.lsvfs/` control directory as FUSE nodes: reserved inode numbers,
//! attributes, access for root and the mount's owner only, open handles
//! and the sync-point file's write.

use super::freeze::Gate;
use super::reply::file_attr;
use crate::control_files::{
    self, CONTROL_DIR, FREEZE_FILE, FreezeRequest, Gauges, Metrics, Op, RESTORE_FILE, STATS_FILE,
    STATUS_FILE, SYNC_POINT_FILE, SYNC_POINTS_DIR,
};
use crate::format::{FileKind, InodeAttrs};
use crate::fs::{Entry, Fs};
use crate::volume::ROOT_INO;
use fuser::{Errno, FileAttr, FopenFlags, Notifier, ReplyWrite, Request};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Inode numbers of the control nodes, far above any the volume hands out.
const DIR_INO: u64 = u64::MAX - 15;
const SYNC_POINT_INO: u64 = DIR_INO + 1;
const STATS_INO: u64 = DIR_INO + 2;
const STATUS_INO: u64 = DIR_INO + 3;
/// `.lsvfs/sync-points`: its entries are views (see `sync_points.rs`).
pub const SYNC_POINTS_INO: u64 = DIR_INO + 4;
const RESTORE_INO: u64 = DIR_INO + 5;
const FREEZE_INO: u64 = DIR_INO + 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlNode {
    Dir,
    SyncPoint,
    Stats,
    Status,
    SyncPoints,
    Restore,
    Freeze,
}

/// How long the kernel may cache the control nodes' names and attributes:
/// they never change, so an hour. An agent taking a sync point every second
/// would otherwise find the names expired (the live mount's one second)
/// and pay two lookups, a round trip each, on top of the sync point. The
/// kernel checks their modes (`default_permissions`) also on cached names.
pub const CONTROL_TTL: Duration = Duration::from_secs(3600);

/// Per-handle state of an open control file.
#[derive(Clone)]
pub enum ControlHandle {
    /// The answer line of the last sync point this handle made, and how
    /// much of it has been read: the write moved the file offset past the
    /// label, so reads go by this cursor, not by the offset.
    SyncPoint(Arc<Mutex<Answer>>),
    /// The answer of the last restore this handle asked for, read the same
    /// way.
    Restore(Arc<Mutex<Answer>>),
    /// The answer of the last freeze or thaw, read the same way.
    Freeze(Arc<Mutex<Answer>>),
    /// The metrics or the status as rendered when the file was opened.
    Snapshot(Arc<Vec<u8>>),
}

#[derive(Default)]
pub struct Answer {
    line: Vec<u8>,
    read: usize,
}

fn slice(bytes: &[u8], from: usize, size: u32) -> Vec<u8> {
    let start = from.min(bytes.len());
    let end = (start + size as usize).min(bytes.len());
    bytes[start..end].to_vec()
}

/// The control node numbered `ino`, if it is one.
pub fn node(ino: u64) -> Option<ControlNode> {
    match ino {
        DIR_INO => Some(ControlNode::Dir),
        SYNC_POINT_INO => Some(ControlNode::SyncPoint),
        STATS_INO => Some(ControlNode::Stats),
        STATUS_INO => Some(ControlNode::Status),
        SYNC_POINTS_INO => Some(ControlNode::SyncPoints),
        RESTORE_INO => Some(ControlNode::Restore),
        FREEZE_INO => Some(ControlNode::Freeze),
        _ => None,
    }
}

impl ControlHandle {
    /// How the file is opened: snapshots read by offset, so they seek
    /// (`head` seeks back); the sync-point file reads by its own cursor.
    pub fn open_flags(&self) -> FopenFlags {
        match self {
            ControlHandle::SyncPoint(_) | ControlHandle::Restore(_) | ControlHandle::Freeze(_) => {
                FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_NONSEEKABLE
            }
            ControlHandle::Snapshot(_) => FopenFlags::FOPEN_DIRECT_IO,
        }
    }

    pub fn read(&self, offset: u64, size: u32) -> Vec<u8> {
        match self {
            ControlHandle::SyncPoint(answer)
            | ControlHandle::Restore(answer)
            | ControlHandle::Freeze(answer) => {
                let mut a = answer.lock().unwrap_or_else(|p| p.into_inner());
                let out = slice(&a.line, a.read, size);
                a.read += out.len();
                out
            }
            ControlHandle::Snapshot(text) => slice(text, offset as usize, size),
        }
    }
}

pub struct Control {
    fs: Arc<Fs>,
    metrics: Arc<Metrics>,
    owner: u32,
    /// Tells the kernel which of its cached names a restore changed; set
    /// once the session exists.
    notifier: Arc<OnceLock<Notifier>>,
    /// The mount's freeze, shared with every change's way in.
    gate: Arc<Gate>,
}

impl Control {
    pub fn new(fs: Arc<Fs>, metrics: Arc<Metrics>, owner: u32) -> Self {
        Control {
            fs,
            metrics,
            owner,
            notifier: Arc::default(),
            gate: Arc::default(),
        }
    }

    /// The freeze gate every change passes.
    pub fn gate(&self) -> Arc<Gate> {
        self.gate.clone()
    }

    /// Where the mount puts its session's notifier.
    pub fn notifier(&self) -> Arc<OnceLock<Notifier>> {
        self.notifier.clone()
    }

    pub fn owner(&self) -> u32 {
        self.owner
    }

    pub fn is_control_name(&self, name: &[u8]) -> bool {
        name == CONTROL_DIR.as_bytes()
    }

    /// The control node `name` in `parent`, the control directory (the
    /// control directory itself in the root is the adapter's to find).
    pub fn lookup(&self, parent: ControlNode, name: &[u8]) -> Option<ControlNode> {
        let name = std::str::from_utf8(name).ok()?;
        match (parent, name) {
            (ControlNode::Dir, SYNC_POINT_FILE) => Some(ControlNode::SyncPoint),
            (ControlNode::Dir, STATS_FILE) => Some(ControlNode::Stats),
            (ControlNode::Dir, STATUS_FILE) => Some(ControlNode::Status),
            (ControlNode::Dir, SYNC_POINTS_DIR) => Some(ControlNode::SyncPoints),
            (ControlNode::Dir, RESTORE_FILE) => Some(ControlNode::Restore),
            (ControlNode::Dir, FREEZE_FILE) => Some(ControlNode::Freeze),
            _ => None,
        }
    }

    /// Looking `node` up: for root and the mount's owner only.
    pub fn entry(&self, req: &Request, node: ControlNode) -> Result<(Duration, FileAttr), Errno> {
        self.check_access(req)?;
        Ok((CONTROL_TTL, self.attr(node)))
    }

    fn ino(node: ControlNode) -> u64 {
        match node {
            ControlNode::Dir => DIR_INO,
            ControlNode::SyncPoint => SYNC_POINT_INO,
            ControlNode::Stats => STATS_INO,
            ControlNode::Status => STATUS_INO,
            ControlNode::SyncPoints => SYNC_POINTS_INO,
            ControlNode::Restore => RESTORE_INO,
            ControlNode::Freeze => FREEZE_INO,
        }
    }

    pub fn attr(&self, node: ControlNode) -> FileAttr {
        let (kind, mode) = match node {
            ControlNode::Dir => (FileKind::Directory, 0o700),
            ControlNode::SyncPoints => (FileKind::Directory, 0o500),
            ControlNode::SyncPoint | ControlNode::Restore | ControlNode::Freeze => {
                (FileKind::Regular, 0o600)
            }
            ControlNode::Stats | ControlNode::Status => (FileKind::Regular, 0o400),
        };
        let mut a = InodeAttrs::new(kind, mode, self.owner, 0);
        a.parent = ROOT_INO;
        file_attr(Self::ino(node), &a, 4096)
    }

    pub fn list(&self, node: ControlNode) -> Vec<Entry> {
        let entry = |name: &str, ino, kind| Entry {
            name: name.as_bytes().to_vec(),
            ino,
            kind,
        };
        match node {
            ControlNode::Dir => vec![
                entry(".", DIR_INO, FileKind::Directory),
                entry("..", ROOT_INO, FileKind::Directory),
                entry(SYNC_POINT_FILE, SYNC_POINT_INO, FileKind::Regular),
                entry(STATS_FILE, STATS_INO, FileKind::Regular),
                entry(STATUS_FILE, STATUS_INO, FileKind::Regular),
                entry(SYNC_POINTS_DIR, SYNC_POINTS_INO, FileKind::Directory),
                entry(RESTORE_FILE, RESTORE_INO, FileKind::Regular),
                entry(FREEZE_FILE, FREEZE_INO, FileKind::Regular),
            ],
            ControlNode::SyncPoints => vec![
                entry(".", SYNC_POINTS_INO, FileKind::Directory),
                entry("..", DIR_INO, FileKind::Directory),
            ],
            _ => Vec::new(),
        }
    }

    /// Only root and the user who mounted the volume may use the controls.
    pub fn check_access(&self, req: &Request) -> Result<(), Errno> {
        if req.uid() == 0 || req.uid() == self.owner {
            Ok(())
        } else {
            Err(Errno::EACCES)
        }
    }

    pub fn open(&self, req: &Request, node: ControlNode) -> Result<ControlHandle, Errno> {
        self.check_access(req)?;
        match node {
            ControlNode::Dir | ControlNode::SyncPoints => Err(Errno::EISDIR),
            ControlNode::SyncPoint => Ok(ControlHandle::SyncPoint(Arc::default())),
            ControlNode::Restore => Ok(ControlHandle::Restore(Arc::default())),
            ControlNode::Freeze => Ok(ControlHandle::Freeze(Arc::default())),
            ControlNode::Stats => Ok(ControlHandle::Snapshot(Arc::new(
                self.metrics.render(&self.gauges()).into_bytes(),
            ))),
            ControlNode::Status => {
                let mut status = self.fs.volume().status();
                status.freeze = Some(self.gate.status());
                let json = serde_json::to_vec_pretty(&status).map_err(|_| Errno::EIO)?;
                Ok(ControlHandle::Snapshot(Arc::new(json)))
            }
        }
    }

    fn gauges(&self) -> Gauges {
        let vol = self.fs.volume();
        let p = vol.policy();
        let stats = vol.index_stats();
        let status = vol.status();
        Gauges {
            segments_primary: status.segments_in_primary,
            working_set: p.working_set as u64,
            segment_size: p.segment_size,
            live_blocks: stats.blocks,
            block_size: p.block_size,
            inodes: stats.inodes,
            sync_points: vol.sync_points().map_or_else(
                |e| {
                    log::warn!("cannot count the sync points: {e}");
                    0
                },
                |p| p.len() as u64,
            ),
            archive_lag_segments: status.waiting_for_archive,
        }
    }

    /// A label written to the sync-point file: take a sync point and
    /// answer the write once it is durable. The daemon never flushes the
    /// kernel's cache of its own mount here: a thread of it waiting in
    /// `syncfs` for writeback that only the daemon answers could keep a
    /// killed daemon from ever dying. So a sync point taken through the
    /// file holds what lsvfs had been handed when it was asked
    /// (crash-consistent: for a database, everything it had fsynced);
    /// `lsvfs sync-point` flushes the mount itself first.
    pub fn write(&self, req: &Request, handle: &ControlHandle, data: &[u8], reply: ReplyWrite) {
        let answer = match handle {
            ControlHandle::SyncPoint(answer) => answer,
            ControlHandle::Restore(answer) => return self.restore(data, answer, reply),
            ControlHandle::Freeze(answer) => return self.freeze(data, answer, reply),
            ControlHandle::Snapshot(_) => return reply.error(Errno::EBADF),
        };
        let label = match control_files::parse_label(data) {
            Ok(l) => l,
            Err(e) => {
                log::info!("sync point refused: {e}");
                return reply.error(Errno::EINVAL);
            }
        };
        let requester = format!("pid {} uid {}", req.pid(), req.uid());
        let start = Instant::now();
        match self.fs.volume().sync_point(&label, &requester) {
            Ok(p) => {
                self.metrics.record(Op::SyncPoint, start.elapsed(), true);
                log::info!("sync point {} ({label:?}) for {requester}", p.info.id);
                *answer.lock().unwrap_or_else(|p| p.into_inner()) = Answer {
                    line: control_files::answer(&p).into_bytes(),
                    read: 0,
                };
                reply.written(data.len() as u32);
            }
            Err(e) => {
                self.metrics.record(Op::SyncPoint, start.elapsed(), false);
                log::error!("sync point failed: {e}");
                reply.error(Errno::EIO);
            }
        }
    }

    /// A restore request written to `.lsvfs/restore`: done here, in the
    /// engine (the bytes never pass through the mount), then the names it
    /// made are dropped from the kernel's cache. The answer, a success or
    /// the error's text, is read back on the same handle.
    fn restore(&self, data: &[u8], answer: &Mutex<Answer>, reply: ReplyWrite) {
        let request: crate::restore::Request = match serde_json::from_slice(data) {
            Ok(r) => r,
            Err(e) => {
                log::info!("restore refused: {e}");
                return reply.error(Errno::EINVAL);
            }
        };
        let at = crate::view::Selector::parse(&request.at);
        let line = match crate::restore::restore_at(&self.fs, &at, &request.paths, &request.options)
        {
            Ok(report) => {
                log::info!(
                    "restored {:?} from sync point {}",
                    request.paths,
                    report.sync_point
                );
                if let Some(n) = self.notifier.get() {
                    for (parent, name) in &report.names {
                        let name = std::ffi::OsStr::from_bytes(name);
                        if let Err(e) = n.inval_entry(fuser::INodeNo(*parent), name) {
                            log::debug!("cannot drop a cached name: {e}");
                        }
                    }
                }
                serde_json::json!({ "report": report })
            }
            Err(e) => {
                log::warn!("restore of {:?} failed: {e}", request.paths);
                serde_json::json!({ "error": e.to_string() })
            }
        };
        *answer.lock().unwrap_or_else(|p| p.into_inner()) = Answer {
            line: format!("{line}\n").into_bytes(),
            read: 0,
        };
        reply.written(data.len() as u32);
    }

    /// `freeze [SECONDS]` or `thaw` written to `.lsvfs/freeze`. A freeze
    /// answers once the changes in flight are done and durable: from then
    /// on changes are parked (see `freeze.rs`). The answer line says until
    /// when, or how many parked changes the thaw released.
    fn freeze(&self, data: &[u8], answer: &Mutex<Answer>, reply: ReplyWrite) {
        let Some(request) = control_files::parse_freeze(data) else {
            log::info!("freeze refused: {:?}", String::from_utf8_lossy(data));
            return reply.error(Errno::EINVAL);
        };
        let line = match request {
            FreezeRequest::Freeze(timeout) => {
                self.gate.freeze(timeout);
                if let Err(e) = self.fs.fsync() {
                    self.gate.thaw("was thawed: the flush failed".into());
                    log::error!("freeze: the flush failed, thawed: {e}");
                    return reply.error(Errno::EIO);
                }
                let until = crate::time::now_ns() + timeout.as_nanos() as u64;
                log::warn!("frozen for at most {} s", timeout.as_secs());
                format!("frozen until {}\n", crate::time::rfc3339(until))
            }
            FreezeRequest::Thaw => {
                let released = self.gate.thaw("was thawed".into());
                log::warn!("thawed; {released} changes released");
                format!("thawed; {released} changes released\n")
            }
        };
        *answer.lock().unwrap_or_else(|p| p.into_inner()) = Answer {
            line: line.into_bytes(),
            read: 0,
        };
        reply.written(data.len() as u32);
    }
}
