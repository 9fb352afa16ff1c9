//! Write-back (`--write-back`): `close` returns once the content is in the local spool, and
//! uploads run in the background, several at once over the session pool, one at a time per
//! file.
//!
//! - Each queued file is a released [`WriteHandle`] still registered as being written, so
//!   `stat`, `readdir`, rename, chmod, utime and unlink see and change it like any open file.
//! - Its content is a named spool file in the source's queue directory with a journal entry
//!   (`<id>.data` + `<id>.json`): a crash loses nothing `close` confirmed; the next mount of
//!   the same source with write-back uploads what is left.
//! - An upload starts a moment after the close, so the rename, chmod and utime that usually
//!   follow (rsync, editors) change where and how it is uploaded instead of costing round trips.
//! - Connection failures are retried with back-off, as long as the mount runs; refusals (no
//!   permission, no space) are final: the content moves to `failed/` and the failure is logged
//!   and shown by `status` and `sync`.

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex};

use super::spool::{Journal, Kept, journal_of};
use super::write::WriteHandle;
use super::{Fs, Result};
use crate::error::FsError;

/// How long a closed file waits before its upload starts (see the module comment).
const SETTLE: Duration = Duration::from_millis(200);
/// Longest wait between two attempts of a failing upload.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A failing upload is reported (once) after this many attempts, and retried on.
const REPORT_AFTER: u32 = 3;

struct Job {
    handle: Arc<WriteHandle>,
    due: Instant,
    attempts: u32,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Job>,
    uploading: usize,
    failed: Vec<FailedUpload>,
}

/// An upload that failed for good; its content was moved aside for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedUpload {
    /// Path relative to the mount root.
    pub path: String,
    /// Why the server refused it.
    pub error: String,
    /// Where the content is kept (`None`: it could not be moved out of the queue).
    pub kept_in: Option<PathBuf>,
}

/// "PATH: ERROR (data kept in FILE)": the log, `status` and `sync` show this line, and the
/// status socket sends it as is.
impl std::fmt::Display for FailedUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} (data kept in ", self.path, self.error)?;
        match &self.kept_in {
            Some(file) => write!(f, "{})", file.display()),
            None => f.write_str("nowhere: it could not be moved)"),
        }
    }
}

/// The upload queue of one mount.
pub struct WriteBack {
    dir: PathBuf,
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl WriteBack {
    /// An empty queue whose spool files and journal live in `dir`; nothing is uploaded until
    /// `Fs::start_write_back` starts the workers.
    pub fn new(dir: PathBuf) -> WriteBack {
        WriteBack { dir, queue: Mutex::new(Queue::default()), changed: Condvar::new() }
    }

    /// The queue directory (this source's; `failed/` is below it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn push(&self, handle: Arc<WriteHandle>, delay: Duration, attempts: u32) {
        let mut q = self.queue.lock();
        if q.waiting.iter().any(|j| Arc::ptr_eq(&j.handle, &handle)) {
            return;
        }
        q.waiting.push_back(Job { handle, due: Instant::now() + delay, attempts });
        self.changed.notify_all();
    }

    /// The next upload that is due; waits for one.
    fn take(&self) -> Job {
        let mut q = self.queue.lock();
        loop {
            let now = Instant::now();
            if let Some(i) = q.waiting.iter().position(|j| j.due <= now) {
                let job = q.waiting.remove(i).expect("position is in range");
                q.uploading += 1;
                return job;
            }
            let next = q.waiting.iter().map(|j| j.due).min().map_or(Duration::from_secs(1), |d| d - now);
            self.changed.wait_for(&mut q, next);
        }
    }

    fn done(&self) {
        self.queue.lock().uploading -= 1;
        self.changed.notify_all();
    }

    /// Files queued or uploading.
    pub fn pending(&self) -> usize {
        let q = self.queue.lock();
        q.waiting.len() + q.uploading
    }

    /// Uploads that failed for good during this mount.
    pub fn failures(&self) -> Vec<FailedUpload> {
        self.queue.lock().failed.clone()
    }

    /// Waits until the queue is empty, or `deadline`. Returns what is still pending.
    fn wait_empty(&self, deadline: Instant) -> usize {
        let mut q = self.queue.lock();
        let mut last_note = Instant::now();
        while !(q.waiting.is_empty() && q.uploading == 0) && Instant::now() < deadline {
            self.changed.wait_for(&mut q, Duration::from_millis(200));
            if last_note.elapsed() >= Duration::from_secs(5) {
                tracing::info!("write-back: {} upload(s) still to finish", q.waiting.len() + q.uploading);
                last_note = Instant::now();
            }
        }
        q.waiting.len() + q.uploading
    }

    /// Waits until some upload finishes (space in the spool may be free again).
    fn wait_progress(&self, at_most: Duration) {
        let mut q = self.queue.lock();
        self.changed.wait_for(&mut q, at_most);
    }
}

impl Fs {
    /// The write-back queue, when the mount has `--write-back`.
    pub(super) fn write_back(&self) -> Option<&WriteBack> {
        self.write_back.as_ref()
    }

    /// Starts the upload workers; with `workers` below the session limit, reads and listings
    /// always find a session.
    pub fn start_write_back(self: &Arc<Self>, workers: usize) {
        if self.write_back.is_none() {
            return;
        }
        for i in 0..workers.max(1) {
            let fs = Arc::clone(self);
            std::thread::Builder::new()
                .name(format!("upload-{i}"))
                .spawn(move || {
                    let wb = fs.write_back.as_ref().expect("checked above");
                    loop {
                        let job = wb.take();
                        fs.run_upload(job);
                        wb.done();
                    }
                })
                .expect("spawning an upload worker");
        }
    }

    /// Queues a closed file's upload.
    pub(super) fn queue_upload(&self, h: Arc<WriteHandle>) {
        if let Some(wb) = &self.write_back {
            h.released.store(true, Ordering::Relaxed);
            wb.push(h, SETTLE, 0);
        }
    }

    fn run_upload(&self, mut job: Job) {
        let h = job.handle.clone();
        let _running = h.job.lock();
        match self.commit(&h) {
            Ok(()) => self.forget_uploaded(&h),
            // Deleted or replaced meanwhile: nothing left to upload.
            Err(_) if !self.is_pending(&h) => self.forget_uploaded(&h),
            Err(FsError::Remote(e)) if retryable(&e) => {
                job.attempts += 1;
                // 1 s, 2 s, 4 s … up to MAX_BACKOFF.
                let backoff = Duration::from_secs(1 << (job.attempts - 1).min(5)).min(MAX_BACKOFF);
                if job.attempts == REPORT_AFTER {
                    let msg = format!("{}: {e} (retrying; data kept in {})", h.path(), kept_name(&h));
                    tracing::warn!("write-back: uploading {msg}");
                    self.note_error("upload", &FsError::Remote(e));
                } else {
                    tracing::info!("write-back: uploading {}: {e}; trying again in {backoff:?}", h.path());
                }
                let wb = self.write_back.as_ref().expect("uploads run with write-back");
                wb.push(job.handle.clone(), backoff, job.attempts);
            }
            Err(e) => self.give_up(&h, &e),
        }
    }

    /// Whether `h` still holds changes the server does not have.
    fn is_pending(&self, h: &Arc<WriteHandle>) -> bool {
        h.state.lock().dirty
    }

    /// After an upload: the file is the server's again (unless it changed meanwhile).
    fn forget_uploaded(&self, h: &Arc<WriteHandle>) {
        let st = h.state.lock();
        if !st.dirty {
            let mut writing = self.writing.lock();
            let path = h.path();
            if writing.get(&path).is_some_and(|w| Arc::ptr_eq(w, h)) && h.released.load(Ordering::Relaxed) {
                writing.remove(&path);
            }
        }
    }

    /// A final failure: the content moves to `failed/`, where the user finds it.
    fn give_up(&self, h: &Arc<WriteHandle>, e: &FsError) {
        let path = h.path();
        let kept = h.kept_file().and_then(|data| {
            let failed = data.parent()?.join("failed");
            std::fs::create_dir_all(&failed).ok()?;
            let to = failed.join(data.file_name()?);
            std::fs::rename(&data, &to).ok()?;
            let _ = std::fs::rename(journal_of(&data), journal_of(&to));
            Some(to)
        });
        let failure = FailedUpload { path, error: e.to_string(), kept_in: kept };
        tracing::error!("write-back: could not upload {failure}");
        self.note_error("upload", e);
        if let Some(wb) = &self.write_back {
            wb.queue.lock().failed.push(failure);
        }
        // Write-back content is spooled, never half-sent: nothing to clean up on the server.
        let _ = h.discard();
        self.forget_uploaded(h);
    }

    /// Before a queued file is opened or truncated: its upload happens now, so what follows
    /// starts from the uploaded content and uploads after it.
    pub(super) fn settle(&self, path: &str) -> Result<()> {
        let Some(h) = self.queued(path) else { return Ok(()) };
        let _running = h.job.lock();
        match self.commit(&h) {
            Ok(()) => {
                self.forget_uploaded(&h);
                Ok(())
            }
            Err(e) => {
                if !matches!(&e, FsError::Remote(r) if retryable(r)) {
                    self.give_up(&h, &e);
                }
                Err(e)
            }
        }
    }

    /// The queued (closed, not yet uploaded) file at `path`.
    pub(super) fn queued(&self, path: &str) -> Option<Arc<WriteHandle>> {
        self.write_back.as_ref()?;
        let h = self.writing.lock().get(path).cloned()?;
        (h.released.load(Ordering::Relaxed) && h.state.lock().dirty).then_some(h)
    }

    /// Settles every queued file under directory `dir` (before it is renamed).
    pub(super) fn settle_tree(&self, dir: &str) -> Result<()> {
        let prefix = format!("{dir}/");
        let paths: Vec<String> = self.writing.lock().keys().filter(|p| p.starts_with(&prefix)).cloned().collect();
        paths.iter().try_for_each(|p| self.settle(p))
    }

    /// Records a change to a queued file in its journal entry.
    pub(super) fn persist(&self, h: &WriteHandle) {
        if self.write_back.is_some() {
            if let Err(e) = h.persist(&self.spool) {
                tracing::warn!("write-back: {e}");
            }
        }
    }

    /// With a full spool, a writer waits for queued uploads to free space instead of failing.
    pub(super) fn wait_for_spool_space(&self) -> bool {
        match &self.write_back {
            Some(wb) if wb.pending() > 0 => {
                wb.wait_progress(Duration::from_secs(1));
                true
            }
            _ => false,
        }
    }

    /// Queues the uploads a previous run left in the journal (a crash, or an unmount that
    /// could not finish). Returns how many.
    pub fn resume_write_back(&self) -> usize {
        let Some(wb) = &self.write_back else { return 0 };
        let Ok(dir) = std::fs::read_dir(&wb.dir) else { return 0 };
        let mut found: Vec<(SystemTime, PathBuf)> = Vec::new();
        for entry in dir.flatten() {
            let p = entry.path();
            match p.extension().and_then(|x| x.to_str()) {
                Some("json") => {
                    found.push((entry.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH), p))
                }
                // Never closed (no journal entry): nothing was promised.
                Some("data") if !journal_of(&p).exists() => {
                    let _ = std::fs::remove_file(&p);
                }
                Some("tmp") => {
                    let _ = std::fs::remove_file(&p);
                }
                _ => {}
            }
        }
        // Oldest first: a later version of the same file replaces an earlier one.
        found.sort();
        let mut resumed = 0;
        for (_, json) in found {
            let data = json.with_extension("data");
            let loaded = std::fs::read(&json)
                .ok()
                .and_then(|b| serde_json::from_slice::<Journal>(&b).ok())
                .and_then(|j| File::options().read(true).write(true).open(&data).ok().map(|f| (j, f)));
            let Some((journal, file)) = loaded else {
                tracing::warn!("write-back: ignoring the unreadable journal entry {}", json.display());
                continue;
            };
            let mut reserved = self.spool.reservation();
            let _ = self.spool.reserve(&mut reserved, journal.size);
            let h = Arc::new(WriteHandle::resumed(&journal, file, reserved, Kept(data)));
            let older = self.writing.lock().insert(journal.path.clone(), h.clone());
            if let Some(older) = older {
                let _ = older.discard();
            }
            wb.push(h, Duration::ZERO, 0);
            resumed += 1;
        }
        if resumed > 0 {
            tracing::info!("write-back: resuming {resumed} upload(s) left unfinished by an earlier run");
        }
        resumed
    }

    /// At unmount: waits for the queue (at most `limit`). Returns (failed, left): uploads that
    /// failed for good during this mount, and uploads left in the journal for the next mount.
    pub fn finish_write_back(&self, limit: Duration) -> (usize, usize) {
        let Some(wb) = &self.write_back else { return (0, 0) };
        let pending = wb.pending();
        if pending > 0 {
            tracing::info!("write-back: finishing {pending} upload(s) before exiting");
        }
        let left = wb.wait_empty(Instant::now() + limit);
        (wb.failures().len(), left)
    }

    /// Queued uploads for `status`: (path, uploading now).
    pub(super) fn queued_uploads(&self) -> Vec<(String, bool)> {
        if self.write_back.is_none() {
            return Vec::new();
        }
        let handles: Vec<Arc<WriteHandle>> =
            self.writing.lock().values().filter(|h| h.released.load(Ordering::Relaxed)).cloned().collect();
        handles
            .iter()
            .filter_map(|h| match h.state.try_lock() {
                Some(st) if st.dirty => Some((h.path(), false)),
                Some(_) => None,
                None => Some((h.path(), true)),
            })
            .collect()
    }
}

/// Failures that may pass: the connection, a timeout, a server with no session free.
fn retryable(e: &crate::remote::RemoteError) -> bool {
    e.is_transient() || matches!(e, crate::remote::RemoteError::TooManyConnections(_))
}

fn kept_name(h: &WriteHandle) -> String {
    h.kept_file().map_or_else(|| "the spool".to_string(), |p| p.display().to_string())
}

/// The queue directory of a source: one per server account and path, so a later mount of
/// the same source finds what an earlier one left.
pub fn queue_dir(cache_dir: &Path, source_identity: &str) -> PathBuf {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(source_identity.as_bytes());
    let name: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    cache_dir.join("write-back").join(name)
}
