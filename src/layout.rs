//! A volume's files on disk: the directory layout, creating a volume with
//! durable writes, the checks every opener makes (is this a volume, are its
//! directories private, is it a copy of another), and opening its archive
//! and log from the policy. Shared by the live volume and by views.
//!
//! ```text
//! VOLUME/lsvfs.toml   policy          VOLUME/lock        holder, clean-close mark
//! VOLUME/syncpoints   catalog         VOLUME/segments/   segment files
//! VOLUME/archive/     default backing store (none for an s3:// store)
//! ```
//! The policy file's name is [`POLICY_FILE`], the lock's
//! [`crate::log::lock::LOCK_FILE`], the catalog's
//! [`crate::log::catalog::CATALOG_FILE`].

use crate::archive::Archive;
use crate::disk::{Disk, OpenMode};
use crate::error::{Error, Result, io};
use crate::format::VolumeId;
use crate::log::catalog::Catalog;
use crate::log::lock::Found;
use crate::log::{FdatasyncHook, LogConfig, segment};
use crate::policy::{POLICY_FILE, Policy, StoreLocation};
use crate::store::{ArchiveError, BackingStore, LocalDir, S3Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const SEGMENTS_DIR: &str = "segments";

/// The segments directory of the volume in `dir`.
pub fn segments_dir(dir: &Path) -> PathBuf {
    dir.join(SEGMENTS_DIR)
}

/// Whether `dir` holds a volume: an error saying what to do when not.
pub fn check_volume(disk: &dyn Disk, dir: &Path) -> Result<()> {
    if disk.exists(&dir.join(POLICY_FILE)) {
        return Ok(());
    }
    let path = dir.to_path_buf();
    Err(if disk.exists(dir) {
        Error::NotAVolume { path }
    } else {
        Error::NoVolume { path }
    })
}

/// Creates a volume in `dir` on `disk`; `dir` must be absent or empty.
pub fn create(disk: &dyn Disk, dir: &Path, policy: &Policy) -> Result<()> {
    policy.validate()?;
    if disk.exists(&dir.join(POLICY_FILE)) {
        return Err(Error::AlreadyAVolume {
            path: dir.to_path_buf(),
        });
    }
    match disk.list(dir) {
        Ok(entries) if entries.is_empty() => {}
        Ok(_) => {
            return Err(Error::NotEmpty {
                path: dir.to_path_buf(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_dirs(disk, dir)?,
        Err(e) => return Err(io(format!("cannot read {}", dir.display()))(e)),
    }
    create_dirs(disk, &segments_dir(dir))?;
    // A URL store is not created here: its bucket is the user's.
    if policy.store_is_local() {
        create_dirs(disk, &policy.backing_store_path(dir))?;
    }
    Catalog::create(disk, dir)?;
    // The policy file goes last: its presence is what makes a volume.
    write_durably(disk, &dir.join(POLICY_FILE), policy.to_toml().as_bytes())?;
    segment::fsync_dir(disk, dir)
}

/// Replaces (or makes) the file at `path` with `bytes`, atomically and
/// durably: a temporary beside it (one left by a crash is replaced),
/// fsynced, renamed over it, and the directory fsynced.
pub fn write_durably(disk: &dyn Disk, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let ctx = format!("cannot write {}", path.display());
    if disk.exists(&tmp) {
        disk.remove_file(&tmp).map_err(io(ctx.clone()))?;
    }
    let file = disk
        .open(&tmp, OpenMode::CreateNew)
        .map_err(io(ctx.clone()))?;
    file.write_all_at(bytes, 0)
        .and_then(|_| file.sync_all())
        .and_then(|_| disk.rename(&tmp, path))
        .map_err(io(ctx))?;
    segment::fsync_dir(disk, path.parent().unwrap_or(Path::new(".")))
}

/// Creates directory `path` and its missing parents durably: each new
/// entry is fsynced in its parent (else a power loss could take it).
fn create_dirs(disk: &dyn Disk, path: &Path) -> Result<()> {
    let missing: Vec<&Path> = path.ancestors().take_while(|a| !disk.exists(a)).collect();
    disk.create_dir_all(path)
        .map_err(io(format!("cannot create {}", path.display())))?;
    for new in missing.iter().rev() {
        if let Some(parent) = new.parent() {
            segment::fsync_dir(disk, parent)?;
        }
    }
    Ok(())
}

/// Refuses a volume whose directories another user could change, and
/// closes its segments directory to others (volumes made before lsvfs did
/// so had 0755: the segments hold every user's data). The volume and store
/// directories are where the user put them (a symlink there is theirs);
/// `segments/` is lsvfs's own. `own_store`: the store is the policy's
/// (not one given to the opener); only a local directory is checked.
pub fn check_private(disk: &dyn Disk, dir: &Path, policy: &Policy, own_store: bool) -> Result<()> {
    let seg_dir = segments_dir(dir);
    let mut private = vec![(dir.to_path_buf(), true), (seg_dir.clone(), false)];
    if own_store && policy.store_is_local() {
        private.push((policy.backing_store_path(dir), true));
    }
    for (path, follow) in &private {
        check_private_dir(disk, path, *follow)?;
    }
    crate::disk::make_dir_private(disk, &seg_dir)
        .map_err(io(format!("cannot make {} private", seg_dir.display())))
}

/// Refuses a directory of the volume that another user could change: one
/// could plant a link there that an open as root would write through.
fn check_private_dir(disk: &dyn Disk, path: &Path, follow: bool) -> Result<()> {
    let why = match crate::disk::unsafe_dir(disk, path, follow) {
        // Missing: whatever opens it next says so in its own words.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        other => other.map_err(io(format!("cannot inspect {}", path.display())))?,
    };
    match why {
        Some(why) => Err(Error::UnsafeDir {
            path: path.to_path_buf(),
            why,
        }),
        None => Ok(()),
    }
}

/// Refuses a volume directory that is a copy of one that still exists: the
/// lock file names a home (device, inode, path) that is not this directory,
/// and that directory is still there holding a volume of the same id. Two
/// volumes with one id would store into the same objects of a shared store.
/// A volume that was moved (its old home is gone) opens, and its new home
/// is recorded.
pub fn check_not_a_copy(disk: &dyn Disk, found: &Found, policy: &Policy) -> Result<()> {
    let Some(last) = &found.last_home else {
        return Ok(());
    };
    if last.same_dir(&found.home) || !last.still_there(disk) {
        return Ok(());
    }
    let same_id = Policy::load(disk, &last.path).is_ok_and(|p| p.volume_id == policy.volume_id);
    if !same_id {
        return Ok(());
    }
    Err(Error::CopiedVolume {
        path: found.home.path.clone(),
        original: last.path.clone(),
        id: policy.volume_id.clone(),
    })
}

/// The archive of the volume in `dir`: in `store` if given, else in the
/// store its policy names (a local directory, or an `s3://` URL whose
/// endpoint and credentials come from the environment). Not yet listed;
/// no request is made to a remote store.
pub fn open_archive(
    disk: &Arc<dyn Disk>,
    dir: &Path,
    policy: &Policy,
    store: Option<Arc<dyn BackingStore>>,
) -> Result<Arc<Archive>> {
    let store: Arc<dyn BackingStore> = match (store, policy.store_location()?) {
        (Some(s), _) => s,
        (None, StoreLocation::Dir(_)) => Arc::new(
            LocalDir::open(disk.clone(), &policy.backing_store_path(dir))
                .map_err(ArchiveError::from)?,
        ),
        (None, StoreLocation::S3 { bucket, prefix }) => {
            Arc::new(S3Store::open(&bucket, &prefix).map_err(ArchiveError::from)?)
        }
    };
    Ok(Arc::new(Archive::open(
        store,
        policy.volume_id()?,
        policy.compression_level,
        policy.cache_size,
    )))
}

/// Where the log of the volume in `dir` is and its shape, from the policy.
pub fn log_config(
    disk: Arc<dyn Disk>,
    dir: &Path,
    policy: &Policy,
    fdatasync_hook: Option<FdatasyncHook>,
) -> Result<LogConfig> {
    Ok(LogConfig {
        disk,
        dir: segments_dir(dir),
        volume_id: policy.volume_id()?,
        block_size: policy.block_size as u32,
        segment_size: policy.segment_size,
        capacity_bytes: policy.capacity_bytes(),
        fdatasync_hook,
    })
}

/// What a path given as the source of sync points names.
pub enum Source {
    /// A volume directory.
    Volume(PathBuf),
    /// A backing store on its own (a host without the volume's primary
    /// storage), with the archive of the one volume whose objects it holds.
    Store(Arc<Archive>),
}

/// Tells a volume directory from a backing store: an `s3://` URL is a
/// store; a directory with a policy file is a volume; any other directory
/// is read as a store, opened for reading only.
///
/// A store may hold several volumes: `volume` selects one (required then).
/// Given for a volume directory, it must be that volume's id.
pub fn source(path: &Path, volume: Option<VolumeId>) -> Result<Source> {
    let disk = crate::disk::real();
    let store: Arc<dyn BackingStore> = match crate::policy::store_url(path) {
        Some(url) => {
            let (bucket, prefix) = crate::policy::parse_s3_url(&url).map_err(|why| {
                Error::Invalid(format!(
                    "{why}; a source is a volume, a store directory or s3://BUCKET/PREFIX"
                ))
            })?;
            Arc::new(S3Store::open(&bucket, &prefix).map_err(ArchiveError::from)?)
        }
        None if disk.exists(&path.join(POLICY_FILE)) => {
            let id = Policy::load(&*disk, path)?.volume_id()?;
            if let Some(want) = volume.filter(|w| *w != id) {
                return Err(Error::NoSuchVolume {
                    path: path.to_path_buf(),
                    id: want.to_hex(),
                    ids: vec![id.to_hex()],
                });
            }
            return Ok(Source::Volume(path.to_path_buf()));
        }
        None => {
            check_volume(&*disk, path).or_else(|e| match e {
                Error::NotAVolume { .. } => Ok(()),
                e => Err(e),
            })?;
            Arc::new(LocalDir::reader(disk, path).map_err(ArchiveError::from)?)
        }
    };
    let ids = crate::archive::volumes(&*store).map_err(ArchiveError::from)?;
    let volume_id = match (volume, &ids[..]) {
        (Some(want), _) if ids.contains(&want) => want,
        (Some(want), _) => {
            return Err(Error::NoSuchVolume {
                path: path.to_path_buf(),
                id: want.to_hex(),
                ids: ids.iter().map(|i| i.to_hex()).collect(),
            });
        }
        (None, [id]) => *id,
        (None, []) => {
            return Err(Error::NotASource {
                path: path.to_path_buf(),
            });
        }
        (None, _) => {
            return Err(Error::SeveralVolumes {
                path: path.to_path_buf(),
                ids: ids.iter().map(|i| i.to_hex()).collect(),
            });
        }
    };
    let cache = crate::policy::DEFAULT_CACHE_SIZE;
    Ok(Source::Store(Arc::new(Archive::open(
        store, volume_id, 0, cache,
    ))))
}
