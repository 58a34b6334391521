//! `lsvfs freeze`, `lsvfs thaw` and `lsvfs sync-point --freeze
//! --exec-before --exec-after`: holding an application still around a
//! sync point (see `crate::fuse` for the freeze itself).

use super::sync_point::{Mount, check_label};
use crate::control_files::FREEZE_FILE;
use anyhow::{Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Flushes the mount, then freezes it for at most `timeout`.
pub fn freeze(mountpoint: &Path, timeout: Duration) -> Result<()> {
    let mount = Mount::open(mountpoint)?;
    print!("{}", freeze_mount(&mount, timeout)?);
    Ok(())
}

fn freeze_mount(mount: &Mount, timeout: Duration) -> Result<String> {
    // What the kernel caches goes in before the freeze: writeback of it
    // would be held like any change.
    mount.flush()?;
    mount.ask(
        FREEZE_FILE,
        format!("freeze {}\n", timeout.as_secs()).as_bytes(),
    )
}

pub fn thaw(mountpoint: &Path) -> Result<()> {
    let mount = Mount::open(mountpoint)?;
    print!("{}", thaw_mount(&mount)?);
    Ok(())
}

/// How long the control file may take to answer a thaw before the daemon
/// is sent SIGUSR1 instead.
const THAW_WAIT: Duration = Duration::from_secs(3);

/// Thaws through the control file; if that does not answer soon (a change
/// held in the root directory keeps the kernel from looking a name up
/// there), by SIGUSR1 to the daemon.
fn thaw_mount(mount: &Mount) -> Result<String> {
    let (root, path) = (mount.root.try_clone()?, mount.path.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let asked = Mount {
            path,
            volume: PathBuf::new(),
            root,
        }
        .ask(FREEZE_FILE, b"thaw\n");
        let _ = tx.send(asked);
    });
    if let Ok(answer) = rx.recv_timeout(THAW_WAIT) {
        return answer;
    }
    let Some(pid) = crate::log::lock::holder(&mount.volume) else {
        bail!(
            "the control file does not answer and no daemon holds {}",
            mount.volume.display()
        );
    };
    // SAFETY: sending a signal has no memory-safety preconditions.
    if unsafe { libc::kill(pid as i32, libc::SIGUSR1) } != 0 {
        bail!(
            "cannot signal the daemon (pid {pid}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(format!(
        "thawed by SIGUSR1 to the daemon (pid {pid}): the control file did not answer\n"
    ))
}

/// How `lsvfs sync-point` quiesces: hooks of the application's own, a
/// freeze of the mount.
pub struct Quiesce<'a> {
    pub freeze: Option<Duration>,
    pub before: Option<&'a str>,
    pub after: Option<&'a str>,
    pub flush: bool,
}

/// Runs `cmd` with sh -c; an error if it cannot run or exits non-zero.
fn hook(what: &str, cmd: &str) -> Result<()> {
    let status = Command::new("sh").arg("-c").arg(cmd).status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => bail!("{what} hook {cmd:?} failed ({s})"),
        Err(e) => bail!("{what} hook {cmd:?} could not run: {e}"),
    }
}

/// A sync point between `--exec-before` and `--exec-after`, inside a
/// freeze of its own if asked. The thaw and the after-hook run whatever
/// failed before them; every failure is reported, and a sync point is
/// taken only when the before-hook and the freeze succeeded.
pub fn sync_point(mountpoint: &Path, label: &str, q: &Quiesce) -> Result<()> {
    check_label(label)?;
    let mount = Mount::open(mountpoint)?;
    let mut failed: Vec<String> = Vec::new();
    let mut taken = None;
    let ready = match q.before {
        Some(cmd) => hook("before", cmd)
            .map_err(|e| failed.push(e.to_string()))
            .is_ok(),
        None => true,
    };
    if ready {
        let frozen = match q.freeze {
            Some(t) => match freeze_mount(&mount, t) {
                Ok(_) => true,
                Err(e) => {
                    failed.push(format!("cannot freeze: {e:#}"));
                    false
                }
            },
            None => false,
        };
        if q.freeze.is_none() || frozen {
            // A frozen mount was flushed before the freeze; flushing now
            // would wait for writeback the freeze holds.
            let flushed = match q.flush && !frozen {
                true => mount.flush(),
                false => Ok(()),
            };
            match flushed.and_then(|_| mount.sync_point(label)) {
                Ok(id) => taken = Some(id),
                Err(e) => failed.push(format!("{e:#}")),
            }
        }
        if frozen && let Err(e) = thaw_mount(&mount) {
            failed.push(format!(
                "cannot thaw (the freeze ends at its timeout): {e:#}"
            ));
        }
    }
    if let Some(cmd) = q.after
        && let Err(e) = hook("after", cmd)
    {
        failed.push(e.to_string());
    }
    if let Some(id) = taken {
        println!("{id}");
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(())
}
