//! A view mounted on its own (`lsvfs mount --at`): [`ViewAdapter`] is the
//! fuser `Filesystem` of a read-only mount whose inode numbers are the
//! view's own. The mount is read-only, so the kernel answers every change
//! with EROFS before it reaches here.

use super::handles::{Handle, Handles};
use super::mounted_view::{MountedView, Own};
use super::reply;
use crate::fs::ViewFs;
use crate::view::View;
use fuser::{
    FileHandle, Filesystem, FopenFlags, INodeNo, InitFlags, KernelConfig, OpenFlags, ReplyAttr,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyXattr, Request,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

const MAX_READ: u32 = 1 << 20;

pub struct ViewAdapter {
    view: MountedView<Own>,
    handles: Handles,
}

impl ViewAdapter {
    pub fn new(view: View) -> Self {
        ViewAdapter {
            view: MountedView {
                fs: ViewFs::new(view),
                map: Own,
            },
            handles: Handles::default(),
        }
    }
}

impl Filesystem for ViewAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let wanted = InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_ASYNC_READ
            | InitFlags::FUSE_MAX_PAGES;
        if let Err(missing) = config.add_capabilities(config.capabilities() & wanted) {
            log::warn!("kernel lacks FUSE capabilities {missing:?}");
        }
        if let Err(max) = config.set_max_readahead(MAX_READ) {
            let _ = config.set_max_readahead(max);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply::entry(reply, self.view.lookup(parent.0, name.as_bytes()));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        reply::attr(reply, self.view.attr(ino.0));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        reply::data(reply, self.view.readlink(ino.0));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        reply::opened(reply, self.view.open(ino.0, flags));
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        reply::data(reply, self.view.read(ino.0, offset, size));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let r = self.view.listing(ino.0).map(|list| {
            let fh = self.handles.add(Handle::Dir(list));
            (fh, FopenFlags::FOPEN_KEEP_CACHE)
        });
        reply::opened(reply, r);
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        reply::fill_dir(reply, self.handles.listed(fh, offset), offset);
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        let list = self.handles.listed(fh, offset);
        reply::fill_dir_plus(reply, list, offset, |e| self.view.attr(e.ino).map(Some));
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.handles.remove(fh);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply::statfs(reply, &self.view.fs.statfs());
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        reply::xattr(reply, size, self.view.getxattr(ino.0, name.as_bytes()));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        reply::xattr(reply, size, self.view.listxattr(ino.0));
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply::empty(reply, self.view.access(ino.0, mask));
    }
}
