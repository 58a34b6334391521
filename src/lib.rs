//! lsvfs: a self-archiving, log-structured volume.
//!
//! The engine — [`format`], [`log`], [`index`], [`volume`], [`tree`] — knows
//! nothing of FUSE and is tested in-process; [`fs`] gives it POSIX semantics;
//! [`cli`] is the command line.
//! See docs/ARCHITECTURE.md for the layers and docs/FORMAT.md for the bytes.

pub mod archive;
pub mod batch;
pub mod changes;
pub mod checks;
pub mod cli;
pub mod clone;
pub mod control_files;
pub mod diff;
pub mod disk;
pub mod error;
pub mod export;
pub mod format;
pub mod fs;
pub mod fuse;
#[doc(hidden)]
pub mod fuzzing;
pub mod index;
pub mod layout;
pub mod log;
pub mod paths;
pub mod policy;
pub mod prune;
pub mod restore;
pub mod retention;
pub mod rollback;
pub mod status;
pub mod store;
pub mod sync;
pub mod time;
pub mod tree;
pub mod verify;
pub mod view;
pub mod volume;

pub use error::{Error, Result};
pub use view::View;
pub use volume::Volume;
