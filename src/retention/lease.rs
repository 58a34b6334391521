//! Leases: a view of a volume's sync point holds one while it is open, so
//! that prune keeps the objects the view reads even when the sync point is
//! forgotten meanwhile.
//!
//! A lease is a file `leases/{sync id}-{pid}-{n}.lease` in the volume
//! directory, locked (flock) by the process holding it for as long as the
//! view lives; it is made under a temporary name, locked, then renamed into
//! place, so that prune never sees it unlocked. Prune counts the lease
//! files it cannot lock; those it can lock belong to a process that is
//! gone, and it removes them. A view built from the backing store alone
//! (another host) holds no lease: prune there cannot know of it.
//!
//! The handshake with prune: a view takes its lease, then checks that its
//! sync point is not forgotten; prune records what it forgets, then counts
//! the leases, then deletes. Either the view sees the sync point forgotten
//! and gives up, or prune sees the lease and keeps what the view needs.

use crate::disk::{Disk, FileIo, Kind, OpenMode};
use crate::error::{Result, io};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The directory of leases in a volume directory.
pub const LEASES_DIR: &str = "leases";

/// An open view's claim on its sync point; released when dropped.
pub struct Lease {
    disk: Arc<dyn Disk>,
    path: PathBuf,
    _file: Box<dyn FileIo>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lease({})", self.path.display())
    }
}

impl Lease {
    /// Takes a lease on sync point `id` of the volume in `dir`.
    pub fn take(disk: Arc<dyn Disk>, dir: &Path, id: u64) -> Result<Lease> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let leases = dir.join(LEASES_DIR);
        let ctx = format!("cannot take a lease in {}", leases.display());
        disk.create_dir_all(&leases).map_err(io(ctx.clone()))?;
        // A prune may take a temporary for a dead process's between its
        // creation and its lock, and remove it: then make another.
        let mut attempts = 0;
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let name = format!("{id}-{}-{n}.lease", std::process::id());
            let tmp = leases.join(format!(".{name}.tmp"));
            let path = leases.join(&name);
            let file = disk.open(&tmp, OpenMode::Create).map_err(io(ctx.clone()))?;
            let made = file.try_lock().and_then(|locked| match locked {
                true => disk.rename(&tmp, &path),
                false => Err(std::io::ErrorKind::NotFound.into()),
            });
            match made {
                Ok(()) => {
                    return Ok(Lease {
                        disk,
                        path,
                        _file: file,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 3 => attempts += 1,
                Err(e) => return Err(io(ctx)(e)),
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // A leftover is unlocked, and prune removes it.
        let _ = self.disk.remove_file(&self.path);
    }
}

/// The sync points whose views are open (their lease is locked), removing
/// the lease files of processes that are gone.
pub fn held(disk: &dyn Disk, dir: &Path) -> Result<BTreeSet<u64>> {
    let leases = dir.join(LEASES_DIR);
    let entries = match disk.list(&leases) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(io(format!("cannot list {}", leases.display()))(e)),
    };
    let mut ids = BTreeSet::new();
    for (name, kind) in entries {
        let id = name
            .strip_suffix(".lease")
            .and_then(|n| n.split('-').next())
            .and_then(|n| n.parse::<u64>().ok());
        let stale_tmp = name.starts_with('.') && name.ends_with(".tmp");
        if kind != Kind::File || (id.is_none() && !stale_tmp) {
            continue;
        }
        let path = leases.join(&name);
        let file = match disk.open(&path, OpenMode::Read) {
            Ok(f) => f,
            // Released meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(format!("cannot open {}", path.display()))(e)),
        };
        let ctx = || format!("cannot lock {}", path.display());
        match (file.try_lock().map_err(io(ctx()))?, id) {
            // Held, or being made: a temporary becomes a lease whose
            // holder checks the forgotten set after prune recorded it.
            (false, Some(id)) => {
                ids.insert(id);
            }
            (false, None) => {}
            (true, _) => disk.remove_file(&path).map_err(io(ctx()))?,
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_held_until_dropped_and_a_dead_one_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let disk = crate::disk::real();
        assert!(held(&*disk, dir.path()).unwrap().is_empty());
        let a = Lease::take(disk.clone(), dir.path(), 7).unwrap();
        let b = Lease::take(disk.clone(), dir.path(), 9).unwrap();
        assert_eq!(held(&*disk, dir.path()).unwrap(), [7, 9].into());
        drop(a);
        assert_eq!(held(&*disk, dir.path()).unwrap(), [9].into());
        // A process that died leaves its file unlocked.
        let dead = dir.path().join(LEASES_DIR).join("3-1-0.lease");
        std::fs::write(&dead, b"").unwrap();
        assert_eq!(held(&*disk, dir.path()).unwrap(), [9].into());
        assert!(!dead.exists(), "removed");
        drop(b);
        assert!(held(&*disk, dir.path()).unwrap().is_empty());
    }
}
