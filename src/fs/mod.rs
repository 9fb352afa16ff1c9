//! Filesystem semantics over a [`Remote`]: inodes, attributes from cached listings, open
//! files. Knows nothing of FUSE (see `crate::fuse`) nor of FTP (see `crate::remote::ftp`).

pub mod dircache;
pub mod inode;
pub mod read;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use self::dircache::{DirCache, Listing};
use self::inode::{InodeTable, ROOT};
use self::read::ReadHandle;
use crate::error::FsError;
use crate::remote::pool::Clock;
use crate::remote::{Entry, Kind, Remote};

pub type Result<T> = std::result::Result<T, FsError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
}

/// What `stat` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: FileKind,
    pub size: u64,
    pub mtime: SystemTime,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone)]
pub struct FsConfig {
    /// How long a directory listing is trusted (`--dir-timeout`).
    pub dir_ttl: Duration,
    /// How long the kernel may trust attributes and names (`--attr-timeout`).
    pub attr_ttl: Duration,
    pub read_only: bool,
    pub uid: u32,
    pub gid: u32,
    /// Directories kept in the listing cache.
    pub dir_cache_capacity: usize,
}

/// One entry of a directory as `readdir` returns it.
pub struct DirEntry {
    pub ino: u64,
    pub name: String,
    pub attr: Attr,
}

enum Handle {
    Read(Arc<ReadHandle>),
}

pub struct Fs {
    remote: Arc<dyn Remote>,
    config: FsConfig,
    inodes: Mutex<InodeTable>,
    dirs: DirCache,
    handles: Mutex<HashMap<u64, Handle>>,
    next_handle: AtomicU64,
    mounted_at: SystemTime,
}

impl Fs {
    pub fn new(remote: Arc<dyn Remote>, config: FsConfig, clock: Arc<dyn Clock>) -> Self {
        Fs {
            dirs: DirCache::new(config.dir_cache_capacity, config.dir_ttl, clock),
            remote,
            config,
            inodes: Mutex::new(InodeTable::default()),
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            mounted_at: SystemTime::now(),
        }
    }

    pub fn config(&self) -> &FsConfig {
        &self.config
    }

    pub fn remote(&self) -> &Arc<dyn Remote> {
        &self.remote
    }

    fn path(&self, ino: u64) -> Result<String> {
        self.inodes.lock().path(ino).ok_or(FsError::NotFound)
    }

    fn listing(&self, dir: &str) -> Result<Arc<Listing>> {
        Ok(self.dirs.get(self.remote.as_ref(), dir)?)
    }

    fn attr_of(&self, ino: u64, e: &Entry) -> Attr {
        let (kind, default_perm) = match e.kind {
            Kind::Dir => (FileKind::Dir, 0o755),
            Kind::Symlink(_) => (FileKind::Symlink, 0o777),
            Kind::File | Kind::Other => (FileKind::File, 0o644),
        };
        let mut perm = e.mode.map(|m| (m & 0o7777) as u16).unwrap_or(default_perm);
        if self.config.read_only {
            perm &= !0o222;
        }
        Attr {
            ino,
            kind,
            size: e.size,
            mtime: e.mtime.unwrap_or(self.mounted_at),
            perm,
            uid: self.config.uid,
            gid: self.config.gid,
        }
    }

    fn root_attr(&self) -> Attr {
        Attr {
            ino: ROOT,
            kind: FileKind::Dir,
            size: 0,
            mtime: self.mounted_at,
            perm: if self.config.read_only { 0o555 } else { 0o755 },
            uid: self.config.uid,
            gid: self.config.gid,
        }
    }

    /// Finds `name` in directory `parent`; a found entry counts as a kernel reference.
    pub fn lookup(&self, parent: u64, name: &str) -> Result<Attr> {
        let dir = self.path(parent)?;
        let listing = self.listing(&dir)?;
        let entry = listing.get(name).ok_or(FsError::NotFound)?;
        let ino = self.inodes.lock().get_or_insert(parent, name, true);
        Ok(self.attr_of(ino, entry))
    }

    /// Counts a kernel reference to `name` in `parent` (an entry handed out by readdirplus).
    pub fn remember(&self, parent: u64, name: &str) {
        self.inodes.lock().get_or_insert(parent, name, true);
    }

    pub fn forget(&self, ino: u64, n: u64) {
        self.inodes.lock().forget(ino, n);
    }

    /// The entry of `ino` from its parent's listing (refreshed when stale).
    fn entry(&self, ino: u64) -> Result<(String, Entry)> {
        let path = self.path(ino)?;
        let (dir, name) = split(&path);
        let listing = self.listing(dir)?;
        let entry = listing.get(name).ok_or(FsError::NotFound)?.clone();
        Ok((path, entry))
    }

    pub fn getattr(&self, ino: u64) -> Result<Attr> {
        if ino == ROOT {
            return Ok(self.root_attr());
        }
        let (_, entry) = self.entry(ino)?;
        Ok(self.attr_of(ino, &entry))
    }

    pub fn readlink(&self, ino: u64) -> Result<String> {
        match self.entry(ino)?.1.kind {
            Kind::Symlink(Some(target)) => Ok(target),
            Kind::Symlink(None) => Err(FsError::Unsupported("the server does not show this link's target")),
            _ => Err(FsError::Invalid("not a symbolic link".into())),
        }
    }

    /// All entries of a directory, with attributes. `lookup` counts kernel references
    /// (for readdirplus, which hands the kernel full entries).
    pub fn readdir(&self, ino: u64, lookup: bool) -> Result<Vec<DirEntry>> {
        let dir = self.path(ino)?;
        if ino != ROOT && self.getattr(ino)?.kind != FileKind::Dir {
            return Err(FsError::NotDir);
        }
        let listing = self.listing(&dir)?;
        let mut inodes = self.inodes.lock();
        Ok(listing
            .entries
            .iter()
            .map(|e| {
                let child = inodes.get_or_insert(ino, &e.name, lookup);
                DirEntry { ino: child, name: e.name.clone(), attr: self.attr_of(child, e) }
            })
            .collect())
    }

    /// Opens a file for reading. Writing arrives with write support; until then it is refused.
    pub fn open(&self, ino: u64, write: bool) -> Result<u64> {
        if write {
            return Err(FsError::ReadOnly);
        }
        let (path, entry) = self.entry(ino)?;
        match entry.kind {
            Kind::Dir => return Err(FsError::IsDir),
            Kind::Other => return Err(FsError::Unsupported("devices, sockets and pipes cannot be opened over FTP")),
            _ => {}
        }
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let handle = Arc::new(ReadHandle::new(path, entry.size));
        self.handles.lock().insert(fh, Handle::Read(handle));
        Ok(fh)
    }

    pub fn read(&self, fh: u64, offset: u64, len: usize) -> Result<Vec<u8>> {
        let handle = match self.handles.lock().get(&fh) {
            Some(Handle::Read(h)) => h.clone(),
            None => return Err(FsError::BadHandle),
        };
        Ok(handle.read(self.remote.as_ref(), offset, len)?)
    }

    pub fn release(&self, fh: u64) {
        // Dropping the handle ends any transfer outside the map's lock.
        let handle = self.handles.lock().remove(&fh);
        drop(handle);
    }

    /// Frees sessions held by streams nobody reads; the janitor calls this often.
    pub fn close_idle_streams(&self) {
        let idle = if self.remote.sessions_wanted() { Duration::from_millis(50) } else { read::IDLE_CLOSE };
        let handles: Vec<Arc<ReadHandle>> =
            self.handles.lock().values().map(|Handle::Read(h)| h.clone()).collect();
        for h in handles {
            h.close_if_idle(idle);
        }
    }

    pub fn open_handles(&self) -> usize {
        self.handles.lock().len()
    }

    pub fn known_inodes(&self) -> usize {
        self.inodes.lock().len()
    }
}

/// `("a/b", "c")` for `"a/b/c"`, `("", "c")` for `"c"`.
pub fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::fake::FakeRemote;
    use crate::remote::pool::SystemClock;

    fn fs_with(fake: Arc<FakeRemote>) -> Fs {
        let config = FsConfig {
            dir_ttl: Duration::from_secs(60),
            attr_ttl: Duration::from_secs(1),
            read_only: false,
            uid: 1000,
            gid: 1000,
            dir_cache_capacity: 64,
        };
        Fs::new(fake, config, Arc::new(SystemClock))
    }

    #[test]
    fn stat_of_every_entry_costs_one_listing() {
        let fake = Arc::new(FakeRemote::new());
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for i in 0..100 {
            fake.add_file(&format!("d/f{i}"), b"abc", t);
        }
        let fs = fs_with(fake.clone());
        let d = fs.lookup(ROOT, "d").unwrap();
        assert_eq!(d.kind, FileKind::Dir);
        for i in 0..100 {
            let a = fs.lookup(d.ino, &format!("f{i}")).unwrap();
            assert_eq!((a.size, a.mtime, a.uid), (3, t, 1000));
        }
        assert_eq!(fake.lists.load(Ordering::SeqCst), 2, "root + d");
        assert!(matches!(fs.lookup(d.ino, "missing"), Err(FsError::NotFound)));
        assert_eq!(fake.lists.load(Ordering::SeqCst), 2, "negative answer from the cached listing");
    }

    #[test]
    fn reads_return_the_file_bytes() {
        let fake = Arc::new(FakeRemote::new());
        fake.add_file("a b/ü.txt", b"hello world", SystemTime::now());
        let fs = fs_with(fake);
        let dir = fs.lookup(ROOT, "a b").unwrap();
        let f = fs.lookup(dir.ino, "ü.txt").unwrap();
        let fh = fs.open(f.ino, false).unwrap();
        assert_eq!(fs.read(fh, 6, 100).unwrap(), b"world");
        fs.release(fh);
        assert!(matches!(fs.read(fh, 0, 1), Err(FsError::BadHandle)));
        assert!(matches!(fs.open(f.ino, true), Err(FsError::ReadOnly)));
    }

    #[test]
    fn readdir_lists_entries_and_refuses_files() {
        let fake = Arc::new(FakeRemote::new());
        fake.add_file("x", b"1", SystemTime::now());
        fake.add_dir("y");
        let fs = fs_with(fake);
        let names: Vec<String> = fs.readdir(ROOT, false).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["x", "y"]);
        let x = fs.lookup(ROOT, "x").unwrap();
        assert!(matches!(fs.readdir(x.ino, false), Err(FsError::NotDir)));
    }

    #[test]
    fn remote_failures_surface_as_errors_not_garbage() {
        let fake = Arc::new(FakeRemote::new());
        fake.add_file("x", b"1", SystemTime::now());
        let fs = fs_with(fake.clone());
        fake.fail_next(1);
        let err = fs.lookup(ROOT, "x").unwrap_err();
        assert_eq!(err.errno(), libc::EIO);
        assert!(fs.lookup(ROOT, "x").is_ok(), "the next try works");
    }
}
