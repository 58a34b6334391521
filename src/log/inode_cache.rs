//! Decoded inode records by position. A record never changes once it is
//! in the log (a position names one record for good: segment numbers are
//! never reused), so an entry needs no invalidation: a changed inode is a
//! new record at a new position, which the index points to instead. Every
//! write asks for its file's attributes and the kernel asks for an xattr
//! before it; without the cache each was a read of the inode record.
//!
//! Bounded by two generations: entries go into the young one; when it is
//! full it becomes the old one (the previous old one is dropped), and an
//! entry found in the old one moves back to the young one. What was used
//! within the last generation stays; at most twice [`GENERATION`] entries
//! are held.

use crate::format::{InodeAttrs, Lsn};
use crate::sync::lock;
use std::collections::HashMap;
use std::sync::Mutex;

/// Entries per generation.
const GENERATION: usize = 4096;

#[derive(Default)]
pub struct InodeCache {
    /// (young, old)
    generations: Mutex<(HashMap<Lsn, InodeAttrs>, HashMap<Lsn, InodeAttrs>)>,
}

impl InodeCache {
    pub fn get(&self, lsn: Lsn) -> Option<InodeAttrs> {
        let mut g = lock(&self.generations);
        if let Some(attrs) = g.0.get(&lsn) {
            return Some(attrs.clone());
        }
        let attrs = g.1.remove(&lsn)?;
        Self::put(&mut g, lsn, attrs.clone());
        Some(attrs)
    }

    pub fn insert(&self, lsn: Lsn, attrs: InodeAttrs) {
        Self::put(&mut lock(&self.generations), lsn, attrs);
    }

    fn put(
        g: &mut (HashMap<Lsn, InodeAttrs>, HashMap<Lsn, InodeAttrs>),
        lsn: Lsn,
        attrs: InodeAttrs,
    ) {
        if g.0.len() >= GENERATION {
            g.1 = std::mem::take(&mut g.0);
        }
        g.0.insert(lsn, attrs);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let g = lock(&self.generations);
        g.0.len() + g.1.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::FileKind;

    fn at(offset: u32) -> Lsn {
        Lsn { seq: 1, offset }
    }

    fn attrs(size: u64) -> InodeAttrs {
        let mut a = InodeAttrs::new(FileKind::Regular, 0o644, 0, 0);
        a.size = size;
        a
    }

    #[test]
    fn keeps_what_was_used_within_a_generation_and_stays_bounded() {
        let c = InodeCache::default();
        c.insert(at(0), attrs(7));
        for i in 1..GENERATION as u32 {
            c.insert(at(i), attrs(0));
        }
        // The young generation is full: the next insert ages it.
        c.insert(at(u32::MAX), attrs(0));
        // Used from the old generation: back in the young one.
        assert_eq!(c.get(at(0)).map(|a| a.size), Some(7));
        for i in 0..GENERATION as u32 {
            c.insert(at(1 << 20 | i), attrs(0));
        }
        assert_eq!(c.get(at(0)).map(|a| a.size), Some(7), "used recently");
        assert_eq!(c.get(at(1)), None, "not used for two generations");
        assert!(c.len() <= 2 * GENERATION, "{}", c.len());
    }
}
