//! Torn and corrupt tails: the last segment is cut at every record boundary
//! and inside records, or has a byte flipped; recovery must keep exactly the
//! complete groups before the damage, keep every acknowledged sync point, and
//! refuse (changing nothing) when the damage lies before durable data.

mod common;

use lsvfs::format::{FileKind, InodeAttrs, Lsn, Record};
use lsvfs::log::recovery::segment_records;
use lsvfs::{Error, Volume};
use std::collections::BTreeSet;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A group of records: one inode, optionally with a data block and an xattr.
fn group(ino: u64, big: bool) -> Vec<Record> {
    let mut g = vec![Record::Inode {
        ino,
        attrs: InodeAttrs::new(FileKind::Regular, 0o600, 0, 0),
    }];
    if big {
        g.push(Record::Data {
            ino,
            block: 0,
            bytes: vec![ino as u8; 300],
        });
        g.push(Record::Xattr {
            ino,
            name: b"user.n".to_vec(),
            value: ino.to_le_bytes().to_vec(),
        });
    }
    g
}

struct Built {
    _dir: tempfile::TempDir,
    vol: PathBuf,
    /// (ino, position just past its group), in log order.
    groups: Vec<(u64, u32)>,
    sync: Lsn,
    seq: u64,
    /// Start of every record in the segment.
    records: Vec<u32>,
}

/// 10 groups, a sync point, 20 more groups; then a crash (no clean close).
fn build() -> Built {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("v");
    let mut policy = common::small_policy();
    policy.segment_size = 1 << 20;
    let v = common::create(&vol, &policy);
    let mut groups = Vec::new();
    let mut sync = None;
    for ino in 2..32u64 {
        let lsns = v.commit(group(ino, ino % 2 == 0)).unwrap();
        groups.push((ino, lsns[0]));
        if ino == 11 {
            sync = Some(v.sync_point("ten", "test").unwrap().lsn);
        }
    }
    let seq = v.durable().seq;
    v.crash();
    // Turn group start positions into group end positions.
    let entries = segment_records(
        &lsvfs::disk::Real,
        &vol.join("segments"),
        seq,
        policy.volume_id().unwrap(),
    )
    .unwrap()
    .1
    .entries;
    let ends: Vec<(u64, u32)> = groups
        .iter()
        .map(|&(ino, start)| {
            let mut end = start.offset;
            for e in entries.iter().filter(|e| e.offset >= start.offset) {
                end = e.offset + e.len;
                if e.flags & 1 != 0 {
                    break;
                }
            }
            (ino, end)
        })
        .collect();
    Built {
        _dir: dir,
        vol,
        records: entries.iter().map(|e| e.offset).collect(),
        groups: ends,
        sync: sync.unwrap(),
        seq,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else if e.file_name() == "lock" {
            // Without the home line, the copy is a fixture to damage, not a
            // copy of a volume that the open should refuse.
            let text = std::fs::read_to_string(e.path()).unwrap();
            let kept: String = text
                .lines()
                .filter(|l| !l.starts_with("home "))
                .map(|l| format!("{l}\n"))
                .collect();
            std::fs::write(dest, kept).unwrap();
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn all_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(all_bytes(&e.path()));
        } else {
            out.push((e.path(), std::fs::read(e.path()).unwrap()));
        }
    }
    out.sort();
    out
}

/// Which groups survive in a reopened volume; checks each is whole.
fn surviving(v: &Volume) -> BTreeSet<u64> {
    let tree = v.tree();
    let mut out = BTreeSet::new();
    for ino in 2..32u64 {
        let Some(attrs) = tree.getattr(ino).unwrap() else {
            continue;
        };
        assert_eq!(attrs.mode, 0o600);
        if ino % 2 == 0 {
            assert_eq!(tree.read_block(ino, 0).unwrap(), Some(vec![ino as u8; 300]));
            assert_eq!(
                tree.getxattr(ino, b"user.n").unwrap(),
                Some(ino.to_le_bytes().to_vec())
            );
        }
        out.insert(ino);
    }
    out
}

/// Damages a copy of the volume, reopens it and returns what survived, with
/// the groups that lie wholly before the first byte the damage changed.
fn damage_and_open(
    b: &Built,
    damage: impl FnOnce(&std::fs::File),
) -> Result<(BTreeSet<u64>, BTreeSet<u64>), Error> {
    let work = tempfile::tempdir().unwrap();
    let vol = work.path().join("v");
    copy_dir(&b.vol, &vol);
    let seg = vol.join("segments").join(format!("{:016}.seg", b.seq));
    let before = std::fs::read(&seg).unwrap();
    damage(
        &std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&seg)
            .unwrap(),
    );
    let after = std::fs::read(&seg).unwrap();
    let changed = before
        .iter()
        .zip(&after)
        .position(|(x, y)| x != y)
        .unwrap_or(before.len());
    let intact = b
        .groups
        .iter()
        .filter(|(_, end)| *end as usize <= changed)
        .map(|(i, _)| *i)
        .collect();
    let v = Volume::open(&vol)?;
    let got = surviving(&v);
    assert_eq!(
        v.sync_points().unwrap().len(),
        1,
        "the acknowledged sync point is listed"
    );
    let view = v.view(1).unwrap();
    assert!(view.tree().getattr(11).unwrap().is_some());
    assert!(view.tree().getattr(12).unwrap().is_none());
    // The volume is writable again right after the cut.
    v.commit(group(99, true)).unwrap();
    v.close().unwrap();
    let v = Volume::open(&vol).unwrap();
    assert!(v.tree().getattr(99).unwrap().is_some());
    assert_eq!(surviving(&v), got, "a second open agrees with the first");
    v.close().unwrap();
    Ok((got, intact))
}

/// Positions to cut at: every record start, and points inside records.
fn cut_points(b: &Built) -> Vec<u32> {
    let mut points = BTreeSet::new();
    let sync_end = b.groups.iter().find(|(i, _)| *i == 12).unwrap().1 - 1;
    let sync_end = sync_end.max(b.sync.offset + 1);
    let mut prev = sync_end;
    for &(_, end) in &b.groups {
        if end <= sync_end {
            continue;
        }
        for p in [
            prev,
            prev + 1,
            prev + 15,
            prev + 16,
            (prev + end) / 2,
            end - 1,
            end,
        ] {
            if p > b.sync.offset && p <= end {
                points.insert(p);
            }
        }
        prev = end;
    }
    points.extend(b.records.iter().filter(|&&r| r > b.sync.offset));
    points.into_iter().collect()
}

#[test]
fn cut_anywhere_past_the_sync_point_keeps_the_complete_groups_before_it() {
    let b = build();
    let points = cut_points(&b);
    assert!(points.len() > 60, "{} cut points", points.len());
    let seg_size = 1u64 << 20;
    for cut in points {
        let (got, intact) = damage_and_open(&b, |f| {
            let zeros = vec![0u8; (seg_size - 64 - cut as u64) as usize];
            f.write_all_at(&zeros, cut as u64).unwrap();
        })
        .unwrap();
        assert_eq!(got, intact, "cut at {cut}");
    }
}

#[test]
fn a_flipped_byte_past_the_sync_point_ends_the_log_before_its_group() {
    let b = build();
    for cut in cut_points(&b) {
        let (got, intact) = damage_and_open(&b, |f| {
            let mut byte = [0u8];
            f.read_exact_at(&mut byte, cut as u64).unwrap();
            f.write_all_at(&[byte[0] ^ 0x20], cut as u64).unwrap();
        })
        .unwrap();
        // The group holding the byte, and everything after, is gone.
        assert_eq!(got, intact, "flip at {cut}");
        let last = b.groups.last().unwrap().1;
        if cut < last {
            assert!(
                intact.len() < b.groups.len(),
                "flip at {cut} damaged nothing"
            );
        }
    }
}

#[test]
fn damage_before_the_sync_point_is_refused_and_changes_nothing() {
    let b = build();
    for offset in [4096u64, 5000, b.sync.offset as u64 - 3] {
        let work = tempfile::tempdir().unwrap();
        let vol = work.path().join("v");
        copy_dir(&b.vol, &vol);
        let seg = vol.join("segments").join(format!("{:016}.seg", b.seq));
        let f = std::fs::OpenOptions::new().write(true).open(seg).unwrap();
        f.write_all_at(&[0xFF, 0x00, 0xFF], offset).unwrap();
        let before = all_bytes(&vol);
        let err = Volume::open(&vol).err().expect("open must fail");
        let msg = err.to_string();
        assert!(matches!(err, Error::DurableDamaged { .. }), "{msg}");
        assert!(
            msg.contains(&format!("segment {}", b.seq)) && msg.contains("sync point 1"),
            "{msg}"
        );
        assert_eq!(
            all_bytes(&vol),
            before,
            "a refused open wrote to the volume"
        );
    }
}

/// A record damaged inside a sealed segment (not the tail): the volume
/// opens (the summary is intact), and reading that file fails with EIO and
/// a message naming the segment and offset; other files read fine.
#[test]
fn a_damaged_record_in_a_sealed_segment_reads_as_eio() {
    use lsvfs::fs::{Fs, ROOT_OWNER};
    use lsvfs::volume::ROOT_INO;
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("v");
    let mut policy = common::small_policy();
    policy.working_set = 64;
    let fs = Fs::new(common::create(&vol, &policy)).unwrap();
    let mut inos = Vec::new();
    for i in 0..40u8 {
        let name = format!("f{i}");
        let (ino, _) = fs
            .create_file(ROOT_INO, name.as_bytes(), 0o644, ROOT_OWNER)
            .unwrap();
        fs.write(ino, 0, &vec![i; 4000]).unwrap();
        inos.push(ino);
    }
    fs.into_volume().close().unwrap();
    // The first file's first block, found in segment 1's summary.
    let key = [inos[0].to_le_bytes(), 0u64.to_le_bytes()].concat();
    let (_, first) = segment_records(
        &lsvfs::disk::Real,
        &vol.join("segments"),
        1,
        policy.volume_id().unwrap(),
    )
    .unwrap();
    let entry = first
        .entries
        .iter()
        .find(|e| e.kind == lsvfs::format::Kind::Data && e.key == key)
        .unwrap();
    let victim = Lsn {
        seq: 1,
        offset: entry.offset,
    };
    assert!(
        Path::new(&vol.join(format!("segments/{:016}.seg", victim.seq + 1))).exists(),
        "the victim's segment must be sealed"
    );
    let path = vol.join(format!("segments/{:016}.seg", victim.seq));
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0xee], victim.offset as u64 + 40)
        .unwrap();
    drop(file);

    let fs = Fs::new(Volume::open(&vol).unwrap()).unwrap();
    let err = fs.read(inos[0], 0, 4000).unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    let msg = format!("{err:?}");
    assert!(
        msg.contains("Corrupt") && msg.contains(&format!("seq: {}", victim.seq)),
        "{msg}"
    );
    assert_eq!(fs.read(inos[39], 0, 4000).unwrap(), vec![39; 4000]);
}

/// Issue 12.7: after a crash cut the log at a torn record, appending must
/// not resume in place. Here the first record written after recovery is
/// byte for byte the torn one (same key, bytes, flags and chain), so if it
/// were written at the cut, the stale records behind it would chain again
/// and a later recovery would bring back writes the first recovery had cut.
#[test]
fn records_cut_at_recovery_never_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("v");
    let mut policy = common::small_policy();
    policy.segment_size = 1 << 20;
    let v = common::create(&vol, &policy);
    v.commit(group(2, false)).unwrap();
    v.fsync().unwrap();
    let block = |b: u64| Record::Data {
        ino: 2,
        block: b,
        bytes: vec![b as u8 + 1; 100],
    };
    let first = v.commit(vec![block(0)]).unwrap()[0];
    v.commit(vec![block(1)]).unwrap();
    v.commit(vec![block(2)]).unwrap();
    v.crash();
    // Tear the first unsynced record: one byte of its data.
    let seg = vol.join("segments").join(format!("{:016}.seg", first.seq));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .unwrap();
    let mut byte = [0u8; 1];
    f.read_exact_at(&mut byte, first.offset as u64 + 40)
        .unwrap();
    f.write_all_at(&[byte[0] ^ 0xff], first.offset as u64 + 40)
        .unwrap();
    drop(f);
    let v = Volume::open(&vol).unwrap();
    let tree = v.tree();
    assert_eq!(tree.read_block(2, 0).unwrap(), None, "the torn record");
    assert_eq!(tree.read_block(2, 1).unwrap(), None, "cut with the tail");
    // The same record again, as copy-forward would write it.
    v.commit(vec![block(0)]).unwrap();
    v.fsync().unwrap();
    v.crash();
    let v = Volume::open(&vol).unwrap();
    let tree = v.tree();
    assert_eq!(tree.read_block(2, 0).unwrap(), Some(vec![1; 100]));
    assert_eq!(
        tree.read_block(2, 1).unwrap(),
        None,
        "a record cut by the first recovery came back"
    );
    assert_eq!(tree.read_block(2, 2).unwrap(), None);
}

/// Recovery is a value computed with no thread started and nothing
/// written: for a tail cut inside a group it says where the valid log
/// ends, holds exactly the groups before the cut, and hands out the ids
/// that follow them.
#[test]
fn recovery_of_a_cut_tail_is_a_value_that_changes_nothing() {
    use lsvfs::log::catalog::Catalog;
    use lsvfs::log::recovery::{Known, recover};
    let b = build();
    let work = tempfile::tempdir().unwrap();
    let vol = work.path().join("v");
    copy_dir(&b.vol, &vol);
    let (last_ino, cut) = b.groups[b.groups.len() - 2];
    let seg = vol.join("segments").join(format!("{:016}.seg", b.seq));
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(&[0u8; 64], cut as u64 + 8).unwrap();
    let before = all_bytes(&vol);

    let disk = lsvfs::disk::real();
    let policy = lsvfs::policy::Policy::load(&*disk, &vol).unwrap();
    let archive = lsvfs::layout::open_archive(&disk, &vol, &policy, None).unwrap();
    archive.relist().unwrap();
    let config = lsvfs::layout::log_config(disk.clone(), &vol, &policy, None).unwrap();
    let catalog = Catalog::open(&*disk, &vol, false).unwrap();
    let known = Known {
        retired: &*archive,
        catalog: &catalog,
        clean: None,
    };
    let r = recover(&config, &known, &|_, _| {}).unwrap();

    assert!(r.cut, "a torn tail is reported as cut");
    let tail = r.tail.as_ref().expect("the unsealed tail is handed on");
    assert_eq!((tail.header.seq, tail.pos), (b.seq, cut));
    for (ino, end) in &b.groups {
        let kept = r.index.inode(*ino).is_some();
        assert_eq!(kept, *end <= cut, "inode {ino} (group ends at {end})");
    }
    assert_eq!(
        r.next_ino,
        last_ino + 1,
        "the torn group's inode is free again"
    );
    assert_eq!(r.next_sync_id, 2);
    assert!(r.missing.is_empty(), "the catalog lists the sync point");
    assert_eq!(r.next_seq, b.seq + 1);
    assert_eq!(all_bytes(&vol), before, "recovery wrote nothing");
}
