//! Archived objects and volume identity: a damaged or missing object is
//! named, volumes sharing a store stay apart, copies are refused.

use super::common::dump;
use super::workload::{Work, drained, open, tiny_policy, wait_until};
use lsvfs::archive::archiver::Step;
use lsvfs::format::SegmentHeader;
use lsvfs::fs::{Fs, ROOT_OWNER};
use lsvfs::policy::Policy;
use lsvfs::store::{BackingStore, Memory};
use lsvfs::volume::{OpenOptions, ROOT_INO, Volume};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The segment header of `seq`, from primary or the archive.
fn header(vol: &Volume, dir: &Path, seq: u64) -> SegmentHeader {
    let path = dir.join("segments").join(format!("{seq:016}.seg"));
    match std::fs::read(&path) {
        Ok(bytes) => SegmentHeader::decode(&bytes[..4096]).unwrap().0,
        Err(_) => vol.archive().header(seq).unwrap(),
    }
}

fn object(dir: &Path, seq: u64) -> PathBuf {
    let volume = Policy::load(&lsvfs::disk::Real, dir).unwrap().volume_id;
    dir.join("archive").join(format!("{volume}-{seq:016}.lsa"))
}

#[test]
fn a_missing_or_damaged_object_is_named_and_other_views_are_unaffected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    Volume::create(&dir, &tiny_policy()).unwrap();
    let fs = Fs::new(Volume::open(&dir).unwrap()).unwrap();
    let mut work = Work::new(5);
    for _ in 0..3000 {
        work.step(&fs).unwrap();
    }
    work.point(&fs);
    drained(&fs);
    fs.into_volume().close().unwrap();

    let vol = Volume::open_with(
        &dir,
        OpenOptions {
            no_archiver: true,
            ..Default::default()
        },
    )
    .unwrap();
    let archived: Vec<u64> = vol.archive().objects().iter().map(|(s, _)| *s).collect();
    let (missing, damaged) = (archived[2], archived[archived.len() / 2]);
    let windows: BTreeMap<u64, (u64, u64)> = vol
        .sync_points()
        .unwrap()
        .iter()
        .map(|p| {
            let start = header(&vol, &dir, p.lsn.seq).window_start;
            (p.info.id, (start, p.lsn.seq))
        })
        .collect();
    vol.close().unwrap();
    std::fs::remove_file(object(&dir, missing)).unwrap();
    let path = object(&dir, damaged);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();

    let vol = Volume::open(&dir).unwrap();
    assert_eq!(
        dump(&vol.tree()),
        work.expected(),
        "the live volume needs no archive"
    );
    let (mut failed, mut fine) = (0, 0);
    for (id, want) in &work.points {
        let (start, end) = windows[id];
        let needs = |seq: u64| (start..=end).contains(&seq);
        let result = vol
            .view(*id)
            .map(|v| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dump(&v.tree()))));
        match result {
            Ok(Ok(got)) => {
                assert!(!needs(missing), "sync point {id} needs the missing object");
                assert_eq!(&got, want, "sync point {id}");
                fine += 1;
            }
            Ok(Err(panic)) => {
                let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
                assert!(needs(damaged), "sync point {id}: {msg}");
                assert!(msg.contains(&format!("{damaged:016}.lsa")), "{msg}");
                failed += 1;
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(needs(missing) || needs(damaged), "sync point {id}: {msg}");
                let named = [missing, damaged]
                    .iter()
                    .any(|s| msg.contains(&format!("{s:016}.lsa")));
                assert!(named, "the error names the object: {msg}");
                failed += 1;
            }
        }
    }
    assert!(failed > 0 && fine > 0, "{failed} failed, {fine} fine");
}

#[test]
fn two_volumes_share_one_store_without_touching_each_other() {
    let tmp = tempfile::tempdir().unwrap();
    let store: Arc<dyn BackingStore> = Arc::new(Memory::new());
    let mut vols = Vec::new();
    for (i, name) in ["a", "b"].iter().enumerate() {
        let dir = tmp.path().join(name);
        Volume::create(&dir, &tiny_policy()).unwrap();
        let fs = open(&dir, &store, None);
        let mut work = Work::new(100 + i as u64);
        for _ in 0..1500 {
            work.step(&fs).unwrap();
        }
        work.point(&fs);
        drained(&fs);
        vols.push((dir, fs, work));
    }
    // Each volume's archive knows exactly its own whole objects (a
    // partial one of the open segment may be there too, once the sync
    // point is half a ship interval old). A segment being shipped is in
    // the store a moment before its archive counts it: wait for that.
    let ids: Vec<String> = vols
        .iter()
        .map(|(dir, _, _)| Policy::load(&lsvfs::disk::Real, dir).unwrap().volume_id)
        .collect();
    let counts = || {
        let names = store.list().unwrap();
        let own = |id: &String| {
            let own = names
                .iter()
                .filter(|(n, _)| n.starts_with(id) && n.ends_with(".lsa"));
            own.count() as u64
        };
        let counted = vols
            .iter()
            .map(|(_, fs, _)| fs.volume().status().archived_segments);
        (
            ids.iter().map(own).collect::<Vec<_>>(),
            counted.collect::<Vec<_>>(),
        )
    };
    wait_until(
        "each archive to count its objects",
        Duration::from_secs(30),
        || {
            let (stored, counted) = counts();
            stored.iter().all(|&n| n > 0) && stored == counted
        },
    );
    for (_, fs, work) in &vols {
        work.check(fs.volume());
    }
}

/// Issue 12.2: two volumes with one id (a copied volume directory) share a
/// store. The second to archive a segment number finds the first's object
/// there: it must neither skip copying its live records forward nor
/// replace the object, and it stops archiving with an error saying why.
/// Before, it skipped copy-forward, overwrote the object and recycled its
/// segment: its own data was lost and so was the other volume's archive.
#[test]
fn a_second_volume_with_the_same_id_neither_replaces_objects_nor_loses_data() {
    let tmp = tempfile::tempdir().unwrap();
    let store: Arc<dyn BackingStore> = Arc::new(Memory::new());
    let policy = tiny_policy();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    Volume::create(&a, &policy).unwrap();
    Volume::create(&b, &policy).unwrap();
    // Both open before either archives anything.
    let fs_a = open(&a, &store, None);
    let fs_b = open(&b, &store, None);
    let mut work_a = Work::new(7);
    for _ in 0..1500 {
        work_a.step(&fs_a).unwrap();
    }
    work_a.point(&fs_a);
    drained(&fs_a);
    let before = store.list().unwrap();
    assert!(!before.is_empty());
    let bytes_before: Vec<Vec<u8>> = before.iter().map(|(n, _)| store.get(n).unwrap()).collect();

    let mut work_b = Work::new(8);
    for _ in 0..1500 {
        work_b.step(&fs_b).unwrap();
    }
    work_b.point(&fs_b);
    wait_until(
        "the second volume's archiver to settle",
        Duration::from_secs(30),
        || {
            let s = fs_b.volume().status();
            !s.store.ok || s.waiting_for_archive == 0
        },
    );
    // The first volume's objects are untouched.
    let after: Vec<Vec<u8>> = before.iter().map(|(n, _)| store.get(n).unwrap()).collect();
    assert!(
        after == bytes_before,
        "objects of the first volume were replaced"
    );
    // Both volumes hold all their data, live and at every sync point, also
    // after a reopen.
    work_a.check(fs_a.volume());
    work_b.check(fs_b.volume());
    let error = fs_b.volume().status().store.error.unwrap_or_default();
    assert!(error.contains("same id"), "{error}");
    drop(fs_b);
    let fs_b = open(&b, &store, None);
    work_b.check(fs_b.volume());
}

/// Issue 12.11: the archiver slices a segment's records by its summary.
/// A segment whose summary passes its checksum but does not tile the
/// records (here left in primary, below the window, by a crash after its
/// copies were durable, so recovery does not read it) must stop the
/// archiver with an error naming it and poison the volume, visibly;
/// before, the slicing panicked and archiving stopped for good in silence.
#[test]
fn a_summary_that_does_not_tile_its_records_is_an_error_not_a_panic() {
    use lsvfs::disk::Disk;
    use lsvfs::log::segment::{read_header, read_sealed, segment_path};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    let policy = tiny_policy();
    Volume::create(&dir, &policy).unwrap();
    let store: Arc<dyn BackingStore> = Arc::new(Memory::new());
    let fs = open(&dir, &store, Some(Step::CopiedDurable));
    let mut work = Work::new(77);
    let mut rounds = 0;
    while !fs.volume().archiver_finished() {
        for _ in 0..20 {
            work.step(&fs).unwrap();
        }
        rounds += 1;
        assert!(rounds < 500, "the archiver never halted");
    }
    // Open a newer segment, whose header starts the window past it.
    for _ in 0..400 {
        work.step(&fs).unwrap();
    }
    fs.into_volume().crash();
    let seg_dir = dir.join("segments");
    let seq = (1..).find(|s| segment_path(&seg_dir, *s).exists()).unwrap();
    // Lengthen the last record's summary entry by one byte; summary and
    // footer checksums are made right again.
    let path = segment_path(&seg_dir, seq);
    let file = lsvfs::disk::Real
        .open(&path, lsvfs::disk::OpenMode::ReadWrite)
        .unwrap();
    let id = policy.volume_id().unwrap();
    let (header, _) = read_header(&*file, seq, id, &seg_dir).unwrap();
    let (mut footer, mut entries) = read_sealed(&*file, &header).unwrap().unwrap();
    entries.last_mut().unwrap().len += 1;
    let mut summary = Vec::new();
    for e in &entries {
        e.encode(&mut summary);
    }
    footer.summary_crc = crc32c::crc32c(&summary);
    file.write_all_at(&summary, footer.records_end as u64)
        .unwrap();
    file.write_all_at(&footer.encode(), policy.segment_size - 64)
        .unwrap();
    drop(file);

    let fs = open(&dir, &store, None);
    wait_until("the archiver to fail", Duration::from_secs(20), || {
        fs.volume().archiver_finished()
    });
    let err = fs.volume().fsync().unwrap_err().to_string();
    assert!(err.contains(&format!("segment {seq}")), "{err}");
    assert!(
        segment_path(&seg_dir, seq).exists(),
        "the segment was recycled"
    );
}

/// Issue 12.2: a copy of a volume directory (`cp -a A B`) is recognised at
/// its first open, while A is still there, and refused with a line naming
/// both, so that two live volumes never share an id unnoticed; A opens as
/// before, and a volume that was moved (not copied) opens in its new place.
#[test]
fn a_copied_volume_directory_is_refused_and_a_moved_one_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    Volume::create(&a, &tiny_policy()).unwrap();
    let fs = Fs::new(Volume::open(&a).unwrap()).unwrap();
    fs.create_file(ROOT_INO, b"f", 0o644, ROOT_OWNER).unwrap();
    fs.into_volume().close().unwrap();
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(&a)
        .arg(&b)
        .status()
        .unwrap();
    assert!(cp.success());
    let err = Volume::open(&b).err().expect("a copy opened").to_string();
    assert!(
        err.contains("is a copy of the volume at") && err.contains(a.to_str().unwrap()),
        "{err}"
    );
    Volume::open(&a).unwrap().close().unwrap();
    std::fs::remove_dir_all(&b).unwrap();
    std::fs::rename(&a, &c).unwrap();
    let fs = Fs::new(Volume::open(&c).unwrap()).unwrap();
    assert!(fs.lookup(ROOT_INO, b"f").is_ok());
}
