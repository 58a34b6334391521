//! Engine measurements without a mount: index memory per live block,
//! rebuild (recovery) time, and the writer's single-thread append throughput.
//!
//! ```text
//! cargo run --release --example engine_bench -- [--quick] [--json FILE] [DIR]
//! ```
//! `--json FILE` also writes the figures as JSON (what `tools/bench` reads).
//! DIR (default: a new directory under /tmp) must have room for about 7 GiB
//! (1 GiB with --quick). Run as root to measure cold-cache rebuilds (the
//! page cache is dropped through /proc/sys/vm/drop_caches); otherwise they
//! are reported as warm only.

use lsvfs::Volume;
use lsvfs::format::{Record, VolumeId};
use lsvfs::fs::{Fs, ROOT_OWNER};
use lsvfs::policy::Policy;
use lsvfs::volume::ROOT_INO;
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

/// Counts live heap bytes so that the index's footprint can be measured.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const MIB: u64 = 1 << 20;
const BLOCK: u64 = 4096;

fn policy() -> Policy {
    let mut p = Policy::new(VolumeId::generate().unwrap());
    p.block_size = BLOCK;
    p.segment_size = 64 * MIB;
    // 8 GiB: the 4 GiB fill stays within the capacity rule (75 %) and in
    // primary storage, so the rebuild reads what it measures.
    p.working_set = 128;
    p
}

fn fresh(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    Volume::create(&dir, &policy()).unwrap();
    dir
}

/// Pseudo-random bytes (xorshift) so that nothing is trivially compressible.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}

/// Fills a volume with `total` bytes in files of 64 MiB written in 1 MiB
/// sequential writes; with `shuffled`, blocks are written in a scattered
/// order instead (the worst case for the block map).
fn fill(dir: &Path, total: u64, shuffled: bool) {
    let fs = Fs::new(Volume::open(dir).unwrap()).unwrap();
    let chunk = noise(MIB as usize, 7);
    let file_size = 64 * MIB;
    for f in 0..total / file_size {
        let name = format!("file-{f}");
        let (ino, _) = fs
            .create_file(ROOT_INO, name.as_bytes(), 0o644, ROOT_OWNER)
            .unwrap();
        if shuffled {
            let blocks = file_size / BLOCK;
            // A stride coprime with the block count visits every block once.
            for i in 0..blocks {
                let b = (i * 7919) % blocks;
                let at = (b * BLOCK) as usize % chunk.len();
                fs.write(ino, b * BLOCK, &chunk[at..at + BLOCK as usize])
                    .unwrap();
            }
        } else {
            for off in (0..file_size).step_by(MIB as usize) {
                fs.write(ino, off, &chunk).unwrap();
            }
        }
    }
    fs.fsync().unwrap();
    fs.into_volume().close().unwrap();
}

fn drop_caches() -> bool {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

/// Opens the volume (recovery) and returns the time, the net heap growth
/// and the number of live blocks.
fn measure_open(dir: &Path, cold: bool) -> (Duration, isize, u64, bool) {
    let cold = cold && drop_caches();
    let before = LIVE.load(Ordering::Relaxed);
    let start = Instant::now();
    let vol = Volume::open(dir).unwrap();
    let took = start.elapsed();
    let heap = LIVE.load(Ordering::Relaxed) - before;
    let blocks = vol.index_stats().blocks;
    vol.close().unwrap();
    (took, heap, blocks, cold)
}

fn rebuild(root: &Path, label: &str, total: u64, shuffled: bool) -> serde_json::Value {
    let dir = fresh(root, label);
    let t = Instant::now();
    fill(&dir, total, shuffled);
    let fill_s = t.elapsed().as_secs_f64();
    let segments = std::fs::read_dir(dir.join("segments")).unwrap().count();
    let (warm, heap, blocks, _) = measure_open(&dir, false);
    let (cold, _, _, was_cold) = measure_open(&dir, true);
    println!(
        "{label:<24} {:>6} MiB {segments:>4} segs  fill {:>6.0} MiB/s  rebuild warm {:>7.1} ms  cold {:>9}  heap {:>9} B  {:>6.2} B/block",
        total / MIB,
        (total / MIB) as f64 / fill_s,
        warm.as_secs_f64() * 1e3,
        if was_cold {
            format!("{:.1} ms", cold.as_secs_f64() * 1e3)
        } else {
            "n/a".to_string()
        },
        heap,
        heap as f64 / blocks as f64,
    );
    std::fs::remove_dir_all(&dir).unwrap();
    serde_json::json!({
        "label": label, "bytes": total, "segments": segments, "live_blocks": blocks,
        "index_heap_bytes": heap, "index_bytes_per_block": heap as f64 / blocks as f64,
        "rebuild_warm_s": warm.as_secs_f64(),
        "rebuild_cold_s": was_cold.then_some(cold.as_secs_f64()),
    })
}

/// Appends `group` bytes per commit for about `secs`, optionally with an
/// fsync after each, and prints the payload throughput.
fn append(root: &Path, group: u64, fsync_each: bool, secs: f64) -> serde_json::Value {
    let label = format!("append-{}k-{}", group / 1024, fsync_each);
    let dir = fresh(root, &label);
    let vol = Volume::open(&dir).unwrap();
    let payload = noise(BLOCK as usize, 11);
    let per_group = (group / BLOCK) as usize;
    let mut block = 0u64;
    let mut bytes = 0u64;
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        let records = (0..per_group)
            .map(|_| {
                block += 1;
                Record::Data {
                    ino: 2,
                    block,
                    bytes: payload.clone(),
                }
            })
            .collect();
        vol.commit(records).unwrap();
        if fsync_each {
            vol.fsync().unwrap();
        }
        bytes += group;
    }
    vol.fsync().unwrap();
    let took = start.elapsed().as_secs_f64();
    println!(
        "append {:>5} KiB records, {:<16} {:>8.1} MiB/s  {:>9.0} commits/s",
        group / 1024,
        if fsync_each { "fsync each" } else { "no fsync" },
        bytes as f64 / MIB as f64 / took,
        (bytes / group) as f64 / took
    );
    vol.close().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    serde_json::json!({
        "record_bytes": group, "fsync_each": fsync_each,
        "mib_s": bytes as f64 / MIB as f64 / took,
    })
}

fn main() {
    let mut quick = false;
    let mut root = None;
    let mut json = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--json" => json = Some(PathBuf::from(args.next().expect("--json needs a file"))),
            _ => root = Some(PathBuf::from(arg)),
        }
    }
    let root = root.unwrap_or_else(|| {
        let p = std::env::temp_dir().join(format!("lsvfs-engine-bench-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        p
    });
    let secs = if quick { 1.0 } else { 5.0 };
    let appends: Vec<_> = [(BLOCK, false), (BLOCK, true), (MIB, false), (MIB, true)]
        .into_iter()
        .map(|(group, fsync)| append(&root, group, fsync, secs))
        .collect();
    let sizes: &[u64] = if quick { &[512] } else { &[1024, 4096] };
    let mut rebuilds: Vec<_> = sizes
        .iter()
        .map(|&mib| rebuild(&root, &format!("sequential-{mib}M"), mib * MIB, false))
        .collect();
    rebuilds.push(rebuild(&root, "scattered-256M", 256 * MIB, true));
    std::fs::remove_dir_all(&root).ok();
    if let Some(path) = json {
        let out = serde_json::json!({"append": appends, "rebuild": rebuilds});
        std::fs::write(path, serde_json::to_string_pretty(&out).unwrap()).unwrap();
    }
}
