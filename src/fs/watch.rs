//! Changes made on the server by others become visible while a directory is being looked at.
//!
//! A directory counts as looked at while it is open (opendir … releasedir) and for
//! [`LINGER_ROUNDS`] watch intervals after it was last listed (`ls`, a file manager's scan).
//! Each such directory is listed again every `--watch-interval`, with one cheap command
//! ([`Remote::list_detailed`] without exact times: `LIST` without the `MDTM` round trips); only when that differs from
//! what the cache holds is it listed fully. What changed goes into the listing cache and to the
//! kernel: names added (`inval_entry`, so a lookup asks again), names removed (`delete`: the
//! kernel drops the entry and inotify watchers get IN_DELETE), files changed (`inval_inode`:
//! attributes and cached pages). A lookup of a name the cached listing lacks lists the directory
//! again too, at most once per interval, so a folder made on the server is found at once; and
//! so does opening a directory listed before whose listing was not checked for an interval (a
//! file manager's refresh, `ls` again after a while), so what it shows is never older than that.
//! A big directory is listed less often: no sooner than a second per [`ENTRIES_PER_SECOND`]
//! entries, so watching it costs the server a small share of its time.
//!
//! Notifications are sent from the watcher's thread only, holding no lock: the kernel takes the
//! directory's lock to apply them, and a FUSE request in that directory may hold it while it
//! waits for us. An idle mount (no directory open, none listed lately) sends no command.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::dircache::Listing;
use super::{Fs, Invalidate, join, split, temp_names};
use crate::remote::{Entry, Kind, RemoteError};

/// A directory stays watched this many intervals after it was last listed (a minute at 3 s).
pub const LINGER_ROUNDS: u32 = 20;
/// At most this many directories are listed again per round, open ones first, then the latest
/// listed: a tree walk (`ls -R`, `find`) does not leave every directory it passed watched.
pub const MAX_WATCHED: usize = 16;
/// Directories whose negative lookups listed them again lately, kept at most.
const MAX_NEGATIVE: usize = 1024;
/// Directories listed before and no longer watched, kept at most (opening one again checks its
/// listing first).
const MAX_KNOWN: usize = 4096;
/// A big directory is listed again no sooner than one second per this many entries: one of
/// 100,000 entries costs vsftpd about a second to list, so it is listed every ten seconds at
/// most, not every three.
const ENTRIES_PER_SECOND: u64 = 10_000;

/// What the last cheap listing of a watched directory looked like.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Baseline {
    /// Not listed by the watcher yet: the cached listing is compared by names, kinds and sizes.
    #[default]
    Unknown,
    Known(u64),
    /// A change was seen but could not be stored: list fully next time.
    Stale,
}

#[derive(Default)]
struct Watched {
    /// opendir calls not yet released.
    opens: usize,
    /// When it was last listed (readdir).
    listed: Option<Instant>,
    /// When its listing was last found to agree with the server.
    verified: Option<Instant>,
    baseline: Baseline,
}

impl Watched {
    fn watched(&self, now: Instant, linger: Duration) -> bool {
        self.opens > 0 || self.listed.is_some_and(|t| now.saturating_duration_since(t) < linger)
    }
}

#[derive(Default)]
struct State {
    /// By inode: paths change with renames, inodes do not.
    dirs: HashMap<u64, Watched>,
    /// Notifications waiting for the watcher's thread.
    pending: Vec<Invalidate>,
    /// When a negative lookup last listed a directory again, by path.
    negative: HashMap<String, Instant>,
    /// Directories this mount is changing now (count of changes in progress): a listing made
    /// meanwhile may or may not show the change, so it is not stored.
    busy: HashMap<String, usize>,
}

pub(super) struct Watch {
    /// `--watch-interval`; zero: no watching, no re-listing for lookups.
    interval: Duration,
    state: Mutex<State>,
    wake: Condvar,
}

/// Marks directories as being changed by this mount until dropped (see [`Watch::busy`]).
pub(super) struct Busy<'a> {
    watch: &'a Watch,
    dirs: Vec<String>,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if self.dirs.is_empty() {
            return;
        }
        let mut st = self.watch.state.lock();
        for d in &self.dirs {
            if let Some(n) = st.busy.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    st.busy.remove(d);
                }
            }
        }
    }
}

impl Watch {
    pub(super) fn new(interval: Duration) -> Watch {
        Watch { interval, state: Mutex::new(State::default()), wake: Condvar::new() }
    }

    fn on(&self) -> bool {
        !self.interval.is_zero()
    }

    pub(super) fn opened(&self, ino: u64) {
        if self.on() {
            self.state.lock().dirs.entry(ino).or_default().opens += 1;
        }
    }

    pub(super) fn released(&self, ino: u64) {
        if let Some(w) = self.state.lock().dirs.get_mut(&ino) {
            w.opens = w.opens.saturating_sub(1);
        }
    }

    /// The kernel forgot `ino` (a directory is never forgotten while open): its number may
    /// name another directory from now on.
    pub(super) fn forgotten(&self, ino: u64) {
        let mut st = self.state.lock();
        if st.dirs.get(&ino).is_some_and(|w| w.opens == 0) {
            st.dirs.remove(&ino);
        }
    }

    /// `ino` was read (readdir) at `at`; `fetched_now`: its listing was fetched for that read.
    /// The watch then counts the directory's period from `at`, the listing's end: a big listing
    /// takes seconds, and counted from its start it would be listed again at once.
    pub(super) fn listed(&self, ino: u64, at: Instant, fetched_now: bool) {
        if self.on() {
            let mut st = self.state.lock();
            let w = st.dirs.entry(ino).or_default();
            w.listed = Some(at);
            if fetched_now {
                w.verified = Some(at);
            }
        }
    }

    /// Notes that this mount is changing `dirs` on the server, until the guard is dropped.
    pub(super) fn busy(&self, dirs: &[&str]) -> Busy<'_> {
        if !self.on() {
            return Busy { watch: self, dirs: Vec::new() };
        }
        let dirs: Vec<String> = dirs.iter().map(|d| d.to_string()).collect();
        let mut st = self.state.lock();
        for d in &dirs {
            *st.busy.entry(d.clone()).or_default() += 1;
        }
        Busy { watch: self, dirs }
    }

    /// Sets a watched directory's baseline; returns the one it had.
    fn set_baseline(&self, ino: u64, b: Baseline) -> Baseline {
        match self.state.lock().dirs.get_mut(&ino) {
            Some(w) => std::mem::replace(&mut w.baseline, b),
            None => Baseline::Unknown,
        }
    }

    fn set_verified(&self, ino: u64, at: Instant) {
        if let Some(w) = self.state.lock().dirs.get_mut(&ino) {
            w.verified = Some(at);
        }
    }

    /// How often a directory of `entries` may be listed again: the interval, or a second per
    /// [`ENTRIES_PER_SECOND`] entries.
    fn period(&self, entries: usize) -> Duration {
        self.interval.max(Duration::from_millis(entries as u64 * 1000 / ENTRIES_PER_SECOND))
    }

    /// For a directory listed before: when its listing was last found current, if ever.
    fn known(&self, ino: u64) -> Option<Option<Instant>> {
        self.state.lock().dirs.get(&ino).filter(|w| w.listed.is_some()).map(|w| w.verified)
    }

    fn linger(&self) -> Duration {
        self.interval * LINGER_ROUNDS
    }

    /// Whether a negative lookup may list `dir` again now (once per interval); notes it.
    fn may_relist(&self, dir: &str, now: Instant) -> bool {
        let mut st = self.state.lock();
        if st.negative.get(dir).is_some_and(|t| now.saturating_duration_since(*t) < self.interval) {
            return false;
        }
        if st.negative.len() >= MAX_NEGATIVE {
            let interval = self.interval;
            st.negative.retain(|_, t| now.saturating_duration_since(*t) < interval);
            if st.negative.len() >= MAX_NEGATIVE {
                st.negative.clear();
            }
        }
        st.negative.insert(dir.to_string(), now);
        true
    }

    fn queue(&self, what: Vec<Invalidate>) {
        if what.is_empty() {
            return;
        }
        self.state.lock().pending.extend(what);
        self.wake.notify_all();
    }

    /// Waits until `deadline` or until notifications are queued.
    fn wait(&self, deadline: Instant) {
        let mut st = self.state.lock();
        if st.pending.is_empty() {
            self.wake.wait_until(&mut st, deadline);
        }
    }

    /// The directories being watched at `now`.
    pub(super) fn watched_inodes(&self, now: Instant) -> Vec<u64> {
        let linger = self.linger();
        self.state.lock().dirs.iter().filter(|(_, w)| w.watched(now, linger)).map(|(&ino, _)| ino).collect()
    }

    /// Directories being watched at `now`.
    fn watched(&self, now: Instant) -> usize {
        let linger = self.linger();
        self.state.lock().dirs.values().filter(|w| w.watched(now, linger)).count()
    }
}

/// What differs between two listings of one directory.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Names whose size, time, mode or link target changed, with whether each is a file.
    pub changed: Vec<(String, bool)>,
}

impl Changes {
    /// Whether the two listings are the same.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Kinds that cannot turn into one another in place (a file replaced by a directory is a
/// removal and an addition).
fn kind_class(k: &Kind) -> u8 {
    match k {
        Kind::File => 0,
        Kind::Dir => 1,
        Kind::Symlink(_) => 2,
        Kind::Other => 3,
    }
}

/// Whether an entry changed in what `stat` shows. A directory's size means nothing.
fn entry_differs(old: &Entry, new: &Entry) -> bool {
    if new.kind == Kind::Dir {
        return old.mtime != new.mtime || old.mode != new.mode;
    }
    old.size != new.size || old.mtime != new.mtime || old.mode != new.mode || old.kind != new.kind
}

/// What changed from `old` to `new`, names sorted.
pub fn diff(old: &Listing, new: &Listing) -> Changes {
    let mut c = Changes::default();
    for n in new.entries() {
        match old.get(&n.name) {
            None => c.added.push(n.name.clone()),
            Some(o) if kind_class(&o.kind) != kind_class(&n.kind) => {
                c.removed.push(n.name.clone());
                c.added.push(n.name.clone());
            }
            Some(o) if entry_differs(o, n) => c.changed.push((n.name.clone(), n.kind == Kind::File)),
            Some(_) => {}
        }
    }
    c.removed.extend(old.entries().iter().filter(|o| new.get(&o.name).is_none()).map(|o| o.name.clone()));
    c.added.sort_unstable();
    c.removed.sort_unstable();
    c.changed.sort_unstable();
    c
}

/// Whether a cheap listing agrees with a cached one in names, kinds and sizes (its times may
/// be coarser, so they are not compared).
fn same_shape(cached: &Listing, quick: &[Entry]) -> bool {
    cached.entries().len() == quick.len()
        && quick.iter().all(|q| {
            cached.get(&q.name).is_some_and(|c| {
                kind_class(&c.kind) == kind_class(&q.kind) && (q.kind == Kind::Dir || c.size == q.size)
            })
        })
}

/// A digest of a cheap listing: two equal ones mean nothing changed in between.
fn fingerprint(entries: &[Entry]) -> u64 {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for e in sorted {
        e.name.hash(&mut h);
        e.kind.hash(&mut h);
        if e.kind != Kind::Dir {
            e.size.hash(&mut h);
        }
        e.mtime.hash(&mut h);
        e.mode.hash(&mut h);
    }
    h.finish()
}

impl Fs {
    /// `opendir`: a directory held open is watched until released. One listed before whose
    /// listing was not found current for an interval is checked first (a refresh, a new `ls`).
    /// Returns the handle's number (see [`Fs::read_dir`]).
    pub fn opendir(&self, ino: u64) -> super::Result<u64> {
        if self.getattr(ino)?.kind != super::FileKind::Dir {
            return Err(crate::error::FsError::NotDir);
        }
        if let Some(verified) = self.watch.known(ino) {
            let path = self.path(ino)?;
            if self.dirs.peek(&path).is_some_and(|l| !self.checked_within(&l, verified, self.watch.period(l.len()))) {
                if let Err(e) = self.recheck(ino, &path) {
                    tracing::debug!("listing /{path} again as it is opened: {e}");
                }
            }
        }
        self.watch.opened(ino);
        Ok(self.next_handle.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }

    /// Whether `listing` (of a directory last found current at `verified`) was fetched or
    /// checked less than `within` ago.
    fn checked_within(&self, listing: &Listing, verified: Option<Instant>, within: Duration) -> bool {
        let last = verified.map_or(listing.fetched(), |v| v.max(listing.fetched()));
        self.clock.now().saturating_duration_since(last) < within
    }

    /// `releasedir`: drops the handle's snapshot; the directory stays watched a while longer.
    /// Nothing is sent to the server.
    pub fn releasedir(&self, fh: u64, ino: u64) {
        self.open_dirs.lock().remove(&fh);
        self.watch.released(ino);
    }

    /// Directories being watched for changes on the server.
    pub fn watched_dirs(&self) -> usize {
        self.watch.watched(self.clock.now())
    }

    /// Starts the thread that watches directories being looked at (nothing with
    /// `--watch-interval 0`). It ends when the filesystem is dropped.
    pub fn start_watching(self: &Arc<Self>) {
        let interval = self.watch.interval;
        if interval.is_zero() {
            return;
        }
        let weak = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("watch".into())
            .spawn(move || {
                let mut next = Instant::now() + interval;
                while let Some(fs) = weak.upgrade() {
                    fs.watch.wait(next);
                    fs.send_pending();
                    if Instant::now() >= next {
                        fs.watch_round();
                        fs.send_pending();
                        next = Instant::now() + interval;
                    }
                }
            })
            .expect("spawning the watch thread");
    }

    /// Tells the kernel what the watcher found (holding no lock while doing so).
    pub(super) fn send_pending(&self) {
        let pending = std::mem::take(&mut self.watch.state.lock().pending);
        for what in pending {
            self.notify(what);
        }
    }

    /// One round: every directory being looked at is listed again (cheaply) unless its listing
    /// is fresh; directories no longer looked at are forgotten. A round stops early when other
    /// requests wait for a session.
    pub fn watch_round(&self) {
        let now = self.clock.now();
        let interval = self.watch.interval;
        let linger = self.watch.linger();
        // Known (not watched) until its listing would have expired anyway.
        let known_for = linger + self.config.dir_ttl;
        let mut picks: Vec<(u64, bool, Option<Instant>)> = {
            let mut st = self.watch.state.lock();
            st.dirs
                .retain(|_, w| w.opens > 0 || w.listed.is_some_and(|t| now.saturating_duration_since(t) < known_for));
            if st.dirs.len() > MAX_KNOWN {
                let mut by_age: Vec<(Option<Instant>, u64)> =
                    st.dirs.iter().filter(|(_, w)| w.opens == 0).map(|(&ino, w)| (w.listed, ino)).collect();
                by_age.sort_unstable();
                let excess = st.dirs.len() - MAX_KNOWN;
                for (_, ino) in by_age.into_iter().take(excess) {
                    st.dirs.remove(&ino);
                }
            }
            st.dirs
                .iter()
                .filter(|(_, w)| w.watched(now, linger))
                .map(|(&ino, w)| (ino, w.opens > 0, w.listed))
                .collect()
        };
        picks.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)));
        picks.truncate(MAX_WATCHED);
        for (ino, ..) in picks {
            if self.remote.sessions_wanted() {
                tracing::trace!("watch: other requests wait for a session; the round ends early");
                break;
            }
            let Ok(path) = self.path(ino) else {
                self.watch.state.lock().dirs.remove(&ino);
                continue;
            };
            let verified = self.watch.known(ino).flatten();
            let fresh = |l: &Listing| self.checked_within(l, verified, self.watch.period(l.len()) - interval / 2);
            // Nothing cached means nothing to compare: its first listing is on its way (a big
            // one takes seconds; listing it twice at once would only slow it), or the next look
            // lists it anyway.
            if self.dirs.peek(&path).is_none_or(|l| fresh(&l)) {
                continue;
            }
            match self.recheck(ino, &path) {
                Ok(_) => {}
                // Gone: its parent's listing tells the kernel.
                Err(RemoteError::NotFound(_) | RemoteError::NotADirectory(_)) => {
                    self.watch.state.lock().dirs.remove(&ino);
                }
                Err(e) => tracing::debug!("watch: listing /{path} again: {e}"),
            }
        }
    }

    /// A lookup found no `name` in the cached listing of `dir`: if that listing is older than
    /// the watch interval, the directory is listed again (at most once per interval). True when
    /// the listing changed, so the lookup should look again.
    pub(super) fn relist_for_lookup(&self, parent: u64, dir: &str) -> bool {
        if !self.watch.on() {
            return false;
        }
        let now = self.clock.now();
        let Some(listing) = self.dirs.peek(dir) else { return false };
        if self.checked_within(&listing, self.watch.known(parent).flatten(), self.watch.period(listing.len()))
            || !self.watch.may_relist(dir, now)
        {
            return false;
        }
        match self.recheck(parent, dir) {
            Ok(changed) => changed,
            Err(e) => {
                tracing::debug!("listing /{dir} again for a lookup: {e}");
                false
            }
        }
    }

    /// Lists `dir` (inode `ino`) again with one cheap command and, if it differs, fully; stores
    /// the new listing and queues what the kernel must be told. True when the listing changed.
    fn recheck(&self, ino: u64, dir: &str) -> crate::remote::Result<bool> {
        let snap = self.dirs.snapshot(dir);
        let started = self.clock.now();
        let mut quick = self.remote.list_detailed(dir, false)?;
        quick.entries.retain(|e| !temp_names::is_own_temp(&e.name));
        let exact = quick.exact;
        let print = fingerprint(&quick.entries);
        let before = self.watch.set_baseline(ino, Baseline::Known(print));
        let Some(old) = snap.listing.clone() else {
            // Nothing cached to compare with: keep it if it is exact, else the next look lists.
            if exact && !self.watch.state.lock().busy.contains_key(dir) {
                self.dirs.replace(dir, &snap, quick, started);
            }
            return Ok(false);
        };
        let unchanged = match before {
            Baseline::Unknown => true,
            Baseline::Known(p) => p == print,
            Baseline::Stale => false,
        };
        if unchanged && same_shape(&old, &quick.entries) {
            self.watch.set_verified(ino, started);
            if exact {
                // Only an exact listing vouches for times (open's revalidation trusts it).
                self.dirs.confirm(dir, snap, started);
            }
            return Ok(false);
        }
        let listed = if exact { quick } else { self.remote.list_detailed(dir, true)? };
        let stored = {
            let st = self.watch.state.lock();
            if st.busy.contains_key(dir) { None } else { self.dirs.replace(dir, &snap, listed, started) }
        };
        let Some(new) = stored else {
            // This mount changed the directory meanwhile: look again next round.
            self.watch.set_baseline(ino, Baseline::Stale);
            return Ok(false);
        };
        self.watch.set_verified(ino, started);
        let changes = diff(&old, &new);
        if changes.is_empty() {
            return Ok(false);
        }
        tracing::debug!(
            "/{dir} changed on the server: added {:?}, removed {:?}, changed {:?}",
            changes.added,
            changes.removed,
            changes.changed.iter().map(|c| &c.0).collect::<Vec<_>>()
        );
        self.tell_changes(ino, dir, &changes);
        Ok(true)
    }

    /// Queues what the kernel must be told about `changes` in directory `dir` (inode `parent`).
    /// Files this mount is writing are left alone: their state is ours until uploaded.
    fn tell_changes(&self, parent: u64, dir: &str, changes: &Changes) {
        let ours: HashSet<String> =
            self.writing.lock().keys().filter(|p| split(p).0 == dir).map(|p| split(p).1.to_string()).collect();
        let mut out = Vec::new();
        let mut gone = Vec::new();
        {
            let mut inodes = self.inodes.lock();
            for name in changes.removed.iter().filter(|n| !ours.contains(*n)) {
                match inodes.find(parent, name) {
                    Some(child) => {
                        // A name that comes back later is a new file, with a new inode.
                        inodes.detach(parent, name);
                        out.push(Invalidate::Deleted { parent, child, name: name.clone() });
                    }
                    None => out.push(Invalidate::Entry { parent, name: name.clone() }),
                }
                gone.push(join(dir, name));
            }
            for name in changes.added.iter().filter(|n| !ours.contains(*n)) {
                out.push(Invalidate::Entry { parent, name: name.clone() });
            }
            for (name, file) in changes.changed.iter().filter(|(n, _)| !ours.contains(n)) {
                if let Some(child) = inodes.find(parent, name) {
                    out.push(if *file { Invalidate::Inode(child) } else { Invalidate::Attr(child) });
                }
            }
        }
        for path in &gone {
            self.set_times.lock().remove(path);
            self.dirs.invalidate_tree(path);
            // Removed on the server: what the content cache holds of it is no one's.
            self.forget_content(path);
            self.forget_content_under(path);
        }
        {
            let mut told = self.told.lock();
            for what in &out {
                if let Invalidate::Inode(child) | Invalidate::Deleted { child, .. } = what {
                    told.remove(child);
                }
            }
        }
        // The directory's own attributes (links, size) follow its entries.
        out.push(Invalidate::Attr(parent));
        self.watch.queue(out);
    }
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
