//! `lsvfs export`: a view as a POSIX pax archive (see [`pax`]) that GNU
//! tar and bsdtar extract, written in the order of the volume's own file
//! ids (inode numbers), which keeps a sequential medium's order stable
//! from one backup to the next.
//!
//! Each inode is one member at its first path (directories, regular files
//! — sparse ones as GNU sparse 1.0 members, only their stored regions —,
//! symlinks, devices, FIFOs; sockets are skipped, as tar does), with
//! owner, mode, nanosecond times and xattrs; its other names follow as
//! hard links to it. The root is `./`.
//!
//! An incremental export (`since`, an older sync point) holds only what
//! [`crate::changes`] finds changed between the two (from the log and the
//! indexes; unchanged files are neither visited nor read): the inodes
//! created or changed, and every inode under a renamed directory (tar
//! cannot move one). Its first member, [`DELETED`], lists the paths to
//! remove before extracting it (NUL-separated): names deleted, renamed
//! away or now naming another file. Applied in order — full export, then
//! each incremental: remove its list, then extract it — they make the
//! newest view.

pub mod pax;

use crate::changes::{Compare, Touched, attrs_in};
use crate::diff::{Change, diff};
use crate::error::{Error, Result};
use crate::format::{FileKind, InodeAttrs, ROOT_INO};
use crate::index::Index;
use crate::paths::Paths;
use crate::tree::Tree;
use crate::view::View;
use pax::{Header, Type, Writer};
use serde::Serialize;
use std::collections::BTreeSet;
use std::io::Write;

/// The first member of an incremental export: the paths to remove.
pub const DELETED: &str = ".lsvfs-deleted";

/// Bytes read from a file per step.
const CHUNK: u64 = 1 << 20;

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Members for inodes (hard links not counted).
    pub inodes: u64,
    pub links: u64,
    /// File bytes stored (holes not counted).
    pub data_bytes: u64,
    /// Paths an incremental export lists for removal.
    pub deleted: u64,
    /// Sockets, which tar cannot hold.
    pub skipped: u64,
    /// Bytes of the archive.
    pub archive_bytes: u64,
}

/// Writes `view` to `out` as a pax archive; with `since` (an older sync
/// point's view of the same volume) only what changed after it.
pub fn export<W: Write>(view: &View, since: Option<&View>, out: W) -> Result<(Report, W)> {
    let tree = view.tree();
    let paths = Paths::of(&tree);
    let mut x = Exporter {
        tree: &tree,
        paths: &paths,
        w: Writer::new(out),
        report: Report::default(),
    };
    let inos = match since {
        None => view.index().inos(),
        Some(old) => x.changes(old, view)?,
    };
    for ino in inos {
        x.inode(ino)?;
    }
    let mut report = x.report;
    let (out, written) = x.w.finish().map_err(write_error)?;
    report.archive_bytes = written;
    Ok((report, out))
}

fn write_error(e: std::io::Error) -> Error {
    Error::Io {
        context: "cannot write the archive".into(),
        source: e,
    }
}

struct Exporter<'a, W: Write> {
    tree: &'a Tree<'a, Index>,
    paths: &'a Paths,
    w: Writer<W>,
    report: Report,
}

/// A path as a member name: relative, the root `./`, directories with a
/// trailing slash.
fn member(path: &[u8], dir: bool) -> Vec<u8> {
    let mut name = path.strip_prefix(b"/").unwrap_or(path).to_vec();
    if name.is_empty() {
        return b"./".to_vec();
    }
    if dir {
        name.push(b'/');
    }
    name
}

fn kind(attrs: &InodeAttrs) -> Option<Type> {
    Some(match attrs.kind {
        FileKind::Regular => Type::Regular,
        FileKind::Directory => Type::Directory,
        FileKind::Symlink => Type::Symlink,
        FileKind::Fifo => Type::Fifo,
        FileKind::CharDevice => Type::CharDevice,
        FileKind::BlockDevice => Type::BlockDevice,
        FileKind::Socket => return None,
    })
}

impl<W: Write> Exporter<'_, W> {
    /// The inodes an incremental export holds, ascending, after writing
    /// the list of paths to remove.
    fn changes(&mut self, old: &View, new: &View) -> Result<Vec<u64>> {
        if old.point.lsn > new.point.lsn {
            return Err(Error::Invalid(format!(
                "--since {} is newer than {}",
                old.point.info.id, new.point.info.id
            )));
        }
        let touched = Touched::between(new.segments(), old.point.lsn, new.point.lsn)?;
        let cmp = Compare {
            old: old.tree(),
            new: new.tree(),
            touched: &touched,
        };
        let mut gone: BTreeSet<Vec<u8>> = BTreeSet::new();
        let mut inos = BTreeSet::new();
        let mut moved = Vec::new();
        for e in diff(&cmp)? {
            match e.change {
                Change::Deleted => {
                    gone.insert(e.path.into_bytes());
                }
                Change::Renamed => {
                    gone.extend(e.from.map(String::into_bytes));
                    inos.insert(e.ino);
                    if e.kind == "dir" {
                        moved.push(e.ino);
                    }
                }
                Change::Created | Change::Modified => {
                    inos.insert(e.ino);
                }
            }
        }
        // Everything under a renamed directory, which tar cannot move.
        while let Some(dir) = moved.pop() {
            for (_, entry) in self.tree.list_dir(dir, None) {
                if inos.insert(entry.child) && entry.kind == FileKind::Directory {
                    moved.push(entry.child);
                }
            }
        }
        // Sorted, a path below one already listed comes right after it:
        // removing the directory removes it.
        let mut list = Vec::new();
        let mut above: Option<Vec<u8>> = None;
        for path in &gone {
            if above
                .as_ref()
                .is_some_and(|a| path.starts_with(a) && path.get(a.len()) == Some(&b'/'))
            {
                continue;
            }
            list.extend_from_slice(&member(path, false));
            list.push(0);
            self.report.deleted += 1;
            above = Some(path.clone());
        }
        let root = attrs_in(self.tree, ROOT_INO)?
            .unwrap_or_else(|| InodeAttrs::new(FileKind::Directory, 0o755, 0, 0));
        let header = Header {
            path: DELETED.as_bytes().to_vec(),
            kind: Type::Regular,
            mode: 0o600,
            size: list.len() as u64,
            ..self.header_of(&root)
        };
        self.w.header(&header).map_err(write_error)?;
        self.w.data(&list).map_err(write_error)?;
        self.w.pad().map_err(write_error)?;
        Ok(inos.into_iter().collect())
    }

    fn header_of(&self, a: &InodeAttrs) -> Header {
        let t = |t: crate::format::Timestamp| (t.sec, t.nsec);
        Header {
            path: Vec::new(),
            kind: Type::Regular,
            mode: a.mode,
            uid: a.uid,
            gid: a.gid,
            size: 0,
            mtime: t(a.mtime),
            atime: t(a.atime),
            ctime: t(a.ctime),
            link: Vec::new(),
            dev: (libc::major(a.rdev as u64), libc::minor(a.rdev as u64)),
            xattrs: Vec::new(),
            sparse: None,
        }
    }

    /// One inode: its member at its first path, then hard links.
    fn inode(&mut self, ino: u64) -> Result<()> {
        let Some(attrs) = attrs_in(self.tree, ino)? else {
            return Ok(());
        };
        let names = self.paths.paths(ino);
        let Some(first) = names.first() else {
            return Ok(());
        };
        let Some(kind) = kind(&attrs) else {
            log::warn!(
                "{}: a socket; tar cannot hold it, skipped",
                String::from_utf8_lossy(first)
            );
            self.report.skipped += 1;
            return Ok(());
        };
        let dir = kind == Type::Directory;
        let mut h = Header {
            path: member(first, dir),
            kind,
            ..self.header_of(&attrs)
        };
        for name in self.tree.xattr_names(ino) {
            if let Some(value) = self.tree.getxattr(ino, &name)? {
                h.xattrs.push((name, value));
            }
        }
        self.report.inodes += 1;
        match attrs.kind {
            FileKind::Symlink => h.link = attrs.target.clone(),
            FileKind::Regular => return self.file(ino, &attrs, h, &names),
            _ => {}
        }
        self.w.header(&h).map_err(write_error)?;
        self.links(&h, &names)
    }

    /// The other names of a file, as hard links to its member.
    fn links(&mut self, h: &Header, names: &[Vec<u8>]) -> Result<()> {
        for name in names.iter().skip(1) {
            let link = Header {
                path: member(name, false),
                kind: Type::HardLink,
                link: h.path.clone(),
                size: 0,
                sparse: None,
                xattrs: Vec::new(),
                ..h.clone()
            };
            self.report.links += 1;
            self.w.header(&link).map_err(write_error)?;
        }
        Ok(())
    }

    /// A regular file: its stored regions (a sparse member if they do not
    /// cover it), read a chunk at a time.
    fn file(&mut self, ino: u64, a: &InodeAttrs, mut h: Header, names: &[Vec<u8>]) -> Result<()> {
        let bs = self.tree.index.block_size() as u64;
        let mut regions: Vec<(u64, u64)> = Vec::new();
        for run in self.tree.index.block_runs(ino, 0, u64::MAX) {
            let start = run.block * bs;
            let end = ((run.block + run.count) * bs).min(a.size);
            if start >= end {
                continue;
            }
            match regions.last_mut() {
                Some(r) if r.0 + r.1 == start => r.1 = end - r.0,
                _ => regions.push((start, end - start)),
            }
        }
        let stored: u64 = regions.iter().map(|r| r.1).sum();
        h.size = stored;
        if stored < a.size {
            let mut map = regions.clone();
            if map.last().is_none_or(|r| r.0 + r.1 < a.size) {
                map.push((a.size, 0));
            }
            h.sparse = Some((a.size, map));
        }
        self.w.header(&h).map_err(write_error)?;
        for (start, len) in regions {
            let mut at = start;
            while at < start + len {
                let n = CHUNK.min(start + len - at);
                let bytes = self.tree.read(ino, at, n as usize, a.size)?;
                self.w.data(&bytes).map_err(write_error)?;
                at += n;
            }
        }
        self.report.data_bytes += stored;
        self.w.pad().map_err(write_error)?;
        self.links(&h, names)
    }
}
