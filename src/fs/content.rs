//! The content cache: what was downloaded (and uploaded) of each file, kept on disk under
//! `--cache-dir`, so reading a file that has not changed on the server costs no transfer —
//! in the same mount and after a remount. Parts of a file are kept too (the first bytes a
//! file manager sniffs, a range in the middle), as byte ranges of a sparse file.
//!
//! Each entry is valid for one version of the file: its size and modification time as the
//! server reports them. An open that finds another version drops the entry. The bytes are
//! bounded in total (`--content-cache-size`); the least recently used files go first.
//!
//! On disk, per file: `<key>.data` (sparse, the file's bytes at their offsets) and
//! `<key>.json` (path, version, the ranges held). The ranges are written only after the
//! bytes are on disk, so a crash can lose ranges but never claim bytes that are not there.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lru::LruCache;
use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};

mod downloads;
mod ranges;

pub use downloads::Downloading;
use downloads::Downloads;
pub use ranges::{Ranges, Version};

/// A file bigger than this share of the limit is not kept: it would push out everything else.
const LARGEST_SHARE: u64 = 2;
/// An upload's entry takes the first time the server shows for it if that is this close to
/// when the upload ended (the server sets the time itself; asking would cost a round trip).
const UPLOAD_TIME_SLACK: Duration = Duration::from_secs(120);
/// How often the ranges held are written down (a crash loses at most this much of them).
const FLUSH_EVERY: Duration = Duration::from_secs(3);

/// Makes entry names unique within one process, however fast they are made.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// What is known of a file that is (partly) cached.
struct Entry {
    path: String,
    key: String,
    version: Mutex<Version>,
    /// Uploaded by this mount at this time, its server time not yet seen.
    uploaded: Mutex<Option<SystemTime>>,
    ranges: Mutex<Ranges>,
    /// Ranges changed since the `.json` was written.
    dirty: AtomicBool,
    /// Dropped from the cache (evicted, or the file changed): readers stop storing.
    dropped: AtomicBool,
    /// Downloads of this version under way, and where each has got to: a reader about to
    /// need bytes one of them is bringing waits for them instead of fetching them again.
    downloads: Mutex<Downloads>,
    /// Signalled when a download moves on or ends.
    progress: Condvar,
}

impl Entry {
    fn new(path: String, key: String, version: Version, ranges: Ranges, dirty: bool) -> Entry {
        Entry {
            path,
            key,
            version: Mutex::new(version),
            uploaded: Mutex::new(None),
            ranges: Mutex::new(ranges),
            dirty: AtomicBool::new(dirty),
            dropped: AtomicBool::new(false),
            downloads: Mutex::new(Downloads::default()),
            progress: Condvar::new(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Meta {
    path: String,
    version: Version,
    ranges: Ranges,
}

/// Counters for `status`.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentStats {
    /// Bytes handed to readers from the cache.
    pub hit_bytes: u64,
    /// Bytes that had to be downloaded.
    pub miss_bytes: u64,
    /// Bytes held now, and the limit.
    pub used: u64,
    pub limit: u64,
    pub files: u64,
}

/// The content cache (`--content-cache-size`): byte ranges of downloaded files kept on local
/// disk by version, so reading a file again costs no download while its size and time are unchanged.
pub struct ContentCache {
    dir: PathBuf,
    limit: u64,
    /// Held for the life of the cache: two mounts of one source do not share a directory.
    _lock: File,
    index: Mutex<Index>,
    hit_bytes: AtomicU64,
    miss_bytes: AtomicU64,
    last_flush: Mutex<std::time::Instant>,
}

struct Index {
    entries: LruCache<String, Arc<Entry>>,
    used: u64,
}

impl ContentCache {
    /// Opens (or creates) the cache in `dir`, holding at most `limit` bytes. Fails when the
    /// directory cannot be used or another mount holds it.
    pub fn open(dir: &Path, limit: u64) -> io::Result<Arc<ContentCache>> {
        std::fs::create_dir_all(dir)?;
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("lock"))?;
        // SAFETY: flock on a file descriptor we own; it only takes an advisory lock.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is in use by another mount of the same source", dir.display()),
            ));
        }
        let cache = ContentCache {
            dir: dir.to_path_buf(),
            limit,
            _lock: lock,
            index: Mutex::new(Index { entries: LruCache::unbounded(), used: 0 }),
            hit_bytes: AtomicU64::new(0),
            miss_bytes: AtomicU64::new(0),
            last_flush: Mutex::new(std::time::Instant::now()),
        };
        cache.load();
        Ok(Arc::new(cache))
    }

    /// Reads the entries an earlier mount left, oldest first, so the newest are kept longest.
    fn load(&self) {
        let Ok(listing) = std::fs::read_dir(&self.dir) else { return };
        let mut found = Vec::new();
        let mut data_files = Vec::new();
        for f in listing.flatten() {
            let p = f.path();
            match p.extension().and_then(|e| e.to_str()) {
                Some("json") => {
                    let when = f.metadata().and_then(|m| m.modified()).unwrap_or(UNIX_EPOCH);
                    found.push((when, p));
                }
                Some("data") => data_files.push(p),
                _ => {}
            }
        }
        found.sort();
        let mut idx = self.index.lock();
        for (_, json) in found {
            let key = json.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
            let meta = std::fs::read(&json).ok().and_then(|b| serde_json::from_slice::<Meta>(&b).ok());
            let data_len = std::fs::metadata(json.with_extension("data")).map(|m| m.len()).ok();
            match meta {
                Some(m) if data_len == Some(m.version.size) && key.starts_with(&key_of(&m.path)) => {
                    let held = m.ranges.total();
                    idx.used += held;
                    let entry = Entry::new(m.path.clone(), key, m.version, m.ranges, false);
                    // Two entries for one path (a crash between writing one and removing the
                    // other): the newer stays.
                    if let Some(old) = idx.entries.put(m.path, Arc::new(entry)) {
                        idx.used -= old.ranges.lock().total().min(idx.used);
                        remove_files(&self.dir, &old.key);
                    }
                }
                _ => remove_files(&self.dir, &key),
            }
        }
        // Data without a description holds nothing anyone can trust.
        for data in data_files {
            let key = data.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            if !data.with_extension("json").exists() {
                remove_files(&self.dir, key);
            }
        }
        self.evict(&mut idx, 0);
        if idx.used > 0 {
            tracing::info!(
                "content cache: {} files, {} bytes kept from earlier mounts ({})",
                idx.entries.len(),
                idx.used,
                self.dir.display()
            );
        }
    }

    /// The cache of `path` at `version`, for a reader: an entry holding another version is
    /// dropped first. `None` for files that are empty or too big to keep.
    pub fn open_file(self: &Arc<Self>, path: &str, version: Version) -> Option<CachedFile> {
        if version.size == 0 || version.size > self.limit / LARGEST_SHARE {
            self.forget(path);
            return None;
        }
        let mut idx = self.index.lock();
        if let Some(e) = idx.entries.get(path).cloned() {
            let mut held = e.version.lock();
            let adopt = held.size == version.size && e.uploaded.lock().is_some_and(|t| near(t, version.mtime));
            if adopt {
                // Our own upload, now seen with the server's time.
                *held = version;
                *e.uploaded.lock() = None;
                e.dirty.store(true, Ordering::Relaxed);
            }
            if *held == version {
                drop(held);
                return self.file_of(e);
            }
            drop(held);
            self.drop_entry(&mut idx, path);
        }
        let e = self.new_entry(&mut idx, path, version)?;
        self.file_of(e)
    }

    fn new_entry(&self, idx: &mut Index, path: &str, version: Version) -> Option<Arc<Entry>> {
        // A fresh name for each entry: files of a dropped one never mix with a new one's.
        let nonce = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        let key = format!("{}-{:x}", key_of(path), nonce ^ (NEXT.fetch_add(1, Ordering::Relaxed) as u128));
        let data = self.dir.join(format!("{key}.data"));
        let made = File::create(&data).and_then(|f| f.set_len(version.size));
        if let Err(e) = made {
            tracing::debug!("content cache: creating {}: {e}", data.display());
            return None;
        }
        let entry = Arc::new(Entry::new(path.to_string(), key, version, Ranges::default(), true));
        idx.entries.put(path.to_string(), entry.clone());
        Some(entry)
    }

    fn file_of(self: &Arc<Self>, entry: Arc<Entry>) -> Option<CachedFile> {
        let data = self.dir.join(format!("{}.data", entry.key));
        match OpenOptions::new().read(true).write(true).open(&data) {
            Ok(file) => Some(CachedFile { cache: self.clone(), entry, file }),
            Err(e) => {
                tracing::debug!("content cache: opening {}: {e}", data.display());
                self.forget(&entry.path);
                None
            }
        }
    }

    /// Whether every byte of `path` at `version` is held (without touching the LRU order).
    pub fn holds_whole(&self, path: &str, version: Version) -> bool {
        let idx = self.index.lock();
        idx.peek_entry(path).is_some_and(|e| {
            *e.version.lock() == version
                && e.uploaded.lock().is_none()
                && e.ranges.lock().covered_from(0) >= version.size
        })
    }

    /// Keeps the content of a file this mount just uploaded (`size` bytes of `from`). Its
    /// version is confirmed by [`ContentCache::uploaded_time`] or by the next open.
    pub fn keep_upload(self: &Arc<Self>, path: &str, from: &File, size: u64) {
        self.forget(path);
        if size == 0 || size > self.limit / LARGEST_SHARE {
            return;
        }
        let now = SystemTime::now();
        let Some(cached) = self.open_file(path, Version::of(size, now)) else { return };
        *cached.entry.uploaded.lock() = Some(now);
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0;
        while at < size {
            let n = match from.read_at(&mut buf[..(size - at).min(1 << 20) as usize], at) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if !cached.store(at, &buf[..n]) {
                break;
            }
            at += n as u64;
        }
    }

    /// The time an uploaded file now has on the server (set by this mount).
    pub fn uploaded_time(&self, path: &str, mtime: SystemTime) {
        let idx = self.index.lock();
        if let Some(e) = idx.peek_entry(path) {
            let mut v = e.version.lock();
            if e.uploaded.lock().take().is_some() {
                v.mtime = Version::of(v.size, mtime).mtime;
                e.dirty.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Drops what is kept of `path` (it was written, renamed, deleted or changed).
    pub fn forget(&self, path: &str) {
        let mut idx = self.index.lock();
        self.drop_entry(&mut idx, path);
    }

    /// Drops what is kept of everything under directory `dir` (renamed or removed).
    pub fn forget_under(&self, dir: &str) {
        let prefix = if dir.ends_with('/') { dir.to_string() } else { format!("{dir}/") };
        let mut idx = self.index.lock();
        let under: Vec<String> =
            idx.entries.iter().filter(|(p, _)| p.starts_with(&prefix)).map(|(p, _)| p.clone()).collect();
        for p in under {
            self.drop_entry(&mut idx, &p);
        }
    }

    fn drop_entry(&self, idx: &mut Index, path: &str) {
        if let Some(e) = idx.entries.pop(path) {
            e.dropped.store(true, Ordering::Relaxed);
            idx.used -= e.ranges.lock().total().min(idx.used);
            remove_files(&self.dir, &e.key);
        }
    }

    /// Makes room for `incoming` more bytes, dropping the least recently used entries.
    fn evict(&self, idx: &mut Index, incoming: u64) {
        while idx.used + incoming > self.limit {
            let Some((path, _)) = idx.entries.peek_lru().map(|(p, e)| (p.clone(), e.clone())) else { break };
            self.drop_entry(idx, &path);
        }
    }

    /// [`ContentCache::flush`] every few seconds (the janitor calls this often).
    pub fn flush_if_due(&self) {
        let due = {
            let mut last = self.last_flush.lock();
            let due = last.elapsed() >= FLUSH_EVERY;
            if due {
                *last = std::time::Instant::now();
            }
            due
        };
        if due {
            self.flush();
        }
    }

    /// Writes the ranges of entries that changed to disk (after their bytes). Called now and
    /// then, and at unmount.
    pub fn flush(&self) {
        let dirty: Vec<Arc<Entry>> = {
            let idx = self.index.lock();
            idx.entries.iter().filter(|(_, e)| e.dirty.load(Ordering::Relaxed)).map(|(_, e)| e.clone()).collect()
        };
        for e in dirty {
            if e.dropped.load(Ordering::Relaxed) || e.uploaded.lock().is_some() {
                continue;
            }
            e.dirty.store(false, Ordering::Relaxed);
            let data = self.dir.join(format!("{}.data", e.key));
            let meta = Meta { path: e.path.clone(), version: *e.version.lock(), ranges: e.ranges.lock().clone() };
            let written = File::open(&data)
                .and_then(|f| f.sync_data())
                .and_then(|()| write_atomically(&self.dir.join(format!("{}.json", e.key)), &meta));
            if let Err(err) = written {
                tracing::debug!("content cache: saving {}: {err}", e.path);
            }
            // Dropped meanwhile: what was just written must go too.
            if e.dropped.load(Ordering::Relaxed) {
                remove_files(&self.dir, &e.key);
            }
        }
    }

    /// Hits, misses and what is held now, for `status`; nothing is asked of the server.
    pub fn stats(&self) -> ContentStats {
        let idx = self.index.lock();
        ContentStats {
            hit_bytes: self.hit_bytes.load(Ordering::Relaxed),
            miss_bytes: self.miss_bytes.load(Ordering::Relaxed),
            used: idx.used,
            limit: self.limit,
            files: idx.entries.len() as u64,
        }
    }
}

impl Index {
    fn peek_entry(&self, path: &str) -> Option<&Arc<Entry>> {
        self.entries.peek(path)
    }
}

/// A reader's (or an upload's) view of one cached file.
pub struct CachedFile {
    cache: Arc<ContentCache>,
    entry: Arc<Entry>,
    file: File,
}

impl CachedFile {
    /// The bytes held from `offset` on, up to `len` (fewer where a gap or the end comes).
    pub fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        if self.entry.uploaded.lock().is_some() {
            return Vec::new();
        }
        let n = self.entry.ranges.lock().covered_from(offset).min(len as u64) as usize;
        if n == 0 {
            return Vec::new();
        }
        let mut buf = vec![0u8; n];
        match self.file.read_exact_at(&mut buf, offset) {
            Ok(()) => {
                self.cache.hit_bytes.fetch_add(n as u64, Ordering::Relaxed);
                buf
            }
            Err(e) => {
                tracing::debug!("content cache: reading {}: {e}", self.entry.path);
                self.cache.forget(&self.entry.path);
                Vec::new()
            }
        }
    }

    /// Keeps bytes of the file downloaded from the server at `offset`. False when the entry
    /// is gone or the disk refused (the reader stops offering).
    pub fn downloaded(&self, offset: u64, bytes: &[u8]) -> bool {
        self.cache.miss_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.store(offset, bytes)
    }

    /// Keeps bytes at `offset` (those past the version's size are not kept).
    fn store(&self, offset: u64, bytes: &[u8]) -> bool {
        let size = self.entry.version.lock().size;
        let end = (offset + bytes.len() as u64).min(size);
        if offset >= end || self.entry.dropped.load(Ordering::Relaxed) {
            return !self.entry.dropped.load(Ordering::Relaxed);
        }
        let new = {
            let r = self.entry.ranges.lock();
            (end - offset) - (r.covered_from(offset).min(end - offset))
        };
        if new > 0 {
            let mut idx = self.cache.index.lock();
            self.cache.evict(&mut idx, new);
            if self.entry.dropped.load(Ordering::Relaxed) {
                return false;
            }
            idx.used += new;
        }
        let bytes = &bytes[..(end - offset) as usize];
        if let Err(e) = self.file.write_all_at(bytes, offset) {
            tracing::debug!("content cache: writing {}: {e}", self.entry.path);
            self.cache.forget(&self.entry.path);
            return false;
        }
        let added = self.entry.ranges.lock().insert(offset, end);
        if added < new {
            // Another reader stored part of it meanwhile.
            let mut idx = self.cache.index.lock();
            idx.used -= (new - added).min(idx.used);
        }
        self.entry.dirty.store(true, Ordering::Relaxed);
        // Readers waiting for these bytes (see `wait_for`); the lock orders this after their
        // check, so none misses it.
        drop(self.entry.downloads.lock());
        self.entry.progress.notify_all();
        true
    }

    /// Counts bytes downloaded but not kept (the cache's writes were behind).
    pub fn not_kept(&self, n: u64) {
        self.cache.miss_bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Whether the entry was dropped (evicted, the file changed, the disk refused).
    pub fn dropped(&self) -> bool {
        self.entry.dropped.load(Ordering::Relaxed)
    }

    /// Whether the byte at `offset` is held.
    pub fn holds(&self, offset: u64) -> bool {
        self.entry.uploaded.lock().is_none() && self.entry.ranges.lock().covered_from(offset) > 0
    }

    /// How many bytes from `offset` on are held without a gap.
    pub fn covered_from(&self, offset: u64) -> u64 {
        if self.entry.uploaded.lock().is_some() {
            return 0;
        }
        self.entry.ranges.lock().covered_from(offset)
    }

    /// Where the run of missing bytes that ends at `offset` starts (see [`Ranges::missing_from`]).
    pub fn missing_from(&self, offset: u64) -> u64 {
        if self.entry.uploaded.lock().is_some() {
            return 0;
        }
        self.entry.ranges.lock().missing_from(offset)
    }

    /// Whether every byte of the file is held.
    pub fn complete(&self) -> bool {
        let size = self.entry.version.lock().size;
        self.entry.ranges.lock().covered_from(0) >= size
    }
}

/// A file name for a path: the same path finds the same file after a remount.
fn key_of(path: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(path.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn near(t: SystemTime, secs: i64) -> bool {
    let ours = Version::of(0, t).mtime;
    (ours - secs).unsigned_abs() <= UPLOAD_TIME_SLACK.as_secs()
}

fn remove_files(dir: &Path, key: &str) {
    let _ = std::fs::remove_file(dir.join(format!("{key}.json")));
    let _ = std::fs::remove_file(dir.join(format!("{key}.data")));
}

fn write_atomically(to: &Path, meta: &Meta) -> io::Result<()> {
    let tmp = to.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(meta).map_err(io::Error::other)?)?;
    std::fs::rename(&tmp, to)
}

/// The cache directory of a source: one per server account and path.
pub fn cache_dir(cache_dir: &Path, source_identity: &str) -> PathBuf {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(source_identity.as_bytes());
    let name: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    cache_dir.join("content").join(name)
}

#[cfg(test)]
#[path = "content_unit_tests.rs"]
mod tests;
