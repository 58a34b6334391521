//! `lsvfs clone`: a new writable volume from a sync point of a volume or
//! of a backing store alone.

use crate::clone::Cloned;
use crate::format::{SyncInfo, VolumeId};
use crate::layout::Source;
use crate::policy::Policy;
use crate::view::{Selector, View};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The new volume of a clone: where, and what differs from the source's
/// policy.
pub struct New<'a> {
    pub dir: &'a Path,
    pub backing_store: Option<PathBuf>,
    pub working_set: Option<u32>,
}

pub fn run(source: &Path, volume_id: Option<VolumeId>, at: &str, new: New) -> Result<()> {
    let started = std::time::Instant::now();
    let dir = new.dir;
    let (point, cloned) = clone(source, volume_id, at, new)?;
    println!(
        "cloned sync point {} ({}) into {}: {} inodes, {} bytes of data, in {:.1} s",
        point.id,
        crate::time::rfc3339(point.time_ns),
        dir.display(),
        cloned.inodes,
        cloned.data_bytes,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Clones sync point `at` of `source` (a volume or a backing store) into
/// the new volume `new.dir`: the sync point cloned and what was copied.
pub fn clone(
    source: &Path,
    volume_id: Option<VolumeId>,
    at: &str,
    new: New,
) -> Result<(SyncInfo, Cloned)> {
    let (new_volume, backing_store, working_set) = (new.dir, new.backing_store, new.working_set);
    let which = Selector::parse(at);
    let bar = super::progress::Bar::new(format!("building the view of {at}"), "segments");
    let (view, mut policy) = match crate::layout::source(source, volume_id)? {
        Source::Volume(dir) => {
            let policy = Policy::load(&crate::disk::Real, &dir)?;
            (
                View::open(&dir, None, &which, &|d, t| bar.set(d, t))?,
                policy,
            )
        }
        Source::Store(archive) => {
            let view = View::from_archive(archive, &which, &|d, t| bar.set(d, t))?;
            let mut policy = Policy::new(VolumeId([0; 16]));
            policy.block_size = view.block_size as u64;
            (view, policy)
        }
    };
    drop(bar);
    policy.volume_id = VolumeId::generate()
        .context("cannot make a volume id")?
        .to_hex();
    policy.backing_store = match backing_store {
        Some(path) => super::absolute(&path)?,
        None => Policy::new(VolumeId([0; 16])).backing_store,
    };
    if let Some(w) = working_set {
        policy.working_set = w;
    }
    let point = &view.point.info;
    let label = format!("clone of {} at sync point {}", source.display(), point.id);
    let cloned = crate::clone::clone_view(&view, new_volume, &policy, &label)
        .with_context(|| format!("cannot clone into {}", new_volume.display()))?;
    Ok((point.clone(), cloned))
}
