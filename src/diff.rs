//! `lsvfs diff`: what changed between two states of a volume, path by
//! path, from [`Compare`] (the log and the indexes): no tree is walked and
//! no unchanged file is read.
//!
//! Changes are reported per inode, at its paths: a file with a new name
//! and the same inode is renamed (a renamed directory is one entry, not
//! one per file below it); one with a new inode is created. A hard link
//! added or removed beside others is a path created or deleted.

use crate::changes::{Compare, attrs_in};
use crate::error::Result;
use crate::format::FileKind;
use crate::paths::Paths;
use crate::tree::IndexAccess;
use serde::Serialize;
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Deleted,
    Renamed,
    Created,
    Modified,
}

impl Change {
    pub fn name(self) -> &'static str {
        match self {
            Change::Deleted => "deleted",
            Change::Renamed => "renamed",
            Change::Created => "created",
            Change::Modified => "modified",
        }
    }
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub change: Change,
    /// Relative to the volume's root, starting with `/`; the new path of
    /// a rename.
    pub path: String,
    /// The old path of a rename.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub ino: u64,
    /// `file`, `dir`, `symlink`, `fifo`, `socket`, `char`, `block`.
    pub kind: &'static str,
    /// What differs of an inode in both states: its contents, its
    /// attributes (mode, owner, size, times, links), its xattrs.
    pub data: bool,
    pub attributes: bool,
    pub xattrs: bool,
}

pub fn kind_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::Regular => "file",
        FileKind::Directory => "dir",
        FileKind::Symlink => "symlink",
        FileKind::Fifo => "fifo",
        FileKind::Socket => "socket",
        FileKind::CharDevice => "char",
        FileKind::BlockDevice => "block",
    }
}

/// The changed paths from `cmp.old` to `cmp.new`, by path, deletions
/// before other changes of the same path.
pub fn diff<O: IndexAccess, N: IndexAccess>(cmp: &Compare<'_, O, N>) -> Result<Vec<Entry>> {
    let dirents = cmp.dirents();
    let mut inos: BTreeSet<u64> = cmp.inos().into_iter().collect();
    for d in &dirents {
        inos.extend(d.old.iter().chain(&d.new).map(|e| e.child));
    }
    let old_paths = Paths::of(&cmp.old);
    let new_paths = Paths::of(&cmp.new);
    let mut out = Vec::new();
    for ino in inos {
        let old = attrs_in(&cmp.old, ino)?;
        let new = attrs_in(&cmp.new, ino)?;
        let kind = match old.as_ref().or(new.as_ref()) {
            Some(a) => kind_name(a.kind),
            None => continue,
        };
        let entry = |change, path: &String| Entry {
            change,
            path: path.clone(),
            from: None,
            ino,
            kind,
            data: false,
            attributes: false,
            xattrs: false,
        };
        let before = old
            .as_ref()
            .map(|_| old_paths.text(ino))
            .unwrap_or_default();
        let after = new
            .as_ref()
            .map(|_| new_paths.text(ino))
            .unwrap_or_default();
        let (Some(a), Some(b)) = (&old, &new) else {
            let change = match old {
                Some(_) => Change::Deleted,
                None => Change::Created,
            };
            out.extend(before.iter().chain(&after).map(|p| entry(change, p)));
            continue;
        };
        // What a reader gets differs: the size, or a stored block.
        let data = a.kind == FileKind::Regular
            && (a.size != b.size || !cmp.blocks(ino, true, true)?.is_empty());
        let changed = Entry {
            data,
            attributes: a != b,
            xattrs: !cmp.xattrs(ino)?.is_empty(),
            ..entry(Change::Modified, &String::new())
        };
        let gone: Vec<&String> = before.iter().filter(|p| !after.contains(p)).collect();
        let came: Vec<&String> = after.iter().filter(|p| !before.contains(p)).collect();
        if let ([from], [to]) = (&gone[..], &came[..]) {
            out.push(Entry {
                change: Change::Renamed,
                path: (*to).clone(),
                from: Some((*from).clone()),
                ..changed.clone()
            });
        } else {
            out.extend(gone.iter().map(|p| entry(Change::Deleted, p)));
            out.extend(came.iter().map(|p| entry(Change::Created, p)));
        }
        if changed.data || changed.attributes || changed.xattrs {
            for path in after.iter().filter(|p| before.contains(p)) {
                out.push(Entry {
                    path: path.clone(),
                    ..changed.clone()
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.path, a.change).cmp(&(&b.path, b.change)));
    Ok(out)
}
