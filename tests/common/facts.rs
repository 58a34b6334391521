//! What a tree looks like from outside: every path's stat, content
//! checksum, symlink target, xattrs and hard-link identity, for comparing
//! trees on real mounts (copies, remounts, views).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Everything `stat` and `getfattr` say about a file, and its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub kind: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: (i64, i64),
    pub nlink: u64,
    /// Symlink target or content checksum.
    pub content: String,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Smallest path of the same inode within the tree (hard links).
    pub first: String,
}

pub fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 4096];
    // SAFETY: buffers are valid for the lengths given.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(
        n >= 0,
        "llistxattr {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    let mut out = BTreeMap::new();
    for name in names[..n as usize]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
    {
        let cname = CString::new(name).unwrap();
        let mut value = vec![0u8; 65536];
        // SAFETY: as above.
        let len = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        assert!(len >= 0);
        value.truncate(len as usize);
        out.insert(String::from_utf8_lossy(name).into_owned(), value);
    }
    out
}

pub fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    // SAFETY: valid strings and buffer.
    let r = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(r, 0, "setxattr: {}", std::io::Error::last_os_error());
}

/// Facts of every path under `root`, by relative path.
/// With `dir_times`, directories' mtimes count too (copies do not keep
/// them; views do).
pub fn manifest(root: &Path, dir_times: bool) -> BTreeMap<String, Facts> {
    let mut out = BTreeMap::new();
    let mut first: BTreeMap<u64, String> = BTreeMap::new();
    for (p, m) in walk(root) {
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        first.entry(m.ino()).or_insert(rel.clone());
        let content = if m.file_type().is_symlink() {
            std::fs::read_link(&p)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        } else if m.is_file() {
            format!("{:08x}", crc32c::crc32c(&std::fs::read(&p).unwrap()))
        } else {
            String::new()
        };
        let facts = Facts {
            kind: m.mode() & libc::S_IFMT,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            size: if m.is_dir() { 0 } else { m.size() },
            mtime: if m.is_dir() && !dir_times {
                (0, 0)
            } else {
                (m.mtime(), m.mtime_nsec())
            },
            nlink: m.nlink(),
            content,
            xattrs: xattrs(&p),
            first: first[&m.ino()].clone(),
        };
        out.insert(rel, facts);
    }
    out
}

/// Every path under `root` (not `root` itself) with its lstat, in path
/// order; symlinks are not followed.
pub fn walk(root: &Path) -> Vec<(PathBuf, Metadata)> {
    let mut stack = vec![root.to_path_buf()];
    let mut all = Vec::new();
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p.clone());
            }
            all.push((p, m));
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// Fails with every path that differs.
pub fn assert_same(got: &BTreeMap<String, Facts>, want: &BTreeMap<String, Facts>, what: &str) {
    let mut diffs = Vec::new();
    for k in got.keys().chain(want.keys()) {
        if got.get(k) != want.get(k) && !diffs.iter().any(|(d, _, _)| d == k) {
            diffs.push((k.clone(), got.get(k).cloned(), want.get(k).cloned()));
        }
    }
    assert!(diffs.is_empty(), "{what}: {diffs:#?}");
}
