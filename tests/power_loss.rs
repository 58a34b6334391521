//! Power-loss cases for the durability defects found by review (issue 12),
//! on the simulated disk: each cuts the power at every step of the
//! operation the defect was about, for many seeds, and checks what must
//! survive. The reference model (`model.rs`) and the archiver's run
//! (`archiver.rs`) cut at random moments of random workloads; these aim.

mod common;

use lsvfs::disk::Sim;
use lsvfs::fs::{Fs, ROOT_OWNER};
use lsvfs::log::catalog::Catalog;
use lsvfs::store::{BackingStore, Memory};
use lsvfs::volume::{OpenOptions, ROOT_INO, Volume};
use std::path::Path;
use std::sync::Arc;

const DIR: &str = "/sim/v";

fn open(sim: &Sim, store: &Arc<dyn BackingStore>) -> Fs {
    let options = OpenOptions {
        disk: Some(Arc::new(sim.clone())),
        store: Some(store.clone()),
        ..Default::default()
    };
    let vol = Volume::open_with(Path::new(DIR), options);
    Fs::new(vol.unwrap_or_else(|e| panic!("recovery failed: {e}"))).unwrap()
}

fn fresh(seed: u64) -> (Sim, Arc<dyn BackingStore>) {
    let sim = Sim::new(seed);
    Volume::create_on(&sim, Path::new(DIR), &common::small_policy()).unwrap();
    (sim, Arc::new(Memory::new()))
}

fn ids(fs: &Fs) -> Vec<u64> {
    fs.volume()
        .sync_points()
        .unwrap()
        .iter()
        .map(|p| p.info.id)
        .collect()
}

/// Issue 12, item 1: a torn catalog entry hid every later sync point.
/// Cut at each step of a sync point (its record, the fdatasync, the
/// catalog append and its fdatasync); after the loss, and after more sync
/// points and another loss, every acknowledged one is listed and rebuilds.
#[test]
fn a_sync_point_cut_at_any_step_hides_no_later_one() {
    for seed in 0..200u64 {
        let (sim, store) = fresh(seed);
        let fs = open(&sim, &store);
        let (ino, _) = fs.create_file(ROOT_INO, b"f", 0o644, ROOT_OWNER).unwrap();
        let mut acked = Vec::new();
        for i in 0..3u8 {
            fs.write(ino, 0, &[i; 700]).unwrap();
            acked.push(fs.volume().sync_point("", "test").unwrap().info.id);
        }
        sim.cut_after(seed % 8);
        fs.write(ino, 0, &[9; 700]).ok();
        let maybe = fs.volume().sync_point("", "test").ok();
        fs.into_volume().crash();
        let sim = sim.power_loss();
        let fs = open(&sim, &store);
        acked.extend(maybe.map(|p| p.info.id));
        let listed = ids(&fs);
        assert!(
            acked.iter().all(|id| listed.contains(id)),
            "seed {seed}: {listed:?} lacks one of {acked:?}"
        );
        acked = listed;
        acked.push(fs.volume().sync_point("", "test").unwrap().info.id);
        fs.into_volume().crash();
        let fs = open(&sim.power_loss(), &store);
        assert_eq!(ids(&fs), acked, "seed {seed}");
        for id in acked {
            fs.volume().view(id).unwrap();
        }
    }
}

/// Sync points reach the catalog file without an fdatasync of their own
/// (their records in the log are what is durable; opening adds back what
/// the catalog lost). A clean unmount makes the catalog durable, so that
/// `lsvfs sync-points VOLUME`, which reads it without opening the volume,
/// lists every sync point after a power loss that follows.
#[test]
fn after_a_clean_close_the_catalog_alone_lists_every_sync_point() {
    for seed in 0..50u64 {
        let (sim, store) = fresh(seed);
        let fs = open(&sim, &store);
        let acked: Vec<u64> = (0..3)
            .map(|_| fs.volume().sync_point("", "test").unwrap().info.id)
            .collect();
        fs.into_volume().close().unwrap();
        let sim = sim.power_loss();
        let catalog = Catalog::open(&sim, Path::new(DIR), false).unwrap();
        let listed: Vec<u64> = catalog.entries().iter().map(|p| p.info.id).collect();
        assert_eq!(listed, acked, "seed {seed}");
    }
}

/// Issue 12, items 6 and 7: an fsync is acknowledged only once its data is
/// on stable storage, and a tail cut at a torn record never comes back.
/// Unsynced writes are cut at every step; after recovery new data is
/// written and fsynced; after a second loss the file holds exactly what
/// the acknowledged fsyncs said, never bytes of the torn writes.
#[test]
fn a_torn_tail_never_comes_back_after_a_second_power_loss() {
    for seed in 0..200u64 {
        let (sim, store) = fresh(seed);
        let fs = open(&sim, &store);
        let (ino, _) = fs.create_file(ROOT_INO, b"f", 0o644, ROOT_OWNER).unwrap();
        fs.write(ino, 0, &[1; 3000]).unwrap();
        fs.fsync().unwrap();
        sim.cut_after(seed % 12);
        let mut synced = vec![1u8; 3000];
        for i in 2..6u8 {
            if fs.write(ino, 0, &[i; 3000]).is_err() || fs.fsync().is_err() {
                break;
            }
            synced = vec![i; 3000];
        }
        fs.into_volume().crash();
        let sim = sim.power_loss();
        let fs = open(&sim, &store);
        let got = fs.read(ino, 0, 3000).unwrap();
        let kept = got[0];
        assert!(got.iter().all(|&b| b == kept), "seed {seed}: a write torn");
        assert!(kept >= synced[0], "seed {seed}: fsynced {} lost", synced[0]);
        fs.write(ino, 0, &[7; 1000]).unwrap();
        fs.fsync().unwrap();
        fs.into_volume().crash();
        let fs = open(&sim.power_loss(), &store);
        let got = fs.read(ino, 0, 3000).unwrap();
        assert_eq!(&got[..1000], &[7; 1000], "seed {seed}");
        assert!(
            got[1000..].iter().all(|&b| b == kept),
            "seed {seed}: stale bytes"
        );
    }
}

/// A new segment is named without a directory fsync (the writer's lock is
/// not held for a journal commit at every rotation); its first fdatasync
/// makes the name durable. Writes large enough to rotate segments, each
/// fsynced, with the power cut at every step: every acknowledged fsync
/// survives, also one whose data went to a segment opened just before.
#[test]
fn an_fsync_into_a_segment_just_opened_survives_a_power_loss() {
    const LEN: usize = 20 << 10;
    for seed in 0..120u64 {
        let (sim, store) = fresh(seed);
        let fs = open(&sim, &store);
        let (ino, _) = fs.create_file(ROOT_INO, b"f", 0o644, ROOT_OWNER).unwrap();
        fs.fsync().unwrap();
        sim.cut_after(seed);
        let mut acked = 0u8;
        for i in 1..=12u8 {
            if fs.write(ino, 0, &[i; LEN]).is_err() || fs.fsync().is_err() {
                break;
            }
            acked = i;
        }
        fs.into_volume().crash();
        let fs = open(&sim.power_loss(), &store);
        let got = fs.read(ino, 0, LEN).unwrap();
        let kept = got.first().copied().unwrap_or(0);
        assert!(got.iter().all(|&b| b == kept), "seed {seed}: a write torn");
        assert!(
            kept >= acked,
            "seed {seed}: fsync of {acked} lost, found {kept}"
        );
    }
}
