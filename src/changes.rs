//! What differs between two states of one volume, found from the log and
//! the indexes, never by walking and reading two trees.
//!
//! [`Touched`] gathers the keys that users' records name in the stretch of
//! log between the two states. Records the archiver copied forward are not
//! changes: a copy has a new position but the value it had. Only touched
//! keys can differ, so [`Compare`] looks at them alone: a directory entry
//! by its target, an inode by its attributes, a block or an xattr by its
//! position — a touched key whose position differs was written since.
//! Where the stretch cannot be read whole (prune deleted segments in it),
//! every key is compared, and blocks and xattrs whose positions differ by
//! their bytes.
//!
//! Orphans (files unlinked while open, see [`ORPHANS_INO`]) are no part
//! of either state: nobody can reach them, and the next open deletes them.

use crate::error::{Error, Result};
use crate::format::codec::get_u64;
use crate::format::{
    DecodeError, FileKind, InodeAttrs, Kind, Lsn, ORPHANS_INO, SegmentHeader, SummaryEntry,
};
use crate::index::{DirEntry, Index};
use crate::log::reader::Segments;
use crate::tree::{IndexAccess, Tree};
use std::collections::{BTreeMap, BTreeSet};

/// Keys named by users' records in a stretch of the log.
#[derive(Debug, Default)]
pub struct Touched {
    /// The stretch could not be read: every key may differ.
    everything: bool,
    inodes: BTreeMap<u64, InodeTouch>,
    dirents: BTreeSet<(u64, Vec<u8>)>,
}

/// The keys of one inode that records in the stretch name.
#[derive(Debug, Default, Clone)]
pub struct InodeTouch {
    /// Deleted: every key of the inode may differ (its blocks, xattrs and
    /// the entries of it as a directory).
    pub whole: bool,
    pub attrs: bool,
    pub blocks: BTreeSet<u64>,
    /// The lowest block a truncate cut at: every block from it on.
    pub cut_from: Option<u64>,
    pub xattrs: BTreeSet<Vec<u8>>,
}

const WHOLE: InodeTouch = InodeTouch {
    whole: true,
    attrs: true,
    blocks: BTreeSet::new(),
    cut_from: Some(0),
    xattrs: BTreeSet::new(),
};

impl Touched {
    /// The keys that records after `from` and at or before `to` name,
    /// reading each segment's summary (primary storage, or the trailer of
    /// its object in the store). `to` is a sync point, or the end of the
    /// log (offset `u32::MAX` in the last segment).
    pub fn between(segments: &Segments, from: Lsn, to: Lsn) -> Result<Touched> {
        let mut touched = Touched::default();
        for seq in from.seq..=to.seq {
            let records = match segments.records(seq) {
                Ok(r) => r,
                // Pruned, or never sealed (a crash cut it): compare all.
                Err(e @ (Error::Archive(_) | Error::SegmentMissing { .. })) if seq != to.seq => {
                    log::info!("segment {seq} cannot be read ({e}); comparing every key");
                    return Ok(Touched::everything());
                }
                Err(e) => return Err(e),
            };
            for entry in &records.entries {
                let at = Lsn {
                    seq,
                    offset: entry.offset,
                };
                if at > from && at <= to {
                    touched
                        .note(entry)
                        .map_err(corrupt(&records.header, entry))?;
                }
            }
        }
        Ok(touched)
    }

    /// Every key: what to compare when the log between is not known.
    pub fn everything() -> Touched {
        Touched {
            everything: true,
            ..Default::default()
        }
    }

    /// Whether only the touched keys are compared (else every key).
    pub fn is_exact(&self) -> bool {
        !self.everything
    }

    /// Adds an inode to compare whole, whether or not it was touched.
    pub fn add_whole(&mut self, ino: u64) {
        self.inodes.entry(ino).or_default().whole = true;
    }

    /// Adds a directory entry to compare.
    pub fn add_dirent(&mut self, parent: u64, name: &[u8]) {
        self.dirents.insert((parent, name.to_vec()));
    }

    fn note(&mut self, e: &SummaryEntry) -> Result<(), DecodeError> {
        if e.flags & crate::format::record::FLAG_COPIED != 0 {
            return Ok(());
        }
        let key = &mut &e.key[..];
        if e.kind == Kind::SyncPoint {
            return Ok(());
        }
        let first = get_u64(key)?;
        if matches!(e.kind, Kind::Dirent | Kind::DirentDelete) {
            self.dirents.insert((first, key.to_vec()));
            return Ok(());
        }
        let t = self.inodes.entry(first).or_default();
        match e.kind {
            Kind::Inode => t.attrs = true,
            Kind::InodeDelete => t.whole = true,
            Kind::Data => {
                t.blocks.insert(get_u64(key)?);
            }
            Kind::Truncate => {
                let from = get_u64(key)?;
                t.cut_from = Some(t.cut_from.map_or(from, |c| c.min(from)));
            }
            Kind::Xattr | Kind::XattrDelete => {
                t.xattrs.insert(key.to_vec());
            }
            Kind::Dirent | Kind::DirentDelete | Kind::SyncPoint => {}
        }
        Ok(())
    }
}

fn corrupt(header: &SegmentHeader, e: &SummaryEntry) -> impl FnOnce(DecodeError) -> Error {
    let (seq, offset) = (header.seq, e.offset as u64);
    move |source| Error::Corrupt {
        seq,
        offset,
        what: "record summary",
        source,
    }
}

/// A directory entry that differs: what it names in each state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirentChange {
    pub parent: u64,
    pub name: Vec<u8>,
    pub old: Option<DirEntry>,
    pub new: Option<DirEntry>,
}

/// Two states of one volume (`old` and `new` need not be in log order)
/// and the keys that may differ between them.
pub struct Compare<'a, O: IndexAccess, N: IndexAccess> {
    pub old: Tree<'a, O>,
    pub new: Tree<'a, N>,
    pub touched: &'a Touched,
}

/// An inode's attributes in a state, if it is part of it (not an orphan).
pub fn attrs_in<I: IndexAccess>(tree: &Tree<'_, I>, ino: u64) -> Result<Option<InodeAttrs>> {
    Ok(tree
        .getattr(ino)?
        .filter(|a| a.nlink > 0 || a.kind == FileKind::Directory))
}

/// Blocks of `ino` mapped from `first` on, in `index`.
pub fn blocks_from(index: &Index, ino: u64, first: u64) -> Vec<u64> {
    index
        .block_runs(ino, first, u64::MAX)
        .iter()
        .flat_map(|r| r.block..r.block + r.count)
        .collect()
}

impl<O: IndexAccess, N: IndexAccess> Compare<'_, O, N> {
    /// Inodes whose attributes, contents or xattrs may differ, ascending.
    pub fn inos(&self) -> Vec<u64> {
        if self.touched.everything {
            let mut all: BTreeSet<u64> = self
                .old
                .index
                .with_index(|i| i.inos().into_iter().collect());
            self.new.index.with_index(|i| all.extend(i.inos()));
            return all.into_iter().collect();
        }
        self.touched.inodes.keys().copied().collect()
    }

    /// What may differ of `ino`.
    pub fn touch(&self, ino: u64) -> InodeTouch {
        match self.touched.everything {
            true => WHOLE,
            false => self.touched.inodes.get(&ino).cloned().unwrap_or_default(),
        }
    }

    /// Directory entries that name something else (or nothing) in the
    /// other state, by parent and name.
    pub fn dirents(&self) -> Vec<DirentChange> {
        let mut keys: BTreeSet<(u64, Vec<u8>)> = BTreeSet::new();
        let all_of = |index: &Index, keys: &mut BTreeSet<(u64, Vec<u8>)>| {
            let whole = |p: u64| {
                self.touched.everything || self.touched.inodes.get(&p).is_some_and(|t| t.whole)
            };
            keys.extend(
                index
                    .dirents()
                    .filter(|(p, _, _)| whole(*p))
                    .map(|(p, n, _)| (p, n.to_vec())),
            );
        };
        self.old.index.with_index(|i| all_of(i, &mut keys));
        self.new.index.with_index(|i| all_of(i, &mut keys));
        keys.extend(self.touched.dirents.iter().cloned());
        keys.into_iter()
            .filter(|(parent, _)| *parent != ORPHANS_INO)
            .filter_map(|(parent, name)| {
                let old = self.old.lookup(parent, &name);
                let new = self.new.lookup(parent, &name);
                let target = |e: &Option<DirEntry>| e.map(|e| (e.child, e.kind));
                (target(&old) != target(&new)).then_some(DirentChange {
                    parent,
                    name,
                    old,
                    new,
                })
            })
            .collect()
    }

    /// The blocks of `ino` that may hold something else in the other
    /// state, ascending.
    fn block_domain(&self, ino: u64, t: &InodeTouch) -> BTreeSet<u64> {
        let mut blocks = t.blocks.clone();
        let from = if t.whole { Some(0) } else { t.cut_from };
        if let Some(from) = from {
            self.old
                .index
                .with_index(|i| blocks.extend(blocks_from(i, ino, from)));
            self.new
                .index
                .with_index(|i| blocks.extend(blocks_from(i, ino, from)));
        }
        blocks
    }

    /// The blocks of `ino` whose value differs, ascending; `bytes` compares
    /// the bytes of blocks whose positions differ (else a different
    /// position is a difference: exact only for touched keys). `first`
    /// stops at the first found.
    pub fn blocks(&self, ino: u64, bytes: bool, first: bool) -> Result<Vec<u64>> {
        let t = self.touch(ino);
        let mut differ = Vec::new();
        for block in self.block_domain(ino, &t) {
            let old = self.old.index.with_index(|i| i.block_lsn(ino, block));
            let new = self.new.index.with_index(|i| i.block_lsn(ino, block));
            let same = match (old, new) {
                (None, None) => true,
                (Some(a), Some(b)) if a == b => true,
                (Some(_), Some(_)) if bytes => {
                    self.old.read_block(ino, block)? == self.new.read_block(ino, block)?
                }
                _ => false,
            };
            if !same {
                differ.push(block);
                if first {
                    break;
                }
            }
        }
        Ok(differ)
    }

    /// The xattr names of `ino` whose values differ, in name order.
    pub fn xattrs(&self, ino: u64) -> Result<Vec<Vec<u8>>> {
        let t = self.touch(ino);
        let mut names = t.xattrs.clone();
        if t.whole {
            names.extend(self.old.xattr_names(ino));
            names.extend(self.new.xattr_names(ino));
        }
        let mut differ = Vec::new();
        for name in names {
            if self.old.getxattr(ino, &name)? != self.new.getxattr(ino, &name)? {
                differ.push(name);
            }
        }
        Ok(differ)
    }
}
