//! The paths of inodes, from an index's directory entries (a reverse map
//! built once), not by walking the tree: for diff and export. Paths are
//! relative to the volume's root and start with `/`; the root is `/`.
//! Orphans have none.

use crate::format::{ORPHANS_INO, ROOT_INO};
use crate::index::Index;
use crate::tree::{IndexAccess, Tree};
use std::collections::HashMap;

/// The names of every inode in one state.
pub struct Paths {
    names: HashMap<u64, Vec<(u64, Vec<u8>)>>,
}

impl Paths {
    pub fn of<I: IndexAccess>(tree: &Tree<'_, I>) -> Paths {
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
    pub fn paths(&self, ino: u64) -> Vec<Vec<u8>> {
        let mut paths: Vec<Vec<u8>> = self
            .names
            .get(&ino)
            .into_iter()
            .flatten()
            .filter_map(|(parent, name)| {
                let mut path = self.dir(*parent)?;
                path.push(b'/');
                path.extend_from_slice(name);
                Some(path)
            })
            .collect();
        if ino == ROOT_INO {
            paths.push(b"/".to_vec());
        }
        paths.sort();
        paths
    }

    /// [`Paths::paths`] as text (names that are not UTF-8 shown lossily).
    pub fn text(&self, ino: u64) -> Vec<String> {
        self.paths(ino)
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect()
    }

    /// The path of directory `ino` (empty for the root), if reachable.
    fn dir(&self, ino: u64) -> Option<Vec<u8>> {
        let mut parts: Vec<&[u8]> = Vec::new();
        let mut at = ino;
        while at != ROOT_INO {
            let (parent, name) = self.names.get(&at)?.first()?;
            parts.push(name);
            at = *parent;
            if parts.len() > 4096 {
                return None;
            }
        }
        let mut path = Vec::new();
        for p in parts.iter().rev() {
            path.push(b'/');
            path.extend_from_slice(p);
        }
        Some(path)
    }
}
