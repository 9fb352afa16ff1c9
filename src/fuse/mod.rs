//! The FUSE adapter: the only module that imports fuser. Each call is translated into an
//! [`Fs`] call and its result into a reply; no policy lives here. Names cross as bytes
//! (see [`names`]): a name that is not UTF-8 is kept, not refused.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use std::time::SystemTime;

use fuser::{
    AccessFlags, BsdFileFlags, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, KernelConfig, LockOwner, MountOption, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, SessionACL, TimeOrNow, WriteFlags,
};

use crate::error::FsError;
use crate::fs::space::{Reported, SpaceCache};
use crate::fs::{Attr, FileKind, Fs, Invalidate, OpenMode, SetAttr};
use crate::names;

/// Reads and listings stream over the network; the kernel may ask for this much at once.
const MAX_READAHEAD: u32 = 1 << 20;
/// Threads answering kernel requests; requests beyond the session limit wait in the pool.
const FUSE_THREADS: usize = 16;

pub struct MountSpec<'a> {
    pub mountpoint: &'a Path,
    /// Shown as the source in `findmnt` (`ftpmount:HOST`).
    pub fsname: String,
    pub read_only: bool,
    pub allow_other: bool,
    /// What `statfs` reports.
    pub space: Arc<SpaceCache>,
}

/// A running mount. Dropping it does not unmount: unmount with `fusermount3 -u` (or
/// [`unmount`]) and then call [`Mounted::join`].
pub struct Mounted {
    session: fuser::BackgroundSession,
}

impl Mounted {
    /// Waits until the filesystem is unmounted.
    pub fn join(self) -> std::io::Result<()> {
        match self.session.join() {
            // The kernel ended the connection rather than unmounting it quietly: this happens
            // when a lazy unmount (ours, on a signal) races a file still being closed, and after
            // `umount -f` or an abort through /sys/fs/fuse/connections. Either way the mount is
            // gone; what was not saved is reported by the caller from its own bookkeeping.
            Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {
                tracing::info!("the kernel closed the FUSE connection (aborted, not a plain unmount)");
                Ok(())
            }
            other => other,
        }
    }
}

pub fn mount(fs: Arc<Fs>, spec: &MountSpec) -> std::io::Result<Mounted> {
    let mut options = vec![
        MountOption::FSName(spec.fsname.clone()),
        // As a kernel option (fuser hands `Subtype` only to fusermount), so the type reads
        // `fuse.ftpmount` however the mount is made.
        MountOption::CUSTOM("subtype=ftpmount".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
    ];
    if spec.read_only {
        options.push(MountOption::RO);
    }
    let mut config = Config::default();
    config.mount_options = options;
    config.acl = if spec.allow_other { SessionACL::All } else { SessionACL::Owner };
    config.n_threads = Some(FUSE_THREADS);
    config.clone_fd = true;
    let session = fuser::Session::new(FuseFs { fs: fs.clone(), space: spec.space.clone() }, spec.mountpoint, &config)?;
    fs.set_notifier(notifier(session.notifier()));
    Ok(Mounted { session: session.spawn()? })
}

/// Tells the kernel that something changed on the server. The kernel handles the notification
/// as it is written. Files (close-to-open): no lock of an `open` or `read` in progress is
/// needed; inside a read only attributes are dropped (dropping pages would wait for the page
/// being read). Names: the kernel takes the directory's lock, which a request in that
/// directory holds, so these come from the watcher's thread only (see `crate::fs::watch`).
fn notifier(n: fuser::Notifier) -> crate::fs::Notifier {
    Arc::new(move |what| {
        let (ino, offset) = match what {
            Invalidate::Inode(ino) => (ino, 0),
            Invalidate::Attr(ino) => (ino, -1),
            Invalidate::Entry { parent, name } => {
                // ENOENT: the kernel has no entry for the name, so nothing to drop.
                if let Err(e) = n.inval_entry(INodeNo(parent), &names::to_os(&name)) {
                    tracing::trace!("invalidating entry {name:?} in {parent}: {e}");
                }
                return;
            }
            Invalidate::Deleted { parent, child, name } => {
                let name = names::to_os(&name);
                // Refused for a directory the kernel still holds entries in (ENOTEMPTY), or
                // an entry that is not that inode any more: then only dropped.
                match n.delete(INodeNo(parent), INodeNo(child), &name) {
                    Ok(()) => tracing::trace!("told the kernel: {name:?} ({child}) left {parent}"),
                    Err(e) => {
                        tracing::trace!("deleting entry {name:?} in {parent}: {e}");
                        let _ = n.inval_entry(INodeNo(parent), &name);
                    }
                }
                return;
            }
        };
        // ENOENT: the kernel no longer has the inode, so nothing to drop.
        if let Err(e) = n.inval_inode(INodeNo(ino), offset, 0) {
            tracing::trace!("invalidating inode {ino}: {e}");
        }
    })
}

/// Detaches the mount (used on SIGINT/SIGTERM): `fusermount3 -u`, falling back to a lazy
/// unmount, so a busy mount never blocks the daemon's exit.
pub fn unmount(mountpoint: &Path) {
    let ok = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg(mountpoint)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if let Ok(c) = std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes()) {
            // SAFETY: a valid NUL-terminated path; MNT_DETACH never blocks on busy files.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

struct FuseFs {
    fs: Arc<Fs>,
    space: Arc<SpaceCache>,
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
    }
}

fn to_fuse(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.mtime,
        kind: file_type(a.kind),
        perm: a.perm,
        // Directories: 2 + subdirectories where known, else 1 (`find` then does not guess).
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: 128 * 1024,
        flags: 0,
    }
}

impl FuseFs {
    /// The errno for `e`. Routine outcomes (a missing file) are not logged; of the others, the
    /// first of each kind is logged as a warning (with the same words `check` uses) and the
    /// rest at debug level, so a dead data channel does not flood the log.
    fn errno(&self, op: &str, e: &FsError) -> Errno {
        if e.is_routine() {
            tracing::trace!("{op}: {e}");
        } else if self.fs.note_error(op, e) {
            tracing::warn!("{op}: {e}");
        } else {
            tracing::debug!("{op}: {e}");
        }
        Errno::from_i32(e.errno())
    }
}

fn open_mode(flags: i32, pid: u32) -> OpenMode {
    let acc = flags & libc::O_ACCMODE;
    OpenMode {
        pid,
        read: acc == libc::O_RDONLY || acc == libc::O_RDWR,
        write: acc == libc::O_WRONLY || acc == libc::O_RDWR,
        truncate: flags & libc::O_TRUNC != 0,
        append: flags & libc::O_APPEND != 0,
        create_mode: None,
    }
}

impl FuseFs {
    fn ttl(&self) -> Duration {
        self.fs.config().attr_ttl
    }
}

impl Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_readahead(MAX_READAHEAD);
        // ATOMIC_O_TRUNC: O_TRUNC arrives with open, not as a separate truncate beforehand,
        // so replacing a file streams to a temporary and the old one stays until it is done.
        let _ = config.add_capabilities(
            fuser::InitFlags::FUSE_DO_READDIRPLUS
                | fuser::InitFlags::FUSE_READDIRPLUS_AUTO
                | fuser::InitFlags::FUSE_ATOMIC_O_TRUNC
                // Attributes showing another size or time drop the kernel's cached pages.
                | fuser::InitFlags::FUSE_AUTO_INVAL_DATA,
        );
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = names::from_os(name);
        match self.fs.lookup(parent.0, &name) {
            Ok(a) => reply.entry(&self.ttl(), &to_fuse(&a), Generation(0)),
            Err(e) => reply.error(self.errno("lookup", &e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr(ino.0) {
            Ok(a) => reply.attr(&self.ttl(), &to_fuse(&a)),
            Err(e) => reply.error(self.errno("getattr", &e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.fs.readlink(ino.0) {
            Ok(target) => reply.data(names::to_os(&target).as_bytes()),
            Err(e) => reply.error(self.errno("readlink", &e)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut mode = open_mode(flags.0, req.pid());
        mode.write |= !matches!(flags.acc_mode(), OpenAccMode::O_RDONLY);
        // With the content cache, the kernel keeps a file's pages between opens: `open`
        // checks the file with the server and tells the kernel to drop them when it changed.
        let keep = !mode.write && !mode.truncate && self.fs.keeps_content();
        let flags = if keep { FopenFlags::FOPEN_KEEP_CACHE } else { FopenFlags::empty() };
        match self.fs.open(ino.0, mode) {
            Ok(fh) => reply.opened(FileHandle(fh), flags),
            Err(e) => reply.error(self.errno("open", &e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let name = names::from_os(name);
        let exclusive = flags & libc::O_EXCL != 0;
        let open = OpenMode { create_mode: Some(mode & !umask & 0o7777), ..open_mode(flags, req.pid()) };
        match self.fs.create(parent.0, &name, open, exclusive) {
            Ok((attr, fh)) => {
                reply.created(&self.ttl(), &to_fuse(&attr), Generation(0), FileHandle(fh), FopenFlags::empty())
            }
            Err(e) => reply.error(self.errno("create", &e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.fs.write(fh.0, offset, data) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(self.errno("write", &e)),
        }
    }

    fn flush(&self, req: &Request, _ino: INodeNo, fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        match self.fs.flush(fh.0, req.pid()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.errno("flush", &e)),
        }
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        match self.fs.fsync(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.errno("fsync", &e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = SetAttr {
            size,
            mtime: mtime.map(|t| match t {
                TimeOrNow::SpecificTime(t) => t,
                TimeOrNow::Now => SystemTime::now(),
            }),
            mode,
            owner_change: uid.is_some() || gid.is_some(),
        };
        match self.fs.setattr(ino.0, fh.map(|f| f.0), change) {
            Ok(a) => reply.attr(&self.ttl(), &to_fuse(&a)),
            Err(e) => reply.error(self.errno("setattr", &e)),
        }
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let name = names::from_os(name);
        match self.fs.mkdir_with_mode(parent.0, &name, Some(mode & !umask & 0o7777)) {
            Ok(a) => reply.entry(&self.ttl(), &to_fuse(&a), Generation(0)),
            Err(e) => reply.error(self.errno("mkdir", &e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.fs.unlink(parent.0, &names::from_os(name)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.errno("unlink", &e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.fs.rmdir(parent.0, &names::from_os(name)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.errno("rmdir", &e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_EXCHANGE) || flags.contains(RenameFlags::RENAME_WHITEOUT) {
            // FTP has no atomic exchange.
            return reply.error(Errno::EINVAL);
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        match self.fs.rename(parent.0, &names::from_os(name), newparent.0, &names::from_os(newname), no_replace) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.errno("rename", &e)),
        }
    }

    fn symlink(&self, _req: &Request, parent: INodeNo, link_name: &OsStr, _target: &Path, reply: ReplyEntry) {
        match self.fs.symlink(parent.0, &names::from_os(link_name)) {
            Ok(a) => reply.entry(&self.ttl(), &to_fuse(&a), Generation(0)),
            Err(e) => reply.error(self.errno("symlink", &e)),
        }
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _newparent: INodeNo, _newname: &OsStr, reply: ReplyEntry) {
        // FTP has no hard links.
        reply.error(Errno::EPERM);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        // Only regular files (through create) and directories exist over FTP.
        reply.error(Errno::EPERM);
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.fs.read(fh.0, offset, size as usize) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(self.errno("read", &e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.fs.release(fh.0);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(self.errno("opendir", &e)),
        }
    }

    fn releasedir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.fs.releasedir(fh.0, ino.0);
        reply.ok();
    }

    // Offsets: 1 is ".", 2 is "..", 3 + i is entry i of the handle's snapshot.
    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let snap = match self.fs.read_dir(fh.0, ino.0, offset) {
            Ok(s) => s,
            Err(e) => return reply.error(self.errno("readdir", &e)),
        };
        for (at, name) in [(0, "."), (1, "..")] {
            if offset <= at && reply.add(ino, at + 1, FileType::Directory, name) {
                return reply.ok();
            }
        }
        for i in offset.saturating_sub(2) as usize.. {
            let Some(e) = self.fs.dir_entry(&snap, i, false) else { break };
            if reply.add(INodeNo(e.ino), i as u64 + 3, file_type(e.attr.kind), names::to_os(&e.name)) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let snap = match self.fs.read_dir(fh.0, ino.0, offset) {
            Ok(s) => s,
            Err(e) => return reply.error(self.errno("readdirplus", &e)),
        };
        let ttl = self.ttl();
        if offset < 2 {
            let dir_attr = match self.fs.listed_dir_attr(ino.0) {
                Ok(a) => to_fuse(&a),
                Err(e) => return reply.error(self.errno("readdirplus", &e)),
            };
            for (at, name) in [(0, "."), (1, "..")] {
                if offset <= at && reply.add(ino, at + 1, name, &ttl, &dir_attr, Generation(0)) {
                    return reply.ok();
                }
            }
        }
        for i in offset.saturating_sub(2) as usize.. {
            let Some(e) = self.fs.dir_entry(&snap, i, true) else { break };
            let attr = to_fuse(&e.attr);
            // An entry handed over counts as a lookup (taken by `dir_entry`); the kernel
            // forgets it later. One that did not fit gives its reference back.
            if reply.add(INodeNo(e.ino), i as u64 + 3, names::to_os(&e.name), &ttl, &attr, Generation(0)) {
                self.fs.forget(e.ino, 1);
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        const BLOCK: u32 = 4096;
        let b = BLOCK as u64;
        // Unknown is 0 blocks, 0 free: GLib then leaves filesystem::free/size/used out (it
        // treats f_bavail == f_bfree == 0 on FUSE as "not reported"), `df` shows zeros.
        // With only the free figure known, the size shown is the free space (used: 0).
        let (blocks, free) = match self.space.get() {
            Reported::Server(s) => {
                let free = s.available / b;
                (s.total.map_or(free, |t| t / b).max(free), free)
            }
            Reported::Assumed(bytes) => (bytes / b, bytes / b),
            Reported::Unknown => (0, 0),
        };
        // No inode counts either: FTP has none (`df -i` shows 0).
        reply.statfs(blocks, free, free, 0, 0, BLOCK, 255, BLOCK);
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        // default_permissions makes the kernel check modes; we only need the node to exist
        // and writes to be refused on a read-only mount.
        match self.fs.getattr(ino.0) {
            Ok(_) if mask.contains(AccessFlags::W_OK) && self.fs.config().read_only => reply.error(Errno::EROFS),
            Ok(_) => reply.ok(),
            Err(e) => reply.error(self.errno("access", &e)),
        }
    }

    fn getxattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, reply: ReplyXattr) {
        // FTP has no extended attributes; answering at once keeps file managers fast.
        reply.error(Errno::ENOTSUP);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 { reply.size(0) } else { reply.data(&[]) }
    }
}
