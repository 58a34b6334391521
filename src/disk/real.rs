//! The machine's filesystem. lsvfs's own files are readable by their owner
//! only (files 0600, directories 0700, whatever the umask: segments hold
//! every user's data) and never opened through a symlink (a volume opened
//! as root must not truncate or write whatever a link in its directory
//! points at).

use super::{Disk, FileIo, Kind, Meta, OpenMode};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The machine's filesystem.
pub struct Real;

/// Options for opening or creating one of lsvfs's own files: mode 0600 when
/// created, the last component never followed if it is a symlink (ELOOP).
pub fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    o
}

fn kind(t: std::fs::FileType) -> Kind {
    if t.is_file() {
        Kind::File
    } else if t.is_dir() {
        Kind::Dir
    } else if t.is_symlink() {
        Kind::Symlink
    } else {
        Kind::Other
    }
}

impl Disk for Real {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FileIo>> {
        let mut o = options();
        o.read(true).write(mode.writes());
        match mode {
            OpenMode::Create => o.create(true).truncate(false),
            OpenMode::CreateNew => o.create_new(true),
            OpenMode::Read | OpenMode::ReadWrite => &mut o,
        };
        Ok(Box::new(RealFile(o.open(path)?)))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<(String, Kind)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            match entry.file_type() {
                Ok(t) => out.push((name, kind(t))),
                // Removed between listing and looking.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn stat(&self, path: &Path, follow: bool) -> io::Result<Meta> {
        let meta = match follow {
            true => std::fs::metadata(path)?,
            false => std::fs::symlink_metadata(path)?,
        };
        Ok(Meta {
            kind: kind(meta.file_type()),
            len: meta.len(),
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::hard_link(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::DirBuilder::new().mode(0o700).create(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::canonicalize(path)
    }
}

struct RealFile(File);

impl FileIo for RealFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        // SAFETY: fallocate on a valid open descriptor; no memory is passed.
        let rc = unsafe { libc::fallocate(self.0.as_raw_fd(), 0, 0, len as libc::off_t) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EOPNOTSUPP) {
            return self.0.set_len(len);
        }
        Err(err)
    }

    fn make_private(&self) -> io::Result<bool> {
        if self.0.metadata()?.mode() & 0o077 == 0 {
            return Ok(false);
        }
        self.0
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
        Ok(true)
    }

    fn try_lock(&self) -> io::Result<bool> {
        // SAFETY: flock on a valid descriptor owned by this file.
        if unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            true => Ok(false),
            false => Err(err),
        }
    }

    fn identity(&self) -> io::Result<(u64, u64)> {
        let meta = self.0.metadata()?;
        Ok((meta.dev(), meta.ino()))
    }

    fn advise_random(&self, random: bool) {
        let advice = match random {
            true => libc::POSIX_FADV_RANDOM,
            false => libc::POSIX_FADV_NORMAL,
        };
        // SAFETY: posix_fadvise on a valid descriptor; no memory is passed.
        unsafe { libc::posix_fadvise(self.0.as_raw_fd(), 0, 0, advice) };
    }

    fn start_writeback(&self, at: u64, len: u64) {
        // SAFETY: sync_file_range on a valid descriptor; no memory is passed.
        let rc = unsafe {
            libc::sync_file_range(
                self.0.as_raw_fd(),
                at as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        if rc != 0 {
            log::debug!("sync_file_range: {}", io::Error::last_os_error());
        }
    }

    /// Without zeroing the buffer first: data reads are large and hot, and
    /// a memset is a pass over memory as costly as the read's own copy.
    fn read_vec_at(&self, len: usize, offset: u64) -> io::Result<Vec<u8>> {
        let mut buf: Vec<u8> = Vec::with_capacity(len);
        while buf.len() < len {
            let done = buf.len();
            let spare = buf.spare_capacity_mut();
            // SAFETY: pread writes at most `len - done` bytes, all within the
            // spare capacity; only the bytes it reports written are then
            // counted in the vector's length.
            let n = unsafe {
                libc::pread(
                    self.0.as_raw_fd(),
                    spare.as_mut_ptr().cast(),
                    len - done,
                    (offset + done as u64) as libc::off_t,
                )
            };
            match n {
                // SAFETY: pread initialised these `n` bytes (see above).
                n if n > 0 => unsafe { buf.set_len(done + n as usize) },
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        Ok(buf)
    }
}
