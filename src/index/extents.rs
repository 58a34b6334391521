//! The block map of one file: block number → position of its newest record.
//!
//! Blocks written together land next to each other in the log, one data
//! record of fixed size (`stride`) after another, so the map stores runs:
//! block `start + i` lives at `offset + i * stride` of segment `seq`. Only
//! the last record of a run may be shorter than a full block. A file written
//! sequentially costs one entry per write group (the group's inode record
//! ends the run) instead of one per block.

use crate::format::Lsn;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub seq: u64,
    pub offset: u32,
    pub count: u32,
    /// Whether the run's last record holds a full block (so the run may grow).
    pub last_full: bool,
}

impl Extent {
    fn lsn_of(&self, i: u64, stride: u32) -> Lsn {
        Lsn {
            seq: self.seq,
            offset: self.offset + i as u32 * stride,
        }
    }
}

/// A run of consecutive blocks in the log, as returned by [`ExtentMap::runs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub block: u64,
    pub count: u64,
    pub lsn: Lsn,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtentMap {
    map: BTreeMap<u64, Extent>,
    blocks: u64,
}

impl ExtentMap {
    /// Number of mapped blocks.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Number of runs (what the map's memory is proportional to).
    pub fn runs_len(&self) -> usize {
        self.map.len()
    }

    pub fn get(&self, block: u64, stride: u32) -> Option<Lsn> {
        let (&start, ext) = self.map.range(..=block).next_back()?;
        let i = block - start;
        (i < ext.count as u64).then(|| ext.lsn_of(i, stride))
    }

    /// Maps `block` to `lsn`, replacing any older mapping.
    pub fn insert(&mut self, block: u64, lsn: Lsn, full: bool, stride: u32) {
        self.remove(block, stride);
        self.insert_absent(block, lsn, full, stride);
    }

    /// Maps `block` to `lsn` unless it is already mapped (a newer record won).
    /// Returns whether it was inserted.
    pub fn insert_if_absent(&mut self, block: u64, lsn: Lsn, full: bool, stride: u32) -> bool {
        if self.get(block, stride).is_some() {
            return false;
        }
        self.insert_absent(block, lsn, full, stride);
        true
    }

    fn insert_absent(&mut self, block: u64, lsn: Lsn, full: bool, stride: u32) {
        self.blocks += 1;
        let mut new = Extent {
            seq: lsn.seq,
            offset: lsn.offset,
            count: 1,
            last_full: full,
        };
        let mut start = block;
        // Join the run that ends right before `block`, if it continues here.
        if let Some((&ls, left)) = self.map.range(..block).next_back()
            && ls + left.count as u64 == block
            && left.last_full
            && left.seq == lsn.seq
            && left.offset as u64 + left.count as u64 * stride as u64 == lsn.offset as u64
            && left.count < u32::MAX
        {
            new = Extent {
                count: left.count + 1,
                ..*left
            };
            new.last_full = full;
            start = ls;
        }
        // Join the run that starts right after `block`.
        if full
            && let Some(right) = self.map.get(&(block + 1)).copied()
            && right.seq == lsn.seq
            && lsn.offset as u64 + stride as u64 == right.offset as u64
            && (new.count as u64 + right.count as u64) <= u32::MAX as u64
        {
            self.map.remove(&(block + 1));
            new.count += right.count;
            new.last_full = right.last_full;
        }
        self.map.insert(start, new);
    }

    /// Unmaps `block`, splitting its run. Returns whether it was mapped.
    pub fn remove(&mut self, block: u64, stride: u32) -> bool {
        let Some((&start, &ext)) = self.map.range(..=block).next_back() else {
            return false;
        };
        let i = block - start;
        if i >= ext.count as u64 {
            return false;
        }
        self.blocks -= 1;
        self.map.remove(&start);
        if i > 0 {
            self.map.insert(
                start,
                Extent {
                    count: i as u32,
                    last_full: true,
                    ..ext
                },
            );
        }
        let after = ext.count as u64 - i - 1;
        if after > 0 {
            let lsn = ext.lsn_of(i + 1, stride);
            self.map.insert(
                block + 1,
                Extent {
                    seq: lsn.seq,
                    offset: lsn.offset,
                    count: after as u32,
                    last_full: ext.last_full,
                },
            );
        }
        true
    }

    /// Unmaps every block at or past `from`.
    pub fn truncate(&mut self, from: u64) {
        if let Some((&start, ext)) = self.map.range_mut(..from).next_back() {
            let end = start + ext.count as u64;
            if end > from {
                self.blocks -= end - from;
                ext.count = (from - start) as u32;
                ext.last_full = true;
            }
        }
        let tail = self.map.split_off(&from);
        self.blocks -= tail.values().map(|e| e.count as u64).sum::<u64>();
    }

    /// The mapped runs that overlap blocks `[first, end)`, clipped to it.
    pub fn runs(&self, first: u64, end: u64, stride: u32) -> Vec<Run> {
        let mut out = Vec::new();
        let from = match self.map.range(..=first).next_back() {
            Some((&s, e)) if s + e.count as u64 > first => s,
            _ => first,
        };
        for (&start, ext) in self.map.range(from..end) {
            let lo = start.max(first);
            let hi = (start + ext.count as u64).min(end);
            if lo < hi {
                out.push(Run {
                    block: lo,
                    count: hi - lo,
                    lsn: ext.lsn_of(lo - start, stride),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const STRIDE: u32 = 100;

    fn lsn(seq: u64, offset: u32) -> Lsn {
        Lsn { seq, offset }
    }

    #[test]
    fn sequential_blocks_form_one_run() {
        let mut m = ExtentMap::default();
        for b in 0..1000u64 {
            m.insert(b, lsn(1, 4096 + b as u32 * STRIDE), true, STRIDE);
        }
        assert_eq!(m.runs_len(), 1);
        assert_eq!(m.blocks(), 1000);
        assert_eq!(m.get(999, STRIDE), Some(lsn(1, 4096 + 999 * STRIDE)));
        // Built backward, as recovery does, it is still one run.
        let mut back = ExtentMap::default();
        for b in (0..1000u64).rev() {
            assert!(back.insert_if_absent(b, lsn(1, 4096 + b as u32 * STRIDE), true, STRIDE));
        }
        assert_eq!(back, m);
    }

    #[test]
    fn short_record_ends_a_run() {
        let mut m = ExtentMap::default();
        m.insert(0, lsn(1, 0), false, STRIDE);
        m.insert(1, lsn(1, STRIDE), true, STRIDE);
        assert_eq!(m.runs_len(), 2);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u32, bool),
        InsertIfAbsent(u64, u32, bool),
        Remove(u64),
        Truncate(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..40u64, 0..30u32, any::<bool>()).prop_map(|(b, o, f)| Op::Insert(b, o, f)),
            2 => (0..40u64, 0..30u32, any::<bool>()).prop_map(|(b, o, f)| Op::InsertIfAbsent(b, o, f)),
            1 => (0..40u64).prop_map(Op::Remove),
            1 => (0..40u64).prop_map(Op::Truncate),
        ]
    }

    proptest! {
        /// The run-length map answers exactly like a plain map of blocks.
        #[test]
        fn behaves_like_a_plain_map(ops in proptest::collection::vec(op(), 1..200)) {
            let mut m = ExtentMap::default();
            let mut model: HashMap<u64, Lsn> = HashMap::new();
            for op in ops {
                match op {
                    // Offsets are block-aligned so that neighbours can join.
                    Op::Insert(b, o, f) => {
                        let l = lsn(1, o * STRIDE);
                        m.insert(b, l, f, STRIDE);
                        model.insert(b, l);
                    }
                    Op::InsertIfAbsent(b, o, f) => {
                        let l = lsn(1, o * STRIDE);
                        let inserted = m.insert_if_absent(b, l, f, STRIDE);
                        prop_assert_eq!(inserted, !model.contains_key(&b));
                        model.entry(b).or_insert(l);
                    }
                    Op::Remove(b) => {
                        prop_assert_eq!(m.remove(b, STRIDE), model.remove(&b).is_some());
                    }
                    Op::Truncate(b) => {
                        m.truncate(b);
                        model.retain(|&k, _| k < b);
                    }
                }
                prop_assert_eq!(m.blocks(), model.len() as u64);
                for b in 0..41 {
                    prop_assert_eq!(m.get(b, STRIDE), model.get(&b).copied());
                }
                let mut from_runs = HashMap::new();
                for r in m.runs(3, 30, STRIDE) {
                    for i in 0..r.count {
                        from_runs.insert(r.block + i, Lsn { seq: r.lsn.seq, offset: r.lsn.offset + i as u32 * STRIDE });
                    }
                }
                let expect: HashMap<u64, Lsn> = model.iter().filter(|(k, _)| (3..30).contains(*k)).map(|(k, v)| (*k, *v)).collect();
                prop_assert_eq!(from_runs, expect);
            }
        }
    }
}
