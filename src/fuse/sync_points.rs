//! `.lsvfs/sync-points/` in the live mount: a read-only directory per sync
//! point, named by its id, and a symlink to it per label that names one
//! sync point only — the same views `lsvfs mount --at` serves, browsable
//! without a separate mount, as ZFS offers `.zfs/snapshot`.
//!
//! A view is built on first access and kept among the `CACHED` most
//! recently used; one evicted is built again when next used, with the same
//! inode numbers: inode `i` of sync point `id`'s view appears as
//! `VIEW_BIT | id << 32 | i` (bit 63 stays clear, which the control nodes
//! use), and number `i = 0` is the sync point's label symlink.

use super::mounted_view::{InoMap, MountedView};
use super::reply::{VIEW_TTL, errno, file_attr};
use crate::format::{FileKind, InodeAttrs, Timestamp};
use crate::fs::{Entry, Fs, FsError, ViewFs};
use crate::log::catalog::SyncPoint;
use crate::sync::lock;
use crate::volume::ROOT_INO;
use fuser::{Errno, FileAttr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const VIEW_BIT: u64 = 1 << 62;
const ID_BITS: u32 = 30;
const INO_BITS: u32 = 32;
/// Views kept built.
const CACHED: usize = 4;

/// The sync point and view inode a mount inode stands for, if it is one.
pub fn decode(ino: u64) -> Option<(u64, u64)> {
    (ino >> 62 == 1).then(|| {
        let id = (ino >> INO_BITS) & ((1 << ID_BITS) - 1);
        (id, ino & ((1 << INO_BITS) - 1))
    })
}

fn encode(id: u64, ino: u64) -> Result<u64, Errno> {
    if id >> ID_BITS != 0 || ino >> INO_BITS != 0 {
        log::warn!("sync point {id}, inode {ino}: beyond what .lsvfs/sync-points can number");
        return Err(Errno::EOVERFLOW);
    }
    Ok(VIEW_BIT | id << INO_BITS | ino)
}

/// Numbers of one sync point's view inside the live mount.
pub struct InView {
    id: u64,
    dir: u64,
}

impl InoMap for InView {
    fn outer(&self, ino: u64) -> Result<u64, Errno> {
        encode(self.id, ino)
    }
    fn root_parent(&self) -> u64 {
        self.dir
    }
}

pub struct Views {
    fs: Arc<Fs>,
    /// The inode of `.lsvfs/sync-points` itself.
    dir: u64,
    owner: u32,
    cache: Mutex<Vec<Arc<MountedView<InView>>>>,
}

/// Whether `label` can name a symlink beside the ids without ambiguity.
fn usable_label(label: &str, points: &[SyncPoint]) -> bool {
    !label.is_empty()
        && label.len() <= crate::format::record::NAME_MAX
        && !label.contains('/')
        && label != "."
        && label != ".."
        && !label.bytes().all(|b| b.is_ascii_digit())
        && points.iter().filter(|p| p.info.label == label).count() == 1
}

fn id_of(v: &MountedView<InView>) -> u64 {
    v.fs.view().point.info.id
}

impl Views {
    pub fn new(fs: Arc<Fs>, dir: u64, owner: u32) -> Self {
        Views {
            fs,
            dir,
            owner,
            cache: Mutex::new(Vec::new()),
        }
    }

    fn points(&self) -> Result<Vec<SyncPoint>, Errno> {
        self.fs.volume().sync_points().map_err(|e| {
            log::error!("cannot list the sync points: {e}");
            errno(FsError::Engine(e))
        })
    }

    /// The view of sync point `id`, built if need be.
    pub fn get(&self, id: u64) -> Result<Arc<MountedView<InView>>, Errno> {
        {
            let mut cache = lock(&self.cache);
            if let Some(i) = cache.iter().position(|v| id_of(v) == id) {
                let v = cache.remove(i);
                cache.insert(0, v.clone());
                return Ok(v);
            }
        }
        // Built without the lock: other views stay usable meanwhile (two
        // first uses of one view may both build it; one is kept).
        let view = match self.fs.volume().view(id) {
            Ok(v) => v,
            Err(crate::Error::UnknownSyncPoint(_) | crate::Error::Pruned(_)) => {
                return Err(errno(FsError::NotFound));
            }
            Err(e) => {
                log::error!("cannot build the view of sync point {id}");
                return Err(errno(FsError::Engine(e)));
            }
        };
        let v = Arc::new(MountedView {
            fs: ViewFs::new(view),
            map: InView { id, dir: self.dir },
        });
        let mut cache = lock(&self.cache);
        cache.retain(|c| id_of(c) != id);
        cache.insert(0, v.clone());
        cache.truncate(CACHED);
        Ok(v)
    }

    /// The entries of `.lsvfs/sync-points` after `.` and `..`.
    pub fn listing(&self) -> Result<Vec<Entry>, Errno> {
        let points = self.points()?;
        let mut list = Vec::new();
        for p in &points {
            let id = p.info.id;
            if let Ok(ino) = encode(id, ROOT_INO) {
                list.push(Entry {
                    name: id.to_string().into_bytes(),
                    ino,
                    kind: FileKind::Directory,
                });
            }
        }
        for p in &points {
            if usable_label(&p.info.label, &points)
                && let Ok(ino) = encode(p.info.id, 0)
            {
                list.push(Entry {
                    name: p.info.label.clone().into_bytes(),
                    ino,
                    kind: FileKind::Symlink,
                });
            }
        }
        Ok(list)
    }

    /// A name in `.lsvfs/sync-points`: an id (the view's root) or a label.
    pub fn lookup(&self, name: &[u8]) -> Result<(Duration, FileAttr), Errno> {
        let name = std::str::from_utf8(name).map_err(|_| Errno::ENOENT)?;
        if let Ok(id) = name.parse::<u64>() {
            return self.get(id)?.attr(ROOT_INO);
        }
        let points = self.points()?;
        let p = points
            .iter()
            .find(|p| p.info.label == name && usable_label(name, &points))
            .ok_or(Errno::ENOENT)?;
        self.symlink_attr(p)
    }

    fn symlink_attr(&self, p: &SyncPoint) -> Result<(Duration, FileAttr), Errno> {
        let mut a = InodeAttrs::new(FileKind::Symlink, 0o777, self.owner, 0);
        a.target = p.info.id.to_string().into_bytes();
        a.size = a.target.len() as u64;
        let t = Timestamp {
            sec: (p.info.time_ns / 1_000_000_000) as i64,
            nsec: (p.info.time_ns % 1_000_000_000) as u32,
        };
        (a.atime, a.mtime, a.ctime, a.crtime) = (t, t, t, t);
        Ok((VIEW_TTL, file_attr(encode(p.info.id, 0)?, &a, 4096)))
    }

    fn point(&self, id: u64) -> Result<SyncPoint, Errno> {
        self.points()?
            .into_iter()
            .find(|p| p.info.id == id)
            .ok_or(Errno::ENOENT)
    }

    /// The attributes of sync point `id`'s label symlink.
    pub fn label_attr(&self, id: u64) -> Result<(Duration, FileAttr), Errno> {
        self.symlink_attr(&self.point(id)?)
    }

    /// Where sync point `id`'s label symlink points: its directory.
    pub fn label_target(&self, id: u64) -> Result<Vec<u8>, Errno> {
        Ok(self.point(id)?.info.id.to_string().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_stay_clear_of_the_others() {
        let ino = encode(7, 42).unwrap();
        assert_eq!(decode(ino), Some((7, 42)));
        assert_eq!(decode(42), None, "live inodes");
        assert_eq!(decode(u64::MAX - 15), None, "control nodes");
        assert!(encode(1 << 30, 1).is_err() && encode(1, 1 << 32).is_err());
    }
}
