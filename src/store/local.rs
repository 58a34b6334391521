//! The default backing store: a local directory (which may be on another
//! disk or a network filesystem). A put writes a temporary file, fsyncs it,
//! links it to the final name (which fails if the name exists: objects are
//! never replaced), removes the temporary and fsyncs the directory, so an
//! object is either wholly there or absent, also after a power loss.

use super::{BackingStore, StoreError, check_name};
use crate::disk::{Disk, Kind, OpenMode};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Temporaries start with a dot (never a valid object name) and end so.
const TMP_SUFFIX: &str = ".tmp";

pub struct LocalDir {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    next_tmp: AtomicU64,
}

impl LocalDir {
    /// Opens the store in `dir`, which must exist; removes temporaries left
    /// by a put that a crash cut short (those of a process still running,
    /// such as a mount beside a view, are its puts in progress).
    pub fn open(disk: Arc<dyn Disk>, dir: &Path) -> Result<LocalDir, StoreError> {
        let store = LocalDir {
            disk,
            dir: dir.to_path_buf(),
            next_tmp: AtomicU64::new(0),
        };
        let entries = store.disk.list(dir).map_err(store.io("open", ""))?;
        for (name, _) in entries {
            if name.starts_with('.') && name.ends_with(TMP_SUFFIX) && !writer_alive(&name) {
                match store.disk.remove_file(&dir.join(&name)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(store.io("remove", &name)(e));
                    }
                    _ => {}
                }
            }
        }
        Ok(store)
    }

    /// The store in `dir` for reading only: unlike [`LocalDir::open`], it
    /// leaves the temporaries of interrupted puts alone (they may be a
    /// writer's on another host).
    pub fn reader(disk: Arc<dyn Disk>, dir: &Path) -> Result<LocalDir, StoreError> {
        let store = LocalDir {
            disk,
            dir: dir.to_path_buf(),
            next_tmp: AtomicU64::new(0),
        };
        store.disk.list(dir).map_err(store.io("open", ""))?;
        Ok(store)
    }

    fn io(&self, op: &'static str, name: &str) -> impl FnOnce(std::io::Error) -> StoreError {
        let (store, name) = (self.describe(), name.to_string());
        move |source| {
            if source.kind() == std::io::ErrorKind::NotFound && !name.is_empty() {
                StoreError::NotFound { store, name }
            } else {
                StoreError::Io {
                    store,
                    op,
                    name,
                    source,
                }
            }
        }
    }

    fn path(&self, name: &str) -> Result<PathBuf, StoreError> {
        check_name(name)?;
        Ok(self.dir.join(name))
    }

    fn sync_dir(&self) -> std::io::Result<()> {
        self.disk.sync_dir(&self.dir)
    }
}

/// Whether the process that named temporary `name` (`.{object}.{pid}-{n}.tmp`)
/// is still running.
fn writer_alive(name: &str) -> bool {
    let pid = name
        .strip_suffix(TMP_SUFFIX)
        .and_then(|n| n.rsplit_once('.'))
        .and_then(|(_, tail)| tail.split_once('-'))
        .and_then(|(pid, _)| pid.parse::<u32>().ok());
    pid.is_some_and(|pid| pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists())
}

impl BackingStore for LocalDir {
    fn put(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path(name)?;
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!(".{name}.{}-{n}{TMP_SUFFIX}", std::process::id()));
        let written = self
            .disk
            .open(&tmp, OpenMode::CreateNew)
            .and_then(|f| f.write_all_at(bytes, 0).and_then(|_| f.sync_all()))
            .and_then(|_| self.disk.hard_link(&tmp, &path));
        let _ = self.disk.remove_file(&tmp);
        match written.and_then(|_| self.sync_dir()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(StoreError::Exists {
                store: self.describe(),
                name: name.to_string(),
            }),
            Err(source) => Err(StoreError::Io {
                store: self.describe(),
                op: "put",
                name: name.to_string(),
                source,
            }),
        }
    }

    fn get(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        self.disk
            .read(&self.path(name)?)
            .map_err(self.io("get", name))
    }

    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        let file = self
            .disk
            .open(&self.path(name)?, OpenMode::Read)
            .map_err(self.io("get", name))?;
        let size = file.size().map_err(self.io("get", name))?;
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(StoreError::Range {
                store: self.describe(),
                name: name.to_string(),
                offset,
                len,
                size,
            });
        }
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, offset)
            .map_err(self.io("get", name))?;
        Ok(buf)
    }

    fn size(&self, name: &str) -> Result<u64, StoreError> {
        Ok(self
            .disk
            .stat(&self.path(name)?, true)
            .map_err(self.io("stat", name))?
            .len)
    }

    fn list(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut out = Vec::new();
        for (name, kind) in self.disk.list(&self.dir).map_err(self.io("list", ""))? {
            // Objects are regular files; a link here is not one of ours.
            if check_name(&name).is_err() || kind != Kind::File {
                continue;
            }
            match self.disk.stat(&self.dir.join(&name), false) {
                Ok(m) => out.push((name, m.len)),
                // Deleted between listing and stat.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.io("list", &name)(e)),
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<(), StoreError> {
        match self.disk.remove_file(&self.path(name)?) {
            Ok(()) => self.sync_dir().map_err(self.io("delete", name)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io("delete", name)(e)),
        }
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::real;

    #[test]
    fn leftover_temporaries_are_removed_and_never_listed() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join(".0000000000000001.lsa.4000000000-0.tmp");
        std::fs::write(&tmp, b"half").unwrap();
        let s = LocalDir::open(real(), dir.path()).unwrap();
        assert!(!tmp.exists());
        s.put("x", b"1").unwrap();
        std::fs::write(&tmp, b"half").unwrap();
        assert_eq!(s.list().unwrap(), vec![("x".to_string(), 1)]);
        drop(s);
        let s = LocalDir::open(real(), dir.path()).unwrap();
        assert_eq!(s.get("x").unwrap(), b"1", "objects survive reopening");
    }

    #[test]
    fn temporaries_of_a_running_process_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        // PID 1 is always running; this process's own leftovers are not
        // a put in progress (it is only opening the store now).
        let busy = dir.path().join(".0000000000000001.lsa.1-0.tmp");
        let mine = dir.path().join(format!(
            ".0000000000000002.lsa.{}-0.tmp",
            std::process::id()
        ));
        std::fs::write(&busy, b"half").unwrap();
        std::fs::write(&mine, b"half").unwrap();
        LocalDir::open(real(), dir.path()).unwrap();
        assert!(busy.exists() && !mine.exists());
    }

    #[test]
    fn a_missing_directory_is_named() {
        let e = LocalDir::open(real(), Path::new("/nonexistent/lsvfs-store"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("/nonexistent/lsvfs-store"), "{e}");
    }

    #[test]
    fn after_a_power_loss_every_acknowledged_object_is_whole_and_no_other_is_torn() {
        use crate::disk::{Disk, Sim};
        let dir = Path::new("/store");
        for seed in 0..300u64 {
            let sim = Sim::new(seed);
            sim.create_dir(dir).unwrap();
            sim.sync_dir(Path::new("/")).unwrap();
            let store = LocalDir::open(Arc::new(sim.clone()), dir).unwrap();
            let object = |n: u64| vec![n as u8; 3000 + n as usize * 700];
            sim.cut_after(seed % 40);
            let acked: Vec<u64> = (0..8)
                .take_while(|&n| store.put(&format!("o{n}"), &object(n)).is_ok())
                .collect();
            let after = sim.power_loss();
            let store = LocalDir::open(Arc::new(after.clone()), dir).unwrap();
            let listed = store.list().unwrap();
            for n in &acked {
                assert_eq!(
                    store.get(&format!("o{n}")).unwrap(),
                    object(*n),
                    "seed {seed}"
                );
            }
            for (name, size) in &listed {
                let n: u64 = name[1..].parse().unwrap();
                assert_eq!(*size, object(n).len() as u64, "seed {seed}: {name} torn");
                assert_eq!(store.get(name).unwrap(), object(n), "seed {seed}");
            }
            // Temporaries left by the cut are gone at open.
            let left = after.list(dir).unwrap();
            assert_eq!(left.len(), listed.len(), "seed {seed}: {left:?}");
        }
    }
}
