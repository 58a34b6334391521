//! Shipping: a sync point in the segment still being written reaches the
//! store as a partial object within the ship interval, and the store alone
//! then serves it; a newer partial object replaces the older, and the
//! whole segment's object, once sealed and shipped, replaces them all.

use super::common::dump;
use super::workload::{Work, open, tiny_policy, wait_until};
use lsvfs::archive::Archive;
use lsvfs::store::{BackingStore, Memory};
use lsvfs::view::{Selector, View};
use lsvfs::volume::Volume;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The store's objects of one kind (`.lsa` whole, `.lsp` partial).
fn objects(store: &dyn BackingStore, suffix: &str) -> Vec<String> {
    let list = store.list().unwrap().into_iter().map(|(n, _)| n);
    list.filter(|n| n.ends_with(suffix)).collect()
}

/// The sync points the store alone serves, and the archive serving them.
fn served(store: &Arc<dyn BackingStore>, id: lsvfs::format::VolumeId) -> (Arc<Archive>, Vec<u64>) {
    let archive = Arc::new(Archive::open(store.clone(), id, 3, 4 << 20));
    let points = archive.sync_points(&|_, _| {}).unwrap();
    (archive, points.iter().map(|p| p.info.id).collect())
}

#[test]
fn a_sync_point_in_the_open_segment_is_served_by_the_store_within_the_ship_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    let mut policy = tiny_policy();
    policy.segment_size = 4 << 20;
    policy.ship_interval_s = 1;
    let id = policy.volume_id().unwrap();
    Volume::create(&dir, &policy).unwrap();
    let store: Arc<dyn BackingStore> = Arc::new(Memory::new());
    let fs = open(&dir, &store, None);
    let mut work = Work::new(5);
    let mut delays = Vec::new();
    // A reader of the store that opens views of the first partial object
    // and reads them only after newer objects replaced it.
    let mut early = Vec::new();
    let mut early_listing = None;
    for round in 0..3 {
        for _ in 0..30 {
            work.step(&fs).unwrap();
        }
        work.point(&fs);
        let newest = *work.points.keys().next_back().unwrap();
        let asked = Instant::now();
        wait_until(
            "the store to serve the sync point",
            Duration::from_secs(10),
            || served(&store, id).1.contains(&newest),
        );
        delays.push(asked.elapsed());
        let (archive, ids) = served(&store, id);
        assert_eq!(
            ids,
            work.points.keys().copied().collect::<Vec<_>>(),
            "round {round}"
        );
        if round == 0 {
            let (point, want) = work.points.iter().next_back().unwrap();
            let alone = served(&store, id).0;
            let view = View::from_archive(alone, &Selector::Id(*point), &|_, _| {});
            early.push((view.unwrap(), want.clone()));
            // Listed now, its first trailer read after the replacement.
            let stale = Archive::open(store.clone(), id, 3, 4 << 20);
            stale.relist().unwrap();
            early_listing = Some(stale);
        }
        for (point, want) in &work.points {
            let view =
                View::from_archive(archive.clone(), &Selector::Id(*point), &|_, _| {}).unwrap();
            assert_eq!(
                &dump(&view.tree()),
                want,
                "sync point {point} from the store alone"
            );
        }
        assert!(objects(&*store, ".lsa").is_empty(), "nothing sealed yet");
        assert_eq!(objects(&*store, ".lsp").len(), 1, "one partial object");
    }
    let status = fs.volume().status();
    assert!(
        status.session_partial_bytes > 0 && status.session_archived_stored_bytes == 0,
        "partial objects are counted apart: {status:?}"
    );
    println!("ship delays with a 1 s interval: {delays:?}");
    assert!(
        delays.iter().all(|d| *d < Duration::from_secs(3)),
        "{delays:?}"
    );
    // Sealing ships the whole segment, which replaces its partial object.
    while objects(&*store, ".lsa").is_empty() {
        for _ in 0..200 {
            work.step(&fs).unwrap();
        }
    }
    wait_until("the partial object to go", Duration::from_secs(10), || {
        objects(&*store, ".lsp").is_empty()
    });
    let stale = early_listing.unwrap();
    let seq = stale.partial_segments()[0];
    assert_eq!(
        stale.header(seq).unwrap().seq,
        seq,
        "a trailer read after its partial object was replaced"
    );
    for (view, want) in &early {
        assert_eq!(
            &dump(&view.tree()),
            want,
            "a view read after its partial object was replaced"
        );
    }
    fs.into_volume().close().unwrap();
}
