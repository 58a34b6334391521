//! Reading a file tree through an index: attributes, directory entries,
//! file contents and extended attributes. The live volume and views share
//! this code; they differ only in how their index is held.
//!
//! Positions are looked up under the index lock, which is released before
//! any segment is read, so a slow read never holds up the writer.

use crate::error::Result;
use crate::format::{DecodeError, InodeAttrs, Kind, Lsn, RecordView};
use crate::index::{DirEntry, Index};
use crate::log::reader::{Segments, corrupt};
use std::sync::RwLock;

/// How a tree gets at its index.
pub trait IndexAccess {
    fn with_index<R>(&self, f: impl FnOnce(&Index) -> R) -> R;
}

impl IndexAccess for RwLock<Index> {
    fn with_index<R>(&self, f: impl FnOnce(&Index) -> R) -> R {
        f(&self.read().unwrap_or_else(|p| p.into_inner()))
    }
}

impl IndexAccess for Index {
    fn with_index<R>(&self, f: impl FnOnce(&Index) -> R) -> R {
        f(self)
    }
}

pub struct Tree<'a, I: IndexAccess> {
    pub index: &'a I,
    pub segments: &'a Segments,
}

/// Checks that a record read at `lsn` is of `kind` and about `key`.
fn expect<'b>(buf: &'b [u8], lsn: Lsn, kind: Kind, key: &[u8]) -> Result<RecordView<'b>> {
    let view = RecordView::parse(buf).map_err(corrupt(lsn))?;
    if view.header.kind != kind || view.key != key {
        return Err(corrupt(lsn)(DecodeError::Invalid(
            "record is not the one the index points to",
        )));
    }
    Ok(view)
}

impl<I: IndexAccess> Tree<'_, I> {
    pub fn getattr(&self, ino: u64) -> Result<Option<InodeAttrs>> {
        let Some(lsn) = self.index.with_index(|i| i.inode_lsn(ino)) else {
            return Ok(None);
        };
        if let Some(attrs) = self.segments.inodes().get(lsn) {
            return Ok(Some(attrs));
        }
        let buf = self.segments.read_record(lsn)?;
        let view = expect(&buf, lsn, Kind::Inode, &ino.to_le_bytes())?;
        let attrs = InodeAttrs::decode(view.value).map_err(corrupt(lsn))?;
        self.segments.inodes().insert(lsn, attrs.clone());
        Ok(Some(attrs))
    }

    /// Whether inode `ino` exists, without reading it.
    pub fn exists(&self, ino: u64) -> bool {
        self.index.with_index(|i| i.inode_lsn(ino).is_some())
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> Option<DirEntry> {
        self.index.with_index(|i| i.lookup(parent, name))
    }

    /// Entries of a directory in name order, after `after` if given.
    pub fn list_dir(&self, parent: u64, after: Option<&[u8]>) -> Vec<(Vec<u8>, DirEntry)> {
        self.index.with_index(|i| i.list_dir(parent, after))
    }

    pub fn dir_is_empty(&self, parent: u64) -> bool {
        self.index.with_index(|i| i.dir_len(parent) == 0)
    }

    /// Reads `len` bytes at `offset` of a file of `size` bytes; holes read
    /// as zeros, nothing is returned past `size`.
    pub fn read(&self, ino: u64, offset: u64, len: usize, size: u64) -> Result<Vec<u8>> {
        let end = size.min(offset.saturating_add(len as u64));
        if offset >= end {
            return Ok(Vec::new());
        }
        let len = (end - offset) as usize;
        // Filled in file order; only holes are zeroed.
        let mut out = Vec::with_capacity(len);
        let bs = self.index.with_index(|i| i.block_size() as u64);
        self.for_each_block(ino, offset / bs, end.div_ceil(bs), |block, lsn, value| {
            // block < end.div_ceil(bs), so this fits; checked all the same.
            let at = block
                .checked_mul(bs)
                .ok_or_else(|| corrupt(lsn)(DecodeError::Invalid("data block number")))?;
            put_block(&mut out, offset, end, at, value);
            Ok(())
        })?;
        out.resize(len, 0);
        Ok(out)
    }

    /// Calls `f` with each stored block of `ino` in `[first, end)`, in
    /// order, as (block, position, bytes): one read per run of blocks
    /// stored side by side.
    pub fn for_each_block(
        &self,
        ino: u64,
        first: u64,
        end: u64,
        mut f: impl FnMut(u64, Lsn, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let (bs, stride, runs) = self.index.with_index(|i| {
            let runs = i.block_runs(ino, first, end);
            (i.block_size() as usize, i.stride() as usize, runs)
        });
        for run in runs {
            let bytes = self.segments.read(run.lsn, run.count as usize * stride)?;
            let mut pos = 0;
            for i in 0..run.count {
                let block = run.block + i;
                let lsn = Lsn {
                    seq: run.lsn.seq,
                    offset: run.lsn.offset + pos as u32,
                };
                let mut key = [0u8; 16];
                key[..8].copy_from_slice(&ino.to_le_bytes());
                key[8..].copy_from_slice(&block.to_le_bytes());
                let view = expect(&bytes[pos..], lsn, Kind::Data, &key)?;
                if view.value.len() > bs {
                    return Err(corrupt(lsn)(DecodeError::Invalid("data block too long")));
                }
                pos += view.header.len as usize;
                f(block, lsn, view.value)?;
            }
        }
        Ok(())
    }

    /// Whether any block of `ino` in `[first, end)` is stored.
    pub fn has_blocks(&self, ino: u64, first: u64, end: u64) -> bool {
        self.index
            .with_index(|i| !i.block_runs(ino, first, end).is_empty())
    }

    /// The block of `ino` as stored (possibly shorter than a block), if any.
    pub fn read_block(&self, ino: u64, block: u64) -> Result<Option<Vec<u8>>> {
        let lsn = self.index.with_index(|i| i.block_lsn(ino, block));
        let Some(lsn) = lsn else { return Ok(None) };
        let buf = self.segments.read_record(lsn)?;
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&ino.to_le_bytes());
        key[8..].copy_from_slice(&block.to_le_bytes());
        Ok(Some(expect(&buf, lsn, Kind::Data, &key)?.value.to_vec()))
    }

    pub fn getxattr(&self, ino: u64, name: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some(lsn) = self.index.with_index(|i| i.xattr(ino, name)) else {
            return Ok(None);
        };
        let buf = self.segments.read_record(lsn)?;
        let mut key = ino.to_le_bytes().to_vec();
        key.extend_from_slice(name);
        Ok(Some(expect(&buf, lsn, Kind::Xattr, &key)?.value.to_vec()))
    }

    pub fn xattr_names(&self, ino: u64) -> Vec<Vec<u8>> {
        self.index.with_index(|i| i.xattr_names(ino))
    }
}

/// Puts the part of `data` (stored at file offset `at`) that falls in
/// `[offset, end)` into `out`, which holds the file's bytes from `offset`
/// on; a gap before it (a hole, or the rest of a short block) reads as
/// zeros.
fn put_block(out: &mut Vec<u8>, offset: u64, end: u64, at: u64, data: &[u8]) {
    let lo = at.max(offset);
    // Saturating: a block may end at 2^64, past every `end`.
    let hi = at.saturating_add(data.len() as u64).min(end);
    if lo >= hi {
        return;
    }
    let src = &data[(lo - at) as usize..(hi - at) as usize];
    let start = (lo - offset) as usize;
    if out.len() < start {
        out.resize(start, 0);
    }
    let overlap = (out.len() - start).min(src.len());
    out[start..start + overlap].copy_from_slice(&src[..overlap]);
    out.extend_from_slice(&src[overlap..]);
}

#[cfg(test)]
mod tests {
    use super::{Tree, put_block};
    use crate::archive::Archive;
    use crate::format::{Lsn, Record, VolumeId};
    use crate::index::Index;
    use crate::log::reader::Segments;
    use crate::log::segment::segment_path;
    use crate::store::Memory;
    use std::sync::Arc;

    #[test]
    fn a_block_ending_at_the_last_byte_offset_is_clipped_not_overflowed() {
        let top = u64::MAX;
        let mut out = Vec::new();
        put_block(&mut out, top - 10, top, top - 4, b"wxyz");
        assert_eq!(out, b"\0\0\0\0\0\0wxyz");
        let mut out = Vec::new();
        put_block(&mut out, top - 10, top, top - 4, b"abcdefgh");
        assert_eq!(out, b"\0\0\0\0\0\0abcd", "nothing past the end");
    }

    /// Reads near the largest file offset and near the largest byte offset
    /// (a block number no file can have, as a damaged index might hold).
    #[test]
    fn reads_near_the_largest_offsets_neither_overflow_nor_lose_bytes() {
        const BS: u64 = 4096;
        let dir = tempfile::tempdir().unwrap();
        let id = VolumeId([7; 16]);
        let last_file_block = i64::MAX as u64 / BS;
        let last_block = u64::MAX / BS;
        let bytes: Vec<u8> = (0..BS).map(|i| (i % 251) as u8).collect();
        let mut index = Index::new(BS as u32);
        let mut file = vec![0u8; 4096];
        for block in [last_file_block, last_block] {
            let record = Record::Data {
                ino: 2,
                block,
                bytes: bytes.clone(),
            };
            let lsn = Lsn {
                seq: 1,
                offset: file.len() as u32,
            };
            record.encode(1, 0, &mut file);
            index.apply(lsn, &record, record.encoded_len() as u32);
        }
        file.resize(1 << 20, 0);
        std::fs::write(segment_path(dir.path(), 1), &file).unwrap();
        let archive = Arc::new(Archive::open(Arc::new(Memory::new()), id, 3, 4 << 20));
        let segments = Segments::new(
            crate::disk::real(),
            dir.path().into(),
            id,
            1 << 20,
            archive,
            0,
        );
        let tree = Tree {
            index: &index,
            segments: &segments,
        };
        let tail = &bytes[BS as usize - 12..BS as usize - 1];
        // The last bytes a file can have (its size is at most i64::MAX).
        let size = i64::MAX as u64;
        assert_eq!(tree.read(2, size - 11, 100, size).unwrap(), tail);
        assert_eq!(tree.read(2, size - 1, 100, size).unwrap(), &tail[10..]);
        assert!(tree.read(2, size, 100, size).unwrap().is_empty());
        // The block that ends at 2^64.
        let top = u64::MAX;
        assert_eq!(tree.read(2, top - 11, 100, top).unwrap(), tail);
        assert_eq!(tree.read(2, top - 3, usize::MAX, top).unwrap(), &tail[8..]);
        assert_eq!(tree.read_block(2, last_block).unwrap(), Some(bytes));
        assert_eq!(tree.read_block(2, u64::MAX).unwrap(), None);
        assert!(tree.has_blocks(2, last_block, u64::MAX));
        assert!(!tree.has_blocks(2, u64::MAX, u64::MAX));
    }

    #[test]
    fn blocks_fill_holes_with_zeros_in_any_order() {
        // Reading [2, 14) of a file with 4-byte blocks: block 0 short
        // ("ab"), block 1 a hole, block 2 "wxyz", block 3 past the end.
        let mut out = Vec::new();
        put_block(&mut out, 2, 14, 0, b"ab");
        assert!(out.is_empty(), "block 0 ends before the range");
        put_block(&mut out, 2, 14, 8, b"wxyz");
        put_block(&mut out, 2, 14, 12, b"0123");
        out.resize(12, 0);
        assert_eq!(out, b"\0\0\0\0\0\0wxyz01");
        // Out of order: a block before what is already there overwrites.
        let mut out = Vec::new();
        put_block(&mut out, 0, 8, 4, b"efgh");
        put_block(&mut out, 0, 8, 0, b"abcd");
        assert_eq!(out, b"abcdefgh");
    }
}
