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
