//! Open handles of a mount: the numbers the kernel is given at open and
//! opendir, and what each stands for until release.

use super::control_nodes::ControlHandle;
use crate::fs::Entry;
use crate::sync::lock;
use fuser::{Errno, FileHandle};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// What an open handle refers to.
pub enum Handle {
    /// A file of the live volume, counted open in `Fs`.
    File(u64),
    /// A directory listing taken at opendir; offsets index into it, so
    /// they stay valid however the directory changes.
    Dir(Vec<Entry>),
    Control(ControlHandle),
}

pub struct Handles {
    open: Mutex<HashMap<u64, Handle>>,
    next: AtomicU64,
}

impl Default for Handles {
    /// Numbering starts at 1: fh 0 is no handle (a view's open files).
    fn default() -> Self {
        Handles {
            open: Mutex::default(),
            next: AtomicU64::new(1),
        }
    }
}

impl Handles {
    pub fn add(&self, h: Handle) -> FileHandle {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.open).insert(fh, h);
        FileHandle(fh)
    }

    pub fn remove(&self, fh: FileHandle) -> Option<Handle> {
        lock(&self.open).remove(&fh.0)
    }

    /// The entries of the listing `fh` from `offset` on.
    pub fn listed(&self, fh: FileHandle, offset: u64) -> Result<Vec<Entry>, Errno> {
        match lock(&self.open).get(&fh.0) {
            Some(Handle::Dir(list)) => Ok(list.iter().skip(offset as usize).cloned().collect()),
            _ => Err(Errno::EBADF),
        }
    }

    /// The control file `fh` has open.
    pub fn control(&self, fh: FileHandle) -> Result<ControlHandle, Errno> {
        match lock(&self.open).get(&fh.0) {
            Some(Handle::Control(h)) => Ok(h.clone()),
            _ => Err(Errno::EBADF),
        }
    }
}
