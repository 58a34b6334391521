//! Rollback, diff and restore in-process, on volumes with history that the
//! archiver has retired: rollback writes only what changed and restores
//! the sync point exactly, also after prune deleted the log in between
//! (then by content); diff names exactly the files whose contents differ
//! between any two sync points; restore brings back a tree with hard
//! links and xattrs, and a file whose blocks are only in the store.

use super::common::{Content, Node, dump};
use super::workload::{Work, drained, tiny_policy, written};
use lsvfs::changes::{Compare, Touched};
use lsvfs::diff::{Change, diff};
use lsvfs::fs::{Fs, ROOT_OWNER, XattrMode};
use lsvfs::prune::{Options as PruneOptions, prune};
use lsvfs::restore::{Options as RestoreOptions, restore};
use lsvfs::retention::{self, Keep};
use lsvfs::rollback::{Options, rollback};
use lsvfs::view::Selector;
use lsvfs::volume::{ROOT_INO, Volume};
use std::collections::BTreeSet;
use std::path::Path;

#[test]
fn rollback_writes_what_changed_and_can_be_undone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    let (fs, mut work) = written(&dir, &tiny_policy(), 11, 3000);
    let target = *work.points.keys().last().unwrap();
    let at_target = work.files.clone();
    // A few changes: each writes at most 4 KiB (or truncates or unlinks).
    for _ in 0..12 {
        work.step(&fs).unwrap();
    }
    let changed = work.expected();
    let vol = fs.into_volume();
    let live_bytes = vol.status().live_bytes;
    let report = rollback(&vol, &Selector::Id(target), &Options::default()).unwrap();
    assert!(report.exact, "{report:?}");
    assert!(
        report.written_bytes < 12 * 13 * 1024 && report.written_bytes < live_bytes,
        "a rollback of 12 small changes wrote {} bytes (live data {live_bytes})",
        report.written_bytes
    );
    work.files = at_target;
    assert_eq!(dump(&vol.tree()), work.expected(), "live after rollback");
    let before = report.before.unwrap();
    work.points.insert(before, changed.clone());
    work.check_points(&vol);
    // Undo: back to the state before the rollback.
    let undo = rollback(&vol, &Selector::Id(before), &Options::default()).unwrap();
    assert_eq!(
        dump(&vol.tree()),
        changed,
        "live after undoing the rollback"
    );
    assert!(undo.written_bytes < 12 * 13 * 1024, "{undo:?}");
    // Nothing left to do: no new sync point either.
    let again = rollback(&vol, &Selector::Id(before), &Options::default()).unwrap();
    assert!(again.is_empty() && again.before.is_none(), "{again:?}");
    vol.close().unwrap();
}

#[test]
fn rollback_past_pruned_segments_compares_contents() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    let (fs, work) = written(&dir, &tiny_policy(), 29, 3000);
    let ids: Vec<u64> = work.points.keys().copied().collect();
    let first = ids[0];
    fs.into_volume().close().unwrap();
    let disk = lsvfs::disk::real();
    retention::update(&*disk, &dir, |r, _| {
        r.pinned.push(first);
        Ok(())
    })
    .unwrap();
    let keep = Keep {
        last: Some(1),
        ..Keep::default()
    };
    let pruned = prune(
        &disk,
        &dir,
        None,
        &PruneOptions {
            keep,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!pruned.deleted.is_empty(), "prune deleted nothing");
    let vol = Volume::open(&dir).unwrap();
    let report = rollback(&vol, &Selector::Id(first), &Options::default()).unwrap();
    assert!(!report.exact, "the log between was pruned: {report:?}");
    assert_eq!(&dump(&vol.tree()), &work.points[&first]);
    vol.close().unwrap();
}

#[test]
fn diff_names_the_files_whose_contents_differ() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    let (fs, work) = written(&dir, &tiny_policy(), 5, 2500);
    let vol = fs.into_volume();
    let ids: Vec<u64> = work.points.keys().copied().collect();
    assert!(ids.len() >= 8, "{ids:?}");
    let pairs = ids.len() * 3;
    for i in 0..pairs {
        let a = ids[(i * 7) % ids.len()];
        let b = ids[(i * 5 + 3) % ids.len()];
        let (va, vb) = (vol.view(a).unwrap(), vol.view(b).unwrap());
        let (lo, hi) = (
            va.point.lsn.min(vb.point.lsn),
            va.point.lsn.max(vb.point.lsn),
        );
        let touched = Touched::between(va.segments(), lo, hi).unwrap();
        let cmp = Compare {
            old: va.tree(),
            new: vb.tree(),
            touched: &touched,
        };
        let entries = diff(&cmp).unwrap();
        let (da, db) = (&work.points[&a], &work.points[&b]);
        let has = |c: Change, p: &str| entries.iter().any(|e| e.change == c && e.path == p);
        let paths: BTreeSet<&String> = da.keys().chain(db.keys()).collect();
        for p in paths {
            let content = |d: &super::common::Dump| match d.get(p) {
                Some(Node::File { content, .. }) => Some(content.clone()),
                _ => None,
            };
            let (ca, cb): (Option<Content>, Option<Content>) = (content(da), content(db));
            let replaced = has(Change::Deleted, p) && has(Change::Created, p);
            match (&ca, &cb) {
                (None, None) => {}
                (Some(_), None) => assert!(has(Change::Deleted, p), "{a}->{b} {p} deleted"),
                (None, Some(_)) => assert!(has(Change::Created, p), "{a}->{b} {p} created"),
                (Some(x), Some(y)) => {
                    let data = entries
                        .iter()
                        .any(|e| e.path == *p && e.change == Change::Modified && e.data);
                    if x != y {
                        assert!(
                            data || replaced,
                            "{a}->{b} {p}: contents differ, not listed"
                        );
                    } else {
                        assert!(!data, "{a}->{b} {p}: same contents listed as data");
                    }
                }
            }
        }
        for e in &entries {
            assert!(
                e.path == "/" || da.contains_key(&e.path) || db.contains_key(&e.path),
                "{a}->{b}: {e:?} names no file of either"
            );
        }
        if a == b {
            assert!(entries.is_empty(), "{a}->{a}: {entries:?}");
        }
    }
    vol.close().unwrap();
}

#[test]
fn restore_brings_back_links_xattrs_holes_and_archived_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    Volume::create(&dir, &tiny_policy()).unwrap();
    let fs = Fs::new(Volume::open(&dir).unwrap()).unwrap();
    let (d, _) = fs
        .mknod(
            ROOT_INO,
            b"d",
            lsvfs::format::FileKind::Directory,
            0o750,
            ROOT_OWNER,
            0,
        )
        .unwrap();
    let (a, _) = fs.create_file(d, b"a", 0o600, ROOT_OWNER).unwrap();
    let body: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs.write(a, 0, &body).unwrap();
    // A hole, then a tail.
    fs.write(a, 100_000, b"tail").unwrap();
    fs.link(a, d, b"a-link").unwrap();
    fs.setxattr(a, b"user.tag", b"kept", XattrMode::Any)
        .unwrap();
    fs.symlink(d, b"s", b"a", ROOT_OWNER).unwrap();
    let point = fs.volume().sync_point("all", "test").unwrap().info.id;
    let want = dump(&fs.volume().view(point).unwrap().tree());
    // Delete it all, and write enough that the sync point's segments are
    // retired to the store and their primary files recycled.
    for name in [&b"a"[..], b"a-link", b"s"] {
        fs.unlink(d, name).unwrap();
    }
    fs.rmdir(ROOT_INO, b"d").unwrap();
    let mut work = Work::new(3);
    for _ in 0..3000 {
        work.step(&fs).unwrap();
    }
    drained(&fs);
    let first_primary = super::workload::primary_seqs(&dir)[0];
    let view = fs.volume().view(point).unwrap();
    assert!(
        view.point.lsn.seq < first_primary,
        "the sync point's segment is still in primary storage"
    );
    let report = restore(&fs, &view, &["d".into()], &RestoreOptions::default()).unwrap();
    assert_eq!((report.files, report.links), (2, 1), "{report:?}");
    let live = dump(&fs.volume().tree());
    for (path, node) in &want {
        assert_eq!(live.get(path), Some(node), "{path}");
    }
    let (a2, attrs) = fs
        .lookup(ROOT_INO, b"d")
        .and_then(|(d, _)| fs.lookup(d, b"a"))
        .unwrap();
    assert_eq!(fs.getxattr(a2, b"user.tag").unwrap(), b"kept");
    assert_eq!((attrs.mode, attrs.size), (0o600, 100_004));
    assert!(
        !fs.volume()
            .tree()
            .has_blocks(a2, 50_000 / 512, 100_000 / 512),
        "hole filled"
    );
    // Again: refused without --overwrite, naming the files; with it, done.
    let err = restore(&fs, &view, &["d".into()], &RestoreOptions::default()).unwrap_err();
    assert!(err.to_string().contains("/d/a, /d/a-link, /d/s"), "{err}");
    let options = RestoreOptions {
        overwrite: true,
        under: Some("/copy".into()),
    };
    restore(&fs, &view, &["d/a".into()], &options).unwrap();
    let (c, _) = fs.lookup(ROOT_INO, b"copy").unwrap();
    let (cd, _) = fs.lookup(c, b"d").unwrap();
    let (ca, _) = fs.lookup(cd, b"a").unwrap();
    assert_eq!(fs.read(ca, 0, 40_000).unwrap(), body);
    drop(view);
    fs.into_volume().close().unwrap();
}

/// The files in the root of `dir` (what `Work` writes), as a dump.
fn files_in(dir: &Path) -> super::common::Dump {
    let mut out = super::common::Dump::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let path = format!("/{}", e.file_name().to_string_lossy());
        let node = Node::File {
            content: Content(std::fs::read(e.path()).unwrap()),
            nlink: 1,
            first_path: path.clone(),
        };
        out.insert(path, node);
    }
    out
}

/// Replays an export into `dir`: removes what its list names, then
/// extracts it with GNU tar.
fn replay(archive: &[u8], dir: &Path) {
    let file = dir.with_extension("tar");
    std::fs::write(&file, archive).unwrap();
    let listed = std::process::Command::new("tar")
        .arg("-xOf")
        .arg(&file)
        .arg(lsvfs::export::DELETED)
        .output()
        .unwrap();
    for path in listed.stdout.split(|&b| b == 0).filter(|p| !p.is_empty()) {
        let p = dir.join(String::from_utf8_lossy(path).as_ref());
        std::fs::remove_file(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
    let out = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&file)
        .arg("--exclude")
        .arg(lsvfs::export::DELETED)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_full_export_and_its_incrementals_replay_to_each_sync_point() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    let (fs, work) = written(&dir, &tiny_policy(), 13, 2000);
    let vol = fs.into_volume();
    let ids: Vec<u64> = work.points.keys().copied().collect();
    let chain: Vec<u64> = ids.iter().copied().step_by(ids.len() / 6 + 1).collect();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let first = vol.view(chain[0]).unwrap();
    let (_, full) = lsvfs::export::export(&first, None, Vec::new()).unwrap();
    replay(&full, &out);
    assert_eq!(
        files_in(&out),
        work.points[&chain[0]],
        "full export of {}",
        chain[0]
    );
    for pair in chain.windows(2) {
        let (old, new) = (vol.view(pair[0]).unwrap(), vol.view(pair[1]).unwrap());
        let (report, inc) = lsvfs::export::export(&new, Some(&old), Vec::new()).unwrap();
        replay(&inc, &out);
        assert_eq!(
            files_in(&out),
            work.points[&pair[1]],
            "{} since {}",
            pair[1],
            pair[0]
        );
        assert_eq!(report.archive_bytes, inc.len() as u64);
    }
    vol.close().unwrap();
}
