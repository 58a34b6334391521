//! What a simulated power loss keeps: of the unsynced namespace changes
//! and of each file's unsynced writes, all, none, the oldest few or any
//! subset, with kept writes possibly torn at sector boundaries. Seeded, so
//! that a failing case can be replayed.

use super::{Change, Inode, Node, Power, Sim, State, is_root, write_at};
use std::collections::{HashMap, HashSet};

/// splitmix64: small, fast and good enough to choose what a crash keeps.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

/// How many of a list of unsynced changes a power loss keeps.
enum Keep {
    All,
    None,
    Oldest(usize),
    Some,
}

impl Keep {
    fn choose(rng: &mut Rng, n: usize) -> Keep {
        match rng.below(4) {
            0 => Keep::All,
            1 => Keep::None,
            2 => Keep::Oldest(rng.below(n as u64 + 1) as usize),
            _ => Keep::Some,
        }
    }

    fn keeps(&self, rng: &mut Rng, i: usize) -> bool {
        match self {
            Keep::All => true,
            Keep::None => false,
            Keep::Oldest(n) => i < *n,
            Keep::Some => rng.coin(),
        }
    }
}

impl State {
    /// Cuts the power: decides what stable storage holds and keeps it as
    /// the disk that comes up again.
    pub(super) fn cut(&mut self) {
        self.power = Power::Off;
        let rng = &mut self.rng;
        let mut names = self.durable_names.clone();
        let keep = Keep::choose(rng, self.name_changes.len());
        for (i, change) in self.name_changes.iter().enumerate() {
            if keep.keeps(rng, i) {
                change.apply(&mut names);
            }
        }
        // Names whose directory did not survive went with it.
        let all = names.clone();
        names.retain(|p, _| {
            p.ancestors()
                .skip(1)
                .all(|a| is_root(a) || all.get(a) == Some(&Node::Dir))
        });
        let mut inodes = HashMap::new();
        for node in names.values() {
            let Node::File(ino) = *node else { continue };
            if inodes.contains_key(&ino) {
                continue;
            }
            let inode = &self.inodes[&ino];
            let mut data = inode.durable.clone();
            let keep = Keep::choose(rng, inode.pending.len());
            for (i, change) in inode.pending.iter().enumerate() {
                if !keep.keeps(rng, i) {
                    continue;
                }
                match change {
                    Change::SetLen(len) => data.resize(*len as usize, 0),
                    Change::Write { at, bytes } => land(rng, &mut data, *at, bytes),
                }
            }
            inodes.insert(
                ino,
                Inode {
                    durable: data.clone(),
                    data,
                    pending: Vec::new(),
                },
            );
        }
        let seed = rng.next();
        self.after = Some(Sim::from_state(State {
            durable_names: names.clone(),
            names,
            name_changes: Vec::new(),
            next_ino: self.next_ino,
            inodes,
            locked: HashSet::new(),
            power: Power::On,
            rng: Rng(seed),
            after: None,
        }));
    }
}

/// Lands an unsynced write at a power loss: whole most of the time, else
/// torn at 512-byte or 4 KiB boundaries, each piece landing, lost, or
/// landing as zeros.
fn land(rng: &mut Rng, data: &mut Vec<u8>, at: u64, bytes: &[u8]) {
    if rng.below(4) != 0 {
        return write_at(data, at, bytes);
    }
    let sector = if rng.coin() { 512 } else { 4096 };
    let end = at + bytes.len() as u64;
    let mut from = at;
    while from < end {
        let to = ((from / sector + 1) * sector).min(end);
        let piece = &bytes[(from - at) as usize..(to - at) as usize];
        match rng.below(3) {
            0 => write_at(data, from, piece),
            1 => write_at(data, from, &vec![0; piece.len()]),
            _ => {}
        }
        from = to;
    }
}
