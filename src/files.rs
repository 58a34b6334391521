//! How lsvfs creates and opens the files of a volume and of a local store:
//! readable by their owner only (files 0600, directories 0700, whatever the
//! umask: segments hold every user's data), never through a symlink (a
//! volume opened as root must not truncate or write whatever a link in its
//! directory points at), and only in directories that no other user can
//! change (where nobody else can plant a link, hard or symbolic).

use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Options for opening or creating one of lsvfs's own files: mode 0600 when
/// created, the last component never followed if it is a symlink (ELOOP).
pub fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    o
}

/// Makes an open file of lsvfs's own readable by its owner only (files
/// made before lsvfs made them so, and reused, were 0644).
pub fn make_private(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if file.metadata()?.mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Makes a directory of lsvfs's own (not a symlink: checked before) open
/// to its owner only.
pub fn make_dir_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.mode() & 0o077 != 0 => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        }
        // Missing: whatever opens it next says so in its own words.
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Reads a whole file of lsvfs's own, not through a symlink.
pub fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    options().read(true).open(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Creates `path` and any missing parents, each new one with mode 0700.
pub fn create_dir_all(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Creates the directory `path` with mode 0700; it must not exist.
pub fn create_dir(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().mode(0o700).create(path)
}

/// Why the directory `path` may not hold a volume's files, if it may not:
/// it is not a directory, or another user than root and this process's may
/// change it; with `follow` false, also when `path` itself is a symlink
/// (for directories lsvfs made, where nobody had reason to put one).
pub fn unsafe_dir(path: &Path, follow: bool) -> std::io::Result<Option<String>> {
    let meta = match follow {
        true => std::fs::metadata(path)?,
        false => std::fs::symlink_metadata(path)?,
    };
    if meta.file_type().is_symlink() {
        return Ok(Some("a symlink".into()));
    }
    if !meta.is_dir() {
        return Ok(Some("not a directory".into()));
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Ok(Some(format!(
            "owned by uid {}, not by this user (uid {me}) or root",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Ok(Some(format!(
            "writable by other users (mode {:04o})",
            meta.mode() & 0o7777
        )));
    }
    Ok(None)
}
