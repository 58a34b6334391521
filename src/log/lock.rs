//! The volume lock: one read-write opener at a time, enforced with flock on
//! `VOLUME/lock`. The file names the holder (pid, host) for the error a
//! second opener gets, and after a clean close records where the log ended,
//! so that the next open can tell a clean shutdown from a crash.

use crate::error::{Error, Result, io};
use crate::format::Lsn;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

pub const LOCK_FILE: &str = "lock";

pub struct VolumeLock {
    file: File,
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown host".into())
}

impl VolumeLock {
    /// Takes the lock; returns it with the log end a clean close recorded.
    /// Nothing is written until [`VolumeLock::claim`].
    pub fn acquire(volume: &Path) -> Result<(VolumeLock, Option<Lsn>)> {
        let path = volume.join(LOCK_FILE);
        let ctx = |what: &str| format!("cannot {what} {}", path.display());
        let mut file = crate::files::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(ctx("open")))?;
        // SAFETY: flock on a valid descriptor owned by `file`.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder
                    .lines()
                    .next()
                    .unwrap_or("another process")
                    .to_string();
                return Err(Error::Locked {
                    path: volume.to_path_buf(),
                    holder,
                });
            }
            return Err(io(ctx("lock"))(err));
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(io(ctx("read")))?;
        let clean = text.lines().find_map(parse_clean);
        Ok((VolumeLock { file }, clean))
    }

    /// Names this process as the holder, which also forgets the clean mark:
    /// from here on, only a clean close makes the next open a clean one.
    pub fn claim(&mut self) -> Result<()> {
        let me = format!("pid {} on {}\n", std::process::id(), host());
        self.rewrite(&me, false)
    }

    fn rewrite(&mut self, text: &str, durable: bool) -> Result<()> {
        self.file
            .set_len(0)
            .and_then(|_| self.file.rewind())
            .and_then(|_| self.file.write_all(text.as_bytes()))
            .and_then(|_| {
                if durable {
                    self.file.sync_data()
                } else {
                    Ok(())
                }
            })
            .map_err(io("cannot write the volume's lock file"))
    }

    /// Records a clean close that left the log ending at `end`.
    pub fn mark_clean(&mut self, end: Lsn) -> Result<()> {
        let text = format!("closed cleanly\nclean {} {}\n", end.seq, end.offset);
        self.rewrite(&text, true)
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

    #[test]
    fn second_holder_is_named_and_clean_end_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let (mut lock, clean) = VolumeLock::acquire(dir.path()).unwrap();
        assert_eq!(clean, None);
        lock.claim().unwrap();
        let err = VolumeLock::acquire(dir.path()).err().unwrap().to_string();
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
        let (_lock, clean) = VolumeLock::acquire(dir.path()).unwrap();
        assert_eq!(clean, Some(end));
    }
}
