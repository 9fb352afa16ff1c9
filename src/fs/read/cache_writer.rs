//! The content cache's writer thread: downloaded bytes go to disk beside the readers.

use super::*;

/// Writes downloaded bytes into the content cache beside the readers, so a read does not wait
/// for the disk (on a fast link, writing every byte into the cache's file costs about as much
/// as everything else a read does, and a busy disk throttles it further). A download more than
/// [`AHEAD`] bytes ahead of the writer is not slowed down: what it reads meanwhile is not kept
/// (the cache holds ranges; a later read fetches the holes). At most [`QUEUED`] bytes wait in
/// all. One per process; the buffers are shared, not copied.
pub(super) struct CacheWriter {
    queue: Mutex<Queue>,
    more: parking_lot::Condvar,
    room: parking_lot::Condvar,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    bytes: usize,
}

enum Job {
    /// Bytes to keep, the count of its reader's bytes waiting here, and the download's mark
    /// (other readers wait for these bytes while it lasts).
    Store(Arc<CachedFile>, u64, Bytes, Arc<std::sync::atomic::AtomicUsize>, Option<Arc<Downloading>>),
    /// Answered once every job before it is done.
    Mark(std::sync::mpsc::Sender<()>),
}

/// How many downloaded bytes of one file may wait for the cache writer before the download
/// goes on without keeping them (a file smaller than this is always kept whole).
pub(super) const AHEAD: usize = 4 << 20;
/// How many downloaded bytes may wait for the cache writer in all (readers then wait).
const QUEUED: usize = 16 << 20;
/// Longest wait at close for the cache writer (a disk that stopped answering).
const SETTLE_WAIT: Duration = Duration::from_secs(10);

impl CacheWriter {
    pub(super) fn get() -> &'static CacheWriter {
        static WRITER: std::sync::OnceLock<&'static CacheWriter> = std::sync::OnceLock::new();
        WRITER.get_or_init(|| {
            let w: &'static CacheWriter = Box::leak(Box::new(CacheWriter {
                queue: Mutex::new(Queue::default()),
                more: parking_lot::Condvar::new(),
                room: parking_lot::Condvar::new(),
            }));
            std::thread::Builder::new().name("cache-writer".into()).spawn(move || w.run()).expect("a thread");
            w
        })
    }

    /// Hands bytes over to be kept; false when its reader is too far ahead (not kept).
    pub(super) fn store(
        &self,
        c: &Arc<CachedFile>,
        at: u64,
        bytes: Bytes,
        queued: &Arc<std::sync::atomic::AtomicUsize>,
        mark: Option<Arc<Downloading>>,
    ) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        if queued.load(Relaxed) + bytes.len() > AHEAD.max(bytes.len()) {
            return false;
        }
        let mut q = self.queue.lock();
        while q.bytes >= QUEUED {
            self.room.wait(&mut q);
        }
        q.bytes += bytes.len();
        queued.fetch_add(bytes.len(), Relaxed);
        q.jobs.push_back(Job::Store(c.clone(), at, bytes, queued.clone(), mark));
        self.more.notify_one();
        true
    }

    /// Waits until what was handed over before is written.
    pub(super) fn settle(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        self.queue.lock().jobs.push_back(Job::Mark(tx));
        self.more.notify_one();
        let _ = rx.recv_timeout(SETTLE_WAIT);
    }

    pub(super) fn run(&self) {
        loop {
            let job = {
                let mut q = self.queue.lock();
                loop {
                    if let Some(j) = q.jobs.pop_front() {
                        break j;
                    }
                    self.more.wait(&mut q);
                }
            };
            match job {
                Job::Store(c, at, bytes, queued, mark) => {
                    // A refusal drops the entry; its reader sees that and stops handing over.
                    c.downloaded(at, &bytes);
                    drop((c, mark));
                    queued.fetch_sub(bytes.len(), std::sync::atomic::Ordering::Relaxed);
                    let mut q = self.queue.lock();
                    q.bytes -= bytes.len();
                    drop(bytes);
                    self.room.notify_all();
                }
                Job::Mark(tx) => {
                    let _ = tx.send(());
                }
            }
        }
    }
}
