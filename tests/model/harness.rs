//! The engine harness: runs operations on a volume (in a temp directory or
//! on a simulated disk) and on the model, compares their outcomes after
//! every operation, and their trees after every reopen, crash, power loss
//! and at every sync point.

use super::common;
use super::engine::{self, perform};
use super::ops::{Op, agrees};
use super::reference::{Model, Snapshot};
use lsvfs::disk::{Disk, OpenMode, Sim};
use lsvfs::fs::Fs;
use lsvfs::rollback;
use lsvfs::store::{BackingStore, Memory};
use lsvfs::view::Selector;
use lsvfs::volume::{OpenOptions, Volume};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

pub struct Harness {
    place: Place,
    /// On the simulated disk the backing store is off the machine (a
    /// local store on the same disk would stall a run after a cut: the
    /// archiver retries a failing store and writes wait for it).
    store: Option<Arc<dyn BackingStore>>,
    fs: Option<Fs>,
    /// The engine's open handles, by inode, in the model's order.
    handles: Vec<u64>,
    model: Model,
    /// Model copies taken at each sync point, by id.
    points: BTreeMap<u64, Snapshot>,
    /// The models themselves, for rollbacks (acknowledged points only).
    models: BTreeMap<u64, Model>,
    /// Model states since the last durable point; index 0 is durable.
    since_durable: Vec<Model>,
    /// The model at a sync point asked for but not acknowledged when the
    /// power went: it may be there after the loss, or not.
    unacked_point: Option<Snapshot>,
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
    pub fn new(sim_seed: Option<u64>) -> Self {
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
            handles: Vec::new(),
            model: Model::new(false),
            points: BTreeMap::new(),
            models: BTreeMap::new(),
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

    /// Serves `vol` from now on: the handles of the one before are gone.
    fn serve(&mut self, vol: Volume) -> Result<Step, TestCaseError> {
        self.handles.clear();
        self.fs = Some(engine!(self, Fs::new(vol)));
        Ok(Step::Done)
    }

    /// Whether the simulated power is off.
    fn off(&self) -> bool {
        matches!(&self.place, Place::Sim(sim) if sim.is_off())
    }

    fn durable_now(&mut self) {
        self.since_durable = vec![self.model.clone()];
    }

    /// Runs one operation, and recovers if the power went off during it.
    pub fn run(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let step = match op {
            Op::SyncPoint
            | Op::Fsync
            | Op::Reopen
            | Op::Crash { .. }
            | Op::PowerLoss { .. }
            | Op::Rollback { .. } => self.control(op)?,
            _ => {
                self.apply(op)?;
                self.since_durable.push(self.model.clone());
                Step::Done
            }
        };
        match step {
            Step::PowerOff => self.power_loss(),
            Step::Done if self.off() => self.power_loss(),
            Step::Done if self.armed => Ok(()),
            Step::Done => self.check_live(),
        }
    }

    /// Performs one file operation on the engine and the model; their
    /// outcomes agree unless the power went off meanwhile.
    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let Some((action, want)) = self.model.step(op) else {
            return Ok(());
        };
        let got = perform(self.fs.as_ref().unwrap(), &mut self.handles, &action);
        prop_assert!(
            agrees(&got, &want) || self.off(),
            "{:?}: got {:?}, want {:?}",
            action,
            got,
            want
        );
        Ok(())
    }

    /// Operations on the volume as a whole: durability, reopen, crash.
    fn control(&mut self, op: &Op) -> Result<Step, TestCaseError> {
        match *op {
            Op::SyncPoint => {
                let want = Snapshot {
                    inodes: None,
                    ..self.model.snapshot()
                };
                match self.fs().volume().sync_point("model", "test") {
                    Ok(p) => {
                        self.points.insert(p.info.id, want);
                        self.models.insert(p.info.id, self.model.clone());
                        self.durable_now();
                    }
                    Err(_) if self.off() => self.unacked_point = Some(want),
                    Err(e) => return Err(TestCaseError::fail(format!("sync point: {e}"))),
                }
            }
            Op::Fsync => {
                engine!(self, self.fs().fsync());
                self.durable_now();
            }
            Op::Reopen => {
                engine!(self, self.fs.take().unwrap().into_volume().close());
                self.model = self.model.closed();
                let vol = engine!(self, self.open());
                if let Step::PowerOff = self.serve(vol)? {
                    return Ok(Step::PowerOff);
                }
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
                self.model = self.model.closed();
                let vol = engine!(self, self.open());
                if let Step::PowerOff = self.serve(vol)? {
                    return Ok(Step::PowerOff);
                }
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
            Op::Rollback { to, halt } => return self.rollback(to, halt),
            _ => unreachable!("not a control operation"),
        }
        Ok(Step::Done)
    }

    /// Rolls the closed volume back to a sync point, halted part way if
    /// `halt` says so: after the next open the live volume equals the
    /// model at that sync point, a new sync point equals the model just
    /// before, and every other sync point is as it was.
    fn rollback(&mut self, to: usize, halt: Option<u8>) -> Result<Step, TestCaseError> {
        // Not while a power cut is due: the cut would hit the model's
        // bookkeeping of which state came back.
        if self.armed || self.models.is_empty() {
            return Ok(Step::Done);
        }
        let id = *self.models.keys().nth(to % self.models.len()).unwrap();
        let vol = self.fs.take().unwrap().into_volume();
        let before = self.model.closed();
        let options = rollback::Options {
            halt_after: halt.map(usize::from),
            ..Default::default()
        };
        match rollback::rollback(&vol, &Selector::Id(id), &options) {
            Ok(_) => engine!(self, vol.close()),
            Err(lsvfs::Error::Halted) => drop(vol.crash()),
            Err(e) => return Err(TestCaseError::fail(format!("rollback to {id}: {e}"))),
        }
        let vol = engine!(self, self.open());
        let label = format!("before-rollback-to-{id}");
        for p in vol.sync_points().unwrap() {
            if p.info.label == label && !self.points.contains_key(&p.info.id) {
                let snapshot = Snapshot {
                    inodes: None,
                    ..before.snapshot()
                };
                self.points.insert(p.info.id, snapshot);
                self.models.insert(p.info.id, before.clone());
            }
        }
        // Stopped before its intent was recorded, the rollback is undone:
        // the volume is as before (with the "before" sync point).
        let next = self.model.next;
        self.model = match halt {
            Some(1) => before,
            _ => self.models[&id].closed(),
        };
        self.model.next = self.model.next.max(next);
        self.serve(vol)?;
        self.durable_now();
        self.check_points()?;
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
        self.serve(vol.unwrap())?;
        self.check_recovered()
    }

    /// What the engine holds now, its inode count included.
    fn live(&self) -> Snapshot {
        let inodes = self.fs().statfs().files;
        engine::snapshot(&self.fs().volume().tree(), Some(inodes))
    }

    /// After a crash or power loss the engine must equal the model after
    /// some operation at or past the last durable point (with the files
    /// only open handles kept deleted), and every sync point must rebuild.
    fn check_recovered(&mut self) -> Result<(), TestCaseError> {
        let got = self.live();
        let found = self.since_durable.iter().rposition(|s| {
            let want = s.closed().snapshot();
            got.masked_by(&want) == want
        });
        prop_assert!(
            found.is_some(),
            "state after crash matches no prefix: {:#?}",
            got
        );
        self.model = self.since_durable[found.unwrap()].closed();
        self.durable_now();
        self.check_points()
    }

    fn check_live(&self) -> Result<(), TestCaseError> {
        let want = self.model.snapshot();
        prop_assert_eq!(self.live().masked_by(&want), want);
        Ok(())
    }

    /// Every sync point rebuilds exactly as the model was when it was taken;
    /// one not acknowledged before a power loss may be there too.
    fn check_points(&mut self) -> Result<(), TestCaseError> {
        let listed: Vec<u64> = self
            .fs()
            .volume()
            .sync_points()
            .unwrap()
            .iter()
            .map(|p| p.info.id)
            .collect();
        if let Some(want) = self.unacked_point.take()
            && let Some(&last) = listed.last()
            && !self.points.contains_key(&last)
        {
            self.points.insert(last, want);
        }
        prop_assert_eq!(listed, self.points.keys().copied().collect::<Vec<_>>());
        for (id, want) in &self.points {
            let view = self.fs().volume().view(*id).unwrap();
            let got = engine::snapshot(&view.tree(), None);
            prop_assert_eq!(&got.masked_by(want), want, "sync point {}", id);
        }
        Ok(())
    }

    /// Closes cleanly (cutting a power loss still due first), reopens and
    /// checks everything.
    pub fn finish(mut self) -> Result<(), TestCaseError> {
        if self.armed {
            return self.power_loss();
        }
        self.fs.take().unwrap().into_volume().close().unwrap();
        self.model = self.model.closed();
        let vol = self.open().unwrap();
        self.serve(vol)?;
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
