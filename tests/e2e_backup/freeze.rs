//! Freeze and thaw on a real mount: writers wait during a freeze while
//! reads go on, and finish after the thaw with nothing lost; a freeze's
//! timeout thaws by itself and says so; a sync point with hooks and a
//! freeze of its own holds what was written before it, and when a hook
//! fails it reports the failure and leaves the mount thawed.

use super::common::mount::{Mounted, lsvfs, run};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Writes `len` zero bytes into `name` and fsyncs it, in a process of
/// its own (`dd conv=fsync`, creating the file or writing over the
/// existing one): an application. The channel says when it ended well.
/// (In this process the file's descriptor would be closed again in every
/// child it spawns, and a close waits for the file's writeback.)
fn writer(m: &Mounted, name: &str, len: usize) -> mpsc::Receiver<Instant> {
    let mut dd = std::process::Command::new("dd");
    dd.arg("if=/dev/zero")
        .arg(format!("of={}", m.path(name).display()))
        .arg(format!("bs={len}"))
        .args(["count=1", "conv=fsync,notrunc", "status=none"]);
    let mut child = dd.spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        if child.wait().unwrap().success() {
            let _ = tx.send(Instant::now());
        }
    });
    rx
}

fn status(m: &Mounted) -> serde_json::Value {
    let out = run(lsvfs().arg("status").arg(&m.mnt).arg("--json"));
    serde_json::from_str(&out).unwrap()
}

#[test]
fn writers_wait_for_the_thaw_while_reads_go_on() {
    let m = Mounted::new(&[], "");
    std::fs::write(m.path("before"), b"written before\n").unwrap();
    std::fs::write(m.path("existing"), b"old").unwrap();
    std::fs::create_dir(m.path("sub")).unwrap();
    let out = run(lsvfs().arg("freeze").arg(&m.mnt).args(["--timeout", "60s"]));
    assert!(out.starts_with("frozen until"), "{out}");
    let bytes = vec![0u8; 300_000];
    // A write to a file (its writeback and fsync wait), and a new file
    // (the kernel holds its directory, sub, meanwhile).
    let rewritten = writer(&m, "existing", bytes.len());
    let created = writer(&m, "sub/during", bytes.len());
    for done in [&rewritten, &created] {
        assert!(
            done.recv_timeout(Duration::from_millis(700)).is_err(),
            "a change went through the freeze"
        );
    }
    // Reads, listings (of directories no held change is in) and status go on.
    assert_eq!(
        std::fs::read(m.path("before")).unwrap(),
        b"written before\n"
    );
    assert!(std::fs::read_dir(&m.mnt).unwrap().count() >= 3);
    let s = status(&m);
    assert_eq!(s["freeze"]["frozen"], true, "{s}");
    assert!(s["freeze"]["parked"].as_u64().unwrap() >= 2, "{s}");
    let thawed = Instant::now();
    let out = run(lsvfs().arg("thaw").arg(&m.mnt));
    assert!(out.starts_with("thawed;"), "{out}");
    for done in [&rewritten, &created] {
        let finished = done
            .recv_timeout(Duration::from_secs(10))
            .expect("the writer finished");
        assert!(finished >= thawed);
    }
    assert_eq!(std::fs::read(m.path("sub/during")).unwrap(), bytes);
    assert_eq!(std::fs::read(m.path("existing")).unwrap(), bytes);
    // After a remount too: nothing held was lost.
    m.remount();
    assert_eq!(std::fs::read(m.path("sub/during")).unwrap(), bytes);
    assert_eq!(std::fs::read(m.path("existing")).unwrap(), bytes);
}

/// A change held in the root directory keeps the kernel from looking up
/// a name there it does not have cached, `.lsvfs` too (dropped here with
/// the dentry cache): `lsvfs thaw` then thaws by signal.
#[test]
fn thaw_gets_through_when_the_control_file_cannot_be_reached() {
    let m = Mounted::new(&[], "");
    run(lsvfs()
        .arg("freeze")
        .arg(&m.mnt)
        .args(["--timeout", "120s"]));
    let created = writer(&m, "in-root", 5);
    assert!(created.recv_timeout(Duration::from_millis(500)).is_err());
    std::fs::write("/proc/sys/vm/drop_caches", b"2").unwrap();
    let started = Instant::now();
    let out = run(lsvfs().arg("thaw").arg(&m.mnt));
    assert!(started.elapsed() < Duration::from_secs(30), "{out}");
    created
        .recv_timeout(Duration::from_secs(10))
        .expect("the thaw released the change");
    assert_eq!(std::fs::read(m.path("in-root")).unwrap(), [0; 5]);
    eprintln!("{out}");
}

#[test]
fn a_freeze_times_out_by_itself() {
    let m = Mounted::new(&[], "");
    let started = Instant::now();
    run(lsvfs().arg("freeze").arg(&m.mnt).args(["--timeout", "1s"]));
    let done = writer(&m, "late", 5);
    let finished = done
        .recv_timeout(Duration::from_secs(15))
        .expect("the timeout thawed");
    assert!(finished - started >= Duration::from_millis(900));
    let s = status(&m);
    assert_eq!(s["freeze"]["frozen"], false, "{s}");
    assert!(
        s["freeze"]["last"].as_str().unwrap().contains("timed out"),
        "{s}"
    );
    let text = run(lsvfs().arg("status").arg(&m.mnt));
    assert!(text.contains("timed out after 1 s"), "{text}");
}

#[test]
fn a_sync_point_with_hooks_and_a_freeze() {
    let m = Mounted::new(&[], "");
    let marks = m.tmp.path().join("marks");
    // Written into the kernel's cache only: the freeze's flush takes it in.
    std::fs::write(m.path("cached"), b"not fsynced\n").unwrap();
    let before = format!("echo before >> {}", marks.display());
    let after = format!("echo after >> {}", marks.display());
    let id = run(lsvfs()
        .arg("sync-point")
        .arg(&m.mnt)
        .args(["--label", "hooked", "--freeze", "--exec-before", &before])
        .args(["--exec-after", &after]));
    let id = id.trim();
    assert_eq!(std::fs::read_to_string(&marks).unwrap(), "before\nafter\n");
    let view = m.mnt.join(".lsvfs/sync-points").join(id).join("cached");
    assert_eq!(std::fs::read(&view).unwrap(), b"not fsynced\n");
    assert_eq!(status(&m)["freeze"]["frozen"], false);

    // A failing before-hook: no sync point, the after-hook runs, thawed.
    let listed = run(lsvfs().arg("sync-points").arg(&m.mnt)).lines().count();
    let out = lsvfs()
        .arg("sync-point")
        .arg(&m.mnt)
        .args([
            "--freeze",
            "--exec-before",
            "exit 3",
            "--exec-after",
            &after,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("before hook") && err.contains("exit 3"),
        "{err}"
    );
    assert_eq!(
        run(lsvfs().arg("sync-points").arg(&m.mnt)).lines().count(),
        listed
    );
    assert!(
        std::fs::read_to_string(&marks)
            .unwrap()
            .ends_with("after\nafter\n")
    );
    // A failing after-hook: the sync point is taken, the failure reported,
    // and the mount is thawed (a write goes through at once).
    let out = lsvfs()
        .arg("sync-point")
        .arg(&m.mnt)
        .args(["--freeze=20s", "--exec-after", "false"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("after hook"));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .is_ok()
    );
    let done = writer(&m, "free", 5);
    done.recv_timeout(Duration::from_secs(5))
        .expect("the mount was left frozen");
}
