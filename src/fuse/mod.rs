//! The FUSE adapter: the only code of lsvfs that names fuser. [`serve`]
//! mounts a volume and answers requests until it is unmounted (by `lsvfs
//! unmount`, `umount`, `fusermount3 -u`, SIGTERM or SIGINT), then closes the
//! volume cleanly. How lsvfs mounts ([`mount_config`], [`negotiate`]) is
//! public so that the benchmark anchor, `examples/passthrough.rs`, mounts the
//! same way.

mod adapter;
mod caller;
mod changes;
mod control_nodes;
mod freeze;
mod handles;
mod mounted_view;
mod reply;
mod route;
mod sync_points;
mod view_adapter;

use crate::control_files::Metrics;
use crate::fs::Fs;
use crate::volume::Volume;
use adapter::Adapter;
use control_nodes::Control;
use freeze::Gate;
use fuser::{Config, InitFlags, KernelConfig, MountOption, Session, SessionACL};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The filesystem type as it appears in /proc/mounts: `fuse.lsvfs`.
pub const SUBTYPE: &str = "lsvfs";
/// FUSE request threads; they block on the writer's group commit, so more
/// threads than cores let concurrent writes share one batch and one fsync.
pub const THREADS: usize = 8;
/// The largest write request, and the read-ahead, asked of the kernel.
pub const MAX_WRITE: u32 = 1 << 20;
pub use reply::TTL;

/// What the live mount asks the kernel for (the writeback cache unless
/// read-only), each where the kernel offers it.
pub const CAPABILITIES: InitFlags = InitFlags::FUSE_WRITEBACK_CACHE
    .union(InitFlags::FUSE_PARALLEL_DIROPS)
    .union(InitFlags::FUSE_DO_READDIRPLUS)
    .union(InitFlags::FUSE_READDIRPLUS_AUTO)
    .union(InitFlags::FUSE_ASYNC_READ)
    .union(InitFlags::FUSE_BIG_WRITES)
    .union(InitFlags::FUSE_MAX_PAGES);

/// At init: asks for the [`CAPABILITIES`] the kernel offers (without the
/// writeback cache unless `writeback_cache`), and for [`MAX_WRITE`] as the
/// largest write and the read-ahead, or the most the kernel allows.
pub fn negotiate(config: &mut KernelConfig, writeback_cache: bool) {
    let mut wanted = config.capabilities() & CAPABILITIES;
    if !writeback_cache {
        wanted -= InitFlags::FUSE_WRITEBACK_CACHE;
    }
    if let Err(missing) = config.add_capabilities(wanted) {
        log::warn!("kernel lacks FUSE capabilities {missing:?}");
    }
    if let Err(max) = config.set_max_write(MAX_WRITE) {
        let _ = config.set_max_write(max);
    }
    if let Err(max) = config.set_max_readahead(MAX_WRITE) {
        let _ = config.set_max_readahead(max);
    }
}

/// Mount options a user can give with `-o`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// Let users other than the one who mounted use the mount.
    pub allow_other: bool,
    pub read_only: bool,
    /// Without the kernel's writeback cache: every `write` reaches lsvfs
    /// before it returns (see docs/SEMANTICS.md).
    pub no_writeback_cache: bool,
}

impl MountOptions {
    /// Parses a comma-separated `-o` list. `default_permissions` is always
    /// in effect (the kernel checks permissions), so it is accepted and
    /// changes nothing; `rw` is the default; anything else is refused.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut o = MountOptions::default();
        for opt in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match opt {
                "allow_other" => o.allow_other = true,
                "ro" | "read-only" | "read_only" => o.read_only = true,
                "no_writeback_cache" => o.no_writeback_cache = true,
                "rw" | "default_permissions" | "defaults" => {}
                other => {
                    return Err(format!(
                        "unknown mount option '{other}' (known: allow_other, default_permissions, no_writeback_cache, ro, rw)"
                    ));
                }
            }
        }
        Ok(o)
    }
}

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(transparent)]
    Volume(#[from] crate::Error),
    #[error("{0}")]
    Fs(#[from] crate::fs::FsError),
    #[error("cannot mount on {path}: {source}")]
    Mount {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Mountpoint(String),
}

/// Checks that `mountpoint` is a directory we can mount on, with a message
/// that says what to do when it is not.
pub fn check_mountpoint(mountpoint: &Path) -> Result<(), MountError> {
    match std::fs::metadata(mountpoint) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(MountError::Mountpoint(format!(
            "mount point {} is not a directory",
            mountpoint.display()
        ))),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Err(MountError::Mountpoint(format!(
            "{} is a mount whose daemon is gone; run `lsvfs unmount {}` first",
            mountpoint.display(),
            mountpoint.display()
        ))),
        Err(e) => Err(MountError::Mountpoint(format!(
            "mount point {}: {e}",
            mountpoint.display()
        ))),
    }
}

/// Both paths made absolute, the mount point checked.
fn absolute_paths(volume: &Path, mountpoint: &Path) -> Result<(PathBuf, PathBuf), MountError> {
    let abs = |p: &Path| std::path::absolute(p).map_err(|e| MountError::Mountpoint(e.to_string()));
    // A store URL names no local path.
    let volume = match crate::policy::store_url(volume) {
        Some(_) => volume.to_path_buf(),
        None => abs(volume)?,
    };
    let mountpoint = abs(mountpoint)?;
    check_mountpoint(&mountpoint)?;
    Ok((volume, mountpoint))
}

/// How a view mount names its source in /proc/mounts: VOLUME + this + id.
const VIEW_SOURCE: &str = ":sync-point-";

/// The mount options every lsvfs mount has, [`THREADS`] request threads
/// with a cloned /dev/fuse descriptor each; the type is `fuse.SUBTYPE`.
pub fn mount_config(source: String, subtype: &str, read_only: bool, allow_other: bool) -> Config {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(source),
        MountOption::Subtype(subtype.into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
        if read_only {
            MountOption::RO
        } else {
            MountOption::RW
        },
    ];
    config.acl = if allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(THREADS);
    config.clone_fd = true;
    config
}

/// Mounts the view of sync point `which` of `volume` read-only on
/// `mountpoint`, calls `ready` once it answers, and serves until unmounted.
/// The volume may be mounted and written by another process meanwhile.
pub fn serve_view(
    volume: &Path,
    volume_id: Option<crate::format::VolumeId>,
    which: &crate::view::Selector,
    mountpoint: &Path,
    opts: &MountOptions,
    progress: crate::log::recovery::Progress,
    ready: impl FnOnce(u64),
) -> Result<(), MountError> {
    let (volume, mountpoint) = absolute_paths(volume, mountpoint)?;
    let signals = block_signals();
    let view = crate::view::View::open(&volume, volume_id, which, progress)?;
    let id = view.point.info.id;
    let source = format!("{}{VIEW_SOURCE}{id}", volume.display());
    let config = mount_config(source, SUBTYPE, true, opts.allow_other);
    let session = Session::new(view_adapter::ViewAdapter::new(view), &mountpoint, &config)
        .map_err(|source| MountError::Mount {
            path: mountpoint.clone(),
            source,
        })?;
    spawn_signal_thread(signals, mountpoint.clone(), None);
    log::info!(
        "sync point {id} of {} mounted on {}",
        volume.display(),
        mountpoint.display()
    );
    ready(id);
    session.run().map_err(|source| MountError::Mount {
        path: mountpoint,
        source,
    })
}

/// Opens the volume in `volume`, mounts it on `mountpoint`, calls `ready`
/// once the mount answers requests, and serves until it is unmounted.
pub fn serve(
    volume: &Path,
    mountpoint: &Path,
    opts: &MountOptions,
    progress: Box<dyn Fn(u64, u64)>,
    ready: impl FnOnce(),
) -> Result<(), MountError> {
    let (volume, mountpoint) = absolute_paths(volume, mountpoint)?;
    // Before any thread starts (the writer starts in Volume::open), so that
    // no thread but the signal thread ever takes a stop signal.
    let signals = block_signals();
    let options = crate::volume::OpenOptions {
        progress: Some(progress),
        ..Default::default()
    };
    let fs = Arc::new(Fs::new(Volume::open_with(&volume, options)?)?);
    let metrics = Arc::new(Metrics::default());
    // SAFETY: geteuid has no preconditions.
    let owner = unsafe { libc::geteuid() };
    let control = Control::new(fs.clone(), metrics.clone(), owner);
    let notifier = control.notifier();
    let gate = control.gate();
    let adapter = Adapter::new(fs.clone(), control, metrics, opts);

    let config = mount_config(
        volume.display().to_string(),
        SUBTYPE,
        opts.read_only,
        opts.allow_other,
    );

    let session =
        Session::new(adapter, &mountpoint, &config).map_err(|source| MountError::Mount {
            path: mountpoint.clone(),
            source,
        })?;
    let _ = notifier.set(session.notifier());
    spawn_signal_thread(signals, mountpoint.clone(), Some(gate));
    log::info!("{} mounted on {}", volume.display(), mountpoint.display());
    ready();
    let served = session.run();
    log::info!("{} unmounted", mountpoint.display());
    // The session is gone; wait for the last holder of the Fs to let go.
    let mut fs = fs;
    let fs = loop {
        match Arc::try_unwrap(fs) {
            Ok(fs) => break fs,
            Err(again) => {
                fs = again;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    };
    fs.into_volume().close()?;
    served.map_err(|source| MountError::Mount {
        path: mountpoint,
        source,
    })
}

/// SIGUSR1 thaws a frozen live mount (`lsvfs thaw` sends it when the
/// control file does not answer); the others unmount.
const SIGNALS: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1];

/// Blocks the stop signals in this thread and so in every thread it starts;
/// one thread then waits for them with sigwait.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data initialised by sigemptyset; the mask
    // change affects only the calling thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// On SIGINT, SIGTERM or SIGHUP: detach the mount, which ends the session
/// as soon as no file on it is open; the volume then closes cleanly. On
/// SIGUSR1: thaw (`gate`, a live mount's).
fn spawn_signal_thread(set: libc::sigset_t, mountpoint: PathBuf, gate: Option<Arc<Gate>>) {
    let spawned = std::thread::Builder::new()
        .name("lsvfs-signals".into())
        .spawn(move || {
            let mut sig = 0;
            // SAFETY: `set` is a valid signal set blocked in this thread.
            while unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                if sig == libc::SIGUSR1 {
                    if let Some(g) = &gate {
                        let n = g.thaw("was thawed by signal".into());
                        log::warn!("SIGUSR1: thawed; {n} changes released");
                    }
                    continue;
                }
                log::info!("signal {sig}: unmounting {}", mountpoint.display());
                if let Err(e) = unmount(&mountpoint, true) {
                    log::error!("cannot unmount {}: {e}", mountpoint.display());
                }
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot start the signal thread: {e}");
    }
}

/// Unmounts `mountpoint`: umount2 as root, `fusermount3 -u` otherwise;
/// `lazy` detaches it even while files on it are open.
pub fn unmount(mountpoint: &Path, lazy: bool) -> std::io::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let path = CString::new(mountpoint.as_os_str().as_bytes())?;
        let flags = if lazy { libc::MNT_DETACH } else { 0 };
        // SAFETY: a valid NUL-terminated path.
        if unsafe { libc::umount2(path.as_ptr(), flags) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        return Ok(());
    }
    let mut cmd = std::process::Command::new("fusermount3");
    cmd.arg(if lazy { "-uz" } else { "-u" }).arg(mountpoint);
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// An lsvfs mount as listed in /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mountpoint: PathBuf,
    /// The volume directory (the mount's source).
    pub volume: PathBuf,
    /// For a view mount, its sync point.
    pub view: Option<u64>,
}

/// Undoes the octal escapes (`\040` for a space) of /proc/self/mountinfo.
fn unescape(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&out))
}

/// The lsvfs mounts visible to this process.
pub fn mounts() -> Vec<MountEntry> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            let fstype = fields.get(dash + 1)?;
            let source = unescape(fields.get(dash + 2)?);
            let (volume, view) = match source.to_str().and_then(|s| s.rsplit_once(VIEW_SOURCE)) {
                Some((v, id)) if id.parse::<u64>().is_ok() => (PathBuf::from(v), id.parse().ok()),
                _ => (source, None),
            };
            let entry = MountEntry {
                mountpoint: unescape(fields.get(4)?),
                volume,
                view,
            };
            // Mounted by root, the type is plain `fuse` (the kernel's
            // mount(2) has no subtype); the source then names the volume,
            // or for a view the volume or store and the sync point.
            let ours = *fstype == format!("fuse.{SUBTYPE}")
                || (*fstype == "fuse"
                    && (entry.view.is_some()
                        || entry.volume.join(crate::policy::POLICY_FILE).is_file()));
            ours.then_some(entry)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_unknown_ones_are_refused() {
        let o = MountOptions::parse("allow_other,ro,default_permissions").unwrap();
        assert_eq!(
            o,
            MountOptions {
                allow_other: true,
                read_only: true,
                no_writeback_cache: false,
            }
        );
        assert!(
            MountOptions::parse("no_writeback_cache")
                .unwrap()
                .no_writeback_cache
        );
        assert_eq!(MountOptions::parse("").unwrap(), MountOptions::default());
        let err = MountOptions::parse("rw,bogus").unwrap_err();
        assert!(err.contains("'bogus'"), "{err}");
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/mnt/a\\040b"), PathBuf::from("/mnt/a b"));
        assert_eq!(unescape("/plain"), PathBuf::from("/plain"));
    }
}
