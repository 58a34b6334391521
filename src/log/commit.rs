//! Group commit in the calling threads: whoever needs the log durable up to
//! a position and finds nobody flushing becomes the leader, fdatasyncs the
//! tail for everyone queued behind it, adds the sync points it made durable
//! to the catalog (written, not fdatasynced: see [`Catalog::add`]) and
//! wakes them; the others wait for a leader
//! whose flush covers them (leader and followers, as PostgreSQL's WAL
//! flush and RocksDB's write groups do). No thread is woken to flush and
//! none to answer: an fsync costs its own fdatasync, shared with whoever
//! asked meanwhile.

#[cfg(doc)]
use super::catalog::Catalog;
use super::catalog::SyncPoint;
use super::tail::TailFile;
use super::{Shared, SyncSite};
use crate::error::{Error, Result};
use crate::format::Lsn;
use crate::sync::lock;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

pub(super) struct GroupCommit {
    state: Mutex<Commit>,
    /// Signalled when a leader is done.
    done: Condvar,
}

struct Commit {
    /// A leader is flushing.
    leading: bool,
    /// Everything before this is durable and every sync point before it
    /// is in the catalog.
    done: Lsn,
    /// Sync points written and not yet in the catalog, oldest first.
    pending: VecDeque<SyncPoint>,
    /// Set when the volume stopped as if killed: nothing is flushed or
    /// recorded any more.
    stopped: bool,
}

impl GroupCommit {
    /// Everything before `durable` is durable already (recovery read it).
    pub fn new(durable: Lsn) -> Self {
        GroupCommit {
            state: Mutex::new(Commit {
                leading: false,
                done: durable,
                pending: VecDeque::new(),
                stopped: false,
            }),
            done: Condvar::new(),
        }
    }

    /// A sync point just written: it goes in the catalog with the flush that
    /// makes it durable. Called in the order of the sync points' positions.
    pub fn add_point(&self, point: SyncPoint) {
        lock(&self.state).pending.push_back(point);
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, Commit>) -> MutexGuard<'a, Commit> {
        self.done.wait(guard).unwrap_or_else(|p| p.into_inner())
    }

    /// Returns once everything before `target` is durable and the sync
    /// points before it are in the catalog. A leader asks `current` for the
    /// tail's file and the end of what was written to it, and flushes that
    /// far. After a failed fdatasync nothing is answered as durable again:
    /// Linux reports a writeback error once, so a later fsync could succeed
    /// falsely (the tail file poisons the volume before anyone else may
    /// fdatasync it).
    pub fn wait_durable(
        &self,
        shared: &Shared,
        target: Lsn,
        current: impl Fn() -> (Arc<TailFile>, Lsn),
    ) -> Result<()> {
        let mut c = lock(&self.state);
        loop {
            if c.done >= target {
                return Ok(());
            }
            shared.check()?;
            if c.stopped {
                return Err(Error::Closed);
            }
            if c.leading {
                c = self.wait(c);
                continue;
            }
            c.leading = true;
            drop(c);
            let (file, end) = current();
            let synced = file.sync_data(shared, SyncSite::Commit);
            c = lock(&self.state);
            let result = synced.and_then(|()| {
                let n = c.pending.iter().take_while(|p| p.lsn < end).count();
                let points: Vec<SyncPoint> = c.pending.drain(..n).collect();
                lock(shared.catalog()).add(&points)
            });
            match &result {
                Ok(()) => {
                    shared.set_durable(end);
                    c.done = c.done.max(end);
                }
                Err(e) => shared.poison(e),
            }
            c.leading = false;
            self.done.notify_all();
            result?;
        }
    }

    /// Stops as the process would if killed: waits for a leader in flight
    /// (its fdatasync cannot be taken back), then nothing more is flushed.
    pub fn stop(&self) {
        let mut c = lock(&self.state);
        while c.leading {
            c = self.wait(c);
        }
        c.stopped = true;
    }
}
