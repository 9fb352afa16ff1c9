//! The background downloaders: each takes the next queued file once a session is free,
//! fetches it into the content cache (giving the session up when somebody waits for one), and
//! records the outcome for the opens to come.

use super::*;

pub(super) enum Outcome {
    /// The file is held whole now; the bytes this download brought, and when it began if it
    /// brought all of them.
    Done(u64, Option<Instant>),
    /// Given up for a waiting request; to be continued.
    Yielded,
    Failed,
}

impl FilePrefetcher {
    /// Whether a download may start now: nobody waits for a session, and one is idle or can
    /// be opened.
    fn session_free(&self) -> bool {
        if self.remote.sessions_wanted() {
            return false;
        }
        let s = self.remote.session_stats();
        s.limit == 0 || s.busy < s.limit
    }

    /// The next file to fetch, once a session is free; `None` when stopped.
    fn next(&self) -> Option<Option<Item>> {
        let mut st = self.state.lock();
        if st.stopped {
            return None;
        }
        if st.queue.is_empty() {
            self.work.wait_for(&mut st, Duration::from_secs(1));
            return Some(None);
        }
        drop(st);
        if !self.session_free() {
            std::thread::sleep(SESSION_POLL);
            return Some(None);
        }
        let mut st = self.state.lock();
        // Opened by a reader since it was queued: left to that reader.
        let mut item = st.queue.pop_front();
        while item.as_ref().is_some_and(|i| st.reading.contains_key(&i.path)) {
            item = st.queue.pop_front();
        }
        if let Some(i) = &item {
            st.in_flight.insert(i.path.clone(), (i.clone(), false));
        }
        Some(item)
    }

    fn cancelled(&self, path: &str) -> bool {
        self.state.lock().in_flight.get(path).is_none_or(|(_, c)| *c)
    }

    /// Downloads one file into the content cache.
    fn fetch(&self, item: &Item) -> Outcome {
        let Some(cached) = self.cache.open_file(&item.path, item.version) else { return Outcome::Failed };
        let size = item.version.size;
        let from = cached.covered_from(0);
        if from >= size {
            return Outcome::Done(0, None);
        }
        let began = self.clock.now();
        let mut stream = match self.remote.open_read(&item.path, from) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("prefetching {}: {e}", item.path);
                return Outcome::Failed;
            }
        };
        let mut at = from;
        let mut buf = vec![0u8; CHUNK];
        loop {
            if self.cancelled(&item.path) {
                return Outcome::Failed;
            }
            if self.remote.sessions_wanted() {
                // Others wait for a session: this one goes back at once; what arrived is kept.
                return Outcome::Yielded;
            }
            let n = match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!("prefetching {}: {e}", item.path);
                    return Outcome::Failed;
                }
            };
            if at + n as u64 > size {
                // The file grew since it was listed: not the version asked for.
                self.cache.forget(&item.path);
                return Outcome::Failed;
            }
            if !cached.downloaded(at, &buf[..n]) {
                return Outcome::Failed;
            }
            at += n as u64;
        }
        if at != size {
            // Shorter than listed: another version. The open that comes revalidates.
            self.cache.forget(&item.path);
            return Outcome::Failed;
        }
        Outcome::Done(size - from, (from == 0).then_some(began))
    }

    fn finished(&self, item: Item, outcome: Outcome) {
        let mut st = self.state.lock();
        let cancelled = st.in_flight.remove(&item.path).is_none_or(|(_, c)| c);
        match outcome {
            Outcome::Done(n, began) if !cancelled => {
                self.files.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(n, Ordering::Relaxed);
                let ready = Ready { bytes: item.version.size, at: Instant::now(), version: item.version, began };
                st.ready.insert(item.path, ready);
            }
            Outcome::Yielded if !cancelled && !st.stopped => st.queue.push_front(item),
            _ => {}
        }
        drop(st);
        self.done.notify_all();
    }
}

pub(super) fn work(p: Weak<FilePrefetcher>) {
    loop {
        let Some(p) = p.upgrade() else { return };
        match p.next() {
            None => return,
            Some(None) => {}
            Some(Some(item)) => {
                let outcome = p.fetch(&item);
                p.finished(item, outcome);
            }
        }
    }
}
