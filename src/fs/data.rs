//! File contents: reads, writes with read-modify-write of partial blocks,
//! truncation and fallocate.

use super::*;

impl Fs {
    fn file_attrs(&self, ino: u64) -> FsResult<InodeAttrs> {
        self.queries().file_attrs(ino)
    }

    pub fn read(&self, ino: u64, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        self.queries().read(ino, offset, len)
    }

    /// Writes `data` at `offset`; holes before it read as zeros.
    pub fn write(&self, ino: u64, offset: u64, data: &[u8]) -> FsResult<usize> {
        self.write_at(ino, offset, data, true)
    }

    /// A write the kernel's page cache held back: the kernel keeps the
    /// file's mtime and ctime itself and sends them in a setattr of its
    /// own, which may arrive before this write; so they are left alone here
    /// (setting them to now would make the stored times differ from what
    /// applications saw).
    pub fn write_cached(&self, ino: u64, offset: u64, data: &[u8]) -> FsResult<usize> {
        self.write_at(ino, offset, data, false)
    }

    fn write_at(&self, ino: u64, offset: u64, data: &[u8], touch: bool) -> FsResult<usize> {
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|e| *e <= i64::MAX as u64)
            .ok_or(FsError::TooBig)?;
        let _g = self.lock_inodes(&[ino]);
        let mut attrs = match self.file_attrs(ino) {
            // Writeback of a file deleted since: nobody can read it.
            Err(FsError::NotFound) if self.deleted_attrs(ino).is_some() => return Ok(data.len()),
            other => other?,
        };
        if data.is_empty() {
            return Ok(0);
        }
        let bs = self.volume.policy().block_size;
        let stride = block_cost(bs as u32) as usize;
        let per_group =
            ((group_max(self.volume.policy().segment_size) - GROUP_SLACK) / stride).max(1);
        let first = offset / bs;
        let last = (end - 1) / bs;
        let now = Timestamp::now();
        let mut block = first;
        while block <= last {
            let group_last = last.min(block + per_group as u64 - 1);
            let mut records = Vec::with_capacity((group_last - block + 2) as usize);
            for b in block..=group_last {
                let bstart = b * bs;
                let lo = offset.max(bstart);
                let hi = end.min(bstart + bs);
                let piece = &data[(lo - offset) as usize..(hi - offset) as usize];
                let bytes = if lo == bstart && hi == bstart + bs {
                    piece.to_vec()
                } else {
                    let mut old = self.volume.tree().read_block(ino, b)?.unwrap_or_default();
                    let need = (hi - bstart) as usize;
                    if old.len() < need {
                        old.resize(need, 0);
                    }
                    old[(lo - bstart) as usize..need].copy_from_slice(piece);
                    old
                };
                records.push(Record::Data {
                    ino,
                    block: b,
                    bytes,
                });
            }
            attrs.size = attrs.size.max(end.min((group_last + 1) * bs));
            if touch {
                attrs.mtime = now;
                attrs.ctime = now;
            }
            records.push(Record::Inode {
                ino,
                attrs: attrs.clone(),
            });
            self.volume.commit(records)?;
            block = group_last + 1;
        }
        Ok(data.len())
    }

    /// Sets a regular file's size; bytes past it are gone.
    pub fn truncate(&self, ino: u64, size: u64) -> FsResult<()> {
        self.setattr(
            ino,
            &SetAttrs {
                size: Some(size),
                ..SetAttrs::default()
            },
        )?;
        Ok(())
    }

    /// The records that cut a file of `attrs` to `size` bytes, keeping the
    /// head of a last partial block (the inode record is the caller's).
    pub(super) fn truncate_records(
        &self,
        ino: u64,
        attrs: &InodeAttrs,
        size: u64,
    ) -> FsResult<Vec<Record>> {
        if size > i64::MAX as u64 {
            return Err(FsError::TooBig);
        }
        let bs = self.volume.policy().block_size;
        let mut records = Vec::new();
        if size < attrs.size {
            records.push(Record::Truncate {
                ino,
                from_block: size.div_ceil(bs),
            });
            let keep = (size % bs) as usize;
            if keep != 0
                && let Some(mut last) = self.volume.tree().read_block(ino, size / bs)?
                && last.len() > keep
            {
                last.truncate(keep);
                records.push(Record::Data {
                    ino,
                    block: size / bs,
                    bytes: last,
                });
            }
        }
        Ok(records)
    }

    /// fallocate(2). Mode 0 extends the size; KEEP_SIZE alone has nothing
    /// to do (space is not reserved ahead in a log); PUNCH_HOLE zeroes the
    /// range (the blocks are rewritten as zeros, so no space is freed).
    /// Other modes are not supported.
    pub fn fallocate(&self, ino: u64, offset: u64, len: u64, mode: i32) -> FsResult<()> {
        let end = offset
            .checked_add(len)
            .filter(|e| *e <= i64::MAX as u64)
            .ok_or(FsError::TooBig)?;
        if len == 0 {
            return Err(FsError::Invalid("fallocate length"));
        }
        const KEEP: i32 = libc::FALLOC_FL_KEEP_SIZE;
        const PUNCH: i32 = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        match mode {
            0 => {
                let _g = self.lock_inodes(&[ino]);
                let mut attrs = self.file_attrs(ino)?;
                if end > attrs.size {
                    let now = Timestamp::now();
                    attrs.size = end;
                    attrs.mtime = now;
                    attrs.ctime = now;
                    self.volume.commit(vec![Record::Inode { ino, attrs }])?;
                }
                Ok(())
            }
            KEEP => self.file_attrs(ino).map(|_| ()),
            PUNCH => {
                let size = self.file_attrs(ino)?.size;
                let end = end.min(size);
                let bs = self.volume.policy().block_size;
                let mut at = offset;
                while at < end {
                    let chunk = (end - at).min(256 * bs);
                    // Only stored blocks need zeros; holes already read so.
                    // The range ends within the size, so the write keeps it.
                    let (first, last) = (at / bs, (at + chunk).div_ceil(bs));
                    if self.volume.tree().has_blocks(ino, first, last) {
                        self.write(ino, at, &vec![0; chunk as usize])?;
                    }
                    at += chunk;
                }
                Ok(())
            }
            _ => Err(FsError::Unsupported("this fallocate mode")),
        }
    }
}
