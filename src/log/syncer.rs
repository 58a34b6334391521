//! The syncer thread: makes written batches durable for the requests that
//! asked for it (fsync, sync points, close), while the writer appends the
//! next batches. Batches waiting together share one fdatasync per segment:
//! group commit.

use super::catalog::SyncPoint;
use super::replies::Owed;
use super::tail::TailFile;
use super::{Shared, SyncSite};
use crate::format::Lsn;
use crate::sync::lock;
use crossbeam_channel::Receiver;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What a batch that asked for durability owes once its segment is
/// fdatasynced: the syncer thread answers it, while the writer appends the
/// next batches. Jobs waiting together share one fdatasync per segment.
pub(super) struct SyncJob {
    pub file: Arc<TailFile>,
    pub seq: u64,
    pub end: Lsn,
    /// Replies of syncs, sync points and close, answered once `end` is
    /// durable.
    pub owed: Owed,
}

/// Bound of the syncer's queue: the writer waits when it is this far ahead.
pub(super) const SYNC_QUEUE_LEN: usize = 64;

/// The syncer thread: fdatasyncs for queued jobs, oldest first, then
/// publishes the new durable position and the sync points and answers.
/// After a failed fdatasync nothing is answered as durable again: Linux
/// reports a writeback error once, so a later fsync could succeed falsely.
pub(super) fn sync_loop(shared: Arc<Shared>, rx: Receiver<SyncJob>, crashed: Arc<AtomicBool>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        jobs.extend(rx.try_iter());
        if crashed.load(Ordering::SeqCst) {
            // As if the process were killed: nothing more is flushed or
            // recorded, and nobody is answered.
            continue;
        }
        let mut synced: Option<u64> = None;
        let result = shared.check().and_then(|()| {
            for job in &jobs {
                if synced != Some(job.seq) {
                    job.file.sync_data(&shared, SyncSite::Syncer)?;
                    synced = Some(job.seq);
                }
            }
            let points: Vec<SyncPoint> = jobs
                .iter()
                .flat_map(|j| j.owed.points.iter().map(|(_, p)| p.clone()))
                .collect();
            lock(&shared.catalog).append(&points)
        });
        if let Err(e) = &result {
            shared.poison(e);
        }
        if let Some(last) = jobs.last().filter(|_| result.is_ok()) {
            shared.set_durable(last.end);
        }
        let failure = result.err().map(|e| e.to_string());
        for job in jobs {
            job.owed.settle(match &failure {
                None => Ok(job.end),
                Some(why) => Err(why),
            });
        }
    }
}
