//! The backup workflows on real mounts, through the command line: diff,
//! restore and rollback (`history`), export judged by GNU tar (`export`),
//! freeze and thaw (`freeze`). One test binary, so that a clean build links
//! the engine once for all three.

#[path = "../common/mod.rs"]
mod common;
mod export;
mod freeze;
mod history;
