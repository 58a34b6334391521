//! Inodes deleted while the kernel may still hold them. With the writeback
//! cache the kernel keeps an inode after its last name and handle are gone,
//! until it sends FORGET, and may still send writes of dirty pages and a
//! setattr with the times it kept (`sync -f` after `write; close; rm`).
//! Those are answered as if the inode were there, from its last attributes,
//! and discarded: the inode has no name and no handle, so nobody can read
//! what they would have changed.

use super::Fs;
use crate::format::InodeAttrs;
use crate::sync::lock;
use std::collections::{HashMap, VecDeque};

/// Most deleted inodes remembered: FORGET removes them sooner, and an inode
/// pushed out by newer ones answers ENOENT as before.
const DELETED_MAX: usize = 4096;

#[derive(Default)]
pub struct Deleted {
    attrs: HashMap<u64, InodeAttrs>,
    order: VecDeque<u64>,
}

impl Fs {
    /// Remembers the last attributes of `ino`, about to be deleted.
    pub(super) fn remember_deleted(&self, ino: u64, mut attrs: InodeAttrs) {
        let mut d = lock(&self.deleted);
        attrs.nlink = 0;
        if d.attrs.insert(ino, attrs).is_none() {
            d.order.push_back(ino);
        }
        while d.order.len() > DELETED_MAX {
            if let Some(old) = d.order.pop_front() {
                d.attrs.remove(&old);
            }
        }
    }

    /// The kernel let go of `ino` (FORGET): nothing more comes for it.
    pub fn forget(&self, ino: u64) {
        let mut d = lock(&self.deleted);
        if d.attrs.remove(&ino).is_some() {
            d.order.retain(|&i| i != ino);
        }
    }

    /// The last attributes of `ino` if it was deleted and not yet forgotten.
    pub(super) fn deleted_attrs(&self, ino: u64) -> Option<InodeAttrs> {
        lock(&self.deleted).attrs.get(&ino).cloned()
    }
}
