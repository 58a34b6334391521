//! POSIX details of the filesystem layer that the reference model does not
//! cover: files unlinked while open, extended attributes, setattr and
//! fallocate.

mod common;

use lsvfs::Volume;
use lsvfs::format::FileKind;
use lsvfs::fs::{Fs, ROOT_OWNER, RenameMode, SetAttrs, XattrMode};
use lsvfs::volume::ROOT_INO;

fn fs() -> (tempfile::TempDir, Fs) {
    let dir = tempfile::tempdir().unwrap();
    let vol = common::create(&dir.path().join("v"), &common::small_policy());
    (dir, Fs::new(vol).unwrap())
}

fn file(fs: &Fs, name: &str) -> u64 {
    fs.create_file(ROOT_INO, name.as_bytes(), 0o644, ROOT_OWNER)
        .unwrap()
        .0
}

#[test]
fn unlinked_open_file_lives_until_release() {
    let (_dir, fs) = fs();
    let ino = file(&fs, "f");
    fs.write(ino, 0, b"still here").unwrap();
    fs.open(ino).unwrap();
    fs.unlink(ROOT_INO, b"f").unwrap();
    assert!(fs.lookup(ROOT_INO, b"f").is_err());
    assert_eq!(fs.getattr(ino).unwrap().nlink, 0);
    assert_eq!(fs.read(ino, 0, 100).unwrap(), b"still here");
    fs.write(ino, 10, b"!").unwrap();
    fs.release(ino).unwrap();
    assert_eq!(fs.getattr(ino).unwrap_err().errno(), libc::ENOENT);
}

#[test]
fn orphans_left_by_a_crash_are_deleted_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let fs = Fs::new(common::create(&path, &common::small_policy())).unwrap();
    let ino = file(&fs, "f");
    fs.write(ino, 0, &[7; 5000]).unwrap();
    fs.open(ino).unwrap();
    // Replaced by a rename while open: also an orphan.
    let other = file(&fs, "g");
    fs.open(other).unwrap();
    fs.rename(ROOT_INO, b"f", ROOT_INO, b"g", RenameMode::Replace)
        .unwrap();
    fs.unlink(ROOT_INO, b"g").unwrap();
    fs.fsync().unwrap();
    assert_eq!(fs.volume().index_stats().inodes, 3);
    fs.into_volume().crash();

    let fs = Fs::new(Volume::open(&path).unwrap()).unwrap();
    assert_eq!(fs.getattr(ino).unwrap_err().errno(), libc::ENOENT);
    assert_eq!(fs.getattr(other).unwrap_err().errno(), libc::ENOENT);
    let stats = fs.volume().index_stats();
    assert_eq!(
        (stats.inodes, stats.blocks),
        (1, 0),
        "only the root is left"
    );
}

#[test]
fn xattrs_follow_create_and_replace_rules() {
    let (_dir, fs) = fs();
    let ino = file(&fs, "f");
    let before = fs.getattr(ino).unwrap().ctime;
    assert_eq!(
        fs.getxattr(ino, b"user.a").unwrap_err().errno(),
        libc::ENODATA
    );
    let replace = fs.setxattr(ino, b"user.a", b"1", XattrMode::Replace);
    assert_eq!(replace.unwrap_err().errno(), libc::ENODATA);
    fs.setxattr(ino, b"user.a", b"1", XattrMode::Create)
        .unwrap();
    let create = fs.setxattr(ino, b"user.a", b"2", XattrMode::Create);
    assert_eq!(create.unwrap_err().errno(), libc::EEXIST);
    fs.setxattr(ino, b"user.a", b"2", XattrMode::Replace)
        .unwrap();
    fs.setxattr(ino, b"user.b", b"", XattrMode::Any).unwrap();
    assert_eq!(fs.getxattr(ino, b"user.a").unwrap(), b"2");
    assert_eq!(fs.getxattr(ino, b"user.b").unwrap(), b"");
    let mut names = fs.listxattr(ino).unwrap();
    names.sort();
    assert_eq!(names, vec![b"user.a".to_vec(), b"user.b".to_vec()]);
    assert!(fs.getattr(ino).unwrap().ctime >= before);
    fs.removexattr(ino, b"user.a").unwrap();
    assert_eq!(
        fs.removexattr(ino, b"user.a").unwrap_err().errno(),
        libc::ENODATA
    );
    let big = vec![0; 65 * 1024];
    let err = fs
        .setxattr(ino, b"user.big", &big, XattrMode::Any)
        .unwrap_err();
    assert_eq!(err.errno(), libc::E2BIG);
}

#[test]
fn setattr_changes_mode_owner_times_and_size_at_once() {
    let (_dir, fs) = fs();
    let ino = file(&fs, "f");
    fs.write(ino, 0, &[1; 3000]).unwrap();
    fs.setattr(
        ino,
        &SetAttrs {
            mode: Some(0o6755),
            ..Default::default()
        },
    )
    .unwrap();
    let when = lsvfs::format::Timestamp {
        sec: 1_000_000,
        nsec: 5,
    };
    let a = fs
        .setattr(
            ino,
            &SetAttrs {
                uid: Some(1000),
                gid: Some(1000),
                size: Some(1000),
                mtime: Some(when),
                atime: Some(when),
                ..Default::default()
            },
        )
        .unwrap();
    // A new owner drops set-uid, and set-gid of a group-executable file.
    assert_eq!(a.mode, 0o755);
    assert_eq!((a.uid, a.gid, a.size), (1000, 1000, 1000));
    assert_eq!((a.mtime, a.atime), (when, when));
    assert!(a.ctime > when);
    assert_eq!(fs.read(ino, 0, 4000).unwrap(), vec![1; 1000]);
    let dir = fs
        .mknod(ROOT_INO, b"d", FileKind::Directory, 0o755, ROOT_OWNER, 0)
        .unwrap()
        .0;
    let err = fs.setattr(
        dir,
        &SetAttrs {
            size: Some(0),
            ..Default::default()
        },
    );
    assert_eq!(err.unwrap_err().errno(), libc::EISDIR);
}

#[test]
fn fallocate_extends_and_punches() {
    let (_dir, fs) = fs();
    let ino = file(&fs, "f");
    fs.fallocate(ino, 0, 10_000, 0).unwrap();
    assert_eq!(fs.getattr(ino).unwrap().size, 10_000);
    assert_eq!(fs.read(ino, 0, 20_000).unwrap(), vec![0; 10_000]);
    fs.write(ino, 0, &[9; 10_000]).unwrap();
    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    fs.fallocate(ino, 100, 5000, punch).unwrap();
    let got = fs.read(ino, 0, 20_000).unwrap();
    let mut want = vec![9; 10_000];
    want[100..5100].fill(0);
    assert_eq!(got, want);
    fs.fallocate(ino, 0, 50_000, libc::FALLOC_FL_KEEP_SIZE)
        .unwrap();
    assert_eq!(fs.getattr(ino).unwrap().size, 10_000);
    let zero_range = fs.fallocate(ino, 0, 10, libc::FALLOC_FL_ZERO_RANGE);
    assert_eq!(zero_range.unwrap_err().errno(), libc::EOPNOTSUPP);
}
