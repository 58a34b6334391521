//! `lsvfs export` on real mounts, judged by GNU tar: a full export of a
//! tree with every kind of file (a sparse file, hard links, a symlink, a
//! FIFO, a device, xattrs, owners, modes, nanosecond times) extracts into
//! a directory equal to the view; its members come in inode order; an
//! incremental export since that sync point, replayed (remove its list,
//! extract it) over the first extraction, makes the newer view; and a
//! sync point whose segments are only in the backing store exports from
//! the store alone.

use super::common::facts::{assert_same, manifest, set_xattr};
use super::common::mount::{Mounted, SMALL_SEGMENTS, lsvfs, run, view_tree};
use std::ffi::CString;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

fn c(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

/// Sets mtime and atime with nanoseconds, not following symlinks.
fn set_times(path: &Path, sec: i64, nsec: i64) {
    let t = libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    // SAFETY: a valid path and two timespecs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c(path).as_ptr(),
            [t, t].as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(r, 0, "utimensat {}", path.display());
}

fn populate(m: &Mounted) {
    std::fs::create_dir_all(m.path("etc/deep/er")).unwrap();
    std::fs::write(m.path("etc/conf"), b"setting = 1\n").unwrap();
    std::fs::hard_link(m.path("etc/conf"), m.path("etc/deep/conf-link")).unwrap();
    set_xattr(&m.path("etc/conf"), "user.note", b"\x00binary\xff");
    std::os::unix::fs::symlink("../etc/conf", m.path("etc/deep/er/link")).unwrap();
    let mut f = std::fs::File::create(m.path("sparse")).unwrap();
    f.write_all(&[1u8; 5000]).unwrap();
    f.seek(SeekFrom::Start(3 << 20)).unwrap();
    f.write_all(b"middle").unwrap();
    f.set_len(8 << 20).unwrap();
    drop(f);
    let noise: Vec<u8> = (0..700_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    std::fs::write(m.path("big"), &noise).unwrap();
    // SAFETY: valid paths; mode and device numbers are plain values.
    unsafe {
        assert_eq!(libc::mkfifo(c(&m.path("fifo")).as_ptr(), 0o640), 0);
        assert_eq!(
            libc::mknod(
                c(&m.path("null")).as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(1, 3)
            ),
            0
        );
        assert_eq!(libc::lchown(c(&m.path("big")).as_ptr(), 1234, 5678), 0);
    }
    std::fs::set_permissions(
        m.path("etc/conf"),
        std::os::unix::fs::PermissionsExt::from_mode(0o4750),
    )
    .unwrap();
    set_times(&m.path("big"), 1_700_000_000, 123_456_789);
    set_times(&m.path("etc/deep/er/link"), 1_600_000_000, 5);
}

fn sync_point(m: &Mounted, label: &str) -> u64 {
    run(lsvfs()
        .arg("sync-point")
        .arg(&m.mnt)
        .args(["--label", label]))
    .trim()
    .parse()
    .unwrap()
}

fn tar(args: &[&str], dir: &Path) {
    let out = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-p"])
        .arg("--delay-directory-restore")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn full_and_incremental_exports_extract_to_their_views() {
    let m = Mounted::new(&[], "");
    populate(&m);
    let first = sync_point(&m, "first");
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full.tar");
    run(lsvfs()
        .arg("export")
        .arg(&m.mnt)
        .args(["--at", "first", "-o"])
        .arg(&full));
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    tar(&["-xf", full.to_str().unwrap()], &out);
    assert_same(
        &manifest(&out, true),
        &view_tree(lsvfs, &m.volume, first),
        "full export",
    );
    let sparse = out.join("sparse").metadata().unwrap();
    assert!(
        sparse.blocks() * 512 < 1 << 20,
        "holes were filled: {} blocks",
        sparse.blocks()
    );

    // Members in inode order: each first name's inode is above the last.
    let listing = Command::new("tar").arg("-tvf").arg(&full).output().unwrap();
    let mut last = 0;
    for line in String::from_utf8_lossy(&listing.stdout).lines() {
        if line.starts_with('h') || line.contains(" link to ") {
            continue;
        }
        let name = line
            .split_whitespace()
            .nth(5)
            .unwrap()
            .trim_end_matches('/');
        let ino = std::fs::symlink_metadata(m.mnt.join(name)).unwrap().ino();
        assert!(
            ino > last || name == ".",
            "{name} (inode {ino}) after inode {last}"
        );
        last = ino;
    }

    // Changes of every kind, then an incremental export.
    std::fs::rename(m.path("etc/deep"), m.path("moved")).unwrap();
    std::fs::remove_file(m.path("fifo")).unwrap();
    std::fs::write(m.path("etc/conf"), b"setting = 2\n").unwrap();
    std::fs::write(m.path("new"), b"created\n").unwrap();
    std::fs::hard_link(m.path("new"), m.path("new-link")).unwrap();
    std::fs::remove_file(m.path("null")).unwrap();
    std::fs::write(m.path("null"), b"now a file\n").unwrap();
    let second = sync_point(&m, "second");
    let inc = tmp.path().join("inc.tar");
    run(lsvfs()
        .arg("export")
        .arg(&m.volume)
        .args(["--at", "second", "--since", "first", "-o"])
        .arg(&inc));
    let inc_len = inc.metadata().unwrap().len();
    assert!(
        inc_len < full.metadata().unwrap().len() / 2,
        "the incremental holds the big file"
    );
    let list = Command::new("tar")
        .arg("-xOf")
        .arg(&inc)
        .arg(".lsvfs-deleted")
        .output()
        .unwrap();
    for path in list.stdout.split(|&b| b == 0).filter(|p| !p.is_empty()) {
        let p = out.join(std::ffi::OsStr::from_bytes(path));
        match std::fs::symlink_metadata(&p) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&p).unwrap(),
            Ok(_) => std::fs::remove_file(&p).unwrap(),
            Err(e) => panic!("{} listed for removal: {e}", p.display()),
        }
    }
    tar(
        &["-xf", inc.to_str().unwrap(), "--exclude=.lsvfs-deleted"],
        &out,
    );
    assert_same(
        &manifest(&out, true),
        &view_tree(lsvfs, &m.volume, second),
        "full + incremental",
    );
}

#[test]
fn a_sync_point_in_the_store_alone_exports() {
    let m = Mounted::new(&SMALL_SEGMENTS, "");
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(m.path("kept"), &bytes).unwrap();
    let id = sync_point(&m, "old");
    // Rewrite other files until the sync point's segment is retired.
    for i in 0..40u32 {
        std::fs::write(m.path(&format!("churn{}", i % 3)), vec![i as u8; 200_000]).unwrap();
    }
    run(lsvfs().arg("sync-point").arg(&m.mnt));
    m.wait_archived();
    let listing = run(lsvfs().arg("sync-points").arg(&m.volume));
    let line = listing
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&id.to_string()))
        .unwrap();
    assert!(
        line.contains("archive"),
        "the sync point is still in primary: {line}"
    );
    let out = run(Command::new("sh").arg("-c").arg(format!(
        "{} export {} --at old | tar -xO kept | cksum",
        env!("CARGO_BIN_EXE_lsvfs"),
        m.volume.join("archive").display()
    )));
    let want = run(Command::new("sh")
        .arg("-c")
        .arg(format!("cksum < {}", m.path("kept").display())));
    assert_eq!(out, want);
}
