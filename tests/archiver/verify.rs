//! Verify, in-process: a volume and its store alone verify clean; a byte
//! flipped in an object's trailer (or, with read_data, in one of its
//! frames, or in a primary segment's records) is found, named, and charged
//! with exactly the sync points whose window needs the segment: broken
//! when no intact copy is left, at risk when the other copy is intact.
//! Repair stores again what primary still holds, and only that.

use super::workload::{Work, drained, primary_seqs, tiny_policy, wait_until};
use lsvfs::fs::Fs;
use lsvfs::layout::{Source, source};
use lsvfs::policy::Policy;
use lsvfs::verify::{Place, Report, verify};
use lsvfs::volume::Volume;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A volume with history archived into its store directory.
struct Built {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    /// Each sync point's window: (window start, its segment).
    windows: BTreeMap<u64, (u64, u64)>,
    /// Segments still in primary storage.
    primary: BTreeSet<u64>,
}

impl Built {
    fn new(seed: u64) -> Built {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("v");
        Volume::create(&dir, &tiny_policy()).unwrap();
        let fs = Fs::new(Volume::open(&dir).unwrap()).unwrap();
        let mut work = Work::new(seed);
        for _ in 0..3000 {
            work.step(&fs).unwrap();
        }
        work.point(&fs);
        drained(&fs);
        fs.into_volume().close().unwrap();
        let primary: BTreeSet<u64> = primary_seqs(&dir).into_iter().collect();
        let Source::Store(archive) = source(&dir.join("archive"), None).unwrap() else {
            panic!("the store directory is no store");
        };
        archive.relist().unwrap();
        let windows = Volume::sync_points_of(&dir)
            .unwrap()
            .iter()
            .map(|p| {
                let seq = p.lsn.seq;
                let start = match std::fs::read(segment(&dir, seq)) {
                    Ok(b) => lsvfs::format::SegmentHeader::decode(&b[..4096]).unwrap().0,
                    Err(_) => archive.header(seq).unwrap(),
                };
                (p.info.id, (start.window_start, seq))
            })
            .collect();
        Built {
            _tmp: tmp,
            dir,
            windows,
            primary,
        }
    }

    /// The sync points whose window holds segment `seq`.
    fn needing(&self, seq: u64) -> Vec<u64> {
        let holds = |(start, end): &(u64, u64)| (*start..=*end).contains(&seq);
        let ids = self.windows.iter().filter(|(_, w)| holds(w));
        ids.map(|(id, _)| *id).collect()
    }

    fn object(&self, seq: u64) -> PathBuf {
        let volume = Policy::load(&lsvfs::disk::Real, &self.dir)
            .unwrap()
            .volume_id;
        self.dir
            .join("archive")
            .join(format!("{volume}-{seq:016}.lsa"))
    }

    /// Archived segments, ascending.
    fn archived(&self) -> Vec<u64> {
        let mut seqs: Vec<u64> = std::fs::read_dir(self.dir.join("archive"))
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                let seq = name.strip_suffix(".lsa")?.rsplit('-').next()?;
                seq.parse().ok()
            })
            .collect();
        seqs.sort_unstable();
        seqs
    }
}

fn segment(dir: &Path, seq: u64) -> PathBuf {
    dir.join("segments").join(format!("{seq:016}.seg"))
}

fn run(path: &Path, read_data: bool) -> Report {
    verify(&source(path, None).unwrap(), read_data, &|_, _| {}).unwrap()
}

/// Runs `check` with the byte at `at` of `file` flipped, then restores it.
fn flipped<T>(file: &Path, at: u64, check: impl FnOnce() -> T) -> T {
    let original = std::fs::read(file).unwrap();
    let mut bytes = original.clone();
    bytes[at as usize] ^= 0x10;
    std::fs::write(file, &bytes).unwrap();
    let result = check();
    std::fs::write(file, &original).unwrap();
    result
}

/// Positions in an object: in its tail, its trailer and its frames.
fn positions(object: &Path) -> (Vec<u64>, Vec<u64>) {
    let bytes = std::fs::read(object).unwrap();
    let size = bytes.len() as u64;
    let len = u64::from_le_bytes(bytes[bytes.len() - 16..bytes.len() - 8].try_into().unwrap());
    let start = size - 16 - len;
    let trailer = vec![
        size - 1,
        size - 12,
        start,
        start + 20,
        start + len / 2,
        size - 17,
    ];
    let frames = vec![0, 7, start / 3, start / 2, start - 1];
    (trailer, frames)
}

#[test]
fn every_flipped_byte_is_found_with_the_sync_points_it_breaks() {
    let built = Built::new(11);
    let clean = run(&built.dir, true);
    assert!(clean.damages.is_empty(), "{:?}", clean.damages);
    assert!(clean.objects > 4 && clean.segments > 4, "{clean:?}");
    assert_eq!(clean.sync_points, built.windows.len() as u64);
    let archived = built.archived();
    let retired: Vec<u64> = archived
        .iter()
        .copied()
        .filter(|s| !built.primary.contains(s))
        .collect();
    let in_primary = *archived
        .iter()
        .rfind(|s| built.primary.contains(s))
        .unwrap();
    let sample = [
        retired[0],
        retired[retired.len() / 2],
        retired[retired.len() - 1],
        in_primary,
    ];
    for seq in sample {
        let object = built.object(seq);
        let (trailer, frames) = positions(&object);
        let cases = trailer.iter().map(|&at| (at, false));
        for (at, read_data) in cases.chain(frames.iter().map(|&at| (at, true))) {
            let report = flipped(&object, at, || run(&built.dir, read_data));
            let [d] = &report.damages[..] else {
                panic!("segment {seq}, byte {at}: {:?}", report.damages);
            };
            assert_eq!((d.place, d.seq), (Place::Object, seq), "byte {at}");
            assert!(d.name.ends_with(&format!("{seq:016}.lsa")), "{d:?}");
            let (broken, risk) = match built.primary.contains(&seq) {
                true => (vec![], built.needing(seq)),
                false => (built.needing(seq), vec![]),
            };
            assert_eq!((&d.breaks, &d.at_risk), (&broken, &risk), "{seq} byte {at}");
        }
    }
    assert!(sample.iter().any(|&s| !built.needing(s).is_empty()));
}

#[test]
fn a_flipped_byte_in_a_primary_record_is_found_with_read_data() {
    let built = Built::new(12);
    let sealed: Vec<u64> = built.primary.iter().copied().collect();
    let seq = sealed[sealed.len() / 2];
    let file = segment(&built.dir, seq);
    for at in [4096 + 3, 4096 + 200, 20_000] {
        let (quick, full) = flipped(&file, at, || {
            (run(&built.dir, false), run(&built.dir, true))
        });
        assert!(
            quick.damages.is_empty(),
            "records are read with read_data only"
        );
        let [d] = &full.damages[..] else {
            panic!("byte {at}: {:?}", full.damages);
        };
        assert_eq!((d.place, d.seq), (Place::Primary, seq));
        assert!(d.name.ends_with(&format!("{seq:016}.seg")), "{d:?}");
        assert!(d.breaks.is_empty(), "the archived copy is intact");
        assert_eq!(d.at_risk, built.needing(seq));
    }
    // The header is read by default.
    let report = flipped(&file, 10, || run(&built.dir, false));
    assert_eq!(report.damages.len(), 1, "{:?}", report.damages);
}

#[test]
fn a_store_alone_verifies_and_names_the_sync_points_it_serves() {
    let built = Built::new(13);
    let store = built.dir.join("archive");
    let clean = run(&store, true);
    assert!(clean.damages.is_empty(), "{:?}", clean.damages);
    assert_eq!(clean.segments, 0);
    let Source::Store(archive) = source(&store, None).unwrap() else {
        panic!("not a store");
    };
    let served: BTreeSet<u64> = archive
        .sync_points(&|_, _| {})
        .unwrap()
        .iter()
        .map(|p| p.info.id)
        .collect();
    assert_eq!(clean.sync_points, served.len() as u64);
    let archived = built.archived();
    let seq = archived[archived.len() / 2];
    let object = built.object(seq);
    let (trailer, _) = positions(&object);
    let report = flipped(&object, trailer[4], || run(&store, false));
    let [d] = &report.damages[..] else {
        panic!("{:?}", report.damages);
    };
    assert_eq!((d.place, d.seq), (Place::Object, seq));
    // The sync points recorded in the damaged segment itself are in its
    // summary, unreadable now: a store alone cannot name them.
    let own = |id: &u64| built.windows[id].1 == seq;
    let want: Vec<u64> = built
        .needing(seq)
        .into_iter()
        .filter(|id| served.contains(id) && !own(id))
        .collect();
    assert_eq!(d.breaks, want);
}

fn repair(dir: &Path) -> lsvfs::Result<Report> {
    lsvfs::verify::repair(dir, true, &|_, _| {})
}

#[test]
fn repair_stores_again_what_primary_still_holds_and_only_that() {
    let built = Built::new(14);
    let archived = built.archived();
    let in_primary = *archived
        .iter()
        .rfind(|s| built.primary.contains(s))
        .unwrap();
    let retired = *archived
        .iter()
        .find(|s| !built.primary.contains(s))
        .unwrap();
    let damage = |seq: u64, at: usize| {
        let object = built.object(seq);
        let mut bytes = std::fs::read(&object).unwrap();
        bytes[at] ^= 0x10;
        std::fs::write(&object, &bytes).unwrap();
    };
    // A frame's byte: found only when the data is read.
    damage(in_primary, 7);
    damage(retired, 7);
    let before = run(&built.dir, true);
    assert_eq!(before.damages.len(), 2, "{:?}", before.damages);

    // Not while the volume is open.
    let open = Volume::open(&built.dir).unwrap();
    assert!(
        matches!(repair(&built.dir), Err(lsvfs::Error::Locked { .. })),
        "repair must refuse an open volume"
    );
    open.close().unwrap();

    let report = repair(&built.dir).unwrap();
    let [fixed] = &report.repaired[..] else {
        panic!("repaired {:?}", report.repaired);
    };
    assert_eq!((fixed.place, fixed.seq), (Place::Object, in_primary));
    let [left] = &report.damages[..] else {
        panic!("left {:?}", report.damages);
    };
    assert_eq!((left.place, left.seq), (Place::Object, retired));
    assert_eq!(left.breaks, built.needing(retired), "no copy is left of it");

    // The new object holds every byte of the segment; only the retired
    // segment's object is still damaged.
    assert!(
        built.object(in_primary).exists(),
        "stored again, not only deleted"
    );
    let after = run(&built.dir, true);
    assert_eq!(after.objects, before.objects);
    let [still] = &after.damages[..] else {
        panic!("after {:?}", after.damages);
    };
    assert_eq!(still.seq, retired);
    assert!(after.repaired.is_empty());
}

/// The partial objects (`.lsp`) in the volume's store directory.
fn partials(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir.join("archive")).unwrap();
    let paths = entries.map(|e| e.unwrap().path());
    paths
        .filter(|p| p.extension().is_some_and(|x| x == "lsp"))
        .collect()
}

#[test]
fn repair_deletes_a_damaged_partial_object_and_the_next_mount_ships_it_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    let mut policy = tiny_policy();
    policy.segment_size = 4 << 20;
    policy.ship_interval_s = 1;
    Volume::create(&dir, &policy).unwrap();
    // Writes and takes a sync point (or only mounts, the second time):
    // its partial object is shipped within the interval.
    let ship = |dir: &Path, write: bool| {
        let fs = Fs::new(Volume::open(dir).unwrap()).unwrap();
        if write {
            let mut work = Work::new(15);
            for _ in 0..30 {
                work.step(&fs).unwrap();
            }
            work.point(&fs);
        }
        wait_until("a partial object", Duration::from_secs(10), || {
            !partials(dir).is_empty()
        });
        fs.into_volume().close().unwrap();
    };
    ship(&dir, true);
    let [partial] = &partials(&dir)[..] else {
        panic!("{:?}", partials(&dir));
    };
    let mut bytes = std::fs::read(partial).unwrap();
    bytes[7] ^= 0x10;
    std::fs::write(partial, &bytes).unwrap();
    assert_eq!(run(&dir, true).damages.len(), 1);

    let report = repair(&dir).unwrap();
    assert!(report.damages.is_empty(), "{:?}", report.damages);
    let [d] = &report.repaired[..] else {
        panic!("{:?}", report.repaired);
    };
    assert!(d.error.contains("deleted"), "{d:?}");
    assert!(
        partials(&dir).is_empty(),
        "the damaged partial object is gone"
    );
    ship(&dir, false);
    assert!(run(&dir, true).damages.is_empty());
}

#[test]
fn repair_never_stores_a_primary_segment_whose_records_are_damaged() {
    let built = Built::new(16);
    let archived = built.archived();
    let seq = *archived
        .iter()
        .rfind(|s| built.primary.contains(s))
        .unwrap();
    // The object's trailer and one of the segment's records in primary:
    // a check of summaries alone finds only the first.
    let object = built.object(seq);
    let (trailer, _) = positions(&object);
    let mut bytes = std::fs::read(&object).unwrap();
    bytes[trailer[4] as usize] ^= 0x10;
    std::fs::write(&object, &bytes).unwrap();
    let file = segment(&built.dir, seq);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[4096 + 200] ^= 0x10;
    std::fs::write(&file, &bytes).unwrap();
    assert_eq!(run(&built.dir, false).damages.len(), 1);

    let report = lsvfs::verify::repair(&built.dir, false, &|_, _| {}).unwrap();
    assert!(report.repaired.is_empty(), "{:?}", report.repaired);
    let mut places: Vec<_> = report.damages.iter().map(|d| (d.seq, d.place)).collect();
    places.sort_by_key(|(s, p)| (*s, *p == Place::Object));
    let want = vec![(seq, Place::Primary), (seq, Place::Object)];
    assert_eq!(places, want, "{:?}", report.damages);
    assert!(
        report
            .damages
            .iter()
            .all(|d| d.breaks == built.needing(seq))
    );
}
