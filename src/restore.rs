//! Restoring files and trees from a sync point into the live volume:
//! `lsvfs restore`. The bytes go from the view's records (primary storage,
//! or the archive's frames through their cache) straight into the live
//! volume's log, through [`Fs`] for its rules (names, links, times), never
//! through a mount.
//!
//! Restored files are new inodes: the old ones may still be live under
//! other names. Hard links among the restored files stay links; owners,
//! modes, times, xattrs, symlink targets, device numbers and holes are as
//! in the view. Directories that exist are kept and merged into; a file
//! that exists is replaced only when asked (`overwrite`), else nothing is
//! changed and every such path is named.

use crate::format::{FileKind, InodeAttrs, ROOT_INO};
use crate::fs::{Fs, FsError, FsResult, Owner, SetAttrs, XattrMode};
use crate::index::Index;
use crate::tree::Tree;
use crate::view::Selector;
use crate::view::View;
use serde::Serialize;
use std::collections::HashMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Options {
    /// Restore each path at DEST/PATH instead of in place.
    pub under: Option<String>,
    /// Replace files that exist at a destination.
    pub overwrite: bool,
}

/// A restore asked of a mount's daemon through `.lsvfs/restore`: one
/// JSON object written in one write; the answer, read back on the same
/// handle, is one JSON line, `{"report": ...}` or `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Request {
    /// The sync point: its id, its label, or a UTC time.
    pub at: String,
    pub paths: Vec<String>,
    #[serde(flatten)]
    pub options: Options,
}

/// What a restore wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Report {
    /// Files, symlinks and special files made (hard links count once).
    pub files: u64,
    pub links: u64,
    pub dirs: u64,
    /// Existing files replaced (with `overwrite`).
    pub replaced: u64,
    pub data_bytes: u64,
    /// The sync point restored from.
    pub sync_point: u64,
    /// Every name made or replaced, as (live directory, name): what a
    /// mount's kernel may cache wrongly (a negative or stale entry).
    #[serde(skip)]
    pub names: Vec<(u64, Vec<u8>)>,
}

/// Restores `paths` of the sync point `at` names into the live volume
/// `fs`, holding a view of it (and its lease) meanwhile.
pub fn restore_at(fs: &Fs, at: &Selector, paths: &[String], options: &Options) -> FsResult<Report> {
    let id = at.resolve(&fs.volume().sync_points()?)?.info.id;
    let view = fs.volume().view(id)?;
    restore(fs, &view, paths, options)
}

/// The parts of a path relative to the volume's root (`/a/b` or `a/b`).
fn parts(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect()
}

/// Restores `paths` (relative to the volume's root) of `view` into the
/// live volume `fs`.
pub fn restore(fs: &Fs, view: &View, paths: &[String], options: &Options) -> FsResult<Report> {
    let tree = view.tree();
    let mut jobs = Vec::new();
    for path in paths {
        let from = parts(path);
        if from.contains(&"..") {
            return Err(FsError::Invalid("a path to restore contains .."));
        }
        let ino = resolve(&tree, &from).ok_or_else(|| {
            FsError::Engine(crate::Error::Invalid(format!(
                "{path} is not in sync point {}",
                view.point.info.id
            )))
        })?;
        let mut to: Vec<String> = options
            .under
            .as_deref()
            .map(parts)
            .unwrap_or_default()
            .into_iter()
            .map(String::from)
            .collect();
        to.extend(from.iter().map(|p| p.to_string()));
        jobs.push((from, ino, to));
    }
    let mut r = Restorer {
        fs,
        tree,
        links: HashMap::new(),
        report: Report {
            sync_point: view.point.info.id,
            ..Report::default()
        },
        overwrite: options.overwrite,
    };
    if !options.overwrite {
        let mut clashes = Vec::new();
        for (_, ino, to) in &jobs {
            r.clashes(*ino, to, &mut clashes)?;
        }
        if !clashes.is_empty() {
            return Err(FsError::Engine(crate::Error::Invalid(format!(
                "{} exist{} in the live volume; give --overwrite to replace {}",
                clashes.join(", "),
                if clashes.len() == 1 { "s" } else { "" },
                if clashes.len() == 1 { "it" } else { "them" }
            ))));
        }
    }
    for (from, ino, to) in jobs {
        let parent = r.parents(&from, &to)?;
        let name = to.last().map(|s| s.as_bytes()).unwrap_or(b"");
        match name.is_empty() {
            // The root itself: its contents, into the root.
            true => r.children(ino, ROOT_INO)?,
            false => r.node(ino, parent, name)?,
        }
    }
    fs.fsync()?;
    Ok(r.report)
}

/// The inode at `parts` in a tree.
fn resolve(tree: &Tree<'_, Index>, parts: &[&str]) -> Option<u64> {
    parts.iter().try_fold(ROOT_INO, |at, p| {
        tree.lookup(at, p.as_bytes()).map(|e| e.child)
    })
}

struct Restorer<'a> {
    fs: &'a Fs,
    tree: Tree<'a, Index>,
    /// View inode → live inode, for hard links.
    links: HashMap<u64, u64>,
    report: Report,
    overwrite: bool,
}

fn attrs(tree: &Tree<'_, Index>, ino: u64) -> FsResult<InodeAttrs> {
    tree.getattr(ino)?.ok_or(FsError::NotFound)
}

impl Restorer<'_> {
    /// Paths below `to` (the destination of view inode `ino`) where a
    /// file exists that the restore would replace.
    fn clashes(&self, ino: u64, to: &[String], out: &mut Vec<String>) -> FsResult<()> {
        let live = to.iter().try_fold(ROOT_INO, |at, p| {
            self.fs.lookup(at, p.as_bytes()).ok().map(|(i, _)| i)
        });
        let Some(live) = live else { return Ok(()) };
        let mine = attrs(&self.tree, ino)?;
        let theirs = self.fs.getattr(live)?;
        if mine.kind != FileKind::Directory || theirs.kind != FileKind::Directory {
            out.push(format!("/{}", to.join("/")));
            return Ok(());
        }
        for (name, e) in self.tree.list_dir(ino, None) {
            let mut below = to.to_vec();
            below.push(String::from_utf8_lossy(&name).into_owned());
            self.clashes(e.child, &below, out)?;
        }
        Ok(())
    }

    /// Makes the directories above destination `to`, as the view has
    /// those above `from` when the two match, else plain 0755 ones.
    fn parents(&mut self, from: &[&str], to: &[String]) -> FsResult<u64> {
        let mut at = ROOT_INO;
        let shift = to.len() - from.len();
        for (i, name) in to.iter().enumerate().take(to.len().saturating_sub(1)) {
            at = match self.fs.lookup(at, name.as_bytes()) {
                Ok((ino, _)) => ino,
                Err(FsError::NotFound) => {
                    let like = i
                        .checked_sub(shift)
                        .and_then(|j| resolve(&self.tree, &from[..=j]));
                    let (mode, owner) = match like {
                        Some(ino) => {
                            let a = attrs(&self.tree, ino)?;
                            (
                                a.mode,
                                Owner {
                                    uid: a.uid,
                                    gid: a.gid,
                                },
                            )
                        }
                        None => (0o755, crate::fs::ROOT_OWNER),
                    };
                    self.report.dirs += 1;
                    self.report.names.push((at, name.as_bytes().to_vec()));
                    let made =
                        self.fs
                            .mknod(at, name.as_bytes(), FileKind::Directory, mode, owner, 0)?;
                    made.0
                }
                Err(e) => return Err(e),
            };
        }
        Ok(at)
    }

    /// Restores view inode `ino` as `name` in live directory `parent`.
    fn node(&mut self, ino: u64, parent: u64, name: &[u8]) -> FsResult<()> {
        let a = attrs(&self.tree, ino)?;
        let existing = match self.fs.lookup(parent, name) {
            Ok((live, la)) => Some((live, la)),
            Err(FsError::NotFound) => None,
            Err(e) => return Err(e),
        };
        if let Some((live, la)) = existing {
            if a.kind == FileKind::Directory && la.kind == FileKind::Directory {
                self.children(ino, live)?;
                return self.finish(ino, live, &a);
            }
            if !self.overwrite {
                return Err(FsError::Exists);
            }
            match la.kind {
                FileKind::Directory => return Err(FsError::IsDir),
                _ => self.fs.unlink(parent, name)?,
            }
            self.report.replaced += 1;
        }
        self.report.names.push((parent, name.to_vec()));
        if let Some(&live) = self.links.get(&ino) {
            self.report.links += 1;
            self.fs.link(live, parent, name)?;
            return Ok(());
        }
        let owner = Owner {
            uid: a.uid,
            gid: a.gid,
        };
        let live = match a.kind {
            FileKind::Symlink => self.fs.symlink(parent, name, &a.target, owner)?.0,
            kind => self.fs.mknod(parent, name, kind, a.mode, owner, a.rdev)?.0,
        };
        match a.kind {
            FileKind::Directory => {
                self.report.dirs += 1;
                self.children(ino, live)?;
            }
            FileKind::Regular => {
                self.report.files += 1;
                self.links.insert(ino, live);
                self.data(ino, live, &a)?;
            }
            _ => {
                self.report.files += 1;
                self.links.insert(ino, live);
            }
        }
        self.finish(ino, live, &a)
    }

    fn children(&mut self, ino: u64, live: u64) -> FsResult<()> {
        for (name, e) in self.tree.list_dir(ino, None) {
            self.node(e.child, live, &name)?;
        }
        Ok(())
    }

    /// The blocks the view stores (holes stay holes), then the size.
    fn data(&mut self, ino: u64, live: u64, a: &InodeAttrs) -> FsResult<()> {
        let bs = self.tree.index.block_size() as u64;
        for run in self.tree.index.block_runs(ino, 0, u64::MAX) {
            for block in run.block..run.block + run.count {
                if let Some(bytes) = self.tree.read_block(ino, block)? {
                    self.report.data_bytes += bytes.len() as u64;
                    self.fs.write(live, block * bs, &bytes)?;
                }
            }
        }
        self.fs.truncate(live, a.size)
    }

    /// Owner, mode, xattrs and times last (writing changed them).
    fn finish(&mut self, ino: u64, live: u64, a: &InodeAttrs) -> FsResult<()> {
        for name in self.tree.xattr_names(ino) {
            if let Some(value) = self.tree.getxattr(ino, &name)? {
                self.fs.setxattr(live, &name, &value, XattrMode::Any)?;
            }
        }
        let set = SetAttrs {
            uid: Some(a.uid),
            gid: Some(a.gid),
            ..Default::default()
        };
        self.fs.setattr(live, &set)?;
        let set = SetAttrs {
            mode: (a.kind != FileKind::Symlink).then_some(a.mode),
            atime: Some(a.atime),
            mtime: Some(a.mtime),
            ..Default::default()
        };
        self.fs.setattr(live, &set)?;
        Ok(())
    }
}
