//! The S3-compatible backing store against a real S3 server (moto's, started
//! by each test on 127.0.0.1 and stopped when it ends): the store contract,
//! listings longer than one page, multipart objects, objects never
//! replaced, one clear line for each way the store can be unusable, a
//! volume whose policy names an `s3://` store retiring segments into it,
//! a server gone silent mid-run, prune deleting in the bucket, and PostgreSQL recovered from the store
//! alone after the volume is lost.

#[path = "../common/mod.rs"]
mod common;
mod outage;
mod postgres;
mod prune;
mod recovery;
mod store;
mod volume;
#[path = "../archiver/workload.rs"]
#[allow(dead_code)]
mod workload;

/// A new volume (the archiver tests' tiny policy) whose store is the
/// prefix `prefix` of a bucket on an S3 server this test started.
struct OnS3 {
    server: common::s3::S3Server,
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    id: lsvfs::format::VolumeId,
    store: std::sync::Arc<dyn lsvfs::store::BackingStore>,
}

impl OnS3 {
    fn new(prefix: &str) -> OnS3 {
        let server = common::s3::S3Server::start();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("v");
        let policy = workload::tiny_policy();
        lsvfs::volume::Volume::create(&dir, &policy).unwrap();
        let store = std::sync::Arc::new(server.store(prefix));
        OnS3 {
            id: policy.volume_id().unwrap(),
            server,
            _tmp: tmp,
            dir,
            store,
        }
    }
}
