//! What the archiver tests share: a tiny policy, a random workload on the
//! root with the sync points it must rebuild, and waiting for the archiver.

use super::common::{Content, Dump, Node, dump};
use lsvfs::archive::archiver::Step;
use lsvfs::format::VolumeId;
use lsvfs::fs::{Fs, FsError, ROOT_OWNER};
use lsvfs::policy::Policy;
use lsvfs::store::BackingStore;
use lsvfs::volume::{OpenOptions, ROOT_INO, Volume};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const W: u32 = 8;

pub const RESERVE: u32 = 2;

/// 64 KiB segments, 8 of them in the working set: a few hundred writes
/// retire a segment.
pub fn tiny_policy() -> Policy {
    let mut p = Policy::new(VolumeId::generate().unwrap());
    p.block_size = 512;
    p.segment_size = 64 << 10;
    p.working_set = W;
    p.reserve = RESERVE;
    p
}

/// The tree that files with these contents in the root make.
pub fn expected(files: &BTreeMap<String, Vec<u8>>) -> Dump {
    files
        .iter()
        .map(|(name, bytes)| {
            let path = format!("/{name}");
            let node = Node::File {
                content: Content(bytes.clone()),
                nlink: 1,
                first_path: path.clone(),
            };
            (path, node)
        })
        .collect()
}

/// A random workload on 16 files in the root and what each sync point
/// must show.
pub struct Work {
    pub files: BTreeMap<String, Vec<u8>>,
    pub points: BTreeMap<u64, Dump>,
    /// What a sync point asked for but not acknowledged would show.
    pub unacked: Option<Dump>,
    /// When recording: every state the volume may hold after a power
    /// loss, since the last acknowledged sync point (each change made
    /// to the model before it is asked of the engine).
    pub trail: Option<Vec<BTreeMap<String, Vec<u8>>>>,
    pub rng: u64,
}

impl Work {
    pub fn new(seed: u64) -> Self {
        Work {
            files: BTreeMap::new(),
            points: BTreeMap::new(),
            unacked: None,
            trail: None,
            rng: seed | 1,
        }
    }

    pub fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    pub fn expected(&self) -> Dump {
        expected(&self.files)
    }

    /// The model changed and the engine is asked to follow.
    pub fn changed(&mut self) {
        if let Some(trail) = &mut self.trail {
            trail.push(self.files.clone());
        }
    }

    /// One random operation: write (most), truncate, unlink, sync point.
    pub fn step(&mut self, fs: &Fs) -> Result<(), FsError> {
        let name = format!("f{}", self.next() % 16);
        let op = self.next() % 20;
        let ino = match fs.lookup(ROOT_INO, name.as_bytes()) {
            Ok((ino, _)) => Some(ino),
            Err(FsError::NotFound) => None,
            Err(e) => return Err(e),
        };
        match (op, ino) {
            (19, _) => {
                self.unacked = Some(self.expected());
                let p = fs.volume().sync_point("", "test")?;
                let want = self.unacked.take().unwrap();
                self.points.insert(p.info.id, want);
                if let Some(trail) = &mut self.trail {
                    *trail = vec![self.files.clone()];
                }
            }
            (17 | 18, Some(_)) => {
                self.files.remove(&name);
                self.changed();
                fs.unlink(ROOT_INO, name.as_bytes())?;
            }
            (15 | 16, Some(ino)) => {
                let size = self.next() % (12 << 10);
                self.files.get_mut(&name).unwrap().resize(size as usize, 0);
                self.changed();
                fs.truncate(ino, size)?;
            }
            _ => {
                let ino = match ino {
                    Some(ino) => ino,
                    None => {
                        self.files.insert(name.clone(), Vec::new());
                        self.changed();
                        fs.create_file(ROOT_INO, name.as_bytes(), 0o644, ROOT_OWNER)?
                            .0
                    }
                };
                let offset = self.next() % (12 << 10);
                let len = 1 + self.next() % 4096;
                // Half compressible text, half noise.
                let seed = self.next();
                let data: Vec<u8> = (0..len)
                    .map(|i| match seed % 2 {
                        0 => b"log-structured "[(i % 15) as usize],
                        _ => (seed.wrapping_mul(i + 1) >> 24) as u8,
                    })
                    .collect();
                let f = self.files.get_mut(&name).unwrap();
                let end = (offset + len) as usize;
                if f.len() < end {
                    f.resize(end, 0);
                }
                f[offset as usize..end].copy_from_slice(&data);
                self.changed();
                fs.write(ino, offset, &data)?;
            }
        }
        Ok(())
    }

    /// Takes a sync point and records it.
    pub fn point(&mut self, fs: &Fs) {
        let p = fs.volume().sync_point("", "test").unwrap();
        self.points.insert(p.info.id, self.expected());
    }

    /// Every sync point rebuilds as it was, and the live tree is as now.
    pub fn check(&self, vol: &Volume) {
        assert_eq!(dump(&vol.tree()), self.expected(), "live tree");
        self.check_points(vol);
    }

    /// Every sync point rebuilds as it was.
    pub fn check_points(&self, vol: &Volume) {
        let listed = listed_ids(vol);
        assert_eq!(listed, self.points.keys().copied().collect::<Vec<_>>());
        for (id, want) in &self.points {
            let view = vol.view(*id).unwrap();
            assert_eq!(&dump(&view.tree()), want, "sync point {id}");
        }
    }
}

pub fn primary_segments(vol: &Path) -> u64 {
    std::fs::read_dir(vol.join("segments"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            // Not the free pool: recycled and spare files.
            name.ends_with(".seg") && !name.starts_with("free-") && !name.starts_with("spare-")
        })
        .count() as u64
}

/// The ids of the sync points `vol` lists, oldest first.
pub fn listed_ids(vol: &Volume) -> Vec<u64> {
    let points = vol.sync_points().unwrap();
    points.iter().map(|p| p.info.id).collect()
}

/// Segment numbers in primary storage, ascending.
pub fn primary_seqs(dir: &Path) -> Vec<u64> {
    let mut seqs: Vec<u64> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".seg")?.parse().ok()
        })
        .collect();
    seqs.sort_unstable();
    seqs
}

pub fn open(dir: &Path, store: &Arc<dyn BackingStore>, halt_at: Option<Step>) -> Fs {
    let options = OpenOptions {
        store: Some(store.clone()),
        halt_at,
        ..Default::default()
    };
    Fs::new(Volume::open_with(dir, options).unwrap()).unwrap()
}

pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the archiver has retired everything beyond the working set.
pub fn drained(fs: &Fs) {
    wait_until("the archiver to catch up", Duration::from_secs(60), || {
        fs.volume().status().waiting_for_archive == 0
    });
}

/// A volume made with `policy` in `dir` and written: `ops` random steps
/// and a last sync point, archived; still open.
pub fn written(dir: &Path, policy: &Policy, seed: u64, ops: usize) -> (Fs, Work) {
    Volume::create(dir, policy).unwrap();
    let fs = Fs::new(Volume::open(dir).unwrap()).unwrap();
    let mut work = Work::new(seed);
    for _ in 0..ops {
        work.step(&fs).unwrap();
    }
    work.point(&fs);
    drained(&fs);
    (fs, work)
}
