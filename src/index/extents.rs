//! The block map of one file: block number → position of its newest record.
//!
//! Blocks written together land next to each other in the log, one data
//! record of fixed size (`stride`) after another, so the map stores runs:
//! block `start + i` lives at `offset + i * stride` of segment `seq`. Only
//! the last record of a run may be shorter than a full block. A file written
//! sequentially costs one entry per write group (the group's inode record
//! ends the run) instead of one per block.
//!
//! Block numbers are any u64, up to `u64::MAX` (the map does not know the
//! block size, and records come from disk): a run may end at the last block
//! number, so `block + 1` and a run's end are computed checked, never
//! assumed to fit.

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
            && ls.checked_add(left.count as u64) == Some(block)
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
        // Join the run that starts right after `block` (none follows the
        // last block number).
        if full
            && let Some(next) = block.checked_add(1)
            && let Some(right) = self.map.get(&next).copied()
            && right.seq == lsn.seq
            && lsn.offset as u64 + stride as u64 == right.offset as u64
            && (new.count as u64 + right.count as u64) <= u32::MAX as u64
        {
            self.map.remove(&next);
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
        // Blocks of the run follow `block`, so `block + 1` fits.
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
            // Blocks [start, from) stay; counted from the start, since the
            // run's end may lie past the last block number.
            let keep = from - start;
            if ext.count as u64 > keep {
                self.blocks -= ext.count as u64 - keep;
                ext.count = keep as u32;
                ext.last_full = true;
            }
        }
        let tail = self.map.split_off(&from);
        self.blocks -= tail.values().map(|e| e.count as u64).sum::<u64>();
    }

    /// The mapped runs that overlap blocks `[first, end)`, clipped to it
    /// (none if `first >= end`).
    pub fn runs(&self, first: u64, end: u64, stride: u32) -> Vec<Run> {
        let mut out = Vec::new();
        if first >= end {
            return out;
        }
        let from = match self.map.range(..=first).next_back() {
            Some((&s, e)) if first - s < e.count as u64 => s,
            _ => first,
        };
        for (&start, ext) in self.map.range(from..end) {
            let lo = start.max(first);
            // A run holding u64::MAX ends past every `end`.
            let hi = start
                .checked_add(ext.count as u64)
                .map_or(end, |e| e.min(end));
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
            4 => (0..=BLOCKS, 0..30u32, any::<bool>()).prop_map(|(b, o, f)| Op::Insert(b, o, f)),
            2 => (0..=BLOCKS, 0..30u32, any::<bool>()).prop_map(|(b, o, f)| Op::InsertIfAbsent(b, o, f)),
            1 => (0..=BLOCKS).prop_map(Op::Remove),
            1 => (0..=BLOCKS).prop_map(Op::Truncate),
        ]
    }

    /// Runs `ops` on blocks `base + b` against a plain map of blocks.
    fn check_against_a_plain_map(base: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
        let mut m = ExtentMap::default();
        let mut model: HashMap<u64, Lsn> = HashMap::new();
        for op in ops {
            match op {
                // Offsets are block-aligned so that neighbours can join.
                Op::Insert(b, o, f) => {
                    let l = lsn(1, o * STRIDE);
                    m.insert(base + b, l, f, STRIDE);
                    model.insert(base + b, l);
                }
                Op::InsertIfAbsent(b, o, f) => {
                    let l = lsn(1, o * STRIDE);
                    let inserted = m.insert_if_absent(base + b, l, f, STRIDE);
                    prop_assert_eq!(inserted, !model.contains_key(&(base + b)));
                    model.entry(base + b).or_insert(l);
                }
                Op::Remove(b) => {
                    let was = model.remove(&(base + b)).is_some();
                    prop_assert_eq!(m.remove(base + b, STRIDE), was);
                }
                Op::Truncate(b) => {
                    m.truncate(base + b);
                    model.retain(|&k, _| k < base + b);
                }
            }
            prop_assert_eq!(m.blocks(), model.len() as u64);
            for b in 0..=BLOCKS {
                prop_assert_eq!(m.get(base + b, STRIDE), model.get(&(base + b)).copied());
            }
            // Every block, except `u64::MAX`, which no `[first, end)` holds.
            let end = (base + BLOCKS).saturating_add(1);
            for (first, end) in [(base + 3, base + 30), (base, end), (base + 30, u64::MAX)] {
                let mut from_runs = HashMap::new();
                for r in m.runs(first, end, STRIDE) {
                    for i in 0..r.count {
                        let offset = r.lsn.offset + i as u32 * STRIDE;
                        from_runs.insert(r.block + i, lsn(r.lsn.seq, offset));
                    }
                }
                let expect: HashMap<u64, Lsn> = model
                    .iter()
                    .filter(|(k, _)| (first..end).contains(*k))
                    .map(|(k, v)| (*k, *v))
                    .collect();
                prop_assert_eq!(from_runs, expect);
            }
        }
        Ok(())
    }

    /// Blocks the model tests use: `base + 0 ..= base + BLOCKS`.
    const BLOCKS: u64 = 40;

    proptest! {
        /// The run-length map answers exactly like a plain map of blocks.
        #[test]
        fn behaves_like_a_plain_map(ops in proptest::collection::vec(op(), 1..200)) {
            check_against_a_plain_map(0, ops)?;
        }

        /// The same at the very top of the block space, where `block + 1`
        /// and the end of a run ending at `u64::MAX` do not fit in a u64.
        #[test]
        fn behaves_like_a_plain_map_up_to_the_last_block_number(
            ops in proptest::collection::vec(op(), 1..200)
        ) {
            check_against_a_plain_map(u64::MAX - BLOCKS, ops)?;
        }
    }

    #[test]
    fn runs_ending_at_the_last_block_number_insert_remove_and_truncate() {
        const TOP: u64 = u64::MAX;
        let mut m = ExtentMap::default();
        m.insert(TOP, lsn(1, 2 * STRIDE), true, STRIDE);
        m.insert(TOP - 1, lsn(1, STRIDE), true, STRIDE);
        m.insert(TOP - 2, lsn(1, 0), true, STRIDE);
        assert_eq!(m.runs_len(), 1, "three neighbours form one run");
        assert_eq!(m.blocks(), 3);
        assert_eq!(m.get(TOP, STRIDE), Some(lsn(1, 2 * STRIDE)));
        let run = |block, count, offset| Run {
            block,
            count,
            lsn: lsn(1, offset),
        };
        assert_eq!(
            m.runs(TOP - 1, TOP, STRIDE),
            [run(TOP - 1, 1, STRIDE)],
            "clipped to [first, end)"
        );
        assert_eq!(m.runs(TOP - 5, TOP, STRIDE), [run(TOP - 2, 2, 0)]);
        assert!(m.runs(TOP, TOP, STRIDE).is_empty());
        assert!(m.runs(TOP, 5, STRIDE).is_empty(), "first past end");
        // Backward, as recovery builds it.
        let mut back = ExtentMap::default();
        for (b, o) in [(TOP, 2), (TOP - 1, 1), (TOP - 2, 0)] {
            assert!(back.insert_if_absent(b, lsn(1, o * STRIDE), true, STRIDE));
        }
        assert!(!back.insert_if_absent(TOP, lsn(2, 0), true, STRIDE));
        assert_eq!(back, m);
        // Splitting the run and cutting it at the top.
        assert!(m.remove(TOP - 1, STRIDE));
        assert_eq!(m.runs_len(), 2);
        assert_eq!(m.get(TOP, STRIDE), Some(lsn(1, 2 * STRIDE)));
        assert!(m.remove(TOP, STRIDE));
        assert!(!m.remove(TOP, STRIDE));
        m.insert(TOP - 1, lsn(1, STRIDE), true, STRIDE);
        m.insert(TOP, lsn(1, 2 * STRIDE), false, STRIDE);
        assert_eq!((m.runs_len(), m.blocks()), (1, 3));
        m.truncate(TOP);
        assert_eq!((m.get(TOP, STRIDE), m.blocks()), (None, 2));
        m.truncate(TOP - 1);
        assert_eq!((m.runs_len(), m.blocks()), (1, 1));
        m.truncate(0);
        assert_eq!((m.runs_len(), m.blocks()), (0, 0));
    }
}
