//! The archiver, in-process: primary storage stays within the working set
//! and its reserve under a long random workload; every sync point taken
//! rebuilds exactly, from primary and from the archive; a store that is
//! down makes writes wait and loses nothing; a crash between any two
//! retire steps recovers; a damaged or missing archived object is named,
//! and views that do not need it are unaffected.

mod capacity;
#[path = "../common/mod.rs"]
mod common;
mod crash;
mod history;
mod objects;
mod prune;
mod shipping;
mod verify;
mod workload;
