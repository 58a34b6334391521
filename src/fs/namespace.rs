//! Names: creating, linking, removing and renaming directory entries, and
//! keeping files that are unlinked while open (orphans) until their last
//! close.

use super::*;
use crate::index::DirEntry;

use crate::format::ORPHANS_INO as ORPHANS;

fn orphan_name(ino: u64) -> Vec<u8> {
    ino.to_string().into_bytes()
}

/// What `rename` does when the target exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RenameMode {
    /// Replace a target of a compatible kind.
    #[default]
    Replace,
    /// Fail with EEXIST if the target exists (RENAME_NOREPLACE).
    NoReplace,
    /// Swap source and target, which must both exist (RENAME_EXCHANGE).
    Exchange,
}

impl RenameMode {
    /// The mode renameat2(2)'s `flags` ask for; both flags or others: EINVAL.
    pub fn from_flags(flags: u32) -> FsResult<RenameMode> {
        match flags {
            0 => Ok(RenameMode::Replace),
            libc::RENAME_NOREPLACE => Ok(RenameMode::NoReplace),
            libc::RENAME_EXCHANGE => Ok(RenameMode::Exchange),
            _ => Err(FsError::Invalid("rename flags")),
        }
    }
}

/// The kind of file a mknod(2) `mode` names (no type bits: a regular file).
pub fn kind_of_mode(mode: u32) -> FsResult<FileKind> {
    Ok(match mode & libc::S_IFMT {
        libc::S_IFREG | 0 => FileKind::Regular,
        libc::S_IFDIR => FileKind::Directory,
        libc::S_IFLNK => FileKind::Symlink,
        libc::S_IFIFO => FileKind::Fifo,
        libc::S_IFSOCK => FileKind::Socket,
        libc::S_IFCHR => FileKind::CharDevice,
        libc::S_IFBLK => FileKind::BlockDevice,
        _ => return Err(FsError::Invalid("file type")),
    })
}

impl Fs {
    /// Counts an open handle on `ino`.
    pub fn open(&self, ino: u64) -> FsResult<InodeAttrs> {
        let _g = self.lock_inodes(&[ino]);
        let attrs = self.getattr(ino)?;
        *lock(&self.opens).entry(ino).or_insert(0) += 1;
        Ok(attrs)
    }

    /// Drops an open handle; the last one of an orphan deletes it.
    pub fn release(&self, ino: u64) -> FsResult<()> {
        let _ns = lock(&self.namespace);
        let _g = self.lock_inodes(&[ino]);
        {
            let mut opens = lock(&self.opens);
            match opens.get_mut(&ino) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    return Ok(());
                }
                Some(_) => {
                    opens.remove(&ino);
                }
                None => return Ok(()),
            }
        }
        let name = orphan_name(ino);
        if self.volume.tree().lookup(ORPHANS, &name).is_some() {
            if let Ok(attrs) = self.getattr(ino) {
                self.remember_deleted(ino, attrs);
            }
            self.volume.commit(vec![
                Record::DirentDelete {
                    parent: ORPHANS,
                    name,
                },
                Record::InodeDelete { ino },
            ])?;
        }
        Ok(())
    }

    /// Deletes the orphans a crash left behind.
    pub(super) fn reap_orphans(&self) -> FsResult<()> {
        for (name, e) in self.volume.tree().list_dir(ORPHANS, None) {
            self.volume.commit(vec![
                Record::DirentDelete {
                    parent: ORPHANS,
                    name,
                },
                Record::InodeDelete { ino: e.child },
            ])?;
        }
        Ok(())
    }

    /// Removes one link to `ino` (which has `attrs`): decrements nlink, or
    /// deletes the inode, or keeps it as an orphan while it is open.
    fn unlink_records(&self, ino: u64, mut attrs: InodeAttrs, now: Timestamp) -> Vec<Record> {
        if attrs.kind != FileKind::Directory && attrs.nlink > 1 {
            attrs.nlink -= 1;
            attrs.ctime = now;
            return vec![Record::Inode { ino, attrs }];
        }
        if attrs.kind == FileKind::Directory || !lock(&self.opens).contains_key(&ino) {
            self.remember_deleted(ino, attrs);
            return vec![Record::InodeDelete { ino }];
        }
        attrs.nlink = 0;
        attrs.ctime = now;
        vec![
            Record::Dirent {
                parent: ORPHANS,
                name: orphan_name(ino),
                child: ino,
                kind: attrs.kind,
            },
            Record::Inode { ino, attrs },
        ]
    }

    /// Creates an empty regular file.
    pub fn create_file(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        owner: Owner,
    ) -> FsResult<(u64, InodeAttrs)> {
        self.mknod(parent, name, FileKind::Regular, mode, owner, 0)
    }

    /// Creates a file, directory, FIFO, socket or device node.
    pub fn mknod(
        &self,
        parent: u64,
        name: &[u8],
        kind: FileKind,
        mode: u32,
        owner: Owner,
        rdev: u32,
    ) -> FsResult<(u64, InodeAttrs)> {
        self.create_inode(parent, name, owner, |a| {
            *a = InodeAttrs::new(kind, mode, owner.uid, owner.gid);
            a.rdev = rdev;
        })
    }

    pub fn symlink(
        &self,
        parent: u64,
        name: &[u8],
        target: &[u8],
        owner: Owner,
    ) -> FsResult<(u64, InodeAttrs)> {
        if target.is_empty() || target.len() > 4095 {
            return Err(FsError::Invalid("symlink target length"));
        }
        self.create_inode(parent, name, owner, |a| {
            *a = InodeAttrs::new(FileKind::Symlink, 0o777, owner.uid, owner.gid);
            a.size = target.len() as u64;
            a.target = target.to_vec();
        })
    }

    fn create_inode(
        &self,
        parent: u64,
        name: &[u8],
        owner: Owner,
        init: impl FnOnce(&mut InodeAttrs),
    ) -> FsResult<(u64, InodeAttrs)> {
        check_name(name)?;
        let _ns = lock(&self.namespace);
        let _g = self.lock_inodes(&[parent]);
        let mut pattrs = self.dir_attrs(parent)?;
        if self.volume.tree().lookup(parent, name).is_some() {
            return Err(FsError::Exists);
        }
        let ino = self.volume.allocate_ino();
        let mut attrs = InodeAttrs::new(FileKind::Regular, 0, owner.uid, owner.gid);
        init(&mut attrs);
        if attrs.kind == FileKind::Directory {
            attrs.parent = parent;
            pattrs.nlink += 1;
        }
        pattrs.mtime = attrs.ctime;
        pattrs.ctime = attrs.ctime;
        self.volume.commit(vec![
            Record::Inode {
                ino,
                attrs: attrs.clone(),
            },
            Record::Dirent {
                parent,
                name: name.to_vec(),
                child: ino,
                kind: attrs.kind,
            },
            Record::Inode {
                ino: parent,
                attrs: pattrs,
            },
        ])?;
        Ok((ino, attrs))
    }

    pub fn link(&self, ino: u64, parent: u64, name: &[u8]) -> FsResult<InodeAttrs> {
        check_name(name)?;
        let _ns = lock(&self.namespace);
        let _g = self.lock_inodes(&[ino, parent]);
        let mut attrs = self.getattr(ino)?;
        if attrs.kind == FileKind::Directory {
            return Err(FsError::NotPermitted("hard link to a directory"));
        }
        let mut pattrs = self.dir_attrs(parent)?;
        if self.volume.tree().lookup(parent, name).is_some() {
            return Err(FsError::Exists);
        }
        let now = Timestamp::now();
        attrs.nlink += 1;
        attrs.ctime = now;
        pattrs.mtime = now;
        pattrs.ctime = now;
        self.volume.commit(vec![
            Record::Dirent {
                parent,
                name: name.to_vec(),
                child: ino,
                kind: attrs.kind,
            },
            Record::Inode {
                ino,
                attrs: attrs.clone(),
            },
            Record::Inode {
                ino: parent,
                attrs: pattrs,
            },
        ])?;
        Ok(attrs)
    }

    pub fn unlink(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        self.remove(parent, name, false)
    }

    pub fn rmdir(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        self.remove(parent, name, true)
    }

    fn remove(&self, parent: u64, name: &[u8], dir: bool) -> FsResult<()> {
        check_name(name)?;
        let _ns = lock(&self.namespace);
        let mut pattrs = self.dir_attrs(parent)?;
        let entry = self
            .volume
            .tree()
            .lookup(parent, name)
            .ok_or(FsError::NotFound)?;
        let _g = self.lock_inodes(&[parent, entry.child]);
        let attrs = self.getattr(entry.child)?;
        let is_dir = attrs.kind == FileKind::Directory;
        match (dir, is_dir) {
            (true, false) => return Err(FsError::NotDir),
            (false, true) => return Err(FsError::IsDir),
            (true, true) if !self.volume.tree().dir_is_empty(entry.child) => {
                return Err(FsError::NotEmpty);
            }
            _ => {}
        }
        let now = Timestamp::now();
        pattrs.mtime = now;
        pattrs.ctime = now;
        let mut records = vec![Record::DirentDelete {
            parent,
            name: name.to_vec(),
        }];
        if is_dir {
            pattrs.nlink -= 1;
        }
        records.extend(self.unlink_records(entry.child, attrs, now));
        records.push(Record::Inode {
            ino: parent,
            attrs: pattrs,
        });
        self.volume.commit(records)?;
        Ok(())
    }

    /// Whether directory `ancestor` is `dir` or one of its ancestors.
    fn is_ancestor(&self, ancestor: u64, mut dir: u64) -> FsResult<bool> {
        loop {
            if dir == ancestor {
                return Ok(true);
            }
            if dir == ROOT_INO {
                return Ok(false);
            }
            dir = self.getattr(dir)?.parent;
        }
    }

    /// Renames `parent/name` to `new_parent/new_name`; `mode` says what
    /// happens to an existing target.
    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        new_parent: u64,
        new_name: &[u8],
        mode: RenameMode,
    ) -> FsResult<()> {
        check_name(name)?;
        check_name(new_name)?;
        let _ns = lock(&self.namespace);
        self.dir_attrs(parent)?;
        self.dir_attrs(new_parent)?;
        let tree = self.volume.tree();
        let src = tree.lookup(parent, name).ok_or(FsError::NotFound)?;
        let dst = tree.lookup(new_parent, new_name);
        match (mode, dst) {
            (RenameMode::NoReplace, Some(_)) => return Err(FsError::Exists),
            (RenameMode::Exchange, None) => return Err(FsError::NotFound),
            (RenameMode::Exchange, Some(d)) => {
                return self.exchange(parent, name, src, new_parent, new_name, d);
            }
            _ => {}
        }
        if dst.is_some_and(|d| d.child == src.child) {
            return Ok(());
        }
        let src_is_dir = src.kind == FileKind::Directory;
        if src_is_dir && self.is_ancestor(src.child, new_parent)? {
            return Err(FsError::Invalid("cannot move a directory into itself"));
        }
        let mut inos = vec![parent, new_parent, src.child];
        inos.extend(dst.map(|d| d.child));
        let _g = self.lock_inodes(&inos);
        let now = Timestamp::now();
        let mut records = Vec::new();
        if let Some(d) = dst {
            let dst_is_dir = d.kind == FileKind::Directory;
            match (src_is_dir, dst_is_dir) {
                (true, false) => return Err(FsError::NotDir),
                (false, true) => return Err(FsError::IsDir),
                (true, true) if !tree.dir_is_empty(d.child) => return Err(FsError::NotEmpty),
                _ => {}
            }
            let dattrs = self.getattr(d.child)?;
            records.extend(self.unlink_records(d.child, dattrs, now));
        }
        let mut sattrs = self.getattr(src.child)?;
        sattrs.ctime = now;
        if src_is_dir {
            sattrs.parent = new_parent;
        }
        records.push(Record::DirentDelete {
            parent,
            name: name.to_vec(),
        });
        records.push(Record::Dirent {
            parent: new_parent,
            name: new_name.to_vec(),
            child: src.child,
            kind: src.kind,
        });
        records.push(Record::Inode {
            ino: src.child,
            attrs: sattrs,
        });
        // Parents last, read after the target's removal so nlink adds up.
        let replaced_dir = dst.is_some_and(|d| d.kind == FileKind::Directory);
        let moved = i64::from(src_is_dir);
        let arrived = moved - i64::from(replaced_dir);
        self.commit_with_parents(records, parent, new_parent, moved, arrived, now)
    }

    /// Commits `records`, then the parents' attributes with mtime and ctime
    /// `now`: `out_links` directory links leave `parent` and `in_links`
    /// arrive at `new_parent`, which may be the same directory.
    fn commit_with_parents(
        &self,
        mut records: Vec<Record>,
        parent: u64,
        new_parent: u64,
        out_links: i64,
        in_links: i64,
        now: Timestamp,
    ) -> FsResult<()> {
        let relink = |a: &mut InodeAttrs, by: i64| {
            a.nlink = (i64::from(a.nlink) + by) as u32;
            a.mtime = now;
            a.ctime = now;
        };
        let mut pattrs = self.getattr(parent)?;
        if parent == new_parent {
            relink(&mut pattrs, in_links - out_links);
        } else {
            let mut npattrs = self.getattr(new_parent)?;
            relink(&mut npattrs, in_links);
            relink(&mut pattrs, -out_links);
            records.push(Record::Inode {
                ino: new_parent,
                attrs: npattrs,
            });
        }
        records.push(Record::Inode {
            ino: parent,
            attrs: pattrs,
        });
        self.volume.commit(records)?;
        Ok(())
    }

    /// RENAME_EXCHANGE: the two names swap inodes. Called with the
    /// namespace lock held.
    fn exchange(
        &self,
        parent: u64,
        name: &[u8],
        a: DirEntry,
        new_parent: u64,
        new_name: &[u8],
        b: DirEntry,
    ) -> FsResult<()> {
        if a.child == b.child {
            return Ok(());
        }
        let a_dir = a.kind == FileKind::Directory;
        let b_dir = b.kind == FileKind::Directory;
        if (a_dir && self.is_ancestor(a.child, new_parent)?)
            || (b_dir && self.is_ancestor(b.child, parent)?)
        {
            return Err(FsError::Invalid("cannot move a directory into itself"));
        }
        let _g = self.lock_inodes(&[parent, new_parent, a.child, b.child]);
        let now = Timestamp::now();
        let mut records = vec![
            Record::Dirent {
                parent,
                name: name.to_vec(),
                child: b.child,
                kind: b.kind,
            },
            Record::Dirent {
                parent: new_parent,
                name: new_name.to_vec(),
                child: a.child,
                kind: a.kind,
            },
        ];
        for (entry, to) in [(a, new_parent), (b, parent)] {
            let mut attrs = self.getattr(entry.child)?;
            attrs.ctime = now;
            if attrs.kind == FileKind::Directory {
                attrs.parent = to;
            }
            records.push(Record::Inode {
                ino: entry.child,
                attrs,
            });
        }
        // A directory moving one way and not the other moves a link.
        let shift = i64::from(a_dir) - i64::from(b_dir);
        self.commit_with_parents(records, parent, new_parent, shift, shift, now)
    }
}
