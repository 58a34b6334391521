//! A view served read-only: [`ViewFs`] answers lookups, attributes,
//! listings, reads, symlink targets and xattrs of one sync point's tree in
//! the view's own inode numbers, through the same [`Queries`] as the live
//! volume, and refuses every change with EROFS (open for writing, access
//! for writing). The FUSE mounts of views
//! read through it; so can anything else in-process that reads a view.

use super::queries::Queries;
use super::{FsError, FsResult, FsStats, opens_for_writing};
use crate::format::FileKind;
use crate::format::record::NAME_MAX;
use crate::index::Index;
use crate::view::View;

/// The POSIX read side of one view: [`ViewFs::queries`] reads it.
pub struct ViewFs {
    view: View,
}

impl ViewFs {
    pub fn new(view: View) -> Self {
        ViewFs { view }
    }

    pub fn view(&self) -> &View {
        &self.view
    }

    /// Lookups, attributes, listings, reads, symlink targets and xattrs
    /// of the view, in its own inode numbers.
    pub fn queries(&self) -> Queries<'_, Index> {
        Queries(self.view.tree())
    }

    /// open(2) with `flags`: for reading only, and not of a directory.
    pub fn open(&self, ino: u64, flags: i32) -> FsResult<()> {
        if opens_for_writing(flags) {
            return Err(FsError::ReadOnly);
        }
        match self.queries().getattr(ino)?.kind {
            FileKind::Directory => Err(FsError::IsDir),
            _ => Ok(()),
        }
    }

    /// access(2) for `mask`: anything but writing, which a view refuses.
    pub fn access(&self, ino: u64, mask: u32) -> FsResult<()> {
        self.queries().getattr(ino)?;
        match mask & libc::W_OK as u32 != 0 {
            true => Err(FsError::ReadOnly),
            false => Ok(()),
        }
    }

    /// The view's size: every block used, none free.
    pub fn statfs(&self) -> FsStats {
        let stats = self.view.index().stats();
        FsStats {
            block_size: self.view.block_size,
            blocks: stats.blocks,
            blocks_free: 0,
            files: stats.inodes,
            files_free: 0,
            name_max: NAME_MAX as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{Fs, ROOT_OWNER};
    use crate::volume::{ROOT_INO, Volume};

    #[test]
    fn a_view_answers_as_the_live_volume_did_and_refuses_changes() {
        let dir = tempfile::tempdir().unwrap();
        let id = crate::format::VolumeId::generate().unwrap();
        Volume::create(dir.path(), &crate::policy::Policy::new(id)).unwrap();
        let fs = Fs::new(Volume::open(dir.path()).unwrap()).unwrap();
        let dir_kind = crate::format::FileKind::Directory;
        let (d, _) = fs
            .mknod(ROOT_INO, b"d", dir_kind, 0o755, ROOT_OWNER, 0)
            .unwrap();
        let (f, _) = fs.create_file(d, b"f", 0o644, ROOT_OWNER).unwrap();
        fs.write(f, 0, b"then").unwrap();
        fs.setxattr(f, b"user.k", b"v", crate::fs::XattrMode::Any)
            .unwrap();
        let (l, _) = fs.symlink(ROOT_INO, b"l", b"d/f", ROOT_OWNER).unwrap();
        let id = fs.volume().sync_point("p", "test").unwrap().info.id;
        fs.write(f, 0, b"now!").unwrap();

        let view_fs = ViewFs::new(fs.volume().view(id).unwrap());
        let view = view_fs.queries();
        assert_eq!(view.lookup(ROOT_INO, b"d").unwrap().0, d);
        assert_eq!(view.read(f, 0, 100).unwrap(), b"then");
        assert_eq!(view.readlink(l).unwrap(), b"d/f");
        assert_eq!(view.getxattr(f, b"user.k").unwrap(), b"v");
        assert_eq!(view.listxattr(f).unwrap(), vec![b"user.k".to_vec()]);
        let names: Vec<Vec<u8>> = view
            .readdir(d)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, vec![b"f".to_vec()]);
        let listing = view.listing(ROOT_INO).unwrap();
        assert_eq!((listing[0].ino, listing[1].ino), (ROOT_INO, ROOT_INO));
        assert_eq!(view.readlink(f).unwrap_err().errno(), libc::EINVAL);
        assert_eq!(view.read(d, 0, 1).unwrap_err().errno(), libc::EISDIR);
        assert_eq!(view.lookup(f, b"x").unwrap_err().errno(), libc::ENOTDIR);
        assert_eq!(
            view.getxattr(f, b"user.none").unwrap_err().errno(),
            libc::ENODATA
        );
        assert_eq!(
            view_fs.open(f, libc::O_RDWR).unwrap_err().errno(),
            libc::EROFS
        );
        assert_eq!(
            view_fs.open(d, libc::O_RDONLY).unwrap_err().errno(),
            libc::EISDIR
        );
        assert_eq!(
            view_fs.access(f, libc::W_OK as u32).unwrap_err().errno(),
            libc::EROFS
        );
        view_fs.open(f, libc::O_RDONLY).unwrap();
        view_fs.access(f, libc::R_OK as u32).unwrap();
    }
}
