//! Primary storage stays within the working set and its reserve; capacity
//! is enforced with ENOSPC; a store that is down makes writes wait.

use super::workload::{RESERVE, W, Work, drained, open, primary_segments, tiny_policy, wait_until};
use lsvfs::fs::{Fs, FsError, ROOT_OWNER, XattrMode};
use lsvfs::store::{BackingStore, Faulty, Memory};
use lsvfs::volume::{OpenOptions, ROOT_INO, Volume};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn long_run_stays_within_the_working_set_and_every_sync_point_rebuilds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    Volume::create(&dir, &tiny_policy()).unwrap();
    let fs = Fs::new(Volume::open(&dir).unwrap()).unwrap();
    let mut work = Work::new(7);
    let mut most = 0;
    for _ in 0..4000 {
        work.step(&fs).unwrap();
        let n = primary_segments(&dir);
        most = most.max(n);
        assert!(n <= (W + RESERVE) as u64, "{n} segments in primary");
    }
    work.point(&fs);
    drained(&fs);
    let status = fs.volume().status();
    assert!(
        status.archived_segments > 3 * W as u64,
        "the run should retire many segments: {status:?}"
    );
    assert!(status.store.ok);
    work.check(fs.volume());
    fs.into_volume().close().unwrap();
    // Reopened: recovery reads primary storage only, views the archive.
    let vol = Volume::open(&dir).unwrap();
    work.check(&vol);
    eprintln!(
        "{} sync points, at most {most} segments in primary, {} archived",
        work.points.len(),
        status.archived_segments
    );
}

#[test]
fn with_the_store_down_writes_wait_then_everything_is_archived() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    Volume::create(&dir, &tiny_policy()).unwrap();
    let faulty = Arc::new(Faulty::new(Memory::new()));
    let store: Arc<dyn BackingStore> = faulty.clone();
    faulty.set_down(true);
    let fs = Arc::new(open(&dir, &store, None));
    let worker = {
        let fs = fs.clone();
        std::thread::spawn(move || {
            let mut work = Work::new(11);
            for _ in 0..2500 {
                work.step(&fs)
                    .expect("no write fails while the store is down");
            }
            work.point(&fs);
            work
        })
    };
    wait_until("writes to block", Duration::from_secs(60), || {
        fs.volume().status().writes_blocked
    });
    let status = fs.volume().status();
    assert!(
        !status.store.ok && status.store.error.is_some(),
        "{status:?}"
    );
    assert_eq!(status.archived_segments, 0);
    assert_eq!(primary_segments(&dir), (W + RESERVE - 1) as u64);
    // Every sealed segment (all in primary but the open one) is unshipped.
    assert_eq!(status.waiting_for_ship, (W + RESERVE - 2) as u64);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!worker.is_finished(), "writes must wait, not fail");
    assert!(fs.volume().status().writes_blocked);

    faulty.set_down(false);
    let work = worker.join().unwrap();
    drained(&fs);
    wait_until(
        "every sealed segment to ship",
        Duration::from_secs(60),
        || fs.volume().status().waiting_for_ship == 0,
    );
    let status = fs.volume().status();
    assert!(status.store.ok, "{status:?}");
    assert!(status.archived_segments > W as u64);
    work.check(fs.volume());
    Arc::into_inner(fs).unwrap().into_volume().close().unwrap();
    let fs = open(&dir, &store, None);
    work.check(fs.volume());
}

#[test]
fn capacity_is_enforced_with_enospc_and_deleting_frees_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    let policy = tiny_policy();
    Volume::create(&dir, &policy).unwrap();
    let fs = Fs::new(Volume::open(&dir).unwrap()).unwrap();
    let (ino, _) = fs.create_file(ROOT_INO, b"big", 0o644, ROOT_OWNER).unwrap();
    let chunk = vec![0x5a; 8 << 10];
    let mut written = 0u64;
    let err = loop {
        match fs.write(ino, written, &chunk) {
            Ok(n) => written += n as u64,
            Err(e) => break e,
        }
        assert!(written < 10 << 20, "never ran out of space");
    };
    assert_eq!(err.errno(), libc::ENOSPC, "{err:?}");
    let cap = policy.capacity_blocks() * policy.block_size;
    assert!(written <= cap && written + chunk.len() as u64 > cap - 4096);
    // Nothing is corrupted: what was written reads back; overwrites pass.
    let back = fs.read(ino, 0, written as usize).unwrap();
    assert!(back.iter().all(|&b| b == 0x5a) && back.len() as u64 == written);
    fs.write(ino, 0, &[1; 4096]).unwrap();
    fs.truncate(ino, written / 2).unwrap();
    fs.write(ino, written / 2, &chunk).unwrap();
    drained(&fs);
    assert!(primary_segments(&dir) <= (W + RESERVE) as u64);
}

#[test]
fn without_the_archiver_writes_never_wait_and_primary_grows() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    Volume::create(&dir, &tiny_policy()).unwrap();
    let options = OpenOptions {
        no_archiver: true,
        ..Default::default()
    };
    let fs = Fs::new(Volume::open_with(&dir, options).unwrap()).unwrap();
    let mut work = Work::new(13);
    for _ in 0..3000 {
        work.step(&fs).unwrap();
    }
    work.point(&fs);
    assert!(primary_segments(&dir) > (W + RESERVE) as u64);
    assert_eq!(fs.volume().status().archived_segments, 0);
    work.check(fs.volume());
}

/// Primary storage's own filesystem full when a segment must be created:
/// ENOSPC for that write, the volume stays usable and closes cleanly;
/// reopening is refused with ENOSPC until there is room, then everything
/// written before is there. (A 1 MiB tmpfs; needs root.)
#[test]
fn a_full_disk_at_segment_creation_is_enospc_not_a_poisoned_volume() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1M", "tmpfs"])
        .arg(mnt)
        .status()
        .unwrap();
    assert!(status.success(), "mount tmpfs (needs root)");
    struct Umount<'a>(&'a Path);
    impl Drop for Umount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Umount(mnt);
    let dir = mnt.join("v");
    let mut policy = tiny_policy();
    policy.segment_size = 256 << 10;
    Volume::create(&dir, &policy).unwrap();
    let fs = Fs::new(Volume::open(&dir).unwrap()).unwrap();
    let (ino, _) = fs.create_file(ROOT_INO, b"f", 0o644, ROOT_OWNER).unwrap();
    let chunk = vec![7u8; 32 << 10];
    let mut written = 0u64;
    let err = loop {
        match fs.write(ino, written, &chunk) {
            Ok(n) => written += n as u64,
            Err(e) => break e,
        }
        assert!(written < 4 << 20, "the 1 MiB disk never filled");
    };
    assert_eq!(err.errno(), libc::ENOSPC, "{err:?}");
    // Still usable: reads, an fsync, a second ENOSPC rather than EIO.
    assert_eq!(
        fs.read(ino, 0, written as usize).unwrap(),
        vec![7u8; written as usize]
    );
    fs.fsync().unwrap();
    assert_eq!(
        fs.write(ino, written, &chunk).unwrap_err().errno(),
        libc::ENOSPC
    );
    fs.into_volume().close().unwrap();
    // Opening needs a new tail segment: refused while the disk is full,
    // saying so, and fine once there is room.
    let err = Volume::open(&dir).err().unwrap();
    assert!(matches!(err, lsvfs::Error::NoSpace(_)), "{err}");
    let grown = std::process::Command::new("mount")
        .args(["-o", "remount,size=4M"])
        .arg(mnt)
        .status()
        .unwrap();
    assert!(grown.success());
    let fs = Fs::new(Volume::open(&dir).unwrap()).unwrap();
    assert_eq!(
        fs.read(ino, 0, written as usize).unwrap(),
        vec![7u8; written as usize]
    );
    fs.into_volume().close().unwrap();
}

/// Issue 12.3: xattrs, symlink targets and directory entries count against
/// the capacity like data. Before, one file's xattrs could fill the working
/// set with live records: every retire then copied a whole segment forward
/// and freed nothing, the writer spun and the store grew without bound.
/// Now the metadata gets ENOSPC near the capacity, the archiver keeps up,
/// and deleting makes room again.
#[test]
fn metadata_counts_against_capacity_so_the_working_set_keeps_moving() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    let policy = tiny_policy();
    Volume::create(&dir, &policy).unwrap();
    let store: Arc<dyn BackingStore> = Arc::new(Memory::new());
    let fs = Arc::new(open(&dir, &store, None));
    let (ino, _) = fs.create_file(ROOT_INO, b"x", 0o644, ROOT_OWNER).unwrap();
    let cap = policy.capacity_bytes();
    // Run the filling in a thread: before the fix it hung in the writer.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let filler = fs.clone();
    std::thread::spawn(move || {
        let value = vec![0x42u8; 2 << 10];
        let mut n = 0u64;
        let err = loop {
            let name = format!("user.attr{n:06}");
            match filler.setxattr(ino, name.as_bytes(), &value, XattrMode::Any) {
                Ok(()) => n += 1,
                Err(e) => break e,
            }
            if n * 2048 > 4 * cap {
                break FsError::Invalid("never ran out of space");
            }
        };
        let mut links = 0u64;
        let link_err = loop {
            let target = vec![b'a'; 4000];
            let name = format!("l{links:06}");
            match filler.symlink(ROOT_INO, name.as_bytes(), &target, ROOT_OWNER) {
                Ok(_) => links += 1,
                Err(e) => break e,
            }
            if links > 1000 {
                break FsError::Invalid("symlinks never ran out of space");
            }
        };
        let _ = done_tx.send((n, err, links, link_err));
    });
    let (n, err, links, link_err) = done_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("filling with xattrs hung: the working set stopped making progress");
    assert_eq!(err.errno(), libc::ENOSPC, "xattrs: {err:?}");
    // The xattrs took most of the capacity (each costs a bit over 2 KiB).
    assert!(
        n * 2048 > cap / 2 && n * 2048 <= cap,
        "{n} xattrs, cap {cap}"
    );
    // The capacity is used up, so symlinks fail at once or almost.
    assert_eq!(link_err.errno(), libc::ENOSPC, "symlinks: {link_err:?}");
    assert!(links < 4, "{links} symlinks fit past the capacity");
    drained(&fs);
    assert!(primary_segments(&dir) <= (W + RESERVE) as u64);
    // The store holds a bounded number of objects: retiring made progress
    // (each retire frees space) instead of copying everything forward.
    let objects = store.list().unwrap().len() as u64;
    assert!(objects < 8 * W as u64, "{objects} objects archived");
    // Deleting makes room: removing xattrs lets a symlink in.
    for i in 0..8 {
        fs.removexattr(ino, format!("user.attr{i:06}").as_bytes())
            .unwrap();
    }
    fs.symlink(ROOT_INO, b"after", &[b'b'; 4000], ROOT_OWNER)
        .unwrap();
    let status = fs.volume().status();
    assert!(status.live_bytes <= status.capacity_bytes, "{status:?}");
}
