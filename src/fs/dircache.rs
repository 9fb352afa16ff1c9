//! Directory listings, cached: bounded (LRU, by directories and by entries in all of them),
//! timed (TTL), and loaded once even when many threads ask for the same directory at the same
//! time. A fresh listing also answers "no such file" without a round trip.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lru::LruCache;
use parking_lot::{Condvar, Mutex};

pub use super::listing::Listing;
use crate::casefold::Folding;
use crate::clock::Clock;
use crate::remote::{self, Entry, Remote, RemoteError};

/// How much the cache holds at most: listings, and entries in all of them together (the
/// newest listing is kept even when it alone has more).
#[derive(Debug, Clone, Copy)]
pub struct CacheLimits {
    pub dirs: usize,
    pub entries: usize,
}

/// A cached listing as it was at one moment (see [`DirCache::snapshot`]).
pub struct Snapshot {
    /// The listing cached then, if any.
    pub listing: Option<Arc<Listing>>,
    changes: u64,
}

/// One load in progress; later askers wait for its result instead of listing again.
#[derive(Default)]
struct Flight {
    result: Mutex<Option<Result<Arc<Listing>, RemoteError>>>,
    done: Condvar,
}

/// A listing this long frees megabytes when it is built or dropped: worth a memory trim.
const BIG_LISTING: usize = 10_000;

/// The cached listings, least recently used first out, with the entries they hold together.
struct Stored {
    lru: LruCache<String, Arc<Listing>>,
    entries: usize,
    max_dirs: usize,
    max_entries: usize,
}

impl Stored {
    fn put(&mut self, dir: &str, listing: Arc<Listing>) {
        if listing.len() >= BIG_LISTING {
            // Building it freed as much again (the server's lines, the parsed entries).
            crate::memory::trim_soon();
        }
        self.entries += listing.len();
        if let Some(old) = self.lru.put(dir.to_string(), listing) {
            self.entries -= old.len();
        }
        while self.entries > self.max_entries || self.lru.len() > self.max_dirs {
            let Some(victim) = self.victim(dir) else { break };
            self.pop(&victim);
        }
    }

    /// The listing to drop next: the least recently used, but never `newest` (being used) nor
    /// one that alone fills over half the bound (a big directory being worked in would
    /// otherwise be dropped and listed again whenever any other directory is looked at).
    fn victim(&self, newest: &str) -> Option<String> {
        let largest = self
            .lru
            .iter()
            .max_by_key(|(_, l)| l.len())
            .filter(|(_, l)| l.len().saturating_mul(2) > self.max_entries)
            .map(|(k, _)| k.as_str());
        let mut oldest_first = self.lru.iter().rev();
        oldest_first.find(|(k, _)| k.as_str() != newest && Some(k.as_str()) != largest).map(|(k, _)| k.clone())
    }

    fn pop(&mut self, dir: &str) -> Option<Arc<Listing>> {
        let old = self.lru.pop(dir)?;
        self.entries -= old.len();
        Some(old)
    }

    /// Changes the listing of `dir` in place, if cached (copying it first if it is shared).
    fn change<T>(&mut self, dir: &str, f: impl FnOnce(&mut Listing) -> T) -> Option<T> {
        let listing = Arc::make_mut(self.lru.peek_mut(dir)?);
        let before = listing.len();
        let out = f(listing);
        self.entries = self.entries + listing.len() - before;
        Some(out)
    }
}

/// Directory listings, each trusted for `--dir-timeout`, at most [`CacheLimits`] of them; a
/// listing asked for by several callers at once is loaded from the server once.
pub struct DirCache {
    ttl: Duration,
    /// Index listings by folded name (for case checks), or not.
    folding: Option<Folding>,
    clock: Arc<dyn Clock>,
    cache: Mutex<Stored>,
    flights: Mutex<HashMap<String, Arc<Flight>>>,
    /// Counts changes made to cached listings (by this mount), so a listing loaded in the
    /// background can tell whether one happened while it was on the way (see [`Snapshot`]).
    changes: std::sync::atomic::AtomicU64,
    /// Lookups answered from the cache, and those that had to list the server (for `status`).
    pub hits: std::sync::atomic::AtomicU64,
    pub misses: std::sync::atomic::AtomicU64,
}

impl DirCache {
    /// A cache of at most `capacity` listings, each trusted for `ttl`, without a folded index.
    pub fn new(capacity: usize, ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        Self::with_folding(CacheLimits { dirs: capacity, entries: usize::MAX }, ttl, clock, None)
    }

    /// A cache within `limits`, each listing trusted for `ttl`; with `folding`, listings are also
    /// indexed by folded name for the case checks.
    pub fn with_folding(limits: CacheLimits, ttl: Duration, clock: Arc<dyn Clock>, folding: Option<Folding>) -> Self {
        let stored = Stored {
            lru: LruCache::unbounded(),
            entries: 0,
            max_dirs: limits.dirs.max(1),
            max_entries: limits.entries,
        };
        DirCache {
            ttl,
            folding,
            clock,
            cache: Mutex::new(stored),
            flights: Mutex::new(HashMap::new()),
            changes: Default::default(),
            hits: Default::default(),
            misses: Default::default(),
        }
    }

    /// The listing of `dir`, from the cache if fresh, else from the server.
    pub fn get(&self, remote: &dyn Remote, dir: &str) -> remote::Result<Arc<Listing>> {
        if let Some(l) = self.fresh(dir) {
            self.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(l);
        }
        self.misses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.load(remote, dir)
    }

    /// A cached listing if it is younger than the TTL.
    pub fn fresh(&self, dir: &str) -> Option<Arc<Listing>> {
        let mut cache = self.cache.lock();
        let listing = cache.lru.get(dir)?;
        (self.clock.now().saturating_duration_since(listing.fetched()) < self.ttl).then(|| listing.clone())
    }

    /// Drops listings fetched (or confirmed) longer than `age` ago, except those `keep` names:
    /// they answer nothing any more (older than the TTL), and their memory goes back once
    /// nobody looks at them.
    pub fn drop_older_than(&self, age: Duration, keep: impl Fn(&str) -> bool) {
        let now = self.clock.now();
        let mut cache = self.cache.lock();
        let old: Vec<String> = cache
            .lru
            .iter()
            .filter(|(k, l)| now.saturating_duration_since(l.fetched()) > age && !keep(k))
            .map(|(k, _)| k.clone())
            .collect();
        let freed: usize = old.iter().filter_map(|k| cache.pop(k)).map(|l| l.len()).sum();
        if freed >= BIG_LISTING {
            crate::memory::trim_soon();
        }
    }

    /// How many listings are cached, and their entries together.
    pub fn size(&self) -> (usize, usize) {
        let cache = self.cache.lock();
        (cache.lru.len(), cache.entries)
    }

    /// A cached listing however old (its `fetched` says how old).
    pub fn peek(&self, dir: &str) -> Option<Arc<Listing>> {
        self.cache.lock().lru.peek(dir).cloned()
    }

    /// Drops a directory's listing (after a change we made, or on request).
    pub fn invalidate(&self, dir: &str) {
        self.changed();
        self.cache.lock().pop(dir);
    }

    /// Drops the listings of `dir` and everything below it (after it moved or vanished).
    pub fn invalidate_tree(&self, dir: &str) {
        self.changed();
        let mut cache = self.cache.lock();
        let prefix = format!("{dir}/");
        let doomed: Vec<String> = cache
            .lru
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| k == dir || dir.is_empty() || k.starts_with(&prefix))
            .collect();
        for k in doomed {
            cache.pop(&k);
        }
    }

    /// Records our own change to an entry of `dir`, so `ls` and `stat` show it at once.
    /// A directory not in the cache is simply listed when next needed.
    pub fn upsert(&self, dir: &str, entry: Entry) {
        self.changed();
        self.cache.lock().change(dir, |listing| listing.upsert(entry));
    }

    /// Records a directory we just created: it is empty, no listing needed.
    pub fn insert_empty(&self, dir: &str) {
        let listing = Listing::with_folding(Vec::new(), self.clock.now(), self.folding);
        self.changed();
        self.cache.lock().put(dir, Arc::new(listing));
    }

    /// Records that `name` left `dir`; returns the entry it had.
    pub fn remove_entry(&self, dir: &str, name: &str) -> Option<Entry> {
        self.changed();
        self.cache.lock().change(dir, |listing| listing.remove(name)).flatten()
    }

    fn changed(&self) {
        self.changes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// What is cached for `dir` now, for a later [`DirCache::replace`] or [`DirCache::confirm`].
    pub fn snapshot(&self, dir: &str) -> Snapshot {
        let changes = self.changes.load(std::sync::atomic::Ordering::SeqCst);
        Snapshot { listing: self.peek(dir), changes }
    }

    /// Stores `listed` (this mount's uploads in flight left out) as the listing of `dir`
    /// fetched at `fetched`, unless the cached listing changed since `snap` was taken: a change
    /// this mount made meanwhile may be missing from `listed`, and the cache keeps it. Returns
    /// the listing stored.
    pub fn replace(
        &self,
        dir: &str,
        snap: &Snapshot,
        listed: remote::Listed,
        fetched: Instant,
    ) -> Option<Arc<Listing>> {
        let mut entries = listed.entries;
        entries.retain(|e| !super::temp_names::is_own_temp(&e.name));
        let mut listing = Listing::with_folding(entries, fetched, self.folding);
        listing.complete = listed.complete;
        let listing = Arc::new(listing);
        let mut cache = self.cache.lock();
        if !self.unchanged(&cache, dir, snap) {
            return None;
        }
        cache.put(dir, listing.clone());
        Some(listing)
    }

    /// Marks the listing of `dir` as seen again on the server at `at` (if it is still the one
    /// `snap` holds), so it counts as fresh from then on.
    pub fn confirm(&self, dir: &str, snap: Snapshot, at: Instant) -> bool {
        let cache = self.cache.lock();
        if !self.unchanged(&cache, dir, &snap) {
            return false;
        }
        drop(snap);
        match cache.lru.peek(dir) {
            Some(listing) => {
                listing.confirm(at);
                true
            }
            None => false,
        }
    }

    /// Whether the cached listing of `dir` is still the one in `snap`: the same listing (any
    /// change makes a new one, as `snap` holds the old), or still none and no change anywhere.
    fn unchanged(&self, cache: &Stored, dir: &str, snap: &Snapshot) -> bool {
        match (&snap.listing, cache.lru.peek(dir)) {
            (Some(old), Some(now)) => Arc::ptr_eq(old, now),
            (None, None) => self.changes.load(std::sync::atomic::Ordering::SeqCst) == snap.changes,
            _ => false,
        }
    }

    fn load(&self, remote: &dyn Remote, dir: &str) -> remote::Result<Arc<Listing>> {
        let (flight, leader) = {
            let mut flights = self.flights.lock();
            match flights.get(dir) {
                Some(f) => (f.clone(), false),
                None => {
                    let f = Arc::new(Flight::default());
                    flights.insert(dir.to_string(), f.clone());
                    (f, true)
                }
            }
        };
        if !leader {
            let mut result = flight.result.lock();
            while result.is_none() {
                flight.done.wait(&mut result);
            }
            return result.clone().expect("set before notify");
        }
        let started = self.clock.now();
        // This mount's own uploads in flight are not shown: a concurrent `rsync --delete` or
        // `rm *` must not find (and remove) them.
        let result = remote.list_detailed(dir, true).map(|listed| {
            let mut entries = listed.entries;
            entries.retain(|e| !super::temp_names::is_own_temp(&e.name));
            let mut listing = Listing::with_folding(entries, started, self.folding);
            listing.complete = listed.complete;
            Arc::new(listing)
        });
        if let Ok(listing) = &result {
            self.cache.lock().put(dir, listing.clone());
        }
        self.flights.lock().remove(dir);
        *flight.result.lock() = Some(result.clone());
        flight.done.notify_all();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::remote::fake::{Call, FakeRemote};
    use std::time::SystemTime;

    struct Manual(Mutex<Instant>);
    impl Clock for Manual {
        fn now(&self) -> Instant {
            *self.0.lock()
        }
    }

    #[test]
    fn fresh_listings_cost_nothing_and_expire_after_the_ttl() {
        let fake = FakeRemote::new();
        fake.add_file("d/a", b"x", SystemTime::now());
        let clock = Arc::new(Manual(Mutex::new(Instant::now())));
        let cache = DirCache::new(8, Duration::from_secs(5), clock.clone());
        cache.get(&fake, "d").unwrap();
        cache.get(&fake, "d").unwrap();
        assert_eq!(fake.count(Call::List), 1);
        *clock.0.lock() += Duration::from_secs(6);
        let l = cache.get(&fake, "d").unwrap();
        assert_eq!(fake.count(Call::List), 2);
        assert!(l.get("a").is_some() && l.get("b").is_none());
    }

    #[test]
    fn a_listing_seen_again_unchanged_is_not_copied_to_say_so() {
        // An open directory's snapshot shares the cached listing; confirming it must not clone
        // all its entries, and the cache keeps trusting it from the confirmation on.
        let fake = FakeRemote::new();
        for i in 0..100 {
            fake.add_file(&format!("d/f{i}"), b"x", SystemTime::now());
        }
        let clock = Arc::new(Manual(Mutex::new(Instant::now())));
        let cache = DirCache::new(8, Duration::from_secs(5), clock.clone());
        let held = cache.get(&fake, "d").unwrap();
        *clock.0.lock() += Duration::from_secs(4);
        let seen = clock.now();
        assert!(cache.confirm("d", cache.snapshot("d"), seen));
        let now = cache.peek("d").unwrap();
        assert!(Arc::ptr_eq(&held, &now), "the same listing, not a copy");
        assert_eq!(now.fetched(), seen);
        *clock.0.lock() += Duration::from_secs(4);
        cache.get(&fake, "d").unwrap();
        assert_eq!(fake.count(Call::List), 1, "fresh for the TTL from the confirmation");
        // Never moved back.
        now.confirm(seen - Duration::from_secs(1));
        assert_eq!(now.fetched(), seen);
    }

    #[test]
    fn concurrent_askers_share_one_listing() {
        let fake = Arc::new(FakeRemote::new());
        fake.add_file("d/a", b"x", SystemTime::now());
        let cache = Arc::new(DirCache::new(8, Duration::from_secs(5), Arc::new(SystemClock)));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (fake, cache) = (fake.clone(), cache.clone());
                std::thread::spawn(move || cache.get(fake.as_ref(), "d").unwrap().len())
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), 1);
        }
        assert!(fake.count(Call::List) <= 2, "loads are shared");
    }

    #[test]
    fn the_cache_holds_a_bounded_number_of_entries_and_lets_old_listings_go() {
        let fake = FakeRemote::new();
        for d in ["a", "b", "c"] {
            for i in 0..40 {
                fake.add_file(&format!("{d}/f{i}"), b"x", SystemTime::now());
            }
        }
        let clock = Arc::new(Manual(Mutex::new(Instant::now())));
        let limits = CacheLimits { dirs: 10, entries: 100 };
        let cache = DirCache::with_folding(limits, Duration::from_secs(5), clock.clone(), None);
        cache.get(&fake, "a").unwrap();
        cache.get(&fake, "b").unwrap();
        assert_eq!(cache.size(), (2, 80));
        cache.get(&fake, "c").unwrap();
        assert_eq!(cache.size(), (2, 80), "the least recently used listing made room");
        assert!(cache.peek("a").is_none() && cache.peek("c").is_some());
        *clock.0.lock() += Duration::from_secs(11);
        cache.get(&fake, "b").unwrap();
        cache.drop_older_than(Duration::from_secs(10), |d| d == "nothing");
        assert_eq!(cache.size(), (1, 40), "c is old; b was listed again");
        *clock.0.lock() += Duration::from_secs(11);
        cache.drop_older_than(Duration::from_secs(10), |d| d == "b");
        assert_eq!(cache.size(), (1, 40), "kept on request");
    }

    #[test]
    fn a_directory_bigger_than_the_bound_is_not_dropped_for_a_small_one() {
        let fake = FakeRemote::new();
        for i in 0..150 {
            fake.add_file(&format!("big/f{i}"), b"x", SystemTime::now());
        }
        fake.add_file("small/a", b"x", SystemTime::now());
        let limits = CacheLimits { dirs: 10, entries: 100 };
        let cache = DirCache::with_folding(limits, Duration::from_secs(5), Arc::new(SystemClock), None);
        cache.get(&fake, "").unwrap();
        cache.get(&fake, "big").unwrap();
        cache.get(&fake, "small").unwrap();
        let lists = fake.count(Call::List);
        cache.get(&fake, "big").unwrap();
        assert_eq!(fake.count(Call::List), lists, "big stayed cached");
        assert!(cache.peek("").is_none(), "the oldest small one made room");
    }

    #[test]
    fn errors_are_not_cached() {
        let fake = FakeRemote::new();
        fake.add_dir("d");
        let cache = DirCache::new(8, Duration::from_secs(5), Arc::new(SystemClock));
        fake.fail_next(1);
        assert!(cache.get(&fake, "d").is_err());
        assert!(cache.get(&fake, "d").is_ok());
    }
}
