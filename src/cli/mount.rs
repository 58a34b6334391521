//! `lsvfs mount` and `lsvfs unmount`. Mounting without --foreground starts
//! the same command with --foreground as a daemon in its own session and
//! waits on a pipe until the daemon reports the mount ready or why it
//! failed.

use super::Usage;
use crate::fuse::{self, MountOptions};
use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The daemon learns which descriptor to report readiness on from this.
const READY_FD: &str = "LSVFS_READY_FD";
const DAEMON_LOG: &str = "daemon.log";

pub fn mount(
    volume: &Path,
    mountpoint: &Path,
    at: Option<&str>,
    opts: &MountOptions,
    foreground: bool,
    raw_options: &str,
) -> Result<()> {
    if !volume.join(crate::policy::POLICY_FILE).exists() {
        bail!(
            "{} is not an lsvfs volume (no lsvfs.toml)",
            volume.display()
        );
    }
    fuse::check_mountpoint(mountpoint)?;
    if foreground {
        return serve(volume, mountpoint, at, opts);
    }
    let said = spawn_daemon(volume, mountpoint, at, raw_options)?;
    if let Some(id) = said.split_whitespace().nth(1) {
        println!(
            "sync point {id} mounted read-only on {}",
            mountpoint.display()
        );
    }
    Ok(())
}

/// Serves in this process; reports readiness (with the sync point of a
/// view) or failure to a waiting parent.
fn serve(volume: &Path, mountpoint: &Path, at: Option<&str>, opts: &MountOptions) -> Result<()> {
    let mut report = std::env::var(READY_FD)
        .ok()
        .and_then(|fd| fd.parse::<i32>().ok())
        // SAFETY: the parent passed us this descriptor for our sole use.
        .map(|fd| std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
    let mut ready = |what: String| {
        if let Some(mut pipe) = report.take() {
            let _ = writeln!(pipe, "ready{what}");
        }
    };
    let result = match at {
        None => fuse::serve(volume, mountpoint, opts, || ready(String::new())),
        Some(at) => {
            let which = crate::view::Selector::parse(at);
            fuse::serve_view(volume, &which, mountpoint, opts, |id| {
                ready(format!(" {id}"))
            })
        }
    };
    if let Err(e) = &result
        && let Some(mut pipe) = report.take()
    {
        let _ = writeln!(pipe, "{e}");
    }
    result.with_context(|| format!("cannot serve {}", volume.display()))
}

/// Starts the daemon and returns its ready line.
fn spawn_daemon(
    volume: &Path,
    mountpoint: &Path,
    at: Option<&str>,
    raw_options: &str,
) -> Result<String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors, which we own from here on.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot create a pipe");
    }
    // SAFETY: both descriptors were just created by pipe2.
    let (mut rx, tx) = unsafe {
        (
            std::fs::File::from(OwnedFd::from_raw_fd(fds[0])),
            OwnedFd::from_raw_fd(fds[1]),
        )
    };
    let log_path = volume.join(DAEMON_LOG);
    let log = std::fs::OpenOptions::new()
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
    let mut said = String::new();
    let _ = rx.read_to_string(&mut said);
    if said.starts_with("ready") {
        return Ok(said);
    }
    let _ = child.wait();
    let why = said.trim();
    if why.is_empty() {
        bail!(
            "the mount daemon exited before the mount was ready; see {}",
            log_path.display()
        );
    }
    bail!("cannot mount {}: {why}", volume.display())
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

fn busy(mountpoint: &Path, e: std::io::Error) -> Result<()> {
    if e.raw_os_error() == Some(libc::EBUSY) {
        bail!(
            "{} is busy: files on it are open; close them, or use --lazy to detach now",
            mountpoint.display()
        );
    }
    Err(e).with_context(|| format!("cannot unmount {}", mountpoint.display()))
}
