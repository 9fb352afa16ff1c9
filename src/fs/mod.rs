//! Filesystem semantics over a [`Remote`]: inodes, attributes from cached listings, open
//! files. Knows nothing of FUSE (see `crate::fuse`) nor of FTP (see `crate::remote::ftp`).

pub mod case;
mod case_check;
#[cfg(test)]
mod case_tests;
#[cfg(test)]
mod consistency_tests;
pub mod content;
#[cfg(test)]
mod content_tests;
pub mod dircache;
pub mod inode;
#[cfg(test)]
mod names_tests;
#[cfg(test)]
mod posix_tests;
pub mod prefetch;
pub mod prefetch_files;
#[cfg(test)]
mod prefetch_files_tests;
pub mod read;
pub mod space;
pub mod spool;
pub mod trash;
pub mod watch;
pub mod write;
pub mod writeback;
#[cfg(test)]
mod writeback_tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use self::case::CaseRules;
use self::content::{ContentCache, Version};
use self::dircache::{DirCache, Listing};
use self::inode::{InodeTable, ROOT};
use self::read::ReadHandle;
use self::spool::Spool;
use self::write::WriteHandle;
use self::writeback::WriteBack;
use crate::error::FsError;
use crate::remote::pool::Clock;
use crate::remote::{Entry, Kind, Remote, RemoteError};

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
    /// When the attributes last changed (at least `mtime`): this mount's own changes count
    /// for a while (see [`LOCAL_TIMES_KEPT`]), the server's show as the modification time.
    pub ctime: SystemTime,
    pub perm: u16,
    /// Directories whose listing is cached: 2 + subdirectories; otherwise 1 ("unknown", so
    /// `find` does not guess subdirectory counts from it).
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The largest file the mount accepts (8 TiB): larger sizes (`truncate -s 999T`, a write past
/// it) get EFBIG before any spool space or command is used.
pub const MAX_FILE_SIZE: u64 = 1 << 43;
/// How long this mount's own changes of times are shown over the server's listing.
const LOCAL_TIMES_KEPT: Duration = Duration::from_secs(3600);
/// At most this many such notes are kept.
const MAX_LOCAL_TIMES: usize = 10_000;
/// The modes a server gives new files and directories where nobody asks (umask 022): asking
/// for these costs no `SITE CHMOD`.
const DEFAULT_FILE_MODE: u32 = 0o644;
const DEFAULT_DIR_MODE: u32 = 0o755;

/// Times this mount changed a path at.
#[derive(Clone, Copy)]
struct LocalTimes {
    /// A directory's entries changed (its mtime moves, as on the server).
    mtime: Option<SystemTime>,
    ctime: SystemTime,
    at: Instant,
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
    /// Where spool files for rewritten files go (`--cache-dir`).
    pub cache_dir: std::path::PathBuf,
    /// Most bytes all spool files may hold together (`--cache-max-size`).
    pub cache_max_size: u64,
    /// Case folding: collision policy and whether the server folds case.
    pub case: CaseRules,
    /// Background loaders of subdirectory listings (0: none).
    pub prefetch_workers: usize,
    /// `--prefetch-files`: the most files fetched ahead of a reader walking a directory (0:
    /// off; needs the content cache), and the sessions those downloads may use.
    pub prefetch_files: usize,
    pub prefetch_file_sessions: usize,
    /// `--write-back`: the source's queue directory.
    pub write_back: Option<std::path::PathBuf>,
    /// The content cache: its directory (this source's) and most bytes; `None`: off.
    pub content_cache: Option<(std::path::PathBuf, u64)>,
    /// `--watch-interval`: how often directories being looked at are listed again (zero: never).
    pub watch_interval: Duration,
}

/// Failures kept for `status`.
const RECENT_ERRORS: usize = 10;

#[derive(Default)]
struct ErrorLog {
    kinds: HashSet<&'static str>,
    recent: std::collections::VecDeque<(SystemTime, String)>,
}

/// A case check trusts a cached listing this young; older ones are fetched again, so a name
/// another client created a moment ago is seen.
const CASE_CHECK_FRESHNESS: Duration = Duration::from_secs(1);
/// How long a file closed with write-back counts as queued before its release arrives (a
/// process holding another descriptor of it keeps it open longer: then it is the process's).
const RELEASE_WAIT: Duration = Duration::from_secs(10);
/// How long a write waits for queued uploads to free spool space before failing (ENOSPC).
const SPOOL_WAIT: Duration = Duration::from_secs(60);
/// At most this many "already warned" notes are kept (directories, folded lookups).
const MAX_WARNED: usize = 10_000;

/// How a file is opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenMode {
    pub read: bool,
    pub write: bool,
    pub truncate: bool,
    pub append: bool,
    /// The process opening the file.
    pub pid: u32,
    /// For `create`: the permission bits asked for (umask applied).
    pub create_mode: Option<u32>,
}

/// What `setattr` asks to change.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetAttr {
    pub size: Option<u64>,
    pub mtime: Option<SystemTime>,
    pub mode: Option<u32>,
    pub owner_change: bool,
}

/// One entry of a directory as `readdir` returns it.
pub struct DirEntry {
    pub ino: u64,
    pub name: String,
    pub attr: Attr,
}

/// What the kernel is told to forget when the server's file changed (see `Fs::set_notifier`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidate {
    /// An inode's attributes and cached pages.
    Inode(u64),
    /// Only an inode's attributes (safe from inside a read, which holds a page lock).
    Attr(u64),
    /// A name in a directory (added on the server): the kernel's entry, or its note that
    /// there is none, is dropped. Never sent from a request in that directory (see `watch`).
    Entry { parent: u64, name: String },
    /// A name removed on the server, with the inode it had: the kernel drops the entry and
    /// tells inotify watchers (IN_DELETE).
    Deleted { parent: u64, child: u64, name: String },
}

/// Tells the kernel to forget something (set by the FUSE adapter at mount).
pub type Notifier = Arc<dyn Fn(Invalidate) + Send + Sync>;

/// Close-to-open: a listing this young answers `open`'s revalidation; older ones cost one
/// cheap command (`MLST`, or `SIZE` + `MDTM`).
const OPEN_FRESHNESS: Duration = Duration::from_secs(1);
/// At most this many inodes' "attributes the kernel was given" are kept.
const MAX_TOLD: usize = 100_000;

#[derive(Clone)]
enum Handle {
    /// Reading a file (and the inode it was opened as).
    Read(Arc<ReadHandle>, u64),
    Write(Arc<WriteHandle>),
    /// Reading a file whose write-back upload is queued: served from its spool.
    ReadQueued(Arc<WriteHandle>),
}

/// A file with data in flight, as `status` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TransferStatus {
    pub path: String,
    /// `download` or `upload`.
    pub direction: String,
    /// Bytes moved so far (unknown while the file is busy).
    pub bytes: Option<u64>,
    pub state: String,
    /// Since the file was opened.
    pub seconds: f64,
}

pub struct Fs {
    remote: Arc<dyn Remote>,
    config: FsConfig,
    inodes: Mutex<InodeTable>,
    dirs: Arc<DirCache>,
    /// Loads subdirectories' listings ahead of a tree walk (none in unit tests).
    prefetch: Option<Arc<prefetch::Prefetcher>>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_handle: AtomicU64,
    /// Set once the server refused a temporary upload name: new files then go to their own.
    temp_refused: Arc<AtomicBool>,
    mounted_at: SystemTime,
    spool: Spool,
    /// Files open for writing, by path: their size and time are ours until uploaded.
    writing: Mutex<HashMap<String, Arc<WriteHandle>>>,
    /// Write handles being released: out of `handles`, maybe not queued for upload yet.
    releasing: std::sync::atomic::AtomicUsize,
    /// Times we set, for servers whose listings show only minutes or days (e.g. directories
    /// on vsftpd): a listed time that agrees at its precision is shown as the exact one.
    set_times: Mutex<HashMap<String, SystemTime>>,
    /// Directories and folded lookups already warned about (one warning each per mount).
    case_warned: Mutex<HashSet<String>>,
    /// Kinds of failure seen so far, and the latest failures (for `status`).
    errors: Mutex<ErrorLog>,
    /// When a directory's cached names were last found equal to the server's (case checks).
    case_confirmed: Mutex<HashMap<String, Instant>>,
    /// The upload queue, with `--write-back`.
    write_back: Option<WriteBack>,
    clock: Arc<dyn Clock>,
    /// Tells the kernel to drop attributes it caches (none in unit tests).
    notifier: Mutex<Option<Notifier>>,
    /// The size and time each file's inode was last shown to the kernel with, so `open`
    /// knows whether the kernel must be told of a change.
    told: Mutex<HashMap<u64, (u64, SystemTime)>>,
    /// This mount's own changes: directory mtimes after changes inside, ctimes after
    /// attribute changes, by path (kept for [`LOCAL_TIMES_KEPT`]).
    local_times: Mutex<HashMap<String, LocalTimes>>,
    /// File content kept on disk between opens and mounts (`None`: off).
    content: Option<Arc<ContentCache>>,
    /// Fetches the next files of a directory a reader walks through (`None`: off).
    files_ahead: Option<Arc<prefetch_files::FilePrefetcher>>,
    /// Downloads readers left open when they closed, by path, for the next open.
    parked: Mutex<HashMap<String, read::Parked>>,
    /// Directories being looked at, listed again for changes made on the server.
    watch: watch::Watch,
}

impl Fs {
    pub fn new(remote: Arc<dyn Remote>, config: FsConfig, clock: Arc<dyn Clock>) -> Self {
        let dirs = Arc::new(DirCache::with_folding(
            config.dir_cache_capacity,
            config.dir_ttl,
            clock.clone(),
            config.case.needs_index().then_some(config.case.folding),
        ));
        let content = config.content_cache.as_ref().and_then(|(dir, limit)| match ContentCache::open(dir, *limit) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("the content cache is off for this mount: {}: {e}", dir.display());
                None
            }
        });
        let watch = watch::Watch::new(config.watch_interval);
        let files_ahead = content.as_ref().filter(|_| config.prefetch_files > 0).map(|c| {
            let limits = prefetch_files::Limits::new(config.prefetch_files, config.prefetch_file_sessions);
            prefetch_files::FilePrefetcher::start(c.clone(), remote.clone(), limits)
        });
        Fs {
            files_ahead,
            dirs: dirs.clone(),
            prefetch: (config.prefetch_workers > 0)
                .then(|| prefetch::Prefetcher::start(dirs, remote.clone(), config.prefetch_workers)),
            remote,
            inodes: Mutex::new(InodeTable::default()),
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            temp_refused: Arc::new(AtomicBool::new(false)),
            mounted_at: SystemTime::now(),
            spool: Spool::new(config.cache_dir.clone(), config.cache_max_size, config.write_back.clone()),
            write_back: config.write_back.clone().map(WriteBack::new),
            writing: Mutex::new(HashMap::new()),
            releasing: Default::default(),
            set_times: Mutex::new(HashMap::new()),
            case_warned: Mutex::new(HashSet::new()),
            case_confirmed: Mutex::new(HashMap::new()),
            errors: Mutex::new(ErrorLog::default()),
            clock,
            config,
            notifier: Mutex::new(None),
            told: Mutex::new(HashMap::new()),
            local_times: Mutex::new(HashMap::new()),
            content,
            parked: Mutex::new(HashMap::new()),
            watch,
        }
    }

    /// Whether the kernel may keep a file's pages between opens: the content cache is on,
    /// and `open` tells the kernel when the file changed.
    pub fn keeps_content(&self) -> bool {
        self.content.is_some()
    }

    /// The content cache's counters, for `status`.
    pub fn content_stats(&self) -> Option<content::ContentStats> {
        self.content.as_ref().map(|c| c.stats())
    }

    /// The prefetch's counters, for `status` (`None`: off).
    pub fn prefetch_stats(&self) -> Option<prefetch_files::PrefetchStats> {
        self.files_ahead.as_ref().map(|p| p.stats())
    }

    /// What the content cache holds of `path` is no longer the file's.
    fn forget_content(&self, path: &str) {
        if let Some(p) = &self.files_ahead {
            p.forget(path);
        }
        if let Some(c) = &self.content {
            c.forget(path);
        }
        let parked = self.parked.lock().remove(path);
        if let Some(p) = parked {
            p.end();
        }
    }

    fn forget_content_under(&self, dir: &str) {
        let prefix = format!("{dir}/");
        if let Some(p) = &self.files_ahead {
            p.forget_under(dir);
        }
        if let Some(c) = &self.content {
            c.forget_under(dir);
        }
        let mut parked = self.parked.lock();
        let under: Vec<String> = parked.keys().filter(|p| p.starts_with(&prefix)).cloned().collect();
        let ended: Vec<read::Parked> = under.iter().filter_map(|p| parked.remove(p)).collect();
        drop(parked);
        for p in ended {
            p.end();
        }
    }

    /// Notes that this mount changed `path` now: its ctime moves, and for a directory whose
    /// entries changed (`entries`), its mtime too.
    fn changed(&self, path: &str, entries: bool) {
        let now = SystemTime::now();
        let at = self.clock.now();
        let mut times = self.local_times.lock();
        if times.len() >= MAX_LOCAL_TIMES {
            times.retain(|_, t| at.saturating_duration_since(t.at) < LOCAL_TIMES_KEPT);
            if times.len() >= MAX_LOCAL_TIMES {
                times.clear();
            }
        }
        let old_mtime = times.get(path).and_then(|t| t.mtime);
        times.insert(
            path.to_string(),
            LocalTimes { mtime: if entries { Some(now) } else { old_mtime }, ctime: now, at },
        );
    }

    /// `mtime` and the ctime to show for `path`, with this mount's recent changes.
    fn local_times(&self, path: &str, mtime: SystemTime) -> (SystemTime, SystemTime) {
        let Some(t) = self.local_times.lock().get(path).copied() else { return (mtime, mtime) };
        if self.clock.now().saturating_duration_since(t.at) >= LOCAL_TIMES_KEPT {
            return (mtime, mtime);
        }
        let mtime = t.mtime.map_or(mtime, |m| m.max(mtime));
        (mtime, t.ctime.max(mtime))
    }

    /// 2 + subdirectories where the listing is cached, else 1.
    fn dir_nlink(&self, path: &str) -> u32 {
        self.dirs.peek(path).map_or(1, |l| 2 + l.entries.iter().filter(|e| e.kind == Kind::Dir).count() as u32)
    }

    /// Lets the filesystem tell the kernel that a file changed on the server.
    pub fn set_notifier(&self, notifier: Notifier) {
        *self.notifier.lock() = Some(notifier);
    }

    fn notify(&self, what: Invalidate) {
        let notifier = self.notifier.lock().clone();
        if let Some(n) = notifier {
            n(what);
        }
    }

    /// Records the attributes handed to the kernel (files only).
    fn tell(&self, attr: Attr) -> Attr {
        if attr.kind == FileKind::File {
            let mut told = self.told.lock();
            if told.len() >= MAX_TOLD {
                told.clear();
            }
            told.insert(attr.ino, (attr.size, attr.mtime));
        }
        attr
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
        let listing = self.dirs.get(self.remote.as_ref(), dir)?;
        self.warn_listed_collisions(dir, &listing);
        Ok(listing)
    }

    fn attr_of(&self, ino: u64, path: &str, e: &Entry) -> Attr {
        let (kind, default_perm) = match e.kind {
            Kind::Dir => (FileKind::Dir, 0o755),
            Kind::Symlink(_) => (FileKind::Symlink, 0o777),
            Kind::File | Kind::Other => (FileKind::File, 0o644),
        };
        let mut perm = e.mode.map(|m| (m & 0o7777) as u16).unwrap_or(default_perm);
        if self.config.read_only {
            perm &= !0o222;
        }
        let mut size = e.size;
        let mut mtime = e.mtime.map(|t| self.exact_time(path, t)).unwrap_or(self.mounted_at);
        let writing = self.writing.lock().get(path).cloned();
        if let Some(shown) = writing.map(|w| w.shown()) {
            size = shown.size;
            if let Some(t) = shown.mtime {
                mtime = t;
            }
            if let Some(m) = shown.mode {
                perm = (m & 0o7777) as u16;
            }
        }
        let (mtime, ctime) = self.local_times(path, mtime);
        let nlink = if kind == FileKind::Dir { self.dir_nlink(path) } else { 1 };
        Attr { ino, kind, size, mtime, ctime, perm, nlink, uid: self.config.uid, gid: self.config.gid }
    }

    /// The time we set on `path`, if the listed time agrees with it at the listing's precision.
    fn exact_time(&self, path: &str, listed: SystemTime) -> SystemTime {
        let set = self.set_times.lock();
        let Some(&ours) = set.get(path) else { return listed };
        let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let (l, o) = (secs(listed), secs(ours));
        if l == o || l == o - o % 60 || l == o - o % 86_400 { ours } else { listed }
    }

    fn root_attr(&self) -> Attr {
        let (mtime, ctime) = self.local_times("", self.mounted_at);
        Attr {
            ino: ROOT,
            kind: FileKind::Dir,
            size: 0,
            mtime,
            ctime,
            nlink: self.dir_nlink(""),
            perm: if self.config.read_only { 0o555 } else { 0o755 },
            uid: self.config.uid,
            gid: self.config.gid,
        }
    }

    /// A file being written that the server does not list yet.
    fn pending_entry(&self, path: &str) -> Option<Entry> {
        self.writing.lock().contains_key(path).then(|| Entry {
            name: split(path).1.to_string(),
            kind: Kind::File,
            size: 0,
            mtime: Some(SystemTime::now()),
            mode: None,
        })
    }

    /// The entry `name` in directory `dir`, from the listing or from files being written;
    /// on a server that folds case, also an entry whose name folds to `name`.
    fn find(&self, dir: &str, name: &str) -> Result<Entry> {
        let listing = self.listing(dir)?;
        if let Some(e) = listing.get(name) {
            return Ok(e.clone());
        }
        // Before files being written: one opened as `myfile.txt` may be `MyFile.txt`.
        if self.config.case.folded_lookups() {
            if let Some(e) = self.folded_match(dir, &listing, name) {
                return Ok(e);
            }
        }
        self.pending_entry(&join(dir, name)).ok_or(FsError::NotFound)
    }

    /// `path` (of an entry found as `entry`) spelled as the server lists it: after a folded
    /// lookup the kernel's name differs, and handles, caches and times must use one name.
    fn listed_path(path: &str, entry: &Entry) -> String {
        let (dir, name) = split(path);
        if name == entry.name { path.to_string() } else { join(dir, &entry.name) }
    }

    /// Like `find`, but only the exact name.
    fn find_exact(&self, dir: &str, name: &str) -> Option<Entry> {
        let listing = self.listing(dir).ok()?;
        listing.get(name).cloned().or_else(|| self.pending_entry(&join(dir, name)))
    }

    /// Finds `name` in directory `parent`; a found entry counts as a kernel reference.
    pub fn lookup(&self, parent: u64, name: &str) -> Result<Attr> {
        check_name_length(name)?;
        let dir = self.path(parent)?;
        let entry = match self.find(&dir, name) {
            // Made on the server since the directory was listed? (See `watch`.)
            Err(FsError::NotFound) if self.relist_for_lookup(parent, &dir) => self.find(&dir, name)?,
            found => found?,
        };
        let ino = self.inodes.lock().get_or_insert(parent, name, true);
        Ok(self.tell(self.attr_of(ino, &join(&dir, name), &entry)))
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
        let entry = self.find(dir, name)?;
        Ok((Self::listed_path(&path, &entry), entry))
    }

    pub fn getattr(&self, ino: u64) -> Result<Attr> {
        if ino == ROOT {
            return Ok(self.root_attr());
        }
        let (path, entry) = self.entry(ino)?;
        Ok(self.tell(self.attr_of(ino, &path, &entry)))
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
        if ino != ROOT && self.listed_dir_attr(ino)?.kind != FileKind::Dir {
            return Err(FsError::NotDir);
        }
        let listing = self.listing(&dir).map_err(|e| self.not_listed(&dir, e))?;
        self.watch.listed(ino, self.clock.now());
        let pending: Vec<Entry> = {
            let writing = self.writing.lock();
            writing
                .keys()
                .filter(|p| split(p).0 == dir && listing.get(split(p).1).is_none())
                .map(|p| Entry { name: split(p).1.to_string(), kind: Kind::File, size: 0, mtime: None, mode: None })
                .collect()
        };
        if let Some(p) = &self.prefetch {
            // A walk usually goes on into the subdirectories: have them listed meanwhile.
            p.want(
                listing
                    .entries
                    .iter()
                    .filter(|e| e.kind == Kind::Dir && !e.name.starts_with('.'))
                    .map(|e| join(&dir, &e.name))
                    .filter(|d| self.dirs.fresh(d).is_none()),
            );
        }
        let mut out = Vec::with_capacity(listing.entries.len() + pending.len());
        for e in listing.entries.iter().chain(pending.iter()) {
            let child = self.inodes.lock().get_or_insert(ino, &e.name, lookup);
            let attr = self.tell(self.attr_of(child, &join(&dir, &e.name), e));
            out.push(DirEntry { ino: child, name: e.name.clone(), attr });
        }
        Ok(out)
    }

    /// The attributes of a directory being listed (`readdir`, and readdirplus's `.`).
    pub fn listed_dir_attr(&self, ino: u64) -> Result<Attr> {
        self.getattr(ino).map_err(|e| self.not_listed(&self.path(ino).unwrap_or_default(), e))
    }

    /// Never ENOENT while listing a directory: the C library takes it from getdents for the
    /// end of a directory removed meanwhile, and `ls` would show a directory it could not list
    /// as empty. That holds for the look at the parent's listing too (the fault matrix saw a
    /// refused `CWD` into the parent, while readdirplus asked for the directory's own
    /// attributes, turn a directory of 20 files into an empty one).
    fn not_listed(&self, dir: &str, e: FsError) -> FsError {
        match e {
            FsError::Remote(RemoteError::NotFound(why)) => {
                self.dirs.invalidate(split(dir).0);
                FsError::Remote(RemoteError::Protocol(format!("{why} (the directory could not be listed)")))
            }
            FsError::NotFound => {
                self.dirs.invalidate(split(dir).0);
                FsError::Remote(RemoteError::Protocol(format!("/{dir} could not be found on the server")))
            }
            e => e,
        }
    }

    fn check_writable(&self) -> Result<()> {
        if self.config.read_only { Err(FsError::ReadOnly) } else { Ok(()) }
    }

    fn add_handle(&self, handle: Handle) -> u64 {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(fh, handle);
        fh
    }

    fn write_handle(&self, path: String, existed: bool, size: u64, mode: OpenMode) -> u64 {
        self.forget_content(&path);
        let read_write = mode.read && mode.write;
        let write_back = self.write_back.is_some();
        let temp_refused = (!existed && !write_back).then(|| self.temp_refused.clone());
        let handle = Arc::new(WriteHandle::new(
            path.clone(),
            temp_refused,
            size,
            mode.truncate,
            read_write,
            mode.pid,
            write_back,
        ));
        self.writing.lock().insert(path, handle.clone());
        self.add_handle(Handle::Write(handle))
    }

    pub fn open(&self, ino: u64, mode: OpenMode) -> Result<u64> {
        let path = self.path(ino)?;
        if let Some(queued) = self.queued(&path) {
            if !(mode.write || mode.truncate) {
                return Ok(self.add_handle(Handle::ReadQueued(queued)));
            }
            // A writer starts from the uploaded content, and its upload comes after.
            self.settle(&path)?;
        }
        let (path, entry) = match self.entry(ino) {
            // The kernel still knows a name the server does not have (a new file whose upload
            // failed, or one deleted elsewhere): opened to be truncated, it is written anew.
            Err(FsError::NotFound) if mode.write && mode.truncate => {
                self.check_writable()?;
                return Ok(self.write_handle(path, false, 0, mode));
            }
            found => found?,
        };
        match entry.kind {
            Kind::Dir => return Err(FsError::IsDir),
            Kind::Other => return Err(FsError::Unsupported("devices, sockets and pipes cannot be opened over FTP")),
            _ => {}
        }
        if mode.write || mode.truncate {
            self.check_writable()?;
            // Kept content (O_RDWR, O_APPEND) starts from what the server has now.
            let size = if mode.truncate {
                self.attr_of(ino, &path, &entry).size
            } else {
                self.revalidate(ino, &path, entry)?.size
            };
            return Ok(self.write_handle(path, true, size, mode));
        }
        // A reader walking the directory: its download, if under way, is waited for first.
        let fetched = self.walk_opened(&path);
        // Close-to-open: the size and time are checked with the server (or a listing younger
        // than a second); just uploaded, the writer knows them.
        let attr = match self.revalidate(ino, &path, entry) {
            Ok(a) => a,
            Err(e) => {
                if let Some(p) = &self.files_ahead {
                    p.served(fetched, false);
                    p.reader_closed(&path);
                }
                return Err(e);
            }
        };
        let (size, mtime) = (attr.size, self.server_mtime(&path));
        let cached = self.content.as_ref().zip(mtime).and_then(|(c, t)| c.open_file(&path, Version::of(size, t)));
        if let Some(p) = &self.files_ahead {
            p.served(fetched, cached.as_ref().is_some_and(|c| c.complete()));
        }
        let handle = ReadHandle::new(path.clone(), size, cached);
        let parked = self.parked.lock().remove(&path);
        match parked {
            Some(p) if p.size == size && p.mtime == mtime => handle.adopt(p),
            Some(other) => other.end(),
            None => {}
        }
        Ok(self.add_handle(Handle::Read(Arc::new(handle), ino)))
    }

    /// Tells the prefetch that `path` is opened for reading (see [`prefetch_files`]).
    fn walk_opened(&self, path: &str) -> Option<prefetch_files::Fetched> {
        let p = self.files_ahead.as_ref()?;
        p.reader_opened(path);
        let (dir, name) = split(path);
        let listing = self.dirs.peek(dir)?;
        p.opened(dir, name, &listing, self)
    }

    /// The modification time the server's listing shows for `path` (not this mount's local
    /// view of it): what the content cache checks versions by.
    fn server_mtime(&self, path: &str) -> Option<SystemTime> {
        let (dir, name) = split(path);
        self.dirs.peek(dir).and_then(|l| l.get(name).and_then(|e| e.mtime))
    }

    /// Creates `name` in `parent` and opens it for writing. The file appears on the server
    /// when it is first flushed or closed.
    pub fn create(&self, parent: u64, name: &str, mode: OpenMode, exclusive: bool) -> Result<(Attr, u64)> {
        self.check_writable()?;
        self.check_name(name)?;
        let dir = self.path(parent)?;
        trash::refuse(&dir, name)?;
        let path = join(&dir, name);
        let existing = self.find(&dir, name).ok();
        if let Some(e) = &existing {
            if exclusive {
                return Err(FsError::Remote(RemoteError::AlreadyExists(format!("{path} exists"))));
            }
            if e.kind == Kind::Dir {
                return Err(FsError::IsDir);
            }
        }
        if existing.is_some() && !mode.truncate {
            // The kernel took the name for free, but the file is there (a lookup failed, or
            // another client made it): O_CREAT without O_TRUNC opens it as it is.
            let ino = self.inodes.lock().get_or_insert(parent, name, true);
            let fh = self.open(ino, OpenMode { write: true, ..mode })?;
            return Ok((self.getattr(ino)?, fh));
        }
        if existing.is_none() {
            self.check_case(&dir, name, None)?;
        }
        let existed = existing.is_some();
        let fh = self.write_handle(path.clone(), existed, 0, OpenMode { truncate: true, write: true, ..mode });
        // The mode asked for applies to a new file, after its upload (SITE CHMOD).
        if let Some(m) = mode.create_mode.map(|m| m & 0o7777).filter(|&m| !existed && m != DEFAULT_FILE_MODE) {
            self.set_pending(&path, |st| st.pending_mode = Some(m));
        }
        if !existed {
            self.changed(&dir, true);
        }
        let ino = self.inodes.lock().get_or_insert(parent, name, true);
        let entry =
            Entry { name: name.to_string(), kind: Kind::File, size: 0, mtime: Some(SystemTime::now()), mode: None };
        Ok((self.tell(self.attr_of(ino, &path, &entry)), fh))
    }

    pub fn read(&self, fh: u64, offset: u64, len: usize) -> Result<read::Bytes> {
        match self.handle(fh)? {
            Handle::Read(h, ino) => self.read_checked(&h, ino, offset, len),
            Handle::Write(h) | Handle::ReadQueued(h) => {
                Ok(h.read_spooled(self.remote.as_ref(), &self.spool, offset, len)?.into())
            }
        }
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<usize> {
        match self.handle(fh)? {
            Handle::Write(h) => {
                if offset.saturating_add(data.len() as u64) > MAX_FILE_SIZE {
                    return Err(too_big(offset.saturating_add(data.len() as u64)));
                }
                let started = Instant::now();
                *h.closed_at.lock() = None;
                loop {
                    match h.write(self.remote.as_ref(), &self.spool, offset, data) {
                        Ok(()) => return Ok(data.len()),
                        // Write-back: queued uploads free the space, unless they are stuck.
                        Err(RemoteError::NoSpace(_))
                            if started.elapsed() < SPOOL_WAIT && self.wait_for_spool_space() => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Handle::Read(..) | Handle::ReadQueued(_) => Err(FsError::BadHandle),
        }
    }

    fn handle(&self, fh: u64) -> Result<Handle> {
        self.handles.lock().get(&fh).cloned().ok_or(FsError::BadHandle)
    }

    /// `close`: puts a file's changes on the server so errors reach the application; a close
    /// by another process (a child's inherited descriptor) waits for the release instead.
    pub fn flush(&self, fh: u64, pid: u32) -> Result<()> {
        match self.handle(fh)? {
            // Write-back: the content is safe in the spool once its journal entry is written.
            Handle::Write(h) if h.opener == pid && self.write_back.is_some() => {
                h.persist(&self.spool)?;
                *h.closed_at.lock() = Some(Instant::now());
                Ok(())
            }
            Handle::Write(h) if h.opener == pid => self.commit(&h),
            // What was read is in the content cache when `close` returns.
            Handle::Read(h, _) => {
                h.settle();
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// `fsync`: returns once the data is on the server.
    pub fn fsync(&self, fh: u64) -> Result<()> {
        match self.handle(fh)? {
            Handle::Write(h) => self.commit(&h),
            Handle::ReadQueued(h) => self.settle(&h.path()),
            Handle::Read(..) => Ok(()),
        }
    }

    fn commit(&self, h: &WriteHandle) -> Result<()> {
        let path = h.path();
        let _busy = self.watch.busy(&[split(&path).0]);
        let keep = |file: &std::fs::File, size: u64| {
            if let Some(c) = &self.content {
                c.keep_upload(&path, file, size);
            }
        };
        let result = h.commit(self.remote.as_ref(), &keep);
        match result {
            Ok(Some(size)) => {
                let (mode, pending, placed_mode, placed_mtime) = {
                    let mut st = h.state.lock();
                    (st.pending_mode.take(), st.pending_mtime.take(), st.placed_mode.take(), st.placed_mtime.take())
                };
                if let Some(mode) = mode {
                    self.apply_mode(&path, mode);
                }
                if let Some(t) = placed_mtime {
                    self.set_times.lock().insert(path.to_string(), t);
                }
                // Without a time asked for, the server's is about now; the next listing has
                // it exactly (asking costs a round trip per file).
                let mtime = match pending {
                    Some(t) => self.apply_mtime(&path, t).map(|()| Some(t)),
                    None => Ok(placed_mtime),
                };
                if let (Some(c), Ok(Some(t))) = (&self.content, &mtime) {
                    c.uploaded_time(&path, *t);
                }
                let mtime = mtime.unwrap_or_else(|e| {
                    tracing::warn!("{path}: {e}");
                    None
                });
                let (dir, name) = split(&path);
                let mode = placed_mode
                    .map(|m| m & 0o7777)
                    .or_else(|| self.dirs.fresh(dir).and_then(|l| l.get(name).and_then(|e| e.mode)));
                let mtime = mtime.or(Some(SystemTime::now()));
                self.dirs.upsert(dir, Entry { name: name.to_string(), kind: Kind::File, size, mtime, mode });
                Ok(())
            }
            Ok(None) => {
                let pending = h.state.lock().pending_mtime.take();
                if let Some(t) = pending {
                    self.apply_mtime(&path, t)?;
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!("{e}");
                self.forget_content(&path);
                // What the server has now is what a fresh listing shows.
                self.dirs.invalidate(split(&path).0);
                Err(e.into())
            }
        }
    }

    pub fn release(&self, fh: u64) {
        let handle = {
            let mut handles = self.handles.lock();
            let handle = handles.remove(&fh);
            // Counted before the handle leaves `handles`, so `status`/`sync` never see a
            // closed write-back file neither open nor queued (see `transfers`).
            if matches!(handle, Some(Handle::Write(_))) {
                self.releasing.fetch_add(1, Ordering::SeqCst);
            }
            handle
        };
        struct Released<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Released<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _released = matches!(handle, Some(Handle::Write(_))).then(|| Released(&self.releasing));
        if let Some(Handle::Read(r, _)) = &handle {
            if let Some(p) = &self.files_ahead {
                p.reader_closed(&r.path);
            }
            if let Some(p) = r.park(self.server_mtime(&r.path)) {
                if let Some(old) = self.parked.lock().insert(r.path.clone(), p) {
                    old.end();
                }
            }
        }
        let Some(Handle::Write(h)) = handle else { return };
        let path = h.path();
        let registered = self.writing.lock().get(&path).is_some_and(|w| Arc::ptr_eq(w, &h));
        if self.write_back.is_some() && registered && h.state.lock().dirty {
            match h.persist(&self.spool) {
                Ok(()) => return self.queue_upload(h),
                Err(e) => tracing::error!("closing {path}: the changes could not be kept for upload: {e}"),
            }
        } else if let Err(e) = self.commit(&h) {
            tracing::error!("closing {path}: the changes could not be saved: {e}");
        }
        let mut writing = self.writing.lock();
        if writing.get(&path).is_some_and(|w| Arc::ptr_eq(w, &h)) {
            writing.remove(&path);
        }
    }

    pub fn setattr(&self, ino: u64, fh: Option<u64>, change: SetAttr) -> Result<Attr> {
        if change.size.is_some() || change.mtime.is_some() || change.mode.is_some() {
            self.check_writable()?;
        }
        if change.size.is_some_and(|s| s > MAX_FILE_SIZE) {
            return Err(too_big(change.size.unwrap_or_default()));
        }
        let path = if ino == ROOT { String::new() } else { self.entry(ino)?.0 };
        let _busy = self.watch.busy(&[split(&path).0]);
        if change.size.is_some() || change.mtime.is_some() || change.mode.is_some() || change.owner_change {
            self.changed(&path, false);
        }
        if change.mtime.is_some() {
            // A time set on purpose (`rsync -a` on a directory it filled) wins over ours.
            if let Some(t) = self.local_times.lock().get_mut(&path) {
                t.mtime = None;
            }
        }
        if let Some(size) = change.size {
            self.truncate(ino, &path, fh, size)?;
        }
        if let Some(mtime) = change.mtime {
            match self.set_pending(&path, |st| st.pending_mtime = Some(mtime)) {
                true => {}
                false => {
                    self.apply_mtime(&path, mtime)?;
                    let (dir, name) = split(&path);
                    if let Ok(mut e) = self.find(dir, name) {
                        e.mtime = Some(mtime);
                        self.dirs.upsert(dir, e);
                    }
                }
            }
        }
        // Not on the server yet (or about to be replaced): applied after the upload.
        if let Some(mode) = change.mode {
            if !self.set_pending(&path, |st| st.pending_mode = Some(mode)) {
                self.apply_mode(&path, mode);
            }
        }
        // Owners cannot be changed over FTP; accepted so `cp -a` and `rsync -a` succeed.
        self.getattr(ino)
    }

    /// Changes an attribute of a file whose content is still to be uploaded; false when
    /// there is no such file (any more).
    fn set_pending(&self, path: &str, change: impl FnOnce(&mut write::WriteState)) -> bool {
        let Some(w) = self.writing.lock().get(path).cloned() else { return false };
        let _running = w.released.load(Ordering::Relaxed).then(|| w.job.lock());
        let mut st = w.state.lock();
        if !st.dirty {
            return false;
        }
        change(&mut st);
        if w.released.load(Ordering::Relaxed) {
            if let Err(e) = w.persist_locked(&mut st, &self.spool) {
                tracing::warn!("write-back: {e}");
            }
        }
        true
    }

    fn truncate(&self, ino: u64, path: &str, fh: Option<u64>, size: u64) -> Result<()> {
        self.settle(path)?;
        let open = match fh.map(|f| self.handle(f)) {
            Some(Ok(Handle::Write(h))) => Some(h),
            _ => self.writing.lock().get(path).cloned(),
        };
        if let Some(h) = open {
            return Ok(h.truncate(self.remote.as_ref(), &self.spool, size)?);
        }
        let attr = self.getattr(ino)?;
        if attr.kind == FileKind::Dir {
            return Err(FsError::IsDir);
        }
        if attr.size == size {
            return Ok(());
        }
        // Not open: rewrite the file through a short-lived handle (safe replace applies).
        let h = WriteHandle::new(path.to_string(), None, attr.size, false, false, 0, false);
        h.truncate(self.remote.as_ref(), &self.spool, size)?;
        self.commit(&h)
    }

    fn apply_mtime(&self, path: &str, t: SystemTime) -> Result<()> {
        match self.remote.set_mtime(path, t) {
            Ok(()) => {
                self.set_times.lock().insert(path.to_string(), t);
                Ok(())
            }
            // Many servers set times on files only; a directory keeps the server's time.
            Err(e) if self.is_dir(path) => {
                tracing::debug!("{path}: the server does not set directory times ({e})");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn is_dir(&self, path: &str) -> bool {
        let (dir, name) = split(path);
        path.is_empty() || self.find(dir, name).is_ok_and(|e| e.kind == Kind::Dir)
    }

    /// Permission bits go to the server where it supports SITE CHMOD; where it does not, or
    /// refuses, the change is accepted and the server's bits stay (documented), because
    /// copying tools treat a failed chmod as a failed copy.
    fn apply_mode(&self, path: &str, mode: u32) {
        let (dir, name) = split(path);
        // rsync and cp -p set the mode the file already has (often twice): no round trip.
        let current = self.dirs.fresh(dir).and_then(|l| l.get(name).and_then(|e| e.mode));
        if current == Some(mode & 0o7777) {
            return;
        }
        match self.remote.chmod(path, mode) {
            Ok(()) => {
                if let Ok(mut e) = self.find(dir, name) {
                    e.mode = Some(mode & 0o7777);
                    self.dirs.upsert(dir, e);
                }
            }
            Err(RemoteError::Unsupported(_)) => {}
            Err(e) => tracing::debug!("{path}: permission change not applied: {e}"),
        }
    }

    /// New names that cannot be sent in an FTP command, or that the server's charset cannot
    /// hold, are refused before any command is built.
    fn check_name(&self, name: &str) -> Result<()> {
        check_name_length(name)?;
        if name.contains(['\r', '\n', '\0']) || name.contains('/') {
            return Err(FsError::Invalid(format!(
                "{name:?} contains a character FTP cannot carry (CR, LF, NUL or '/')"
            )));
        }
        match self.remote.refuses_name(name) {
            Some(why) => Err(FsError::Unrepresentable(why)),
            None => Ok(()),
        }
    }

    /// Symbolic links cannot be made over FTP (EPERM); an overlong name is still ENAMETOOLONG.
    pub fn symlink(&self, _parent: u64, name: &str) -> Result<Attr> {
        check_name_length(name)?;
        Err(FsError::NotPermitted("FTP cannot create symbolic links"))
    }

    pub fn mkdir(&self, parent: u64, name: &str) -> Result<Attr> {
        self.mkdir_with_mode(parent, name, None)
    }

    /// `mkdir` with the permission bits asked for (umask applied), set with SITE CHMOD
    /// where they differ from the server's usual 0755.
    pub fn mkdir_with_mode(&self, parent: u64, name: &str, mode: Option<u32>) -> Result<Attr> {
        self.check_writable()?;
        self.check_name(name)?;
        let dir = self.path(parent)?;
        let _busy = self.watch.busy(&[&dir]);
        if self.find(&dir, name).is_ok() {
            return Err(FsError::Remote(RemoteError::AlreadyExists(format!("{} exists", join(&dir, name)))));
        }
        trash::refuse(&dir, name)?;
        self.check_case(&dir, name, None)?;
        let path = join(&dir, name);
        self.remote.mkdir(&path).map_err(|e| self.unsure(&[&dir], e))?;
        let mut entry =
            Entry { name: name.to_string(), kind: Kind::Dir, size: 0, mtime: Some(SystemTime::now()), mode: None };
        self.dirs.upsert(&dir, entry.clone());
        self.changed(&dir, true);
        if let Some(m) = mode.map(|m| m & 0o7777).filter(|&m| m != DEFAULT_DIR_MODE) {
            self.apply_mode(&path, m);
            entry = self.dirs.peek(&dir).and_then(|l| l.get(name).cloned()).unwrap_or(entry);
        }
        // A new directory is empty: no need to ask.
        self.dirs.insert_empty(&path);
        let ino = self.inodes.lock().get_or_insert(parent, name, true);
        Ok(self.attr_of(ino, &path, &entry))
    }

    pub fn unlink(&self, parent: u64, name: &str) -> Result<()> {
        self.check_writable()?;
        let dir = self.path(parent)?;
        let _busy = self.watch.busy(&[&dir]);
        let entry = self.find(&dir, name)?;
        if entry.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        let path = Self::listed_path(&join(&dir, name), &entry);
        let pending = self.writing.lock().get(&path).cloned();
        if let Some(h) = pending {
            // Changes not uploaded never will be (not at close either). A write-back upload in
            // progress finishes first, and then the file is listed like any other.
            let _running = h.released.load(Ordering::Relaxed).then(|| h.job.lock());
            if let Some(partial) = h.discard() {
                let _ = self.remote.delete(&partial);
            }
            let mut writing = self.writing.lock();
            if writing.get(&path).is_some_and(|w| Arc::ptr_eq(w, &h)) {
                writing.remove(&path);
            }
        }
        if self.listing(&dir)?.get(&entry.name).is_some() {
            self.remote.delete(&path).map_err(|e| self.unsure(&[&dir], e))?;
        }
        // The listed name, which differs from `name` after a folded lookup.
        self.dirs.remove_entry(&dir, &entry.name);
        self.forget_content(&path);
        self.set_times.lock().remove(&path);
        self.changed(&dir, true);
        self.inodes.lock().detach(parent, name);
        Ok(())
    }

    pub fn rmdir(&self, parent: u64, name: &str) -> Result<()> {
        self.check_writable()?;
        let dir = self.path(parent)?;
        let _busy = self.watch.busy(&[&dir]);
        let entry = self.find(&dir, name)?;
        if entry.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        let path = Self::listed_path(&join(&dir, name), &entry);
        let prefix = format!("{path}/");
        if self.writing.lock().keys().any(|p| p.starts_with(&prefix)) {
            return Err(FsError::Remote(RemoteError::NotEmpty(format!("{path} holds files being written"))));
        }
        // Ask the server, not the cache: someone may have added files.
        self.dirs.invalidate(&path);
        match self.listing(&path) {
            Ok(listing) if !listing.entries.is_empty() => {
                return Err(FsError::Remote(RemoteError::NotEmpty(format!("{path} is not empty"))));
            }
            Ok(_) => {}
            // One that cannot be entered (no x bit) may still be removed: the server decides.
            Err(FsError::Remote(RemoteError::NotFound(_) | RemoteError::PermissionDenied(_))) => {}
            Err(e) => return Err(e),
        }
        self.remote.rmdir(&path).map_err(|e| self.unsure(&[&dir], e))?;
        self.forget_content_under(&path);
        self.dirs.remove_entry(&dir, &entry.name);
        self.dirs.invalidate_tree(&path);
        self.changed(&dir, true);
        self.inodes.lock().detach(parent, name);
        Ok(())
    }

    /// POSIX rename: replaces an existing file (or empty directory) at the destination.
    pub fn rename(&self, parent: u64, name: &str, new_parent: u64, new_name: &str, no_replace: bool) -> Result<()> {
        self.check_writable()?;
        self.check_name(new_name)?;
        let (dir, new_dir) = (self.path(parent)?, self.path(new_parent)?);
        trash::refuse(&new_dir, new_name)?;
        let _busy = self.watch.busy(&[&dir, &new_dir]);
        let entry = self.find(&dir, name)?;
        let (from, to) = (Self::listed_path(&join(&dir, name), &entry), join(&new_dir, new_name));
        if from == to {
            return Ok(());
        }
        if self.config.case.server_folds && self.folds_into(&to, &from) {
            // `mv photos Photos` where a folded lookup made `Photos` look like another
            // directory: mv would move photos into itself, which breaks some servers.
            return Err(FsError::Invalid(format!(
                "{} would move into itself on this server (it folds case); for a case-only rename use mv -T",
                shown(&from)
            )));
        }
        let target_exists = self.find_exact(&new_dir, new_name).is_some();
        // `mv readme README`: the same entry under a new spelling, not a collision.
        let case_only =
            dir == new_dir && !target_exists && crate::casefold::collide(name, new_name, self.config.case.folding);
        if !target_exists {
            self.check_case(&new_dir, new_name, (dir == new_dir).then_some(name))?;
        }
        if no_replace && target_exists {
            return Err(FsError::Remote(RemoteError::AlreadyExists(format!("{to} exists"))));
        }
        let pending = self.writing.lock().get(&from).cloned();
        if let Some(w) = pending {
            if self.write_back.is_some() && !case_only && self.rename_pending(&w, &from, &to, &new_dir, new_name)? {
                self.renamed(parent, name, new_parent, new_name, &from, &to);
                return Ok(());
            }
            // Changes still pending go up first, under the old name, so they are not lost.
            self.commit(&w)?;
        }
        if entry.kind == Kind::Dir {
            self.settle_tree(&from)?;
        }
        if case_only {
            self.rename_case_only(&from, &to)?;
        } else if let Ok(existing) = self.find(&new_dir, new_name) {
            if no_replace {
                return Err(FsError::Remote(RemoteError::AlreadyExists(format!("{to} exists"))));
            }
            match (entry.kind == Kind::Dir, existing.kind == Kind::Dir) {
                (false, true) => return Err(FsError::IsDir),
                (true, false) => return Err(FsError::NotDir),
                (true, true) => {
                    self.dirs.invalidate(&to);
                    if !self.listing(&to)?.entries.is_empty() {
                        return Err(FsError::Remote(RemoteError::NotEmpty(format!("{to} is not empty"))));
                    }
                    self.remote.rmdir(&to)?;
                }
                (false, false) => {}
            }
            write::replace(self.remote.as_ref(), &from, &to).map_err(|e| self.unsure(&[&dir, &new_dir], e))?;
        } else {
            self.remote.rename(&from, &to).map_err(|e| self.unsure(&[&dir, &new_dir], e))?;
        }
        if let Some(mut e) = self.dirs.remove_entry(&dir, &entry.name) {
            e.name = new_name.to_string();
            self.dirs.upsert(&new_dir, e);
        } else {
            self.dirs.invalidate(&dir);
            self.dirs.invalidate(&new_dir);
        }
        self.dirs.invalidate_tree(&from);
        self.dirs.invalidate_tree(&to);
        for p in [&from, &to] {
            self.forget_content(p);
            self.forget_content_under(p);
        }
        self.renamed(parent, name, new_parent, new_name, &from, &to);
        Ok(())
    }

    /// A change whose connection failed may or may not have happened on the server: the
    /// listings involved are dropped, so the next look shows what the server has.
    fn unsure(&self, dirs: &[&str], e: RemoteError) -> FsError {
        if e.breaks_session() {
            for d in dirs {
                self.dirs.invalidate(d);
            }
        }
        e.into()
    }

    /// Bookkeeping after a rename: times we set, and the inode's name.
    fn renamed(&self, parent: u64, name: &str, new_parent: u64, new_name: &str, from: &str, to: &str) {
        let mut times = self.set_times.lock();
        if let Some(t) = times.remove(from) {
            times.insert(to.to_string(), t);
        }
        drop(times);
        self.changed(split(from).0, true);
        self.changed(split(to).0, true);
        self.changed(to, false);
        self.inodes.lock().rename(parent, name, new_parent, new_name);
    }

    /// Write-back: a file whose upload has not happened moves by changing where the upload
    /// goes (the old version, if the server has one, moves along now so the old name is gone).
    /// False when the upload has just finished and the server must do the rename.
    fn rename_pending(
        &self,
        w: &Arc<WriteHandle>,
        from: &str,
        to: &str,
        new_dir: &str,
        new_name: &str,
    ) -> Result<bool> {
        // Whatever waits to be uploaded to the target is replaced by this file.
        if let Some(other) = self.writing.lock().get(to).cloned() {
            if !Arc::ptr_eq(&other, w) {
                if let Some(partial) = other.discard() {
                    let _ = self.remote.delete(&partial);
                }
            }
        }
        let _running = w.released.load(Ordering::Relaxed).then(|| w.job.lock());
        let (dir, name) = split(from);
        let listed = self.listing(dir)?.get(name).cloned();
        if self.find_exact(new_dir, new_name).is_some_and(|e| e.kind == Kind::Dir) {
            return Err(FsError::IsDir);
        }
        let st = w.state.lock();
        if !st.dirty {
            return Ok(false);
        }
        if let Some(mut old) = listed {
            write::replace(self.remote.as_ref(), from, to)?;
            old.name = new_name.to_string();
            self.dirs.upsert(new_dir, old);
        }
        self.dirs.remove_entry(dir, name);
        w.set_path(&st, to);
        let mut writing = self.writing.lock();
        if writing.get(from).is_some_and(|x| Arc::ptr_eq(x, w)) {
            writing.remove(from);
        }
        writing.insert(to.to_string(), w.clone());
        drop(writing);
        drop(st);
        if w.released.load(Ordering::Relaxed) {
            self.persist(w);
        }
        Ok(true)
    }

    /// Close-to-open consistency: the size and time of a file being opened for reading, from
    /// its parent's listing if that is younger than [`OPEN_FRESHNESS`], else asked of the
    /// server with one cheap command (the listing is corrected). When they differ from what
    /// the kernel was last given, the kernel drops its cached attributes and pages.
    fn revalidate(&self, ino: u64, path: &str, mut entry: Entry) -> Result<Attr> {
        let (dir, name) = split(path);
        let ours = self.writing.lock().contains_key(path);
        let young =
            self.dirs.peek(dir).is_some_and(|l| self.clock.now().saturating_duration_since(l.fetched) < OPEN_FRESHNESS);
        if !ours && !young {
            match self.remote.stat(path) {
                Ok(Some((size, mtime))) => {
                    let mtime = mtime.or(entry.mtime);
                    if size != entry.size || mtime != entry.mtime {
                        tracing::debug!("{path}: changed on the server ({} -> {size} bytes)", entry.size);
                        entry.size = size;
                        entry.mtime = mtime;
                        self.dirs.upsert(dir, entry.clone());
                    }
                }
                Ok(None) => {
                    self.dirs.remove_entry(dir, name);
                    self.forget_content(path);
                    self.notify(Invalidate::Inode(ino));
                    return Err(FsError::NotFound);
                }
                // The server cannot tell: the listing stays the answer.
                Err(RemoteError::Unsupported(e)) => tracing::trace!("{e}"),
                Err(e) => return Err(e.into()),
            }
        }
        let attr = self.attr_of(ino, path, &entry);
        self.told_changed(&attr);
        Ok(attr)
    }

    /// Records `attr` as the kernel's, telling the kernel to drop what it had if it differs.
    fn told_changed(&self, attr: &Attr) {
        let before = self.told.lock().insert(attr.ino, (attr.size, attr.mtime));
        if before.is_some_and(|t| t != (attr.size, attr.mtime)) {
            self.notify(Invalidate::Inode(attr.ino));
        }
    }

    /// A read, with the transfer's word on the size: more bytes than the size shown (the
    /// file grew) correct the size; fewer (after one restart) are the end only if the
    /// server now says so, else an error, never a silently short file.
    fn read_checked(&self, h: &ReadHandle, ino: u64, offset: u64, len: usize) -> Result<read::Bytes> {
        let size = h.size();
        let expected = if offset >= size { 0 } else { len.min((size - offset) as usize) };
        let mut data = h.read(self.remote.as_ref(), offset, len)?;
        if let Some(p) = &self.files_ahead {
            // Read whole, to the end: a step of a walk through the directory.
            let end = offset + data.len() as u64;
            if end >= size && !data.is_empty() && h.delivered.load(Ordering::Relaxed) >= size {
                let (dir, name) = split(&h.path);
                if let Some(listing) = self.dirs.peek(dir) {
                    p.read_to_end(dir, name, &listing, self);
                }
            }
        }
        if h.take_grown() {
            let end = h.size();
            let now = match self.remote.stat(&h.path) {
                Ok(Some((n, mtime))) => Some((n.max(end), mtime)),
                _ => None,
            };
            let (n, mtime) = now.unwrap_or((end, None));
            tracing::debug!("{}: grew on the server ({size} -> {n} bytes)", h.path);
            h.set_size(n);
            self.corrected(ino, &h.path, n, mtime, true);
        } else if data.len() < expected {
            let end = offset + data.len() as u64;
            match self.remote.stat(&h.path) {
                Ok(Some((n, mtime))) if n < size => {
                    tracing::debug!("{}: shrank on the server ({size} -> {n} bytes)", h.path);
                    h.set_size(n);
                    data.truncate(n.saturating_sub(offset) as usize);
                    self.corrected(ino, &h.path, n, mtime, false);
                }
                Ok(None) => return Err(FsError::NotFound),
                _ => {
                    return Err(FsError::Remote(RemoteError::Connection(format!(
                        "reading {}: the transfer ended at byte {end}, but the file has {size} bytes; \
                         the data connection may have been cut. Read the file again",
                        shown(&h.path)
                    ))));
                }
            }
        }
        Ok(data)
    }

    /// The server's file has another size than shown: the listing learns it, and the kernel
    /// too. A file that grew: its attributes are dropped (only those: this runs inside a
    /// read, whose page the kernel holds locked), so the kernel asks for the new size when it
    /// reads past the old one. A file that shrank: the short read itself sets the kernel's
    /// size, but only if no notification came in between (it would then keep the old size
    /// and pad with zeros); its old time is kept as told, so the next `open` corrects it.
    fn corrected(&self, ino: u64, path: &str, size: u64, mtime: Option<SystemTime>, grew: bool) {
        self.forget_content(path);
        let (dir, name) = split(path);
        if let Some(mut e) = self.dirs.peek(dir).and_then(|l| l.get(name).cloned()) {
            e.size = size;
            e.mtime = mtime.or(e.mtime);
            self.dirs.upsert(dir, e);
        }
        if grew {
            self.told.lock().remove(&ino);
            self.notify(Invalidate::Attr(ino));
        } else if let Some(t) = self.told.lock().get_mut(&ino) {
            t.0 = size;
        }
    }

    /// Frees sessions held by streams nobody reads; the janitor calls this often.
    pub fn close_idle_streams(&self) {
        let idle = if self.remote.sessions_wanted() { Duration::from_millis(50) } else { read::IDLE_CLOSE };
        let handles: Vec<Arc<ReadHandle>> = self
            .handles
            .lock()
            .values()
            .filter_map(|h| match h {
                Handle::Read(r, _) => Some(r.clone()),
                Handle::Write(_) | Handle::ReadQueued(_) => None,
            })
            .collect();
        for h in handles {
            h.close_if_idle(idle);
        }
        let mut parked = self.parked.lock();
        let done: Vec<String> = parked.iter().filter(|(_, p)| p.idle_for() >= idle).map(|(k, _)| k.clone()).collect();
        let ended: Vec<read::Parked> = done.iter().filter_map(|k| parked.remove(k)).collect();
        drop(parked);
        for p in ended {
            p.end();
        }
        if let Some(c) = &self.content {
            c.flush_if_due();
        }
        if let Some(p) = &self.files_ahead {
            p.tick();
        }
    }

    /// Ends what readers left open and saves what the content cache holds (at unmount).
    pub fn close_reads(&self) {
        if let Some(p) = &self.files_ahead {
            p.stop();
        }
        let parked: Vec<read::Parked> = self.parked.lock().drain().map(|(_, p)| p).collect();
        for p in parked {
            p.end();
        }
        if let Some(c) = &self.content {
            c.flush();
        }
    }

    /// Uploads every file with pending changes (at unmount). Returns how many failed.
    pub fn flush_all(&self) -> usize {
        // Queued write-back uploads are the queue's (see `finish_write_back`).
        let pending: Vec<Arc<WriteHandle>> =
            self.writing.lock().values().filter(|h| !h.released.load(Ordering::Relaxed)).cloned().collect();
        pending.iter().filter(|h| self.commit(h).is_err()).count()
    }

    /// Open files with data moving or waiting to move, for `status`.
    pub fn transfers(&self) -> Vec<TransferStatus> {
        let handles: Vec<Handle> = self.handles.lock().values().map(Handle::clone).collect();
        let mut out = Vec::new();
        for h in handles {
            match h {
                Handle::Read(r, _) if r.in_flight() => out.push(TransferStatus {
                    path: shown(&r.path),
                    direction: "download".into(),
                    bytes: Some(r.delivered.load(Ordering::Relaxed)),
                    state: "streaming".into(),
                    seconds: r.opened.elapsed().as_secs_f64(),
                }),
                // Closed, its release (which queues it) still on the way: `sync` waits for it.
                Handle::Write(w)
                    if w.closed_at.lock().is_some_and(|t| t.elapsed() < RELEASE_WAIT)
                        && matches!(w.progress(), write::WriteProgress::Spooled(_)) =>
                {
                    out.push(TransferStatus {
                        path: shown(&w.path()),
                        direction: "upload".into(),
                        bytes: None,
                        state: "closing (write-back)".into(),
                        seconds: w.opened.elapsed().as_secs_f64(),
                    });
                }
                Handle::Write(w) => {
                    let (bytes, state) = match w.progress() {
                        write::WriteProgress::Streaming(n) => (Some(n), "streaming"),
                        write::WriteProgress::Spooled(n) => (Some(n), "spooled, uploads at close"),
                        write::WriteProgress::Busy => (None, "busy"),
                        write::WriteProgress::Idle => continue,
                    };
                    out.push(TransferStatus {
                        path: shown(&w.path()),
                        direction: "upload".into(),
                        bytes,
                        state: state.into(),
                        seconds: w.opened.elapsed().as_secs_f64(),
                    });
                }
                _ => {}
            }
        }
        // A write handle between its release and its place in the queue (a moment).
        if self.write_back.is_some() && self.releasing.load(Ordering::SeqCst) > 0 {
            out.push(TransferStatus {
                path: "(a file being closed)".into(),
                direction: "upload".into(),
                bytes: None,
                state: "closing (write-back)".into(),
                seconds: 0.0,
            });
        }
        for (path, uploading) in self.queued_uploads() {
            let state = if uploading { "uploading (write-back)" } else { "queued (write-back)" };
            out.push(TransferStatus {
                path: shown(&path),
                direction: "upload".into(),
                bytes: None,
                state: state.into(),
                seconds: 0.0,
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    /// Final write-back failures: "PATH: ERROR (data kept in FILE)".
    pub fn failed_uploads(&self) -> Vec<String> {
        self.write_back().map(|wb| wb.failures()).unwrap_or_default()
    }

    /// Listing cache hits and misses.
    pub fn cache_counts(&self) -> (u64, u64) {
        (self.dirs.hits.load(Ordering::Relaxed), self.dirs.misses.load(Ordering::Relaxed))
    }

    /// Records a failure reported to an application; true if it is the first of its kind.
    pub fn note_error(&self, op: &str, e: &FsError) -> bool {
        let mut log = self.errors.lock();
        if log.recent.len() == RECENT_ERRORS {
            log.recent.pop_front();
        }
        log.recent.push_back((SystemTime::now(), format!("{op}: {e}")));
        log.kinds.insert(e.kind())
    }

    /// The latest failures, oldest first.
    pub fn recent_errors(&self) -> Vec<(SystemTime, String)> {
        self.errors.lock().recent.iter().cloned().collect()
    }

    pub fn open_handles(&self) -> usize {
        self.handles.lock().len()
    }

    pub fn known_inodes(&self) -> usize {
        self.inodes.lock().len()
    }
}

impl prefetch_files::View for Fs {
    fn cached_listing(&self, dir: &str) -> Option<Arc<Listing>> {
        self.dirs.peek(dir)
    }

    fn busy(&self, path: &str) -> bool {
        self.writing.lock().contains_key(path)
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") }
}

/// A mount-relative path as users see it: `/a/b`.
fn shown(path: &str) -> String {
    format!("/{path}")
}

/// The longest name a directory entry may have, in bytes (Linux NAME_MAX).
pub const NAME_MAX: usize = 255;

fn too_big(size: u64) -> FsError {
    FsError::TooBig(format!("{size} bytes is more than this mount can hold (at most {MAX_FILE_SIZE} bytes, 8 TiB)"))
}

/// A name longer than [`NAME_MAX`] bytes: ENAMETOOLONG before any command.
fn check_name_length(name: &str) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong(format!(
            "{}…: the name has {} bytes; names may have at most {NAME_MAX}",
            name.chars().take(40).collect::<String>(),
            name.len()
        )));
    }
    Ok(())
}

/// `("a/b", "c")` for `"a/b/c"`, `("", "c")` for `"c"`.
pub fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::remote::fake::FakeRemote;
    use crate::remote::pool::SystemClock;

    /// The settings unit tests share: long TTLs, no prefetch, no case checks.
    pub(super) fn test_config() -> FsConfig {
        FsConfig {
            dir_ttl: Duration::from_secs(60),
            attr_ttl: Duration::from_secs(1),
            read_only: false,
            uid: 1000,
            gid: 1000,
            dir_cache_capacity: 64,
            cache_dir: std::env::temp_dir().join("ftpmount-unit-spool"),
            cache_max_size: 1 << 30,
            case: CaseRules::none(),
            prefetch_workers: 0,
            prefetch_files: 0,
            prefetch_file_sessions: 0,
            write_back: None,
            content_cache: None,
            watch_interval: Duration::ZERO,
        }
    }

    pub(crate) fn fs_with(fake: Arc<FakeRemote>) -> Fs {
        Fs::new(fake, test_config(), Arc::new(SystemClock))
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
        let fh = fs.open(f.ino, OpenMode { read: true, ..Default::default() }).unwrap();
        assert_eq!(fs.read(fh, 6, 100).unwrap(), b"world");
        fs.release(fh);
        assert!(matches!(fs.read(fh, 0, 1), Err(FsError::BadHandle)));
    }

    #[test]
    fn a_directory_that_cannot_be_listed_is_an_error_not_an_empty_directory() {
        let fake = Arc::new(FakeRemote::new());
        fake.add_file("d/x", b"1", SystemTime::now());
        let fs = fs_with(fake.clone());
        let d = fs.lookup(ROOT, "d").unwrap();
        fake.remove("d/x");
        fake.remove("d");
        let Err(err) = fs.readdir(d.ino, false) else { panic!("listed a directory the server lacks") };
        assert_eq!(err.errno(), libc::EIO, "{err}");
    }

    #[test]
    fn a_directory_gone_from_its_parents_listing_is_an_error_not_an_empty_directory() {
        // readdir looks the directory up in its parent's listing first; ENOENT from there
        // would read as the end of the directory too.
        let fake = Arc::new(FakeRemote::new());
        fake.add_file("d/x", b"1", SystemTime::now());
        let config = FsConfig { dir_ttl: Duration::ZERO, ..test_config() };
        let fs = Fs::new(fake.clone(), config, Arc::new(SystemClock));
        let d = fs.lookup(ROOT, "d").unwrap();
        fake.remove("d/x");
        fake.remove("d");
        let Err(err) = fs.readdir(d.ino, false) else { panic!("listed a directory the server lacks") };
        assert_eq!(err.errno(), libc::EIO, "{err}");
    }

    #[test]
    fn create_without_truncation_of_a_file_that_exists_keeps_its_content() {
        let fake = Arc::new(FakeRemote::new());
        fake.add_file("f.txt", b"keep me", SystemTime::now());
        let fs = fs_with(fake.clone());
        // As `touch` does when its lookup failed: O_CREAT, no O_TRUNC.
        let (attr, fh) =
            fs.create(ROOT, "f.txt", OpenMode { write: true, pid: 7, ..Default::default() }, false).unwrap();
        assert_eq!(attr.size, 7);
        fs.flush(fh, 7).unwrap();
        fs.release(fh);
        assert_eq!(fake.file("f.txt").unwrap(), b"keep me");
    }

    #[test]
    fn a_file_unlinked_while_open_for_update_can_still_be_read_through_it() {
        let fake = Arc::new(FakeRemote::new());
        fake.add_file("f", b"Hello", SystemTime::now());
        let fs = fs_with(fake.clone());
        let f = fs.lookup(ROOT, "f").unwrap();
        let fh = fs.open(f.ino, OpenMode { read: true, write: true, pid: 7, ..Default::default() }).unwrap();
        fs.write(fh, 5, b", World!").unwrap();
        fs.unlink(ROOT, "f").unwrap();
        assert_eq!(fs.read(fh, 0, 100).unwrap(), b"Hello, World!");
        fs.flush(fh, 7).unwrap();
        fs.release(fh);
        assert!(fake.paths().is_empty(), "not brought back at close: {:?}", fake.paths());
    }

    #[test]
    fn a_directory_just_made_is_known_empty_with_two_links() {
        let fake = Arc::new(FakeRemote::new());
        let fs = fs_with(fake.clone());
        let d = fs.mkdir(ROOT, "d").unwrap();
        let lists = fake.lists.load(Ordering::SeqCst);
        assert_eq!(fs.getattr(d.ino).unwrap().nlink, 2);
        assert!(fs.readdir(d.ino, false).unwrap().is_empty());
        assert_eq!(fake.lists.load(Ordering::SeqCst), lists, "no listing asked for");
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

    fn write_mode() -> OpenMode {
        OpenMode { write: true, truncate: true, pid: 7, ..Default::default() }
    }

    #[test]
    fn a_failed_replace_keeps_the_old_file_and_leaves_no_temporary() {
        let fake = Arc::new(FakeRemote::new());
        fake.add_file("f.txt", b"old", SystemTime::now());
        let fs = fs_with(fake.clone());
        let f = fs.lookup(ROOT, "f.txt").unwrap();
        let fh = fs.open(f.ino, write_mode()).unwrap();
        *fake.fail_uploads.lock() = Some(RemoteError::NoSpace("552 quota".into()));
        fs.write(fh, 0, b"new content").unwrap();
        let err = fs.flush(fh, 7).unwrap_err();
        assert_eq!(err.errno(), libc::ENOSPC);
        fs.release(fh);
        assert_eq!(fake.file("f.txt").unwrap(), b"old");
        assert_eq!(fake.paths(), ["f.txt"], "temporary removed");
    }

    #[test]
    fn a_failed_new_file_is_removed() {
        let fake = Arc::new(FakeRemote::new());
        let fs = fs_with(fake.clone());
        let (_, fh) = fs.create(ROOT, "new.bin", write_mode(), true).unwrap();
        *fake.fail_uploads.lock() = Some(RemoteError::Connection("426 broken".into()));
        fs.write(fh, 0, &[1u8; 1000]).unwrap();
        assert_eq!(fs.flush(fh, 7).unwrap_err().errno(), libc::EIO);
        fs.release(fh);
        assert!(fake.paths().is_empty(), "{:?}", fake.paths());
    }

    #[test]
    fn replace_deletes_first_where_rename_over_is_refused() {
        let fake = Arc::new(FakeRemote::new());
        fake.add_file("f.txt", b"old", SystemTime::now());
        fake.refuse_rename_over.store(true, Ordering::SeqCst);
        let fs = fs_with(fake.clone());
        let f = fs.lookup(ROOT, "f.txt").unwrap();
        let fh = fs.open(f.ino, write_mode()).unwrap();
        fs.write(fh, 0, b"new").unwrap();
        fs.flush(fh, 7).unwrap();
        fs.release(fh);
        assert_eq!(fake.file("f.txt").unwrap(), b"new");
        assert_eq!(fake.paths(), ["f.txt"]);
    }

    /// Writes `data` to a new file `name` and closes it; the close's result.
    fn write_new(fs: &Fs, name: &str, data: &[u8]) -> Result<()> {
        let (_, fh) = fs.create(ROOT, name, write_mode(), false)?;
        fs.write(fh, 0, data)?;
        let closed = fs.flush(fh, 7);
        fs.release(fh);
        closed
    }

    #[test]
    fn new_files_upload_under_a_temporary_name_and_are_renamed_into_place() {
        let fake = Arc::new(FakeRemote::new());
        let fs = fs_with(fake.clone());
        fake.refuse_renames.store(true, Ordering::SeqCst);
        // Had it gone to its own name, the refused rename would not matter.
        assert_eq!(write_new(&fs, "a.txt", b"one").unwrap_err().errno(), libc::EACCES);
        assert!(fake.paths().is_empty(), "neither a partial a.txt nor the temporary: {:?}", fake.paths());
    }

    #[test]
    fn where_renames_are_refused_new_files_go_to_their_own_name_from_then_on() {
        let fake = Arc::new(FakeRemote::new());
        fake.refuse_renames.store(true, Ordering::SeqCst);
        let fs = fs_with(fake.clone());
        let err = write_new(&fs, "first.txt", b"1").unwrap_err();
        assert!(err.to_string().contains("write first.txt again"), "{err}");
        write_new(&fs, "first.txt", b"1").unwrap();
        write_new(&fs, "second.txt", b"2").unwrap();
        assert_eq!(fake.paths(), ["first.txt", "second.txt"]);
        assert_eq!(fake.file("second.txt").unwrap(), b"2");
    }

    #[test]
    fn a_new_file_whose_upload_failed_can_be_opened_with_truncation_and_written_again() {
        let fake = Arc::new(FakeRemote::new());
        let fs = fs_with(fake.clone());
        *fake.fail_uploads.lock() = Some(RemoteError::Connection("426 broken".into()));
        let (attr, fh) = fs.create(ROOT, "n.txt", write_mode(), false).unwrap();
        fs.write(fh, 0, b"lost").unwrap();
        assert!(fs.flush(fh, 7).is_err());
        fs.release(fh);
        *fake.fail_uploads.lock() = None;
        // The kernel still has the inode: open(O_TRUNC) on it writes the file anew.
        let fh = fs.open(attr.ino, OpenMode { write: true, truncate: true, ..Default::default() }).unwrap();
        fs.write(fh, 0, b"kept").unwrap();
        fs.flush(fh, 7).unwrap();
        fs.release(fh);
        assert_eq!(fake.file("n.txt").unwrap(), b"kept");
        let plain_open = fs.open(fs.lookup(ROOT, "n.txt").unwrap().ino, OpenMode { read: true, ..Default::default() });
        assert!(plain_open.is_ok());
    }

    #[test]
    fn this_mounts_uploads_in_flight_are_not_listed_but_others_temporaries_are() {
        let fake = Arc::new(FakeRemote::new());
        let t = SystemTime::now();
        fake.add_file(&format!(".a.txt.ftpmount-{}-7.part", std::process::id()), b"in flight", t);
        fake.add_file(".b.txt.ftpmount-1-7.part", b"a leftover", t);
        fake.add_file(".c.ftpmount-x.part", b"just a name", t);
        let fs = fs_with(fake);
        let names: Vec<String> = fs.readdir(ROOT, false).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, [".b.txt.ftpmount-1-7.part", ".c.ftpmount-x.part"]);
        assert!(write::is_own_temp(split(&write::temp_name("d/e.txt")).1));
    }

    #[test]
    fn a_directory_that_refuses_every_upload_does_not_turn_temporary_names_off() {
        let fake = Arc::new(FakeRemote::new());
        *fake.refuse_uploads_in.lock() = Some("locked".into());
        fake.add_dir("locked");
        let fs = fs_with(fake.clone());
        let dir = fs.lookup(ROOT, "locked").unwrap();
        let (_, fh) = fs.create(dir.ino, "x", write_mode(), false).unwrap();
        assert_eq!(fs.write(fh, 0, b"x").unwrap_err().errno(), libc::EACCES);
        fs.release(fh);
        // Elsewhere new files still go through a temporary name (a refused rename shows it).
        fake.refuse_renames.store(true, Ordering::SeqCst);
        assert_eq!(write_new(&fs, "a.txt", b"one").unwrap_err().errno(), libc::EACCES);
        assert!(fake.paths().iter().all(|p| p.starts_with("locked")), "{:?}", fake.paths());
    }

    #[test]
    fn where_hidden_names_are_refused_new_files_go_to_their_own_name_at_once() {
        let fake = Arc::new(FakeRemote::new());
        fake.refuse_hidden_uploads.store(true, Ordering::SeqCst);
        let fs = fs_with(fake.clone());
        write_new(&fs, "a.txt", b"streamed").unwrap();
        assert_eq!(fake.file("a.txt").unwrap(), b"streamed");
        // Spooled (written out of order) as well.
        let (_, fh) = fs.create(ROOT, "b.txt", write_mode(), false).unwrap();
        fs.write(fh, 3, b"def").unwrap();
        fs.write(fh, 0, b"abc").unwrap();
        fs.flush(fh, 7).unwrap();
        fs.release(fh);
        assert_eq!(fake.file("b.txt").unwrap(), b"abcdef");
        assert_eq!(fake.paths(), ["a.txt", "b.txt"]);
    }

    #[test]
    fn jumps_after_streaming_move_to_the_spool_without_losing_bytes() {
        let fake = Arc::new(FakeRemote::new());
        let fs = fs_with(fake.clone());
        let (_, fh) = fs.create(ROOT, "f", write_mode(), false).unwrap();
        fs.write(fh, 0, b"hello ").unwrap();
        fs.write(fh, 6, b"world").unwrap();
        fs.write(fh, 0, b"H").unwrap();
        fs.flush(fh, 7).unwrap();
        fs.release(fh);
        assert_eq!(fake.file("f").unwrap(), b"Hello world");
        assert_eq!(fs.getattr(fs.lookup(ROOT, "f").unwrap().ino).unwrap().size, 11, "cache updated at once");
    }

    #[test]
    fn another_process_closing_an_inherited_descriptor_does_not_commit() {
        let fake = Arc::new(FakeRemote::new());
        let fs = fs_with(fake.clone());
        let (_, fh) = fs.create(ROOT, "f", write_mode(), false).unwrap();
        fs.write(fh, 0, b"part one, ").unwrap();
        fs.flush(fh, 99).unwrap();
        assert!(fake.file("f").is_none_or(|d| d.is_empty()), "nothing committed by pid 99");
        fs.write(fh, 10, b"part two").unwrap();
        fs.flush(fh, 7).unwrap();
        assert_eq!(fake.file("f").unwrap(), b"part one, part two");
        fs.release(fh);
    }

    #[test]
    fn an_append_whose_download_fails_in_its_final_reply_changes_nothing() {
        let fake = Arc::new(FakeRemote::new());
        fake.add_file("log.txt", b"first line\n", SystemTime::now());
        let fs = fs_with(fake.clone());
        let f = fs.lookup(ROOT, "log.txt").unwrap();
        // RETR answered 125, no bytes, then "425 Unable to build data connection", every time.
        for _ in 0..3 {
            let refused = RemoteError::Connection("425 Unable to build data connection".into());
            *fake.cut_next_download.lock() = Some((0, refused));
            let fh = fs.open(f.ino, OpenMode { write: true, append: true, pid: 7, ..Default::default() }).unwrap();
            let err = fs.write(fh, 11, b"new line\n").unwrap_err();
            assert_eq!(err.errno(), libc::EIO, "{err}");
            let _ = fs.flush(fh, 7);
            fs.release(fh);
            assert_eq!(fake.file("log.txt").unwrap(), b"first line\n", "no NUL bytes, no half change");
        }
        assert_eq!(fake.paths(), ["log.txt"], "no temporary left");
    }

    #[test]
    fn a_download_that_ends_early_with_a_good_reply_is_not_taken_for_the_file() {
        let fake = Arc::new(FakeRemote::new());
        fake.add_file("f", b"0123456789", SystemTime::now());
        let fs = fs_with(fake.clone());
        let f = fs.lookup(ROOT, "f").unwrap();
        let fh = fs.open(f.ino, OpenMode { read: true, write: true, pid: 7, ..Default::default() }).unwrap();
        *fake.cut_next_download.lock() = Some((0, RemoteError::Connection("426 aborted".into())));
        assert!(fs.read(fh, 0, 10).is_err(), "a failed fill is an error, not an empty file");
        fs.release(fh);
        assert_eq!(fake.file("f").unwrap(), b"0123456789");
    }

    #[test]
    fn a_broken_upload_is_sent_again_from_the_local_copy() {
        let fake = Arc::new(FakeRemote::new());
        fake.add_file("old.txt", b"old", SystemTime::now());
        let fs = fs_with(fake.clone());
        // Streamed (sequential writes), then spooled (written out of order), then a replace.
        fake.break_next_uploads.store(1, Ordering::SeqCst);
        write_new(&fs, "streamed.bin", &[7u8; 100_000]).unwrap();
        fake.break_next_uploads.store(1, Ordering::SeqCst);
        let (_, fh) = fs.create(ROOT, "spooled.txt", write_mode(), false).unwrap();
        fs.write(fh, 3, b"def").unwrap();
        fs.write(fh, 0, b"abc").unwrap();
        fs.flush(fh, 7).unwrap();
        fs.release(fh);
        fake.break_next_uploads.store(1, Ordering::SeqCst);
        let f = fs.lookup(ROOT, "old.txt").unwrap();
        let fh = fs.open(f.ino, write_mode()).unwrap();
        fs.write(fh, 0, b"new").unwrap();
        fs.flush(fh, 7).unwrap();
        fs.release(fh);
        assert_eq!(fake.file("streamed.bin").unwrap(), vec![7u8; 100_000]);
        assert_eq!(fake.file("spooled.txt").unwrap(), b"abcdef");
        assert_eq!(fake.file("old.txt").unwrap(), b"new");
        assert_eq!(fake.paths(), ["old.txt", "spooled.txt", "streamed.bin"], "no temporaries left");
        // Broken twice in a row: the close reports it, and nothing half-done stays.
        fake.break_next_uploads.store(2, Ordering::SeqCst);
        assert_eq!(write_new(&fs, "twice.txt", b"x").unwrap_err().errno(), libc::EIO);
        assert_eq!(fake.paths(), ["old.txt", "spooled.txt", "streamed.bin"]);
    }

    #[test]
    fn names_with_line_breaks_are_refused_before_any_command() {
        let fake = Arc::new(FakeRemote::new());
        let fs = fs_with(fake.clone());
        let err = fs.create(ROOT, "a\r\nDELE victim", write_mode(), false).unwrap_err();
        assert_eq!(err.errno(), libc::EINVAL);
        assert_eq!(fs.mkdir(ROOT, "x\ny").unwrap_err().errno(), libc::EINVAL);
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
