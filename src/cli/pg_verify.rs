//! `lsvfs agent postgres --verify`: a restore test of a sync point.
//!
//! The sync point is cloned into a scratch volume, the clone mounted, and
//! PostgreSQL started on the cluster's copy as the data directory's owner
//! — crash recovery runs as it would after a restore — then `pg_amcheck`
//! checks every database and the server is stopped. Nothing of the test
//! touches the live cluster: the copy's server listens on a socket of its
//! own only, archives nothing, waits for no standby, and its
//! `postmaster.pid` (the live server's) is removed. The scratch directory
//! is unmounted and removed whatever happens.

use super::clone::New;
use super::mount::Served;
use crate::checks::Check;
use crate::fuse::MountOptions;
use anyhow::{Context, Result, bail};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What checks: the tool named in the sync point's listing.
pub const TOOL: &str = "pg_amcheck";
/// Crash recovery of the copy may replay a checkpoint interval of WAL.
const START_TIMEOUT: Duration = Duration::from_secs(3600);
const STOP_TIMEOUT: Duration = Duration::from_secs(120);

/// Where and with which programs a restore test runs.
pub struct Setup<'a> {
    /// The scratch directories go here (a clone the size of the volume's
    /// live data).
    pub scratch: &'a Path,
    /// The directory of `postgres` and `pg_amcheck`; else the Debian
    /// directory of the cluster's major version, else the PATH.
    pub bin: Option<&'a Path>,
}

/// The live cluster as its server reported it.
pub struct Cluster {
    /// The data directory, relative to the root of the volume.
    pub data: PathBuf,
    /// The bootstrap superuser, as whom `pg_amcheck` connects.
    pub superuser: String,
}

/// Clones sync point `id` of `volume` and checks the cluster on it; the
/// outcome to record (a test that could not run is a failed one).
pub fn verify(volume: &Path, id: u64, cluster: &Cluster, setup: &Setup) -> Check {
    let started = Instant::now();
    let mut scratch = Scratch::default();
    let result = run(volume, id, cluster, setup, &mut scratch);
    drop(scratch);
    let took = started.elapsed().as_secs_f64();
    match result {
        Ok(summary) => Check::new(id, true, TOOL, &format!("{summary}; {took:.1} s in all")),
        Err(e) => Check::new(id, false, TOOL, &format!("{e:#}")),
    }
}

fn run(
    volume: &Path,
    id: u64,
    cluster: &Cluster,
    setup: &Setup,
    scratch: &mut Scratch,
) -> Result<String> {
    let dir = setup
        .scratch
        .join(format!("lsvfs-verify-{}-{id}", std::process::id()));
    fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    scratch.dir = Some(dir.clone());
    // The database's user passes through to the mount and its own files.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o711))?;
    let (clone, mnt, run) = (dir.join("volume"), dir.join("mnt"), dir.join("run"));
    let new = New {
        dir: &clone,
        backing_store: None,
        working_set: None,
    };
    super::clone::clone(volume, None, &id.to_string(), new)?;
    fs::create_dir(&mnt)?;
    let served = Served {
        path: &clone,
        at: None,
        volume_id: None,
    };
    let opts = MountOptions {
        allow_other: true,
        ..Default::default()
    };
    super::mount::mount(&served, &mnt, &opts, false, "allow_other")?;
    scratch.mnt = Some(mnt.clone());

    let data = mnt.join(&cluster.data);
    check_self_contained(&data)?;
    let meta = fs::metadata(&data)?;
    let (uid, gid) = (meta.uid(), meta.gid());
    // The live server's lock file: its pid is alive, so a server on the
    // copy would refuse to start.
    match fs::remove_file(data.join("postmaster.pid")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    fs::create_dir(&run)?;
    let conf = run.join("postgresql.conf");
    let own = data.join("postgresql.conf");
    let include = match own.exists() {
        true => format!("include '{}'\n", quoted(&own)?),
        false => String::new(),
    };
    fs::write(&conf, include)?;
    fs::write(run.join("hba.conf"), "local all all trust\n")?;
    fs::write(run.join("ident.conf"), "")?;
    let log = fs::File::create(run.join("postgres.log"))?;
    for p in [&run, &conf, &run.join("hba.conf"), &run.join("ident.conf")] {
        std::os::unix::fs::chown(p, Some(uid), Some(gid))?;
    }
    fs::set_permissions(&run, fs::Permissions::from_mode(0o700))?;

    let bin = bin_dir(setup, &data);
    let program = |name: &str| bin.as_ref().map_or(name.into(), |b| b.join(name));
    let settings = [
        format!("config_file={}", conf.display()),
        format!("data_directory={}", data.display()),
        format!("hba_file={}", run.join("hba.conf").display()),
        format!("ident_file={}", run.join("ident.conf").display()),
        format!("unix_socket_directories={}", quoted(&run)?),
        "listen_addresses=".into(),
        "port=5432".into(),
        "archive_mode=off".into(),
        "synchronous_standby_names=".into(),
        "primary_conninfo=".into(),
        "external_pid_file=".into(),
        "logging_collector=off".into(),
        "ssl=off".into(),
        "shared_buffers=128MB".into(),
        "cluster_name=lsvfs-verify".into(),
        // The copy is thrown away: nothing it writes needs to be durable.
        "fsync=off".into(),
    ];
    let mut postgres = Command::new(program("postgres"));
    postgres.arg("-D").arg(&data);
    for s in &settings {
        postgres.arg("-c").arg(s);
    }
    let child = postgres
        .current_dir(&run)
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot run {}", program("postgres").display()))?;
    scratch.postgres = Some(child);
    let up = Instant::now();
    wait_until_ready(&program("pg_isready"), &run, scratch)?;
    let up = up.elapsed().as_secs_f64();

    let checked = Instant::now();
    let out = Command::new(program("pg_amcheck"))
        .arg("-h")
        .arg(&run)
        .args(["-p", "5432", "-U", &cluster.superuser])
        .args(["--all", "--install-missing"])
        .env_remove("PGDATABASE")
        .output()
        .with_context(|| format!("cannot run {}", program("pg_amcheck").display()))?;
    if !out.status.success() {
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        bail!(
            "pg_amcheck on the copy ({}): {}",
            out.status,
            first_lines(&said, 8)
        );
    }
    let checked = checked.elapsed().as_secs_f64();
    scratch.stop_postgres(libc::SIGINT)?;
    Ok(format!(
        "clone of sync point {id} recovered in {up:.1} s, pg_amcheck clean in {checked:.1} s"
    ))
}

/// A copy whose WAL or tablespaces live outside the data directory would
/// use the live cluster's: refused.
fn check_self_contained(data: &Path) -> Result<()> {
    if !data.join("PG_VERSION").exists() {
        bail!(
            "{} on the clone is not a PostgreSQL data directory",
            data.display()
        );
    }
    if fs::symlink_metadata(data.join("pg_wal"))?.is_symlink() {
        bail!("pg_wal is a symbolic link out of the data directory; cannot test a copy of it");
    }
    if fs::read_dir(data.join("pg_tblspc"))?.next().is_some() {
        bail!("the cluster has tablespaces out of its data directory; cannot test a copy of it");
    }
    Ok(())
}

/// The directory of the server programs for the data directory's major
/// version.
fn bin_dir(setup: &Setup, data: &Path) -> Option<PathBuf> {
    if let Some(b) = setup.bin {
        return Some(b.to_path_buf());
    }
    let version = fs::read_to_string(data.join("PG_VERSION")).ok()?;
    let debian = PathBuf::from(format!("/usr/lib/postgresql/{}/bin", version.trim()));
    debian.is_dir().then_some(debian)
}

fn wait_until_ready(pg_isready: &Path, run: &Path, scratch: &mut Scratch) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(child) = scratch.postgres.as_mut()
            && let Some(status) = child.try_wait()?
        {
            scratch.postgres = None;
            let log = fs::read_to_string(run.join("postgres.log")).unwrap_or_default();
            bail!(
                "PostgreSQL did not start on the copy ({status}): {}",
                last_lines(&log, 8)
            );
        }
        let ready = Command::new(pg_isready)
            .arg("-q")
            .arg("-h")
            .arg(run)
            .args(["-p", "5432"])
            .status()
            .with_context(|| format!("cannot run {}", pg_isready.display()))?;
        if ready.success() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "PostgreSQL on the copy was not ready after {} s",
                START_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A path as a single-quoted configuration value.
fn quoted(p: &Path) -> Result<String> {
    let s = p.to_str().context("a scratch path that is not UTF-8")?;
    Ok(s.replace('\'', "''"))
}

fn first_lines(text: &str, n: usize) -> String {
    text.lines().take(n).collect::<Vec<_>>().join(" | ")
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// What a test started, undone when dropped: the server stopped, the
/// clone unmounted, the scratch directory removed.
#[derive(Default)]
struct Scratch {
    dir: Option<PathBuf>,
    mnt: Option<PathBuf>,
    postgres: Option<Child>,
}

impl Scratch {
    /// Stops the server with `signal` (SIGINT: fast, SIGQUIT: immediate)
    /// and waits for it to exit.
    fn stop_postgres(&mut self, signal: libc::c_int) -> Result<()> {
        let Some(mut child) = self.postgres.take() else {
            return Ok(());
        };
        // SAFETY: kill(2) of our own child, whose pid is not yet reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("PostgreSQL on the copy did not stop; killed it");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = self.stop_postgres(libc::SIGQUIT) {
            log::warn!("{e:#}");
        }
        if let Some(mnt) = self.mnt.take()
            && let Err(e) = super::mount::unmount(&mnt, true)
        {
            // Never remove a tree that may still be mounted.
            log::error!(
                "cannot unmount the restore test's {}: {e:#}; left in place",
                mnt.display()
            );
            return;
        }
        if let Some(dir) = self.dir.take()
            && let Err(e) = fs::remove_dir_all(&dir)
        {
            log::error!("cannot remove {}: {e}", dir.display());
        }
    }
}
