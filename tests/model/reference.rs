//! The reference model's state: a tree of inodes with plain byte vectors
//! for contents, their attributes and extended attributes, and the open
//! handles (which keep an unlinked file alive); and the snapshot of a whole
//! tree that targets are compared with.

use super::common::{Content, Dump, Node};
use super::ops::Stat;
use std::collections::{BTreeMap, HashMap};

pub const MROOT: u64 = 0;

/// Everything about one path besides its node: attributes and xattrs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub stat: Stat,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// A whole tree as seen from its root, and how many inodes the volume
/// holds (open but unlinked ones too; `None` where not known, as in views).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub tree: Dump,
    /// By path; the root is `""`.
    pub meta: BTreeMap<String, Meta>,
    pub inodes: Option<u64>,
}

impl Snapshot {
    /// This, with what `known` does not know (times, inode count) forgotten.
    pub fn masked_by(&self, known: &Snapshot) -> Snapshot {
        let meta = self
            .meta
            .iter()
            .map(|(p, m)| {
                let stat = match known.meta.get(p) {
                    Some(k) => m.stat.masked_by(&k.stat),
                    None => m.stat.clone(),
                };
                let xattrs = m.xattrs.clone();
                (p.clone(), Meta { stat, xattrs })
            })
            .collect();
        Snapshot {
            tree: self.tree.clone(),
            meta,
            inodes: self.inodes.filter(|_| known.inodes.is_some()),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Kind {
    Dir(BTreeMap<String, u64>),
    File(Vec<u8>),
    Symlink(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct MInode {
    pub kind: Kind,
    /// Links of a file or symlink (a directory's are counted from its tree).
    pub nlink: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: Option<(i64, u32)>,
    pub mtime: Option<(i64, u32)>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl MInode {
    /// A new inode owned by root with times the model does not know.
    pub fn new(kind: Kind) -> MInode {
        let mode = match kind {
            Kind::Dir(_) => 0o755,
            Kind::File(_) => 0o644,
            Kind::Symlink(_) => 0o777,
        };
        MInode {
            kind,
            nlink: 1,
            mode,
            uid: 0,
            gid: 0,
            atime: None,
            mtime: None,
            xattrs: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Model {
    pub next: u64,
    pub inodes: HashMap<u64, MInode>,
    /// Open handles, by the inode each names.
    pub handles: Vec<u64>,
    /// Whether operations come through the kernel, which decides some
    /// things before lsvfs is asked: it clears set-user-ID on every chown
    /// of a non-directory (the engine only when the owner changes), and
    /// refuses to rename over an ancestor of the source with ENOTEMPTY
    /// (the engine says EISDIR when the source is a file).
    pub kernel: bool,
}

impl Model {
    pub fn new(kernel: bool) -> Self {
        let mut m = Model {
            next: 1,
            inodes: HashMap::new(),
            handles: Vec::new(),
            kernel,
        };
        m.inodes
            .insert(MROOT, MInode::new(Kind::Dir(BTreeMap::new())));
        m
    }

    pub fn dir(&self, ino: u64) -> &BTreeMap<String, u64> {
        match &self.inodes[&ino].kind {
            Kind::Dir(d) => d,
            _ => unreachable!(),
        }
    }

    pub fn dir_mut(&mut self, ino: u64) -> &mut BTreeMap<String, u64> {
        match self.inodes.get_mut(&ino).map(|i| &mut i.kind) {
            Some(Kind::Dir(d)) => d,
            _ => unreachable!(),
        }
    }

    pub fn is_dir(&self, ino: u64) -> bool {
        matches!(self.inodes[&ino].kind, Kind::Dir(_))
    }

    pub fn is_file(&self, ino: u64) -> bool {
        matches!(self.inodes[&ino].kind, Kind::File(_))
    }

    pub fn is_symlink(&self, ino: u64) -> bool {
        matches!(self.inodes[&ino].kind, Kind::Symlink(_))
    }

    /// Every path with its parent, name and inode, in path order.
    pub fn paths(&self) -> Vec<(String, u64, String, u64)> {
        let mut out = Vec::new();
        let mut stack = vec![(MROOT, String::new())];
        while let Some((dir, path)) = stack.pop() {
            for (name, &ino) in self.dir(dir) {
                let p = format!("{path}/{name}");
                if self.is_dir(ino) {
                    stack.push((ino, p.clone()));
                }
                out.push((p, dir, name.clone(), ino));
            }
        }
        out.sort();
        out
    }

    /// The paths (with the root, `""`) whose inodes satisfy `keep`.
    pub fn paths_where(&self, keep: impl Fn(u64) -> bool) -> Vec<(String, u64)> {
        let root = (String::new(), MROOT);
        std::iter::once(root)
            .chain(self.paths().into_iter().map(|(p, _, _, i)| (p, i)))
            .filter(|(_, i)| keep(*i))
            .collect()
    }

    pub fn dirs(&self) -> Vec<(String, u64)> {
        self.paths_where(|i| self.is_dir(i))
    }

    /// Regular files.
    pub fn files(&self) -> Vec<(String, u64)> {
        self.paths_where(|i| self.is_file(i))
    }

    pub fn is_ancestor(&self, anc: u64, mut dir: u64) -> bool {
        let parents: HashMap<u64, u64> = self
            .paths()
            .into_iter()
            .filter(|(_, _, _, i)| self.is_dir(*i))
            .map(|(_, parent, _, i)| (i, parent))
            .collect();
        loop {
            if dir == anc {
                return true;
            }
            if dir == MROOT {
                return false;
            }
            dir = parents[&dir];
        }
    }

    /// Removes one link to a file or symlink; the last one deletes it
    /// unless a handle holds it open.
    pub fn drop_link(&mut self, ino: u64) {
        let open = self.handles.contains(&ino);
        match self.inodes.get_mut(&ino) {
            Some(i) if !matches!(i.kind, Kind::Dir(_)) && (i.nlink > 1 || open) => i.nlink -= 1,
            _ => {
                self.inodes.remove(&ino);
            }
        }
    }

    /// Closes every handle, deleting the files only they kept (as a reopen
    /// or a crash does).
    pub fn closed(&self) -> Model {
        let mut m = self.clone();
        m.handles.clear();
        m.inodes
            .retain(|_, i| matches!(i.kind, Kind::Dir(_)) || i.nlink > 0);
        m
    }

    pub fn stat(&self, ino: u64) -> Stat {
        let i = &self.inodes[&ino];
        let (kind, nlink, size) = match &i.kind {
            Kind::Dir(d) => {
                let subdirs = d.values().filter(|&&c| self.is_dir(c)).count();
                ('d', 2 + subdirs as u32, 0)
            }
            Kind::File(data) => ('f', i.nlink, data.len() as u64),
            Kind::Symlink(t) => ('l', i.nlink, t.len() as u64),
        };
        Stat {
            kind,
            mode: i.mode,
            uid: i.uid,
            gid: i.gid,
            nlink,
            size,
            atime: i.atime,
            mtime: i.mtime,
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut tree = Dump::new();
        let mut first: HashMap<u64, String> = HashMap::new();
        let all = self.paths_where(|_| true);
        for (p, ino) in &all {
            first.entry(*ino).or_insert(p.clone());
        }
        let mut meta = BTreeMap::new();
        for (p, ino) in all {
            let stat = self.stat(ino);
            let i = &self.inodes[&ino];
            let node = match &i.kind {
                Kind::Dir(_) => Node::Dir { nlink: stat.nlink },
                Kind::File(data) => Node::File {
                    content: Content(data.clone()),
                    nlink: i.nlink,
                    first_path: first[&ino].clone(),
                },
                Kind::Symlink(target) => Node::Symlink {
                    target: target.clone(),
                },
            };
            if !p.is_empty() {
                tree.insert(p.clone(), node);
            }
            let xattrs = i.xattrs.clone();
            meta.insert(p, Meta { stat, xattrs });
        }
        let inodes = Some(self.inodes.len() as u64);
        Snapshot { tree, meta, inodes }
    }
}
