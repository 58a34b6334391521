//! The command line: clap definitions and the subcommands. The binary only
//! calls [`run`]; man pages are generated from [`command`].

use crate::format::FileKind;
use crate::fs::{Fs, FsError, ROOT_OWNER, RenameMode};
use crate::fuse::MountOptions;
use crate::policy::{Policy, parse_seconds, parse_size};
use crate::volume::ROOT_INO;
use crate::{Volume, format::VolumeId};
use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// The options of `lsvfs create`.
#[derive(clap::Args)]
struct CreateArgs {
    volume: PathBuf,
    /// Where retired segments are stored: a directory, or
    /// s3://BUCKET/PREFIX in an S3-compatible store, whose endpoint,
    /// region and credentials come from the environment
    /// (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY; AWS_ALLOW_HTTP=true for an http://
    /// endpoint) and are never written into the volume
    /// [default: VOLUME/archive].
    #[arg(long, value_name = "DIR|URL")]
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
    /// Segments beyond the working set that writes may fill while the
    /// backing store is slow or down, before they wait (at least 2).
    #[arg(long, default_value_t = crate::policy::DEFAULT_RESERVE)]
    reserve: u32,
    /// Memory for reading archived segments (decompressed frames).
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    cache_size: u64,
    /// Most time from a sync point to the moment the backing store alone
    /// can serve it (1s to 1h): a sync point in the segment still being
    /// written ships as part of that segment within it.
    #[arg(long, default_value = "10s", value_parser = parse_seconds)]
    ship_interval: u32,
    /// Which sync points prune keeps (none: keep every sync point).
    #[command(flatten)]
    keep: retention::KeepArgs,
    /// Let the archiver prune by itself, by the --keep rules, after each
    /// segment it stores (needs at least one --keep rule).
    #[arg(long)]
    auto_prune: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new volume in VOLUME (a new or empty directory).
    ///
    /// The working set holds the live volume: live data may fill 75 % of
    /// W × segment size (beyond that writes get ENOSPC); at half full the
    /// archiver copies about a quarter of each retired segment forward.
    ///
    /// Example: lsvfs create /var/lib/lsvfs/pg --segment-size 64M --working-set 128
    Create(CreateArgs),
    /// Make NEW_VOLUME, a new writable volume whose live state is sync
    /// point SYNC of SOURCE (a volume directory, or a backing store
    /// directory alone).
    ///
    /// The view's live records are copied as they are: inode numbers,
    /// owners, modes, times, hard links, xattrs, holes. Time and space grow
    /// with the live data at SYNC, not with the history. The new volume has
    /// its own id and by default its own store (NEW_VOLUME/archive); its
    /// first sync point, labelled after the source, marks it complete. Its
    /// policy is the source volume's (the defaults with the source's block
    /// size when SOURCE is a store).
    ///
    /// Example: lsvfs clone /backup/pg-archive --at 2026-11-23T04:00:00Z /var/lib/lsvfs/pg-restored
    Clone {
        source: PathBuf,
        /// The sync point: its id, its label, or a UTC time.
        #[arg(long, value_name = "SYNC")]
        at: String,
        /// The volume to read, when the backing store holds several (its
        /// id, 32 hex digits, as `lsvfs sync-points` shows them).
        #[arg(long = "volume", value_name = "ID", value_parser = parse_volume_id)]
        volume_id: Option<VolumeId>,
        new_volume: PathBuf,
        /// Where the new volume's segments are stored [default: NEW_VOLUME/archive].
        #[arg(long)]
        backing_store: Option<PathBuf>,
        /// Number of segments in the new volume's working set.
        #[arg(long)]
        working_set: Option<u32>,
    },
    /// Exercise the engine on VOLUME without a mount: write files, take sync
    /// points, change and delete, then read the old state back from a view.
    ///
    /// Example: lsvfs demo /tmp/vol
    Demo { volume: PathBuf },
    /// Mount a volume on MOUNTPOINT.
    ///
    /// Without --foreground, returns once the mount is usable and leaves a
    /// daemon serving it, which logs to VOLUME/daemon.log. Stop it with
    /// `lsvfs unmount`, umount, fusermount3 -u, SIGTERM or SIGINT. As root no
    /// fuse3 package is needed; other users need fusermount3 (apt-get
    /// install fuse3) and user_allow_other in /etc/fuse.conf for allow_other.
    ///
    /// With --at, mounts the view of one sync point instead, read-only; it
    /// can be mounted while the volume itself is mounted and written, and
    /// reads retired segments from the backing store. Restore with cp.
    /// With --at, VOLUME may also be a backing store directory alone (on a
    /// host that lost the volume, or never had it): its daemon then logs
    /// to the temporary directory.
    ///
    /// Example: lsvfs mount /var/lib/lsvfs/pg /srv/pg -o allow_other
    ///
    /// Example: lsvfs mount /var/lib/lsvfs/pg /mnt/before --at "before upgrade"
    ///
    /// Example: lsvfs mount /backup/pg-archive /mnt/before --at 2026-11-23T04:00:00Z
    Mount {
        volume: PathBuf,
        mountpoint: PathBuf,
        /// A sync point: its id, its label, or a UTC time such as
        /// 2026-11-23T04:33:40Z (the latest sync point at or before it).
        #[arg(long, value_name = "SYNC")]
        at: Option<String>,
        /// The volume to read, when the backing store holds several (its
        /// id, 32 hex digits, as `lsvfs sync-points` shows them).
        #[arg(long = "volume", value_name = "ID", value_parser = parse_volume_id)]
        volume_id: Option<VolumeId>,
        /// Serve in this process until unmounted, logging to stderr.
        #[arg(long)]
        foreground: bool,
        /// Comma-separated options: allow_other, default_permissions
        /// (always on), no_writeback_cache (every write reaches lsvfs
        /// before it returns; see docs/SEMANTICS.md), ro, rw.
        #[arg(short = 'o', value_name = "OPTIONS", default_value = "")]
        options: String,
    },
    /// Unmount MOUNTPOINT and wait until its daemon has closed the volume.
    ///
    /// First waits (with a progress bar on a terminal) until the archiver
    /// has retired the segments beyond the working set, unless the backing
    /// store is failing or --lazy is given; they are otherwise archived
    /// after the next mount.
    ///
    /// Example: lsvfs unmount /srv/pg
    Unmount {
        mountpoint: PathBuf,
        /// Detach now even if files are open; the volume closes when the
        /// last one is.
        #[arg(long)]
        lazy: bool,
    },
    /// Take a sync point on a mounted volume and print its id.
    ///
    /// First flushes the mount (syncfs), so that everything written before
    /// the command started is in the sync point, also what applications
    /// had not fsynced yet; if the flush fails, no sync point is taken.
    /// With --no-flush the sync point holds what lsvfs had been handed when
    /// it was asked: crash-consistent, which is what a database that
    /// fsyncs its own writes needs (and faster).
    ///
    /// Example: lsvfs sync-point /srv/pg --label "before upgrade"
    SyncPoint {
        mountpoint: PathBuf,
        /// UTF-8, at most 256 bytes, no control characters.
        #[arg(long, default_value = "")]
        label: String,
        /// Do not flush the mount first (a crash-consistent sync point).
        #[arg(long)]
        no_flush: bool,
        /// Take it inside a freeze of the mount (flushed first; thawed
        /// right after, or at the timeout, e.g. 30s).
        #[arg(long, value_name = "TIMEOUT", num_args = 0..=1, default_missing_value = "30s",
              value_parser = parse_freeze_timeout)]
        freeze: Option<Duration>,
        /// Run CMD (with sh -c) first, to quiesce the application; no sync
        /// point if it fails.
        #[arg(long, value_name = "CMD")]
        exec_before: Option<String>,
        /// Run CMD (with sh -c) last, whatever failed before it.
        #[arg(long, value_name = "CMD")]
        exec_after: Option<String>,
    },
    /// Freeze a mounted volume: hold every change (in-flight ones
    /// complete; reads go on) until `lsvfs thaw`, or the timeout.
    ///
    /// Flushes the mount first, then answers once the volume holds every
    /// change made before and it is durable. Changes (writes, writeback,
    /// metadata) wait, parked without holding a thread; the timeout thaws
    /// by itself so that a lost agent never holds an application for good
    /// (the daemon's log and `lsvfs status` say so). Also through the file
    /// .lsvfs/freeze: write `freeze [SECONDS]` or `thaw`.
    ///
    /// Example: lsvfs freeze /srv/pg --timeout 60s
    Freeze {
        mountpoint: PathBuf,
        /// At most this long (at most 1h).
        #[arg(long, default_value = "30s", value_parser = parse_freeze_timeout)]
        timeout: Duration,
    },
    /// Programs that know an application and take sync points for it:
    /// `lsvfs agent postgres`.
    ///
    /// Example: lsvfs agent postgres /srv/pg --every 5m
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Thaw a frozen mount: the changes held run, in order.
    ///
    /// Example: lsvfs thaw /srv/pg
    Thaw { mountpoint: PathBuf },
    /// Show the working set, the archive and the backing store's health.
    ///
    /// For a mounted volume (given by its directory or mount point) the
    /// daemon's figures are shown; a volume that is not mounted is opened
    /// without its archiver, read and closed. Figures marked "since open"
    /// count from the mount.
    ///
    /// Example: lsvfs status /var/lib/lsvfs/pg --json
    Status {
        volume: PathBuf,
        /// One JSON object: {"segment_size", "working_set", "reserve",
        /// "segments_in_primary", "working_set_fill", "reserve_in_use",
        /// "waiting_for_archive", "waiting_for_ship", "writes_blocked", "live_bytes",
        /// "capacity_bytes", "archived_segments", "archived_bytes",
        /// "session_archived_raw_bytes", "session_archived_stored_bytes",
        /// "session_partial_bytes",
        /// "compression_ratio", "archive_mib_per_s", "user_bytes",
        /// "copied_forward_bytes", "write_amplification", "store": {"location", "ok", "error",
        /// "since"}, "retention": {...}, "freeze" (mounted only): {"frozen",
        /// "thaws_in_s", "parked", "last"}}; ratios are null until there is
        /// something to divide.
        #[arg(long)]
        json: bool,
    },
    /// List the sync points of a volume (given by its directory or by a
    /// mount point), or those a backing store directory serves alone.
    ///
    /// LOCATION says what mounting the sync point's view reads: "primary"
    /// when every segment it needs is still in primary storage, "archive"
    /// when some are only in the backing store, "store" when listed from a
    /// store alone (every segment of its window is stored there).
    ///
    /// Example: lsvfs sync-points /srv/pg --json
    ///
    /// Example: lsvfs sync-points /backup/pg-archive
    SyncPoints {
        volume: PathBuf,
        /// The volume to read, when the backing store holds several (its
        /// id, 32 hex digits, as `lsvfs sync-points` shows them).
        #[arg(long = "volume", value_name = "ID", value_parser = parse_volume_id)]
        volume_id: Option<VolumeId>,
        /// One JSON array: [{"id", "time", "time_ns", "label", "requester",
        /// "segment", "location", "volume"}].
        #[arg(long)]
        json: bool,
    },
    /// Check that the history is readable: every archived object of a
    /// volume (trailer, frame table, summary) and its primary segments
    /// (headers, footers, summaries), or a backing store's objects alone.
    ///
    /// Prints each damaged object or segment with the sync points it
    /// breaks (their window needs it and no intact copy is left; when the
    /// other copy, primary or archived, is intact, they are at risk), then
    /// a summary line. Exit code 1 on any damage. Reads only.
    ///
    /// Example: lsvfs verify /var/lib/lsvfs/pg --read-data
    ///
    /// Example: lsvfs verify s3://backups/lsvfs/pg --volume 0123456789abcdef0123456789abcdef
    Verify {
        #[arg(value_name = "VOLUME|STORE")]
        volume: PathBuf,
        /// The volume to check, when the backing store holds several (its
        /// id, 32 hex digits, as `lsvfs sync-points` shows them).
        #[arg(long = "volume", value_name = "ID", value_parser = parse_volume_id)]
        volume_id: Option<VolumeId>,
        /// Also read every frame of every object and every record in
        /// primary storage, checking each checksum.
        #[arg(long)]
        read_data: bool,
        /// Store again each damaged object whose segment primary storage
        /// still holds intact (a volume directory only, not mounted: the
        /// repair holds the volume's lock). Exit code 0 when nothing
        /// damaged is left.
        #[arg(long)]
        repair: bool,
        /// One JSON object: {"volume", "store", "read_data", "objects",
        /// "segments", "bytes_read", "seconds", "sync_points", "ok",
        /// "damaged": [{"kind", "segment", "name", "location", "error",
        /// "breaks", "at_risk"}], "repaired": [the same]}.
        #[arg(long)]
        json: bool,
    },
    /// Change a volume's retention policy: which sync points prune keeps,
    /// and whether the archiver prunes by itself.
    ///
    /// Each --keep rule given replaces that rule; the others stay (--clear
    /// drops them all first). Works while the volume is mounted: the
    /// archiver reads the policy at each automatic prune.
    ///
    /// Example: lsvfs set /var/lib/lsvfs/pg --keep-last 10 --keep-hourly 24 --keep-daily 7 --auto-prune true
    Set {
        volume: PathBuf,
        #[command(flatten)]
        keep: retention::KeepArgs,
        /// Drop every --keep rule before applying those given.
        #[arg(long)]
        clear: bool,
        /// Prune automatically in the archiver (true) or only with `lsvfs
        /// prune` (false).
        #[arg(long, value_name = "true|false")]
        auto_prune: Option<bool>,
    },
    /// Pin a sync point: prune never forgets it, whatever the policy.
    ///
    /// Example: lsvfs pin /var/lib/lsvfs/pg "before upgrade"
    Pin {
        volume: PathBuf,
        /// The sync point: its id, its label, or a UTC time.
        sync: String,
    },
    /// Unpin a sync point: prune treats it by the policy again.
    ///
    /// Example: lsvfs unpin /var/lib/lsvfs/pg 42
    Unpin {
        volume: PathBuf,
        /// The sync point: its id, its label, or a UTC time.
        sync: String,
    },
    /// Forget the sync points the retention policy does not keep and
    /// delete every archived object that no kept sync point needs.
    ///
    /// A sync point needs the objects of its window (its segment back to
    /// the window start recorded with it), so objects between two kept
    /// windows go too. Pinned sync points and those with an open view
    /// (`lsvfs mount --at`, .lsvfs/sync-points/) stay. The live volume and
    /// its primary storage are not touched; other volumes sharing the
    /// store neither. Runs while the volume is mounted. Crash-safe: the
    /// forgotten sync points are recorded (in the volume and the store)
    /// before any object is deleted, and a prune interrupted is finished by
    /// the next one. --keep rules given here replace the policy's for this
    /// run, rule by rule.
    ///
    /// Example: lsvfs prune /var/lib/lsvfs/pg --dry-run
    ///
    /// Example: lsvfs prune /var/lib/lsvfs/pg --keep-last 10 --keep-daily 7
    Prune {
        volume: PathBuf,
        #[command(flatten)]
        keep: retention::KeepArgs,
        /// Decide and print what would be forgotten and deleted; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// One JSON object: {"volume", "store", "dry_run", "keep",
        /// "seconds", "sync_points": [{"id", "time", "label", "keep",
        /// "reasons", "window", "alone_bytes"}], "forgotten",
        /// "objects_before", "bytes_before", "deleted": [{"name",
        /// "segment", "bytes"}], "bytes_freed"}.
        #[arg(long)]
        json: bool,
    },
    /// Make the live volume equal to sync point SYNC again: contents,
    /// attributes, names, hard links, xattrs; files created since go,
    /// files deleted since come back with their inode numbers.
    ///
    /// Only what differs is written (found from the log, not by comparing
    /// trees), so time and bytes grow with what changed since SYNC. Every
    /// sync point stays, newer ones too; a new one, labelled
    /// before-rollback-to-ID, keeps the state from before, so a rollback
    /// is undone by rolling back to it. Crash-safe: an interrupted rollback
    /// is completed by the next open of the volume. The volume must not
    /// be mounted.
    ///
    /// Example: lsvfs rollback /var/lib/lsvfs/pg --to 2026-11-23T09:00:00Z --dry-run
    Rollback {
        volume: PathBuf,
        /// The sync point: its id, its label, or a UTC time.
        #[arg(long, value_name = "SYNC")]
        to: String,
        /// Print what would change (paths, then counts); change nothing.
        #[arg(long)]
        dry_run: bool,
        /// One JSON object: {"target", "before", "restored", "removed",
        /// "modified", "entries", "blocks", "data_bytes", "written_bytes",
        /// "exact", "dry_run", "seconds"}.
        #[arg(long)]
        json: bool,
    },
    /// Restore files or directory trees from sync point SYNC into the
    /// live volume, in place or under DEST.
    ///
    /// PATHs are relative to the volume's root. Restored files are new
    /// files with the view's contents, owners, modes, times, xattrs and
    /// holes; hard links among them stay links. Existing directories are
    /// merged into; an existing file is replaced only with --overwrite
    /// (without it, nothing changes and every clash is named). The bytes
    /// are copied inside the engine (from primary storage, or from the
    /// backing store through the frame cache), never through the mount: on
    /// a mounted volume its daemon does the restore (asked through
    /// .lsvfs/restore) and drops the names it made from the kernel's cache.
    ///
    /// Example: lsvfs restore /srv/pg --at "before upgrade" pgdata/base/16384/2619 --to /restored
    Restore {
        /// A volume directory, or the mount point of a mounted one.
        volume: PathBuf,
        /// The sync point: its id, its label, or a UTC time.
        #[arg(long, value_name = "SYNC")]
        at: String,
        /// Paths in the volume to restore.
        #[arg(required = true)]
        paths: Vec<String>,
        /// Restore each PATH at DEST/PATH (a path in the volume).
        #[arg(long, value_name = "DEST")]
        to: Option<String>,
        /// Replace files that exist.
        #[arg(long)]
        overwrite: bool,
    },
    /// Write sync point SYNC as a POSIX pax tar archive, in the order of the
    /// volume's file ids (inode numbers).
    ///
    /// SOURCE is a volume, a mount point or a backing store (a directory or
    /// an s3:// URL) alone. Directories, regular files (sparse ones as
    /// sparse members), symlinks, hard links, devices and FIFOs, with
    /// owners, modes, nanosecond times and xattrs; `tar -x --xattrs
    /// --xattrs-include='*' --numeric-owner` restores it. With --since, only
    /// what changed after that older sync point (found from the log, no
    /// unchanged file is read), and a first member, .lsvfs-deleted, listing
    /// the paths to remove (NUL-separated) before extracting it; see
    /// docs/CLI.md for replaying a full export and its incrementals.
    ///
    /// Example: lsvfs export /var/lib/lsvfs/pg --at nightly -o /backup/pg-full.tar
    ///
    /// Example: lsvfs export /var/lib/lsvfs/pg --at 2026-11-24T02:00:00Z --since nightly | zstd -T1 -3 > inc.tar.zst
    Export {
        source: PathBuf,
        /// The sync point: its id, its label, or a UTC time.
        #[arg(long, value_name = "SYNC")]
        at: String,
        /// Only what changed after this older sync point.
        #[arg(long, value_name = "SYNC")]
        since: Option<String>,
        /// The archive file [default: standard output, also with -].
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// The archive format (only tar, POSIX pax).
        #[arg(long, default_value = "tar", value_parser = ["tar"])]
        format: String,
        /// The volume to read, when the backing store holds several (its
        /// id, 32 hex digits, as `lsvfs sync-points` shows them).
        #[arg(long = "volume", value_name = "ID", value_parser = parse_volume_id)]
        volume_id: Option<VolumeId>,
    },
    /// List the paths that differ between sync points A and B of VOLUME
    /// (B: the live volume when not given).
    ///
    /// Lines are `created PATH`, `deleted PATH`, `modified PATH (data,
    /// attributes, xattrs)` and `renamed OLD -> NEW` (a renamed directory
    /// is one line). Computed from the log and the indexes, without
    /// walking the trees or reading unchanged files; works while the volume
    /// is mounted (the live volume as its log holds it: `sync -f` the mount
    /// first to include what the kernel still caches).
    ///
    /// Example: lsvfs diff /var/lib/lsvfs/pg "before upgrade"
    Diff {
        volume: PathBuf,
        /// The older state: a sync point's id, label or UTC time.
        a: String,
        /// The newer state [default: the live volume].
        b: Option<String>,
        /// One JSON array of {"change", "path", "from" (renames), "ino",
        /// "kind", "data", "attributes", "xattrs"}.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Sync points of a PostgreSQL cluster on MOUNTPOINT, labelled with
    /// its WAL position: `postgres lsn 0/3A000060 timeline 1`.
    ///
    /// Each round runs CHECKPOINT (recovery from the view then replays
    /// little WAL), reads pg_current_wal_insert_lsn() and the timeline,
    /// and takes a crash-consistent sync point (no flush). Once, or with
    /// --every until stopped (a failed round is logged and the next one
    /// tries again). See docs/CLI.md for a systemd unit.
    ///
    /// With --verify, each sync point is restore-tested: cloned into a
    /// scratch volume under --verify-dir, mounted, PostgreSQL started on
    /// the copy as the data directory's owner (crash recovery runs),
    /// pg_amcheck run on every database, everything stopped and removed.
    /// The outcome is recorded in the volume and shown by lsvfs
    /// sync-points; a failed test makes a one-shot run exit 1. Needs root
    /// and a cluster wholly inside the mount (no outside pg_wal or
    /// tablespaces).
    ///
    /// Example: lsvfs agent postgres /srv/pg --every 5m --connection "host=/run/postgresql user=postgres"
    Postgres {
        mountpoint: PathBuf,
        /// A libpq connection string, as psql -d takes it.
        #[arg(long, default_value = "dbname=postgres")]
        connection: String,
        /// Run a round at this interval (e.g. 60s, 5m) until stopped.
        #[arg(long, value_name = "DURATION", value_parser = crate::retention::parse_duration)]
        every: Option<u64>,
        /// The psql program to run.
        #[arg(long, default_value = "psql")]
        psql: String,
        /// Restore-test each sync point (clone, start, pg_amcheck).
        #[arg(long)]
        verify: bool,
        /// Where --verify makes its scratch clone [default: the temporary
        /// directory, $TMPDIR or /tmp].
        #[arg(long, value_name = "DIR", requires = "verify")]
        verify_dir: Option<PathBuf>,
        /// The directory of postgres, pg_isready and pg_amcheck for
        /// --verify [default: /usr/lib/postgresql/MAJOR/bin of the
        /// cluster's version if present, else the PATH].
        #[arg(long, value_name = "DIR", requires = "verify")]
        pg_bin: Option<PathBuf>,
    },
}

mod agent;
mod clone;
mod export;
mod flush;
mod helper;
mod history;
mod mount;
mod pg_verify;
mod progress;
mod quiesce;
mod retention;
mod sync_point;
mod verify;

/// The clap definition of the whole command line.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Runs the command line; returns the process exit code.
pub fn run() -> i32 {
    let args: Vec<String> = std::env::args().collect();
    let called = args.first().map(|a| a.rsplit('/').next().unwrap_or(a));
    if let Some(name) = called.filter(|n| helper::NAMES.contains(n)) {
        logging(0, false);
        return exit_code(helper::run(&args[1..]), name);
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    logging(cli.verbose, cli.quiet);
    progress::enable(cli.quiet);
    exit_code(dispatch(cli.command), "lsvfs")
}

/// Log output on stderr: warnings by default, more with -v, errors only
/// with -q; RUST_LOG overrides.
fn logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    // fuser warns that its own unmount failed whenever the mount was
    // already taken away (umount, lsvfs unmount): noise, unless asked for.
    let filter = if verbose >= 2 {
        level.to_string()
    } else {
        format!("{level},fuser=error")
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(filter))
        .format_timestamp(None)
        .init();
}

/// One line on stderr for a failure; 2 for a usage error, 1 otherwise.
fn exit_code(result: Result<()>, name: &str) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{name}: {}", one_line(&e));
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

/// `lsvfs create`: the policy from the options, checked, then the volume.
fn create(args: CreateArgs) -> Result<()> {
    let CreateArgs {
        volume,
        backing_store,
        block_size,
        segment_size,
        working_set,
        compression_level,
        reserve,
        cache_size,
        ship_interval,
        keep,
        auto_prune,
    } = args;
    let mut policy = Policy::new(VolumeId::generate().context("cannot make a volume id")?);
    policy.block_size = block_size;
    policy.segment_size = segment_size;
    policy.working_set = working_set;
    policy.compression_level = compression_level;
    policy.reserve = reserve;
    policy.cache_size = cache_size;
    policy.ship_interval_s = ship_interval;
    policy.retention.keep = keep.keep();
    policy.retention.auto = auto_prune;
    if let Some(store) = backing_store {
        // A URL stays as given, so that validation names it.
        policy.backing_store = match crate::policy::store_url(&store) {
            Some(_) => store,
            None => absolute(&store)?,
        };
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
        policy.store_display(&volume)
    );
    Ok(())
}

/// A volume id as given on the command line.
/// A freeze's timeout: 1 s to an hour.
fn parse_freeze_timeout(s: &str) -> Result<Duration, String> {
    let secs = crate::retention::parse_duration(s)?;
    match (1..=crate::control_files::FREEZE_MAX_S).contains(&secs) {
        true => Ok(Duration::from_secs(secs)),
        false => Err(format!("{s:?}: a freeze lasts 1s to 1h")),
    }
}

fn parse_volume_id(s: &str) -> Result<VolumeId, String> {
    VolumeId::from_hex(s).ok_or_else(|| format!("{s:?} is not a volume id (32 hex digits)"))
}

fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Create(args) => create(args),
        Command::Clone {
            source,
            at,
            volume_id,
            new_volume,
            backing_store,
            working_set,
        } => {
            let new = clone::New {
                dir: &new_volume,
                backing_store,
                working_set,
            };
            clone::run(&source, volume_id, &at, new)
        }
        Command::Demo { volume } => demo(&volume),
        Command::Mount {
            volume,
            mountpoint,
            at,
            volume_id,
            foreground,
            options,
        } => {
            let opts = MountOptions::parse(&options).map_err(Usage)?;
            if at.is_some() && options.split(',').any(|o| o.trim() == "rw") {
                return Err(Usage("a view (--at) is read-only: -o rw cannot apply".into()).into());
            }
            let served = mount::Served {
                path: &volume,
                at: at.as_deref(),
                volume_id,
            };
            mount::mount(&served, &mountpoint, &opts, foreground, &options)
        }
        Command::Unmount { mountpoint, lazy } => mount::unmount(&mountpoint, lazy),
        Command::SyncPoint {
            mountpoint,
            label,
            no_flush,
            freeze,
            exec_before,
            exec_after,
        } => match (freeze, &exec_before, &exec_after) {
            (None, None, None) => sync_point::take(&mountpoint, &label, !no_flush),
            _ => quiesce::sync_point(
                &mountpoint,
                &label,
                &quiesce::Quiesce {
                    freeze,
                    before: exec_before.as_deref(),
                    after: exec_after.as_deref(),
                    flush: !no_flush,
                },
            ),
        },
        Command::Freeze {
            mountpoint,
            timeout,
        } => quiesce::freeze(&mountpoint, timeout),
        Command::Thaw { mountpoint } => quiesce::thaw(&mountpoint),
        Command::Agent(AgentCommand::Postgres {
            mountpoint,
            connection,
            every,
            psql,
            verify,
            verify_dir,
            pg_bin,
        }) => {
            let scratch = verify_dir.unwrap_or_else(std::env::temp_dir);
            agent::postgres(&agent::Args {
                mountpoint: &mountpoint,
                connection: &connection,
                psql: &psql,
                every: every.map(Duration::from_secs),
                verify: verify.then_some(pg_verify::Setup {
                    scratch: &scratch,
                    bin: pg_bin.as_deref(),
                }),
            })
        }
        Command::SyncPoints {
            volume,
            volume_id,
            json,
        } => sync_point::list(&volume, volume_id, json),
        Command::Status { volume, json } => status(&volume, json),
        Command::Verify {
            volume,
            volume_id,
            read_data,
            repair,
            json,
        } => verify::run(&volume, volume_id, read_data, repair, json),
        Command::Set {
            volume,
            keep,
            clear,
            auto_prune,
        } => retention::set(&volume, &keep, clear, auto_prune),
        Command::Pin { volume, sync } => retention::pin(&volume, &sync, true),
        Command::Unpin { volume, sync } => retention::pin(&volume, &sync, false),
        Command::Prune {
            volume,
            keep,
            dry_run,
            json,
        } => retention::prune(&volume, &keep, dry_run, json),
        Command::Rollback {
            volume,
            to,
            dry_run,
            json,
        } => history::rollback_cmd(&volume, &to, dry_run, json),
        Command::Restore {
            volume,
            at,
            paths,
            to,
            overwrite,
        } => history::restore_cmd(
            &volume,
            &crate::restore::Request {
                at,
                paths,
                options: crate::restore::Options {
                    under: to,
                    overwrite,
                },
            },
        ),
        Command::Export {
            source,
            at,
            since,
            output,
            format: _,
            volume_id,
        } => export::run(export::Args {
            source: &source,
            volume_id,
            at: &at,
            since: since.as_deref(),
            output: output.as_deref(),
        }),
        Command::Diff { volume, a, b, json } => history::diff_cmd(&volume, &a, b.as_deref(), json),
    }
}

fn status(path: &Path, json: bool) -> Result<()> {
    use crate::control_files::{CONTROL_DIR, STATUS_FILE};
    let volume = sync_point::volume_of(path)?;
    let mounted = crate::fuse::mounts()
        .into_iter()
        .find(|m| m.volume == volume);
    let status: crate::status::Status = match mounted {
        Some(m) => {
            let file = m.mountpoint.join(CONTROL_DIR).join(STATUS_FILE);
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a status", file.display()))?
        }
        None => {
            let bar = progress::Bar::new(format!("recovering {}", volume.display()), "segments");
            let options = crate::volume::OpenOptions {
                no_archiver: true,
                progress: Some(Box::new(move |done, total| bar.set(done, total))),
                ..Default::default()
            };
            let vol = Volume::open_with(&volume, options)
                .with_context(|| format!("cannot open {}", volume.display()))?;
            let s = vol.status();
            vol.close()?;
            s
        }
    };

    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", status.render());
    }
    Ok(())
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
    let (file, _) = fs.create_file(docs, b"report.txt", 0o644, ROOT_OWNER)?;
    fs.write(file, 0, b"version one\n")?;
    let first = fs.volume().sync_point("demo: version one", "lsvfs demo")?;
    println!("sync point {} taken at {}", first.info.id, first.lsn);
    fs.truncate(file, 0)?;
    fs.write(file, 0, b"version two, longer than the first\n")?;
    fs.rename(
        docs,
        b"report.txt",
        docs,
        b"report-v2.txt",
        RenameMode::Replace,
    )?;
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
