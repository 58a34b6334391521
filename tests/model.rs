//! The reference model: random sequences of file operations run against
//! the engine (through its POSIX layer) and against a plain in-memory tree.
//! After every operation their errors agree; after every reopen — clean, or
//! after a crash that may also tear the part of the log not yet durable —
//! the engine equals the model; and the view of every sync point ever taken
//! equals the model's copy made at that sync point.

mod common;

use common::{Content, Dump, Node, dump};
use lsvfs::format::FileKind;
use lsvfs::fs::{Fs, FsError, ROOT_OWNER, RenameMode};
use lsvfs::volume::{ROOT_INO, Volume};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::FileExt;
use std::path::Path;

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
fn resolve(fs: &Fs, path: &str) -> u64 {
    let mut ino = ROOT_INO;
    for part in path.split('/').filter(|s| !s.is_empty()) {
        ino = fs.lookup(ino, part.as_bytes()).unwrap().0;
    }
    ino
}

fn pick<T: Clone>(v: &[T], i: usize) -> Option<T> {
    (!v.is_empty()).then(|| v[i % v.len()].clone())
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i / 7) as u8) | 1)
        .collect()
}

struct Harness {
    dir: tempfile::TempDir,
    fs: Option<Fs>,
    model: Model,
    /// Model copies taken at each sync point, by id.
    points: BTreeMap<u64, Dump>,
    /// Model states since the last durable point; index 0 is durable.
    since_durable: Vec<Model>,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let vol = common::create(&dir.path().join("v"), &common::small_policy());
        let fs = Fs::new(vol).unwrap();
        let model = Model::new();
        Harness {
            dir,
            fs: Some(fs),
            since_durable: vec![model.clone()],
            model,
            points: BTreeMap::new(),
        }
    }

    fn fs(&self) -> &Fs {
        self.fs.as_ref().unwrap()
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("v")
    }

    fn durable_now(&mut self) {
        self.since_durable = vec![self.model.clone()];
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        if matches!(
            op,
            Op::SyncPoint | Op::Fsync | Op::Reopen | Op::Crash { .. }
        ) {
            return self.control(op);
        }
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
                let parent = resolve(fs, &dpath);
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
                prop_assert_eq!(got, want, "{:?} in {}", op, dpath);
            }
            Op::Write {
                file,
                offset,
                len,
                seed,
            } => {
                let Some((path, ino)) = pick(&m.files(), file) else {
                    return Ok(());
                };
                let bytes = content(len, seed);
                let eino = resolve(fs, &path);
                prop_assert_eq!(fs.write(eino, offset, &bytes).unwrap(), len);
                if let Some(MInode::File { data, .. }) = m.inodes.get_mut(&ino)
                    && len > 0
                {
                    let end = offset as usize + len;
                    if data.len() < end {
                        data.resize(end, 0);
                    }
                    data[offset as usize..end].copy_from_slice(&bytes);
                }
            }
            Op::Truncate { file, size } => {
                let Some((path, ino)) = pick(&m.files(), file) else {
                    return Ok(());
                };
                let eino = resolve(fs, &path);
                fs.truncate(eino, size).unwrap();
                if let Some(MInode::File { data, .. }) = m.inodes.get_mut(&ino) {
                    data.resize(size as usize, 0);
                }
            }
            Op::Unlink { path } => {
                let Some((p, parent, name, ino)) = pick(&m.paths(), path) else {
                    return Ok(());
                };
                let eparent = resolve(fs, &p[..p.rfind('/').unwrap()]);
                let got = errno(fs.unlink(eparent, name.as_bytes()));
                let want = if m.is_dir(ino) {
                    libc::EISDIR
                } else {
                    m.dir_mut(parent).remove(&name);
                    m.drop_link(ino);
                    0
                };
                prop_assert_eq!(got, want, "unlink {}", p);
            }
            Op::Rmdir { dir } => {
                let Some((p, parent, name, ino)) = pick(&m.paths(), dir) else {
                    return Ok(());
                };
                let eparent = resolve(fs, &p[..p.rfind('/').unwrap()]);
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
                prop_assert_eq!(got, want, "rmdir {}", p);
            }
            Op::Rename {
                from,
                dir,
                name,
                mode,
            } => {
                let Some((p, parent, sname, ino)) = pick(&m.paths(), from) else {
                    return Ok(());
                };
                let (dpath, dino) = pick(&m.dirs(), dir).unwrap();
                let dname = NAMES[name].to_string();
                let eparent = resolve(fs, &p[..p.rfind('/').unwrap()]);
                let edir = resolve(fs, &dpath);
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
                prop_assert_eq!(got, want, "rename {:?} {} -> {}/{}", mode, p, dpath, dname);
            }
            Op::Link { file, dir, name } => {
                let Some((p, ino)) = pick(&m.files(), file) else {
                    return Ok(());
                };
                let (dpath, dino) = pick(&m.dirs(), dir).unwrap();
                let dname = NAMES[name];
                let eino = resolve(fs, &p);
                let edir = resolve(fs, &dpath);
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
                prop_assert_eq!(got, want, "link {} -> {}/{}", p, dpath, dname);
            }
            Op::SyncPoint | Op::Fsync | Op::Reopen | Op::Crash { .. } => {
                unreachable!("handled by control")
            }
        }
        self.since_durable.push(self.model.clone());
        Ok(())
    }

    /// Operations on the volume as a whole: durability, reopen, crash.
    fn control(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::SyncPoint => {
                let p = self.fs().volume().sync_point("model", "test").unwrap();
                self.points.insert(p.info.id, self.model.dump());
                self.durable_now();
                Ok(())
            }
            Op::Fsync => {
                self.fs().fsync().unwrap();
                self.durable_now();
                Ok(())
            }
            Op::Reopen => {
                self.fs.take().unwrap().into_volume().close().unwrap();
                self.reopen()?;
                self.durable_now();
                Ok(())
            }
            Op::Crash { tear, at, zeros } => {
                let vol = self.fs.take().unwrap().into_volume();
                let durable = vol.durable();
                vol.crash();
                if tear {
                    tear_log(&self.path(), durable, at, zeros);
                }
                self.reopen()?;
                // The engine must now equal the model after some operation
                // at or past the last durable point.
                let got = dump(&self.fs().volume().tree());
                let found = self.since_durable.iter().rposition(|s| s.dump() == got);
                prop_assert!(
                    found.is_some(),
                    "state after crash matches no prefix: {:#?}",
                    got
                );
                self.model = self.since_durable[found.unwrap()].clone();
                self.durable_now();
                Ok(())
            }
            _ => unreachable!("not a control operation"),
        }
    }

    fn reopen(&mut self) -> Result<(), TestCaseError> {
        let vol = Volume::open(&self.path()).unwrap();
        self.fs = Some(Fs::new(vol).unwrap());
        self.check_points()
    }

    fn check_live(&self) -> Result<(), TestCaseError> {
        prop_assert_eq!(dump(&self.fs().volume().tree()), self.model.dump());
        Ok(())
    }

    /// Every sync point rebuilds exactly as the model was when it was taken.
    fn check_points(&self) -> Result<(), TestCaseError> {
        let listed: Vec<u64> = self
            .fs()
            .volume()
            .sync_points()
            .iter()
            .map(|p| p.info.id)
            .collect();
        prop_assert_eq!(listed, self.points.keys().copied().collect::<Vec<_>>());
        for (id, want) in &self.points {
            let view = self.fs().volume().view(*id).unwrap();
            prop_assert_eq!(&dump(&view.tree()), want, "sync point {}", id);
        }
        Ok(())
    }
}

/// Garbles the tail segment from a point past the durable position:
/// either zeros to the end or a burst of junk bytes.
fn tear_log(vol: &Path, durable: lsvfs::format::Lsn, at: u8, zeros: bool) {
    let path = vol
        .join("segments")
        .join(format!("{:016}.seg", durable.seq));
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
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

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 160,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mut h = Harness::new();
        for op in &ops {
            h.apply(op)?;
            h.check_live()?;
        }
        h.fs.take().unwrap().into_volume().close().unwrap();
        h.reopen()?;
        h.check_live()?;
    }
}
