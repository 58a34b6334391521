//! The reference model: random sequences of file operations run against
//! the engine (through its POSIX layer) and against a plain in-memory tree.
//! After every operation their errors agree; after every reopen — clean, or
//! after a crash that may also tear the part of the log not yet durable —
//! the engine equals the model; and the view of every sync point ever taken
//! equals the model's copy made at that sync point.
//!
//! The same sequences run on a simulated disk with power losses: the power
//! is cut after a random number of disk changes and syncs, counted across
//! the engine's threads (so also inside a sync point, a seal, or a retire
//! by the archiver), and the disk comes up again with only what was
//! durable and a random part of the rest. Recovery must succeed; every
//! sync point acknowledged must rebuild exactly; the live tree must be the
//! model as it was after some operation since the last acknowledged fsync
//! or sync point (so each operation is there whole or not at all).

mod common;

use common::{Content, Dump, Node, dump};
use lsvfs::disk::{Disk, OpenMode, Sim};
use lsvfs::format::FileKind;
use lsvfs::fs::{Fs, FsError, ROOT_OWNER, RenameMode};
use lsvfs::store::{BackingStore, Memory};
use lsvfs::volume::{OpenOptions, ROOT_INO, Volume};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

#[derive(Debug, Clone)]
enum Op {
    Create {
        dir: usize,
        name: usize,
    },
    Mkdir {
        dir: usize,
        name: usize,
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
}

fn op() -> impl Strategy<Value = Op> {
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
        3 => (i(), i(), n(), prop_oneof![
            2 => Just(RenameMode::Replace),
            1 => Just(RenameMode::NoReplace),
            1 => Just(RenameMode::Exchange),
        ])
            .prop_map(|(from, dir, name, mode)| Op::Rename { from, dir, name, mode }),
        2 => (i(), i(), n()).prop_map(|(file, dir, name)| Op::Link { file, dir, name }),
        2 => Just(Op::SyncPoint),
        1 => Just(Op::Fsync),
        1 => Just(Op::Reopen),
        1 => (any::<bool>(), any::<u8>(), any::<bool>())
            .prop_map(|(tear, at, zeros)| Op::Crash { tear, at, zeros }),
    ]
}

/// The operations with power losses among them, cut soon (inside the next
/// operation) or later (inside one further on, or the archiver's work).
fn op_or_power_loss() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => op(),
        1 => (0..8u16).prop_map(|after| Op::PowerLoss { after }),
        1 => (0..120u16).prop_map(|after| Op::PowerLoss { after }),
    ]
}

/// The model: a tree of inodes with plain byte vectors for contents.
#[derive(Debug, Clone, Default)]
struct Model {
    next: u64,
    inodes: HashMap<u64, MInode>,
}

#[derive(Debug, Clone)]
enum MInode {
    Dir(BTreeMap<String, u64>),
    File { data: Vec<u8>, nlink: u32 },
}

const MROOT: u64 = 0;

impl Model {
    fn new() -> Self {
        let mut m = Model {
            next: 1,
            ..Default::default()
        };
        m.inodes.insert(MROOT, MInode::Dir(BTreeMap::new()));
        m
    }

    fn dir(&self, ino: u64) -> &BTreeMap<String, u64> {
        match &self.inodes[&ino] {
            MInode::Dir(d) => d,
            _ => unreachable!(),
        }
    }

    fn dir_mut(&mut self, ino: u64) -> &mut BTreeMap<String, u64> {
        match self.inodes.get_mut(&ino) {
            Some(MInode::Dir(d)) => d,
            _ => unreachable!(),
        }
    }

    fn is_dir(&self, ino: u64) -> bool {
        matches!(self.inodes[&ino], MInode::Dir(_))
    }

    /// Every path with its parent, name and inode, in path order.
    fn paths(&self) -> Vec<(String, u64, String, u64)> {
        let mut out = Vec::new();
        let mut stack = vec![(MROOT, String::new())];
        while let Some((dir, path)) = stack.pop() {
            for (name, &ino) in self.dir(dir) {
                let p = format!("{path}/{name}");
                if self.is_dir(ino) {
                    stack.push((ino, p.clone()));
                }
                out.push((p, dir, name.clone(), ino));
            }
        }
        out.sort();
        out
    }

    fn dirs(&self) -> Vec<(String, u64)> {
        let mut v = vec![(String::new(), MROOT)];
        v.extend(
            self.paths()
                .into_iter()
                .filter(|(_, _, _, i)| self.is_dir(*i))
                .map(|(p, _, _, i)| (p, i)),
        );
        v
    }

    fn files(&self) -> Vec<(String, u64)> {
        self.paths()
            .into_iter()
            .filter(|(_, _, _, i)| !self.is_dir(*i))
            .map(|(p, _, _, i)| (p, i))
            .collect()
    }

    fn dump(&self) -> Dump {
        let mut out = Dump::new();
        let mut first: HashMap<u64, String> = HashMap::new();
        for (p, _, _, ino) in self.paths() {
            first.entry(ino).or_insert(p);
        }
        for (p, _, _, ino) in self.paths() {
            let node = match &self.inodes[&ino] {
                MInode::Dir(d) => Node::Dir {
                    nlink: 2 + d.values().filter(|&&c| self.is_dir(c)).count() as u32,
                },
                MInode::File { data, nlink } => Node::File {
                    content: Content(data.clone()),
                    nlink: *nlink,
                    first_path: first[&ino].clone(),
                },
            };
            out.insert(p, node);
        }
        out
    }

    fn is_ancestor(&self, anc: u64, mut dir: u64) -> bool {
        let parents: HashMap<u64, u64> = self
            .paths()
            .into_iter()
            .filter(|(_, _, _, i)| self.is_dir(*i))
            .map(|(_, parent, _, i)| (i, parent))
            .collect();
        loop {
            if dir == anc {
                return true;
            }
            if dir == MROOT {
                return false;
            }
            dir = parents[&dir];
        }
    }

    fn drop_link(&mut self, ino: u64) {
        match self.inodes.get_mut(&ino) {
            Some(MInode::File { nlink, .. }) if *nlink > 1 => *nlink -= 1,
            _ => {
                self.inodes.remove(&ino);
            }
        }
    }
}

fn errno(r: Result<impl Sized, FsError>) -> i32 {
    r.err().map_or(0, |e| e.errno())
}

/// Finds the engine inode for a model path.
fn resolve(fs: &Fs, path: &str) -> Result<u64, FsError> {
    let mut ino = ROOT_INO;
    for part in path.split('/').filter(|s| !s.is_empty()) {
        ino = fs.lookup(ino, part.as_bytes())?.0;
    }
    Ok(ino)
}

fn pick<T: Clone>(v: &[T], i: usize) -> Option<T> {
    (!v.is_empty()).then(|| v[i % v.len()].clone())
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i / 7) as u8) | 1)
        .collect()
}

/// Where a harness keeps its volume.
enum Place {
    Real(tempfile::TempDir),
    /// A simulated disk, replaced by what comes up after each power loss.
    Sim(Sim),
}

/// How an operation ended.
enum Step {
    Done,
    /// The simulated power went off during it.
    PowerOff,
}

struct Harness {
    place: Place,
    /// On the simulated disk the backing store is off the machine (a
    /// local store on the same disk would stall a run after a cut: the
    /// archiver retries a failing store and writes wait for it).
    store: Option<Arc<dyn BackingStore>>,
    fs: Option<Fs>,
    model: Model,
    /// Model copies taken at each sync point, by id.
    points: BTreeMap<u64, Dump>,
    /// Model states since the last durable point; index 0 is durable.
    since_durable: Vec<Model>,
    /// The model at a sync point asked for but not acknowledged when the
    /// power went: it may be there after the loss, or not.
    unacked_point: Option<Dump>,
    /// A power cut is due (the live tree is not compared meanwhile: a
    /// read may meet the cut).
    armed: bool,
}

/// Unwraps an engine result; once the simulated power is off any error
/// ends the operation, otherwise an error fails the test.
macro_rules! engine {
    ($h:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(_) if $h.off() => return Ok(Step::PowerOff),
            Err(e) => return Err(TestCaseError::fail(format!("{}: {e:?}", stringify!($e)))),
        }
    };
}

const SIM_VOLUME: &str = "/sim/v";

impl Harness {
    fn new(sim_seed: Option<u64>) -> Self {
        let policy = common::small_policy();
        let place = match sim_seed {
            None => Place::Real(tempfile::tempdir().unwrap()),
            Some(seed) => Place::Sim(Sim::new(seed)),
        };
        let store = sim_seed.map(|_| Arc::new(Memory::new()) as Arc<dyn BackingStore>);
        let mut h = Harness {
            place,
            store,
            fs: None,
            model: Model::new(),
            points: BTreeMap::new(),
            since_durable: Vec::new(),
            unacked_point: None,
            armed: false,
        };
        match &h.place {
            Place::Real(_) => Volume::create(&h.path(), &policy).unwrap(),
            Place::Sim(sim) => Volume::create_on(sim, &h.path(), &policy).unwrap(),
        }
        h.fs = Some(Fs::new(h.open().unwrap()).unwrap());
        h.durable_now();
        h
    }

    fn fs(&self) -> &Fs {
        self.fs.as_ref().unwrap()
    }

    fn path(&self) -> PathBuf {
        match &self.place {
            Place::Real(dir) => dir.path().join("v"),
            Place::Sim(_) => PathBuf::from(SIM_VOLUME),
        }
    }

    fn disk(&self) -> Arc<dyn Disk> {
        match &self.place {
            Place::Real(_) => lsvfs::disk::real(),
            Place::Sim(sim) => Arc::new(sim.clone()),
        }
    }

    fn open(&self) -> lsvfs::error::Result<Volume> {
        let options = OpenOptions {
            disk: Some(self.disk()),
            store: self.store.clone(),
            ..Default::default()
        };
        Volume::open_with(&self.path(), options)
    }

    /// Whether the simulated power is off.
    fn off(&self) -> bool {
        matches!(&self.place, Place::Sim(sim) if sim.is_off())
    }

    fn durable_now(&mut self) {
        self.since_durable = vec![self.model.clone()];
    }

    /// Runs one operation, and recovers if the power went off during it.
    fn run(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let step = match op {
            Op::SyncPoint | Op::Fsync | Op::Reopen | Op::Crash { .. } | Op::PowerLoss { .. } => {
                self.control(op)?
            }
            _ => {
                let step = self.apply(op)?;
                self.since_durable.push(self.model.clone());
                step
            }
        };
        match step {
            Step::PowerOff => self.power_loss(),
            Step::Done if self.off() => self.power_loss(),
            Step::Done if self.armed => Ok(()),
            Step::Done => self.check_live(),
        }
    }

    fn apply(&mut self, op: &Op) -> Result<Step, TestCaseError> {
        let fs = self.fs.as_ref().unwrap();
        let m = &mut self.model;
        match op.clone() {
            Op::Create { dir, name } | Op::Mkdir { dir, name } => {
                let (dpath, dino) = pick(&m.dirs(), dir).unwrap();
                let name = NAMES[name];
                let mkdir = matches!(op, Op::Mkdir { .. });
                let kind = if mkdir {
                    FileKind::Directory
                } else {
                    FileKind::Regular
                };
                let parent = engine!(self, resolve(fs, &dpath));
                let got = errno(fs.mknod(parent, name.as_bytes(), kind, 0o644, ROOT_OWNER, 0));
                let want = if m.dir(dino).contains_key(name) {
                    libc::EEXIST
                } else {
                    let ino = m.next;
                    m.next += 1;
                    let node = if mkdir {
                        MInode::Dir(BTreeMap::new())
                    } else {
                        MInode::File {
                            data: Vec::new(),
                            nlink: 1,
                        }
                    };
                    m.inodes.insert(ino, node);
                    m.dir_mut(dino).insert(name.to_string(), ino);
                    0
                };
                prop_assert!(got == want || self.off(), "{:?} in {}: {}", op, dpath, got);
            }
            Op::Write {
                file,
                offset,
                len,
                seed,
            } => {
                let Some((path, ino)) = pick(&m.files(), file) else {
                    return Ok(Step::Done);
                };
                let bytes = content(len, seed);
                let eino = engine!(self, resolve(fs, &path));
                let wrote = fs.write(eino, offset, &bytes);
                if let Some(MInode::File { data, .. }) = m.inodes.get_mut(&ino)
                    && len > 0
                {
                    let end = offset as usize + len;
                    if data.len() < end {
                        data.resize(end, 0);
                    }
                    data[offset as usize..end].copy_from_slice(&bytes);
                }
                prop_assert!(
                    wrote.as_ref().ok() == Some(&len) || self.off(),
                    "{:?}",
                    wrote
                );
            }
            Op::Truncate { file, size } => {
                let Some((path, ino)) = pick(&m.files(), file) else {
                    return Ok(Step::Done);
                };
                let eino = engine!(self, resolve(fs, &path));
                let done = fs.truncate(eino, size);
                if let Some(MInode::File { data, .. }) = m.inodes.get_mut(&ino) {
                    data.resize(size as usize, 0);
                }
                prop_assert!(done.is_ok() || self.off(), "{:?}", done.err());
            }
            Op::Unlink { path } => {
                let Some((p, parent, name, ino)) = pick(&m.paths(), path) else {
                    return Ok(Step::Done);
                };
                let eparent = engine!(self, resolve(fs, &p[..p.rfind('/').unwrap()]));
                let got = errno(fs.unlink(eparent, name.as_bytes()));
                let want = if m.is_dir(ino) {
                    libc::EISDIR
                } else {
                    m.dir_mut(parent).remove(&name);
                    m.drop_link(ino);
                    0
                };
                prop_assert!(got == want || self.off(), "unlink {}: {}", p, got);
            }
            Op::Rmdir { dir } => {
                let Some((p, parent, name, ino)) = pick(&m.paths(), dir) else {
                    return Ok(Step::Done);
                };
                let eparent = engine!(self, resolve(fs, &p[..p.rfind('/').unwrap()]));
                let got = errno(fs.rmdir(eparent, name.as_bytes()));
                let want = if !m.is_dir(ino) {
                    libc::ENOTDIR
                } else if !m.dir(ino).is_empty() {
                    libc::ENOTEMPTY
                } else {
                    m.dir_mut(parent).remove(&name);
                    m.inodes.remove(&ino);
                    0
                };
                prop_assert!(got == want || self.off(), "rmdir {}: {}", p, got);
            }
            Op::Rename {
                from,
                dir,
                name,
                mode,
            } => {
                let Some((p, parent, sname, ino)) = pick(&m.paths(), from) else {
                    return Ok(Step::Done);
                };
                let (dpath, dino) = pick(&m.dirs(), dir).unwrap();
                let dname = NAMES[name].to_string();
                let eparent = engine!(self, resolve(fs, &p[..p.rfind('/').unwrap()]));
                let edir = engine!(self, resolve(fs, &dpath));
                let got = errno(fs.rename(eparent, sname.as_bytes(), edir, dname.as_bytes(), mode));
                let target = m.dir(dino).get(&dname).copied();
                let into_itself = m.is_dir(ino) && m.is_ancestor(ino, dino);
                let want = match (mode, target) {
                    (RenameMode::NoReplace, Some(_)) => libc::EEXIST,
                    (RenameMode::Exchange, None) => libc::ENOENT,
                    (_, Some(t)) if t == ino => 0,
                    (RenameMode::Exchange, Some(t)) => {
                        if into_itself || (m.is_dir(t) && m.is_ancestor(t, parent)) {
                            libc::EINVAL
                        } else {
                            m.dir_mut(parent).insert(sname.clone(), t);
                            m.dir_mut(dino).insert(dname.clone(), ino);
                            0
                        }
                    }
                    _ if into_itself => libc::EINVAL,
                    (_, Some(t)) if m.is_dir(ino) && !m.is_dir(t) => libc::ENOTDIR,
                    (_, Some(t)) if !m.is_dir(ino) && m.is_dir(t) => libc::EISDIR,
                    (_, Some(t)) if m.is_dir(t) && !m.dir(t).is_empty() => libc::ENOTEMPTY,
                    _ => {
                        if let Some(t) = target {
                            m.drop_link(t);
                        }
                        m.dir_mut(parent).remove(&sname);
                        m.dir_mut(dino).insert(dname.clone(), ino);
                        0
                    }
                };
                prop_assert!(
                    got == want || self.off(),
                    "rename {:?} {} -> {}/{}: {}",
                    mode,
                    p,
                    dpath,
                    dname,
                    got
                );
            }
            Op::Link { file, dir, name } => {
                let Some((p, ino)) = pick(&m.files(), file) else {
                    return Ok(Step::Done);
                };
                let (dpath, dino) = pick(&m.dirs(), dir).unwrap();
                let dname = NAMES[name];
                let eino = engine!(self, resolve(fs, &p));
                let edir = engine!(self, resolve(fs, &dpath));
                let got = errno(fs.link(eino, edir, dname.as_bytes()));
                let want = if m.dir(dino).contains_key(dname) {
                    libc::EEXIST
                } else {
                    m.dir_mut(dino).insert(dname.to_string(), ino);
                    if let Some(MInode::File { nlink, .. }) = m.inodes.get_mut(&ino) {
                        *nlink += 1;
                    }
                    0
                };
                prop_assert!(
                    got == want || self.off(),
                    "link {} -> {}/{}: {}",
                    p,
                    dpath,
                    dname,
                    got
                );
            }
            Op::SyncPoint | Op::Fsync | Op::Reopen | Op::Crash { .. } | Op::PowerLoss { .. } => {
                unreachable!("handled by control")
            }
        }
        Ok(Step::Done)
    }

    /// Operations on the volume as a whole: durability, reopen, crash.
    fn control(&mut self, op: &Op) -> Result<Step, TestCaseError> {
        match *op {
            Op::SyncPoint => {
                let dump = self.model.dump();
                match self.fs().volume().sync_point("model", "test") {
                    Ok(p) => {
                        self.points.insert(p.info.id, dump);
                        self.durable_now();
                    }
                    Err(_) if self.off() => self.unacked_point = Some(dump),
                    Err(e) => return Err(TestCaseError::fail(format!("sync point: {e}"))),
                }
            }
            Op::Fsync => {
                engine!(self, self.fs().fsync());
                self.durable_now();
            }
            Op::Reopen => {
                engine!(self, self.fs.take().unwrap().into_volume().close());
                let vol = engine!(self, self.open());
                self.fs = Some(Fs::new(vol).unwrap());
                self.durable_now();
                if !self.armed {
                    self.check_points()?;
                }
            }
            Op::Crash { tear, at, zeros } => {
                // Durable as of when the engine stopped: the archiver may
                // make its copies durable while it is being stopped.
                let durable = self.fs.take().unwrap().into_volume().crash();
                if tear && !self.armed {
                    tear_log(&*self.disk(), &self.path(), durable, at, zeros);
                }
                let vol = engine!(self, self.open());
                self.fs = Some(Fs::new(vol).unwrap());
                if !self.armed {
                    self.check_recovered()?;
                }
            }
            Op::PowerLoss { after } => {
                if let Place::Sim(sim) = &self.place {
                    sim.cut_after(after as u64);
                    self.armed = true;
                }
            }
            _ => unreachable!("not a control operation"),
        }
        Ok(Step::Done)
    }

    /// After a power loss: the disk comes up with what survived, the volume
    /// recovers on it, and what it holds is checked.
    fn power_loss(&mut self) -> Result<(), TestCaseError> {
        let Place::Sim(sim) = &self.place else {
            unreachable!("power losses happen on the simulated disk")
        };
        let after = sim.power_loss();
        if let Some(fs) = self.fs.take() {
            fs.into_volume().crash();
        }
        self.place = Place::Sim(after);
        self.armed = false;
        let vol = self.open();
        prop_assert!(
            vol.is_ok(),
            "recovery after a power loss failed: {}",
            vol.err().unwrap()
        );
        self.fs = Some(Fs::new(vol.unwrap()).unwrap());
        self.check_recovered()
    }

    /// After a crash or power loss the engine must equal the model after
    /// some operation at or past the last durable point, and every sync
    /// point must rebuild.
    fn check_recovered(&mut self) -> Result<(), TestCaseError> {
        let got = dump(&self.fs().volume().tree());
        let found = self.since_durable.iter().rposition(|s| s.dump() == got);
        prop_assert!(
            found.is_some(),
            "state after crash matches no prefix: {:#?}",
            got
        );
        self.model = self.since_durable[found.unwrap()].clone();
        self.durable_now();
        self.check_points()
    }

    fn check_live(&self) -> Result<(), TestCaseError> {
        prop_assert_eq!(dump(&self.fs().volume().tree()), self.model.dump());
        Ok(())
    }

    /// Every sync point rebuilds exactly as the model was when it was taken;
    /// one not acknowledged before a power loss may be there too.
    fn check_points(&mut self) -> Result<(), TestCaseError> {
        let listed: Vec<u64> = self
            .fs()
            .volume()
            .sync_points()
            .iter()
            .map(|p| p.info.id)
            .collect();
        if let Some(dump) = self.unacked_point.take()
            && let Some(&last) = listed.last()
            && !self.points.contains_key(&last)
        {
            self.points.insert(last, dump);
        }
        prop_assert_eq!(listed, self.points.keys().copied().collect::<Vec<_>>());
        for (id, want) in &self.points {
            let view = self.fs().volume().view(*id).unwrap();
            prop_assert_eq!(&dump(&view.tree()), want, "sync point {}", id);
        }
        Ok(())
    }

    /// Closes cleanly (cutting a power loss still due first), reopens and
    /// checks everything.
    fn finish(mut self) -> Result<(), TestCaseError> {
        if self.armed {
            return self.power_loss();
        }
        self.fs.take().unwrap().into_volume().close().unwrap();
        let vol = self.open().unwrap();
        self.fs = Some(Fs::new(vol).unwrap());
        self.check_points()?;
        self.check_live()
    }
}

/// Garbles the tail segment from a point past the durable position:
/// either zeros to the end or a burst of junk bytes.
fn tear_log(disk: &dyn Disk, vol: &Path, durable: lsvfs::format::Lsn, at: u8, zeros: bool) {
    let path = vol
        .join("segments")
        .join(format!("{:016}.seg", durable.seq));
    let file = disk.open(&path, OpenMode::ReadWrite).unwrap();
    let span = 4096u64 * 4;
    let from = durable.offset as u64 + span * at as u64 / 256;
    let limit = (64u64 << 10) - 64;
    if from >= limit {
        return;
    }
    let len = if zeros {
        limit - from
    } else {
        (limit - from).min(300)
    };
    let junk: Vec<u8> = (0..len)
        .map(|i| {
            if zeros {
                0
            } else {
                (i as u8).wrapping_mul(31) ^ at
            }
        })
        .collect();
    file.write_all_at(&junk, from).unwrap();
}

/// Power-loss cases: `LSVFS_POWER_CASES` overrides (a long local run).
fn power_cases() -> u32 {
    std::env::var("LSVFS_POWER_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 160,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mut h = Harness::new(None);
        for op in &ops {
            h.run(op)?;
        }
        h.finish()?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: power_cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// A failure prints the operations and the disk's seed: run again with
    /// them to reproduce (the order in which the engine's threads meet the
    /// cut can differ from run to run).
    #[test]
    fn engine_survives_power_loss(
        seed in any::<u64>(),
        ops in proptest::collection::vec(op_or_power_loss(), 1..80),
    ) {
        let mut h = Harness::new(Some(seed));
        for op in &ops {
            h.run(op)?;
        }
        h.finish()?;
    }
}
