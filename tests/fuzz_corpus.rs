//! The fuzz targets' inputs as ordinary tests on stable: valid encodings
//! of every decoded format decode, and every input in `fuzz/corpus/NAME/`
//! and `fuzz/artifacts/NAME/` (crashes found once, kept as regressions)
//! runs through its target without a panic. With `LSVFS_WRITE_FUZZ_SEEDS`
//! set, the valid encodings are also written into the corpus as seeds
//! (`tools/fuzz` does that before fuzzing).

use lsvfs::format::{
    FileKind, Footer, InodeAttrs, Lsn, Record, SegmentHeader, SummaryEntry, SyncInfo, VolumeId,
};
use lsvfs::fuzzing::TARGETS;
use lsvfs::log::catalog::{CATALOG_FILE, Catalog, SyncPoint};
use lsvfs::policy::Policy;
use std::path::{Path, PathBuf};

fn records() -> Vec<Record> {
    vec![
        Record::Inode {
            ino: 2,
            attrs: InodeAttrs::new(FileKind::Regular, 0o644, 1000, 1000),
        },
        Record::Data {
            ino: 2,
            block: 7,
            bytes: vec![0xab; 100],
        },
        Record::Dirent {
            parent: 1,
            name: b"name".to_vec(),
            child: 2,
            kind: FileKind::Regular,
        },
        Record::Xattr {
            ino: 2,
            name: b"user.k".to_vec(),
            value: b"v".to_vec(),
        },
        Record::Truncate {
            ino: 2,
            from_block: 3,
        },
        Record::SyncPoint(SyncInfo {
            id: 1,
            time_ns: 5,
            label: "l".into(),
            requester: "r".into(),
        }),
    ]
}

/// Valid inputs for each target.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let mut summary = Vec::new();
    let mut raw = vec![0u8; 4096];
    let header = SegmentHeader {
        volume_id: VolumeId([7; 16]),
        seq: 3,
        segment_size: 64 << 10,
        block_size: 512,
        window_start: 1,
        created_ns: 9,
        next_ino: 3,
        next_sync_id: 2,
    };
    let (bytes, mut prev) = header.encode();
    raw[..bytes.len()].copy_from_slice(&bytes);
    for r in records() {
        let mut buf = Vec::new();
        prev = r.encode(1, prev, &mut buf);
        out.push(("record", buf.clone()));
        let view = lsvfs::format::RecordView::parse(&buf).unwrap();
        SummaryEntry::of(raw.len() as u32, &view).encode(&mut summary);
        raw.extend_from_slice(&buf);
    }
    let footer = Footer {
        seq: 3,
        records_end: raw.len() as u32,
        record_count: records().len() as u32,
        last_crc: prev,
        summary_len: summary.len() as u32,
        summary_crc: crc32c::crc32c(&summary),
    };
    out.push(("segment", header.encode().0));
    out.push(("segment", footer.encode()));
    out.push(("segment", summary.clone()));
    let object = lsvfs::format::archive::encode(&raw, &footer, &summary, 3, 1).unwrap();
    out.push(("archive", object));
    let dir = tempfile::tempdir().unwrap();
    Catalog::create(&lsvfs::disk::Real, dir.path()).unwrap();
    let mut catalog = Catalog::open(&lsvfs::disk::Real, dir.path(), true).unwrap();
    let point = |id| SyncPoint {
        lsn: Lsn {
            seq: 3,
            offset: 4096,
        },
        info: SyncInfo {
            id,
            time_ns: id,
            label: format!("p{id}"),
            requester: "fuzz".into(),
        },
    };
    catalog.append(&[point(1), point(2)]).unwrap();
    out.push((
        "catalog",
        std::fs::read(dir.path().join(CATALOG_FILE)).unwrap(),
    ));
    out.push((
        "policy",
        Policy::new(VolumeId([7; 16])).to_toml().into_bytes(),
    ));
    out
}

fn target(name: &str) -> fn(&[u8]) -> bool {
    TARGETS.iter().find(|(n, _)| *n == name).unwrap().1
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

#[test]
fn valid_encodings_decode_and_damaged_ones_do_not_panic() {
    let write = std::env::var_os("LSVFS_WRITE_FUZZ_SEEDS").is_some();
    for (i, (name, bytes)) in seeds().into_iter().enumerate() {
        assert!(target(name)(&bytes), "seed {i} of {name} did not decode");
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x5a;
            target(name)(&damaged);
            target(name)(&bytes[..at]);
        }
        if write {
            let dir = fuzz_dir().join("corpus").join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("seed-{i}")), &bytes).unwrap();
        }
    }
}

#[test]
fn every_committed_corpus_and_crash_input_runs_without_a_panic() {
    let mut ran = 0;
    for (name, run) in TARGETS {
        for kind in ["corpus", "artifacts"] {
            let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind).join(name)) else {
                continue;
            };
            for e in entries {
                let bytes = std::fs::read(e.unwrap().path()).unwrap();
                run(&bytes);
                ran += 1;
            }
        }
    }
    assert!(ran >= TARGETS.len(), "only {ran} corpus inputs found");
}
