//! The storage seam: every file and directory operation of the engine (the
//! segment files, the catalog, the policy, the lock, a local store's objects
//! and their directories) goes through [`Disk`] and [`FileIo`]. [`Real`] is
//! the machine's filesystem; [`Sim`] is a simulated disk for power-loss
//! tests, which at a power cut keeps only what was made durable (and a
//! random part of what was not, as ext4 and XFS may).

pub mod real;
pub mod sim;

pub use real::Real;
pub use sim::Sim;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How a file is opened. Every mode reads; files are created 0600 and the
/// last path component is never followed if it is a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    Read,
    ReadWrite,
    /// Read-write, created if missing.
    Create,
    /// Read-write, created; fails if the name exists.
    CreateNew,
}

impl OpenMode {
    pub fn writes(self) -> bool {
        self != OpenMode::Read
    }
}

/// What a directory entry or a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// What [`Disk::stat`] tells of a path.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub kind: Kind,
    pub len: u64,
    /// Permission bits.
    pub mode: u32,
    pub uid: u32,
    pub dev: u64,
    pub ino: u64,
}

/// An open file.
pub trait FileIo: Send + Sync {
    /// Reads at most `buf.len()` bytes at `offset`; 0 at the end of the file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// fdatasync: the file's data (and its size) on stable storage.
    fn sync_data(&self) -> io::Result<()>;
    /// fsync: as `sync_data`, and the rest of the file's metadata.
    fn sync_all(&self) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    fn size(&self) -> io::Result<u64>;
    /// Reserves `len` bytes of disk for the file, so that a full disk
    /// shows up here and not in a later write.
    fn allocate(&self, len: u64) -> io::Result<()>;
    /// Makes the file readable by its owner only, if it is not; returns
    /// whether it changed the mode (a change that only fsync makes durable).
    fn make_private(&self) -> io::Result<bool>;
    /// Takes an exclusive advisory lock without waiting: `false` if another
    /// open file holds it. It is released when this file is closed.
    fn try_lock(&self) -> io::Result<bool>;
    /// (device, inode): whether two handles are the same file.
    fn identity(&self) -> io::Result<(u64, u64)>;
    /// Hints: read-ahead off (`random`) or on; start writing a range back
    /// without waiting. Neither changes what is durable.
    fn advise_random(&self, _random: bool) {}
    fn start_writeback(&self, _at: u64, _len: u64) {}

    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads exactly `len` bytes at `offset` into a new buffer.
    fn read_vec_at(&self, len: usize, offset: u64) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// The whole file.
    fn read_all(&self) -> io::Result<Vec<u8>> {
        let len = self.size()?;
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
        self.read_vec_at(len, 0)
    }
}

/// A filesystem: where the engine's files and directories live.
pub trait Disk: Send + Sync {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FileIo>>;
    /// The names in directory `dir` with what each is (not following links).
    fn list(&self, dir: &Path) -> io::Result<Vec<(String, Kind)>>;
    /// What `path` is; with `follow`, what a symlink there points at.
    fn stat(&self, path: &Path, follow: bool) -> io::Result<Meta>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// A second name for a file; fails if `to` exists.
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Creates a directory, mode 0700; it must not exist.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Creates a directory and any missing parents, each new one 0700.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// fsync of a directory: its entries' creations, renames and removals
    /// on stable storage.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Sets the permission bits of `path` (not following a symlink there).
    fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()>;
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf>;

    /// A whole file, not through a symlink.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.open(path, OpenMode::Read)?.read_all()
    }

    fn exists(&self, path: &Path) -> bool {
        self.stat(path, true).is_ok()
    }
}

/// The machine's filesystem, for whatever is not told otherwise.
pub fn real() -> Arc<dyn Disk> {
    Arc::new(Real)
}

/// Makes a directory of lsvfs's own (not a symlink: checked before) open
/// to its owner only (volumes made before lsvfs did so had 0755).
pub fn make_dir_private(disk: &dyn Disk, path: &Path) -> io::Result<()> {
    match disk.stat(path, false) {
        Ok(meta) if meta.mode & 0o077 != 0 => disk.set_mode(path, 0o700),
        // Missing: whatever opens it next says so in its own words.
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Why the directory `path` may not hold a volume's files, if it may not:
/// it is not a directory, or another user than root and this process's may
/// change it; with `follow` false, also when `path` itself is a symlink
/// (for directories lsvfs made, where nobody had reason to put one).
pub fn unsafe_dir(disk: &dyn Disk, path: &Path, follow: bool) -> io::Result<Option<String>> {
    let meta = disk.stat(path, follow)?;
    if meta.kind == Kind::Symlink {
        return Ok(Some("a symlink".into()));
    }
    if meta.kind != Kind::Dir {
        return Ok(Some("not a directory".into()));
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid != me && meta.uid != 0 {
        return Ok(Some(format!(
            "owned by uid {}, not by this user (uid {me}) or root",
            meta.uid
        )));
    }
    if meta.mode & 0o022 != 0 {
        return Ok(Some(format!(
            "writable by other users (mode {:04o})",
            meta.mode & 0o7777
        )));
    }
    Ok(None)
}
