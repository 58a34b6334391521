//! Rollback, diff and restore on real mounts, through the command line: a
//! tree with a hard link, xattrs, a symlink and a sparse file; a sync
//! point; changes of every kind; `lsvfs diff` names them; `lsvfs restore`
//! on the mounted volume brings a deleted directory back at once (the
//! kernel's cached names are dropped), equal to the view; `lsvfs
//! rollback` of the unmounted volume makes the whole tree equal to the
//! view again, and rolling back to its "before" sync point undoes it.

use super::common::facts::{assert_same, manifest, set_xattr};
use super::common::mount::{Mounted, lsvfs, run, view_tree};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;

/// A tree with a hard link, an xattr, a symlink and a sparse file.
fn populate(m: &Mounted) {
    std::fs::create_dir_all(m.path("d/e")).unwrap();
    std::fs::write(m.path("d/a"), b"first version\n").unwrap();
    std::fs::hard_link(m.path("d/a"), m.path("d/e/a-link")).unwrap();
    set_xattr(&m.path("d/a"), "user.origin", b"populate");
    std::os::unix::fs::symlink("d/a", m.path("s")).unwrap();
    let mut f = std::fs::File::create(m.path("sparse")).unwrap();
    f.write_all(&[7u8; 10_000]).unwrap();
    f.seek(SeekFrom::Start(5 << 20)).unwrap();
    f.write_all(b"tail").unwrap();
    std::fs::write(m.path("keep"), b"unchanged\n").unwrap();
}

/// Changes of every kind after the sync point.
fn mess_up(m: &Mounted) {
    std::fs::remove_dir_all(m.path("d")).unwrap();
    std::fs::write(m.path("new"), b"made after\n").unwrap();
    std::fs::rename(m.path("keep"), m.path("kept")).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(m.path("sparse"))
        .unwrap();
    f.seek(SeekFrom::Start(4096)).unwrap();
    f.write_all(&[9u8; 3000]).unwrap();
    f.set_len(1 << 20).unwrap();
}

#[test]
fn diff_restore_and_rollback_through_the_command_line() {
    let m = Mounted::new(&[], "");
    populate(&m);
    let id: u64 = run(lsvfs()
        .arg("sync-point")
        .arg(&m.mnt)
        .args(["--label", "good"]))
    .trim()
    .parse()
    .unwrap();
    let want = view_tree(lsvfs, &m.volume, id);
    mess_up(&m);
    run(std::process::Command::new("sync").arg("-f").arg(&m.mnt));

    let diff = run(lsvfs().arg("diff").arg(&m.mnt).arg("good"));
    for line in [
        "deleted   /d/a",
        "deleted   /d/e/a-link",
        "created   /new",
        "renamed   /keep -> /kept  (attributes)",
        "modified  /sparse  (data, attributes)",
    ] {
        assert!(diff.lines().any(|l| l == line), "{line:?} not in:\n{diff}");
    }
    let json = run(lsvfs().arg("diff").arg(&m.volume).arg("good").arg("--json"));
    let entries: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), diff.lines().count());

    // Restore the deleted directory on the mounted volume; the name was
    // looked up (and found missing) just before.
    assert!(!m.path("d").exists());
    run(lsvfs()
        .arg("restore")
        .arg(&m.mnt)
        .args(["--at", "good", "d"]));
    let under_d = |t: &std::collections::BTreeMap<String, super::common::facts::Facts>| {
        t.iter()
            .filter(|(p, _)| *p == "d" || p.starts_with("d/"))
            .map(|(p, f)| (p.clone(), f.clone()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_same(
        &under_d(&manifest(&m.mnt, true)),
        &under_d(&want),
        "restored d",
    );
    let (a, link) = (m.path("d/a"), m.path("d/e/a-link"));
    assert_eq!(a.metadata().unwrap().ino(), link.metadata().unwrap().ino());
    // Again: refused, the clash named; nothing changed.
    let again = lsvfs()
        .arg("restore")
        .arg(&m.mnt)
        .args(["--at", "good", "d"])
        .output()
        .unwrap();
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("/d/a") && err.contains("--overwrite"), "{err}");

    // Roll the whole volume back, unmounted.
    let mounted = lsvfs()
        .arg("rollback")
        .arg(&m.volume)
        .args(["--to", "good"])
        .output()
        .unwrap();
    assert!(!mounted.status.success(), "rollback of a mounted volume");
    m.unmount();
    let out = run(lsvfs()
        .arg("rollback")
        .arg(&m.volume)
        .args(["--to", "good"]));
    assert!(out.contains("rolled"), "{out}");
    m.mount();
    assert_same(&manifest(&m.mnt, true), &want, "after rollback");
    // And undo it: back to the state with the restored directory.
    m.unmount();
    let before = format!("before-rollback-to-{id}");
    run(lsvfs()
        .arg("rollback")
        .arg(&m.volume)
        .args(["--to", &before]));
    m.mount();
    assert!(m.path("new").exists() && m.path("kept").exists() && m.path("d/a").exists());
    assert!(!m.path("keep").exists());
}
