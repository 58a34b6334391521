//! A volume whose policy names an `s3://` store: the store is made from the
//! policy and the AWS environment (as `lsvfs create --backing-store
//! s3://...` and a mount would), segments retire into the bucket, and every
//! sync point reads back, also after a reopen that lists the bucket again.
//!
//! The engine reads the environment, which a test must not change while
//! other tests run: the test runs its half that opens the volume in a child
//! process of this test binary, with the environment pointing at the
//! server it started.

use super::common::dump;
use super::common::s3::{BUCKET, S3Server};
use super::workload::{W, Work, drained, primary_segments, tiny_policy};
use lsvfs::fs::Fs;
use lsvfs::store::BackingStore;
use lsvfs::volume::Volume;
use std::path::PathBuf;
use std::process::Command;

const CHILD: &str = "LSVFS_TEST_S3_VOLUME";
const PREFIX: &str = "volumes/one";

#[test]
fn a_volume_on_an_s3_store_retires_into_it_and_every_sync_point_reads_back() {
    let server = S3Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "volume::on_s3_in_a_child",
            "--ignored",
            "--nocapture",
        ])
        .envs(server.env())
        .env(CHILD, tmp.path())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the child ran no test: {text}");
    // The objects are in the bucket under the prefix, none elsewhere.
    let objects = server.store(PREFIX).list().unwrap();
    assert!(objects.len() >= 4, "{objects:?}");
    assert!(
        objects
            .iter()
            .all(|(n, size)| n.ends_with(".lsa") && *size > 0)
    );
    assert_eq!(server.store("").list().unwrap(), vec![]);
    // Nothing of the store's configuration is in the volume.
    let policy = std::fs::read_to_string(tmp.path().join("v/lsvfs.toml")).unwrap();
    assert!(policy.contains(&format!("backing_store = \"s3://{BUCKET}/{PREFIX}\"")));
    assert!(!policy.contains("127.0.0.1") && !policy.contains("lsvfs-test-secret"));
    assert!(!tmp.path().join("v/archive").exists());
}

#[test]
#[ignore = "the child half of a_volume_on_an_s3_store_…, run by it"]
fn on_s3_in_a_child() {
    let Some(tmp) = std::env::var_os(CHILD) else {
        return;
    };
    let dir = PathBuf::from(tmp).join("v");
    let mut policy = tiny_policy();
    policy.backing_store = PathBuf::from(format!("s3://{BUCKET}/{PREFIX}"));
    Volume::create(&dir, &policy).unwrap();
    let fs = Fs::new(Volume::open(&dir).unwrap()).unwrap();
    let url = format!("s3://{BUCKET}/{PREFIX}");
    assert_eq!(fs.volume().archive().store().describe(), url);
    let mut work = Work::new(15);
    let mut rounds = 0;
    while fs.volume().archive().store().list().unwrap().len() < 6 {
        for _ in 0..50 {
            work.step(&fs).unwrap();
        }
        work.point(&fs);
        rounds += 1;
        assert!(rounds < 200, "segments never retired into {url}");
    }
    drained(&fs);
    assert!(primary_segments(&dir) <= W as u64 + 1);
    work.check(fs.volume());
    let status = fs.volume().status();
    assert_eq!(status.store.location, url);
    assert!(status.store.ok, "{status:?}");
    // The archiver may still ship a sealed segment between the listing
    // and the status: compare a status taken between two equal listings.
    let (status, stored) = (0..50)
        .find_map(|_| {
            let before = fs.volume().archive().store().list().unwrap();
            fs.volume().archive().relist().unwrap();
            let status = fs.volume().status();
            let stored = fs.volume().archive().store().list().unwrap();
            if before == stored {
                return Some((status, stored));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            None
        })
        .expect("the store never stood still");
    assert_eq!(status.archived_segments, stored.len() as u64);
    assert_eq!(
        status.archived_bytes,
        stored.iter().map(|(_, n)| n).sum::<u64>()
    );
    assert!(status.render().contains(&format!("{url} (ok)")));
    fs.into_volume().close().unwrap();

    // Reopened, the volume lists the bucket again and every view that
    // needs a retired segment reads it from there.
    let vol = Volume::open(&dir).unwrap();
    assert!(vol.status().archived_segments >= 6);
    work.check(&vol);
    let first = *work.points.keys().next().unwrap();
    let view = vol.view(first).unwrap();
    assert_eq!(&dump(&view.tree()), &work.points[&first]);
    vol.close().unwrap();
}
