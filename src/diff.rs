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
use crate::format::{FileKind, ORPHANS_INO, ROOT_INO};
use crate::index::Index;
use crate::tree::{IndexAccess, Tree};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

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
            .map(|_| old_paths.paths(ino))
            .unwrap_or_default();
        let after = new
            .as_ref()
            .map(|_| new_paths.paths(ino))
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

/// The names of every inode in one state, from its directory entries.
struct Paths {
    names: HashMap<u64, Vec<(u64, Vec<u8>)>>,
}

impl Paths {
    fn of<I: IndexAccess>(tree: &Tree<'_, I>) -> Paths {
        let mut names: HashMap<u64, Vec<(u64, Vec<u8>)>> = HashMap::new();
        tree.index.with_index(|i: &Index| {
            for (parent, name, e) in i.dirents() {
                if parent != ORPHANS_INO {
                    names
                        .entry(e.child)
                        .or_default()
                        .push((parent, name.to_vec()));
                }
            }
        });
        Paths { names }
    }

    /// Every path of `ino`, sorted.
    fn paths(&self, ino: u64) -> Vec<String> {
        let mut paths: Vec<String> = self
            .names
            .get(&ino)
            .into_iter()
            .flatten()
            .filter_map(|(parent, name)| {
                let mut path = self.dir(*parent)?;
                path.push('/');
                path.push_str(&String::from_utf8_lossy(name));
                Some(path)
            })
            .collect();
        if ino == ROOT_INO {
            paths.push("/".into());
        }
        paths.sort();
        paths
    }

    /// The path of directory `ino` ("" for the root), if it is reachable.
    fn dir(&self, ino: u64) -> Option<String> {
        let mut parts = Vec::new();
        let mut at = ino;
        while at != ROOT_INO {
            let (parent, name) = self.names.get(&at)?.first()?;
            parts.push(String::from_utf8_lossy(name).into_owned());
            at = *parent;
            if parts.len() > 4096 {
                return None;
            }
        }
        parts.reverse();
        Some(parts.iter().map(|p| format!("/{p}")).collect())
    }
}
