//! Command-line parsing and the subcommands.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use lsvfs::format::FileKind;
use lsvfs::fs::{Fs, ROOT_OWNER};
use lsvfs::log::catalog::{CATALOG_FILE, Catalog};
use lsvfs::policy::{Policy, parse_size};
use lsvfs::volume::ROOT_INO;
use lsvfs::{Volume, format::VolumeId};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "lsvfs",
    version,
    about = "A self-archiving, log-structured volume"
)]
struct Cli {
    /// More log output (repeat for more); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new volume in VOLUME (a new or empty directory).
    ///
    /// The working set holds the live volume: size it so that W × segment
    /// size is comfortably larger than the live data (twice is a good start).
    ///
    /// Example: lsvfs create /var/lib/lsvfs/pg --segment-size 64M --working-set 128
    Create {
        volume: PathBuf,
        /// Where retired segments are stored [default: VOLUME/archive].
        #[arg(long)]
        backing_store: Option<PathBuf>,
        /// Size of a data block: a power of two from 512 to 1M.
        #[arg(long, default_value = "4K")]
        block_size: String,
        /// Size of a segment file: a power of two from 64K to 1G.
        #[arg(long, default_value = "64M")]
        segment_size: String,
        /// Number of segments in the working set (at least 4).
        #[arg(long, default_value_t = lsvfs::policy::DEFAULT_WORKING_SET)]
        working_set: u32,
        /// zstd level used when segments are archived (1 to 22).
        #[arg(long, default_value_t = lsvfs::policy::DEFAULT_COMPRESSION_LEVEL)]
        compression_level: i32,
    },
    /// Exercise the engine on VOLUME without a mount: write files, take sync
    /// points, change and delete, then read the old state back from a view.
    ///
    /// Example: lsvfs demo /tmp/vol
    Demo { volume: PathBuf },
    /// List the sync points of a volume.
    ///
    /// Example: lsvfs sync-points /var/lib/lsvfs/pg
    SyncPoints { volume: PathBuf },
}

/// Runs the command line; returns the process exit code.
pub fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp(None)
        .init();
    match dispatch(cli.command) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("lsvfs: {e:#}");
            1
        }
    }
}

fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Create {
            volume,
            backing_store,
            block_size,
            segment_size,
            working_set,
            compression_level,
        } => {
            let mut policy = Policy::new(VolumeId::generate().context("cannot make a volume id")?);
            policy.block_size = size_arg("--block-size", &block_size)?;
            policy.segment_size = size_arg("--segment-size", &segment_size)?;
            policy.working_set = working_set;
            policy.compression_level = compression_level;
            if let Some(store) = backing_store {
                policy.backing_store = absolute(&store)?;
            }
            Volume::create(&volume, &policy)
                .with_context(|| format!("cannot create volume {}", volume.display()))?;
            println!(
                "created volume {} (id {}, working set {} × {} segments, store {})",
                volume.display(),
                policy.volume_id,
                policy.working_set,
                lsvfs::policy::format_size(policy.segment_size),
                policy.backing_store_path(&volume).display()
            );
            Ok(())
        }
        Command::Demo { volume } => demo(&volume),
        Command::SyncPoints { volume } => {
            if !volume.join(CATALOG_FILE).exists() {
                bail!("{} is not an lsvfs volume", volume.display());
            }
            let catalog = Catalog::open(&volume, false)?;
            println!(
                "{:>8}  {:<32}  {:<10}  LABEL",
                "ID", "TIME (ns since epoch)", "SEGMENT"
            );
            for p in catalog.entries() {
                println!(
                    "{:>8}  {:<32}  {:<10}  {}",
                    p.info.id, p.info.time_ns, p.lsn.seq, p.info.label
                );
            }
            Ok(())
        }
    }
}

fn size_arg(flag: &str, value: &str) -> Result<u64> {
    parse_size(value).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

fn demo(dir: &Path) -> Result<()> {
    let volume = Volume::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    let fs = Fs::new(volume)?;
    let (docs, _) = fs.mknod(ROOT_INO, b"docs", FileKind::Directory, 0o755, ROOT_OWNER, 0)?;
    let (file, _) = fs.mknod(docs, b"report.txt", FileKind::Regular, 0o644, ROOT_OWNER, 0)?;
    fs.write(file, 0, b"version one\n")?;
    let first = fs.volume().sync_point("demo: version one", "lsvfs demo")?;
    println!("sync point {} taken at {}", first.info.id, first.lsn);
    fs.truncate(file, 0)?;
    fs.write(file, 0, b"version two, longer than the first\n")?;
    fs.rename(docs, b"report.txt", ROOT_INO, b"report-v2.txt")?;
    let second = fs.volume().sync_point("demo: version two", "lsvfs demo")?;
    println!("sync point {} taken at {}", second.info.id, second.lsn);
    let live = fs.read(file, 0, 4096)?;
    print!("live    /report-v2.txt: {}", String::from_utf8_lossy(&live));
    let view = fs.volume().view(first.info.id)?;
    let tree = view.tree();
    let old = tree
        .lookup(docs, b"report.txt")
        .context("the view lost docs/report.txt")?;
    let attrs = tree
        .getattr(old.child)?
        .context("the view lost the inode")?;
    let bytes = tree.read(old.child, 0, 4096, attrs.size)?;
    print!(
        "view {}  /docs/report.txt: {}",
        first.info.id,
        String::from_utf8_lossy(&bytes)
    );
    let stats = fs.volume().index_stats();
    println!(
        "index: {} inodes, {} directory entries, {} blocks in {} runs",
        stats.inodes, stats.dirents, stats.blocks, stats.runs
    );
    fs.into_volume().close()?;
    Ok(())
}
