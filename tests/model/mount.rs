//! A real mount as a target: the same actions performed with the system
//! calls applications use (std::fs and libc) on a FUSE mount of an lsvfs
//! volume, so that the kernel's part (its checks, caches and writeback) is
//! held to the model too. The volume lives in a unique temp directory and
//! is always unmounted, also when a case fails.

use super::common::facts::{walk, xattrs};
use super::common::mount::Mounted;
use super::common::{Content, Dump, Node};
use super::ops::{Action, Op, SetTime, Stat, Value, agrees};
use super::reference::{Meta, Model, Snapshot};
use lsvfs::fs::{RenameMode, XattrMode};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct MountHarness {
    m: Mounted,
    /// Open handles, in the model's order.
    handles: Vec<File>,
    model: Model,
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// The result of a libc call that returns -1 and sets errno on failure.
fn check(r: impl Into<i64>) -> io::Result<i64> {
    match r.into() {
        -1 => Err(io::Error::last_os_error()),
        n => Ok(n),
    }
}

fn timespec(t: SetTime) -> libc::timespec {
    let (tv_sec, tv_nsec) = match t {
        SetTime::Omit => (0, libc::UTIME_OMIT),
        SetTime::Now => (0, libc::UTIME_NOW),
        SetTime::At(s, n) => (s, n as i64),
    };
    libc::timespec { tv_sec, tv_nsec }
}

fn stat(m: &Metadata) -> Stat {
    let kind = match m.file_type() {
        t if t.is_dir() => 'd',
        t if t.is_symlink() => 'l',
        _ => 'f',
    };
    Stat {
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        nlink: m.nlink() as u32,
        size: if m.is_dir() { 0 } else { m.size() },
        atime: Some((m.atime(), m.atime_nsec() as u32)),
        mtime: Some((m.mtime(), m.mtime_nsec() as u32)),
    }
}

impl MountHarness {
    pub fn new() -> Self {
        // The modes the model expects of new files and directories.
        // SAFETY: umask has no memory-safety preconditions.
        unsafe { libc::umask(0o022) };
        MountHarness {
            m: Mounted::new(&[], ""),
            handles: Vec::new(),
            model: Model::new(true),
        }
    }

    fn at(&self, path: &str) -> PathBuf {
        self.m.mnt.join(path.trim_start_matches('/'))
    }

    pub fn run(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Fsync => {
                let root = File::open(&self.m.mnt).unwrap();
                // SAFETY: a valid descriptor.
                let r = unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&root)) };
                prop_assert_eq!(r, 0, "syncfs: {}", io::Error::last_os_error());
            }
            Op::Reopen => self.remount(),
            _ => {
                let Some((action, want)) = self.model.step(op) else {
                    return Ok(());
                };
                let got = self
                    .perform(&action)
                    .map_err(|e| e.raw_os_error().unwrap_or(-1));
                prop_assert!(
                    agrees(&got, &want),
                    "{:?}: got {:?}, want {:?}",
                    action,
                    got,
                    want
                );
            }
        }
        self.check_live()
    }

    /// Closes every handle and mounts again.
    fn remount(&mut self) {
        self.handles.clear();
        self.model = self.model.closed();
        self.m.remount();
    }

    pub fn finish(mut self) -> Result<(), TestCaseError> {
        self.remount();
        self.check_live()
    }

    fn perform(&mut self, action: &Action) -> io::Result<Value> {
        match action {
            Action::Create { path, dir: true } => {
                std::fs::DirBuilder::new()
                    .mode(0o755)
                    .create(self.at(path))?;
            }
            Action::Create { path, dir: false } => {
                let mut o = File::options();
                o.write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(self.at(path))?;
            }
            Action::Symlink { path, target } => {
                let target = std::ffi::OsStr::from_bytes(target);
                std::os::unix::fs::symlink(target, self.at(path))?;
            }
            Action::Write {
                path,
                offset,
                bytes,
            } => {
                let f = File::options().write(true).open(self.at(path))?;
                f.write_all_at(bytes, *offset)?;
                return Ok(Value::Written(bytes.len()));
            }
            Action::Unlink { path } => std::fs::remove_file(self.at(path))?,
            Action::Rmdir { path } => std::fs::remove_dir(self.at(path))?,
            Action::Rename { from, to, mode } => {
                let flags = match mode {
                    RenameMode::Replace => 0,
                    RenameMode::NoReplace => libc::RENAME_NOREPLACE,
                    RenameMode::Exchange => libc::RENAME_EXCHANGE,
                };
                let (from, to) = (c(&self.at(from)), c(&self.at(to)));
                let cwd = libc::AT_FDCWD;
                // SAFETY: valid C strings.
                check(unsafe { libc::renameat2(cwd, from.as_ptr(), cwd, to.as_ptr(), flags) })?;
            }
            Action::Link { from, to } => {
                let (from, to) = (c(&self.at(from)), c(&self.at(to)));
                let cwd = libc::AT_FDCWD;
                // Flags 0: a link to a symlink is to the link itself.
                // SAFETY: valid C strings.
                check(unsafe { libc::linkat(cwd, from.as_ptr(), cwd, to.as_ptr(), 0) })?;
            }
            _ => return self.perform_attributes(action),
        }
        Ok(Value::Done)
    }

    fn perform_attributes(&mut self, action: &Action) -> io::Result<Value> {
        match action {
            Action::Truncate { path, size } => {
                // SAFETY: a valid C string.
                check(unsafe { libc::truncate(c(&self.at(path)).as_ptr(), *size as i64) })?;
            }
            Action::Stat { path } => {
                return Ok(Value::Stat(stat(&std::fs::symlink_metadata(
                    self.at(path),
                )?)));
            }
            Action::Readlink { path } => {
                let target = std::fs::read_link(self.at(path))?;
                return Ok(Value::Bytes(target.as_os_str().as_bytes().to_vec()));
            }
            Action::Chmod { path, mode } => {
                std::fs::set_permissions(self.at(path), PermissionsExt::from_mode(*mode))?;
            }
            Action::Chown { path, uid, gid } => {
                std::os::unix::fs::lchown(self.at(path), *uid, *gid)?;
            }
            Action::Utimens { path, atime, mtime } => {
                let times = [timespec(*atime), timespec(*mtime)];
                let p = c(&self.at(path));
                let nofollow = libc::AT_SYMLINK_NOFOLLOW;
                // SAFETY: a valid C string and two timespecs.
                let r = unsafe {
                    libc::utimensat(libc::AT_FDCWD, p.as_ptr(), times.as_ptr(), nofollow)
                };
                check(r)?;
            }
            _ => return self.perform_xattr_or_handle(action),
        }
        Ok(Value::Done)
    }

    fn perform_xattr_or_handle(&mut self, action: &Action) -> io::Result<Value> {
        let name = |n: &str| CString::new(n).unwrap();
        match action {
            Action::SetXattr {
                path,
                name: n,
                value,
                mode,
            } => {
                let flags = match mode {
                    XattrMode::Any => 0,
                    XattrMode::Create => libc::XATTR_CREATE,
                    XattrMode::Replace => libc::XATTR_REPLACE,
                };
                let (p, n, v) = (c(&self.at(path)), name(n), value.as_ptr().cast());
                // SAFETY: valid C strings and a buffer of the length given.
                check(unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), v, value.len(), flags) })?;
            }
            Action::GetXattr { path, name: n } => {
                let mut buf = vec![0u8; 65536];
                let (p, n, b) = (c(&self.at(path)), name(n), buf.as_mut_ptr().cast());
                // SAFETY: valid C strings and a buffer of the length given.
                let len =
                    check(unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), b, buf.len()) as i64 })?;
                buf.truncate(len as usize);
                return Ok(Value::Bytes(buf));
            }
            Action::ListXattr { path } => {
                let names = xattrs(&self.at(path)).into_keys().map(String::into_bytes);
                return Ok(Value::Names(names.collect()));
            }
            Action::RemoveXattr { path, name: n } => {
                let (p, n) = (c(&self.at(path)), name(n));
                // SAFETY: valid C strings.
                check(unsafe { libc::lremovexattr(p.as_ptr(), n.as_ptr()) })?;
            }
            Action::Open { path } => {
                let f = File::options().read(true).write(true).open(self.at(path))?;
                self.handles.push(f);
            }
            Action::HandleWrite {
                handle,
                offset,
                bytes,
            } => {
                self.handles[*handle].write_all_at(bytes, *offset)?;
                return Ok(Value::Written(bytes.len()));
            }
            Action::HandleRead { handle } => {
                return read_all(&self.handles[*handle]).map(Value::Bytes);
            }
            Action::Release { handle } => drop(self.handles.remove(*handle)),
            _ => unreachable!("performed by perform or perform_attributes"),
        }
        Ok(Value::Done)
    }

    /// The mount equals the model. The kernel releases a closed file after
    /// close returns, so a file unlinked while open may take a moment to go.
    fn check_live(&self) -> Result<(), TestCaseError> {
        let want = self.model.snapshot();
        let mut got = snapshot(&self.m.mnt);
        for _ in 0..100 {
            if got.masked_by(&want) == want {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
            got = snapshot(&self.m.mnt);
        }
        prop_assert_eq!(got.masked_by(&want), want);
        Ok(())
    }
}

fn read_all(f: &File) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match f.read_at(&mut buf, out.len() as u64)? {
            0 => return Ok(out),
            n => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Every path under the mount (the root as `""`), by walking it with the
/// system calls `ls -lR`, `cat` and `getfattr` use.
fn snapshot(root: &Path) -> Snapshot {
    let mut all = vec![(String::new(), std::fs::symlink_metadata(root).unwrap())];
    for (p, m) in walk(root) {
        let rel = p.strip_prefix(root).unwrap().to_string_lossy();
        all.push((format!("/{rel}"), m));
    }
    // By name, as the model orders them: the first of hard links is the least.
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let (mut tree, mut meta) = (Dump::new(), BTreeMap::new());
    let mut first: BTreeMap<u64, String> = BTreeMap::new();
    for (rel, m) in all {
        let p = root.join(rel.trim_start_matches('/'));
        let first_path = first.entry(m.ino()).or_insert(rel.clone()).clone();
        let node = match m.file_type() {
            t if t.is_dir() => Node::Dir {
                nlink: m.nlink() as u32,
            },
            t if t.is_symlink() => Node::Symlink {
                target: std::fs::read_link(&p)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
            },
            _ => Node::File {
                content: Content(std::fs::read(&p).unwrap()),
                nlink: m.nlink() as u32,
                first_path,
            },
        };
        let xattrs = xattrs(&p)
            .into_iter()
            .map(|(k, v)| (k.into_bytes(), v))
            .collect();
        meta.insert(
            rel.clone(),
            Meta {
                stat: stat(&m),
                xattrs,
            },
        );
        if !rel.is_empty() {
            tree.insert(rel, node);
        }
    }
    Snapshot {
        tree,
        meta,
        inodes: Some(statvfs_files(root)),
    }
}

fn statvfs_files(root: &Path) -> u64 {
    // SAFETY: a valid C string and an out-parameter of the right type.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::statvfs(c(root).as_ptr(), &mut s) };
    assert_eq!(r, 0, "statvfs: {}", io::Error::last_os_error());
    s.f_files
}
