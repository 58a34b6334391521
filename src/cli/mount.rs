//! `lsvfs mount` and `lsvfs unmount`. Mounting without --foreground starts
//! the same command with --foreground as a daemon in its own session and
//! waits on a pipe until the daemon reports the mount ready or why it
//! failed.

use super::Usage;
use super::progress::Bar;
use crate::format::VolumeId;
use crate::fuse::{self, MountOptions};
use anyhow::{Context, Result, bail};
use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The daemon learns which descriptor to report readiness on from this.
const READY_FD: &str = "LSVFS_READY_FD";
const DAEMON_LOG: &str = "daemon.log";
/// The daemon's lines on that descriptor: progress, then ready or an error.
const PROGRESS: &str = "progress";
const READY: &str = "ready";

/// What a mount serves: the volume at `path`, or the view of sync point
/// `at` of a volume or of a backing store (of volume `volume_id`, needed
/// when the store holds several).
pub struct Served<'a> {
    pub path: &'a Path,
    pub at: Option<&'a str>,
    pub volume_id: Option<VolumeId>,
}

pub fn mount(
    served: &Served,
    mountpoint: &Path,
    opts: &MountOptions,
    foreground: bool,
    raw_options: &str,
) -> Result<()> {
    let volume = served.path;
    match served.at {
        None => {
            crate::layout::check_volume(&crate::disk::Real, volume)?;
            refuse_if_mounted(volume)?;
        }
        // A view is also served from a backing store alone.
        Some(_) => drop(crate::layout::source(volume, served.volume_id)?),
    }
    fuse::check_mountpoint(mountpoint)?;
    if foreground {
        return serve(served, mountpoint, opts);
    }
    let ready = spawn_daemon(served, mountpoint, raw_options)?;
    if let Some(id) = ready.split_whitespace().nth(1) {
        println!(
            "sync point {id} mounted read-only on {}",
            mountpoint.display()
        );
    }
    Ok(())
}

/// A volume has one read-write mount at a time: say where the one there is.
fn refuse_if_mounted(volume: &Path) -> Result<()> {
    let abs = std::path::absolute(volume)?;
    let Some(live) = fuse::mounts()
        .into_iter()
        .find(|m| m.volume == abs && m.view.is_none())
    else {
        return Ok(());
    };
    let by = crate::log::lock::holder(&abs).map_or(String::new(), |pid| format!(" by pid {pid}"));
    bail!(
        "volume {} is already mounted{by} at {}; unmount it first (lsvfs unmount {})",
        volume.display(),
        live.mountpoint.display(),
        live.mountpoint.display()
    )
}

/// Serves in this process; reports progress, then readiness (with the sync
/// point of a view) or failure, to a waiting parent.
fn serve(served: &Served, mountpoint: &Path, opts: &MountOptions) -> Result<()> {
    let volume = served.path;
    let report: Rc<RefCell<Option<std::fs::File>>> = Rc::new(RefCell::new(
        std::env::var(READY_FD)
            .ok()
            .and_then(|fd| fd.parse::<i32>().ok())
            // SAFETY: the parent passed us this descriptor for our sole use.
            .map(|fd| std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) })),
    ));
    let say = |line: String| {
        if let Some(pipe) = report.borrow_mut().as_mut() {
            let _ = writeln!(pipe, "{line}");
        }
    };
    let progress = {
        let report = report.clone();
        move |done: u64, total: u64| {
            if let Some(pipe) = report.borrow_mut().as_mut() {
                let _ = writeln!(pipe, "{PROGRESS} {done} {total}");
            }
        }
    };
    let ready = |what: String| {
        say(format!("{READY}{what}"));
        report.borrow_mut().take();
    };
    let result = match served.at {
        None => fuse::serve(volume, mountpoint, opts, Box::new(progress), || {
            ready(String::new())
        }),
        Some(at) => {
            let which = crate::view::Selector::parse(at);
            let id = served.volume_id;
            fuse::serve_view(volume, id, &which, mountpoint, opts, &progress, |id| {
                ready(format!(" {id}"))
            })
        }
    };
    if let Err(e) = &result {
        say(e.to_string());
    }
    result.with_context(|| format!("cannot serve {}", volume.display()))
}

/// Starts the daemon and returns its ready line.
fn spawn_daemon(served: &Served, mountpoint: &Path, raw_options: &str) -> Result<String> {
    let (volume, at) = (served.path, served.at);
    let (rx, tx) = ready_pipe()?;
    let log_path = daemon_log(volume, mountpoint)?;
    let log = crate::disk::real::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the lsvfs executable")?;
    let tx_fd = tx.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.arg("mount")
        .arg(volume)
        .arg(mountpoint)
        .arg("--foreground")
        .arg("-o")
        .arg(raw_options)
        .args(at.map(|a| ["--at", a]).into_iter().flatten())
        .args(
            served
                .volume_id
                .map(|v| ["--volume".to_string(), v.to_hex()])
                .into_iter()
                .flatten(),
        )
        .env(READY_FD, tx_fd.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            if libc::fcntl(tx_fd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the mount daemon")?;
    drop(tx);
    let said = match await_ready(rx, volume, at) {
        Ok(line) => return Ok(line),
        Err(said) => said,
    };
    let _ = child.wait();
    if said.is_empty() {
        bail!(
            "the mount daemon exited before the mount was ready; see {}",
            log_path.display()
        );
    }
    bail!("cannot mount {}: {said}", volume.display())
}

/// Where the daemon's stderr goes: the volume's `daemon.log`, or for a
/// view served from a backing store (which lsvfs does not write into) a
/// log in the temporary directory named after the mount point.
fn daemon_log(source: &Path, mountpoint: &Path) -> Result<std::path::PathBuf> {
    if source.join(crate::policy::POLICY_FILE).exists() {
        return Ok(source.join(DAEMON_LOG));
    }
    let abs = std::path::absolute(mountpoint)?;
    let name: String = abs
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    Ok(std::env::temp_dir().join(format!("lsvfs-view{name}.log")))
}

/// A pipe for the daemon's ready line: (our read end, its write end).
fn ready_pipe() -> Result<(std::fs::File, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors, which we own from here on.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot create a pipe");
    }
    // SAFETY: both descriptors were just created by pipe2.
    Ok(unsafe {
        (
            std::fs::File::from(OwnedFd::from_raw_fd(fds[0])),
            OwnedFd::from_raw_fd(fds[1]),
        )
    })
}

/// Reads the daemon's pipe, showing its progress, until its ready line;
/// if the pipe ends first, gives what the daemon said instead.
fn await_ready(
    rx: std::fs::File,
    volume: &Path,
    at: Option<&str>,
) -> std::result::Result<String, String> {
    let bar = Bar::new(
        match at {
            None => format!("recovering {}", volume.display()),
            Some(at) => format!("building the view of {at}"),
        },
        "segments",
    );
    let mut said = String::new();
    for line in BufReader::new(rx).lines().map_while(|l| l.ok()) {
        if line.starts_with(READY) {
            return Ok(line);
        }
        let mut words = line.split(' ');
        if words.next() == Some(PROGRESS)
            && let (Some(Ok(done)), Some(Ok(total))) =
                (words.next().map(str::parse), words.next().map(str::parse))
        {
            bar.set(done, total);
            continue;
        }
        said.push_str(&line);
        said.push('\n');
    }
    Err(said.trim().to_string())
}

pub fn unmount(mountpoint: &Path, lazy: bool) -> Result<()> {
    let abs = std::path::absolute(mountpoint)?;
    let Some(entry) = fuse::mounts().into_iter().find(|m| m.mountpoint == abs) else {
        return Err(Usage(format!("{} is not an lsvfs mount", mountpoint.display())).into());
    };
    // A view holds no lock and nothing to flush: detaching is all.
    if entry.view.is_some() {
        return fuse::unmount(&abs, lazy).or_else(|e| busy(mountpoint, e));
    }
    // With its daemon gone (killed), the mount only needs detaching: there
    // is nothing left to flush, and open files could never be closed.
    let daemon_alive = crate::log::lock::holder(&entry.volume).is_some();
    if daemon_alive && !lazy {
        drain(&abs);
    }
    fuse::unmount(&abs, lazy || !daemon_alive).or_else(|e| busy(mountpoint, e))?;
    // The daemon closes the volume (flushes, records a clean close) and
    // releases its lock; wait for that so the next command finds it closed.
    let start = Instant::now();
    let mut told = false;
    while crate::log::lock::holder(&entry.volume).is_some() {
        if lazy && !told && start.elapsed() > Duration::from_secs(2) {
            eprintln!("waiting for files on {} to be closed", mountpoint.display());
            told = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Waits until the archiver has retired the segments beyond the working
/// set, so that an unmounted volume keeps only its working set in primary
/// storage. Gives up, saying so, when the backing store fails or nothing
/// moves for a minute: the archiver resumes at the next mount.
fn drain(mountpoint: &Path) {
    use crate::control_files::{CONTROL_DIR, STATUS_FILE};
    let file = mountpoint.join(CONTROL_DIR).join(STATUS_FILE);
    let read = || -> Option<crate::status::Status> {
        serde_json::from_str(&std::fs::read_to_string(&file).ok()?).ok()
    };
    let Some(first) = read() else { return };
    let bar = Bar::new(
        format!("archiving before unmounting {}", mountpoint.display()),
        "segments",
    );
    let (mut last, mut moved) = (first.waiting_for_archive, Instant::now());
    while let Some(now) = read() {
        let waiting = now.waiting_for_archive;
        if waiting == 0 {
            return;
        }
        if !now.store.ok || moved.elapsed() > DRAIN_STALL {
            eprintln!(
                "lsvfs: {waiting} segments wait for the backing store ({}); they are archived after the next mount",
                now.store
                    .error
                    .as_deref()
                    .unwrap_or("no progress for a minute")
            );
            return;
        }
        if waiting != last {
            (last, moved) = (waiting, Instant::now());
        }
        let total = first.waiting_for_archive.max(waiting);
        bar.set(total - waiting, total);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How long `drain` waits for the archiver to retire one more segment.
const DRAIN_STALL: Duration = Duration::from_secs(60);

fn busy(mountpoint: &Path, e: std::io::Error) -> Result<()> {
    if e.raw_os_error() == Some(libc::EBUSY) {
        bail!(
            "{} is busy: files on it are open; close them, or use --lazy to detach now",
            mountpoint.display()
        );
    }
    Err(e).with_context(|| format!("cannot unmount {}", mountpoint.display()))
}
