//! Archiver measurements without a mount:
//! - archive throughput and compression ratio against the zstd command line
//!   (`zstd -T1 -LEVEL`) on the same segment files;
//! - copy-forward write amplification at 25, 50 and 75 % live data under
//!   uniform random overwrites.
//!
//! ```text
//! cargo run --release --example archive_bench -- [--quick] [DIR]
//! ```
//! DIR (default: a new directory under /var/tmp) must have room for about
//! 3 GiB. The segments are filled with the files under /usr/share and
//! /usr/lib (text, binaries, compressed data): a realistic mix.

use lsvfs::archive::Archive;
use lsvfs::format::{FileKind, VolumeId};
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
            .mknod(
                ROOT_INO,
                name.as_bytes(),
                FileKind::Regular,
                0o644,
                ROOT_OWNER,
                0,
            )
            .unwrap();
        fs.write(ino, 0, &data).unwrap();
    }
    fs.into_volume().close().unwrap();
    let seg_dir = dir.join("segments");
    let listing = segment::list(&seg_dir).unwrap();
    let last = *listing.segments.last().unwrap();
    listing
        .segments
        .into_iter()
        .filter(|&s| s != last)
        .map(|s| (s, segment::segment_path(&seg_dir, s)))
        .collect()
}

/// Seconds and compressed bytes of `zstd -T1 -LEVEL` over each file.
fn zstd_cli(files: &[(u64, PathBuf)], level: i32, out: &Path) -> (Duration, u64) {
    let start = Instant::now();
    let mut stored = 0;
    for (_, f) in files {
        let target = out.join("cli.zst");
        let status = Command::new("zstd")
            .args(["-T1", &format!("-{level}"), "-q", "-f", "-o"])
            .arg(&target)
            .arg(f)
            .stdout(Stdio::null())
            .status()
            .expect("zstd is installed (apt-get install zstd)");
        assert!(status.success());
        stored += std::fs::metadata(&target).unwrap().len();
    }
    (start.elapsed(), stored)
}

/// Seconds, raw and stored bytes of archiving each segment into `store`:
/// compress, put (durably), read back and verify, as the archiver does.
fn lsvfs_archive(
    files: &[(u64, PathBuf)],
    store: Arc<dyn BackingStore>,
    level: i32,
    volume: VolumeId,
) -> (Duration, u64, u64) {
    let archive = Archive::open(store, volume, level, 64 * MIB);
    let (mut took, mut raw, mut stored) = (Duration::ZERO, 0, 0);
    for (seq, path) in files {
        let file = std::fs::File::open(path).unwrap();
        let dir = path.parent().unwrap();
        let (header, _) = segment::read_header(&file, *seq, volume, dir).unwrap();
        let (footer, entries) = segment::read_sealed(&file, &header).unwrap().unwrap();
        let mut bytes = vec![0u8; footer.records_end as usize];
        segment::read_exact_at(&file, *seq, &mut bytes, 0).unwrap();
        let mut summary = Vec::new();
        for e in &entries {
            e.encode(&mut summary);
        }
        let start = Instant::now();
        let s = archive
            .put_segment(*seq, &bytes, &footer, &summary)
            .unwrap();
        took += start.elapsed();
        raw += s.raw;
        stored += s.stored;
    }
    (took, raw, stored)
}

fn throughput(root: &Path, quick: bool) {
    let dir = root.join("corpus");
    let files = fill(&dir, if quick { 256 } else { 1024 } * MIB);
    let volume = Policy::load(&dir).unwrap().volume_id().unwrap();
    let file_bytes: u64 = files
        .iter()
        .map(|(_, f)| std::fs::metadata(f).unwrap().len())
        .sum();
    println!(
        "archive: {} sealed segments of 64 MiB from /usr/share and /usr/lib",
        files.len()
    );
    println!(
        "{:<34} {:>10} {:>12} {:>8}",
        "", "MiB/s", "stored MiB", "ratio"
    );
    for level in [3, 9] {
        // Warm the page cache so that both read from memory.
        zstd_cli(&files, level, root);
        let (cli_t, cli_stored) = zstd_cli(&files, level, root);
        let cli_rate = file_bytes as f64 / MIB as f64 / cli_t.as_secs_f64();
        let (mem_t, raw, mem_stored) =
            lsvfs_archive(&files, Arc::new(Memory::new()), level, volume);
        let local = root.join(format!("store-{level}"));
        std::fs::create_dir_all(&local).unwrap();
        let store = Arc::new(LocalDir::open(&local).unwrap());
        let (dir_t, _, _) = lsvfs_archive(&files, store, level, volume);
        std::fs::remove_dir_all(&local).unwrap();
        let row = |what: &str, bytes: u64, t: Duration, stored: u64| {
            let rate = bytes as f64 / MIB as f64 / t.as_secs_f64();
            println!(
                "{what:<34} {rate:>10.1} {:>12.1} {:>8.3}",
                stored as f64 / MIB as f64,
                bytes as f64 / stored as f64
            );
            rate
        };
        println!("level {level}:");
        row(
            "  zstd -T1 (whole segment files)",
            file_bytes,
            cli_t,
            cli_stored,
        );
        let mem = row("  lsvfs archive, memory store", raw, mem_t, mem_stored);
        let dir = row("  lsvfs archive, local directory", raw, dir_t, mem_stored);
        println!(
            "  throughput vs zstd: {:.2} (memory store), {:.2} (local directory); stored size vs zstd: {:+.2} %",
            mem / cli_rate,
            dir / cli_rate,
            (mem_stored as f64 / cli_stored as f64 - 1.0) * 100.0
        );
    }
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
        .mknod(ROOT_INO, b"data", FileKind::Regular, 0o644, ROOT_OWNER, 0)
        .unwrap();
    // The working set's full-block capacity (what the capacity rule's 75 %
    // is a share of).
    let whole = p.capacity_blocks() * 4 / 3;
    let blocks = (whole as f64 * fraction) as u64;
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
    let root = match args.iter().find(|a| !a.starts_with("--")) {
        Some(d) => PathBuf::from(d),
        None => tempfile_dir(),
    };
    std::fs::create_dir_all(&root).unwrap();
    throughput(&root, quick);
    println!("copy-forward write amplification, uniform random 4 KiB overwrites:");
    for fraction in [0.25, 0.5, 0.75] {
        let wa = amplification(&root, fraction, quick);
        println!("  {:>3.0} % live: {wa:.2}", fraction * 100.0);
    }
    std::fs::remove_dir_all(&root).unwrap();
}

fn tempfile_dir() -> PathBuf {
    let dir = PathBuf::from(format!(
        "/var/tmp/lsvfs-archive-bench-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
