//! The engine as a target: actions performed through its POSIX layer
//! (`lsvfs::fs::Fs`, no kernel), and snapshots of its live tree and of
//! the views of its sync points.

use super::common::dump;
use super::ops::{Action, Outcome, SetTime, Stat, Value};
use super::reference::{Meta, Snapshot};
use lsvfs::format::{FileKind, InodeAttrs, Timestamp};
use lsvfs::fs::{Fs, FsError, ROOT_OWNER, SetAttrs};
use lsvfs::tree::{IndexAccess, Tree};
use lsvfs::volume::ROOT_INO;
use std::collections::BTreeMap;

/// Finds the engine inode for a model path.
fn resolve(fs: &Fs, path: &str) -> Result<u64, FsError> {
    let mut ino = ROOT_INO;
    for part in path.split('/').filter(|s| !s.is_empty()) {
        ino = fs.lookup(ino, part.as_bytes())?.0;
    }
    Ok(ino)
}

/// The parent's inode and the last name of a path.
fn split<'p>(fs: &Fs, path: &'p str) -> Result<(u64, &'p [u8]), FsError> {
    let cut = path.rfind('/').expect("a path below the root");
    Ok((resolve(fs, &path[..cut])?, &path.as_bytes()[cut + 1..]))
}

fn time(t: SetTime) -> Option<Timestamp> {
    match t {
        SetTime::Omit => None,
        SetTime::Now => Some(Timestamp::now()),
        SetTime::At(sec, nsec) => Some(Timestamp { sec, nsec }),
    }
}

pub fn stat(a: &InodeAttrs) -> Stat {
    let (kind, size) = match a.kind {
        FileKind::Directory => ('d', 0),
        FileKind::Symlink => ('l', a.size),
        _ => ('f', a.size),
    };
    Stat {
        kind,
        mode: a.mode,
        uid: a.uid,
        gid: a.gid,
        nlink: a.nlink,
        size,
        atime: Some((a.atime.sec, a.atime.nsec)),
        mtime: Some((a.mtime.sec, a.mtime.nsec)),
    }
}

/// Success with nothing to return, whatever the call gave back.
fn done<T>(_: T) -> Value {
    Value::Done
}

fn errno(e: FsError) -> i32 {
    e.errno()
}

/// Performs `action` on `fs`, whose open handles are `handles` (by inode).
pub fn perform(fs: &Fs, handles: &mut Vec<u64>, action: &Action) -> Outcome {
    perform_on(fs, handles, action).map_err(errno)
}

fn setattr(fs: &Fs, path: &str, set: SetAttrs) -> Result<Value, FsError> {
    fs.setattr(resolve(fs, path)?, &set).map(done)
}

fn perform_on(fs: &Fs, handles: &mut Vec<u64>, action: &Action) -> Result<Value, FsError> {
    match action {
        Action::Create { path, dir } => {
            let (kind, mode) = match dir {
                true => (FileKind::Directory, 0o755),
                false => (FileKind::Regular, 0o644),
            };
            let (parent, name) = split(fs, path)?;
            fs.mknod(parent, name, kind, mode, ROOT_OWNER, 0).map(done)
        }
        Action::Symlink { path, target } => {
            let (parent, name) = split(fs, path)?;
            fs.symlink(parent, name, target, ROOT_OWNER).map(done)
        }
        Action::Write {
            path,
            offset,
            bytes,
        } => fs
            .write(resolve(fs, path)?, *offset, bytes)
            .map(Value::Written),
        Action::Truncate { path, size } => fs.truncate(resolve(fs, path)?, *size).map(done),
        Action::Unlink { path } => {
            let (parent, name) = split(fs, path)?;
            fs.unlink(parent, name).map(done)
        }
        Action::Rmdir { path } => {
            let (parent, name) = split(fs, path)?;
            fs.rmdir(parent, name).map(done)
        }
        Action::Rename { from, to, mode } => {
            let (parent, name) = split(fs, from)?;
            let (new_parent, new_name) = split(fs, to)?;
            fs.rename(parent, name, new_parent, new_name, *mode)
                .map(done)
        }
        Action::Link { from, to } => {
            let (parent, name) = split(fs, to)?;
            fs.link(resolve(fs, from)?, parent, name).map(done)
        }
        Action::Stat { path } => Ok(Value::Stat(stat(&fs.getattr(resolve(fs, path)?)?))),
        Action::Readlink { path } => match fs.getattr(resolve(fs, path)?)? {
            a if a.kind == FileKind::Symlink => Ok(Value::Bytes(a.target)),
            _ => Err(FsError::Invalid("not a symlink")),
        },
        Action::Chmod { path, mode } => setattr(
            fs,
            path,
            SetAttrs {
                mode: Some(*mode),
                ..Default::default()
            },
        ),
        Action::Chown { path, uid, gid } => setattr(
            fs,
            path,
            SetAttrs {
                uid: *uid,
                gid: *gid,
                ..Default::default()
            },
        ),
        Action::Utimens { path, atime, mtime } => {
            let set = SetAttrs {
                atime: time(*atime),
                mtime: time(*mtime),
                ..Default::default()
            };
            setattr(fs, path, set)
        }
        _ => perform_xattr_or_handle(fs, handles, action),
    }
}

fn perform_xattr_or_handle(
    fs: &Fs,
    handles: &mut Vec<u64>,
    action: &Action,
) -> Result<Value, FsError> {
    match action {
        Action::SetXattr {
            path,
            name,
            value,
            mode,
        } => fs
            .setxattr(resolve(fs, path)?, name.as_bytes(), value, *mode)
            .map(done),
        Action::GetXattr { path, name } => fs
            .getxattr(resolve(fs, path)?, name.as_bytes())
            .map(Value::Bytes),
        Action::ListXattr { path } => {
            let mut names = fs.listxattr(resolve(fs, path)?)?;
            names.sort();
            Ok(Value::Names(names))
        }
        Action::RemoveXattr { path, name } => fs
            .removexattr(resolve(fs, path)?, name.as_bytes())
            .map(done),
        Action::Open { path } => {
            let ino = resolve(fs, path)?;
            fs.open(ino)?;
            handles.push(ino);
            Ok(Value::Done)
        }
        Action::HandleWrite {
            handle,
            offset,
            bytes,
        } => fs
            .write(handles[*handle], *offset, bytes)
            .map(Value::Written),
        Action::HandleRead { handle } => {
            let ino = handles[*handle];
            let size = fs.getattr(ino)?.size;
            fs.read(ino, 0, size as usize).map(Value::Bytes)
        }
        Action::Release { handle } => fs.release(handles.remove(*handle)).map(done),
        _ => unreachable!("performed by perform_on"),
    }
}

/// Attributes and xattrs of every path of `tree` (the root as `""`), and
/// the volume's inode count if given.
pub fn snapshot<I: IndexAccess>(tree: &Tree<'_, I>, inodes: Option<u64>) -> Snapshot {
    let mut meta = BTreeMap::new();
    let mut stack = vec![(ROOT_INO, String::new())];
    while let Some((ino, path)) = stack.pop() {
        let attrs = tree.getattr(ino).unwrap().expect("a listed inode");
        if attrs.kind == FileKind::Directory {
            for (name, e) in tree.list_dir(ino, None) {
                stack.push((
                    e.child,
                    format!("{path}/{}", String::from_utf8_lossy(&name)),
                ));
            }
        }
        let xattrs = tree
            .xattr_names(ino)
            .into_iter()
            .map(|n| {
                let v = tree.getxattr(ino, &n).unwrap().expect("a listed xattr");
                (n, v)
            })
            .collect();
        let stat = stat(&attrs);
        meta.insert(path, Meta { stat, xattrs });
    }
    Snapshot {
        tree: dump(tree),
        meta,
        inodes,
    }
}
