//! A new volume whose live state is one sync point's view: `lsvfs clone`.
//! The view's live records are committed into the new volume as they are
//! (the same inode numbers, attributes with their times, names, hard
//! links, xattrs, symlink targets and data blocks; holes stay holes), so
//! the time and space a clone takes grow with the live data at the sync
//! point, not with the history behind it. The new volume has its own id,
//! and its first sync point, labelled after its source, marks it complete.

use crate::batch::Batch;
use crate::error::Result;
use crate::format::{FileKind, Record};
use crate::policy::Policy;
use crate::view::View;
use crate::volume::Volume;
use std::path::Path;

/// What a clone wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cloned {
    pub inodes: u64,
    pub data_bytes: u64,
    /// The new volume's sync point that marks the clone complete.
    pub sync_point: u64,
}

/// Creates the volume in `dir` with `policy` and commits `view`'s live
/// state into it; `label` names the completing sync point. A failure
/// leaves no volume behind: the directory is removed if this created it,
/// else emptied again (creating a volume needs it empty).
pub fn clone_view(view: &View, dir: &Path, policy: &Policy, label: &str) -> Result<Cloned> {
    let existed = dir.exists();
    Volume::create(dir, policy)?;
    let result = Volume::open(dir).and_then(|vol| {
        let cloned = copy(view, &vol, label)?;
        vol.close()?;
        Ok(cloned)
    });
    if result.is_err() {
        let undone = match existed {
            true => empty(dir),
            false => std::fs::remove_dir_all(dir),
        };
        if let Err(e) = undone {
            log::warn!(
                "cannot remove the unfinished clone in {}: {e}",
                dir.display()
            );
        }
    }
    result
}

/// Removes everything in `dir`, not `dir` itself.
fn empty(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        match entry.file_type()?.is_dir() {
            true => std::fs::remove_dir_all(entry.path())?,
            false => std::fs::remove_file(entry.path())?,
        }
    }
    Ok(())
}

fn copy(view: &View, vol: &Volume, label: &str) -> Result<Cloned> {
    let mut group = Batch::new(
        vol,
        "the clone does not fit the new volume's working set; give it a larger --working-set",
    );
    let (tree, index) = (view.tree(), view.index());
    let mut cloned = Cloned::default();
    for ino in index.inos() {
        let Some(attrs) = tree.getattr(ino)? else {
            continue;
        };
        // Unlinked while open when the sync point was taken: nobody can
        // reach it, and the source's next open deletes it too.
        if attrs.nlink == 0 && attrs.kind != FileKind::Directory {
            continue;
        }
        cloned.inodes += 1;
        group.add(Record::Inode { ino, attrs })?;
        for name in index.xattr_names(ino) {
            if let Some(value) = tree.getxattr(ino, &name)? {
                group.add(Record::Xattr { ino, name, value })?;
            }
        }
        for (name, entry) in index.list_dir(ino, None) {
            let (child, kind) = (entry.child, entry.kind);
            group.add(Record::Dirent {
                parent: ino,
                name,
                child,
                kind,
            })?;
        }
        for run in index.block_runs(ino, 0, u64::MAX) {
            for block in run.block..run.block + run.count {
                if let Some(bytes) = tree.read_block(ino, block)? {
                    cloned.data_bytes += bytes.len() as u64;
                    group.add(Record::Data { ino, block, bytes })?;
                }
            }
        }
    }
    group.flush()?;
    vol.fsync()?;
    cloned.sync_point = vol.sync_point(label, "lsvfs clone")?.info.id;
    Ok(cloned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::VolumeId;
    use crate::fs::{Fs, ROOT_OWNER};
    use crate::view::Selector;
    use crate::volume::ROOT_INO;

    fn small_policy(working_set: u32) -> Policy {
        let mut p = Policy::new(VolumeId::generate().unwrap());
        p.block_size = 512;
        p.segment_size = 64 << 10;
        p.working_set = working_set;
        p
    }

    /// A volume whose one sync point holds a file of `len` bytes.
    fn source(dir: &Path, len: usize) -> View {
        Volume::create(dir, &small_policy(64)).unwrap();
        let fs = Fs::new(Volume::open(dir).unwrap()).unwrap();
        let (ino, _) = fs.create_file(ROOT_INO, b"f", 0o644, ROOT_OWNER).unwrap();
        fs.write(ino, 0, &vec![7u8; len]).unwrap();
        let point = fs.volume().sync_point("full", "test").unwrap();
        fs.into_volume().close().unwrap();
        View::open(dir, None, &Selector::Id(point.info.id), &|_, _| {}).unwrap()
    }

    #[test]
    fn a_clone_that_fails_leaves_no_volume_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let view = source(&tmp.path().join("src"), 1 << 20);
        // Four 64 KiB segments cannot hold 1 MiB of live data.
        let too_small = small_policy(4);
        let made = tmp.path().join("made");
        let err = clone_view(&view, &made, &too_small, "c").unwrap_err();
        assert!(err.to_string().contains("--working-set"), "{err}");
        assert!(!made.exists(), "a directory the clone created is removed");
        let given = tmp.path().join("given");
        std::fs::create_dir(&given).unwrap();
        clone_view(&view, &given, &too_small, "c").unwrap_err();
        let left: Vec<_> = std::fs::read_dir(&given).unwrap().collect();
        assert!(
            left.is_empty(),
            "a given directory is emptied again: {left:?}"
        );
        // And a clone that fits works in it afterwards.
        let cloned = clone_view(&view, &given, &small_policy(64), "c").unwrap();
        assert_eq!(cloned.data_bytes, 1 << 20);
    }
}
