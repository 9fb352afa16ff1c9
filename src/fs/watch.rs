//! Changes made on the server by others become visible while a directory is being looked at.
//!
//! A directory counts as looked at while it is open (opendir … releasedir) and for
//! [`LINGER_ROUNDS`] watch intervals after it was last listed (`ls`, a file manager's scan).
//! Each such directory is listed again every `--watch-interval`, with one cheap command
//! ([`Remote::list_quick`]: `LIST` without the `MDTM` round trips); only when that differs from
//! what the cache holds is it listed fully. What changed goes into the listing cache and to the
//! kernel: names added (`inval_entry`, so a lookup asks again), names removed (`delete`: the
//! kernel drops the entry and inotify watchers get IN_DELETE), files changed (`inval_inode`:
//! attributes and cached pages). A lookup of a name the cached listing lacks lists the directory
//! again too, at most once per interval, so a folder made on the server is found at once; and
//! so does opening a directory listed before whose listing was not checked for an interval (a
//! file manager's refresh, `ls` again after a while), so what it shows is never older than that.
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
use super::{Fs, Invalidate, join, split, write};
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

    pub(super) fn listed(&self, ino: u64, at: Instant) {
        if self.on() {
            self.state.lock().dirs.entry(ino).or_default().listed = Some(at);
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
    for n in &new.entries {
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
    c.removed.extend(old.entries.iter().filter(|o| new.get(&o.name).is_none()).map(|o| o.name.clone()));
    c.added.sort_unstable();
    c.removed.sort_unstable();
    c.changed.sort_unstable();
    c
}

/// Whether a cheap listing agrees with a cached one in names, kinds and sizes (its times may
/// be coarser, so they are not compared).
fn same_shape(cached: &Listing, quick: &[Entry]) -> bool {
    cached.entries.len() == quick.len()
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
    pub fn opendir(&self, ino: u64) -> super::Result<()> {
        if self.getattr(ino)?.kind != super::FileKind::Dir {
            return Err(crate::error::FsError::NotDir);
        }
        if let Some(verified) = self.watch.known(ino) {
            let path = self.path(ino)?;
            if self.dirs.peek(&path).is_some_and(|l| !self.checked_within(&l, verified, self.watch.interval)) {
                if let Err(e) = self.recheck(ino, &path) {
                    tracing::debug!("listing /{path} again as it is opened: {e}");
                }
            }
        }
        self.watch.opened(ino);
        Ok(())
    }

    /// Whether `listing` (of a directory last found current at `verified`) was fetched or
    /// checked less than `within` ago.
    fn checked_within(&self, listing: &Listing, verified: Option<Instant>, within: Duration) -> bool {
        let last = verified.map_or(listing.fetched, |v| v.max(listing.fetched));
        self.clock.now().saturating_duration_since(last) < within
    }

    pub fn releasedir(&self, ino: u64) {
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
            if self.dirs.peek(&path).is_some_and(|l| self.checked_within(&l, verified, interval / 2)) {
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
        if self.checked_within(&listing, self.watch.known(parent).flatten(), self.watch.interval)
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
        let (mut quick, exact) = self.remote.list_quick(dir)?;
        quick.retain(|e| !write::is_own_temp(&e.name));
        let print = fingerprint(&quick);
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
        if unchanged && same_shape(&old, &quick) {
            self.watch.set_verified(ino, started);
            if exact {
                // Only an exact listing vouches for times (open's revalidation trusts it).
                self.dirs.confirm(dir, snap, started);
            }
            return Ok(false);
        }
        let entries = if exact { quick } else { self.remote.list(dir)? };
        let stored = {
            let st = self.watch.state.lock();
            if st.busy.contains_key(dir) { None } else { self.dirs.replace(dir, &snap, entries, started) }
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
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::fs::inode::ROOT;
    use crate::fs::tests::test_config;
    use crate::remote::fake::FakeRemote;
    use std::sync::atomic::Ordering;
    use std::time::SystemTime;

    struct Manual(Mutex<Instant>);
    impl Clock for Manual {
        fn now(&self) -> Instant {
            *self.0.lock()
        }
    }

    fn e(name: &str, kind: Kind, size: u64, secs: u64) -> Entry {
        Entry {
            name: name.into(),
            kind,
            size,
            mtime: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
            mode: None,
        }
    }

    #[test]
    fn diff_names_what_was_added_removed_and_changed() {
        let t = Instant::now();
        let old = Listing::new(
            vec![
                e("same", Kind::File, 1, 100),
                e("grew", Kind::File, 1, 100),
                e("touched", Kind::File, 1, 100),
                e("gone", Kind::File, 1, 100),
                e("dir", Kind::Dir, 4096, 100),
                e("became-dir", Kind::File, 1, 100),
            ],
            t,
        );
        let new = Listing::new(
            vec![
                e("same", Kind::File, 1, 100),
                e("grew", Kind::File, 2, 100),
                e("touched", Kind::File, 1, 160),
                e("dir", Kind::Dir, 0, 100),
                e("became-dir", Kind::Dir, 4096, 100),
                e("new", Kind::File, 0, 100),
            ],
            t,
        );
        let c = diff(&old, &new);
        assert_eq!(c.added, ["became-dir", "new"]);
        assert_eq!(c.removed, ["became-dir", "gone"]);
        assert_eq!(
            c.changed,
            [("grew".to_string(), true), ("touched".to_string(), true)],
            "a directory's size is no change"
        );
        assert!(diff(&old, &old).is_empty());
    }

    #[test]
    fn cheap_listings_are_compared_by_shape_and_by_their_previous_digest() {
        let cached = Listing::new(vec![e("a", Kind::File, 1, 100), e("d", Kind::Dir, 0, 100)], Instant::now());
        // Coarser times and a directory's size do not count; a size, a name or a kind does.
        assert!(same_shape(&cached, &[e("a", Kind::File, 1, 60), e("d", Kind::Dir, 4096, 60)]));
        assert!(!same_shape(&cached, &[e("a", Kind::File, 2, 60), e("d", Kind::Dir, 0, 60)]));
        assert!(!same_shape(&cached, &[e("a", Kind::File, 1, 60), e("d", Kind::File, 0, 60)]));
        assert!(!same_shape(&cached, &[e("a", Kind::File, 1, 60)]));
        let one = [e("a", Kind::File, 1, 60), e("b", Kind::File, 1, 60)];
        let other_order = [e("b", Kind::File, 1, 60), e("a", Kind::File, 1, 60)];
        assert_eq!(fingerprint(&one), fingerprint(&other_order));
        assert_ne!(fingerprint(&one), fingerprint(&[e("a", Kind::File, 1, 120), e("b", Kind::File, 1, 60)]));
    }

    /// A mount with watching every 3 s on a manual clock, and the notifications it sends.
    struct Rig {
        fs: Arc<Fs>,
        clock: Arc<Manual>,
        sent: Arc<Mutex<Vec<Invalidate>>>,
    }

    impl Rig {
        fn new(fake: Arc<FakeRemote>) -> Rig {
            let clock = Arc::new(Manual(Mutex::new(Instant::now())));
            let config = crate::fs::FsConfig {
                watch_interval: Duration::from_secs(3),
                dir_ttl: Duration::from_secs(600),
                ..test_config()
            };
            let fs = Arc::new(Fs::new(fake, config, clock.clone()));
            let sent: Arc<Mutex<Vec<Invalidate>>> = Arc::default();
            let s = sent.clone();
            fs.set_notifier(Arc::new(move |what| s.lock().push(what)));
            Rig { fs, clock, sent }
        }

        fn advance(&self, secs: u64) {
            *self.clock.0.lock() += Duration::from_secs(secs);
        }

        /// A watch round; what it sent.
        fn round(&self) -> Vec<Invalidate> {
            self.fs.watch_round();
            self.fs.send_pending();
            std::mem::take(&mut *self.sent.lock())
        }

        fn names(&self, ino: u64) -> Vec<String> {
            self.fs.readdir(ino, false).unwrap().into_iter().map(|e| e.name).collect()
        }
    }

    #[test]
    fn a_listed_directory_is_watched_and_the_kernel_is_told_what_changed() {
        let fake = Arc::new(FakeRemote::new());
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        fake.add_file("d/keep", b"1", t);
        fake.add_file("d/grows", b"1", t);
        fake.add_file("d/goes", b"1", t);
        let rig = Rig::new(fake.clone());
        let d = rig.fs.lookup(ROOT, "d").unwrap();
        assert_eq!(rig.names(d.ino), ["goes", "grows", "keep"]);
        let grows = rig.fs.lookup(d.ino, "grows").unwrap().ino;
        let goes = rig.fs.lookup(d.ino, "goes").unwrap().ino;

        fake.add_file("d/new", b"fresh", t);
        fake.add_file("d/grows", b"1234", t);
        fake.remove("d/goes");
        rig.advance(3);
        let sent = rig.round();
        assert_eq!(
            sent,
            [
                Invalidate::Deleted { parent: d.ino, child: goes, name: "goes".into() },
                Invalidate::Entry { parent: d.ino, name: "new".into() },
                Invalidate::Inode(grows),
                Invalidate::Attr(d.ino),
            ]
        );
        assert_eq!(rig.names(d.ino), ["grows", "keep", "new"], "the cache has the server's listing");
        assert_eq!(rig.fs.lookup(d.ino, "grows").unwrap().size, 4);
        assert!(rig.fs.path(goes).is_err(), "a removed name's inode is detached");

        // Nothing changed: one cheap listing, nothing sent.
        let lists = fake.lists.load(Ordering::SeqCst);
        rig.advance(3);
        assert!(rig.round().is_empty());
        assert_eq!(fake.lists.load(Ordering::SeqCst), lists + 1);
    }

    #[test]
    fn an_idle_mount_lists_nothing_and_watching_ends_after_the_linger() {
        let fake = Arc::new(FakeRemote::new());
        fake.add_file("d/a", b"1", SystemTime::now());
        let rig = Rig::new(fake.clone());
        let d = rig.fs.lookup(ROOT, "d").unwrap();
        let lists = fake.lists.load(Ordering::SeqCst);
        for _ in 0..5 {
            rig.advance(3);
            rig.round();
        }
        assert_eq!(fake.lists.load(Ordering::SeqCst), lists, "looked up, never listed: not watched");

        rig.names(d.ino);
        let lists = fake.lists.load(Ordering::SeqCst);
        let rounds = LINGER_ROUNDS as usize + 5;
        for _ in 0..rounds {
            rig.advance(3);
            rig.round();
        }
        let watched_rounds = fake.lists.load(Ordering::SeqCst) - lists;
        assert!((LINGER_ROUNDS as usize - 2..LINGER_ROUNDS as usize).contains(&watched_rounds), "{watched_rounds}");
        assert_eq!(rig.fs.watched_dirs(), 0, "forgotten");

        // Held open: watched however long ago it was listed, until released.
        rig.fs.opendir(d.ino).unwrap();
        let lists = fake.lists.load(Ordering::SeqCst);
        for _ in 0..rounds {
            rig.advance(3);
            rig.round();
        }
        assert_eq!(fake.lists.load(Ordering::SeqCst) - lists, rounds);
        rig.fs.releasedir(d.ino);
        rig.advance(3);
        rig.round();
        assert_eq!(rig.fs.watched_dirs(), 0);
    }

    #[test]
    fn opening_a_directory_no_longer_watched_checks_its_listing_first() {
        let fake = Arc::new(FakeRemote::new());
        fake.add_file("d/a", b"1", SystemTime::now());
        let rig = Rig::new(fake.clone());
        let d = rig.fs.lookup(ROOT, "d").unwrap();
        rig.names(d.ino);
        for _ in 0..LINGER_ROUNDS + 1 {
            rig.advance(3);
            rig.round();
        }
        assert_eq!(rig.fs.watched_dirs(), 0);
        // A refresh in a file manager, after a while: the listing (600 s TTL) is checked first.
        fake.add_file("d/b", b"1", SystemTime::now());
        let lists = fake.lists.load(Ordering::SeqCst);
        rig.fs.opendir(d.ino).unwrap();
        assert_eq!(rig.names(d.ino), ["a", "b"]);
        rig.fs.releasedir(d.ino);
        assert_eq!(fake.lists.load(Ordering::SeqCst), lists + 1);
        // Again at once: the listing is current.
        rig.fs.opendir(d.ino).unwrap();
        rig.names(d.ino);
        rig.fs.releasedir(d.ino);
        assert_eq!(fake.lists.load(Ordering::SeqCst), lists + 1);
    }

    #[test]
    fn a_round_gives_way_to_requests_waiting_for_a_session() {
        let fake = Arc::new(FakeRemote::new());
        fake.add_dir("d");
        let rig = Rig::new(fake.clone());
        rig.names(ROOT);
        let lists = fake.lists.load(Ordering::SeqCst);
        fake.sessions_wanted.store(true, Ordering::SeqCst);
        rig.advance(3);
        rig.round();
        assert_eq!(fake.lists.load(Ordering::SeqCst), lists);
        fake.sessions_wanted.store(false, Ordering::SeqCst);
        rig.advance(3);
        rig.round();
        assert_eq!(fake.lists.load(Ordering::SeqCst), lists + 1);
    }

    #[test]
    fn where_cheap_listings_are_coarse_a_full_listing_follows_only_a_change() {
        let fake = Arc::new(FakeRemote::new());
        fake.coarse_quick_lists.store(true, Ordering::SeqCst);
        // 27 s into a minute.
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_007);
        fake.add_file("f", b"1", t);
        let rig = Rig::new(fake.clone());
        rig.names(ROOT);
        let f = rig.fs.lookup(ROOT, "f").unwrap();
        assert_eq!(f.mtime, t);
        let (lists, quick) = (fake.lists.load(Ordering::SeqCst), fake.quick_lists.load(Ordering::SeqCst));
        for _ in 0..3 {
            rig.advance(3);
            assert!(rig.round().is_empty(), "coarse times are no change");
        }
        assert_eq!(fake.quick_lists.load(Ordering::SeqCst) - quick, 3);
        assert_eq!(fake.lists.load(Ordering::SeqCst) - lists, 3, "no full listing");

        // Same size, same minute: a coarse listing cannot see it, so it does not make the
        // cached listing count as fresh, and open still asks the server (close-to-open).
        fake.add_file("f", b"1", t + Duration::from_secs(1));
        rig.advance(3);
        assert!(rig.round().is_empty());
        let stats = fake.stats.load(Ordering::SeqCst);
        let fh = rig.fs.open(f.ino, crate::fs::OpenMode { read: true, ..Default::default() }).unwrap();
        rig.fs.release(fh);
        assert_eq!(fake.stats.load(Ordering::SeqCst), stats + 1);
        assert_eq!(rig.fs.getattr(f.ino).unwrap().mtime, t + Duration::from_secs(1));
        rig.sent.lock().clear();

        // Another minute is seen, and the full listing gives the exact time.
        fake.add_file("f", b"2", t + Duration::from_secs(61));
        let lists = fake.lists.load(Ordering::SeqCst);
        rig.advance(3);
        assert_eq!(rig.round(), [Invalidate::Inode(f.ino), Invalidate::Attr(ROOT)]);
        assert_eq!(fake.lists.load(Ordering::SeqCst) - lists, 2, "cheap, then full");
        assert_eq!(rig.fs.getattr(f.ino).unwrap().mtime, t + Duration::from_secs(61));
    }

    #[test]
    fn a_change_this_mount_makes_during_a_listing_is_not_taken_for_a_removal() {
        let fake = Arc::new(FakeRemote::new());
        fake.add_file("a", b"1", SystemTime::now());
        let rig = Rig::new(fake.clone());
        rig.names(ROOT);
        let a = rig.fs.lookup(ROOT, "a").unwrap();
        // A rename through the mount is under way: the server has the new name, the cache
        // not yet.
        let busy = rig.fs.watch.busy(&[""]);
        fake.remove("a");
        fake.add_file("b", b"1", SystemTime::now());
        rig.advance(3);
        assert!(rig.round().is_empty(), "nothing told while this mount changes the directory");
        assert!(rig.fs.path(a.ino).is_ok(), "the inode is not detached");
        assert_eq!(rig.names(ROOT), ["a"], "the listing made meanwhile is not stored");
        drop(busy);
        // Had it been another client's change, the next round tells it.
        rig.advance(3);
        assert_eq!(
            rig.round(),
            [
                Invalidate::Deleted { parent: ROOT, child: a.ino, name: "a".into() },
                Invalidate::Entry { parent: ROOT, name: "b".into() },
                Invalidate::Attr(ROOT),
            ]
        );
    }

    #[test]
    fn a_negative_lookup_lists_again_once_per_interval() {
        let fake = Arc::new(FakeRemote::new());
        fake.add_dir("d");
        let rig = Rig::new(fake.clone());
        let d = rig.fs.lookup(ROOT, "d").unwrap();
        assert!(rig.fs.lookup(d.ino, "new").is_err());
        fake.add_dir("d/new");
        let lists = fake.lists.load(Ordering::SeqCst);
        assert!(rig.fs.lookup(d.ino, "new").is_err(), "a listing younger than the interval answers");
        rig.advance(3);
        assert!(rig.fs.lookup(d.ino, "other").is_err());
        assert_eq!(fake.lists.load(Ordering::SeqCst), lists + 1, "listed again");
        assert!(rig.fs.lookup(d.ino, "new").is_ok(), "found without waiting for --dir-timeout");
        for _ in 0..10 {
            assert!(rig.fs.lookup(d.ino, "missing").is_err());
        }
        assert_eq!(fake.lists.load(Ordering::SeqCst), lists + 1, "at most once per interval");
        // The kernel hears of the new name from the watcher's thread, not from the lookup.
        assert!(rig.sent.lock().is_empty());
        rig.fs.send_pending();
        assert!(rig.sent.lock().contains(&Invalidate::Entry { parent: d.ino, name: "new".into() }));
    }

    #[test]
    fn without_a_watch_interval_nothing_is_listed_again() {
        let fake = Arc::new(FakeRemote::new());
        fake.add_dir("d");
        let fs = Fs::new(fake.clone(), test_config(), Arc::new(crate::clock::SystemClock));
        let d = fs.lookup(ROOT, "d").unwrap();
        fs.readdir(d.ino, false).unwrap();
        fs.opendir(d.ino).unwrap();
        let lists = fake.lists.load(Ordering::SeqCst);
        fs.watch_round();
        assert!(fs.lookup(d.ino, "x").is_err());
        assert_eq!(fake.lists.load(Ordering::SeqCst), lists);
        assert_eq!(fs.watched_dirs(), 0);
    }
}
