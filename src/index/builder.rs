//! Building an index backward: records are fed newest first, so the first
//! record seen for a key is its newest and wins; tombstones seen on the way
//! hide every older record they cover. The live volume's recovery and every
//! view use this one path, differing only in where the scan starts.

use super::{DirEntry, Index};
use crate::format::codec::{DecodeError, DecodeResult, get_u64};
use crate::format::record::data_block_in_range;
use crate::format::{Kind, Lsn, Record, SummaryEntry, SyncInfo};
use std::collections::{HashMap, HashSet};

pub struct Builder {
    index: Index,
    dead_inodes: HashSet<u64>,
    dead_dirents: HashSet<(u64, Vec<u8>)>,
    dead_xattrs: HashSet<(u64, Vec<u8>)>,
    /// Per inode, the lowest block cut off by a truncate seen so far.
    floors: HashMap<u64, u64>,
    max_ino: u64,
    sync_points: Vec<(Lsn, SyncInfo)>,
}

/// The result of a backward build.
pub struct Built {
    pub index: Index,
    /// The highest inode number any scanned record names.
    pub max_ino: u64,
    /// Sync points met on the way, newest first.
    pub sync_points: Vec<(Lsn, SyncInfo)>,
    /// Inodes that had blocks or xattrs but no inode record in the scanned
    /// range; dropped from the index. Non-zero means the range was too short.
    pub orphans: u64,
}

fn ino_of(key: &[u8]) -> DecodeResult<u64> {
    get_u64(&mut &key[..])
}

impl Builder {
    pub fn new(block_size: u32) -> Self {
        Builder {
            index: Index::new(block_size),
            dead_inodes: HashSet::new(),
            dead_dirents: HashSet::new(),
            dead_xattrs: HashSet::new(),
            floors: HashMap::new(),
            max_ino: 0,
            sync_points: Vec::new(),
        }
    }

    /// Feeds the record summarised by `e`, at `lsn`. Calls must come in
    /// strictly decreasing log order.
    pub fn feed(&mut self, lsn: Lsn, e: &SummaryEntry) -> DecodeResult<()> {
        let stride = self.index.stride();
        // What the record takes in its segment: itself and this entry.
        let cost = e.len + e.encoded_len() as u32;
        match e.kind {
            Kind::Inode => {
                let ino = ino_of(&e.key)?;
                self.max_ino = self.max_ino.max(ino);
                if !self.dead_inodes.contains(&ino) {
                    let entry = self.index.inodes.entry(ino).or_default();
                    if entry.lsn.is_none() {
                        entry.lsn = Some(lsn);
                        entry.cost = cost;
                    }
                }
            }
            Kind::Data => {
                let k = &mut &e.key[..];
                let ino = get_u64(k)?;
                let block = get_u64(k)?;
                // No file has such a block: lsvfs never wrote this record.
                if !data_block_in_range(block, self.index.block_size() as u64) {
                    return Err(DecodeError::Invalid("data block number"));
                }
                self.max_ino = self.max_ino.max(ino);
                let floor = self.floors.get(&ino).copied().unwrap_or(u64::MAX);
                if !self.dead_inodes.contains(&ino) && block < floor {
                    let entry = self.index.inodes.entry(ino).or_default();
                    entry
                        .blocks
                        .insert_if_absent(block, lsn, e.len == stride, stride);
                }
            }
            Kind::Xattr => {
                let ino = ino_of(&e.key)?;
                let name = e.key[8..].to_vec();
                let key = (ino, name);
                if !self.dead_inodes.contains(&ino) && !self.dead_xattrs.contains(&key) {
                    let entry = self.index.inodes.entry(ino).or_default();
                    entry.xattrs.entry(key.1).or_insert((lsn, cost));
                }
            }
            _ => self.feed_full(lsn, Record::decode_parts(e.kind, &e.key, &e.value)?, cost),
        }
        Ok(())
    }

    /// Kinds whose whole record is in the summary.
    fn feed_full(&mut self, lsn: Lsn, record: Record, cost: u32) {
        match record {
            Record::InodeDelete { ino } => {
                self.max_ino = self.max_ino.max(ino);
                self.dead_inodes.insert(ino);
            }
            Record::Dirent {
                parent,
                name,
                child,
                kind,
            } => {
                self.max_ino = self.max_ino.max(child);
                let key = (parent, name);
                if self.dead_inodes.contains(&parent) || self.dead_dirents.contains(&key) {
                    return;
                }
                let dir = self.index.dirs.entry(parent).or_default();
                dir.entry(key.1).or_insert(DirEntry {
                    lsn,
                    child,
                    kind,
                    cost,
                });
            }
            Record::DirentDelete { parent, name } => {
                let exists = self.index.lookup(parent, &name).is_some();
                if !exists {
                    self.dead_dirents.insert((parent, name));
                }
            }
            Record::Truncate { ino, from_block } => {
                let floor = self.floors.entry(ino).or_insert(u64::MAX);
                *floor = (*floor).min(from_block);
            }
            Record::XattrDelete { ino, name } => {
                self.dead_xattrs.insert((ino, name));
            }
            Record::SyncPoint(info) => self.sync_points.push((lsn, info)),
            Record::Inode { .. } | Record::Data { .. } | Record::Xattr { .. } => {
                unreachable!("fed by `feed` from the summary")
            }
        }
    }

    pub fn finish(mut self) -> Built {
        let before = self.index.inodes.len();
        self.index.inodes.retain(|_, e| e.lsn.is_some());
        let orphans = (before - self.index.inodes.len()) as u64;
        self.index.recount();
        Built {
            index: self.index,
            max_ino: self.max_ino,
            sync_points: self.sync_points,
            orphans,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{FileKind, InodeAttrs, RecordView};

    /// Encodes records into a fake segment and returns their summary entries.
    fn entries(records: &[Record]) -> Vec<(Lsn, SummaryEntry)> {
        let mut out = Vec::new();
        let mut offset = 4096u32;
        for r in records {
            let mut buf = Vec::new();
            r.encode(1, 0, &mut buf);
            let view = RecordView::parse(&buf).unwrap();
            out.push((Lsn { seq: 1, offset }, SummaryEntry::of(offset, &view)));
            offset += buf.len() as u32;
        }
        out
    }

    fn forward(records: &[Record]) -> Index {
        let mut index = Index::new(512);
        for (rec, (lsn, e)) in records.iter().zip(entries(records)) {
            index.apply(lsn, rec, e.len);
        }
        index
    }

    fn backward(records: &[Record]) -> Built {
        let mut b = Builder::new(512);
        for (lsn, e) in entries(records).iter().rev() {
            b.feed(*lsn, e).unwrap();
        }
        b.finish()
    }

    fn inode(ino: u64) -> Record {
        Record::Inode {
            ino,
            attrs: InodeAttrs::new(FileKind::Regular, 0o644, 0, 0),
        }
    }

    fn data(ino: u64, block: u64) -> Record {
        Record::Data {
            ino,
            block,
            bytes: vec![block as u8; 512],
        }
    }

    #[test]
    fn a_data_record_past_the_largest_file_is_corruption() {
        let last = i64::MAX as u64 / 512;
        for block in [last + 1, u64::MAX - 1, u64::MAX] {
            let mut b = Builder::new(512);
            let (lsn, e) = entries(&[data(2, block)]).remove(0);
            assert_eq!(
                b.feed(lsn, &e),
                Err(DecodeError::Invalid("data block number")),
                "block {block}"
            );
        }
        let built = backward(&[inode(2), data(2, last)]);
        assert_eq!(built.index.block_runs(2, last, last + 1).len(), 1);
    }

    #[test]
    fn backward_equals_forward_through_tombstones() {
        let records = vec![
            inode(2),
            Record::Dirent {
                parent: 1,
                name: b"a".to_vec(),
                child: 2,
                kind: FileKind::Regular,
            },
            data(2, 0),
            data(2, 1),
            data(2, 2),
            Record::Truncate {
                ino: 2,
                from_block: 1,
            },
            data(2, 2),
            Record::Xattr {
                ino: 2,
                name: b"user.k".to_vec(),
                value: b"v".to_vec(),
            },
            Record::XattrDelete {
                ino: 2,
                name: b"user.k".to_vec(),
            },
            inode(3),
            data(3, 0),
            Record::Dirent {
                parent: 1,
                name: b"b".to_vec(),
                child: 3,
                kind: FileKind::Regular,
            },
            Record::DirentDelete {
                parent: 1,
                name: b"b".to_vec(),
            },
            Record::InodeDelete { ino: 3 },
            Record::DirentDelete {
                parent: 1,
                name: b"a".to_vec(),
            },
            Record::Dirent {
                parent: 1,
                name: b"c".to_vec(),
                child: 2,
                kind: FileKind::Regular,
            },
        ];
        let fwd = forward(&records);
        let built = backward(&records);
        assert_eq!(built.orphans, 0);
        assert_eq!(built.max_ino, 3);
        assert_eq!(built.index, fwd);
        // The truncate hid block 1 but not the block 2 written after it.
        assert_eq!(
            fwd.block_runs(2, 0, 10)
                .iter()
                .map(|r| r.count)
                .sum::<u64>(),
            2
        );
        assert!(fwd.lookup(1, b"c").is_some() && fwd.lookup(1, b"a").is_none());
        assert!(fwd.inode(3).is_none());
    }
}
