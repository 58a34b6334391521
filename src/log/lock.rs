//! The volume lock: one read-write opener at a time, enforced with flock on
//! `VOLUME/lock`. The file names the holder (pid, host) for the error a
//! second opener gets, and after a clean close records where the log ended,
//! so that the next open can tell a clean shutdown from a crash. It also
//! records the volume's home (the directory's device, inode and path), so
//! that a copy of the directory is recognised at its first open.

use crate::disk::{Disk, FileIo, OpenMode};
use crate::error::{Error, Result, io};
use crate::format::Lsn;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

pub const LOCK_FILE: &str = "lock";

/// How long an open waits for a lock whose file names no holder. Such a
/// lock is held only for moments: by a child process of the last holder
/// between fork and exec (flock belongs to the open file, and the child's
/// copy of the descriptor lives until exec closes it), or by an opener
/// that has not claimed the volume yet.
const UNNAMED_WAIT: Duration = Duration::from_secs(2);

pub struct VolumeLock {
    file: Box<dyn FileIo>,
    /// The `home` line of the directory the volume is opened in.
    home: String,
}

/// Where a volume was last opened: its directory's identity and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    pub dev: u64,
    pub ino: u64,
    pub path: std::path::PathBuf,
}

impl Home {
    /// The home of the directory `volume` (its path made canonical).
    fn of(disk: &dyn Disk, volume: &Path) -> std::io::Result<Home> {
        let meta = disk.stat(volume, true)?;
        Ok(Home {
            dev: meta.dev,
            ino: meta.ino,
            path: disk.canonicalize(volume)?,
        })
    }

    fn line(&self) -> String {
        format!("home {} {} {}\n", self.dev, self.ino, self.path.display())
    }

    fn parse(line: &str) -> Option<Home> {
        let mut parts = line.strip_prefix("home ")?.splitn(3, ' ');
        Some(Home {
            dev: parts.next()?.parse().ok()?,
            ino: parts.next()?.parse().ok()?,
            path: parts.next()?.into(),
        })
    }

    /// Whether `self` is the same directory as `other`.
    pub fn same_dir(&self, other: &Home) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
    }

    /// Whether the directory recorded here still exists as itself.
    pub fn still_there(&self, disk: &dyn Disk) -> bool {
        Home::of(disk, &self.path).is_ok_and(|now| now.same_dir(self))
    }
}

/// What [`VolumeLock::acquire`] found in the lock file.
pub struct Found {
    /// Where the log ended at the last clean close.
    pub clean: Option<Lsn>,
    /// Where the volume was last opened, and where it is now.
    pub last_home: Option<Home>,
    pub home: Home,
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown host".into())
}

impl VolumeLock {
    /// Takes the lock; returns it with what the lock file recorded.
    /// Nothing is written until [`VolumeLock::claim`].
    pub fn acquire(disk: &dyn Disk, volume: &Path) -> Result<(VolumeLock, Found)> {
        let path = volume.join(LOCK_FILE);
        let ctx = |what: &str| format!("cannot {what} {}", path.display());
        let file = disk
            .open(&path, OpenMode::Create)
            .map_err(io(ctx("open")))?;
        let read = |file: &dyn FileIo| {
            let bytes = file.read_all()?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        };
        let started = Instant::now();
        while !file.try_lock().map_err(io(ctx("lock")))? {
            let text = read(&*file).unwrap_or_default();
            let named = text.lines().next().filter(|l| l.starts_with("pid "));
            if named.is_none() && started.elapsed() < UNNAMED_WAIT {
                std::thread::sleep(UNNAMED_WAIT / 100);
                continue;
            }
            let holder = named
                .unwrap_or("a process that has not named itself (it may be recovering the volume)")
                .to_string();
            return Err(Error::Locked {
                path: volume.to_path_buf(),
                holder,
            });
        }
        let text = read(&*file).map_err(io(ctx("read")))?;
        let home =
            Home::of(disk, volume).map_err(io(format!("cannot inspect {}", volume.display())))?;
        let found = Found {
            clean: text.lines().find_map(parse_clean),
            last_home: text.lines().find_map(Home::parse),
            home: home.clone(),
        };
        let lock = VolumeLock {
            file,
            home: home.line(),
        };
        Ok((lock, found))
    }

    /// Names this process as the holder, which also forgets the clean mark:
    /// from here on, only a clean close makes the next open a clean one,
    /// also after a power loss (so the forgetting is made durable).
    pub fn claim(&mut self) -> Result<()> {
        let me = format!("pid {} on {}\n{}", std::process::id(), host(), self.home);
        self.rewrite(&me)
    }

    fn rewrite(&mut self, text: &str) -> Result<()> {
        self.file
            .set_len(0)
            .and_then(|_| self.file.write_all_at(text.as_bytes(), 0))
            .and_then(|_| self.file.sync_data())
            .map_err(io("cannot write the volume's lock file"))
    }

    /// Records a clean close that left the log ending at `end`.
    pub fn mark_clean(&mut self, end: Lsn) -> Result<()> {
        let text = format!(
            "closed cleanly\nclean {} {}\n{}",
            end.seq, end.offset, self.home
        );
        self.rewrite(&text)
    }
}

/// The pid holding the lock of the volume in `volume`, if any process does.
pub fn holder(volume: &Path) -> Option<u32> {
    let mut file = File::open(volume.join(LOCK_FILE)).ok()?;
    // SAFETY: flock on a valid descriptor owned by `file`; a lock taken here
    // is released when `file` closes at the end of this function.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
        return None;
    }
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    text.strip_prefix("pid ")
        .and_then(|t| t.split(' ').next())
        .and_then(|pid| pid.parse().ok())
        .or(Some(0))
}

fn parse_clean(line: &str) -> Option<Lsn> {
    let mut parts = line.strip_prefix("clean ")?.split(' ');
    let seq = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    Some(Lsn { seq, offset })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::Real;

    #[test]
    fn second_holder_is_named_and_clean_end_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let (mut lock, found) = VolumeLock::acquire(&Real, dir.path()).unwrap();
        assert_eq!(found.clean, None);
        lock.claim().unwrap();
        let err = VolumeLock::acquire(&Real, dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        let end = Lsn {
            seq: 3,
            offset: 9000,
        };
        lock.mark_clean(end).unwrap();
        drop(lock);
        let (_lock, found) = VolumeLock::acquire(&Real, dir.path()).unwrap();
        assert_eq!(found.clean, Some(end));
        assert_eq!(found.last_home, Some(found.home));
    }
}
