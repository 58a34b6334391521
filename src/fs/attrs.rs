//! Attributes: setattr (mode, owner, size, times), extended attributes and
//! access checks.

use super::*;
use crate::format::record::XATTR_VALUE_MAX;

/// The changes of one setattr; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttrs {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<Timestamp>,
    pub mtime: Option<Timestamp>,
}

/// How setxattr treats an existing attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XattrMode {
    /// Create or replace.
    Any,
    /// Fail with EEXIST if it exists (XATTR_CREATE).
    Create,
    /// Fail with ENODATA if it does not (XATTR_REPLACE).
    Replace,
}

impl XattrMode {
    /// The mode setxattr(2)'s `flags` ask for; both flags or others: EINVAL.
    pub fn from_flags(flags: i32) -> FsResult<XattrMode> {
        match flags {
            0 => Ok(XattrMode::Any),
            libc::XATTR_CREATE => Ok(XattrMode::Create),
            libc::XATTR_REPLACE => Ok(XattrMode::Replace),
            _ => Err(FsError::Invalid("setxattr flags")),
        }
    }
}

impl Fs {
    /// Applies `set` as one atomic change; ctime becomes now, and mtime too
    /// when the size changes and no mtime is given.
    pub fn setattr(&self, ino: u64, set: &SetAttrs) -> FsResult<InodeAttrs> {
        let _g = self.lock_inodes(&[ino]);
        let now = Timestamp::now();
        let mut attrs = match self.getattr(ino) {
            // The kernel's times for a file deleted since: answered, kept
            // nowhere (nobody can stat it any more).
            Err(FsError::NotFound) => {
                let mut gone = self.deleted_attrs(ino).ok_or(FsError::NotFound)?;
                gone.atime = set.atime.unwrap_or(gone.atime);
                gone.mtime = set.mtime.unwrap_or(gone.mtime);
                gone.ctime = now;
                return Ok(gone);
            }
            other => other?,
        };
        let mut records = Vec::new();
        if let Some(size) = set.size {
            match attrs.kind {
                FileKind::Regular => {}
                FileKind::Directory => return Err(FsError::IsDir),
                _ => return Err(FsError::Invalid("size of a special file")),
            }
            records = self.truncate_records(ino, &attrs, size)?;
            attrs.size = size;
            attrs.mtime = now;
        }
        if let Some(mode) = set.mode {
            attrs.mode = mode & 0o7777;
        }
        let owner_changes =
            set.uid.is_some_and(|u| u != attrs.uid) || set.gid.is_some_and(|g| g != attrs.gid);
        if owner_changes && attrs.kind != FileKind::Directory {
            // As Linux does: a new owner does not inherit set-id powers.
            attrs.mode &= !libc::S_ISUID;
            if attrs.mode & 0o010 != 0 {
                attrs.mode &= !libc::S_ISGID;
            }
        }
        attrs.uid = set.uid.unwrap_or(attrs.uid);
        attrs.gid = set.gid.unwrap_or(attrs.gid);
        attrs.atime = set.atime.unwrap_or(attrs.atime);
        attrs.mtime = set.mtime.unwrap_or(attrs.mtime);
        attrs.ctime = now;
        records.push(Record::Inode {
            ino,
            attrs: attrs.clone(),
        });
        self.volume.commit(records)?;
        Ok(attrs)
    }

    pub fn getxattr(&self, ino: u64, name: &[u8]) -> FsResult<Vec<u8>> {
        self.queries().getxattr(ino, name)
    }

    pub fn listxattr(&self, ino: u64) -> FsResult<Vec<Vec<u8>>> {
        self.queries().listxattr(ino)
    }

    pub fn setxattr(&self, ino: u64, name: &[u8], value: &[u8], mode: XattrMode) -> FsResult<()> {
        if name.is_empty() || name.len() > NAME_MAX {
            return Err(FsError::Invalid("attribute name"));
        }
        if value.len() > XATTR_VALUE_MAX {
            return Err(FsError::AttrTooBig);
        }
        // POSIX ACLs would have to change the mode and permission checks;
        // refusing them makes cp, tar and rsync fall back to chmod.
        if name.starts_with(b"system.posix_acl_") {
            return Err(FsError::Unsupported("POSIX ACLs"));
        }
        let _g = self.lock_inodes(&[ino]);
        let mut attrs = self.getattr(ino)?;
        let exists = self
            .volume
            .tree()
            .xattr_names(ino)
            .iter()
            .any(|n| n == name);
        match (mode, exists) {
            (XattrMode::Create, true) => return Err(FsError::Exists),
            (XattrMode::Replace, false) => return Err(FsError::NoAttr),
            _ => {}
        }
        attrs.ctime = Timestamp::now();
        self.volume.commit(vec![
            Record::Xattr {
                ino,
                name: name.to_vec(),
                value: value.to_vec(),
            },
            Record::Inode { ino, attrs },
        ])?;
        Ok(())
    }

    pub fn removexattr(&self, ino: u64, name: &[u8]) -> FsResult<()> {
        let _g = self.lock_inodes(&[ino]);
        let mut attrs = self.getattr(ino)?;
        if self.volume.tree().getxattr(ino, name)?.is_none() {
            return Err(FsError::NoAttr);
        }
        attrs.ctime = Timestamp::now();
        self.volume.commit(vec![
            Record::XattrDelete {
                ino,
                name: name.to_vec(),
            },
            Record::Inode { ino, attrs },
        ])?;
        Ok(())
    }

    /// access(2): whether `uid` (in `groups`) may do `mask` (R_OK, W_OK,
    /// X_OK bits; 0 only checks existence). Root may do anything but
    /// execute a file nobody may execute.
    pub fn access(&self, ino: u64, uid: u32, groups: &[u32], mask: u32) -> FsResult<()> {
        let a = self.getattr(ino)?;
        let mask = mask & 0o7;
        let granted = if uid == 0 {
            let any_x = a.kind == FileKind::Directory || a.mode & 0o111 != 0;
            0o6 | if any_x { 0o1 } else { 0 }
        } else if uid == a.uid {
            (a.mode >> 6) & 0o7
        } else if groups.contains(&a.gid) {
            (a.mode >> 3) & 0o7
        } else {
            a.mode & 0o7
        };
        if mask & !granted != 0 {
            return Err(FsError::Access);
        }
        Ok(())
    }
}
