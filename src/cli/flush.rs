//! Flushing a mount from outside its daemon, before a flushing sync point:
//! everything applications wrote before the command must have been handed
//! to lsvfs (and answered) by the time the sync point is requested.
//!
//! `syncfs` starts the writeback of every dirty page and reports writeback
//! errors, but on some kernels it returns before the daemon has answered
//! the writes it caused (Linux 6.1 ends page writeback as soon as a FUSE
//! write is queued). Closing a descriptor of a file waits until every write
//! of that file, dirty or in flight, is answered (`fuse_flush`). Dirty data
//! can only belong to a file that is open for writing or mapped shared and
//! writable (the last close of a file waited for its writes), so the flush
//! opens and closes each such file on the mount once, found in /proc, then
//! runs `syncfs` again to report any error that writeback met meanwhile.
//! The files are those of the processes the command may inspect: all of
//! them as root, else the user's own (with `allow_other`, run it as root).

use anyhow::{Result, bail};
use std::collections::HashSet;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Flushes the mount whose root directory is `root` (named `mountpoint` in
/// messages). An error means the sync point must not be taken.
pub fn flush(root: &File, mountpoint: &Path) -> Result<()> {
    syncfs(root, mountpoint)?;
    let dev = root.metadata()?.dev();
    let mut done = HashSet::new();
    let mut files = Vec::new();
    for pid in pids() {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        for (path, ino) in writable_files(&proc, dev) {
            if done.insert(ino) {
                files.push((path, pid));
            }
        }
    }
    barriers(&files)?;
    syncfs(root, mountpoint)
}

/// Most barriers in flight at once.
const BARRIER_THREADS: usize = 8;

/// Runs [`barrier`] on every file, several at a time: each is an open and
/// a close that wait for the daemon (a database holds dozens of files open
/// for writing), so in turn they would add up their round trips.
fn barriers(files: &[(PathBuf, u32)]) -> Result<()> {
    let per_thread = files.len().div_ceil(BARRIER_THREADS).max(1);
    std::thread::scope(|s| {
        let threads: Vec<_> = files
            .chunks(per_thread)
            .map(|chunk| s.spawn(|| chunk.iter().try_for_each(|(p, pid)| barrier(p, *pid))))
            .collect();
        threads
            .into_iter()
            .try_for_each(|t| t.join().expect("a barrier thread panicked"))
    })
}

fn syncfs(root: &File, mountpoint: &Path) -> Result<()> {
    // SAFETY: syncfs on a descriptor owned by `root`.
    if unsafe { libc::syncfs(root.as_raw_fd()) } != 0 {
        bail!(
            "cannot flush {}: {}; no sync point was taken",
            mountpoint.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The regular files on device `dev` that process `proc` holds open for
/// writing or maps shared and writable, as /proc paths that reopen them,
/// with their inode numbers (none if the process is gone or not ours).
fn writable_files(proc: &Path, dev: u64) -> Vec<(PathBuf, u64)> {
    let Ok(fds) = std::fs::read_dir(proc.join("fd")) else {
        return Vec::new();
    };
    let on_mount = |path: &Path| {
        cached_identity(path)
            .filter(|&(d, _, regular)| d == dev && regular)
            .map(|(_, ino, _)| ino)
    };
    let mut out = Vec::new();
    for fd in fds.flatten() {
        let path = fd.path();
        let Some(ino) = on_mount(&path) else { continue };
        let info = proc.join("fdinfo").join(fd.file_name());
        if opened_for_writing(&info) {
            out.push((path, ino));
        }
    }
    let maps = std::fs::read_to_string(proc.join("maps")).unwrap_or_default();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if perms.as_bytes().get(1) == Some(&b'w') && perms.as_bytes().get(3) == Some(&b's') {
            let path = proc.join("map_files").join(range);
            if let Some(ino) = on_mount(&path) {
                out.push((path, ino));
            }
        }
    }
    out
}

/// The device, inode number and whether it is a regular file of what
/// `path` names, from the attributes the kernel has cached
/// (`AT_STATX_DONT_SYNC`): none of them changes in an inode's life, and a
/// plain stat of a file on the mount whose attributes a write has just
/// invalidated is a round trip to the daemon; the scan does one for every
/// descriptor of every process (hundreds under a database).
fn cached_identity(path: &Path) -> Option<(u64, u64, bool)> {
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statx is plain data, valid zeroed.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let mask = libc::STATX_TYPE | libc::STATX_INO;
    // SAFETY: a NUL-terminated path and a statx buffer owned here.
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::AT_STATX_DONT_SYNC,
            mask,
            &mut stx,
        )
    };
    if r != 0 {
        return None;
    }
    let dev = libc::makedev(stx.stx_dev_major, stx.stx_dev_minor);
    let regular = u32::from(stx.stx_mode) & libc::S_IFMT == libc::S_IFREG;
    Some((dev, stx.stx_ino, regular))
}

/// Whether /proc/PID/fdinfo/N says the descriptor may write.
fn opened_for_writing(fdinfo: &Path) -> bool {
    let text = std::fs::read_to_string(fdinfo).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| i32::from_str_radix(f.trim(), 8).ok())
        .is_some_and(|flags| flags & libc::O_ACCMODE != libc::O_RDONLY)
}

/// Opens the file behind `path` and closes it: the close returns once the
/// kernel has handed lsvfs every write of the file and had it answered,
/// and reports a write that failed.
fn barrier(path: &Path, pid: u32) -> Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let mut fd = -1;
    for mode in [libc::O_RDONLY, libc::O_WRONLY] {
        // SAFETY: open with a NUL-terminated path; the descriptor is closed below.
        fd = unsafe { libc::open(c_path.as_ptr(), mode | libc::O_CLOEXEC | libc::O_NOCTTY) };
        if fd >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EACCES) {
            break;
        }
    }
    let name = std::fs::read_link(path).unwrap_or_else(|_| path.to_path_buf());
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        // Closed meanwhile: its own close waited for its writes.
        if err.raw_os_error() == Some(libc::ENOENT) {
            return Ok(());
        }
        bail!(
            "cannot flush {} (open in pid {pid}): {err}; no sync point was taken",
            name.display()
        );
    }
    // SAFETY: `fd` was opened above and is closed exactly once.
    if unsafe { libc::close(fd) } != 0 {
        bail!(
            "cannot flush {} (open in pid {pid}): {}; no sync point was taken",
            name.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}
