//! A simulated disk for power-loss tests, in memory.
//!
//! It keeps two states: what the running system sees, and what is on
//! stable storage. A file's writes and size changes reach stable storage
//! when the file is fsynced (or fdatasynced); a creation, link, rename or
//! removal when its directory is fsynced (a rename, when either of its two
//! directories is). At a power loss the disk keeps what was durable and a
//! random choice of what was not, as ext4 and XFS may:
//!
//! - of each file's unsynced changes: all, none, the oldest few, or any
//!   subset; a kept write may be torn at a 512-byte or 4 KiB boundary
//!   into pieces of which some land, some are lost and some land as
//!   zeros (a size that reached the disk before the data);
//! - of the namespace's unsynced changes: all, none, the oldest few (a
//!   journal replayed to a point), or any subset (a rename lost, a
//!   removal undone); entries left without their directory are gone.
//!
//! Power is cut at a chosen moment ([`Sim::cut_after`]: after so many more
//! changes or syncs, counted across every thread) or at once
//! ([`Sim::power_loss`]). From then on every call fails with EIO, as the
//! calls of a machine that stopped would never return, and
//! [`Sim::power_loss`] hands back the disk as it comes up again. A seed
//! makes the choices repeatable; which thread reaches the cut first is not.

mod power;

use super::{Disk, FileIo, Kind, Meta, OpenMode};
use power::Rng;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// A simulated disk; clones share it.
#[derive(Clone)]
pub struct Sim {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    File(u64),
    Dir,
}

enum Change {
    Write { at: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// Changes since the last sync of this file, oldest first.
    pending: Vec<Change>,
}

enum NameChange {
    Add(PathBuf, Node),
    Remove(PathBuf),
    Rename(PathBuf, PathBuf, Node),
}

impl NameChange {
    /// Whether an fsync of `dir` makes this change durable.
    fn in_dir(&self, dir: &Path) -> bool {
        let parent = |p: &PathBuf| p.parent() == Some(dir);
        match self {
            NameChange::Add(p, _) | NameChange::Remove(p) => parent(p),
            NameChange::Rename(from, to, _) => parent(from) || parent(to),
        }
    }

    fn apply(&self, names: &mut BTreeMap<PathBuf, Node>) {
        match self {
            NameChange::Add(p, node) => {
                names.insert(p.clone(), *node);
            }
            NameChange::Remove(p) => {
                names.remove(p);
            }
            NameChange::Rename(from, to, node) => {
                names.remove(from);
                names.insert(to.clone(), *node);
            }
        }
    }
}

enum Power {
    On,
    /// Cut when this many more changes or syncs have been asked for.
    CutAfter(u64),
    Off,
}

struct State {
    /// Every name as the running system sees it ("/" always exists).
    names: BTreeMap<PathBuf, Node>,
    /// The names on stable storage.
    durable_names: BTreeMap<PathBuf, Node>,
    /// Namespace changes not yet durable, oldest first.
    name_changes: Vec<NameChange>,
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    locked: HashSet<u64>,
    power: Power,
    rng: Rng,
    /// The disk as it comes up after the power loss.
    after: Option<Sim>,
}

fn eio() -> io::Error {
    io::Error::other("simulated disk: the power is off")
}

fn err(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

fn write_at(data: &mut Vec<u8>, at: u64, bytes: &[u8]) {
    let end = at as usize + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[at as usize..end].copy_from_slice(bytes);
}

fn is_root(p: &Path) -> bool {
    p.parent().is_none()
}

impl State {
    /// Counts a change or sync; cuts the power when its moment has come.
    fn step(&mut self) -> io::Result<()> {
        match self.power {
            Power::Off => return Err(eio()),
            Power::CutAfter(0) => {
                self.cut();
                return Err(eio());
            }
            Power::CutAfter(ref mut n) => *n -= 1,
            Power::On => {}
        }
        Ok(())
    }

    fn on(&self) -> io::Result<()> {
        match self.power {
            Power::Off => Err(eio()),
            _ => Ok(()),
        }
    }

    fn dir_exists(&self, p: &Path) -> bool {
        is_root(p) || self.names.get(p) == Some(&Node::Dir)
    }

    fn parent_exists(&self, p: &Path) -> io::Result<()> {
        match p.parent() {
            Some(parent) if self.dir_exists(parent) => Ok(()),
            _ => Err(err(libc::ENOENT)),
        }
    }

    fn change_names(&mut self, change: NameChange) {
        change.apply(&mut self.names);
        self.name_changes.push(change);
    }
}

impl Sim {
    /// An empty disk; `seed` decides what a power loss keeps.
    pub fn new(seed: u64) -> Sim {
        Sim::from_state(State {
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            name_changes: Vec::new(),
            inodes: HashMap::new(),
            next_ino: 1,
            locked: HashSet::new(),
            power: Power::On,
            rng: Rng(seed),
            after: None,
        })
    }

    fn from_state(state: State) -> Sim {
        Sim {
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cuts the power when `n` more changes or syncs have been asked for
    /// (the `n + 1`-th fails and everything after it).
    pub fn cut_after(&self, n: u64) {
        let mut s = self.state();
        if !matches!(s.power, Power::Off) {
            s.power = Power::CutAfter(n);
        }
    }

    /// Whether the power is off.
    pub fn is_off(&self) -> bool {
        matches!(self.state().power, Power::Off)
    }

    /// Cuts the power if it is still on, and returns the disk as it comes
    /// up again: only what was durable, and what the loss chose to keep.
    pub fn power_loss(&self) -> Sim {
        let mut s = self.state();
        if !matches!(s.power, Power::Off) {
            s.cut();
        }
        s.after.clone().expect("the power was cut")
    }

    fn file(&self, ino: u64, writable: bool) -> Box<dyn FileIo> {
        Box::new(SimFile {
            sim: self.clone(),
            ino,
            writable,
            locked: Mutex::new(false),
        })
    }
}

impl Disk for Sim {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FileIo>> {
        let mut s = self.state();
        s.on()?;
        match (s.names.get(path).copied(), mode) {
            (Some(_), OpenMode::CreateNew) => Err(err(libc::EEXIST)),
            (Some(Node::Dir), _) => Err(err(libc::EISDIR)),
            (Some(Node::File(ino)), _) => Ok(self.file(ino, mode.writes())),
            (None, OpenMode::Read | OpenMode::ReadWrite) => Err(err(libc::ENOENT)),
            (None, OpenMode::Create | OpenMode::CreateNew) => {
                s.parent_exists(path)?;
                s.step()?;
                let ino = s.next_ino;
                s.next_ino += 1;
                s.inodes.insert(ino, Inode::default());
                s.change_names(NameChange::Add(path.to_path_buf(), Node::File(ino)));
                Ok(self.file(ino, true))
            }
        }
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<(String, Kind)>> {
        let s = self.state();
        s.on()?;
        if !s.dir_exists(dir) {
            return Err(err(libc::ENOENT));
        }
        Ok(s.names
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .map(|(p, node)| {
                let name = p.file_name().unwrap_or_default();
                let kind = match node {
                    Node::Dir => Kind::Dir,
                    Node::File(_) => Kind::File,
                };
                (name.to_string_lossy().into_owned(), kind)
            })
            .collect())
    }

    fn stat(&self, path: &Path, _follow: bool) -> io::Result<Meta> {
        let s = self.state();
        s.on()?;
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        let (kind, len, mode, ino) = match s.names.get(path) {
            _ if is_root(path) => (Kind::Dir, 0, 0o755, 0),
            Some(Node::Dir) => (Kind::Dir, 0, 0o700, 0),
            Some(Node::File(ino)) => (Kind::File, s.inodes[ino].data.len() as u64, 0o600, *ino),
            None => return Err(err(libc::ENOENT)),
        };
        Ok(Meta {
            kind,
            len,
            mode,
            uid,
            dev: 0,
            ino,
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.on()?;
        let node = *s.names.get(from).ok_or_else(|| err(libc::ENOENT))?;
        s.parent_exists(to)?;
        match (node, s.names.get(to)) {
            (Node::File(_), Some(Node::Dir)) => return Err(err(libc::EISDIR)),
            (Node::Dir, Some(_)) => return Err(err(libc::EEXIST)),
            _ => {}
        }
        s.step()?;
        s.change_names(NameChange::Rename(from.into(), to.into(), node));
        Ok(())
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.on()?;
        let node = *s.names.get(from).ok_or_else(|| err(libc::ENOENT))?;
        if node == Node::Dir {
            return Err(err(libc::EPERM));
        }
        if s.names.contains_key(to) {
            return Err(err(libc::EEXIST));
        }
        s.parent_exists(to)?;
        s.step()?;
        s.change_names(NameChange::Add(to.into(), node));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.on()?;
        match s.names.get(path) {
            None => return Err(err(libc::ENOENT)),
            Some(Node::Dir) => return Err(err(libc::EISDIR)),
            Some(Node::File(_)) => {}
        }
        s.step()?;
        s.change_names(NameChange::Remove(path.into()));
        Ok(())
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.on()?;
        if is_root(path) || s.names.contains_key(path) {
            return Err(err(libc::EEXIST));
        }
        s.parent_exists(path)?;
        s.step()?;
        s.change_names(NameChange::Add(path.into(), Node::Dir));
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let missing: Vec<PathBuf> = {
            let s = self.state();
            s.on()?;
            let mut missing: Vec<PathBuf> = path
                .ancestors()
                .take_while(|a| !s.dir_exists(a))
                .map(Path::to_path_buf)
                .collect();
            missing.reverse();
            missing
        };
        for dir in missing {
            match self.create_dir(&dir) {
                Err(e)
                    if e.kind() == io::ErrorKind::AlreadyExists
                        && self.state().dir_exists(&dir) => {}
                other => other?,
            }
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.on()?;
        if !s.dir_exists(dir) {
            return Err(err(libc::ENOENT));
        }
        s.step()?;
        let changes = std::mem::take(&mut s.name_changes);
        for change in changes {
            if change.in_dir(dir) {
                change.apply(&mut s.durable_names);
            } else {
                s.name_changes.push(change);
            }
        }
        Ok(())
    }

    fn set_mode(&self, path: &Path, _mode: u32) -> io::Result<()> {
        self.stat(path, false).map(|_| ())
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        self.stat(path, true).map(|_| path.to_path_buf())
    }
}

/// An open file of a [`Sim`] disk. It stays usable after its names are
/// gone, as an open file does.
struct SimFile {
    sim: Sim,
    ino: u64,
    writable: bool,
    locked: Mutex<bool>,
}

impl SimFile {
    /// Runs a change of this file's contents (counted towards a cut).
    fn change(&self, f: impl FnOnce(&mut Inode)) -> io::Result<()> {
        if !self.writable {
            return Err(err(libc::EBADF));
        }
        let mut s = self.sim.state();
        s.step()?;
        f(s.inodes.get_mut(&self.ino).expect("open inode"));
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let mut s = self.sim.state();
        s.step()?;
        let inode = s.inodes.get_mut(&self.ino).expect("open inode");
        inode.durable = inode.data.clone();
        inode.pending.clear();
        Ok(())
    }
}

impl FileIo for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let s = self.sim.state();
        s.on()?;
        let data = &s.inodes[&self.ino].data;
        let from = (offset as usize).min(data.len());
        let n = buf.len().min(data.len() - from);
        buf[..n].copy_from_slice(&data[from..from + n]);
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.change(|inode| {
            write_at(&mut inode.data, offset, buf);
            inode.pending.push(Change::Write {
                at: offset,
                bytes: buf.to_vec(),
            });
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.sync()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.change(|inode| {
            inode.data.resize(len as usize, 0);
            inode.pending.push(Change::SetLen(len));
        })
    }

    fn size(&self) -> io::Result<u64> {
        let s = self.sim.state();
        s.on()?;
        Ok(s.inodes[&self.ino].data.len() as u64)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        if self.size()? >= len {
            return Ok(());
        }
        self.set_len(len)
    }

    fn make_private(&self) -> io::Result<bool> {
        self.sim.state().on().map(|()| false)
    }

    fn try_lock(&self) -> io::Result<bool> {
        let mut s = self.sim.state();
        s.on()?;
        let mut mine = self.locked.lock().unwrap_or_else(|p| p.into_inner());
        if *mine {
            return Ok(true);
        }
        *mine = s.locked.insert(self.ino);
        Ok(*mine)
    }

    fn identity(&self) -> io::Result<(u64, u64)> {
        self.sim.state().on()?;
        Ok((0, self.ino))
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        if *self.locked.get_mut().unwrap_or_else(|p| p.into_inner()) {
            self.sim.state().locked.remove(&self.ino);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    /// A volume-like directory with one synced and one unsynced file.
    fn setup(seed: u64) -> Sim {
        let sim = Sim::new(seed);
        sim.create_dir_all(&p("/v/d")).unwrap();
        sim.sync_dir(&p("/v")).unwrap();
        sim.sync_dir(&p("/")).unwrap();
        let f = sim.open(&p("/v/d/synced"), OpenMode::Create).unwrap();
        f.write_all_at(b"durable", 0).unwrap();
        f.sync_data().unwrap();
        sim.sync_dir(&p("/v/d")).unwrap();
        f.write_all_at(&[7u8; 9000], 7).unwrap();
        let g = sim.open(&p("/v/d/unsynced"), OpenMode::Create).unwrap();
        g.write_all_at(b"maybe", 0).unwrap();
        sim
    }

    #[test]
    fn what_was_synced_survives_and_the_rest_may_not() {
        let mut outcomes = HashSet::new();
        for seed in 0..200 {
            let after = setup(seed).power_loss();
            let data = after.read(&p("/v/d/synced")).unwrap();
            assert_eq!(&data[..7], b"durable", "seed {seed}");
            // A torn write may end anywhere its pieces ended.
            assert!(
                (7..=9007).contains(&data.len()),
                "seed {seed}: {}",
                data.len()
            );
            // Every byte past the synced part is the write's, or a zero.
            assert!(data[7..].iter().all(|&b| b == 7 || b == 0), "seed {seed}");
            let torn = data[7..].contains(&0) && data[7..].contains(&7);
            let unsynced = after.read(&p("/v/d/unsynced")).ok();
            assert!(matches!(
                unsynced.as_deref(),
                None | Some(b"maybe" | b"" | [0, 0, 0, 0, 0])
            ));
            outcomes.insert((data.len(), torn, unsynced.is_some()));
        }
        // All of the choices were seen: lost, kept, torn; created or not.
        for want in [(7, false, false), (9007, false, true), (9007, true, true)] {
            assert!(outcomes.contains(&want), "never {want:?}: {outcomes:?}");
        }
    }

    #[test]
    fn a_rename_is_durable_once_its_directory_is_synced() {
        for seed in 0..50 {
            let sim = setup(seed);
            sim.rename(&p("/v/d/synced"), &p("/v/d/moved")).unwrap();
            let lost = sim.power_loss();
            let old = lost.exists(&p("/v/d/synced"));
            assert_ne!(old, lost.exists(&p("/v/d/moved")), "seed {seed}: one name");
            let sim = setup(seed);
            sim.rename(&p("/v/d/synced"), &p("/v/d/moved")).unwrap();
            sim.sync_dir(&p("/v/d")).unwrap();
            let after = sim.power_loss();
            assert!(!after.exists(&p("/v/d/synced")) && after.exists(&p("/v/d/moved")));
        }
    }

    #[test]
    fn the_cut_comes_after_the_counted_steps_and_everything_fails_then() {
        let sim = Sim::new(1);
        sim.create_dir(&p("/v")).unwrap();
        let f = sim.open(&p("/v/f"), OpenMode::Create).unwrap();
        sim.cut_after(2);
        f.write_all_at(b"a", 0).unwrap();
        f.sync_data().unwrap();
        assert!(!sim.is_off());
        assert!(f.write_all_at(b"b", 1).is_err());
        assert!(sim.is_off());
        assert!(f.read_exact_at(&mut [0], 0).is_err());
        assert!(sim.list(&p("/v")).is_err());
        // The file's data was synced, but its name never was.
        let after = sim.power_loss();
        assert!(
            after.open(&p("/v/f"), OpenMode::Read).is_err()
                || after.read(&p("/v/f")).unwrap() == b"a"
        );
    }

    #[test]
    fn names_whose_directory_was_lost_are_gone() {
        let mut seen = HashSet::new();
        for seed in 0..50 {
            let sim = Sim::new(seed);
            // The entry of d in /v is never synced; f's entry in d is.
            sim.create_dir_all(&p("/v/d")).unwrap();
            let f = sim.open(&p("/v/d/f"), OpenMode::Create).unwrap();
            f.sync_all().unwrap();
            sim.sync_dir(&p("/v/d")).unwrap();
            let after = sim.power_loss();
            let (d, f) = (after.exists(&p("/v/d")), after.exists(&p("/v/d/f")));
            assert!(d || !f, "seed {seed}: f outlived its directory");
            seen.insert(d);
        }
        assert_eq!(seen.len(), 2, "the directory was always kept, or never");
    }
}
