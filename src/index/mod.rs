//! The index: for every live key, the position of its newest record.
//!
//! One structure serves the live volume (updated forward by the writer as
//! records are appended) and views (built backward from a sync point by
//! [`builder::Builder`]). Directory entries keep their target inode and kind
//! so that lookups and listings need no read of the log.

pub mod builder;
pub mod extents;

use crate::format::record::data_record_len;
use crate::format::segment::{block_cost, segment_cost};
use crate::format::{FileKind, Lsn, Record};
use extents::{ExtentMap, Run};
use std::collections::{BTreeMap, HashMap};

/// Where a file's pieces are, for one inode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InodeEntry {
    /// The newest `Inode` record; `None` only while a backward build runs.
    pub lsn: Option<Lsn>,
    /// What that record takes in a segment (see [`segment_cost`]).
    pub cost: u32,
    pub blocks: ExtentMap,
    /// Each xattr's newest record and what it takes in a segment.
    pub xattrs: BTreeMap<Vec<u8>, (Lsn, u32)>,
}

/// A directory entry as the index keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirEntry {
    pub lsn: Lsn,
    pub child: u64,
    pub kind: FileKind,
    /// What the record takes in a segment (see [`segment_cost`]).
    pub cost: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    block_size: u32,
    inodes: HashMap<u64, InodeEntry>,
    dirs: HashMap<u64, BTreeMap<Vec<u8>, DirEntry>>,
    /// Mapped data blocks of all inodes: the live data the capacity rule counts.
    live_blocks: u64,
    /// Segment bytes of the live metadata records (inodes, directory
    /// entries, xattrs): the rest of what the capacity rule counts.
    meta_bytes: u64,
}

impl Index {
    pub fn new(block_size: u32) -> Self {
        Index {
            block_size,
            inodes: HashMap::new(),
            dirs: HashMap::new(),
            live_blocks: 0,
            meta_bytes: 0,
        }
    }

    /// Mapped data blocks of all inodes.
    pub fn live_blocks(&self) -> u64 {
        self.live_blocks
    }

    /// Segment bytes of the live metadata records.
    pub fn meta_bytes(&self) -> u64 {
        self.meta_bytes
    }

    /// Segment bytes of everything live: what copy-forward must be able to
    /// carry, and what the capacity rule bounds.
    pub fn live_cost(&self) -> u64 {
        self.live_blocks * block_cost(self.block_size) + self.meta_bytes
    }

    /// What the live records take, in full data blocks (rounded up): the
    /// volume's used space as `df` and `status` show it.
    pub fn used_blocks(&self) -> u64 {
        self.live_cost().div_ceil(block_cost(self.block_size))
    }

    /// Segment bytes of the live record that `record` would replace (0 if
    /// none, and for tombstones and sync records, which replace nothing
    /// that stays live).
    pub fn replaced_cost(&self, record: &Record) -> u64 {
        let cost = match record {
            Record::Inode { ino, .. } => self.inode(*ino).map(|e| e.cost),
            Record::Data { ino, block, .. } => self
                .has_block(*ino, *block)
                .then_some(block_cost(self.block_size) as u32),
            Record::Xattr { ino, name, .. } => self
                .inodes
                .get(ino)
                .and_then(|e| e.xattrs.get(name))
                .map(|x| x.1),
            Record::Dirent { parent, name, .. } => self.lookup(*parent, name).map(|e| e.cost),
            _ => None,
        };
        cost.unwrap_or(0) as u64
    }

    /// Recounts live blocks and metadata after a backward build filled the maps.
    fn recount(&mut self) {
        self.live_blocks = self.inodes.values().map(|e| e.blocks.blocks()).sum();
        let inodes: u64 = self
            .inodes
            .values()
            .map(|e| e.cost as u64 + e.xattrs.values().map(|x| x.1 as u64).sum::<u64>())
            .sum();
        let dirents: u64 = self
            .dirs
            .values()
            .flat_map(|d| d.values())
            .map(|d| d.cost as u64)
            .sum();
        self.meta_bytes = inodes + dirents;
    }

    /// Whether `block` of `ino` is mapped.
    pub fn has_block(&self, ino: u64, block: u64) -> bool {
        self.block_lsn(ino, block).is_some()
    }

    /// Where the newest record of `block` of `ino` is, if it is mapped.
    pub fn block_lsn(&self, ino: u64, block: u64) -> Option<Lsn> {
        self.inodes.get(&ino)?.blocks.get(block, self.stride())
    }

    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Length of a full data record: the distance between neighbours in a run.
    pub fn stride(&self) -> u32 {
        data_record_len(self.block_size)
    }

    /// Applies a record just appended at `lsn` (of encoded length `len`).
    pub fn apply(&mut self, lsn: Lsn, record: &Record, len: u32) {
        let stride = self.stride();
        let cost = segment_cost(record, len);
        let old = self.replaced_cost(record);
        if record.is_value() && !matches!(record, Record::Data { .. }) {
            self.meta_bytes = self.meta_bytes + cost as u64 - old;
        }
        match record {
            Record::Inode { ino, .. } => {
                let e = self.inodes.entry(*ino).or_default();
                e.lsn = Some(lsn);
                e.cost = cost;
            }
            Record::InodeDelete { ino } => {
                if let Some(e) = self.inodes.remove(ino) {
                    self.live_blocks -= e.blocks.blocks();
                    let xattrs: u64 = e.xattrs.values().map(|x| x.1 as u64).sum();
                    self.meta_bytes -= e.lsn.map_or(0, |_| e.cost as u64) + xattrs;
                }
                if let Some(dir) = self.dirs.remove(ino) {
                    self.meta_bytes -= dir.values().map(|d| d.cost as u64).sum::<u64>();
                }
            }
            Record::Dirent {
                parent,
                name,
                child,
                kind,
            } => {
                let entry = DirEntry {
                    lsn,
                    child: *child,
                    kind: *kind,
                    cost,
                };
                self.dirs
                    .entry(*parent)
                    .or_default()
                    .insert(name.clone(), entry);
            }
            Record::DirentDelete { parent, name } => {
                if let Some(dir) = self.dirs.get_mut(parent) {
                    if let Some(gone) = dir.remove(name) {
                        self.meta_bytes -= gone.cost as u64;
                    }
                    if dir.is_empty() {
                        self.dirs.remove(parent);
                    }
                }
            }
            Record::Data { ino, block, .. } => {
                let full = len == stride;
                let blocks = &mut self.inodes.entry(*ino).or_default().blocks;
                let before = blocks.blocks();
                blocks.insert(*block, lsn, full, stride);
                self.live_blocks = self.live_blocks + blocks.blocks() - before;
            }
            Record::Truncate { ino, from_block } => {
                if let Some(e) = self.inodes.get_mut(ino) {
                    let before = e.blocks.blocks();
                    e.blocks.truncate(*from_block, stride);
                    self.live_blocks -= before - e.blocks.blocks();
                }
            }
            Record::Xattr { ino, name, .. } => {
                self.inodes
                    .entry(*ino)
                    .or_default()
                    .xattrs
                    .insert(name.clone(), (lsn, cost));
            }
            Record::XattrDelete { ino, name } => {
                if let Some(gone) = self.inodes.get_mut(ino).and_then(|e| e.xattrs.remove(name)) {
                    self.meta_bytes -= gone.1 as u64;
                }
            }
            Record::SyncPoint(_) => {}
        }
    }

    /// Whether `record`, found at `lsn`, is the newest record of its key:
    /// what the archiver must copy forward before retiring its segment.
    /// Tombstones and sync records are never current: nothing older than the
    /// window needs hiding, and the catalog keeps the sync points.
    pub fn is_current(&self, lsn: Lsn, record: &Record) -> bool {
        let at = match record {
            Record::Inode { ino, .. } => self.inode_lsn(*ino),
            Record::Data { ino, block, .. } => self
                .inodes
                .get(ino)
                .and_then(|e| e.blocks.get(*block, self.stride())),
            Record::Xattr { ino, name, .. } => self.xattr(*ino, name),
            Record::Dirent { parent, name, .. } => self.lookup(*parent, name).map(|e| e.lsn),
            Record::InodeDelete { .. }
            | Record::DirentDelete { .. }
            | Record::Truncate { .. }
            | Record::XattrDelete { .. }
            | Record::SyncPoint(_) => None,
        };
        at == Some(lsn)
    }

    pub fn inode(&self, ino: u64) -> Option<&InodeEntry> {
        self.inodes.get(&ino).filter(|e| e.lsn.is_some())
    }

    pub fn inode_lsn(&self, ino: u64) -> Option<Lsn> {
        self.inode(ino).and_then(|e| e.lsn)
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> Option<DirEntry> {
        self.dirs.get(&parent)?.get(name).copied()
    }

    /// Entries of a directory in name order, starting after `after`.
    pub fn list_dir(&self, parent: u64, after: Option<&[u8]>) -> Vec<(Vec<u8>, DirEntry)> {
        let Some(dir) = self.dirs.get(&parent) else {
            return Vec::new();
        };
        let range: Box<dyn Iterator<Item = (&Vec<u8>, &DirEntry)>> = match after {
            Some(a) => Box::new(
                dir.range::<[u8], _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            ),
            None => Box::new(dir.iter()),
        };
        range.map(|(n, e)| (n.clone(), *e)).collect()
    }

    /// Every directory entry, as (parent, name, entry), in no order.
    pub fn dirents(&self) -> impl Iterator<Item = (u64, &[u8], &DirEntry)> {
        self.dirs
            .iter()
            .flat_map(|(&p, d)| d.iter().map(move |(n, e)| (p, n.as_slice(), e)))
    }

    pub fn dir_len(&self, parent: u64) -> usize {
        self.dirs.get(&parent).map_or(0, |d| d.len())
    }

    /// Where blocks `[first, end)` of `ino` are, run by run.
    pub fn block_runs(&self, ino: u64, first: u64, end: u64) -> Vec<Run> {
        self.inodes
            .get(&ino)
            .map(|e| e.blocks.runs(first, end, self.stride()))
            .unwrap_or_default()
    }

    pub fn xattr(&self, ino: u64, name: &[u8]) -> Option<Lsn> {
        self.inodes.get(&ino)?.xattrs.get(name).map(|x| x.0)
    }

    pub fn xattr_names(&self, ino: u64) -> Vec<Vec<u8>> {
        self.inodes
            .get(&ino)
            .map(|e| e.xattrs.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Live inode numbers, ascending.
    pub fn inos(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .inodes
            .iter()
            .filter(|(_, e)| e.lsn.is_some())
            .map(|(&i, _)| i)
            .collect();
        v.sort_unstable();
        v
    }

    /// Counts for reporting: live data blocks and block-map runs.
    pub fn stats(&self) -> IndexStats {
        let mut s = IndexStats {
            inodes: self.inodes.len() as u64,
            used_blocks: self.used_blocks(),
            ..Default::default()
        };
        for e in self.inodes.values() {
            s.blocks += e.blocks.blocks();
            s.runs += e.blocks.runs_len(self.stride()) as u64;
        }
        s.dirents = self.dirs.values().map(|d| d.len() as u64).sum();
        s
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexStats {
    pub inodes: u64,
    /// Live records in full-block equivalents (see [`Index::used_blocks`]).
    pub used_blocks: u64,
    pub dirents: u64,
    pub blocks: u64,
    pub runs: u64,
}
