//! Archiver measurements without a mount:
//! - archive throughput and compression ratio against the zstd command line
//!   (`zstd -T1 -LEVEL`) on the same segment files;
//! - copy-forward write amplification at 25, 50 and 75 % live data under
//!   uniform random overwrites.
//!
//! ```text
//! cargo run --release --example archive_bench -- [--quick] [--no-amplification] [--json FILE] [DIR]
//! ```
//! `--json FILE` also writes the figures as JSON (what `tools/bench` reads).
//! DIR (default: a new directory under /var/tmp) must have room for about
//! 3 GiB. The segments are filled with the files under /usr/share and
//! /usr/lib (text, binaries, compressed data): a realistic mix.

use lsvfs::archive::Archive;
use lsvfs::disk::{Disk, OpenMode, Real};
use lsvfs::format::archive as object;
use lsvfs::format::{Footer, VolumeId};
use lsvfs::fs::{Fs, ROOT_OWNER};
use lsvfs::log::segment;
use lsvfs::policy::Policy;
use lsvfs::store::{BackingStore, LocalDir, Memory};
use lsvfs::volume::{OpenOptions, ROOT_INO, Volume};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn policy(segment: u64, working_set: u32) -> Policy {
    let mut p = Policy::new(VolumeId::generate().unwrap());
    p.segment_size = segment;
    p.working_set = working_set;
    p
}

/// Regular files under `roots`, in a stable order.
fn corpus(roots: &[&str], limit: u64) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut total = 0;
    let mut stack: Vec<PathBuf> = roots.iter().map(PathBuf::from).collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file()
                && let Ok(m) = e.metadata()
            {
                total += m.len();
                out.push(e.path());
                if total >= limit {
                    return out;
                }
            }
        }
    }
    out
}

/// Fills a volume (archiver off) with real files; returns its sealed
/// segment files.
fn fill(dir: &Path, bytes: u64) -> Vec<(u64, PathBuf)> {
    Volume::create(dir, &policy(64 * MIB, 1024)).unwrap();
    let options = OpenOptions {
        no_archiver: true,
        ..Default::default()
    };
    let fs = Fs::new(Volume::open_with(dir, options).unwrap()).unwrap();
    for (i, path) in corpus(&["/usr/share", "/usr/lib"], bytes)
        .iter()
        .enumerate()
    {
        let Ok(data) = std::fs::read(path) else {
            continue;
        };
        let name = format!("f{i}");
        let (ino, _) = fs
            .create_file(ROOT_INO, name.as_bytes(), 0o644, ROOT_OWNER)
            .unwrap();
        fs.write(ino, 0, &data).unwrap();
    }
    fs.into_volume().close().unwrap();
    let seg_dir = dir.join("segments");
    let listing = segment::list(&Real, &seg_dir).unwrap();
    let last = *listing.segments.last().unwrap();
    listing
        .segments
        .into_iter()
        .filter(|&s| s != last)
        .map(|s| (s, segment::segment_path(&seg_dir, s)))
        .collect()
}

/// A sealed segment as the archiver sees it.
struct Sealed {
    seq: u64,
    raw: Vec<u8>,
    footer: Footer,
    summary: Vec<u8>,
}

fn read_sealed(files: &[(u64, PathBuf)], volume: VolumeId) -> Vec<Sealed> {
    files
        .iter()
        .map(|(seq, path)| {
            let file = Real.open(path, OpenMode::Read).unwrap();
            let dir = path.parent().unwrap();
            let (header, _) = segment::read_header(&*file, *seq, volume, dir).unwrap();
            let (footer, entries) = segment::read_sealed(&*file, &header).unwrap().unwrap();
            let mut raw = vec![0u8; footer.records_end as usize];
            segment::read_exact_at(&*file, *seq, &mut raw, 0).unwrap();
            let mut summary = Vec::new();
            for e in &entries {
                e.encode(&mut summary);
            }
            Sealed {
                seq: *seq,
                raw,
                footer,
                summary,
            }
        })
        .collect()
}

/// Seconds and compressed bytes of `zstd -T1 -LEVEL` over each input.
fn zstd_cli(inputs: &[PathBuf], level: i32, out: &Path) -> (Duration, u64) {
    let start = Instant::now();
    let mut stored = 0;
    let target = out.join("cli.zst");
    for input in inputs {
        let status = Command::new("zstd")
            .args(["-T1", &format!("-{level}"), "-q", "-f", "-o"])
            .arg(&target)
            .arg(input)
            .stdout(Stdio::null())
            .status()
            .expect("zstd is installed (apt-get install zstd)");
        assert!(status.success());
        stored += std::fs::metadata(&target).unwrap().len();
    }
    (start.elapsed(), stored)
}

/// Seconds and stored bytes of archiving each segment into `store`:
/// compress, put (durably), read back and verify, as the archiver does.
fn lsvfs_archive(
    segments: &[Sealed],
    store: Arc<dyn BackingStore>,
    level: i32,
    volume: VolumeId,
) -> (Duration, u64) {
    let archive = Archive::open(store, volume, level, 64 * MIB);
    let (mut took, mut stored) = (Duration::ZERO, 0);
    for s in segments {
        let start = Instant::now();
        let put = archive
            .put_segment(s.seq, &s.raw, &s.footer, &s.summary)
            .unwrap();
        took += start.elapsed();
        stored += put.stored;
    }
    (took, stored)
}

/// Seconds and bytes of compressing alone (no store, no verification).
fn lsvfs_encode(segments: &[Sealed], level: i32, threads: usize) -> (Duration, u64) {
    let start = Instant::now();
    let stored = segments
        .iter()
        .map(|s| {
            let object = object::encode(&s.raw, &s.footer, &s.summary, level, threads);
            object.unwrap().len() as u64
        })
        .sum();
    (start.elapsed(), stored)
}

fn throughput(root: &Path, quick: bool) -> serde_json::Value {
    let dir = root.join("corpus");
    let files = fill(&dir, if quick { 128 } else { 1024 } * MIB);
    let volume = Policy::load(&Real, &dir).unwrap().volume_id().unwrap();
    let segments = read_sealed(&files, volume);
    // The zstd command line gets exactly the bytes lsvfs compresses: each
    // segment's header and records, then its summary.
    let inputs: Vec<PathBuf> = segments
        .iter()
        .map(|s| {
            let path = root.join(format!("{}.in", s.seq));
            std::fs::write(&path, [&s.raw[..], &s.summary[..]].concat()).unwrap();
            path
        })
        .collect();
    let input: u64 = segments
        .iter()
        .map(|s| (s.raw.len() + s.summary.len()) as u64)
        .sum();
    println!(
        "archive: {} sealed 64 MiB segments of files from /usr/share and /usr/lib, {:.1} MiB of records and summaries",
        segments.len(),
        input as f64 / MIB as f64
    );
    println!(
        "(the archive rows compress on {} threads, verify and store)",
        std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
    );
    println!(
        "{:<40} {:>8} {:>11} {:>7}",
        "", "MiB/s", "stored MiB", "ratio"
    );
    let mut levels = serde_json::Map::new();
    let levels_measured: &[i32] = if quick { &[3] } else { &[3, 9] };
    for &level in levels_measured {
        let mut rows = Vec::new();
        // A first run warms the page cache, so that every row reads memory.
        zstd_cli(&inputs, level, root);
        rows.push(("zstd -T1 (command line)", zstd_cli(&inputs, level, root)));
        rows.push((
            "lsvfs: compress only, 1 thread",
            lsvfs_encode(&segments, level, 1),
        ));
        rows.push((
            "lsvfs: compress only, 2 threads",
            lsvfs_encode(&segments, level, 2),
        ));
        rows.push((
            "lsvfs: archive to memory store",
            lsvfs_archive(&segments, Arc::new(Memory::new()), level, volume),
        ));
        let local = root.join(format!("store-{level}"));
        std::fs::create_dir_all(&local).unwrap();
        let store = Arc::new(LocalDir::open(lsvfs::disk::real(), &local).unwrap());
        rows.push((
            "lsvfs: archive to local directory",
            lsvfs_archive(&segments, store, level, volume),
        ));
        std::fs::remove_dir_all(&local).unwrap();
        println!("level {level}:");
        let rate = |t: Duration| input as f64 / MIB as f64 / t.as_secs_f64();
        let (cli_t, cli_stored) = rows[0].1;
        let figures: Vec<_> = rows
            .iter()
            .map(|(what, (t, stored))| {
                serde_json::json!({"what": what, "mib_s": rate(*t), "stored_bytes": stored})
            })
            .collect();
        levels.insert(level.to_string(), figures.into());
        for (what, (t, stored)) in &rows {
            println!(
                "  {what:<38} {:>8.1} {:>11.1} {:>7.3}   vs zstd: speed {:.2}, size {:+.2} %",
                rate(*t),
                *stored as f64 / MIB as f64,
                input as f64 / *stored as f64,
                rate(*t) / rate(cli_t),
                (*stored as f64 / cli_stored as f64 - 1.0) * 100.0
            );
        }
    }
    for path in inputs {
        std::fs::remove_file(path).unwrap();
    }
    serde_json::json!({"segments": segments.len(), "input_bytes": input, "levels": levels})
}

/// Write amplification of the archiver's copies at `fraction` live data:
/// a file of that share of the working set, overwritten at random.
fn amplification(root: &Path, fraction: f64, quick: bool) -> f64 {
    let dir = root.join(format!("wa-{}", (fraction * 100.0) as u32));
    let p = policy(4 * MIB, 32);
    Volume::create(&dir, &p).unwrap();
    let store: Arc<dyn BackingStore> = Arc::new(Memory::new());
    let options = OpenOptions {
        store: Some(store),
        ..Default::default()
    };
    let fs = Fs::new(Volume::open_with(&dir, options).unwrap()).unwrap();
    let (ino, _) = fs
        .create_file(ROOT_INO, b"data", 0o644, ROOT_OWNER)
        .unwrap();
    // The working set's full-block capacity (what the capacity rule's 75 %
    // is a share of).
    let whole = p.capacity_blocks() * 4 / 3;
    // At 75 % the capacity rule is the limit, and the metadata (the root,
    // the file's inode and name) counts against it too: one block less.
    let blocks = ((whole as f64 * fraction) as u64).min(p.capacity_blocks() - 1);
    let block = vec![0x33u8; 4096];
    for b in 0..blocks {
        fs.write(ino, b * 4096, &block).unwrap();
    }
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut overwrite = |n: u64| {
        for _ in 0..n {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            fs.write(ino, (rng % blocks) * 4096, &block).unwrap();
        }
    };
    // Warm up to the steady state, then measure over as much again.
    let rounds = if quick { 2 } else { 4 };
    overwrite(whole * rounds);
    let before = fs.volume().status();
    overwrite(whole * rounds);
    let after = fs.volume().status();
    let user = (after.user_bytes - before.user_bytes) as f64;
    let copied = (after.copied_forward_bytes - before.copied_forward_bytes) as f64;
    fs.into_volume().close().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    (user + copied) / user
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let json = args
        .iter()
        .position(|a| a == "--json")
        .map(|i| PathBuf::from(args.get(i + 1).expect("--json needs a file")));
    let root = match args
        .iter()
        .enumerate()
        .find(|(i, a)| !a.starts_with("--") && (*i == 0 || args[i - 1] != "--json"))
    {
        Some((_, d)) => PathBuf::from(d),
        None => tempfile_dir(),
    };
    std::fs::create_dir_all(&root).unwrap();
    let archive = throughput(&root, quick);
    let mut amplification_rows = Vec::new();
    if !args.iter().any(|a| a == "--no-amplification") {
        println!("copy-forward write amplification, uniform random 4 KiB overwrites:");
        let fractions: &[f64] = if quick {
            &[0.25, 0.75]
        } else {
            &[0.1, 0.25, 0.4, 0.5, 0.6, 0.75]
        };
        for &fraction in fractions {
            let wa = amplification(&root, fraction, quick);
            println!("  {:>3.0} % live: {wa:.2}", fraction * 100.0);
            amplification_rows
                .push(serde_json::json!({"live_fraction": fraction, "write_amplification": wa}));
        }
    }
    std::fs::remove_dir_all(&root).unwrap();
    if let Some(path) = json {
        let out = serde_json::json!({"archive": archive, "amplification": amplification_rows});
        std::fs::write(path, serde_json::to_string_pretty(&out).unwrap()).unwrap();
    }
}

fn tempfile_dir() -> PathBuf {
    let dir = PathBuf::from(format!(
        "/var/tmp/lsvfs-archive-bench-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
