//! Prune on an S3 store: the forgotten set goes to the bucket as an
//! object, so that a host with only the store forgets the same sync points;
//! the deleted objects are gone from the bucket, the kept history reads
//! back from the store alone.

use super::OnS3;
use super::common::dump;
use super::workload::{Work, drained, listed_ids, open};
use lsvfs::archive::Archive;
use lsvfs::prune::{Options, prune};
use lsvfs::retention::Keep;
use lsvfs::view::{Selector, View};
use std::sync::Arc;

#[test]
fn prune_on_an_s3_store_deletes_there_and_the_store_alone_forgets_too() {
    let OnS3 {
        server: _server,
        _tmp,
        dir,
        id,
        store,
    } = OnS3::new("prune");
    let fs = open(&dir, &store, None);
    let mut work = Work::new(21);
    for _ in 0..1500 {
        work.step(&fs).unwrap();
    }
    let kept = *work.points.keys().last().expect("sync points");
    for _ in 0..600 {
        work.step(&fs).unwrap();
    }
    drained(&fs);
    let points = listed_ids(fs.volume());
    let last = points.iter().filter(|i| **i >= kept).count() as u32;

    // Prune as another process would: its own archive on the bucket.
    let archive = Arc::new(Archive::open(store.clone(), id, 3, 16 << 20));
    let options = Options {
        keep: Keep {
            last: Some(last),
            ..Keep::default()
        },
        ..Options::default()
    };
    let r = prune(&lsvfs::disk::real(), &dir, Some(archive), &options).unwrap();
    assert!(!r.deleted.is_empty(), "nothing to delete");
    let names: Vec<String> = store.list().unwrap().into_iter().map(|(n, _)| n).collect();
    for gone in &r.deleted {
        assert!(!names.contains(&gone.name), "{} is still there", gone.name);
    }
    let sets: Vec<&String> = names.iter().filter(|n| n.ends_with(".lsf")).collect();
    assert_eq!(sets.len(), 1, "{names:?}");
    let listed = listed_ids(fs.volume());
    assert_eq!(listed.first(), Some(&kept), "{listed:?}");

    // A host with only the bucket lists no forgotten sync point and
    // mounts the kept ones.
    let alone = Arc::new(Archive::open(store.clone(), id, 0, 16 << 20));
    let served: Vec<u64> = alone
        .sync_points(&|_, _| {})
        .unwrap()
        .iter()
        .map(|p| p.info.id)
        .collect();
    assert!(served.contains(&kept), "{served:?}");
    assert!(served.iter().all(|i| listed.contains(i)), "{served:?}");
    for id in &served {
        let view = View::from_archive(alone.clone(), &Selector::Id(*id), &|_, _| {}).unwrap();
        assert_eq!(&dump(&view.tree()), &work.points[id], "sync point {id}");
    }
    let forgotten = points.iter().find(|i| !listed.contains(i)).unwrap();
    let err = View::from_archive(alone, &Selector::Id(*forgotten), &|_, _| {})
        .err()
        .expect("a forgotten sync point from the store");
    assert!(err.to_string().contains("no sync point"), "{err}");
    fs.into_volume().close().unwrap();
}
