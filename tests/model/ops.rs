//! The operations: what a test case is made of (`Op`, picked by index so
//! that any sequence means something in any state), the proptest strategies
//! that generate them, and the resolved form (`Action`, with paths) that
//! the reference model predicts and each target performs.

use lsvfs::fs::{RenameMode, XattrMode};
use proptest::prelude::*;

pub const NAMES: [&str; 4] = ["a", "b", "c", "d"];
pub const XATTR_NAMES: [&str; 3] = ["user.a", "user.b", "trusted.c"];
/// Symlink targets: relative, absolute, dangling, and the longest allowed.
pub fn link_target(i: usize) -> Vec<u8> {
    match i % 4 {
        0 => b"a".to_vec(),
        1 => b"../b/c".to_vec(),
        2 => b"/nowhere/at/all".to_vec(),
        _ => vec![b'x'; 4095],
    }
}
pub const OWNERS: [u32; 3] = [0, 1000, 4321];

/// A time to set: left alone, now, or a given second and nanosecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetTime {
    Omit,
    Now,
    At(i64, u32),
}

#[derive(Debug, Clone)]
pub enum Op {
    Create {
        dir: usize,
        name: usize,
    },
    Mkdir {
        dir: usize,
        name: usize,
    },
    Symlink {
        dir: usize,
        name: usize,
        target: usize,
    },
    Write {
        file: usize,
        offset: u64,
        len: usize,
        seed: u8,
    },
    Truncate {
        file: usize,
        size: u64,
    },
    Unlink {
        path: usize,
    },
    Rmdir {
        dir: usize,
    },
    Rename {
        from: usize,
        dir: usize,
        name: usize,
        mode: RenameMode,
    },
    Link {
        file: usize,
        dir: usize,
        name: usize,
    },
    /// lstat: the link itself, not what it points to.
    Stat {
        path: usize,
    },
    Readlink {
        path: usize,
    },
    Chmod {
        path: usize,
        mode: u32,
    },
    Chown {
        path: usize,
        uid: Option<usize>,
        gid: Option<usize>,
    },
    Utimens {
        path: usize,
        atime: SetTime,
        mtime: SetTime,
    },
    SetXattr {
        path: usize,
        name: usize,
        len: usize,
        seed: u8,
        mode: XattrMode,
    },
    GetXattr {
        path: usize,
        name: usize,
    },
    ListXattr {
        path: usize,
    },
    RemoveXattr {
        path: usize,
        name: usize,
    },
    /// Opens a regular file; the handle stays open until `Release`.
    Open {
        file: usize,
    },
    HandleWrite {
        handle: usize,
        offset: u64,
        len: usize,
        seed: u8,
    },
    HandleRead {
        handle: usize,
    },
    Release {
        handle: usize,
    },
    SyncPoint,
    Fsync,
    Reopen,
    /// Crash; with `tear`, also garble the log past the durable position
    /// from a point chosen by `at` (a fraction in 1/256ths).
    Crash {
        tear: bool,
        at: u8,
        zeros: bool,
    },
    /// On the simulated disk: cut the power after this many more disk
    /// changes and syncs.
    PowerLoss {
        after: u16,
    },
    /// Closes the volume and rolls it back to one of the sync points taken
    /// (chosen by `to`); with `halt`, the rollback stops after that many
    /// of its changes as a crash would, and the next open completes it.
    Rollback {
        to: usize,
        halt: Option<u8>,
    },
}

/// An operation resolved against the model: paths instead of indices.
/// Paths start with `/` and are relative to the root; the root is `""`.
#[derive(Debug, Clone)]
pub enum Action {
    Create {
        path: String,
        dir: bool,
    },
    Symlink {
        path: String,
        target: Vec<u8>,
    },
    Write {
        path: String,
        offset: u64,
        bytes: Vec<u8>,
    },
    Truncate {
        path: String,
        size: u64,
    },
    Unlink {
        path: String,
    },
    Rmdir {
        path: String,
    },
    Rename {
        from: String,
        to: String,
        mode: RenameMode,
    },
    Link {
        from: String,
        to: String,
    },
    Stat {
        path: String,
    },
    Readlink {
        path: String,
    },
    Chmod {
        path: String,
        mode: u32,
    },
    Chown {
        path: String,
        uid: Option<u32>,
        gid: Option<u32>,
    },
    Utimens {
        path: String,
        atime: SetTime,
        mtime: SetTime,
    },
    SetXattr {
        path: String,
        name: String,
        value: Vec<u8>,
        mode: XattrMode,
    },
    GetXattr {
        path: String,
        name: String,
    },
    ListXattr {
        path: String,
    },
    RemoveXattr {
        path: String,
        name: String,
    },
    Open {
        path: String,
    },
    HandleWrite {
        handle: usize,
        offset: u64,
        bytes: Vec<u8>,
    },
    HandleRead {
        handle: usize,
    },
    Release {
        handle: usize,
    },
}

/// What `lstat` says, as far as the model knows it: a time the model
/// cannot know (set to now by the target) is `None` and not compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// `d`, `f` or `l`.
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    /// 0 for directories (their size is the engine's own affair).
    pub size: u64,
    pub atime: Option<(i64, u32)>,
    pub mtime: Option<(i64, u32)>,
}

impl Stat {
    /// This, with the times `known` does not know forgotten.
    pub fn masked_by(&self, known: &Stat) -> Stat {
        Stat {
            atime: self.atime.filter(|_| known.atime.is_some()),
            mtime: self.mtime.filter(|_| known.mtime.is_some()),
            ..self.clone()
        }
    }
}

/// What an action returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Done,
    Written(usize),
    Bytes(Vec<u8>),
    Names(Vec<Vec<u8>>),
    Stat(Stat),
}

/// An action's result: a value or an errno.
pub type Outcome = Result<Value, i32>;

/// Whether a target's outcome is the one the model predicts (the times the
/// model does not know are not compared).
pub fn agrees(got: &Outcome, want: &Outcome) -> bool {
    match (got, want) {
        (Ok(Value::Stat(g)), Ok(Value::Stat(w))) => g.masked_by(w) == *w,
        _ => got == want,
    }
}

pub fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i / 7) as u8) | 1)
        .collect()
}

fn set_time() -> impl Strategy<Value = SetTime> {
    prop_oneof![
        1 => Just(SetTime::Omit),
        1 => Just(SetTime::Now),
        3 => (0..2_000_000_000i64, 0..1_000_000_000u32).prop_map(|(s, n)| SetTime::At(s, n)),
    ]
}

fn xattr_mode() -> impl Strategy<Value = XattrMode> {
    prop_oneof![
        2 => Just(XattrMode::Any),
        1 => Just(XattrMode::Create),
        1 => Just(XattrMode::Replace),
    ]
}

fn rename_mode() -> impl Strategy<Value = RenameMode> {
    prop_oneof![
        2 => Just(RenameMode::Replace),
        1 => Just(RenameMode::NoReplace),
        1 => Just(RenameMode::Exchange),
    ]
}

/// Operations on names and contents, as the model had them first.
fn namespace_op() -> impl Strategy<Value = Op> {
    let i = || 0..16usize;
    let n = || 0..NAMES.len();
    prop_oneof![
        6 => (i(), n()).prop_map(|(dir, name)| Op::Create { dir, name }),
        3 => (i(), n()).prop_map(|(dir, name)| Op::Mkdir { dir, name }),
        8 => (i(), 0..5000u64, 0..3000usize, any::<u8>())
            .prop_map(|(file, offset, len, seed)| Op::Write { file, offset, len, seed }),
        3 => (i(), 0..6000u64).prop_map(|(file, size)| Op::Truncate { file, size }),
        2 => i().prop_map(|path| Op::Unlink { path }),
        2 => i().prop_map(|dir| Op::Rmdir { dir }),
        3 => (i(), i(), n(), rename_mode())
            .prop_map(|(from, dir, name, mode)| Op::Rename { from, dir, name, mode }),
        2 => (i(), i(), n()).prop_map(|(file, dir, name)| Op::Link { file, dir, name }),
    ]
}

/// Symlinks, attributes, extended attributes and open handles.
fn attribute_op() -> impl Strategy<Value = Op> {
    let i = || 0..16usize;
    let x = || 0..XATTR_NAMES.len();
    let owner = || proptest::option::of(0..OWNERS.len());
    prop_oneof![
        2 => (i(), 0..NAMES.len(), 0..4usize)
            .prop_map(|(dir, name, target)| Op::Symlink { dir, name, target }),
        1 => i().prop_map(|path| Op::Stat { path }),
        1 => i().prop_map(|path| Op::Readlink { path }),
        1 => (i(), 0..0o10000u32).prop_map(|(path, mode)| Op::Chmod { path, mode }),
        1 => (i(), owner(), owner()).prop_map(|(path, uid, gid)| Op::Chown { path, uid, gid }),
        1 => (i(), set_time(), set_time())
            .prop_map(|(path, atime, mtime)| Op::Utimens { path, atime, mtime }),
        2 => (i(), x(), 0..40usize, any::<u8>(), xattr_mode())
            .prop_map(|(path, name, len, seed, mode)| Op::SetXattr { path, name, len, seed, mode }),
        1 => (i(), x()).prop_map(|(path, name)| Op::GetXattr { path, name }),
        1 => i().prop_map(|path| Op::ListXattr { path }),
        1 => (i(), x()).prop_map(|(path, name)| Op::RemoveXattr { path, name }),
        2 => i().prop_map(|file| Op::Open { file }),
        2 => (i(), 0..5000u64, 0..3000usize, any::<u8>())
            .prop_map(|(handle, offset, len, seed)| Op::HandleWrite { handle, offset, len, seed }),
        1 => i().prop_map(|handle| Op::HandleRead { handle }),
        1 => i().prop_map(|handle| Op::Release { handle }),
    ]
}

/// Every operation a real mount runs too: no sync points, crashes or
/// power losses (those concern the engine, tested without a kernel).
pub fn mount_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        29 => namespace_op(),
        20 => attribute_op(),
        1 => Just(Op::Fsync),
        1 => Just(Op::Reopen),
    ]
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        29 => namespace_op(),
        20 => attribute_op(),
        2 => Just(Op::SyncPoint),
        1 => Just(Op::Fsync),
        1 => Just(Op::Reopen),
        1 => (any::<bool>(), any::<u8>(), any::<bool>())
            .prop_map(|(tear, at, zeros)| Op::Crash { tear, at, zeros }),
        1 => (any::<usize>(), proptest::option::of(1..6u8))
            .prop_map(|(to, halt)| Op::Rollback { to, halt }),
    ]
}

/// The operations with power losses among them, cut soon (inside the next
/// operation) or later (inside one further on, or the archiver's work).
pub fn op_or_power_loss() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => op(),
        1 => (0..8u16).prop_map(|after| Op::PowerLoss { after }),
        1 => (0..120u16).prop_map(|after| Op::PowerLoss { after }),
    ]
}
