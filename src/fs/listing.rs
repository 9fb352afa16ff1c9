//! One directory's cached listing: its entries in the server's order, found by name in O(1),
//! and by folded name when the mount checks case. Directories of 100,000 entries are common
//! (camera uploads, logs), so the indexes hold 4-byte positions, not copies of the names, and
//! what is asked per entry or per attribute (a directory's link count) costs O(1).

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hashbrown::{DefaultHashBuilder, HashTable};

use crate::casefold::{self, Folding};
use crate::remote::{Entry, Kind};

/// One directory's entries as the server listed them, indexed by name (and by folded name
/// when the mount checks case).
#[derive(Clone)]
pub struct Listing {
    /// When the server sent it, or last showed it unchanged (the cache trusts it for
    /// `--dir-timeout` from then). See [`Self::fetched`].
    fetched: Fetched,
    /// False when the server cut the listing short: a name missing here may still exist.
    pub complete: bool,
    entries: Vec<Entry>,
    /// Positions in `entries`, by name.
    by_name: HashTable<u32>,
    /// Positions by folded name, when the mount checks case (see `crate::fs::case`).
    folded: Option<Folded>,
    /// How many entries are directories.
    subdirs: u32,
    hasher: DefaultHashBuilder,
}

/// When a listing was fetched, movable later without a copy of the listing: an open
/// directory's snapshot shares it, and a listing seen again unchanged must not be cloned (all
/// 100,000 entries of a big one) just to say so.
struct Fetched {
    at: Instant,
    /// Nanoseconds after `at` it was last confirmed.
    confirmed_after: AtomicU64,
}

impl Clone for Fetched {
    fn clone(&self) -> Self {
        Fetched { at: self.at, confirmed_after: AtomicU64::new(self.confirmed_after.load(Ordering::Relaxed)) }
    }
}

/// Positions by folded name: names that fold to one share a key, so several may be there.
#[derive(Clone)]
struct Folded {
    folding: Folding,
    by_key: HashTable<u32>,
    /// Distinct folded names: fewer than entries means two names fold to one.
    keys: usize,
}

impl Listing {
    /// A listing of `entries` without a folded index.
    pub fn new(entries: Vec<Entry>, fetched: Instant) -> Self {
        Self::with_folding(entries, fetched, None)
    }

    /// When the server sent it, or last showed it unchanged ([`Self::confirm`]).
    pub fn fetched(&self) -> Instant {
        self.fetched.at + Duration::from_nanos(self.fetched.confirmed_after.load(Ordering::Relaxed))
    }

    /// The server showed it unchanged at `at`: it counts as fetched then (never earlier than
    /// before). Shared copies (open directories' snapshots) see it too; they hold the same
    /// entries.
    pub fn confirm(&self, at: Instant) {
        let after = u64::try_from(at.saturating_duration_since(self.fetched.at).as_nanos()).unwrap_or(u64::MAX);
        self.fetched.confirmed_after.fetch_max(after, Ordering::Relaxed);
    }

    /// A listing of `entries`; a name listed twice (a server's glitch) is shown once.
    pub fn with_folding(entries: Vec<Entry>, fetched: Instant, folding: Option<Folding>) -> Self {
        let mut listing = Listing {
            fetched: Fetched { at: fetched, confirmed_after: AtomicU64::new(0) },
            complete: true,
            entries: Vec::with_capacity(entries.len()),
            by_name: HashTable::with_capacity(entries.len()),
            folded: folding.map(|folding| Folded { folding, by_key: HashTable::with_capacity(entries.len()), keys: 0 }),
            subdirs: 0,
            hasher: DefaultHashBuilder::default(),
        };
        for e in entries {
            if listing.position(&e.name).is_none() {
                listing.push(e);
            }
        }
        listing
    }

    /// The entries, in the order the server listed them.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// How many entries it has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the directory was listed empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry named exactly `name`.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.position(name).map(|i| &self.entries[i])
    }

    /// Where `name` is in the listing's order.
    pub fn position(&self, name: &str) -> Option<usize> {
        let entries = &self.entries;
        let at = self.by_name.find(self.hasher.hash_one(name), |&i| entries[i as usize].name == name)?;
        Some(*at as usize)
    }

    /// How many entries are directories (a directory's link count is 2 plus this).
    pub fn subdirs(&self) -> u32 {
        self.subdirs
    }

    /// Other names in this directory that fold to the same name as `name`.
    pub fn case_variants(&self, name: &str) -> Vec<&str> {
        let Some(f) = &self.folded else { return Vec::new() };
        let key = casefold::fold(name, f.folding);
        f.by_key
            .iter_hash(self.hasher.hash_one(&key))
            .map(|&i| self.entries[i as usize].name.as_str())
            .filter(|n| *n != name && casefold::fold(n, f.folding) == key)
            .collect()
    }

    /// Whether two names here fold to one (O(1); listings are asked on every lookup).
    pub fn has_collisions(&self) -> bool {
        self.folded.as_ref().is_some_and(|f| f.keys < self.entries.len())
    }

    /// Groups of names here that fold to one name, each sorted.
    pub fn collision_groups(&self) -> Vec<Vec<&str>> {
        match &self.folded {
            Some(f) if self.has_collisions() => {
                casefold::collision_groups(self.entries.iter().map(|e| e.name.as_str()), f.folding)
            }
            _ => Vec::new(),
        }
    }

    /// Adds `entry`, or replaces the entry of that name.
    pub fn upsert(&mut self, entry: Entry) {
        match self.position(&entry.name) {
            Some(i) => {
                self.subdirs -= u32::from(self.entries[i].kind == Kind::Dir);
                self.subdirs += u32::from(entry.kind == Kind::Dir);
                self.entries[i] = entry;
            }
            None => self.push(entry),
        }
    }

    /// Removes `name`; the last entry takes its place.
    pub fn remove(&mut self, name: &str) -> Option<Entry> {
        let i = self.position(name)?;
        let last = self.entries.len() - 1;
        self.unindex(i);
        if i != last {
            // The last entry moves to `i`: its index entries follow.
            self.unindex(last);
            self.entries.swap(i, last);
            self.index(i);
        }
        let removed = self.entries.pop().expect("not empty");
        self.subdirs -= u32::from(removed.kind == Kind::Dir);
        Some(removed)
    }

    fn push(&mut self, entry: Entry) {
        self.subdirs += u32::from(entry.kind == Kind::Dir);
        self.entries.push(entry);
        self.index(self.entries.len() - 1);
    }

    /// Adds entry `i` to the indexes.
    fn index(&mut self, i: usize) {
        let (entries, hasher) = (&self.entries, &self.hasher);
        let name = &entries[i].name;
        self.by_name.insert_unique(hasher.hash_one(name), i as u32, |&j| hasher.hash_one(&entries[j as usize].name));
        if let Some(f) = &mut self.folded {
            let key = casefold::fold(name, f.folding);
            let hash = hasher.hash_one(&key);
            let folding = f.folding;
            let shared = f.by_key.iter_hash(hash).any(|&j| casefold::fold(&entries[j as usize].name, folding) == key);
            f.keys += usize::from(!shared);
            f.by_key.insert_unique(hash, i as u32, |&j| {
                hasher.hash_one(casefold::fold(&entries[j as usize].name, folding))
            });
        }
    }

    /// Takes entry `i` out of the indexes (it stays in `entries`).
    fn unindex(&mut self, i: usize) {
        let (entries, hasher) = (&self.entries, &self.hasher);
        let name = &entries[i].name;
        if let Ok(found) = self.by_name.find_entry(hasher.hash_one(name), |&j| j as usize == i) {
            found.remove();
        }
        if let Some(f) = &mut self.folded {
            let key = casefold::fold(name, f.folding);
            let hash = hasher.hash_one(&key);
            if let Ok(found) = f.by_key.find_entry(hash, |&j| j as usize == i) {
                found.remove();
            }
            let folding = f.folding;
            let shared = f.by_key.iter_hash(hash).any(|&j| casefold::fold(&entries[j as usize].name, folding) == key);
            f.keys -= usize::from(!shared);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collisions_are_known_without_walking_the_listing() {
        let e = |n: &str| Entry { name: n.into(), kind: Kind::File, size: 0, mtime: None, mode: None };
        let mut l = Listing::with_folding(vec![e("Docs"), e("readme")], Instant::now(), Some(Folding::Unicode));
        assert!(!l.has_collisions());
        l.upsert(e("docs"));
        assert!(l.has_collisions());
        assert_eq!(l.collision_groups(), vec![vec!["Docs", "docs"]]);
        l.remove("Docs");
        assert!(!l.has_collisions());
        assert!(!Listing::new(vec![e("A"), e("a")], Instant::now()).has_collisions(), "no folding, no checks");
    }
}
