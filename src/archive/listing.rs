//! What a backing store serves on its own, with no primary storage: the
//! volumes whose objects it holds, and the sync points of one volume whose
//! segment and whole window are stored. A host that never saw the volume
//! finds here what it can restore (`lsvfs sync-points STORE`, `lsvfs mount
//! STORE --at`). The sync points come from the objects' summaries, which
//! hold every sync record whole, the newest segments' from their partial
//! objects (shipped before the segment sealed).

use super::Archive;
use crate::error::{Error, Result};
use crate::format::archive::parse_name;
use crate::format::{Kind, Lsn, Record, SummaryEntry, VolumeId};
use crate::log::catalog::SyncPoint;
use crate::log::recovery::Progress;
use crate::store::{BackingStore, StoreError};
use std::collections::BTreeSet;

/// The volumes that have objects in `store`, in id order.
pub fn volumes(store: &dyn BackingStore) -> std::result::Result<Vec<VolumeId>, StoreError> {
    let ids: BTreeSet<[u8; 16]> = store
        .list()?
        .iter()
        .filter_map(|(name, _)| parse_name(name).map(|(v, _)| v.0))
        .collect();
    Ok(ids.into_iter().map(VolumeId).collect())
}

impl Archive {
    /// The sync points this archive can serve alone, oldest first: those
    /// whose segment and every segment of its window are stored. Lists
    /// the store afresh; `progress` is told of each object read.
    pub fn sync_points(&self, progress: Progress) -> Result<Vec<SyncPoint>> {
        self.relist()?;
        let whole: BTreeSet<u64> = self.objects().iter().map(|(s, _)| *s).collect();
        // A segment not sealed yet when it was shipped: its sync points up
        // to the partial object's end.
        let mut stored: Vec<u64> = whole.iter().copied().collect();
        stored.extend(self.partial_segments());
        stored.sort_unstable();
        let set = whole;
        let mut points = Vec::new();
        for (i, &seq) in stored.iter().enumerate() {
            let trailer = self.trailer(seq)?;
            progress(i as u64 + 1, stored.len() as u64);
            if !(trailer.header.window_start..seq).all(|s| set.contains(&s)) {
                continue;
            }
            let entries = SummaryEntry::decode_all(&trailer.summary).map_err(self.damaged(seq))?;
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
        }
        Ok(points)
    }
}
