//! The sync-point catalog, `syncpoints` in the volume directory: one entry
//! per sync point (id, position of its record, time, label, requester), so
//! that sync points can be listed and found without reading the log.
//!
//! The log is the truth: the catalog is appended (and fsynced) after the
//! sync record is durable, and recovery re-adds the sync records it finds in
//! the working set with ids above the catalog's last. Entries are read up
//! to the first that fails its check; it and everything after it are cut
//! off (a torn append), only once the volume has opened successfully.
//!
//! Entry layout (little-endian):
//! ```text
//!  0 u32 crc of [4, len)   4 u32 len   8 u64 id   16 u64 seq   24 u32 offset
//! 28 u64 time_ns   36 u16 label_len, label   then u16 requester_len, requester
//! ```

use crate::disk::{Disk, FileIo, OpenMode};
use crate::error::{Result, io};
use crate::format::codec::*;
use crate::format::{Lsn, SyncInfo};
use std::path::{Path, PathBuf};

pub const CATALOG_FILE: &str = "syncpoints";

/// A sync point as listed: where its record is and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPoint {
    pub lsn: Lsn,
    pub info: SyncInfo,
}

impl SyncPoint {
    fn encode(&self, buf: &mut Vec<u8>) {
        let start = buf.len();
        put_u32(buf, 0);
        put_u32(buf, 0);
        put_u64(buf, self.info.id);
        put_u64(buf, self.lsn.seq);
        put_u32(buf, self.lsn.offset);
        put_u64(buf, self.info.time_ns);
        for text in [&self.info.label, &self.info.requester] {
            put_u16(buf, text.len() as u16);
            buf.extend_from_slice(text.as_bytes());
        }
        let len = (buf.len() - start) as u32;
        buf[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
        let crc = crc32c::crc32c(&buf[start + 4..]);
        buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes the entry at the start of `input` and moves `input` past it;
    /// on failure `input` is left where the entry starts, which is where
    /// [`Catalog::open`] cuts a torn entry off.
    fn decode(input: &mut &[u8]) -> DecodeResult<Self> {
        let all = *input;
        let head = &mut &all[..];
        let crc = get_u32(head)?;
        let len = get_u32(head)? as usize;
        if len < 40 || all.len() < len {
            return Err(DecodeError::Invalid("catalog entry length"));
        }
        verify_crc(crc, &all[4..len])?;
        let mut body = &all[8..len];
        let b = &mut body;
        let id = get_u64(b)?;
        let seq = get_u64(b)?;
        let offset = get_u32(b)?;
        let time_ns = get_u64(b)?;
        let mut texts = [String::new(), String::new()];
        for t in &mut texts {
            let n = get_u16(b)? as usize;
            *t = String::from_utf8(take(b, n)?.to_vec())
                .map_err(|_| DecodeError::Invalid("catalog text"))?;
        }
        if !b.is_empty() {
            return Err(DecodeError::Invalid("catalog entry length"));
        }
        let [label, requester] = texts;
        *input = &all[len..];
        Ok(SyncPoint {
            lsn: Lsn { seq, offset },
            info: SyncInfo {
                id,
                time_ns,
                label,
                requester,
            },
        })
    }
}

/// The entries of a catalog file's bytes up to the first that fails its
/// check; where the valid part ends; and why the rest does not decode.
pub fn decode_entries(bytes: &[u8]) -> (Vec<SyncPoint>, u64, Option<DecodeError>) {
    let mut input = bytes;
    let mut entries = Vec::new();
    while !input.is_empty() {
        match SyncPoint::decode(&mut input) {
            Ok(e) => entries.push(e),
            Err(e) => return (entries, (bytes.len() - input.len()) as u64, Some(e)),
        }
    }
    (entries, bytes.len() as u64, None)
}

pub struct Catalog {
    path: PathBuf,
    file: Box<dyn FileIo>,
    len: u64,
    entries: Vec<SyncPoint>,
    /// Entries were added since the last fdatasync.
    unsynced: bool,
}

impl Catalog {
    pub fn create(disk: &dyn Disk, volume: &Path) -> Result<()> {
        let path = volume.join(CATALOG_FILE);
        disk.open(&path, OpenMode::CreateNew)
            .and_then(|f| f.sync_all())
            .map_err(io(format!("cannot create {}", path.display())))
    }

    /// Loads the catalog; with `repair`, cuts a torn last entry off the file.
    pub fn open(disk: &dyn Disk, volume: &Path, repair: bool) -> Result<Catalog> {
        let path = volume.join(CATALOG_FILE);
        let ctx = |what: &str| format!("cannot {what} {}", path.display());
        let mode = match repair {
            true => OpenMode::ReadWrite,
            false => OpenMode::Read,
        };
        let file = disk.open(&path, mode).map_err(io(ctx("open")))?;
        let bytes = file.read_all().map_err(io(ctx("read")))?;
        let (entries, len, torn) = decode_entries(&bytes);
        if let Some(e) = torn {
            log::warn!("{}: cut torn entry at byte {len} ({e})", path.display());
            if repair {
                file.set_len(len)
                    .and_then(|_| file.sync_data())
                    .map_err(io(ctx("truncate")))?;
            }
        }
        Ok(Catalog {
            path,
            file,
            len,
            entries,
            // Opened for writing, it may hold entries a process that
            // crashed wrote and never fdatasynced: the next sync makes them
            // durable (the volume's open does it).
            unsynced: repair,
        })
    }

    pub fn entries(&self) -> &[SyncPoint] {
        &self.entries
    }

    pub fn last_id(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.info.id)
    }

    /// Appends entries and makes them durable.
    pub fn append(&mut self, new: &[SyncPoint]) -> Result<()> {
        self.add(new)?;
        self.sync()
    }

    /// Appends entries without waiting for them to reach the disk: their
    /// sync records are durable in the log, and opening the volume after a
    /// crash adds back every sync record of the window that the catalog
    /// lacks. They must be durable here before the window moves past their
    /// segments, and at close ([`Catalog::sync`]).
    pub fn add(&mut self, new: &[SyncPoint]) -> Result<()> {
        if new.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for e in new {
            e.encode(&mut buf);
        }
        self.file
            .write_all_at(&buf, self.len)
            .map_err(io(format!("cannot append to {}", self.path.display())))?;
        self.len += buf.len() as u64;
        self.unsynced = true;
        self.entries.extend_from_slice(new);
        Ok(())
    }

    /// Makes every entry added so far durable.
    pub fn sync(&mut self) -> Result<()> {
        if self.unsynced {
            self.file
                .sync_data()
                .map_err(io(format!("cannot fsync {}", self.path.display())))?;
            self.unsynced = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::Real;

    fn sp(id: u64) -> SyncPoint {
        SyncPoint {
            lsn: Lsn {
                seq: id,
                offset: 4096,
            },
            info: SyncInfo {
                id,
                time_ns: id * 10,
                label: format!("label-{id}"),
                requester: "test".into(),
            },
        }
    }

    #[test]
    fn append_reopen_and_cut_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        Catalog::create(&Real, dir.path()).unwrap();
        let mut c = Catalog::open(&Real, dir.path(), true).unwrap();
        c.append(&[sp(1), sp(2)]).unwrap();
        c.append(&[sp(3)]).unwrap();
        let path = dir.path().join(CATALOG_FILE);
        let full = std::fs::read(&path).unwrap();
        for cut in 0..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let c = Catalog::open(&Real, dir.path(), true).unwrap();
            let n = c.entries().len();
            assert_eq!(c.entries(), &[sp(1), sp(2), sp(3)][..n]);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), c.len);
        }
    }

    /// Opens the catalog with repair, appends `sp(99)`, reopens, and
    /// returns what the reopened catalog lists.
    fn repair_append_reopen(dir: &Path) -> Vec<SyncPoint> {
        let mut c = Catalog::open(&Real, dir, true).unwrap();
        c.append(&[sp(99)]).unwrap();
        Catalog::open(&Real, dir, true).unwrap().entries().to_vec()
    }

    #[test]
    fn a_torn_entry_is_cut_at_its_start_so_later_entries_survive() {
        let dir = tempfile::tempdir().unwrap();
        Catalog::create(&Real, dir.path()).unwrap();
        let all = [sp(1), sp(2), sp(3), sp(4)];
        let mut c = Catalog::open(&Real, dir.path(), true).unwrap();
        c.append(&all[..2]).unwrap();
        c.append(&all[2..]).unwrap();
        let path = dir.path().join(CATALOG_FILE);
        let full = std::fs::read(&path).unwrap();
        // Where each entry ends: a cut keeps the entries ending at or before it.
        let mut ends = Vec::new();
        let mut buf = Vec::new();
        for e in &all {
            e.encode(&mut buf);
            ends.push(buf.len());
        }
        assert_eq!(buf, full);
        for cut in 0..=full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let kept = ends.iter().filter(|&&end| end <= cut).count();
            let mut expect = all[..kept].to_vec();
            expect.push(sp(99));
            assert_eq!(repair_append_reopen(dir.path()), expect, "cut at {cut}");
        }
    }

    #[test]
    fn garbage_after_valid_entries_is_cut_so_later_entries_survive() {
        let dir = tempfile::tempdir().unwrap();
        Catalog::create(&Real, dir.path()).unwrap();
        let mut c = Catalog::open(&Real, dir.path(), true).unwrap();
        c.append(&[sp(1), sp(2)]).unwrap();
        let path = dir.path().join(CATALOG_FILE);
        let valid = std::fs::read(&path).unwrap();
        let mut entry = Vec::new();
        sp(3).encode(&mut entry);
        let mut bad_crc = entry.clone();
        bad_crc[0] ^= 1;
        let mut short_len = entry.clone();
        short_len[4..8].copy_from_slice(&39u32.to_le_bytes());
        let mut long_len = entry.clone();
        long_len[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let garbage: Vec<Vec<u8>> = vec![
            vec![0],
            vec![0; 7],
            vec![0; 8],
            vec![0; 100],
            vec![0xff; 9],
            vec![0xff; 4096],
            (0..=255u8).cycle().take(1000).collect(),
            bad_crc,
            short_len,
            long_len,
            entry[..entry.len() - 1].to_vec(),
        ];
        for junk in garbage {
            let mut bytes = valid.clone();
            bytes.extend_from_slice(&junk);
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(
                repair_append_reopen(dir.path()),
                [sp(1), sp(2), sp(99)],
                "after {} bytes of garbage {:?}",
                junk.len(),
                &junk[..junk.len().min(12)]
            );
            let mut expect = valid.clone();
            sp(99).encode(&mut expect);
            assert_eq!(std::fs::read(&path).unwrap(), expect);
        }
    }
}
