//! Views on real mounts: during a random workload on the live mount (files
//! written, truncated, renamed, deleted, hard links, symlinks, xattrs,
//! modes), the tree is recorded at each of many sync points; afterwards
//! every view mounted with `--at` matches its record exactly, twice in a
//! row, also after its segments were retired to the backing store and while
//! the live mount is being written; unmounting the live volume leaves a
//! mounted view alone; bad `--at` input is one line and mounts nothing.

mod common;

use common::facts::{Facts, assert_same, manifest, set_xattr};
use common::mount::{Detach, Mounted, SMALL_SEGMENTS, lsvfs, run, view_tree, wait_listed};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Regular files under `root` (relative paths), sorted.
fn files(root: &Path) -> Vec<PathBuf> {
    manifest(root, false)
        .into_iter()
        .filter(|(_, f)| f.kind == libc::S_IFREG)
        .map(|(p, _)| root.join(p))
        .collect()
}

/// One random change to the tree under `root`.
fn change(root: &Path, rng: &mut Rng, step: u64) {
    let dirs = ["", "d0", "d0/e", "d1"];
    let dir = root.join(dirs[rng.below(4) as usize]);
    std::fs::create_dir_all(&dir).unwrap();
    let existing = files(root);
    let pick = |rng: &mut Rng| existing.get(rng.below(existing.len().max(1) as u64) as usize);
    match rng.below(10) {
        0..=3 => {
            let path = dir.join(format!("f{}", rng.below(12)));
            let len = rng.below(40_000) as usize;
            let seed = rng.next();
            let bytes: Vec<u8> = (0..len)
                .map(|i| (seed >> (i % 56)) as u8 ^ i as u8)
                .collect();
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(rng.below(2) == 0)
                .open(&path)
                .unwrap();
            f.write_all(&bytes).unwrap();
        }
        4 => {
            if let Some(p) = pick(rng) {
                let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
                f.set_len(rng.below(20_000)).unwrap();
            }
        }
        5 => {
            if let Some(p) = pick(rng) {
                let _ = std::fs::rename(p, dir.join(format!("r{step}")));
            }
        }
        6 => {
            if let Some(p) = pick(rng) {
                std::fs::remove_file(p).unwrap();
            }
        }
        7 => {
            if let Some(p) = pick(rng) {
                let _ = std::fs::hard_link(p, dir.join(format!("h{step}")));
            }
        }
        8 => {
            let _ =
                std::os::unix::fs::symlink(format!("target-{step}"), dir.join(format!("s{step}")));
        }
        _ => {
            if let Some(p) = pick(rng) {
                set_xattr(p, "user.step", step.to_string().as_bytes());
                let mode = [0o600, 0o644, 0o755, 0o4750][rng.below(4) as usize];
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
            }
        }
    }
}

fn sync_point(m: &Mounted, label: &str) -> u64 {
    let out = run(lsvfs()
        .arg("sync-point")
        .arg(&m.mnt)
        .args(["--label", label]));
    out.trim().parse().unwrap()
}

/// Mounts the view `at` of `m`'s volume, runs `f` on it, unmounts.
fn with_view<T>(m: &Mounted, at: &str, f: impl FnOnce(&Path) -> T) -> T {
    common::mount::with_view(lsvfs, &m.volume, at, f)
}

#[test]
fn every_view_matches_the_tree_at_its_sync_point() {
    let m = Mounted::new(&SMALL_SEGMENTS, "");
    let mut rng = Rng(0x5eed);
    let mut recorded: BTreeMap<u64, BTreeMap<String, Facts>> = BTreeMap::new();
    for step in 0..240 {
        change(&m.mnt, &mut rng, step);
        if step % 12 == 11 {
            let id = sync_point(&m, &format!("step {step}"));
            recorded.insert(id, manifest(&m.mnt, true));
        }
    }
    assert!(recorded.len() >= 20);
    let listed = run(lsvfs().arg("sync-points").arg(&m.volume));
    let line_of = |listed: &str, id: u64| {
        let line = listed
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{id} ")));
        line.unwrap_or_default().to_string()
    };
    // The volume's id, its store and policy, the column heads, one line
    // per sync point.
    assert_eq!(listed.lines().count(), recorded.len() + 3, "{listed}");
    for pass in ["first", "second"] {
        for (id, want) in &recorded {
            let got = with_view(&m, &id.to_string(), |v| manifest(v, true));
            assert_same(&got, want, &format!("{pass} mount of sync point {id}"));
        }
    }
    inside_the_mount(&m, &recorded, "from primary");

    // Retire everything the views need: rewrite a scratch file until the
    // working set has turned over, under a writer that keeps going while
    // the views are mounted.
    let scratch = m.path("scratch");
    for i in 0..12u8 {
        std::fs::write(&scratch, vec![i; 400_000]).unwrap();
    }
    m.wait_archived();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, scratch) = (stop.clone(), scratch.clone());
        std::thread::spawn(move || {
            let mut i = 0u8;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::fs::write(&scratch, vec![i; 300_000]).unwrap();
                i = i.wrapping_add(1);
            }
        })
    };
    let listed = run(lsvfs().arg("sync-points").arg(&m.volume));
    for id in recorded.keys() {
        assert!(line_of(&listed, *id).contains("archive"), "{listed}");
    }
    for (id, want) in &recorded {
        let got = with_view(&m, &id.to_string(), |v| manifest(v, true));
        assert_same(
            &got,
            want,
            &format!("sync point {id} from the archive, under writes"),
        );
    }
    inside_the_mount(&m, &recorded, "from the archive, under writes");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();

    // A mounted view outlives the live mount.
    let (id, want) = recorded.iter().nth(5).unwrap();
    with_view(&m, &format!("step {}", (5 + 1) * 12 - 1), |v| {
        m.unmount();
        assert_same(
            &manifest(v, true),
            want,
            &format!("sync point {id}, live unmounted"),
        );
        m.mount();
    });
}

/// The same views under `.lsvfs/sync-points/` of the live mount, each
/// twice (more views than the mount keeps built, so some are built again),
/// with label symlinks and every change refused.
fn inside_the_mount(m: &Mounted, recorded: &BTreeMap<u64, BTreeMap<String, Facts>>, what: &str) {
    let dir = m.mnt.join(".lsvfs/sync-points");
    for pass in ["first", "second"] {
        for (id, want) in recorded {
            let got = manifest(&dir.join(id.to_string()), true);
            assert_same(
                &got,
                want,
                &format!("{pass} look at .lsvfs/sync-points/{id}, {what}"),
            );
        }
    }
    assert_eq!(
        std::fs::read_link(dir.join("step 11")).unwrap(),
        Path::new("1")
    );
    assert_same(
        &manifest(&dir.join("step 11"), true),
        &recorded[&1],
        "through the label",
    );
    let a_file = manifest(&dir.join("1"), true)
        .into_iter()
        .find(|(_, f)| f.kind == libc::S_IFREG)
        .map(|(p, _)| dir.join("1").join(p))
        .unwrap();
    for err in [
        std::fs::write(&a_file, b"x").unwrap_err(),
        std::fs::remove_file(&a_file).unwrap_err(),
        std::fs::create_dir(dir.join("1/new")).unwrap_err(),
        std::fs::rename(&a_file, dir.join("1/moved")).unwrap_err(),
    ] {
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    }
}

#[test]
fn bad_sync_points_are_one_line_and_mount_nothing() {
    let m = Mounted::new(&[], "");
    std::fs::write(m.path("a"), b"x").unwrap();
    sync_point(&m, "dup");
    sync_point(&m, "dup");
    let target = tempfile::tempdir().unwrap();
    let _detach = Detach(target.path());
    for (at, says) in [
        ("999", "no sync point 999"),
        ("nope", "no sync point labelled \"nope\""),
        ("dup", "several sync points are labelled \"dup\""),
        (
            "2000-01-01T00:00:00Z",
            "at or before 2000-01-01T00:00:00.000Z",
        ),
    ] {
        let out = lsvfs()
            .arg("mount")
            .arg(&m.volume)
            .arg(target.path())
            .args(["--at", at])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{at}: {err}");
        assert_eq!(err.lines().count(), 1, "{at}: {err}");
        assert!(err.contains(says), "{at}: {err}");
        let mounted = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounted.contains(&*target.path().to_string_lossy()),
            "{at} mounted"
        );
    }
    let out = lsvfs()
        .arg("mount")
        .arg(&m.volume)
        .arg(target.path())
        .args(["--at", "1", "-o", "rw"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_view_whose_archived_segment_is_gone_fails_naming_it() {
    let m = Mounted::new(&["--segment-size", "256K", "--working-set", "8"], "");
    std::fs::write(m.path("old"), vec![1u8; 300_000]).unwrap();
    sync_point(&m, "old");
    for i in 0..16u8 {
        std::fs::write(m.path("scratch"), vec![i; 400_000]).unwrap();
    }
    m.wait_archived();
    let archive = m.volume.join("archive");
    let objects: Vec<PathBuf> = std::fs::read_dir(&archive)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "lsa"))
        .collect();
    assert!(!objects.is_empty());
    let first = objects.iter().min().unwrap();
    std::fs::remove_file(first).unwrap();
    let target = tempfile::tempdir().unwrap();
    let _detach = Detach(target.path());
    let out = lsvfs()
        .arg("mount")
        .arg(&m.volume)
        .arg(target.path())
        .args(["--at", "old"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let name = first.file_name().unwrap().to_string_lossy();
    assert!(err.contains(&*name), "the error names {name}: {err}");
    let mounted = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounted.contains(&*target.path().to_string_lossy()));
}

/// History leaves the machine as the log seals: once the segments of the
/// sync points are sealed, the backing store alone lists and serves them.
/// The volume (on another disk than its store) is then deleted whole, and
/// every such sync point mounts from the store directory and matches its
/// record; so does `lsvfs sync-points STORE`; and `lsvfs clone` of the
/// newest makes a writable volume holding its tree.
#[test]
fn sync_points_in_sealed_segments_mount_and_clone_from_the_store_alone() {
    let store_tmp = tempfile::Builder::new()
        .prefix("lsvfs-store")
        .tempdir()
        .unwrap();
    let store = store_tmp.path().join("store");
    let store_arg = store.to_str().unwrap();
    let args = [
        "--segment-size",
        "256K",
        "--working-set",
        "64",
        "--backing-store",
        store_arg,
    ];
    let m = Mounted::new(&args, "");
    let mut rng = Rng(0x0ff5);
    let mut recorded: BTreeMap<u64, BTreeMap<String, Facts>> = BTreeMap::new();
    for step in 0..96 {
        change(&m.mnt, &mut rng, step);
        if step % 12 == 11 {
            let id = sync_point(&m, &format!("step {step}"));
            recorded.insert(id, manifest(&m.mnt, true));
        }
    }
    // Seal the segments holding them; nothing retires (a large working
    // set), so the store has them only because sealed segments ship.
    std::fs::write(m.path("seal"), vec![7u8; 600_000]).unwrap();
    let ids: Vec<u64> = recorded.keys().copied().collect();
    let listed = wait_listed(lsvfs, &store, None, &ids);
    assert!(
        listed.lines().skip(2).all(|l| l.contains("store")),
        "{listed}"
    );
    let first = m.volume.join("segments").join(format!("{:016}.seg", 1));
    assert!(first.exists(), "segment 1 shipped, not retired");

    m.unmount();
    std::fs::remove_dir_all(&m.volume).unwrap();
    for (id, want) in &recorded {
        let got = view_tree(lsvfs, &store, *id);
        assert_same(&got, want, &format!("sync point {id} from the store alone"));
    }

    // A clone of the newest, from the store alone, is a writable volume
    // whose tree is that sync point's.
    let (id, want) = recorded.iter().next_back().unwrap();
    let clone = store_tmp.path().join("clone");
    let out = run(lsvfs()
        .arg("clone")
        .arg(&store)
        .args(["--at", &id.to_string()])
        .arg(&clone));
    assert!(
        out.starts_with(&format!("cloned sync point {id} ")),
        "{out}"
    );
    let mnt = store_tmp.path().join("clone-mnt");
    std::fs::create_dir(&mnt).unwrap();
    run(lsvfs().arg("mount").arg(&clone).arg(&mnt));
    let _guard = Detach(&mnt);
    assert_same(&manifest(&mnt, true), want, "the clone, mounted");
    std::fs::write(mnt.join("new"), b"written after the clone").unwrap();
    run(lsvfs().arg("unmount").arg(&mnt));
    run(lsvfs().arg("mount").arg(&clone).arg(&mnt));
    assert_eq!(
        std::fs::read(mnt.join("new")).unwrap(),
        b"written after the clone"
    );
    run(lsvfs().arg("unmount").arg(&mnt));
}

/// Two volumes storing into one directory: a store-alone listing asks
/// which one (`--volume ID`), each lists and mounts its own sync points,
/// and an id the store does not hold is one line.
#[test]
fn a_store_shared_by_two_volumes_is_read_one_volume_at_a_time() {
    let store_tmp = tempfile::Builder::new()
        .prefix("lsvfs-store")
        .tempdir()
        .unwrap();
    let store = store_tmp.path().join("store");
    let store_arg = store.to_str().unwrap();
    let args = ["--segment-size", "256K", "--backing-store", store_arg];
    let mut volumes = Vec::new();
    for name in ["a", "b"] {
        let m = Mounted::new(&args, "");
        std::fs::write(m.path("name"), name).unwrap();
        let id = sync_point(&m, name);
        std::fs::write(m.path("seal"), vec![1u8; 600_000]).unwrap();
        let policy = std::fs::read_to_string(m.volume.join("lsvfs.toml")).unwrap();
        let volume_id = policy
            .lines()
            .find_map(|l| l.strip_prefix("volume_id = "))
            .unwrap()
            .trim_matches('"')
            .to_string();
        volumes.push((m, volume_id, id, name));
    }
    // Archiving runs in the background: wait until each volume's sync
    // point is in the store before asking about the store as a whole.
    let listings: Vec<String> = volumes
        .iter()
        .map(|(_, volume_id, id, _)| wait_listed(lsvfs, &store, Some(volume_id), &[*id]))
        .collect();
    let out = lsvfs().arg("sync-points").arg(&store).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("several volumes") && err.contains("--volume ID"),
        "{err}"
    );
    for ((_, volume_id, id, name), listed) in volumes.iter().zip(&listings) {
        assert_eq!(listed.lines().count(), 3, "{listed}");
        assert!(
            listed.starts_with(&format!("volume {volume_id}\n")),
            "{listed}"
        );
        assert!(listed.contains(&format!(" {name}")), "{listed}");
        let dir = tempfile::tempdir().unwrap();
        run(lsvfs().arg("mount").arg(&store).arg(dir.path()).args([
            "--at",
            &id.to_string(),
            "--volume",
            volume_id,
        ]));
        let _guard = Detach(dir.path());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("name")).unwrap(),
            *name
        );
        run(lsvfs().arg("unmount").arg(dir.path()));
    }
    let none = "0".repeat(32);
    let out = lsvfs()
        .arg("sync-points")
        .arg(&store)
        .args(["--volume", &none])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("holds no volume {none}")), "{err}");
}
