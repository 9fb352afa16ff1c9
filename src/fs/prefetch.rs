//! Loads the listings of subdirectories in the background when a directory is read, so a tree
//! walk (`ls -lR`, `find`, a file manager opening folders) finds them ready: several
//! directories load at once over the session pool instead of one after another. Only a few
//! ahead of the walk: an `ls` of a folder with 1,000 subfolders lists 16 of them, not all, and
//! a walk that stops stops the listing too.

use std::collections::{HashSet, VecDeque};
use std::num::NonZeroUsize;
use std::sync::{Arc, Weak};
use std::time::Duration;

use lru::LruCache;
use parking_lot::{Condvar, Mutex};

use super::dircache::{DirCache, Listing};
use super::paths::{join, split};
use crate::remote::{Kind, Remote};

/// Directories waiting beyond this are not queued (a huge tree is walked as it is asked for).
const MAX_QUEUED: usize = 4096;
/// A walk's next directories listed ahead of it, at most.
const LIST_AHEAD: usize = 16;
/// Directories read lately, remembered (a walk reads the parent before its subdirectories).
const READ_REMEMBERED: NonZeroUsize = NonZeroUsize::new(64).unwrap();

#[derive(Default)]
struct Queue {
    order: VecDeque<String>,
    queued: HashSet<String>,
}

/// The queue of directories to list ahead and its background loaders; each loader lists
/// one directory at a time over the pool and puts the listing into the cache.
pub struct Prefetcher {
    queue: Mutex<Queue>,
    ready: Condvar,
    dirs: Arc<DirCache>,
    /// Directories read lately; a parent is kept fresh while its subdirectories are read.
    read: Mutex<LruCache<String, ()>>,
}

impl Prefetcher {
    /// Starts `workers` background loaders; they end soon after the prefetcher is dropped.
    pub fn start(dirs: Arc<DirCache>, remote: Arc<dyn Remote>, workers: usize) -> Arc<Prefetcher> {
        let p = Arc::new(Prefetcher {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            dirs: dirs.clone(),
            read: Mutex::new(LruCache::new(READ_REMEMBERED)),
        });
        for i in 0..workers {
            let (weak, dirs, remote) = (Arc::downgrade(&p), dirs.clone(), remote.clone());
            std::thread::Builder::new()
                .name(format!("prefetch-{i}"))
                .spawn(move || work(weak, &dirs, remote.as_ref()))
                .expect("spawning a prefetch thread");
        }
        p
    }

    /// Directory `dir` (listed as `listing`) is being read. A walk usually goes on into its
    /// subdirectories, and, if its parent was read too, on to its next siblings: the next
    /// [`LIST_AHEAD`] of each are queued.
    pub fn dir_read(&self, dir: &str, listing: &Listing) {
        let mut ahead = subdirs_after(listing, dir, None);
        if !dir.is_empty() {
            let (parent, name) = split(dir);
            let parent_read = self.read.lock().get(parent).is_some();
            if let Some(siblings) = parent_read.then(|| self.dirs.peek(parent)).flatten() {
                ahead.extend(subdirs_after(&siblings, parent, Some(name)));
            }
        }
        self.read.lock().put(dir.to_string(), ());
        self.want(ahead.into_iter().filter(|d| self.dirs.fresh(d).is_none()));
    }

    /// Queues directories to load (those already cached are skipped by the loader).
    fn want(&self, dirs: impl IntoIterator<Item = String>) {
        let mut q = self.queue.lock();
        for d in dirs {
            if q.order.len() >= MAX_QUEUED {
                break;
            }
            if q.queued.insert(d.clone()) {
                q.order.push_back(d);
            }
        }
        drop(q);
        self.ready.notify_all();
    }

    fn next(&self) -> Option<String> {
        let mut q = self.queue.lock();
        if q.order.is_empty() {
            self.ready.wait_for(&mut q, Duration::from_secs(1));
        }
        let d = q.order.pop_front()?;
        q.queued.remove(&d);
        Some(d)
    }
}

/// The first [`LIST_AHEAD`] subdirectories of `dir` (listed as `listing`), or those right after
/// its entry `after`; none when `after` is not in the listing.
fn subdirs_after(listing: &Listing, dir: &str, after: Option<&str>) -> Vec<String> {
    let start = match after {
        None => 0,
        Some(name) => match listing.position(name) {
            Some(i) => i + 1,
            None => return Vec::new(),
        },
    };
    listing.entries()[start..]
        .iter()
        .filter(|e| e.kind == Kind::Dir && !e.name.starts_with('.'))
        .take(LIST_AHEAD)
        .map(|e| join(dir, &e.name))
        .collect()
}

fn work(p: Weak<Prefetcher>, dirs: &DirCache, remote: &dyn Remote) {
    // Holds the prefetcher only while taking work, so dropping it ends the thread.
    while let Some(next) = p.upgrade().map(|p| p.next()) {
        if let Some(dir) = next {
            if dirs.fresh(&dir).is_none() {
                if let Err(e) = dirs.get(remote, &dir) {
                    tracing::debug!("prefetching the listing of /{dir}: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::remote::fake::{Call, FakeRemote};
    use std::time::{Instant, SystemTime};

    #[test]
    fn wanted_directories_are_loaded_once_in_the_background() {
        let fake = Arc::new(FakeRemote::new());
        for d in 0..20 {
            fake.add_file(&format!("d{d}/f"), b"x", SystemTime::now());
        }
        let dirs = Arc::new(DirCache::new(64, Duration::from_secs(60), Arc::new(SystemClock)));
        let p = Prefetcher::start(dirs.clone(), fake.clone(), 4);
        p.want((0..20).map(|d| format!("d{d}")));
        p.want((0..20).map(|d| format!("d{d}")));
        let start = Instant::now();
        while (0..20).any(|d| dirs.fresh(&format!("d{d}")).is_none()) {
            assert!(start.elapsed() < Duration::from_secs(5), "prefetch did not finish");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(fake.count(Call::List), 20, "each directory listed once");
    }
}
