//! Views: the volume as of one sync point, read-only and the same bytes
//! every time. A view is built by the backward scan from its sync point
//! over the window recorded in its segment's header, reading primary
//! storage or the archive.
//!
//! [`View::open`] builds one from a volume directory in any process, also
//! while another process has the volume mounted and is writing it: it takes
//! no lock (only a lease that keeps prune off what it reads), reads the
//! catalog and the segments as they are, and goes to the archive for any
//! segment recycled meanwhile.

use crate::archive::Archive;
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::format::VolumeId;
use crate::index::Index;
use crate::layout;
use crate::log::catalog::SyncPoint;
use crate::log::reader::Segments;
use crate::log::recovery::{Progress, build_backward};
use crate::policy::Policy;
use crate::retention::forgotten::Forgotten;
use crate::retention::lease::Lease;
use crate::tree::Tree;
use std::path::Path;
use std::sync::Arc;

pub struct View {
    pub point: SyncPoint,
    pub block_size: u32,
    index: Index,
    segments: Arc<Segments>,
    /// Held while the view is open, when built from a volume directory.
    pub(crate) lease: Option<Lease>,
}

/// How a user names a sync point: its id, its label, or a time (the latest
/// sync point at or before it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Id(u64),
    Label(String),
    Time(u64),
}

impl Selector {
    /// Digits are an id; an RFC 3339 time (`2026-11-23T04:33:40Z`) is a
    /// time; anything else is a label.
    pub fn parse(s: &str) -> Selector {
        if !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && let Ok(id) = s.parse()
        {
            return Selector::Id(id);
        }
        match crate::time::parse_rfc3339(s) {
            Some(ns) => Selector::Time(ns),
            None => Selector::Label(s.to_string()),
        }
    }

    /// The sync point this names among `points` (oldest first).
    pub fn resolve(&self, points: &[SyncPoint]) -> Result<SyncPoint> {
        let found = match self {
            Selector::Id(id) => points.iter().find(|p| p.info.id == *id),
            Selector::Label(label) => {
                let named: Vec<&SyncPoint> =
                    points.iter().filter(|p| p.info.label == *label).collect();
                if named.len() > 1 {
                    return Err(Error::AmbiguousSyncPoint {
                        label: label.clone(),
                        ids: named.iter().map(|p| p.info.id).collect(),
                    });
                }
                named.first().copied()
            }
            Selector::Time(ns) => {
                let before = points.iter().rfind(|p| p.info.time_ns <= *ns);
                if before.is_none() && !points.is_empty() {
                    return Err(Error::UnknownSyncPoint(format!(
                        "at or before {}: the first is {} at {}",
                        crate::time::rfc3339(*ns),
                        points[0].info.id,
                        crate::time::rfc3339(points[0].info.time_ns)
                    )));
                }
                before
            }
        };
        found.cloned().ok_or_else(|| {
            Error::UnknownSyncPoint(match self {
                Selector::Id(id) => id.to_string(),
                Selector::Label(l) => format!("labelled {l:?}"),
                Selector::Time(ns) => format!("at or before {}", crate::time::rfc3339(*ns)),
            })
        })
    }
}

impl View {
    /// Builds the view of `point` from `segments`, telling `progress`.
    pub(crate) fn build(
        point: SyncPoint,
        segments: Arc<Segments>,
        block_size: u32,
        progress: Progress,
    ) -> Result<View> {
        let recs = segments.records(point.lsn.seq)?;
        let built = build_backward(
            block_size,
            point.lsn,
            &recs,
            |seq| segments.records(seq).map(Some),
            progress,
        )?;
        Ok(View {
            point,
            block_size,
            index: built.index,
            segments,
            lease: None,
        })
    }

    /// Takes a lease on sync point `id` of the volume in `dir`, then makes
    /// sure prune has not forgotten it meanwhile (see
    /// [`crate::retention::lease`] for the handshake). A volume on a
    /// read-only filesystem takes none: nothing can prune it there.
    pub(crate) fn lease(disk: &Arc<dyn Disk>, dir: &Path, id: u64) -> Result<Option<Lease>> {
        let lease = match Lease::take(disk.clone(), dir, id) {
            Ok(l) => Some(l),
            Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::EROFS) => None,
            Err(e) => return Err(e),
        };
        if Forgotten::load(&**disk, dir)?.contains(id) {
            return Err(Error::Pruned(id));
        }
        Ok(lease)
    }

    /// Opens the view named by `which` of `source`: a volume directory, or
    /// a backing store holding the objects of `volume` (needed only when
    /// it holds several; see [`layout::source`]). A volume is not locked: it may be mounted and
    /// written meanwhile. `progress` is told how many segments of the
    /// view's window were read.
    pub fn open(
        source: &Path,
        volume: Option<VolumeId>,
        which: &Selector,
        progress: Progress,
    ) -> Result<View> {
        match layout::source(source, volume)? {
            layout::Source::Volume(dir) => Self::open_volume(&dir, which, progress),
            layout::Source::Store(archive) => Self::from_archive(archive, which, progress),
        }
    }

    fn open_volume(dir: &Path, which: &Selector, progress: Progress) -> Result<View> {
        let disk = crate::disk::real();
        let policy = Policy::load(&*disk, dir)?;
        let points = crate::prune::listed(&*disk, dir, &Forgotten::load(&*disk, dir)?)?;
        let point = which.resolve(&points)?;
        let lease = View::lease(&disk, dir, point.info.id)?;
        let archive = layout::open_archive(&disk, dir, &policy, None)?;
        let segments = Segments::new(
            disk,
            layout::segments_dir(dir),
            policy.volume_id()?,
            policy.segment_size,
            archive,
            0,
        )
        .shared_with_a_writer();
        let mut view = View::build(
            point,
            Arc::new(segments),
            policy.block_size as u32,
            progress,
        )?;
        view.lease = lease;
        Ok(view)
    }

    /// The view named by `which` from the archive alone: no primary
    /// storage, no policy file (the segment headers say the geometry).
    pub fn from_archive(
        archive: Arc<Archive>,
        which: &Selector,
        progress: Progress,
    ) -> Result<View> {
        let points = archive.sync_points(&|_, _| {})?;
        let point = which.resolve(&points)?;
        let header = archive.header(point.lsn.seq)?;
        let segments = Segments::retired_only(archive.volume_id(), header.segment_size, archive);
        View::build(point, Arc::new(segments), header.block_size, progress)
    }

    pub fn tree(&self) -> Tree<'_, Index> {
        Tree {
            index: &self.index,
            segments: &self.segments,
        }
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Reads records by position, from primary storage or the archive.
    pub fn segments(&self) -> &Segments {
        &self.segments
    }

    /// The live volume in `dir` as its log holds it now, as a view (id 0,
    /// labelled `live`): for comparing with a sync point while the volume
    /// may be mounted and written. It holds every complete group appended
    /// when its newest segment was read; what the kernel still caches for
    /// a mount is not in it (`sync -f` the mount first).
    pub fn live(dir: &Path) -> Result<View> {
        let disk = crate::disk::real();
        let policy = Policy::load(&*disk, dir)?;
        let seg_dir = layout::segments_dir(dir);
        let listing = crate::log::segment::list(&*disk, &seg_dir)?;
        let Some(&last) = listing.segments.last() else {
            return Err(Error::Inconsistent(format!(
                "{} holds no segment",
                seg_dir.display()
            )));
        };
        let archive = layout::open_archive(&disk, dir, &policy, None)?;
        let segments = Segments::new(
            disk,
            seg_dir,
            policy.volume_id()?,
            policy.segment_size,
            archive,
            0,
        )
        .shared_with_a_writer();
        let point = SyncPoint {
            lsn: crate::format::Lsn {
                seq: last,
                offset: u32::MAX,
            },
            info: crate::format::SyncInfo {
                id: 0,
                time_ns: crate::time::now_ns(),
                label: "live".into(),
                requester: String::new(),
            },
        };
        View::build(
            point,
            Arc::new(segments),
            policy.block_size as u32,
            &|_, _| {},
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Lsn, SyncInfo};

    fn point(id: u64, secs: u64, label: &str) -> SyncPoint {
        SyncPoint {
            lsn: Lsn { seq: 1, offset: 0 },
            info: SyncInfo {
                id,
                time_ns: secs * 1_000_000_000,
                label: label.into(),
                requester: String::new(),
            },
        }
    }

    #[test]
    fn selectors_parse_and_resolve() {
        let points = [point(1, 100, "a"), point(2, 200, "b"), point(3, 300, "b")];
        let id = |s: &str| Selector::parse(s).resolve(&points).map(|p| p.info.id);
        assert_eq!(id("2").unwrap(), 2);
        assert_eq!(id("a").unwrap(), 1);
        assert_eq!(
            Selector::parse("1970-01-01T00:04:10Z"),
            Selector::Time(250_000_000_000)
        );
        assert_eq!(
            id("1970-01-01T00:04:10Z").unwrap(),
            2,
            "latest at or before"
        );
        assert_eq!(id("1970-01-01T00:05:00Z").unwrap(), 3, "exactly at");
        let msg = |s: &str| id(s).unwrap_err().to_string();
        assert!(msg("b").contains("ids [2, 3]"), "{}", msg("b"));
        assert!(msg("9").contains("no sync point 9"));
        assert!(msg("c").contains("labelled \"c\""));
        assert!(msg("1970-01-01T00:01:00Z").contains("the first is 1"));
    }
}
