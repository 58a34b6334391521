//! How segment files sit on the host's filesystem. A new segment is
//! allocated with fallocate, which ext4 and XFS keep as unwritten extents;
//! records must land in blocks already written, or every fdatasync commits
//! an extent conversion to the journal (issue 16). Checked with FIEMAP,
//! where the filesystem of the temporary directory supports it.

use lsvfs::format::{FileKind, InodeAttrs, Record, VolumeId};
use lsvfs::policy::Policy;
use lsvfs::volume::{OpenOptions, Volume};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
const FIEMAP_FLAG_SYNC: u32 = 1;
const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;
const EXTENTS: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Extent {
    logical: u64,
    physical: u64,
    length: u64,
    reserved64: [u64; 2],
    flags: u32,
    reserved: [u32; 3],
}

#[repr(C)]
struct Fiemap {
    start: u64,
    length: u64,
    flags: u32,
    mapped: u32,
    count: u32,
    reserved: u32,
    extents: [Extent; EXTENTS],
}

/// Extents as (offset, length, unwritten).
type Extents = Vec<(u64, u64, bool)>;

/// The extents of `path`, or None when the filesystem does not answer
/// FIEMAP (tmpfs, say).
fn extents(path: &Path) -> Option<Extents> {
    let file = std::fs::File::open(path).unwrap();
    let mut map = Fiemap {
        start: 0,
        length: u64::MAX,
        flags: FIEMAP_FLAG_SYNC,
        mapped: 0,
        count: EXTENTS as u32,
        reserved: 0,
        extents: [Extent::default(); EXTENTS],
    };
    // SAFETY: FS_IOC_FIEMAP reads and fills a struct fiemap followed by
    // room for `count` extents, which `map` is.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP, &mut map) };
    if rc != 0 {
        return None;
    }
    let extents = &map.extents[..map.mapped as usize];
    Some(
        extents
            .iter()
            .map(|e| (e.logical, e.length, e.flags & FIEMAP_EXTENT_UNWRITTEN != 0))
            .collect(),
    )
}

/// The extents of `path` and its size, or None (said on stderr) when the
/// filesystem does not answer FIEMAP.
fn mapped(path: &Path) -> Option<(Extents, u64)> {
    let Some(map) = extents(path) else {
        eprintln!("no FIEMAP for {}; nothing to check", path.display());
        return None;
    };
    Some((map, std::fs::metadata(path).unwrap().len()))
}

/// Whether any byte of [from, to) is in an unwritten extent.
fn unwritten_in(extents: &[(u64, u64, bool)], from: u64, to: u64) -> bool {
    extents
        .iter()
        .any(|&(at, len, unwritten)| unwritten && at < to && at + len > from)
}

fn tail_segment(vol: &Path) -> PathBuf {
    let mut names: Vec<PathBuf> = std::fs::read_dir(vol.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    names.sort();
    names.pop().expect("a segment file")
}

#[test]
fn records_land_in_written_blocks_and_zeros_stay_a_chunk_ahead() {
    let tmp = tempfile::tempdir().unwrap();
    let vol = tmp.path().join("vol");
    // The default shape: 64 MiB segments, 4 KiB blocks.
    Volume::create(&vol, &Policy::new(VolumeId::generate().unwrap())).unwrap();
    let options = OpenOptions {
        no_archiver: true,
        ..Default::default()
    };
    let v = Volume::open_with(&vol, options).unwrap();
    let ino = v.allocate_ino();
    v.commit(vec![
        Record::Inode {
            ino,
            attrs: InodeAttrs::new(FileKind::Regular, 0o600, 0, 0),
        },
        Record::Data {
            ino,
            block: 0,
            bytes: vec![7; 4096],
        },
    ])
    .unwrap();
    v.fsync().unwrap();
    let segment = tail_segment(&vol);
    let Some((map, size)) = mapped(&segment) else {
        return v.close().unwrap();
    };
    let fallocate_leaves_unwritten = unwritten_in(&map, 0, size);
    assert!(
        !unwritten_in(&map, 0, 1 << 20),
        "records and the chunk ahead of them must be in written blocks: {map:?}"
    );
    if fallocate_leaves_unwritten {
        // Zeros go a chunk ahead, not through the whole new segment.
        assert!(unwritten_in(&map, 4 << 20, size), "{map:?}");
    }
    v.close().unwrap();
}

/// A segment that found no recycled file was allocated under the writer's
/// lock; the archiver then makes a spare for the one after it, outside
/// the lock. The spare is allocated and never written, so a segment made
/// from it gets zeros ahead of its records like a new file (not like a
/// recycled one, whose blocks were written before).
#[test]
fn a_segment_made_from_a_spare_gets_zeros_ahead_like_a_new_one() {
    let tmp = tempfile::tempdir().unwrap();
    let vol = tmp.path().join("vol");
    let mut policy = Policy::new(VolumeId::generate().unwrap());
    policy.block_size = 512;
    policy.segment_size = 64 << 10;
    policy.working_set = 8;
    Volume::create(&vol, &policy).unwrap();
    let v = Volume::open(&vol).unwrap();
    let ino = v.allocate_ino();
    let attrs = InodeAttrs::new(FileKind::Regular, 0o600, 0, 0);
    v.commit(vec![Record::Inode { ino, attrs }]).unwrap();
    let segments = vol.join("segments");
    let write_until = |done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut block = 0;
        while !done() {
            assert!(std::time::Instant::now() < deadline, "waited in vain");
            let bytes = vec![block as u8; 512];
            v.commit(vec![Record::Data { ino, block, bytes }]).unwrap();
            v.fsync().unwrap();
            block += 1;
        }
    };
    let spare = || {
        std::fs::read_dir(&segments)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .find(|n| n.starts_with("spare-") && n.ends_with(".seg"))
    };
    write_until(&|| spare().is_some());
    let name = spare().unwrap();
    let seq = &name["spare-".len()..name.len() - ".seg".len()];
    let made = segments.join(format!("{seq}.seg"));
    write_until(&|| made.exists());
    assert!(!segments.join(&name).exists(), "{name} was not used");
    let Some((map, size)) = mapped(&made) else {
        return v.close().unwrap();
    };
    assert!(
        !unwritten_in(&map, 0, size - 4096),
        "a segment from a spare must have zeros written ahead of its records: {map:?}"
    );
    v.close().unwrap();
}
