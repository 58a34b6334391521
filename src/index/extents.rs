//! The block map of one file: block number → position of its newest record.
//!
//! Blocks written together land next to each other in the log, one data
//! record of fixed size (`stride`) after another, so the map stores runs:
//! block `start + i` lives at `offset + i * stride` of segment `seq`. Only
//! the last record of a run may be shorter than a full block. A file written
//! sequentially costs one entry per write group (the group's inode record
//! ends the run) instead of one per block.
//!
//! A file written in scattered order has a run per block, and a tree entry
//! per run costs about 66 bytes. When the runs crowd their span of blocks
//! (at least `DENSE_MIN_RUNS` runs, span at most `DENSE_SPAN` times their
//! number) the map turns into a dense array of 12-byte positions over the
//! span ([`Dense`]), and back into runs when the array becomes mostly holes
//! (`SPARSE_SPAN`). The choice depends on the order of inserts, so two
//! maps are equal when they map the same blocks to the same positions,
//! whatever their form.
//!
//! Block numbers are any u64, up to `u64::MAX` (the map does not know the
//! block size, and records come from disk): a run may end at the last block
//! number, so `block + 1` and a run's end are computed checked, never
//! assumed to fit.

use crate::format::Lsn;
use std::collections::BTreeMap;

/// Runs a map needs before it may turn dense (few in unit tests, so that
/// their small maps take both forms).
const DENSE_MIN_RUNS: usize = if cfg!(test) { 4 } else { 64 };
/// A map turns dense when its span of blocks is at most this many times
/// its runs: 12 bytes a slot against about 66 a run.
const DENSE_SPAN: u64 = 4;
/// A dense map turns back into runs when its array is more than this many
/// times its mapped blocks.
const SPARSE_SPAN: u64 = 8;
/// Top bit of a slot's offset word: the record holds a full block.
/// Segments are at most 1 GiB, so offsets never reach it.
const FULL: u32 = 1 << 31;

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

/// One block's position packed in 12 bytes: the segment, the offset with
/// [`FULL`], or all zeros for a hole (offset 0 is a segment's header,
/// never a record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    seq_lo: u32,
    seq_hi: u32,
    word: u32,
}

impl Slot {
    const HOLE: Slot = Slot {
        seq_lo: 0,
        seq_hi: 0,
        word: 0,
    };

    /// None for a position a slot cannot hold (offset 0 or past 2 GiB).
    fn new(lsn: Lsn, full: bool) -> Option<Slot> {
        (lsn.offset != 0 && lsn.offset < FULL).then_some(Slot {
            seq_lo: lsn.seq as u32,
            seq_hi: (lsn.seq >> 32) as u32,
            word: lsn.offset | if full { FULL } else { 0 },
        })
    }

    fn lsn(self) -> Option<Lsn> {
        (self.word != 0).then_some(Lsn {
            seq: self.seq_lo as u64 | (self.seq_hi as u64) << 32,
            offset: self.word & !FULL,
        })
    }

    fn full(self) -> bool {
        self.word & FULL != 0
    }
}

/// The dense form: `slots[i]` is block `base + i`.
#[derive(Debug, Clone)]
struct Dense {
    base: u64,
    /// The stride the runs were expanded with (for comparing maps).
    stride: u32,
    slots: Vec<Slot>,
}

impl Dense {
    fn index(&self, block: u64) -> Option<usize> {
        let i = block.checked_sub(self.base)?;
        (i < self.slots.len() as u64).then_some(i as usize)
    }

    /// Extends the array to hold `block`, unless that would make it larger
    /// than [`DENSE_SPAN`] times `blocks`. Grows by at least an eighth, so
    /// that filling it block by block (forward or backward) copies each
    /// slot a bounded number of times and leaves little unused capacity.
    fn make_room(&mut self, block: u64, blocks: u64) -> bool {
        let len = self.slots.len() as u64;
        if self.index(block).is_some() {
            return true;
        }
        let span = match block < self.base {
            true => (self.base - block).checked_add(len),
            false => (block - self.base).checked_add(1),
        };
        let most = DENSE_SPAN.saturating_mul(blocks);
        let Some(span) = span.filter(|&s| s <= most) else {
            return false;
        };
        let step = (len / 8).max(1);
        if block < self.base {
            let extra = step.min(block).min(most - span);
            let front = (self.base - block + extra) as usize;
            let mut slots = Vec::with_capacity(front + self.slots.len());
            slots.resize(front, Slot::HOLE);
            slots.extend_from_slice(&self.slots);
            self.slots = slots;
            self.base = block - extra;
        } else {
            let need = (span - len) as usize;
            if self.slots.capacity() < self.slots.len() + need {
                self.slots.reserve_exact(need.max(step as usize));
            }
            self.slots.resize(span as usize, Slot::HOLE);
        }
        true
    }

    /// Drops holes at the end (the front's stay: removing them would copy
    /// the array).
    fn trim(&mut self) {
        while self.slots.last() == Some(&Slot::HOLE) {
            self.slots.pop();
        }
    }

    /// Whether the array has become mostly holes.
    fn sparse(&self, blocks: u64) -> bool {
        self.slots.len() as u64 > SPARSE_SPAN.saturating_mul(blocks)
    }

    fn runs(&self, first: u64, end: u64, stride: u32) -> Vec<Run> {
        let mut out: Vec<Run> = Vec::new();
        let lo = first.max(self.base);
        let hi = end.min(self.base.saturating_add(self.slots.len() as u64));
        let mut prev: Option<Slot> = None;
        for block in lo..hi {
            let slot = self.slots[(block - self.base) as usize];
            let Some(lsn) = slot.lsn() else {
                prev = None;
                continue;
            };
            let continues = prev.is_some_and(|p| {
                let p_lsn = p.lsn().expect("not a hole");
                p.full()
                    && p_lsn.seq == lsn.seq
                    && p_lsn.offset as u64 + stride as u64 == lsn.offset as u64
            });
            match out.last_mut() {
                Some(run) if continues => run.count += 1,
                _ => out.push(Run {
                    block,
                    count: 1,
                    lsn,
                }),
            }
            prev = Some(slot);
        }
        out
    }
}

#[derive(Debug, Clone, Default)]
pub struct ExtentMap {
    /// The runs, empty while the map is dense.
    map: BTreeMap<u64, Extent>,
    dense: Option<Box<Dense>>,
    blocks: u64,
}

/// Equal when the same blocks map to the same positions, in either form.
impl PartialEq for ExtentMap {
    fn eq(&self, other: &Self) -> bool {
        if self.blocks != other.blocks {
            return false;
        }
        match (&self.dense, &other.dense) {
            (None, None) => self.map == other.map,
            // The runs of the other are expanded with the stride that
            // expanded the dense one's.
            (Some(d), _) | (_, Some(d)) => self.positions(d.stride) == other.positions(d.stride),
        }
    }
}

impl Eq for ExtentMap {}

impl ExtentMap {
    /// Number of mapped blocks.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Number of runs (in the tree form, what the map's memory is
    /// proportional to; counted by a walk in the dense form).
    pub fn runs_len(&self, stride: u32) -> usize {
        match &self.dense {
            Some(d) => d.runs(0, u64::MAX, stride).len(),
            None => self.map.len(),
        }
    }

    /// Every mapped block with its position, in block order.
    fn positions(&self, stride: u32) -> Vec<(u64, Lsn)> {
        let mut out: Vec<(u64, Lsn)> = Vec::new();
        for r in self.runs(0, u64::MAX, stride) {
            for i in 0..r.count {
                out.push((r.block + i, self.get(r.block + i, stride).expect("mapped")));
            }
        }
        out.extend(self.get(u64::MAX, stride).map(|l| (u64::MAX, l)));
        out
    }

    pub fn get(&self, block: u64, stride: u32) -> Option<Lsn> {
        if let Some(d) = &self.dense {
            return d.slots[d.index(block)?].lsn();
        }
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
        if let Some(d) = &mut self.dense {
            if let Some(slot) = Slot::new(lsn, full)
                && d.make_room(block, self.blocks + 1)
            {
                let i = d.index(block).expect("room was made");
                d.slots[i] = slot;
                self.blocks += 1;
                return;
            }
            self.make_runs(stride);
        }
        self.insert_run(block, lsn, full, stride);
        self.maybe_dense(stride);
    }

    /// Turns the runs into the dense form if they crowd their span (and
    /// every position fits a slot).
    fn maybe_dense(&mut self, stride: u32) {
        if self.map.len() < DENSE_MIN_RUNS {
            return;
        }
        let (Some((&base, _)), Some((&start, last))) =
            (self.map.first_key_value(), self.map.last_key_value())
        else {
            return;
        };
        let span = (start - base).saturating_add(last.count as u64);
        if span > DENSE_SPAN * self.map.len() as u64 {
            return;
        }
        let mut slots = vec![Slot::HOLE; span as usize];
        for (&start, ext) in &self.map {
            for i in 0..ext.count as u64 {
                let full = i + 1 < ext.count as u64 || ext.last_full;
                let Some(slot) = Slot::new(ext.lsn_of(i, stride), full) else {
                    return;
                };
                slots[(start - base + i) as usize] = slot;
            }
        }
        self.map.clear();
        self.dense = Some(Box::new(Dense {
            base,
            stride,
            slots,
        }));
    }

    /// Turns the dense form back into runs.
    fn make_runs(&mut self, stride: u32) {
        let Some(d) = self.dense.take() else {
            return;
        };
        let blocks = self.blocks;
        self.blocks = 0;
        for (i, slot) in d.slots.iter().enumerate() {
            if let Some(lsn) = slot.lsn() {
                self.insert_run(d.base + i as u64, lsn, slot.full(), stride);
            }
        }
        debug_assert_eq!(self.blocks, blocks);
    }

    /// After blocks left a dense map: back to runs if it is mostly holes.
    fn after_removal(&mut self, stride: u32) {
        if let Some(d) = &mut self.dense {
            d.trim();
            if self.blocks == 0 {
                self.dense = None;
            } else if d.sparse(self.blocks) {
                self.make_runs(stride);
            }
        }
    }

    /// Inserts an unmapped block into the tree form, joining the runs it
    /// continues.
    fn insert_run(&mut self, block: u64, lsn: Lsn, full: bool, stride: u32) {
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
        if let Some(d) = &mut self.dense {
            let Some(i) = d.index(block).filter(|&i| d.slots[i] != Slot::HOLE) else {
                return false;
            };
            d.slots[i] = Slot::HOLE;
            self.blocks -= 1;
            self.after_removal(stride);
            return true;
        }
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
    pub fn truncate(&mut self, from: u64, stride: u32) {
        if let Some(d) = &mut self.dense {
            let cut = from.saturating_sub(d.base).min(d.slots.len() as u64) as usize;
            let gone = d.slots[cut..].iter().filter(|s| **s != Slot::HOLE).count();
            d.slots.truncate(cut);
            self.blocks -= gone as u64;
            self.after_removal(stride);
            return;
        }
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
        if let Some(d) = &self.dense {
            return d.runs(first, end, stride);
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
        assert_eq!(m.runs_len(STRIDE), 1);
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
        assert_eq!(m.runs_len(STRIDE), 2);
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

    /// Runs `ops` on blocks `base + b` against a plain map of blocks, with
    /// records at `first + o * STRIDE` (offset 0 keeps a map in the tree
    /// form: no slot holds it).
    fn check_against_a_plain_map(base: u64, first: u32, ops: Vec<Op>) -> Result<(), TestCaseError> {
        let mut m = ExtentMap::default();
        let mut model: HashMap<u64, Lsn> = HashMap::new();
        // Whether each block's record is full: only a full one may be
        // followed by another block of its run.
        let mut full: HashMap<u64, bool> = HashMap::new();
        for op in ops {
            match op {
                // Offsets are block-aligned so that neighbours can join.
                Op::Insert(b, o, f) => {
                    let l = lsn(1, first + o * STRIDE);
                    m.insert(base + b, l, f, STRIDE);
                    model.insert(base + b, l);
                    full.insert(base + b, f);
                }
                Op::InsertIfAbsent(b, o, f) => {
                    let l = lsn(1, first + o * STRIDE);
                    let inserted = m.insert_if_absent(base + b, l, f, STRIDE);
                    prop_assert_eq!(inserted, !model.contains_key(&(base + b)));
                    model.entry(base + b).or_insert(l);
                    if inserted {
                        full.insert(base + b, f);
                    }
                }
                Op::Remove(b) => {
                    let was = model.remove(&(base + b)).is_some();
                    prop_assert_eq!(m.remove(base + b, STRIDE), was);
                }
                Op::Truncate(b) => {
                    m.truncate(base + b, STRIDE);
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
                    for i in 0..r.count - 1 {
                        prop_assert!(full[&(r.block + i)], "a short record inside {:?}", r);
                    }
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
            check_against_a_plain_map(0, 0, ops)?;
        }

        /// The same with positions as records have them (past a segment's
        /// header), so that crowded maps turn dense and back.
        #[test]
        fn behaves_like_a_plain_map_in_both_forms(ops in proptest::collection::vec(op(), 1..200)) {
            check_against_a_plain_map(0, 4096, ops)?;
        }

        /// The same at the very top of the block space, where `block + 1`
        /// and the end of a run ending at `u64::MAX` do not fit in a u64.
        #[test]
        fn behaves_like_a_plain_map_up_to_the_last_block_number(
            ops in proptest::collection::vec(op(), 1..200)
        ) {
            check_against_a_plain_map(u64::MAX - BLOCKS, 4096, ops)?;
        }
    }

    #[test]
    fn runs_ending_at_the_last_block_number_insert_remove_and_truncate() {
        const TOP: u64 = u64::MAX;
        let mut m = ExtentMap::default();
        m.insert(TOP, lsn(1, 2 * STRIDE), true, STRIDE);
        m.insert(TOP - 1, lsn(1, STRIDE), true, STRIDE);
        m.insert(TOP - 2, lsn(1, 0), true, STRIDE);
        assert_eq!(m.runs_len(STRIDE), 1, "three neighbours form one run");
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
        assert_eq!(m.runs_len(STRIDE), 2);
        assert_eq!(m.get(TOP, STRIDE), Some(lsn(1, 2 * STRIDE)));
        assert!(m.remove(TOP, STRIDE));
        assert!(!m.remove(TOP, STRIDE));
        m.insert(TOP - 1, lsn(1, STRIDE), true, STRIDE);
        m.insert(TOP, lsn(1, 2 * STRIDE), false, STRIDE);
        assert_eq!((m.runs_len(STRIDE), m.blocks()), (1, 3));
        m.truncate(TOP, STRIDE);
        assert_eq!((m.get(TOP, STRIDE), m.blocks()), (None, 2));
        m.truncate(TOP - 1, STRIDE);
        assert_eq!((m.runs_len(STRIDE), m.blocks()), (1, 1));
        m.truncate(0, STRIDE);
        assert_eq!((m.runs_len(STRIDE), m.blocks()), (0, 0));
    }

    /// A file written in scattered order ends up in the dense form, at
    /// about 12 bytes a block, answers like the runs it replaced, compares
    /// equal to the same map built in another order, and goes back to runs
    /// when most of it is removed.
    #[test]
    fn scattered_blocks_turn_dense_and_back() {
        const N: u64 = 1000;
        // Block b written at the (b * 7919 % N)-th position of the log.
        let at = |b: u64| lsn(1, 4096 + ((b * 7919) % N) as u32 * STRIDE);
        let mut m = ExtentMap::default();
        let mut back = ExtentMap::default();
        for b in 0..N {
            m.insert((b * 7919) % N, at((b * 7919) % N), true, STRIDE);
            assert!(back.insert_if_absent(N - 1 - b, at(N - 1 - b), true, STRIDE));
        }
        let d = m.dense.as_ref().expect("scattered blocks turn dense");
        assert!(
            d.slots.capacity() * 12 <= N as usize * 14,
            "{} slots",
            d.slots.capacity()
        );
        assert!(back.dense.is_some());
        assert_eq!(m, back);
        for b in 0..N {
            assert_eq!(m.get(b, STRIDE), Some(at(b)));
        }
        assert_eq!(m.runs_len(STRIDE), N as usize);
        let runs = m.runs(10, 20, STRIDE);
        assert_eq!(runs.len(), 10);
        assert!(runs.iter().all(|r| r.count == 1 && r.lsn == at(r.block)));
        // Removing nine blocks in ten leaves an array mostly of holes.
        for b in (0..N).filter(|b| b % 10 != 0) {
            assert!(m.remove(b, STRIDE));
        }
        assert!(m.dense.is_none(), "back to runs when sparse");
        assert_eq!(
            (m.blocks(), m.runs_len(STRIDE)),
            (N / 10, (N / 10) as usize)
        );
        assert_eq!(m.get(990, STRIDE), Some(at(990)));
        m.truncate(0, STRIDE);
        assert_eq!(m, ExtentMap::default());
    }
}
