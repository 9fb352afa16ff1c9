//! Downloads of a cached file under way, and where each has got to: a reader about to need
//! bytes another reader's download is bringing waits for them instead of fetching them again.

use super::*;

#[derive(Default)]
pub(super) struct Downloads {
    pub(super) next_id: u64,
    /// The offset each download has reached, by id.
    pub(super) at: HashMap<u64, u64>,
}

impl CachedFile {
    /// Waits for the byte at `at` when another download of this file is near it (at most
    /// `before` bytes before it, or at most `after` bytes past it with its bytes still on the
    /// way to the cache) and moving. `Ok` once the byte is held; otherwise the caller is to
    /// download it, under the mark returned (taken in the same step, so of two readers
    /// arriving at once, one downloads and the other waits). Gives up waiting when that
    /// download ends or makes no progress for `patience`. The caller's own download (`own`)
    /// is never waited for.
    pub fn wait_for(
        &self,
        at: u64,
        before: u64,
        after: u64,
        patience: Duration,
        own: Option<&Downloading>,
    ) -> Result<(), Downloading> {
        let e = &self.entry;
        let mut d = e.downloads.lock();
        let mut waited_out = false;
        loop {
            if self.holds(at) {
                return Ok(());
            }
            let heading_here =
                d.at.iter()
                    .any(|(&id, &pos)| own.is_none_or(|o| o.id != id) && pos <= at + after && at <= pos + before);
            if !heading_here || waited_out || e.dropped.load(Ordering::Relaxed) {
                return Err(self.mark(&mut d, at));
            }
            waited_out = e.progress.wait_for(&mut d, patience).timed_out();
        }
    }

    /// Marks a download of this file from `from` on (see [`Self::wait_for`]); it ends when
    /// the mark is dropped.
    pub fn downloading(&self, from: u64) -> Downloading {
        self.mark(&mut self.entry.downloads.lock(), from)
    }

    pub(super) fn mark(&self, d: &mut Downloads, from: u64) -> Downloading {
        let id = d.next_id;
        d.next_id += 1;
        d.at.insert(id, from);
        Downloading { entry: self.entry.clone(), id }
    }
}

/// A download of a cached file under way (see [`CachedFile::downloading`]).
pub struct Downloading {
    entry: Arc<Entry>,
    pub(super) id: u64,
}

impl Downloading {
    /// The download has reached `pos` (its bytes before that are stored).
    pub fn at(&self, pos: u64) {
        self.entry.downloads.lock().at.insert(self.id, pos);
        self.entry.progress.notify_all();
    }
}

impl Drop for Downloading {
    fn drop(&mut self) {
        self.entry.downloads.lock().at.remove(&self.id);
        self.entry.progress.notify_all();
    }
}
