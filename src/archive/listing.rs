//! What a backing store serves on its own, with no primary storage: the
//! volumes whose objects it holds, and the sync points of one volume whose
//! segment and whole window are stored. A host that never saw the volume
//! finds here what it can restore (`lsvfs sync-points STORE`, `lsvfs mount
//! STORE --at`). The sync points come from the objects' summaries, which
//! hold every sync record whole, the newest segments' from their partial
//! objects (shipped before the segment sealed).

use super::Archive;
use crate::error::{Error, Result};
use crate::format::archive::Trailer;
use crate::format::archive::parse_name;
use crate::format::{Kind, Lsn, Record, SummaryEntry, VolumeId};
use crate::log::catalog::SyncPoint;
use crate::log::recovery::Progress;
use crate::retention::forgotten::Forgotten;
use crate::store::{BackingStore, StoreError};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Most trailers fetched at once for a listing.
const LISTING_THREADS: usize = 4;

/// The volumes that have objects in `store`, in id order.
pub fn volumes(store: &dyn BackingStore) -> std::result::Result<Vec<VolumeId>, StoreError> {
    let ids: BTreeSet<[u8; 16]> = store
        .list()?
        .iter()
        .filter_map(|(name, _)| parse_name(name).map(|(v, _)| v.0))
        .collect();
    Ok(ids.into_iter().map(VolumeId).collect())
}

/// The sync points recorded in segment `seq`, from its summary `entries`
/// (a summary holds sync records whole).
pub fn sync_points_in(seq: u64, entries: &[SummaryEntry]) -> Result<Vec<SyncPoint>> {
    let mut points = Vec::new();
    for e in entries.iter().filter(|e| e.kind == Kind::SyncPoint) {
        let corrupt = |source| Error::Corrupt {
            seq,
            offset: e.offset as u64,
            what: "sync record",
            source,
        };
        if let Record::SyncPoint(info) =
            Record::decode_parts(e.kind, &e.key, &e.value).map_err(corrupt)?
        {
            let lsn = Lsn {
                seq,
                offset: e.offset,
            };
            points.push(SyncPoint { lsn, info });
        }
    }
    Ok(points)
}

impl Archive {
    /// The sync points this archive can serve alone, oldest first: those
    /// whose segment and every segment of its window are stored, less
    /// those prune forgot. Lists the store afresh; `progress` is told of
    /// each object read.
    pub fn sync_points(&self, progress: Progress) -> Result<Vec<SyncPoint>> {
        self.relist()?;
        let (forgotten, _) = Forgotten::load_stored(self.store(), self.volume_id())?;
        let whole: BTreeSet<u64> = self.objects().iter().map(|(s, _)| *s).collect();
        // A segment not sealed yet when it was shipped: its sync points up
        // to the partial object's end.
        let mut stored: Vec<u64> = whole.iter().copied().collect();
        stored.extend(self.partial_segments());
        stored.sort_unstable();
        let trailers = self.trailers_of(&stored, progress)?;
        let mut points = Vec::new();
        for (&seq, trailer) in stored.iter().zip(trailers) {
            if !(trailer.header.window_start..seq).all(|s| whole.contains(&s)) {
                continue;
            }
            let entries = SummaryEntry::decode_all(&trailer.summary).map_err(self.damaged(seq))?;
            points.extend(sync_points_in(seq, &entries)?);
        }
        points.retain(|p| !forgotten.contains(p.info.id));
        Ok(points)
    }

    /// The trailers of segments `seqs`, in that order, fetched by up to
    /// [`LISTING_THREADS`] threads: a store's latency, not its bandwidth,
    /// bounds a listing. Stops at the first failure.
    pub(crate) fn trailers_of(
        &self,
        seqs: &[u64],
        progress: Progress,
    ) -> Result<Vec<Arc<Trailer>>> {
        let next = AtomicUsize::new(0);
        let mut slots: Vec<Option<Arc<Trailer>>> = vec![None; seqs.len()];
        std::thread::scope(|scope| {
            let (tx, rx) = crossbeam_channel::unbounded();
            for _ in 0..LISTING_THREADS.min(seqs.len()) {
                let (tx, next) = (tx.clone(), &next);
                scope.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= seqs.len() || tx.send((i, self.trailer(seqs[i]))).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(tx);
            for (done, (i, trailer)) in rx.iter().enumerate() {
                progress(done as u64 + 1, seqs.len() as u64);
                match trailer {
                    Ok(t) => slots[i] = Some(t),
                    Err(e) => {
                        next.store(seqs.len(), Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
            Ok(())
        })?;
        Ok(slots.into_iter().flatten().collect())
    }
}
