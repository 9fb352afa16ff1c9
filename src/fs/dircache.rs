//! Directory listings, cached: bounded (LRU), timed (TTL), and loaded once even when many
//! threads ask for the same directory at the same time. A fresh listing also answers
//! "no such file" without a round trip.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lru::LruCache;
use parking_lot::{Condvar, Mutex};

use crate::casefold::{self, Folding};
use crate::clock::Clock;
use crate::remote::{self, Entry, Remote, RemoteError};

#[derive(Clone)]
pub struct Listing {
    pub fetched: Instant,
    pub entries: Vec<Entry>,
    index: HashMap<String, usize>,
    /// Names by folded name, when the mount checks case (see `crate::fs::case`).
    folded: Option<(Folding, HashMap<String, Vec<String>>)>,
}

impl Listing {
    pub fn new(entries: Vec<Entry>, fetched: Instant) -> Self {
        Self::with_folding(entries, fetched, None)
    }

    pub fn with_folding(entries: Vec<Entry>, fetched: Instant, folding: Option<Folding>) -> Self {
        let index = entries.iter().enumerate().map(|(i, e)| (e.name.clone(), i)).collect();
        let folded = folding.map(|f| {
            let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
            for e in &entries {
                by_key.entry(casefold::fold(&e.name, f)).or_default().push(e.name.clone());
            }
            (f, by_key)
        });
        Listing { fetched, entries, index, folded }
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.index.get(name).map(|&i| &self.entries[i])
    }

    /// Where `name` is in the listing's order.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Other names in this directory that fold to the same name as `name`.
    pub fn case_variants(&self, name: &str) -> Vec<&str> {
        let Some((f, by_key)) = &self.folded else { return Vec::new() };
        by_key
            .get(&casefold::fold(name, *f))
            .map(|names| names.iter().map(String::as_str).filter(|n| *n != name).collect())
            .unwrap_or_default()
    }

    /// Whether two names here fold to one: each folded name has one entry, so fewer folded
    /// names than entries means a collision (O(1); listings are asked for on every lookup).
    pub fn has_collisions(&self) -> bool {
        self.folded.as_ref().is_some_and(|(_, by_key)| by_key.len() < self.entries.len())
    }

    /// Groups of names here that fold to one name, each sorted.
    pub fn collision_groups(&self) -> Vec<Vec<&str>> {
        let Some((_, by_key)) = &self.folded else { return Vec::new() };
        let mut groups: Vec<Vec<&str>> = by_key
            .values()
            .filter(|names| names.len() > 1)
            .map(|names| {
                let mut g: Vec<&str> = names.iter().map(String::as_str).collect();
                g.sort_unstable();
                g
            })
            .collect();
        groups.sort_unstable();
        groups
    }

    fn upsert(&mut self, entry: Entry) {
        match self.index.get(&entry.name) {
            Some(&i) => self.entries[i] = entry,
            None => {
                if let Some((f, by_key)) = &mut self.folded {
                    by_key.entry(casefold::fold(&entry.name, *f)).or_default().push(entry.name.clone());
                }
                self.index.insert(entry.name.clone(), self.entries.len());
                self.entries.push(entry);
            }
        }
    }

    fn remove(&mut self, name: &str) -> Option<Entry> {
        let i = self.index.remove(name)?;
        if let Some((f, by_key)) = &mut self.folded {
            let key = casefold::fold(name, *f);
            if let Some(names) = by_key.get_mut(&key) {
                names.retain(|n| n != name);
                if names.is_empty() {
                    by_key.remove(&key);
                }
            }
        }
        let removed = self.entries.swap_remove(i);
        if let Some(moved) = self.entries.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
        Some(removed)
    }
}

/// A cached listing as it was at one moment (see [`DirCache::snapshot`]).
pub struct Snapshot {
    pub listing: Option<Arc<Listing>>,
    changes: u64,
}

/// One load in progress; later askers wait for its result instead of listing again.
#[derive(Default)]
struct Flight {
    result: Mutex<Option<Result<Arc<Listing>, RemoteError>>>,
    done: Condvar,
}

pub struct DirCache {
    ttl: Duration,
    /// Index listings by folded name (for case checks), or not.
    folding: Option<Folding>,
    clock: Arc<dyn Clock>,
    cache: Mutex<LruCache<String, Arc<Listing>>>,
    flights: Mutex<HashMap<String, Arc<Flight>>>,
    /// Counts changes made to cached listings (by this mount), so a listing loaded in the
    /// background can tell whether one happened while it was on the way (see [`Snapshot`]).
    changes: std::sync::atomic::AtomicU64,
    pub hits: std::sync::atomic::AtomicU64,
    pub misses: std::sync::atomic::AtomicU64,
}

impl DirCache {
    pub fn new(capacity: usize, ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        Self::with_folding(capacity, ttl, clock, None)
    }

    pub fn with_folding(capacity: usize, ttl: Duration, clock: Arc<dyn Clock>, folding: Option<Folding>) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).expect("non-zero");
        DirCache {
            ttl,
            folding,
            clock,
            cache: Mutex::new(LruCache::new(cap)),
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
        let listing = cache.get(dir)?;
        (self.clock.now().saturating_duration_since(listing.fetched) < self.ttl).then(|| listing.clone())
    }

    /// A cached listing however old (its `fetched` says how old).
    pub fn peek(&self, dir: &str) -> Option<Arc<Listing>> {
        self.cache.lock().peek(dir).cloned()
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
        if let Some(listing) = self.cache.lock().peek_mut(dir) {
            Arc::make_mut(listing).upsert(entry);
        }
    }

    /// Records a directory we just created: it is empty, no listing needed.
    pub fn insert_empty(&self, dir: &str) {
        let listing = Listing::with_folding(Vec::new(), self.clock.now(), self.folding);
        self.changed();
        self.cache.lock().put(dir.to_string(), Arc::new(listing));
    }

    /// Records that `name` left `dir`; returns the entry it had.
    pub fn remove_entry(&self, dir: &str, name: &str) -> Option<Entry> {
        self.changed();
        self.cache.lock().peek_mut(dir).and_then(|listing| Arc::make_mut(listing).remove(name))
    }

    fn changed(&self) {
        self.changes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// What is cached for `dir` now, for a later [`DirCache::replace`] or [`DirCache::confirm`].
    pub fn snapshot(&self, dir: &str) -> Snapshot {
        let changes = self.changes.load(std::sync::atomic::Ordering::SeqCst);
        Snapshot { listing: self.peek(dir), changes }
    }

    /// Stores `entries` (this mount's uploads in flight left out) as the listing of `dir`
    /// fetched at `fetched`, unless the cached listing changed since `snap` was taken: a change
    /// this mount made meanwhile may be missing from `entries`, and the cache keeps it. Returns
    /// the listing stored.
    pub fn replace(
        &self,
        dir: &str,
        snap: &Snapshot,
        mut entries: Vec<Entry>,
        fetched: Instant,
    ) -> Option<Arc<Listing>> {
        entries.retain(|e| !super::temp_names::is_own_temp(&e.name));
        let listing = Arc::new(Listing::with_folding(entries, fetched, self.folding));
        let mut cache = self.cache.lock();
        if !self.unchanged(&cache, dir, snap) {
            return None;
        }
        cache.put(dir.to_string(), listing.clone());
        Some(listing)
    }

    /// Marks the listing of `dir` as seen again on the server at `at` (if it is still the one
    /// `snap` holds), so it counts as fresh from then on.
    pub fn confirm(&self, dir: &str, snap: Snapshot, at: Instant) -> bool {
        let mut cache = self.cache.lock();
        if !self.unchanged(&cache, dir, &snap) {
            return false;
        }
        drop(snap);
        match cache.peek_mut(dir) {
            Some(listing) => {
                Arc::make_mut(listing).fetched = at;
                true
            }
            None => false,
        }
    }

    /// Whether the cached listing of `dir` is still the one in `snap`: the same listing (any
    /// change makes a new one, as `snap` holds the old), or still none and no change anywhere.
    fn unchanged(&self, cache: &LruCache<String, Arc<Listing>>, dir: &str, snap: &Snapshot) -> bool {
        match (&snap.listing, cache.peek(dir)) {
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
        let result = remote.list(dir).map(|mut entries| {
            entries.retain(|e| !super::temp_names::is_own_temp(&e.name));
            Arc::new(Listing::with_folding(entries, started, self.folding))
        });
        if let Ok(listing) = &result {
            self.cache.lock().put(dir.to_string(), listing.clone());
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
    use crate::remote::fake::FakeRemote;
    use std::sync::atomic::Ordering;
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
        assert_eq!(fake.lists.load(Ordering::SeqCst), 1);
        *clock.0.lock() += Duration::from_secs(6);
        let l = cache.get(&fake, "d").unwrap();
        assert_eq!(fake.lists.load(Ordering::SeqCst), 2);
        assert!(l.get("a").is_some() && l.get("b").is_none());
    }

    #[test]
    fn concurrent_askers_share_one_listing() {
        let fake = Arc::new(FakeRemote::new());
        fake.add_file("d/a", b"x", SystemTime::now());
        let cache = Arc::new(DirCache::new(8, Duration::from_secs(5), Arc::new(SystemClock)));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (fake, cache) = (fake.clone(), cache.clone());
                std::thread::spawn(move || cache.get(fake.as_ref(), "d").unwrap().entries.len())
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), 1);
        }
        assert!(fake.lists.load(Ordering::SeqCst) <= 2, "loads are shared");
    }

    #[test]
    fn collisions_are_known_without_walking_the_listing() {
        let e = |n: &str| Entry { name: n.into(), kind: crate::remote::Kind::File, size: 0, mtime: None, mode: None };
        let mut l = Listing::with_folding(vec![e("Docs"), e("readme")], Instant::now(), Some(Folding::Unicode));
        assert!(!l.has_collisions());
        l.upsert(e("docs"));
        assert!(l.has_collisions());
        assert_eq!(l.collision_groups(), vec![vec!["Docs", "docs"]]);
        l.remove("Docs");
        assert!(!l.has_collisions());
        assert!(!Listing::new(vec![e("A"), e("a")], Instant::now()).has_collisions(), "no folding, no checks");
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
