//! Helpers shared by the engine tests: small volumes, and a dump of a whole
//! tree (paths, kinds, contents, link counts, hard-link identity) that a
//! reference model can be compared with.
#![allow(dead_code)]

pub mod facts;
pub mod mount;
pub mod pg;
pub mod s3;

use lsvfs::format::{FileKind, VolumeId};
use lsvfs::policy::Policy;
use lsvfs::tree::{IndexAccess, Tree};
use lsvfs::volume::{ROOT_INO, Volume};
use std::collections::BTreeMap;
use std::path::Path;

/// A policy with tiny segments so that tests cross many segment boundaries.
pub fn small_policy() -> Policy {
    let mut p = Policy::new(VolumeId::generate().unwrap());
    p.block_size = 512;
    p.segment_size = 64 << 10;
    p.working_set = 4;
    p
}

pub fn create(dir: &Path, policy: &Policy) -> Volume {
    Volume::create(dir, policy).unwrap();
    Volume::open(dir).unwrap()
}

/// One node of a dumped tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir {
        nlink: u32,
    },
    File {
        content: Content,
        nlink: u32,
        /// The smallest path naming the same inode: hard-link identity.
        first_path: String,
    },
    Symlink {
        target: Vec<u8>,
    },
}

/// A file's bytes, compared exactly but printed as length and checksum.
#[derive(Clone, PartialEq, Eq)]
pub struct Content(pub Vec<u8>);

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes, crc {:08x}",
            self.0.len(),
            crc32c::crc32c(&self.0)
        )
    }
}

pub type Dump = BTreeMap<String, Node>;

/// Walks a tree from the root and records every path.
pub fn dump<I: IndexAccess>(tree: &Tree<'_, I>) -> Dump {
    let mut out = Dump::new();
    let mut first: BTreeMap<u64, String> = BTreeMap::new();
    let mut stack = vec![(ROOT_INO, String::new())];
    let mut files = Vec::new();
    while let Some((dir, path)) = stack.pop() {
        for (name, e) in tree.list_dir(dir, None) {
            let p = format!("{path}/{}", String::from_utf8_lossy(&name));
            let attrs = tree
                .getattr(e.child)
                .unwrap()
                .unwrap_or_else(|| panic!("{p}: entry without inode"));
            assert_eq!(attrs.kind, e.kind, "{p}: entry kind differs from inode");
            match attrs.kind {
                FileKind::Directory => {
                    assert_eq!(attrs.parent, dir, "{p}: wrong parent");
                    out.insert(p.clone(), Node::Dir { nlink: attrs.nlink });
                    stack.push((e.child, p));
                }
                FileKind::Symlink => {
                    out.insert(
                        p,
                        Node::Symlink {
                            target: attrs.target,
                        },
                    );
                }
                _ => {
                    let f = first.entry(e.child).or_insert_with(|| p.clone());
                    if p < *f {
                        *f = p.clone();
                    }
                    let content = tree
                        .read(e.child, 0, attrs.size as usize, attrs.size)
                        .unwrap();
                    assert_eq!(content.len() as u64, attrs.size);
                    files.push((p, e.child, content, attrs.nlink));
                }
            }
        }
    }
    for (p, ino, content, nlink) in files {
        let first_path = first[&ino].clone();
        out.insert(
            p,
            Node::File {
                content: Content(content),
                nlink,
                first_path,
            },
        );
    }
    out
}
