//! The command line: clap definitions and the subcommands. The binary only
//! calls [`run`]; man pages are generated from [`command`].

use crate::format::FileKind;
use crate::fs::{Fs, FsError, ROOT_OWNER};
use crate::policy::{Policy, parse_size};
use crate::volume::ROOT_INO;
use crate::{Volume, format::VolumeId};
use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
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
        #[arg(long, default_value = "4K", value_parser = parse_size)]
        block_size: u64,
        /// Size of a segment file: a power of two from 64K to 1G.
        #[arg(long, default_value = "64M", value_parser = parse_size)]
        segment_size: u64,
        /// Number of segments in the working set (at least 4).
        #[arg(long, default_value_t = crate::policy::DEFAULT_WORKING_SET)]
        working_set: u32,
        /// zstd level used when segments are archived (1 to 22).
        #[arg(long, default_value_t = crate::policy::DEFAULT_COMPRESSION_LEVEL)]
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

/// The clap definition of the whole command line.
pub fn command() -> clap::Command {
    Cli::command()
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
            eprintln!("lsvfs: {}", one_line(&e));
            if e.is::<Usage>() { 2 } else { 1 }
        }
    }
}

/// The error and its causes on one line, leaving out a cause that the
/// message before it already ends with.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !line.ends_with(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

/// A mistake in the command line found after parsing (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Usage(String);

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
            policy.block_size = block_size;
            policy.segment_size = segment_size;
            policy.working_set = working_set;
            policy.compression_level = compression_level;
            if let Some(store) = backing_store {
                policy.backing_store = absolute(&store)?;
            }
            if let Err(e) = policy.validate() {
                let flag = e
                    .to_string()
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .replace('_', "-");
                return Err(Usage(format!("--{flag}{}", &e.to_string()[flag.len()..])).into());
            }
            Volume::create(&volume, &policy)
                .with_context(|| format!("cannot create volume {}", volume.display()))?;
            println!(
                "created volume {} (id {}, working set {} × {} segments, store {})",
                volume.display(),
                policy.volume_id,
                policy.working_set,
                crate::policy::format_size(policy.segment_size),
                policy.backing_store_path(&volume).display()
            );
            Ok(())
        }
        Command::Demo { volume } => demo(&volume),
        Command::SyncPoints { volume } => {
            let catalog = Volume::sync_points_of(&volume)?;
            println!("{:>8}  {:<24}  {:>8}  LABEL", "ID", "TIME (UTC)", "SEGMENT");
            for p in catalog {
                println!(
                    "{:>8}  {:<24}  {:>8}  {}",
                    p.info.id,
                    crate::time::rfc3339(p.info.time_ns),
                    p.lsn.seq,
                    p.info.label
                );
            }
            Ok(())
        }
    }
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
    // Each run works in its own directory so that the demo can be repeated.
    let name = (1..)
        .map(|n| format!("demo-{n}"))
        .find(|n| matches!(fs.lookup(ROOT_INO, n.as_bytes()), Err(FsError::NotFound)))
        .expect("an unused name");
    let (docs, _) = fs.mknod(
        ROOT_INO,
        name.as_bytes(),
        FileKind::Directory,
        0o755,
        ROOT_OWNER,
        0,
    )?;
    println!("working in /{name}");
    let (file, _) = fs.mknod(docs, b"report.txt", FileKind::Regular, 0o644, ROOT_OWNER, 0)?;
    fs.write(file, 0, b"version one\n")?;
    let first = fs.volume().sync_point("demo: version one", "lsvfs demo")?;
    println!("sync point {} taken at {}", first.info.id, first.lsn);
    fs.truncate(file, 0)?;
    fs.write(file, 0, b"version two, longer than the first\n")?;
    fs.rename(docs, b"report.txt", docs, b"report-v2.txt")?;
    let second = fs.volume().sync_point("demo: version two", "lsvfs demo")?;
    println!("sync point {} taken at {}", second.info.id, second.lsn);
    let live = fs.read(file, 0, 4096)?;
    print!(
        "live    /{name}/report-v2.txt: {}",
        String::from_utf8_lossy(&live)
    );
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
        "view {}  /{name}/report.txt: {}",
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
