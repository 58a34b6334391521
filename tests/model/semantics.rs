//! What each operation does to the reference model, and what it returns:
//! the one definition of correctness that every target is held to. An
//! operation is resolved against the model first (its indices pick paths,
//! names and handles), so that the same `Op` means the same on every target.

use super::ops::{
    Action, NAMES, OWNERS, Op, Outcome, SetTime, Value, XATTR_NAMES, content, link_target,
};
use super::reference::{Kind, MInode, Model};
use lsvfs::fs::{RenameMode, XattrMode};

fn pick<T: Clone>(v: &[T], i: usize) -> Option<T> {
    (!v.is_empty()).then(|| v[i % v.len()].clone())
}

fn ok(v: Value) -> Outcome {
    Ok(v)
}

/// Success with nothing to return, or the errno.
fn done(errno: i32) -> Outcome {
    if errno == 0 {
        Ok(Value::Done)
    } else {
        Err(errno)
    }
}

impl Model {
    /// Resolves `op`, applies it to the model and predicts its outcome;
    /// `None` when there is nothing for it to act on (or it is one of the
    /// operations on the volume as a whole, which harnesses run).
    pub fn step(&mut self, op: &Op) -> Option<(Action, Outcome)> {
        match *op {
            Op::Create { dir, name } => self.create(dir, name, Kind::File(Vec::new())),
            Op::Mkdir { dir, name } => self.create(dir, name, Kind::Dir(Default::default())),
            Op::Symlink { dir, name, target } => {
                self.create(dir, name, Kind::Symlink(link_target(target)))
            }
            Op::Write {
                file,
                offset,
                len,
                seed,
            } => {
                let (path, ino) = pick(&self.files(), file)?;
                let bytes = content(len, seed);
                let want = self.write(ino, offset, &bytes);
                Some((
                    Action::Write {
                        path,
                        offset,
                        bytes,
                    },
                    want,
                ))
            }
            Op::Truncate { file, size } => {
                let (path, ino) = pick(&self.files(), file)?;
                let node = self.inodes.get_mut(&ino)?;
                if let Kind::File(data) = &mut node.kind {
                    data.resize(size as usize, 0);
                }
                node.mtime = None;
                Some((Action::Truncate { path, size }, done(0)))
            }
            Op::Unlink { path } => self.unlink(path),
            Op::Rmdir { dir } => self.rmdir(dir),
            Op::Rename {
                from,
                dir,
                name,
                mode,
            } => self.rename(from, dir, name, mode),
            Op::Link { file, dir, name } => self.link(file, dir, name),
            Op::Stat { .. } | Op::Readlink { .. } | Op::Chmod { .. } | Op::Chown { .. } => {
                self.attributes(op)
            }
            Op::Utimens { path, atime, mtime } => self.utimens(path, atime, mtime),
            Op::SetXattr { .. } | Op::GetXattr { .. } | Op::ListXattr { .. } => self.xattr(op),
            Op::RemoveXattr { .. } => self.xattr(op),
            Op::Open { .. } | Op::HandleWrite { .. } | Op::HandleRead { .. } => self.handle(op),
            Op::Release { .. } => self.handle(op),
            Op::SyncPoint
            | Op::Fsync
            | Op::Reopen
            | Op::Crash { .. }
            | Op::PowerLoss { .. }
            | Op::Rollback { .. } => None,
        }
    }

    /// A directory's entries changed: its mtime is now, unknown to the model.
    fn touch(&mut self, dir: u64) {
        if let Some(d) = self.inodes.get_mut(&dir) {
            d.mtime = None;
        }
    }

    fn create(&mut self, dir: usize, name: usize, kind: Kind) -> Option<(Action, Outcome)> {
        let (dpath, dino) = pick(&self.dirs(), dir)?;
        let name = NAMES[name];
        let path = format!("{dpath}/{name}");
        let action = match &kind {
            Kind::Dir(_) => Action::Create { path, dir: true },
            Kind::File(_) => Action::Create { path, dir: false },
            Kind::Symlink(t) => Action::Symlink {
                path,
                target: t.clone(),
            },
        };
        if self.dir(dino).contains_key(name) {
            return Some((action, done(libc::EEXIST)));
        }
        let ino = self.next;
        self.next += 1;
        self.inodes.insert(ino, MInode::new(kind));
        self.dir_mut(dino).insert(name.to_string(), ino);
        self.touch(dino);
        Some((action, done(0)))
    }

    fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> Outcome {
        if let Some(node) = self.inodes.get_mut(&ino)
            && let Kind::File(data) = &mut node.kind
            && !bytes.is_empty()
        {
            let end = offset as usize + bytes.len();
            if data.len() < end {
                data.resize(end, 0);
            }
            data[offset as usize..end].copy_from_slice(bytes);
            node.mtime = None;
        }
        ok(Value::Written(bytes.len()))
    }

    fn unlink(&mut self, path: usize) -> Option<(Action, Outcome)> {
        let (p, parent, name, ino) = pick(&self.paths(), path)?;
        let want = if self.is_dir(ino) {
            libc::EISDIR
        } else {
            self.dir_mut(parent).remove(&name);
            self.drop_link(ino);
            self.touch(parent);
            0
        };
        Some((Action::Unlink { path: p }, done(want)))
    }

    fn rmdir(&mut self, dir: usize) -> Option<(Action, Outcome)> {
        let (p, parent, name, ino) = pick(&self.paths(), dir)?;
        let want = if !self.is_dir(ino) {
            libc::ENOTDIR
        } else if !self.dir(ino).is_empty() {
            libc::ENOTEMPTY
        } else {
            self.dir_mut(parent).remove(&name);
            self.inodes.remove(&ino);
            self.touch(parent);
            0
        };
        Some((Action::Rmdir { path: p }, done(want)))
    }

    fn rename(
        &mut self,
        from: usize,
        dir: usize,
        name: usize,
        mode: RenameMode,
    ) -> Option<(Action, Outcome)> {
        let (p, parent, sname, ino) = pick(&self.paths(), from)?;
        let (dpath, dino) = pick(&self.dirs(), dir)?;
        let dname = NAMES[name].to_string();
        let action = Action::Rename {
            from: p,
            to: format!("{dpath}/{dname}"),
            mode,
        };
        let target = self.dir(dino).get(&dname).copied();
        let into_itself = self.is_dir(ino) && self.is_ancestor(ino, dino);
        let want = match (mode, target) {
            (RenameMode::NoReplace, Some(_)) => libc::EEXIST,
            (RenameMode::Exchange, None) => libc::ENOENT,
            (_, Some(t)) if t == ino => return Some((action, done(0))),
            (RenameMode::Exchange, Some(t)) => {
                if into_itself || (self.is_dir(t) && self.is_ancestor(t, parent)) {
                    libc::EINVAL
                } else {
                    self.dir_mut(parent).insert(sname.clone(), t);
                    self.dir_mut(dino).insert(dname.clone(), ino);
                    0
                }
            }
            _ if into_itself => libc::EINVAL,
            // The kernel refuses a target that is an ancestor of the source
            // before the filesystem sees the rename (ext4 says the same).
            (_, Some(t)) if self.kernel && self.is_ancestor(t, parent) => libc::ENOTEMPTY,
            (_, Some(t)) if self.is_dir(ino) && !self.is_dir(t) => libc::ENOTDIR,
            (_, Some(t)) if !self.is_dir(ino) && self.is_dir(t) => libc::EISDIR,
            (_, Some(t)) if self.is_dir(t) && !self.dir(t).is_empty() => libc::ENOTEMPTY,
            _ => {
                if let Some(t) = target {
                    self.drop_link(t);
                }
                self.dir_mut(parent).remove(&sname);
                self.dir_mut(dino).insert(dname.clone(), ino);
                0
            }
        };
        if want == 0 {
            self.touch(parent);
            self.touch(dino);
        }
        Some((action, done(want)))
    }

    /// A hard link to a file or a symlink (the link itself).
    fn link(&mut self, file: usize, dir: usize, name: usize) -> Option<(Action, Outcome)> {
        let (p, ino) = pick(&self.paths_where(|i| !self.is_dir(i)), file)?;
        let (dpath, dino) = pick(&self.dirs(), dir)?;
        let dname = NAMES[name];
        let action = Action::Link {
            from: p,
            to: format!("{dpath}/{dname}"),
        };
        if self.dir(dino).contains_key(dname) {
            return Some((action, done(libc::EEXIST)));
        }
        self.dir_mut(dino).insert(dname.to_string(), ino);
        if let Some(node) = self.inodes.get_mut(&ino) {
            node.nlink += 1;
        }
        self.touch(dino);
        Some((action, done(0)))
    }

    /// lstat, readlink, chmod, chown.
    fn attributes(&mut self, op: &Op) -> Option<(Action, Outcome)> {
        match *op {
            Op::Stat { path } => {
                let (path, ino) = pick(&self.paths_where(|_| true), path)?;
                Some((Action::Stat { path }, ok(Value::Stat(self.stat(ino)))))
            }
            Op::Readlink { path } => {
                let (path, ino) = pick(&self.paths_where(|_| true), path)?;
                let want = match &self.inodes[&ino].kind {
                    Kind::Symlink(t) => ok(Value::Bytes(t.clone())),
                    _ => Err(libc::EINVAL),
                };
                Some((Action::Readlink { path }, want))
            }
            Op::Chmod { path, mode } => {
                // chmod(2) follows symlinks: only other kinds are picked.
                let (path, ino) = pick(&self.paths_where(|i| !self.is_symlink(i)), path)?;
                self.inodes.get_mut(&ino)?.mode = mode & 0o7777;
                Some((Action::Chmod { path, mode }, done(0)))
            }
            Op::Chown { path, uid, gid } => {
                let (path, ino) = pick(&self.paths_where(|_| true), path)?;
                let (uid, gid) = (uid.map(|u| OWNERS[u]), gid.map(|g| OWNERS[g]));
                let kernel = self.kernel;
                let node = self.inodes.get_mut(&ino)?;
                let changes =
                    uid.is_some_and(|u| u != node.uid) || gid.is_some_and(|g| g != node.gid);
                // A new owner does not inherit set-id powers.
                if (changes || kernel) && !matches!(node.kind, Kind::Dir(_)) {
                    node.mode &= !libc::S_ISUID;
                    if node.mode & 0o010 != 0 {
                        node.mode &= !libc::S_ISGID;
                    }
                }
                node.uid = uid.unwrap_or(node.uid);
                node.gid = gid.unwrap_or(node.gid);
                Some((Action::Chown { path, uid, gid }, done(0)))
            }
            _ => unreachable!("not an attribute operation"),
        }
    }

    fn utimens(
        &mut self,
        path: usize,
        atime: SetTime,
        mtime: SetTime,
    ) -> Option<(Action, Outcome)> {
        let (path, ino) = pick(&self.paths_where(|_| true), path)?;
        let node = self.inodes.get_mut(&ino)?;
        let set = |known: &mut Option<(i64, u32)>, t: SetTime| match t {
            SetTime::Omit => {}
            SetTime::Now => *known = None,
            SetTime::At(s, n) => *known = Some((s, n)),
        };
        set(&mut node.atime, atime);
        set(&mut node.mtime, mtime);
        Some((Action::Utimens { path, atime, mtime }, done(0)))
    }

    /// Extended attributes, of files and directories (user.* attributes
    /// are not allowed on symlinks by Linux).
    fn xattr(&mut self, op: &Op) -> Option<(Action, Outcome)> {
        let (Op::SetXattr { path, .. }
        | Op::GetXattr { path, .. }
        | Op::ListXattr { path }
        | Op::RemoveXattr { path, .. }) = *op
        else {
            unreachable!("not an xattr operation")
        };
        let (path, ino) = pick(&self.paths_where(|i| !self.is_symlink(i)), path)?;
        let xattrs = &mut self.inodes.get_mut(&ino)?.xattrs;
        let key = |n: usize| XATTR_NAMES[n].as_bytes().to_vec();
        let (action, want) = match *op {
            Op::SetXattr {
                name,
                len,
                seed,
                mode,
                ..
            } => {
                let value = content(len, seed);
                let exists = xattrs.contains_key(&key(name));
                let want = match (mode, exists) {
                    (XattrMode::Create, true) => libc::EEXIST,
                    (XattrMode::Replace, false) => libc::ENODATA,
                    _ => {
                        xattrs.insert(key(name), value.clone());
                        0
                    }
                };
                let name = XATTR_NAMES[name].to_string();
                (
                    Action::SetXattr {
                        path,
                        name,
                        value,
                        mode,
                    },
                    done(want),
                )
            }
            Op::GetXattr { name, .. } => {
                let want = xattrs.get(&key(name)).cloned().map(Value::Bytes);
                let name = XATTR_NAMES[name].to_string();
                (Action::GetXattr { path, name }, want.ok_or(libc::ENODATA))
            }
            Op::ListXattr { .. } => {
                let names = xattrs.keys().cloned().collect();
                (Action::ListXattr { path }, ok(Value::Names(names)))
            }
            Op::RemoveXattr { name, .. } => {
                let want = if xattrs.remove(&key(name)).is_some() {
                    0
                } else {
                    libc::ENODATA
                };
                let name = XATTR_NAMES[name].to_string();
                (Action::RemoveXattr { path, name }, done(want))
            }
            _ => unreachable!(),
        };
        Some((action, want))
    }

    /// Open handles: a file stays readable and writable through one after
    /// its last name is gone, and is deleted when the last is released.
    fn handle(&mut self, op: &Op) -> Option<(Action, Outcome)> {
        if let Op::Open { file } = *op {
            let (path, ino) = pick(&self.files(), file)?;
            self.handles.push(ino);
            return Some((Action::Open { path }, done(0)));
        }
        let (Op::HandleWrite { handle, .. } | Op::HandleRead { handle } | Op::Release { handle }) =
            *op
        else {
            unreachable!("not a handle operation")
        };
        let handle = handle % self.handles.len().max(1);
        let ino = *self.handles.get(handle)?;
        match *op {
            Op::HandleWrite {
                offset, len, seed, ..
            } => {
                let bytes = content(len, seed);
                let want = self.write(ino, offset, &bytes);
                Some((
                    Action::HandleWrite {
                        handle,
                        offset,
                        bytes,
                    },
                    want,
                ))
            }
            Op::HandleRead { .. } => {
                let Kind::File(data) = &self.inodes[&ino].kind else {
                    unreachable!("handles are of regular files")
                };
                Some((
                    Action::HandleRead { handle },
                    ok(Value::Bytes(data.clone())),
                ))
            }
            _ => {
                self.handles.remove(handle);
                let orphan = self.inodes[&ino].nlink == 0;
                if orphan && !self.handles.contains(&ino) {
                    self.inodes.remove(&ino);
                }
                Some((Action::Release { handle }, done(0)))
            }
        }
    }
}
