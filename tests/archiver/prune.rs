//! Prune, in-process: random histories under a random policy (keep-last
//! and pins, against an oracle of its own); afterwards every kept sync
//! point rebuilds as it was, the forgotten ones are listed nowhere (not
//! by the volume, not by the store alone), and the store holds exactly
//! the objects that kept windows and the live volume need. The same with
//! the prune stopped after each of its changes, as a crash would, then
//! run again. Prune beside a writing volume and an open view; two volumes
//! sharing one store; the archiver's automatic prune.

use super::common::dump;
use super::workload::{Work, drained, listed_ids, primary_seqs, tiny_policy, wait_until, written};
use lsvfs::View;
use lsvfs::disk::Disk;
use lsvfs::fs::Fs;
use lsvfs::layout::{Source, source};
use lsvfs::policy::Policy;
use lsvfs::prune::{Options, Report, prune};
use lsvfs::retention::Keep;
use lsvfs::view::Selector;
use lsvfs::volume::Volume;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn disk() -> Arc<dyn Disk> {
    lsvfs::disk::real()
}

/// A closed volume with history: `work` knows what each sync point shows.
fn history(dir: &Path, seed: u64, ops: usize) -> Work {
    let (fs, work) = written(dir, &tiny_policy(), seed, ops);
    fs.into_volume().close().unwrap();
    work
}

/// The archived segments of the volume in `dir` (whole and partial
/// objects), from the store directory.
fn stored(dir: &Path) -> BTreeSet<u64> {
    std::fs::read_dir(dir.join("archive"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let stem = name.strip_suffix(".lsa").or(name.strip_suffix(".lsp"))?;
            stem.split('-').nth(1)?.parse().ok()
        })
        .collect()
}

/// The window start in segment `seq`'s header, from primary or the store.
fn window_start(dir: &Path, seq: u64) -> u64 {
    let path = dir.join("segments").join(format!("{seq:016}.seg"));
    if let Ok(bytes) = std::fs::read(&path) {
        return lsvfs::format::SegmentHeader::decode(&bytes[..4096])
            .unwrap()
            .0
            .window_start;
    }
    let Source::Store(archive) = source(&dir.join("archive"), None).unwrap() else {
        panic!("no store");
    };
    archive.relist().unwrap();
    archive.header(seq).unwrap().window_start
}

/// What the store must hold after pruning to `kept`: every segment a kept
/// window needs, and every one from the live volume's oldest need on, of
/// those that were stored before.
fn needed(dir: &Path, kept: &BTreeSet<u64>, before: &BTreeSet<u64>) -> BTreeSet<u64> {
    let points = Volume::sync_points_of(dir).unwrap();
    let prim = primary_seqs(dir);
    let live = prim[0].min(window_start(dir, *prim.last().unwrap()));
    let mut need: BTreeSet<u64> = before.iter().copied().filter(|s| *s >= live).collect();
    for p in points.iter().filter(|p| kept.contains(&p.info.id)) {
        need.extend(window_start(dir, p.lsn.seq)..=p.lsn.seq);
    }
    need.retain(|s| before.contains(s));
    need
}

/// The sync points the store alone lists for the volume in `dir`.
fn store_listing(dir: &Path) -> BTreeSet<u64> {
    let Source::Store(archive) = source(&dir.join("archive"), None).unwrap() else {
        panic!("no store");
    };
    let points = archive.sync_points(&|_, _| {}).unwrap();
    points.iter().map(|p| p.info.id).collect()
}

/// Every sync point the volume or its store lists rebuilds as `work` saw
/// it; the volume lists exactly `listed`.
fn check_listed(dir: &Path, work: &Work, listed: &BTreeSet<u64>) {
    let from_volume: BTreeSet<u64> = Volume::sync_points_of(dir)
        .unwrap()
        .iter()
        .map(|p| p.info.id)
        .collect();
    assert_eq!(&from_volume, listed, "the volume's listing");
    let from_store = store_listing(dir);
    for id in &from_volume {
        let view = View::open(dir, None, &Selector::Id(*id), &|_, _| {}).unwrap();
        assert_eq!(&dump(&view.tree()), &work.points[id], "sync point {id}");
    }
    let store = dir.join("archive");
    for id in &from_store {
        let view = View::open(&store, None, &Selector::Id(*id), &|_, _| {}).unwrap();
        assert_eq!(
            &dump(&view.tree()),
            &work.points[id],
            "sync point {id} from the store"
        );
    }
}

fn run(dir: &Path, keep: Keep, halt_after: Option<usize>) -> Report {
    let options = Options {
        keep,
        halt_after,
        ..Options::default()
    };
    prune(&disk(), dir, None, &options).unwrap()
}

/// The policy's keep-last and pins, decided by this test's own rule.
fn oracle(ids: &[u64], last: usize, pinned: &BTreeSet<u64>) -> BTreeSet<u64> {
    let newest = ids.iter().rev().take(last).copied();
    newest.chain(pinned.iter().copied()).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn prune_keeps_exactly_what_kept_sync_points_need_also_when_stopped_at_each_change() {
    for seed in [3u64, 17, 40] {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        let work = history(&base, seed, 2500);
        let ids: Vec<u64> = work.points.keys().copied().collect();
        assert!(ids.len() > 20, "seed {seed}: {} sync points", ids.len());
        let mut rng = Work::new(seed * 7 + 1);
        let last = 1 + (rng.next() % 3) as usize;
        let pinned: BTreeSet<u64> = (0..3)
            .map(|_| ids[(rng.next() % ids.len() as u64) as usize])
            .collect();
        lsvfs::retention::update(&lsvfs::disk::Real, &base, |r, _| {
            r.keep.last = Some(last as u32);
            r.pinned = pinned.iter().copied().collect();
            Ok(())
        })
        .unwrap();
        let kept = oracle(&ids, last, &pinned);
        let before = stored(&base);
        let need = needed(&base, &kept, &before);
        assert!(need.len() < before.len(), "seed {seed}: nothing to delete");

        // A dry run changes nothing and says what a prune does.
        let dry = prune(
            &disk(),
            &base,
            None,
            &Options {
                dry_run: true,
                ..Options::default()
            },
        )
        .unwrap();
        assert_eq!(stored(&base), before);
        let dry_deleted: BTreeSet<u64> = dry.deleted.iter().map(|o| o.seq).collect();
        assert_eq!(
            dry_deleted,
            &before - &need,
            "seed {seed}: the dry run's objects"
        );
        let changes = 2 + dry.deleted.len();

        for halt in (1..changes).chain([usize::MAX]) {
            let dir = tmp.path().join(format!("halt-{halt}"));
            copy_dir(&base, &dir);
            let r = run(&dir, Keep::default(), Some(halt));
            assert_eq!(r.halted, halt < changes, "seed {seed}, halt {halt}");
            // Whatever is listed (by the volume, or by the store alone,
            // which learns of the forgotten ones one change later) still
            // rebuilds: nothing a listed sync point needs goes before it
            // is forgotten.
            check_listed(&dir, &work, &kept);
            // The next prune finishes the job.
            let again = run(&dir, Keep::default(), None);
            assert!(!again.halted);
            assert_eq!(again.forgotten().count(), 0, "forgotten once only");
            assert_eq!(stored(&dir), need, "seed {seed}, halt {halt}: the store");
            check_listed(&dir, &work, &kept);
            let from_store = store_listing(&dir);
            assert!(
                from_store.is_subset(&kept),
                "the store lists {from_store:?}"
            );
            let forgot: Vec<u64> = ids.iter().copied().filter(|i| !kept.contains(i)).collect();
            for id in &forgot {
                let err = View::open(&dir, None, &Selector::Id(*id), &|_, _| {})
                    .err()
                    .expect("a forgotten sync point's view");
                assert!(
                    err.to_string().contains(&format!("no sync point {id}")),
                    "{err}"
                );
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}

#[test]
fn prune_beside_a_writing_volume_keeps_what_an_open_view_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    let (fs, mut work) = written(&dir, &tiny_policy(), 99, 1500);
    let first = *work.points.keys().next().unwrap();
    let view = fs.volume().view(first).unwrap();
    let keep = Keep {
        last: Some(2),
        ..Keep::default()
    };
    // Prune from "another process" (its own archive) while writing.
    for round in 0..5 {
        for _ in 0..300 {
            work.step(&fs).unwrap();
        }
        work.point(&fs);
        let r = run(&dir, keep.clone(), None);
        let decided = |id| r.points.iter().find(|d| d.point.info.id == id);
        if round == 0 {
            let d = decided(first).expect("listed");
            assert_eq!(d.reasons, [lsvfs::retention::Reason::OpenView]);
        }
        assert_eq!(dump(&view.tree()), work.points[&first], "the open view");
    }
    let listed = listed_ids(fs.volume());
    assert_eq!(
        listed.len(),
        3,
        "the two newest and the open view's: {listed:?}"
    );
    assert!(listed.contains(&first));
    // Once the view is closed, its sync point goes, and with it what only
    // it needed.
    drop(view);
    drained(&fs);
    let before = stored(&dir);
    let r = run(&dir, keep.clone(), None);
    assert_eq!(
        r.forgotten().map(|d| d.point.info.id).collect::<Vec<_>>(),
        [first]
    );
    let kept: BTreeSet<u64> = listed.iter().copied().filter(|id| *id != first).collect();
    // The open volume's archiver may ship a segment meanwhile: prune
    // answers for the objects it listed.
    let left: BTreeSet<u64> = stored(&dir).intersection(&before).copied().collect();
    assert_eq!(left, needed(&dir, &kept, &before), "the store");
    let err = fs.volume().view(first).err().expect("a forgotten view");
    assert!(err.to_string().contains("no sync point"), "{err}");
    work.points
        .retain(|id, _| listed.contains(id) && *id != first);
    fs.into_volume().close().unwrap();
    let fs = Fs::new(Volume::open(&dir).unwrap()).unwrap();
    work.check(fs.volume());
    fs.into_volume().close().unwrap();
}

#[test]
fn two_volumes_sharing_a_store_never_prune_each_others_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let mut works = Vec::new();
    let dirs: Vec<PathBuf> = (0..2).map(|i| tmp.path().join(format!("v{i}"))).collect();
    for (i, dir) in dirs.iter().enumerate() {
        let mut policy = tiny_policy();
        policy.backing_store = store.clone();
        let (fs, work) = written(dir, &policy, i as u64 + 5, 1500);
        fs.into_volume().close().unwrap();
        works.push(work);
    }
    let names = || -> BTreeSet<String> {
        std::fs::read_dir(&store)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    };
    let other_id = Policy::load(&lsvfs::disk::Real, &dirs[1])
        .unwrap()
        .volume_id;
    let theirs = |all: &BTreeSet<String>| -> BTreeSet<String> {
        all.iter()
            .filter(|n| n.starts_with(&other_id))
            .cloned()
            .collect()
    };
    let before = names();
    let r = run(
        &dirs[0],
        Keep {
            last: Some(1),
            ..Keep::default()
        },
        None,
    );
    assert!(!r.deleted.is_empty());
    assert!(r.deleted.iter().all(|o| !o.name.starts_with(&other_id)));
    let after = names();
    assert_eq!(
        theirs(&after),
        theirs(&before),
        "the other volume's objects"
    );
    for (id, want) in &works[1].points {
        let view = View::open(&dirs[1], None, &Selector::Id(*id), &|_, _| {}).unwrap();
        assert_eq!(
            &dump(&view.tree()),
            want,
            "the other volume's sync point {id}"
        );
    }
}

#[test]
fn the_archiver_prunes_by_itself_when_the_policy_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    let mut policy = tiny_policy();
    policy.retention.auto = true;
    policy.retention.keep.last = Some(2);
    let (fs, mut work) = written(&dir, &policy, 8, 2000);
    wait_until("the automatic prune", Duration::from_secs(30), || {
        fs.volume().sync_points().unwrap().len() == 2
    });
    let listed = listed_ids(fs.volume());
    let newest: Vec<u64> = work.points.keys().rev().take(2).rev().copied().collect();
    assert_eq!(listed, newest);
    work.points.retain(|id, _| newest.contains(id));
    work.check(fs.volume());
    fs.into_volume().close().unwrap();
    let kept: BTreeSet<u64> = newest.into_iter().collect();
    let before = stored(&dir);
    assert_eq!(stored(&dir), needed(&dir, &kept, &before));
}
