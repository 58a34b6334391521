//! Real mounts, real programs: trees copied in and out with cp -a, tar and
//! rsync, compared by content and full stat before and after a remount;
//! offsets past 4 GiB; durability across kill -9 of the daemon.

mod common;

use common::facts::{assert_same, manifest, set_xattr};
use common::mount::{Detach, Mounted, ensure_tool, lsvfs, run};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

/// The daemon's test hook that slows the kernel's writeback writes.
const WRITEBACK_DELAY: &str = "LSVFS_TEST_WRITEBACK_DELAY_MS";

/// A tree with the shapes that break filesystems: empty and block-sized
/// files, sizes one off a block, a multi-MiB file, holes, hard links,
/// symlinks, a FIFO, odd modes, owners, xattrs and deep nesting.
fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("a/b/c/d")).unwrap();
    std::fs::create_dir(root.join("empty")).unwrap();
    let pattern = |n: usize, seed: u8| -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    };
    for (i, size) in [0usize, 1, 511, 4095, 4096, 4097, 65536, 3 << 20 | 5]
        .iter()
        .enumerate()
    {
        std::fs::write(root.join(format!("a/f{i}")), pattern(*size, i as u8)).unwrap();
    }
    let sparse = std::fs::File::create(root.join("a/b/sparse")).unwrap();
    sparse.write_all_at(b"head", 0).unwrap();
    sparse.write_all_at(b"tail", 9 << 20).unwrap();
    std::fs::write(root.join("a/b/c/d/deep"), b"deep\n").unwrap();
    std::fs::hard_link(root.join("a/f3"), root.join("a/b/hard")).unwrap();
    std::os::unix::fs::symlink("../f1", root.join("a/b/link")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", root.join("dangling")).unwrap();
    run(Command::new("mkfifo").arg(root.join("a/fifo")));
    std::fs::set_permissions(root.join("a/f1"), std::fs::Permissions::from_mode(0o4751)).unwrap();
    std::fs::set_permissions(root.join("a/f2"), std::fs::Permissions::from_mode(0o600)).unwrap();
    run(Command::new("chown")
        .args(["1234:4321"])
        .arg(root.join("a/f4")));
    set_xattr(&root.join("a/f5"), "user.note", b"hello xattr");
    set_xattr(&root.join("a/b"), "user.dir", &[0, 1, 2, 255]);
    // Old times everywhere: rsync leaves a time alone when it matches the
    // source to the second, so times from this very second would differ
    // in their nanoseconds on any filesystem.
    run(Command::new("find").arg(root).args([
        "-exec",
        "touch",
        "-h",
        "-d",
        "2020-05-06 07:08:09.123456789",
        "{}",
        "+",
    ]));
    run(Command::new("touch")
        .args(["-d", "2001-02-03 04:05:06.789"])
        .arg(root.join("a/f6")));
}

/// Compares manifests and names only the paths that differ.
#[test]
fn trees_round_trip_with_cp_tar_and_rsync() {
    ensure_tool("rsync", "rsync");
    let m = Mounted::new(&["--segment-size", "4M"], "");
    let src = m.tmp.path().join("src");
    make_tree(&src);
    let want = manifest(&src, false);

    run(Command::new("cp").arg("-a").arg(&src).arg(m.path("cp")));
    std::fs::create_dir(m.path("tar")).unwrap();
    run(Command::new("sh").arg("-c").arg(format!(
        "tar --xattrs -C '{}' -cf - . | tar --xattrs --xattrs-include='*' -C '{}' -xpf -",
        src.display(),
        m.path("tar").display()
    )));
    run(Command::new("rsync")
        .args(["-aHX"])
        .arg(format!("{}/", src.display()))
        .arg(m.path("rsync")));
    for tree in ["cp", "tar", "rsync"] {
        assert_same(
            &manifest(&m.path(tree), false),
            &want,
            &format!("{tree} into the mount"),
        );
    }
    // Reported as written, with the control directory not listed.
    let names: Vec<_> = std::fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");

    m.remount();
    for tree in ["cp", "tar", "rsync"] {
        assert_same(
            &manifest(&m.path(tree), false),
            &want,
            &format!("{tree} after remount"),
        );
    }
    let back = m.tmp.path().join("back");
    run(Command::new("cp").arg("-a").arg(m.path("tar")).arg(&back));
    assert_same(&manifest(&back, false), &want, "copied back out with cp -a");
}

#[test]
fn offsets_past_4_gib_and_appends() {
    let m = Mounted::new(&[], "");
    let p = m.path("big");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&p)
        .unwrap();
    let far = (5u64 << 30) + 12345;
    f.write_all_at(b"far away", far).unwrap();
    let mut buf = [0u8; 8];
    f.read_exact_at(&mut buf, far).unwrap();
    assert_eq!(&buf, b"far away");
    f.read_exact_at(&mut buf, 4 << 30).unwrap();
    assert_eq!(buf, [0; 8], "a hole reads as zeros");
    assert_eq!(f.metadata().unwrap().len(), far + 8);
    drop(f);
    let mut a = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
    std::io::Write::write_all(&mut a, b"+appended").unwrap();
    drop(a);
    m.remount();
    let f = std::fs::File::open(&p).unwrap();
    let mut tail = [0u8; 17];
    f.read_exact_at(&mut tail, far).unwrap();
    assert_eq!(&tail, b"far away+appended");
}

#[test]
fn fsynced_data_survives_kill_9_of_the_daemon() {
    let m = Mounted::new(&["--segment-size", "1M"], "");
    let mut expected = Vec::new();
    for i in 0..40u32 {
        let p = m.path(&format!("f{i}"));
        let body = vec![i as u8; 10_000 + i as usize * 1000];
        let f = std::fs::File::create(&p).unwrap();
        f.write_all_at(&body, 0).unwrap();
        f.sync_all().unwrap();
        expected.push((p, body));
    }
    // Written but never fsynced: may or may not survive, must not corrupt.
    std::fs::write(m.path("unsynced"), b"maybe").unwrap();
    m.kill_daemon();
    m.mount();
    for (p, body) in &expected {
        assert_eq!(&std::fs::read(p).unwrap(), body, "{}", p.display());
    }
    if let Ok(b) = std::fs::read(m.path("unsynced")) {
        assert!(b.is_empty() || b == b"maybe", "{b:?}");
    }
}

/// Waits until the daemon has let go of the volume, then checks that it
/// recorded a clean close.
fn assert_closed_cleanly(m: &Mounted) {
    let start = std::time::Instant::now();
    while lsvfs::log::lock::holder(&m.volume).is_some() {
        assert!(start.elapsed().as_secs() < 30, "daemon did not exit");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let lock = std::fs::read_to_string(m.volume.join("lock")).unwrap();
    assert!(lock.starts_with("closed cleanly"), "{lock}");
}

#[test]
fn every_way_of_stopping_closes_cleanly() {
    let m = Mounted::new(&[], "");
    let mut n = 0;
    let mut write = |m: &Mounted| {
        n += 1;
        std::fs::write(m.path(&format!("f{n}")), format!("file {n}")).unwrap();
    };
    write(&m);
    run(Command::new("umount").arg(&m.mnt));
    assert_closed_cleanly(&m);
    for signal in [libc::SIGTERM, libc::SIGINT] {
        m.mount();
        write(&m);
        // SAFETY: sending a signal has no memory-safety preconditions.
        unsafe { libc::kill(m.daemon_pid(), signal) };
        assert_closed_cleanly(&m);
    }
    m.mount();
    for i in 1..=3 {
        assert_eq!(
            std::fs::read_to_string(m.path(&format!("f{i}"))).unwrap(),
            format!("file {i}")
        );
    }
}

#[test]
fn a_second_mount_of_a_volume_is_told_where_the_first_is() {
    let m = Mounted::new(&[], "");
    let other = m.tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let _detach = Detach(&other);
    let out = lsvfs()
        .arg("mount")
        .arg(&m.volume)
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "lsvfs: volume {vol} is already mounted by pid {pid} at {mnt}; unmount it first (lsvfs unmount {mnt})\n",
            vol = m.volume.display(),
            pid = m.daemon_pid(),
            mnt = m.mnt.display()
        )
    );
    assert!(std::fs::read_dir(&other).unwrap().next().is_none());
}

#[test]
fn read_only_mounts_refuse_changes() {
    let m = Mounted::new(&[], "");
    std::fs::write(m.path("f"), b"data").unwrap();
    m.unmount();
    run(common::mount::lsvfs()
        .arg("mount")
        .arg(&m.volume)
        .arg(&m.mnt)
        .args(["-o", "ro"]));
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"data");
    let err = std::fs::write(m.path("g"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    let err = std::fs::OpenOptions::new()
        .write(true)
        .open(m.path("f"))
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    let err = std::fs::remove_file(m.path("f")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
}

/// Issue 12.11: with the writeback cache the kernel sends the times of a
/// file it still caches after the file was deleted at its last close; that
/// setattr (and any late write) is answered, not refused with ENOENT, so
/// `sync -f` after write, close, rm succeeds.
#[test]
fn sync_after_write_close_remove_succeeds() {
    let m = Mounted::new(&[], "");
    for i in 0..20 {
        let path = m.path(&format!("f{i}"));
        std::fs::write(&path, b"x\n").unwrap();
        std::fs::remove_file(&path).unwrap();
        let out = Command::new("sync").arg("-f").arg(&m.mnt).output().unwrap();
        assert!(
            out.status.success(),
            "round {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Nothing of them is left.
    assert_eq!(std::fs::read_dir(&m.mnt).unwrap().count(), 0);
}

/// Issue 12.5: no daemon thread waits on its own mount. A flushing sync
/// point flushes from the requesting command, so kill -9 of the daemon in
/// the middle of flushing sync points under heavy buffered writes always
/// lets it die, and clients then get ENOTCONN instead of hanging.
#[test]
fn kill_9_during_flushing_sync_points_lets_the_daemon_die() {
    use std::sync::atomic::{AtomicBool, Ordering};
    // A slow primary: the kernel's writeback waits on the daemon.
    let m = Mounted::with_env(&[], "", &[(WRITEBACK_DELAY, "50")]);
    for round in 0..3 {
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let chunk = vec![round as u8; 1 << 20];
                let Ok(f) = std::fs::File::create(m.path(&format!("dirty{round}"))) else {
                    return;
                };
                for i in 0..512u64 {
                    if stop.load(Ordering::SeqCst) || f.write_all_at(&chunk, i << 20).is_err() {
                        return;
                    }
                }
            });
            s.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    let _ = lsvfs().arg("sync-point").arg(&m.mnt).output();
                }
            });
            std::thread::sleep(std::time::Duration::from_millis(400 + 300 * round));
            let pid = m.daemon_pid();
            // SAFETY: sending a signal has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            common::mount::wait_gone(pid);
            let err = std::fs::metadata(m.path("dirty0")).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
            stop.store(true, Ordering::SeqCst);
        });
        run(lsvfs().arg("unmount").arg(&m.mnt));
        m.mount();
    }
}

/// Invariant 1 with the writeback cache: `lsvfs sync-point` contains what
/// an application wrote before the command started, though not fsynced and
/// with the file still open. `syncfs` alone does not ensure it: the kernel
/// (6.1 with its temporary writeback pages, 6.18 with FUSE mounts marked
/// without data integrity) returns before lsvfs has answered the writes.
#[test]
fn a_flushing_sync_point_holds_every_byte_written_before_it() {
    // Writeback writes are served slowly here (a test hook of the daemon),
    // as on a busy machine: a flush that does not wait for them shows.
    let m = Mounted::with_env(&[], "", &[(WRITEBACK_DELAY, "20")]);
    for round in 0..3u8 {
        let name = format!("dirty{round}");
        let f = std::fs::File::create(m.path(&name)).unwrap();
        let chunk: Vec<u8> = (0..1 << 20).map(|i| (i as u8) ^ round).collect();
        for i in 0..8u64 {
            f.write_all_at(&chunk, i << 20).unwrap();
        }
        // Still open, nothing fsynced.
        let id = run(lsvfs().arg("sync-point").arg(&m.mnt));
        let view = m.path(&format!(".lsvfs/sync-points/{}/{name}", id.trim()));
        let got = std::fs::read(&view).unwrap();
        assert_eq!(got.len(), 8 << 20, "round {round}");
        for (i, piece) in got.chunks(1 << 20).enumerate() {
            assert!(piece == chunk.as_slice(), "round {round}: MiB {i} differs");
        }
        drop(f);
    }
}

/// Without the writeback cache (`-o no_writeback_cache`) every `write`
/// has reached lsvfs when it returns, so a crash-consistent sync point
/// (the control file, no flush) holds what was written before it, also
/// what was never fsynced. The writeback hook would delay data the kernel
/// cached: none is cached here.
#[test]
fn without_the_writeback_cache_a_crash_consistent_sync_point_holds_every_write() {
    use std::io::{Read, Write};
    let m = Mounted::with_env(&[], "no_writeback_cache", &[(WRITEBACK_DELAY, "20")]);
    let f = std::fs::File::create(m.path("unsynced")).unwrap();
    let chunk: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    for i in 0..8u64 {
        f.write_all_at(&chunk, i << 20).unwrap();
    }
    let mut ctl = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path(".lsvfs/sync-point"))
        .unwrap();
    ctl.write_all(b"no flush").unwrap();
    let mut answer = String::new();
    ctl.read_to_string(&mut answer).unwrap();
    let id = answer.split_whitespace().next().unwrap();
    let got = std::fs::read(m.path(&format!(".lsvfs/sync-points/{id}/unsynced"))).unwrap();
    assert_eq!(got.len(), 8 << 20);
    for (i, piece) in got.chunks(1 << 20).enumerate() {
        assert!(piece == chunk.as_slice(), "MiB {i} differs");
    }
    drop(f);
}

/// Issue 12.10: segments, archived objects, the catalog, the lock and the
/// daemon's log hold every user's data or say where it is: they are made
/// 0600 in directories made 0700, whatever the umask.
#[test]
fn a_volumes_files_are_private_whatever_the_umask() {
    let tmp = tempfile::tempdir().unwrap();
    let (vol, mnt) = (tmp.path().join("vol"), tmp.path().join("mnt"));
    std::fs::create_dir(&mnt).unwrap();
    let sh = |cmd: String| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("umask 000 && {cmd}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let exe = env!("CARGO_BIN_EXE_lsvfs");
    let (v, m) = (vol.display(), mnt.display());
    sh(format!(
        "{exe} create {v} --segment-size 256K --working-set 8"
    ));
    sh(format!("{exe} mount {v} {m}"));
    let _detach = Detach(&mnt);
    let secret = mnt.join("secret");
    std::fs::write(&secret, vec![0x5e; 1 << 20]).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    run(lsvfs().arg("sync-point").arg(&mnt));
    for i in 0..8 {
        std::fs::write(mnt.join("secret"), vec![i; 1 << 20]).unwrap();
        run(lsvfs().arg("sync-point").arg(&mnt));
    }
    run(lsvfs().arg("unmount").arg(&mnt));
    let mut seen = 0;
    let mut stack = vec![vol.clone()];
    while let Some(dir) = stack.pop() {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", dir.display());
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
                continue;
            }
            let mode = e.metadata().unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", e.path().display());
            seen += 1;
        }
    }
    let archived = std::fs::read_dir(vol.join("archive")).unwrap().count();
    assert!(
        seen > 6 && archived > 0,
        "{seen} files, {archived} archived"
    );
    // A volume made before (0755 segments/, 0644 segment files) is closed
    // at its next open, and a recycled file is made private when reused.
    let segs = vol.join("segments");
    std::fs::set_permissions(&segs, std::fs::Permissions::from_mode(0o755)).unwrap();
    for e in std::fs::read_dir(&segs).unwrap() {
        let path = e.unwrap().path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    run(lsvfs().arg("mount").arg(&vol).arg(&mnt));
    for i in 0..4 {
        std::fs::write(mnt.join("secret"), vec![i; 1 << 20]).unwrap();
        run(lsvfs().arg("sync-point").arg(&mnt));
    }
    run(lsvfs().arg("unmount").arg(&mnt));
    let mode = std::fs::metadata(&segs).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "segments/ is {mode:o} after an open");
    let newest = std::fs::read_dir(&segs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            !name.starts_with("free-") && !name.starts_with("spare-")
        })
        .max()
        .unwrap();
    let mode = std::fs::metadata(&newest).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "{} is {mode:o}", newest.display());
}

/// Issue 12.9: a volume is opened as root; a link planted in its directory
/// (lock, daemon.log, a recycled segment) is never written through, and a
/// volume directory other users may change is refused.
#[test]
fn links_in_a_volume_are_never_followed_and_open_directories_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (vol, mnt) = (tmp.path().join("vol"), tmp.path().join("mnt"));
    std::fs::create_dir(&mnt).unwrap();
    run(lsvfs().arg("create").arg(&vol));
    // One mount and unmount, so that lock and daemon.log exist.
    run(lsvfs().arg("mount").arg(&vol).arg(&mnt));
    run(lsvfs().arg("unmount").arg(&mnt));
    let victim = tmp.path().join("victim");
    for planted in ["lock", "daemon.log", "segments/free-0000000000000099.seg"] {
        std::fs::write(&victim, b"precious").unwrap();
        let path = vol.join(planted);
        let saved = tmp.path().join("saved");
        let had = std::fs::rename(&path, &saved).is_ok();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let out = lsvfs().arg("mount").arg(&vol).arg(&mnt).output().unwrap();
        let _detach = Detach(&mnt);
        assert_eq!(out.status.code(), Some(1), "{planted}: {out:?}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious", "{planted}");
        std::fs::remove_file(&path).unwrap();
        if had {
            std::fs::rename(&saved, &path).unwrap();
        }
    }
    std::fs::set_permissions(&vol, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = lsvfs().arg("mount").arg(&vol).arg(&mnt).output().unwrap();
    let _detach = Detach(&mnt);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("writable by other users (mode 0777)"),
        "{stderr}"
    );
    std::fs::set_permissions(&vol, std::fs::Permissions::from_mode(0o700)).unwrap();
    run(lsvfs().arg("mount").arg(&vol).arg(&mnt));
    run(lsvfs().arg("unmount").arg(&mnt));
}
