//! Mounting from /etc/fstab: the lsvfs binary as mount(8)'s helper
//! (`mount.fuse.lsvfs`), called directly the way mount(8) calls it, and
//! through mount(8) itself with an fstab line.

mod common;

use common::mount::{Detach, Mounted, lsvfs, run};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A symlink named `mount.fuse.lsvfs` to the binary under test, in `dir`.
fn helper_in(dir: &Path) -> PathBuf {
    let link = dir.join("mount.fuse.lsvfs");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_lsvfs"), &link).unwrap();
    link
}

/// Waits until the daemon that served `volume` has closed it.
fn wait_closed(volume: &Path) {
    let start = Instant::now();
    while lsvfs::log::lock::holder(volume).is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "volume stays open"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// umount(8), again for up to 10 s while the kernel calls the mount busy:
/// on a loaded machine, umount right after the last write was refused as
/// busy once (a clean-clone CI run beside a fuzzer). `lsvfs unmount`
/// waits for open files itself; umount(8) does not.
fn umount(mnt: &Path) {
    let start = Instant::now();
    loop {
        let out = Command::new("umount").arg(mnt).output().unwrap();
        if out.status.success() {
            return;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("busy") && start.elapsed() < Duration::from_secs(10),
            "umount {}: {err}",
            mnt.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_helper_takes_fstab_options_mounts_views_and_refuses_unknown_options() {
    let m = Mounted::new(&[], "");
    std::fs::write(m.path("f"), "before\n").unwrap();
    run(lsvfs()
        .arg("sync-point")
        .arg(&m.mnt)
        .args(["--label", "before"]));
    std::fs::write(m.path("f"), "after\n").unwrap();
    run(lsvfs().arg("unmount").arg(&m.mnt));
    let helper = helper_in(m.tmp.path());

    let out = Command::new(&helper)
        .arg(&m.volume)
        .arg(&m.mnt)
        .args(["-o", "rw,compress=zstd"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "mount.fuse.lsvfs: unknown mount option 'compress=zstd' (lsvfs knows allow_other, default_permissions, no_writeback_cache, ro, rw, at=SYNC; mount's generic options are ignored)\n"
    );
    assert!(!m.is_mounted());
    // -f (fake): everything but the mount.
    run(Command::new(&helper).arg(&m.volume).arg(&m.mnt).arg("-f"));
    assert!(!m.is_mounted());

    run(Command::new(&helper).arg(&m.volume).arg(&m.mnt).args([
        "-n",
        "-o",
        "rw,nofail,x-systemd.automount,_netdev,noatime",
    ]));
    assert!(m.is_mounted());
    assert_eq!(std::fs::read_to_string(m.path("f")).unwrap(), "after\n");
    std::fs::write(m.path("g"), "new\n").unwrap();
    run(lsvfs().arg("unmount").arg(&m.mnt));

    let view = m.tmp.path().join("view");
    std::fs::create_dir(&view).unwrap();
    let _detach = Detach(&view);
    let out = run(Command::new(&helper)
        .arg(&m.volume)
        .arg(&view)
        .args(["-o", "ro,at=before"]));
    assert_eq!(
        out,
        "sync point 1 mounted read-only on ".to_string() + &view.display().to_string() + "\n"
    );
    assert_eq!(std::fs::read_to_string(view.join("f")).unwrap(), "before\n");
    assert!(!view.join("g").exists());
    run(lsvfs().arg("unmount").arg(&view));
}

/// Puts our helper where mount(8) looks (/sbin) for the test's length,
/// setting aside one already there.
struct SbinHelper {
    saved: Option<PathBuf>,
}

const SBIN_HELPER: &str = "/sbin/mount.fuse.lsvfs";

impl SbinHelper {
    fn install() -> SbinHelper {
        let path = Path::new(SBIN_HELPER);
        let saved = path.symlink_metadata().is_ok().then(|| {
            let aside = path.with_extension("lsvfs-test-saved");
            std::fs::rename(path, &aside).unwrap();
            aside
        });
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_lsvfs"), path).unwrap();
        SbinHelper { saved }
    }
}

impl Drop for SbinHelper {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(SBIN_HELPER);
        if let Some(aside) = &self.saved {
            let _ = std::fs::rename(aside, SBIN_HELPER);
        }
    }
}

#[test]
fn mount_8_mounts_a_volume_from_an_fstab_line() {
    let m = Mounted::new(&[], "");
    std::fs::write(m.path("f"), "kept\n").unwrap();
    run(lsvfs().arg("unmount").arg(&m.mnt));
    let _helper = SbinHelper::install();
    let fstab = m.tmp.path().join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "# lsvfs test\n{} {} fuse.lsvfs defaults,allow_other,nofail 0 0\n",
            m.volume.display(),
            m.mnt.display()
        ),
    )
    .unwrap();
    run(Command::new("mount").arg("-T").arg(&fstab).arg(&m.mnt));
    assert!(m.is_mounted());
    assert_eq!(std::fs::read_to_string(m.path("f")).unwrap(), "kept\n");
    std::fs::write(m.path("g"), "written through the fstab mount\n").unwrap();
    umount(&m.mnt);
    wait_closed(&m.volume);
    run(lsvfs().arg("mount").arg(&m.volume).arg(&m.mnt));
    assert_eq!(
        std::fs::read_to_string(m.path("g")).unwrap(),
        "written through the fstab mount\n"
    );
}
