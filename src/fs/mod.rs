//! Filesystem semantics over a [`Remote`]: inodes, attributes from cached listings, open
//! files. Knows nothing of FUSE (see `crate::fuse`) nor of FTP (see `crate::remote::ftp`).
//!
//! Where each FUSE call is answered (`crate::fuse` calls the `Fs` method of the same name):
//!
//! | calls | file |
//! |---|---|
//! | `lookup`, `forget`, `getattr`, `readlink`, `readdir`/`readdirplus` | `lookup.rs` |
//! | `opendir`, `releasedir` | `watch.rs` (which also keeps the listings of open directories fresh) |
//! | `open`, `create`, `read`, `write`, `flush`, `fsync`, `release` | `open.rs` (reads: `read.rs`; writes: `write.rs` the handle, `write/body.rs` its content, `write/upload.rs` its upload, `writeback.rs` the queue) |
//! | `setattr` (truncate, times, chmod) | `attrs.rs` |
//! | `mkdir`, `unlink`, `rmdir`, `rename`, `symlink` | `namespace.rs` (case checks: `case_check.rs`; replacing a file: `write/upload.rs`) |
//! | `statfs` | `space.rs` |
//! | `status`, `sync` (the control socket) | `report.rs` |
//!
//! This file holds the types, `Fs` itself and what every part shares; `paths.rs` the path
//! helpers; `temp_names.rs` the temporary upload names; `fs_tests.rs` the unit tests of `Fs`.

mod attrs;
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
pub mod listing;
mod lock_order;
pub mod lookup;
#[cfg(test)]
mod names_tests;
mod namespace;
mod open;
mod paths;
#[cfg(test)]
mod posix_tests;
pub mod prefetch;
pub mod prefetch_files;
#[cfg(test)]
mod prefetch_files_tests;
pub mod read;
mod report;
pub mod space;
pub mod spool;
pub mod temp_names;
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
use self::write::{WriteHandle, WriteOptions};
use self::writeback::WriteBack;
use crate::clock::Clock;
use crate::error::FsError;
use crate::remote::{Entry, Kind, Remote, RemoteError};

pub use self::paths::{NAME_MAX, split};
use self::paths::{check_name_length, join, shown, too_big};
pub use self::report::MemoryStats;

/// What every `Fs` call returns; `crate::fuse` turns the error into an errno.
pub type Result<T> = std::result::Result<T, FsError>;

/// What kind of node `stat` shows.
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

/// The options of a mount that shape the filesystem (from the command line).
#[derive(Debug, Clone)]
pub struct FsConfig {
    /// How long a directory listing is trusted (`--dir-timeout`).
    pub dir_ttl: Duration,
    /// How long the kernel may trust attributes and names (`--attr-timeout`).
    pub attr_ttl: Duration,
    /// `--read-only`: every change is refused with EROFS before anything is sent.
    pub read_only: bool,
    /// Owner and group shown for every file (FTP has no numeric owners).
    pub uid: u32,
    pub gid: u32,
    /// What the listing cache holds at most: directories, and entries in all of them.
    pub dir_cache: dircache::CacheLimits,
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
    /// Sessions the files fetched ahead may use at once.
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
    /// `chown`/`chgrp` was asked: accepted, but never sent (FTP cannot change owners).
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
    /// The file's path as the mount shows it (`/dir/name`).
    pub path: String,
    /// To or from the server.
    pub direction: Direction,
    /// Bytes moved so far (unknown while the file is busy).
    pub bytes: Option<u64>,
    /// Where the transfer stands.
    pub state: TransferState,
    /// Seconds since the file was opened (0 for the write-back queue).
    pub seconds: f64,
}

/// Which way a transfer moves data. The serde names and `Display` are the status socket's
/// wire format and the text `status` prints: do not change them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Direction {
    /// From the server, to a reader.
    #[serde(rename = "download")]
    Download,
    /// From a writer, to the server.
    #[serde(rename = "upload")]
    Upload,
}

impl Direction {
    /// The name on the wire and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Download => "download",
            Direction::Upload => "upload",
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, not `write_str`: `status` aligns the column with `{:<8}`.
        f.pad(self.as_str())
    }
}

/// Where a transfer stands. As for [`Direction`], the names are the wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TransferState {
    /// Data flowing to or from the server now.
    #[serde(rename = "streaming")]
    Streaming,
    /// An open file's changes are in the local spool, uploaded when it is closed.
    #[serde(rename = "spooled, uploads at close")]
    Spooled,
    /// A write or the final upload holds the file at this moment.
    #[serde(rename = "busy")]
    Busy,
    /// Closed with write-back, its release on the way to the queue.
    #[serde(rename = "closing (write-back)")]
    Closing,
    /// Closed with write-back, uploading now.
    #[serde(rename = "uploading (write-back)")]
    Uploading,
    /// Closed with write-back, waiting in the queue.
    #[serde(rename = "queued (write-back)")]
    Queued,
}

impl TransferState {
    /// The name on the wire and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            TransferState::Streaming => "streaming",
            TransferState::Spooled => "spooled, uploads at close",
            TransferState::Busy => "busy",
            TransferState::Closing => "closing (write-back)",
            TransferState::Uploading => "uploading (write-back)",
            TransferState::Queued => "queued (write-back)",
        }
    }

    /// Closed and in the write-back queue's hands: what `sync` waits for (files still open
    /// are the application's to close).
    pub fn is_write_back(self) -> bool {
        match self {
            TransferState::Closing | TransferState::Uploading | TransferState::Queued => true,
            TransferState::Streaming | TransferState::Spooled | TransferState::Busy => false,
        }
    }

    /// Changes held locally that still have to be uploaded: spooled in an open file, or in
    /// the write-back queue (`status`'s "queued uploads").
    pub fn waits_for_upload(self) -> bool {
        self == TransferState::Spooled || self.is_write_back()
    }
}

impl std::fmt::Display for TransferState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The filesystem: answers every FUSE call in FTP-neutral terms (the module doc says which
/// file answers which call), with the listing cache, the handles, the content cache and the
/// write-back queue.
///
/// **Lock order.** A write handle's `job` (one upload of it at a time), then its `state`, then
/// `Fs::writing`; nothing takes a handle's lock while holding `writing` (debug builds check
/// this: see `lock_order.rs`). `job` and `state` are held across server commands on purpose
/// (the upload, rename or listing of that one file), `writing` never. Every other mutex here (`handles`, `open_dirs`, `inodes`, `parked`, `told`,
/// `local_times`, `set_times`, `errors`, `case_warned`, `case_confirmed`, `notifier`) is a
/// leaf: held for one map operation, with no other lock taken and no server command sent
/// meanwhile. The caches (`dirs`, `content`) take only their own locks inside; the watcher
/// holds its own while it stores a refreshed listing in `dirs`. The file prefetcher takes its
/// own lock and then may take `writing` (through [`prefetch_files::View::busy`]), so it is
/// never called with `writing` held. (Mind `if let`: its scrutinee's guard lives to the end.)
pub struct Fs {
    remote: Arc<dyn Remote>,
    config: FsConfig,
    inodes: Mutex<InodeTable>,
    dirs: Arc<DirCache>,
    /// Loads subdirectories' listings ahead of a tree walk (none in unit tests).
    prefetch: Option<Arc<prefetch::Prefetcher>>,
    handles: Mutex<HashMap<u64, Handle>>,
    /// Open directories' entries, by handle (see [`lookup::DirSnapshot`]).
    open_dirs: Mutex<HashMap<u64, Arc<lookup::DirSnapshot>>>,
    next_handle: AtomicU64,
    /// Set once the server refused a temporary upload name: new files then go to their own.
    temp_refused: Arc<AtomicBool>,
    mounted_at: SystemTime,
    spool: Spool,
    /// Files open for writing, by path: their size and time are ours until uploaded.
    writing: lock_order::Ranked<HashMap<String, Arc<WriteHandle>>>,
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
    /// A filesystem over `remote`: opens the content cache and starts the prefetch threads;
    /// nothing is sent to the server until the first call.
    pub fn new(remote: Arc<dyn Remote>, config: FsConfig, clock: Arc<dyn Clock>) -> Self {
        let dirs = Arc::new(DirCache::with_folding(
            config.dir_cache,
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
            prefetch_files::FilePrefetcher::start(c.clone(), remote.clone(), limits, clock.clone())
        });
        Fs {
            files_ahead,
            dirs: dirs.clone(),
            prefetch: (config.prefetch_workers > 0)
                .then(|| prefetch::Prefetcher::start(dirs, remote.clone(), config.prefetch_workers)),
            remote,
            inodes: Mutex::new(InodeTable::default()),
            handles: Mutex::new(HashMap::new()),
            open_dirs: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            temp_refused: Arc::new(AtomicBool::new(false)),
            mounted_at: SystemTime::now(),
            spool: Spool::new(config.cache_dir.clone(), config.cache_max_size, config.write_back.clone()),
            write_back: config.write_back.clone().map(WriteBack::new),
            writing: lock_order::Ranked::new(lock_order::WRITING, HashMap::new()),
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
        self.dirs.peek(path).map_or(1, |l| 2 + l.subdirs())
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

    /// Forgets what the kernel was told about `ino`. The map gives its memory back once it is
    /// four times bigger than what is left (after the kernel forgot a walk).
    fn untell(&self, ino: u64) {
        let mut told = self.told.lock();
        told.remove(&ino);
        if told.capacity() > 1024 && told.len() * 4 < told.capacity() {
            let keep = told.len() * 2;
            told.shrink_to(keep);
        }
    }

    /// The mount's options.
    pub fn config(&self) -> &FsConfig {
        &self.config
    }

    /// The server this filesystem talks to.
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

    fn check_writable(&self) -> Result<()> {
        if self.config.read_only { Err(FsError::ReadOnly) } else { Ok(()) }
    }
}

#[cfg(test)]
#[path = "fs_tests.rs"]
pub(crate) mod tests;
