//! Prefetch of small files for a reader walking a directory (`cp -r`, `tar c`, `grep -r`,
//! rsync from the mount, a file manager's copy): once a reader has read two sibling files
//! whole, one after the other in listing order, the next files of that directory are
//! downloaded in the background, on idle sessions, into the content cache, so their `open` and
//! `read` find them there instead of paying a transfer each.
//!
//! Bounded by files (a few ahead, more while the reader keeps finding them ready, up to
//! `--prefetch-files`), by size (files up to [`MAX_FILE`] only, at most [`MAX_BYTES`] fetched and
//! not yet read) and by sessions (a few background workers; a download starts only while a
//! session is idle or can be opened and nobody waits for one, and ends at once when somebody
//! does). A walk stops at a miss (the reader opens another file of the directory than the next
//! one), and when it has been idle a while. A file that changes or is deleted is dropped from
//! the queue, and its download is cancelled.
//!
//! Correctness does not rest on this module: a prefetched file is kept under the version
//! (size, modification time) its directory listing showed, and `open` serves it only if the
//! version it revalidates with the server is the same (see [`super::content`]).

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::content::{ContentCache, Version};
use super::dircache::Listing;
use crate::clock::Clock;
use crate::remote::{Kind, Remote};

mod worker;

use worker::work;

/// Files bigger than this are left to the reader (a big file is a stream, not a round trip).
pub const MAX_FILE: u64 = 4 << 20;
/// At most this many bytes fetched ahead and not yet read (queued, downloading or waiting).
pub const MAX_BYTES: u64 = 64 << 20;

/// How far a prefetch may go.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The most files fetched ahead of one walk (`--prefetch-files`).
    pub files: usize,
    /// The most bytes fetched ahead and not read yet, over all walks.
    pub bytes: u64,
    /// Files bigger than this are not fetched ahead.
    pub file_size: u64,
    /// Background downloads at once (sessions used).
    pub sessions: usize,
}

impl Limits {
    /// At most `files` ahead of a walk over `sessions` sessions, with the fixed byte limits.
    pub fn new(files: usize, sessions: usize) -> Limits {
        Limits { files, bytes: MAX_BYTES, file_size: MAX_FILE, sessions }
    }
}
/// How many whole, in-order reads of sibling files make a walk.
const TRIGGER: usize = 2;
/// How far ahead a walk fetches at first (it doubles with every file found ready).
const FIRST_AHEAD: usize = 4;
/// Walks followed at once (the least recently active is dropped first).
const MAX_WALKS: usize = 8;
/// A walk with no progress for this long stops.
const WALK_IDLE: Duration = Duration::from_secs(10);
/// A fetched file not opened within this long counts as never read.
const READY_KEEP: Duration = Duration::from_secs(30);
/// How long an `open` waits for the download of its file already under way.
const OPEN_WAIT: Duration = Duration::from_secs(60);
/// How often a worker looks again for an idle session.
const SESSION_POLL: Duration = Duration::from_millis(10);
/// Bytes a download reads between checks for cancellation and waiting requests.
const CHUNK: usize = 64 * 1024;

/// What the prefetch needs to know of the filesystem.
pub trait View {
    /// The cached listing of `dir`, if any (never asks the server).
    fn cached_listing(&self, dir: &str) -> Option<Arc<Listing>>;
    /// Whether `path` is being written here (not to be fetched).
    fn busy(&self, path: &str) -> bool;
}

/// Counters for `status`.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PrefetchStats {
    /// Files opened that a prefetch had fetched whole, and their bytes.
    pub hits: u64,
    pub hit_bytes: u64,
    /// Files and bytes fetched ahead (downloads that ran to the end).
    pub files: u64,
    pub bytes: u64,
    /// Bytes fetched ahead that no one read (the file changed, or was not opened in time).
    pub unused_bytes: u64,
    /// Bytes fetched ahead and not read yet.
    pub waiting_bytes: u64,
    /// Walks followed now.
    pub walks: u64,
    /// The most files fetched ahead of a walk (`--prefetch-files`).
    pub max_files: u64,
}

/// One file to fetch.
#[derive(Clone, Debug)]
struct Item {
    path: String,
    dir: String,
    version: Version,
}

/// A reader's progress through one directory.
struct Walk {
    dir: String,
    /// Index (in the listing) of the file the reader opened last.
    cursor: usize,
    /// That file was read to its end.
    cursor_whole: bool,
    /// Whole, in-order reads in a row, up to the cursor.
    run: usize,
    active: bool,
    /// Files fetched ahead of the cursor now.
    ahead: usize,
    last: Instant,
}

struct Ready {
    bytes: u64,
    at: Instant,
    version: Version,
    /// When the download that brought the whole file began, if it did (see [`Fetched`]).
    began: Option<Instant>,
}

#[derive(Default)]
struct State {
    walks: Vec<Walk>,
    queue: VecDeque<Item>,
    /// Downloads under way, by path: cancelled when the flag is set.
    in_flight: HashMap<String, (Item, bool)>,
    /// Fetched whole, not opened yet.
    ready: HashMap<String, Ready>,
    /// Files open for reading now, and by how many: their readers download them, so a
    /// prefetch of them would send the same bytes twice.
    reading: HashMap<String, usize>,
    stopped: bool,
}

impl State {
    fn outstanding(&self) -> u64 {
        self.queue.iter().map(|i| i.version.size).sum::<u64>()
            + self.in_flight.values().map(|(i, _)| i.version.size).sum::<u64>()
            + self.ready.values().map(|r| r.bytes).sum::<u64>()
    }

    fn known(&self, path: &str) -> bool {
        self.in_flight.contains_key(path)
            || self.ready.contains_key(path)
            || self.reading.contains_key(path)
            || self.queue.iter().any(|i| i.path == path)
    }

    fn drop_queued_in(&mut self, dir: &str) {
        self.queue.retain(|i| i.dir != dir);
    }
}

/// Fetching files ahead of a reader that walks a directory (`--prefetch-files`): whole
/// downloads into the content cache by background workers, a few files ahead of the reader.
pub struct FilePrefetcher {
    max_ahead: usize,
    limits: Limits,
    cache: Arc<ContentCache>,
    remote: Arc<dyn Remote>,
    /// The mount's clock, for when a download began (see [`Fetched::began`]).
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    /// Workers wait here for work.
    work: Condvar,
    /// Openers wait here for a download under way to end.
    done: Condvar,
    hits: AtomicU64,
    hit_bytes: AtomicU64,
    files: AtomicU64,
    bytes: AtomicU64,
    unused_bytes: AtomicU64,
}

/// What `opened` found: the file had been fetched ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    pub bytes: u64,
    /// The version (listed size and time) it was fetched as.
    pub version: Version,
    /// When the download that brought all of it began: the server's answer about the file's
    /// bytes is at least that recent. `None` when part of it was in the cache before.
    pub began: Option<Instant>,
}

impl Fetched {
    /// Whether this download tells what the file is at `now` as well as a listing younger
    /// than `freshness` would: all of the file, as `version`, from a transfer begun since.
    pub fn confirms(&self, version: Version, now: Instant, freshness: Duration) -> bool {
        self.version == version && self.began.is_some_and(|b| now.saturating_duration_since(b) < freshness)
    }
}

impl FilePrefetcher {
    /// Starts `workers` background downloaders (at most that many sessions are used); they end
    /// soon after the prefetcher is dropped or stopped.
    pub fn start(
        cache: Arc<ContentCache>,
        remote: Arc<dyn Remote>,
        limits: Limits,
        clock: Arc<dyn Clock>,
    ) -> Arc<FilePrefetcher> {
        let p = Arc::new(FilePrefetcher {
            max_ahead: limits.files.max(1),
            limits,
            cache,
            remote,
            clock,
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            hits: AtomicU64::new(0),
            hit_bytes: AtomicU64::new(0),
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            unused_bytes: AtomicU64::new(0),
        });
        for i in 0..limits.sessions.max(1) {
            let weak = Arc::downgrade(&p);
            std::thread::Builder::new()
                .name(format!("prefetch-files-{i}"))
                .spawn(move || work(weak))
                .expect("spawning a prefetch thread");
        }
        p
    }

    /// A file of `listing` (directory `dir`) is being opened for reading. Waits for its
    /// download if one is under way; takes it off the queue if it was waiting (the reader
    /// fetches it itself); follows the walk. Returns whether it had been fetched ahead.
    pub fn opened(&self, dir: &str, name: &str, listing: &Listing, view: &dyn View) -> Option<Fetched> {
        let path = super::join(dir, name);
        let mut st = self.state.lock();
        let deadline = Instant::now() + OPEN_WAIT;
        while st.in_flight.contains_key(&path) {
            if self.done.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        st.queue.retain(|i| i.path != path);
        let fetched = st.ready.remove(&path).map(|r| Fetched { bytes: r.bytes, version: r.version, began: r.began });
        let Some(index) = listing.position(name) else { return fetched };
        let now = Instant::now();
        let pos = st.walks.iter().position(|w| w.dir == dir);
        match pos {
            Some(w) => {
                let walk = &mut st.walks[w];
                walk.last = now;
                if index == walk.cursor {
                    // Opened again (a sniff, then the whole read): no step.
                } else if next_file(listing, walk.cursor) == Some(index) && walk.cursor_whole {
                    walk.cursor = index;
                    walk.cursor_whole = is_empty_file(listing, index);
                    if walk.cursor_whole {
                        walk.run += 1;
                    }
                    if walk.active && fetched.is_some() {
                        walk.ahead = (walk.ahead * 2).min(self.max_ahead);
                    }
                } else {
                    // A miss: the reader went elsewhere.
                    let was_active = walk.active;
                    *walk = Walk::new(dir, index, listing, now);
                    if was_active {
                        st.drop_queued_in(dir);
                    }
                }
            }
            None => {
                let mut walk = Walk::new(dir, index, listing, now);
                // A walker that moves on to another directory and starts with its first file
                // (`cp -r` going into a subdirectory) keeps walking there.
                let walking = st.walks.iter().any(|w| w.active && now.duration_since(w.last) < Duration::from_secs(1));
                if walking && first_file(listing) == Some(index) {
                    walk.active = true;
                }
                if st.walks.len() >= MAX_WALKS {
                    let oldest = st.walks.iter().enumerate().min_by_key(|(_, w)| w.last).map(|(i, _)| i).unwrap();
                    let old = st.walks.remove(oldest);
                    st.drop_queued_in(&old.dir);
                }
                st.walks.push(walk);
            }
        }
        self.top_up(&mut st, dir, listing, view);
        fetched
    }

    /// A reader opens `path` (before [`Self::opened`], whether or not its directory is
    /// listed): until [`Self::reader_closed`], the file is not fetched ahead.
    pub fn reader_opened(&self, path: &str) {
        let mut st = self.state.lock();
        *st.reading.entry(path.to_string()).or_default() += 1;
        st.queue.retain(|i| i.path != path);
    }

    /// A reader of `path` closed it (or its open failed).
    pub fn reader_closed(&self, path: &str) {
        let mut st = self.state.lock();
        if let Some(n) = st.reading.get_mut(path) {
            *n -= 1;
            if *n == 0 {
                st.reading.remove(path);
            }
        }
    }

    /// After `opened`, once the content cache was asked: whether what was fetched ahead is
    /// what the reader gets (the version matched, the cache holds it whole).
    pub fn served(&self, fetched: Option<Fetched>, whole: bool) {
        let Some(Fetched { bytes, .. }) = fetched else { return };
        if whole {
            self.hits.fetch_add(1, Ordering::Relaxed);
            self.hit_bytes.fetch_add(bytes, Ordering::Relaxed);
        } else {
            self.unused_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// A reader of `dir/name` reached the end of the file having read all of it.
    pub fn read_to_end(&self, dir: &str, name: &str, listing: &Listing, view: &dyn View) {
        let Some(index) = listing.position(name) else { return };
        let mut st = self.state.lock();
        let Some(walk) = st.walks.iter_mut().find(|w| w.dir == dir) else { return };
        if walk.cursor != index || walk.cursor_whole {
            return;
        }
        walk.cursor_whole = true;
        walk.run += 1;
        walk.last = Instant::now();
        if walk.run >= TRIGGER {
            walk.active = true;
        }
        self.top_up(&mut st, dir, listing, view);
    }

    /// Queues the files after the cursor of `dir`'s walk, within the bounds. Near the end of
    /// a directory with no subdirectories left, the window goes on with the first files of the
    /// next directory of the parent, where a walker such as `cp -r` goes next.
    fn top_up(&self, st: &mut State, dir: &str, listing: &Listing, view: &dyn View) {
        let Some(walk) = st.walks.iter().find(|w| w.dir == dir) else { return };
        if !walk.active || st.stopped {
            return;
        }
        let (cursor, ahead) = (walk.cursor, walk.ahead.min(self.max_ahead));
        let mut window = Window { files: 0, ahead, outstanding: st.outstanding(), added: false };
        let rest = listing.entries().get(cursor + 1..).unwrap_or_default();
        self.queue_files(st, dir, rest, view, &mut window);
        let subdirs_left = rest.iter().any(|e| e.kind == Kind::Dir);
        if window.files < ahead && !subdirs_left {
            if let Some((next_dir, next)) = next_sibling_dir(dir, view) {
                let leading: Vec<_> = next.entries().iter().take_while(|e| e.kind != Kind::Dir).cloned().collect();
                self.queue_files(st, &next_dir, &leading, view, &mut window);
            }
        }
        if window.added {
            self.work.notify_all();
        }
    }

    fn queue_files(
        &self,
        st: &mut State,
        dir: &str,
        entries: &[crate::remote::Entry],
        view: &dyn View,
        w: &mut Window,
    ) {
        for e in entries {
            if w.files >= w.ahead {
                break;
            }
            if e.kind != Kind::File {
                continue;
            }
            w.files += 1;
            let path = super::join(dir, &e.name);
            let Some(mtime) = e.mtime else { continue };
            if e.size == 0 || e.size > self.limits.file_size || st.known(&path) || view.busy(&path) {
                continue;
            }
            if w.outstanding + e.size > self.limits.bytes {
                w.files = w.ahead;
                break;
            }
            let version = Version::of(e.size, mtime);
            if self.cache.holds_whole(&path, version) {
                continue;
            }
            w.outstanding += e.size;
            st.queue.push_back(Item { path, dir: dir.to_string(), version });
            w.added = true;
        }
    }

    /// `path` changed, was written, renamed or deleted: not fetched, and a download of it ends.
    pub fn forget(&self, path: &str) {
        let mut st = self.state.lock();
        st.queue.retain(|i| i.path != path);
        if let Some(r) = st.ready.remove(path) {
            self.unused_bytes.fetch_add(r.bytes, Ordering::Relaxed);
        }
        if let Some((_, cancelled)) = st.in_flight.get_mut(path) {
            *cancelled = true;
        }
    }

    /// Everything under directory `dir` (renamed or removed).
    pub fn forget_under(&self, dir: &str) {
        let prefix = format!("{dir}/");
        let mut st = self.state.lock();
        st.queue.retain(|i| !i.path.starts_with(&prefix));
        let gone: Vec<String> = st.ready.keys().filter(|p| p.starts_with(&prefix)).cloned().collect();
        for p in gone {
            if let Some(r) = st.ready.remove(&p) {
                self.unused_bytes.fetch_add(r.bytes, Ordering::Relaxed);
            }
        }
        for (p, (_, cancelled)) in st.in_flight.iter_mut() {
            if p.starts_with(&prefix) {
                *cancelled = true;
            }
        }
        st.walks.retain(|w| w.dir != dir && !w.dir.starts_with(&prefix));
    }

    /// Ends idle walks and counts files fetched long ago and never opened (the janitor calls
    /// this often).
    pub fn tick(&self) {
        self.expire(Instant::now());
    }

    fn expire(&self, now: Instant) {
        let mut st = self.state.lock();
        let idle: Vec<String> = st
            .walks
            .iter()
            .filter(|w| now.saturating_duration_since(w.last) >= WALK_IDLE)
            .map(|w| w.dir.clone())
            .collect();
        for d in &idle {
            st.drop_queued_in(d);
        }
        st.walks.retain(|w| !idle.contains(&w.dir));
        let old: Vec<String> = st
            .ready
            .iter()
            .filter(|(_, r)| now.saturating_duration_since(r.at) >= READY_KEEP)
            .map(|(p, _)| p.clone())
            .collect();
        for p in old {
            if let Some(r) = st.ready.remove(&p) {
                self.unused_bytes.fetch_add(r.bytes, Ordering::Relaxed);
            }
        }
    }

    /// Stops for good (at unmount): nothing more is started, downloads under way end.
    pub fn stop(&self) {
        let mut st = self.state.lock();
        st.stopped = true;
        st.queue.clear();
        st.walks.clear();
        for (_, cancelled) in st.in_flight.values_mut() {
            *cancelled = true;
        }
        drop(st);
        self.work.notify_all();
    }

    /// The counters for `status`; nothing is asked of the server.
    pub fn stats(&self) -> PrefetchStats {
        let st = self.state.lock();
        PrefetchStats {
            hits: self.hits.load(Ordering::Relaxed),
            hit_bytes: self.hit_bytes.load(Ordering::Relaxed),
            files: self.files.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            unused_bytes: self.unused_bytes.load(Ordering::Relaxed),
            waiting_bytes: st.ready.values().map(|r| r.bytes).sum(),
            walks: st.walks.iter().filter(|w| w.active).count() as u64,
            max_files: self.max_ahead as u64,
        }
    }

    /// Waits until nothing is queued or being downloaded (tests), at most `limit`.
    #[cfg(test)]
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut st = self.state.lock();
        while !(st.queue.is_empty() && st.in_flight.is_empty()) {
            if self.done.wait_until(&mut st, deadline).timed_out() {
                return false;
            }
        }
        true
    }
}

/// How much of a walk's window is filled.
struct Window {
    files: usize,
    ahead: usize,
    outstanding: u64,
    added: bool,
}

/// The directory after `dir` in its parent's listing, with its cached listing.
fn next_sibling_dir(dir: &str, view: &dyn View) -> Option<(String, Arc<Listing>)> {
    if dir.is_empty() {
        return None;
    }
    let (parent, name) = super::split(dir);
    let parent_listing = view.cached_listing(parent)?;
    let next = parent_listing.entries().get(parent_listing.position(name)? + 1)?;
    if next.kind != Kind::Dir {
        return None;
    }
    let path = super::join(parent, &next.name);
    let listing = view.cached_listing(&path)?;
    Some((path, listing))
}

impl Walk {
    fn new(dir: &str, index: usize, listing: &Listing, now: Instant) -> Walk {
        let empty = is_empty_file(listing, index);
        Walk {
            dir: dir.to_string(),
            cursor: index,
            cursor_whole: empty,
            run: empty as usize,
            active: false,
            ahead: FIRST_AHEAD,
            last: now,
        }
    }
}

fn is_empty_file(listing: &Listing, index: usize) -> bool {
    listing.entries().get(index).is_some_and(|e| e.kind == Kind::File && e.size == 0)
}

/// The index of the first file after `index` in listing order.
fn next_file(listing: &Listing, index: usize) -> Option<usize> {
    listing.entries().iter().enumerate().skip(index + 1).find(|(_, e)| e.kind == Kind::File).map(|(i, _)| i)
}

fn first_file(listing: &Listing) -> Option<usize> {
    listing.entries().iter().position(|e| e.kind == Kind::File)
}
