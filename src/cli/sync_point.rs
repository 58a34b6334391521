//! `lsvfs sync-point` (through the mount's control file) and
//! `lsvfs sync-points` (from the volume's catalog).

use super::Usage;
use crate::Volume;
use crate::control_files::{CONTROL_DIR, SYNC_POINT_FILE};
use crate::layout::Source;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The root directory of the live lsvfs mount at `mountpoint`, opened
/// once so that every request of a command reaches the same filesystem
/// whatever happens to the path meanwhile.
pub struct Mount {
    pub path: PathBuf,
    /// The volume directory.
    pub volume: PathBuf,
    pub root: std::fs::File,
}

impl Mount {
    pub fn open(mountpoint: &Path) -> Result<Mount> {
        let abs = std::path::absolute(mountpoint)?;
        let volume = match crate::fuse::mounts()
            .into_iter()
            .find(|m| m.mountpoint == abs)
        {
            None => {
                return Err(
                    Usage(format!("{} is not an lsvfs mount", mountpoint.display())).into(),
                );
            }
            Some(m) if m.view.is_some() => {
                return Err(Usage(format!(
                    "{} is a read-only view of sync point {}; use the volume's own mount",
                    mountpoint.display(),
                    m.view.unwrap_or_default()
                ))
                .into());
            }
            Some(m) => m.volume,
        };
        let root = std::fs::File::open(&abs)
            .with_context(|| format!("cannot open {}", mountpoint.display()))?;
        if !is_lsvfs_root(&root) {
            bail!(
                "{} is not the root of an lsvfs mount (was it unmounted?)",
                mountpoint.display()
            );
        }
        Ok(Mount {
            path: abs,
            volume,
            root,
        })
    }

    /// Flushes the kernel's cache of the mount (syncfs).
    pub fn flush(&self) -> Result<()> {
        super::flush::flush(&self.root, &self.path)
    }

    /// Writes `request` to the control file `name` in one write and reads
    /// the answer back on the same handle.
    pub fn ask(&self, name: &str, request: &[u8]) -> Result<String> {
        let path = self.path.join(CONTROL_DIR).join(name);
        let mut file = open_at(&self.root, &format!("{CONTROL_DIR}/{name}"))
            .with_context(|| format!("cannot open {}", path.display()))?;
        file.write_all(request)
            .with_context(|| format!("{} refused the request", path.display()))?;
        let mut answer = String::new();
        file.read_to_string(&mut answer)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(answer)
    }

    /// Takes a sync point labelled `label` and returns its id.
    pub fn sync_point(&self, label: &str) -> Result<u64> {
        // One write with the newline: an empty label must still reach the file.
        let answer = self
            .ask(SYNC_POINT_FILE, format!("{label}\n").as_bytes())
            .with_context(|| format!("sync point on {} failed", self.path.display()))?;
        answer
            .split(' ')
            .next()
            .and_then(|id| id.parse().ok())
            .with_context(|| format!("{} gave no sync point id: {answer:?}", self.path.display()))
    }
}

/// Takes a sync point through the mount's control file; with `flush`,
/// flushes the mount first.
pub fn take(mountpoint: &Path, label: &str, flush: bool) -> Result<()> {
    check_label(label)?;
    let mount = Mount::open(mountpoint)?;
    if flush {
        mount.flush()?;
    }
    println!("{}", mount.sync_point(label)?);
    Ok(())
}

pub fn check_label(label: &str) -> Result<()> {
    match crate::control_files::parse_label(label.as_bytes()) {
        Ok(_) => Ok(()),
        Err(e) => Err(Usage(format!("invalid label: {e}")).into()),
    }
}

/// Whether `dir` is the root directory of a FUSE mount of lsvfs: a FUSE
/// filesystem, the volume's root inode, and the control directory there.
fn is_lsvfs_root(dir: &std::fs::File) -> bool {
    const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
    // SAFETY: fstatfs fills a plain-data struct from a valid descriptor.
    let fuse = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::fstatfs(dir.as_raw_fd(), &mut st) == 0 && st.f_type as i64 == FUSE_SUPER_MAGIC
    };
    let root = dir
        .metadata()
        .is_ok_and(|m| m.ino() == crate::volume::ROOT_INO);
    fuse && root
}

/// Opens `path`, relative to the directory `dir`, for reading and writing,
/// following no symlink.
fn open_at(dir: &std::fs::File, path: &str) -> std::io::Result<std::fs::File> {
    let c_path = std::ffi::CString::new(path).map_err(std::io::Error::other)?;
    // SAFETY: openat with a valid descriptor and a NUL-terminated path; the
    // returned descriptor is owned by the File.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c_path.as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

#[derive(Serialize)]
struct Listed {
    id: u64,
    time: String,
    time_ns: u64,
    label: String,
    requester: String,
    segment: u64,
    location: &'static str,
    volume: String,
    /// Bytes of archived objects only this sync point needs (what pruning
    /// it would free); null when listed from a store alone.
    alone_bytes: Option<u64>,
    pinned: bool,
    /// The newest restore test (`lsvfs agent postgres --verify`), if any.
    check: Option<Checked>,
}

#[derive(Serialize)]
struct Checked {
    ok: bool,
    time: String,
    tool: String,
    detail: String,
}

impl From<&crate::checks::Check> for Checked {
    fn from(c: &crate::checks::Check) -> Checked {
        Checked {
            ok: c.ok,
            time: crate::time::rfc3339(c.time_ns),
            tool: c.tool.clone(),
            detail: c.detail.clone(),
        }
    }
}

/// A volume directory, or the volume behind an lsvfs mount point.
pub fn volume_of(path: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(path)?;
    Ok(crate::fuse::mounts()
        .into_iter()
        .find(|m| m.mountpoint == abs)
        .map_or(abs, |m| m.volume))
}

/// The sync points of a volume (or of the volume behind a mount point),
/// or those a backing store serves alone.
pub fn list(path: &Path, volume_id: Option<crate::format::VolumeId>, json: bool) -> Result<()> {
    let source = match crate::policy::store_url(path) {
        Some(_) => path.to_path_buf(),
        None => volume_of(path)?,
    };
    let mut store_line = None;
    let (volume, points, locations, alone, pinned, checks) =
        match crate::layout::source(&source, volume_id)? {
            Source::Volume(volume) => {
                let points = Volume::sync_points_of(&volume)?;
                let in_primary = Volume::views_in_primary(&volume, &points)?;
                let at = |p: bool| if p { "primary" } else { "archive" };
                let locations = in_primary.into_iter().map(at).collect();
                let policy = crate::policy::Policy::load(&crate::disk::Real, &volume)?;
                let alone = match crate::prune::sizes(&crate::disk::Real, &volume, &points) {
                    Ok(sizes) => {
                        store_line = Some(format!(
                            "store {}: {} objects, {} bytes; retention: {}",
                            policy.store_display(&volume),
                            sizes.objects,
                            sizes.bytes,
                            policy.retention.describe()
                        ));
                        sizes.alone
                    }
                    Err(e) => {
                        log::warn!("cannot size the archive (ALONE is left out): {e}");
                        Default::default()
                    }
                };
                let pinned = policy.retention.pinned;
                let checks = crate::checks::load(&crate::disk::Real, &volume)?;
                (policy.volume_id, points, locations, alone, pinned, checks)
            }
            Source::Store(archive) => {
                let points = archive.sync_points(&|_, _| {})?;
                let locations = vec!["store"; points.len()];
                let id = archive.volume_id().to_hex();
                let (alone, checks) = (Default::default(), Default::default());
                (id, points, locations, alone, Vec::new(), checks)
            }
        };
    let listed: Vec<Listed> = points
        .iter()
        .zip(locations)
        .map(|(p, location)| Listed {
            id: p.info.id,
            time: crate::time::rfc3339(p.info.time_ns),
            time_ns: p.info.time_ns,
            label: p.info.label.clone(),
            requester: p.info.requester.clone(),
            segment: p.lsn.seq,
            location,
            volume: volume.clone(),
            alone_bytes: alone.get(&p.info.id).copied(),
            pinned: pinned.contains(&p.info.id),
            check: checks.get(&p.info.id).map(Checked::from),
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&listed)?);
        return Ok(());
    }
    println!("volume {volume}");
    if let Some(line) = store_line {
        println!("{line}");
    }
    println!(
        "{:>8}  {:<24}  {:<8}  {:>10}  LABEL",
        "ID", "TIME (UTC)", "LOCATION", "ALONE"
    );
    for p in listed {
        let alone = p.alone_bytes.map_or("-".into(), |b| b.to_string());
        let pin = if p.pinned { " (pinned)" } else { "" };
        let check = match &p.check {
            None => String::new(),
            Some(c) if c.ok => format!(" (restore-tested {})", c.time),
            Some(c) => format!(" (restore test FAILED {}: {})", c.time, c.detail),
        };
        println!(
            "{:>8}  {:<24}  {:<8}  {alone:>10}  {}{pin}{check}",
            p.id, p.time, p.location, p.label
        );
    }
    Ok(())
}
