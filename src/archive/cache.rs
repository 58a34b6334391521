//! A bounded cache of decompressed frames of archived segments, so that
//! reads of retired segments (views) fetch and decompress each frame once.
//! Eviction is least recently used, by bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A frame: archived segment, the segment bytes its object holds (a
/// partial object's frames differ from the whole object's), frame number.
pub type FrameKey = (u64, u64, usize);

pub struct FrameCache {
    budget: u64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    frames: HashMap<FrameKey, (Arc<Vec<u8>>, u64)>,
    bytes: u64,
    tick: u64,
}

impl FrameCache {
    pub fn new(budget: u64) -> Self {
        FrameCache {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn get(&self, key: FrameKey) -> Option<Arc<Vec<u8>>> {
        let mut inner = crate::sync::lock(&self.inner);
        inner.tick += 1;
        let tick = inner.tick;
        let (frame, used) = inner.frames.get_mut(&key)?;
        *used = tick;
        Some(frame.clone())
    }

    /// Whether the frame is cached (without counting as a use).
    pub fn contains(&self, key: FrameKey) -> bool {
        crate::sync::lock(&self.inner).frames.contains_key(&key)
    }

    /// Adds a frame, evicting the least recently used ones beyond the budget.
    pub fn insert(&self, key: FrameKey, frame: Arc<Vec<u8>>) {
        let mut inner = crate::sync::lock(&self.inner);
        inner.tick += 1;
        let tick = inner.tick;
        inner.bytes += frame.len() as u64;
        if let Some((old, _)) = inner.frames.insert(key, (frame, tick)) {
            inner.bytes -= old.len() as u64;
        }
        while inner.bytes > self.budget && inner.frames.len() > 1 {
            let oldest = inner
                .frames
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k);
            let Some(k) = oldest else { break };
            if let Some((old, _)) = inner.frames.remove(&k) {
                inner.bytes -= old.len() as u64;
            }
        }
    }

    #[cfg(test)]
    fn bytes(&self) -> u64 {
        crate::sync::lock(&self.inner).bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_within_budget() {
        let c = FrameCache::new(300);
        for i in 0..3 {
            c.insert((1, 0, i), Arc::new(vec![i as u8; 100]));
        }
        assert!(c.get((1, 0, 0)).is_some());
        c.insert((2, 0, 0), Arc::new(vec![9; 100]));
        assert_eq!(c.bytes(), 300);
        assert!(c.get((1, 0, 1)).is_none(), "least recently used goes first");
        assert!(c.get((1, 0, 0)).is_some() && c.get((2, 0, 0)).is_some());
        c.insert((2, 0, 0), Arc::new(vec![9; 50]));
        assert_eq!(c.bytes(), 250, "replacing a frame counts its new size");
    }
}
