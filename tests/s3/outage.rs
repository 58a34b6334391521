//! The S3 server going silent in the middle of a run (its processes
//! stopped): writes go on into the reserve and then wait, none fails and
//! nothing is lost; when it answers again the archive catches up, and every
//! sync point is served by the store alone.

use super::OnS3;
use super::common::dump;
use super::workload::{Work, drained, open, wait_until};
use lsvfs::archive::Archive;
use lsvfs::view::{Selector, View};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn a_silent_s3_server_delays_writes_and_loses_nothing() {
    let OnS3 {
        server,
        _tmp,
        dir,
        id,
        store,
    } = OnS3::new("outage");
    let fs = Arc::new(open(&dir, &store, None));
    let mut work = Work::new(11);
    for _ in 0..300 {
        work.step(&fs).unwrap();
    }
    work.point(&fs);

    server.pause();
    let writer = {
        let fs = fs.clone();
        std::thread::spawn(move || {
            for round in 0..10 {
                for _ in 0..120 {
                    work.step(&fs)
                        .expect("no write fails while the store is silent");
                }
                if round % 3 == 2 {
                    work.point(&fs);
                }
            }
            work
        })
    };
    wait_until(
        "writes to wait for the store",
        Duration::from_secs(60),
        || fs.volume().status().writes_blocked,
    );
    assert!(
        !writer.is_finished(),
        "writes wait while the store is silent"
    );
    server.resume();
    let work = writer.join().unwrap();
    drained(&fs);
    work.check(fs.volume());

    // Everything sealed is in the store: every sync point in a sealed
    // segment is served by the store alone, as recorded.
    let sealed_below = fs.volume().durable().seq;
    let archive = Arc::new(Archive::open(store.clone(), id, 3, 4 << 20));
    let served = archive.sync_points(&|_, _| {}).unwrap();
    let points = fs.volume().sync_points().unwrap();
    for p in points.iter().filter(|p| p.lsn.seq < sealed_below) {
        assert!(
            served.iter().any(|s| s.info.id == p.info.id),
            "sync point {} served",
            p.info.id
        );
        let view =
            View::from_archive(archive.clone(), &Selector::Id(p.info.id), &|_, _| {}).unwrap();
        assert_eq!(
            &dump(&view.tree()),
            &work.points[&p.info.id],
            "sync point {}",
            p.info.id
        );
    }
    Arc::into_inner(fs).unwrap().into_volume().close().unwrap();
}
