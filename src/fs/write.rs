//! The write handle: one file open for writing (or queued by write-back) and its state. Its
//! content lives in `write/body.rs`, its upload in `write/upload.rs`, its temporary names in
//! `temp_names.rs`.
//!
//! Writing never leaves a truncated or empty file that looks complete:
//!
//! - Sequential writes from offset 0 (a new or truncated file opened write-only) stream straight
//!   into one upload: no local copy, flat memory.
//! - Anything else (opened read-write, appends, writes that jump, truncation to a non-zero size)
//!   goes to a spool file, filled from the server first when the old content is kept, and is
//!   uploaded when the file is flushed, synced or closed.
//! - Every upload goes to a hidden temporary name in the same directory, its size is checked
//!   on the server, and then it is renamed into place; a failure at any step removes the
//!   temporary and leaves the old file (if any) untouched. So even a daemon killed mid-upload
//!   leaves nothing half-written under a real name. Only where the server refuses temporary
//!   names or renaming them (upload-only directories) do new files upload under their own name,
//!   and are deleted if the upload fails.
//! - With write-back, every write goes to the spool, `close` returns at once, and the upload
//!   (always under a temporary name) runs later from the queue; a failed upload keeps the
//!   content for the next attempt.

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;

use crate::remote::RemoteError;

use self::body::{Body, spool_error};
use super::lock_order::{self, Ranked};
use super::spool::Journal;
use super::spool::{Kept, Reservation, Spool};

mod body;
pub mod upload;

/// How a [`WriteHandle`] starts. The default: a file the server has, kept as it is, without
/// write-back, opened by no process in particular (as `truncate` of a closed file needs).
#[derive(Default)]
pub struct WriteOptions {
    /// The file's size on the server now (ignored with `truncate`).
    pub size: u64,
    /// The old content is dropped (new file, `O_TRUNC`): the handle starts empty and dirty,
    /// so the close uploads an empty file even with no write.
    pub truncate: bool,
    /// Opened read-write: writes go to the spool from the first, so reads see them.
    pub read_write: bool,
    /// The process that opened the file: only its `close` uploads early.
    pub opener: u32,
    /// `--write-back`: writes go to the spool; the queue uploads later, under a temporary name.
    pub write_back: bool,
    /// For a new file without write-back: the mount's note that the server refused temporary
    /// names. `None` for a file that existed, which never uploads under its own name.
    pub temp_refused: Option<Arc<AtomicBool>>,
}

/// What a write handle holds under its state lock: the content and the changes the server
/// does not have yet. Held across a whole upload.
pub struct WriteState {
    /// Where the content is: the server's, an upload being streamed, a spool file.
    pub(super) body: Body,
    /// The file's size as the application sees it.
    pub size: u64,
    /// Something changed that the server does not have yet.
    pub dirty: bool,
    /// A modification time asked for while changes were pending; set on the server with the
    /// upload's rename where it allows that, else right after the upload.
    pub pending_mtime: Option<SystemTime>,
    /// Permission bits asked for while changes were pending; set on the server like
    /// `pending_mtime` (`SITE CHMOD` after the upload where the rename could not).
    pub pending_mode: Option<u32>,
    /// The pending bits and time that the upload set along with its rename (on the temporary,
    /// before: see [`crate::remote::Remote::rename_upload`]); whoever applies the pending ones
    /// takes these.
    pub placed_mode: Option<u32>,
    /// The time counterpart of `placed_mode`.
    pub placed_mtime: Option<SystemTime>,
}

/// One file open for writing, or closed and waiting in the write-back queue. The server gets
/// its changes from [`WriteHandle::commit`] (at flush, fsync and close, or from the queue);
/// only sequential writes reach it sooner, streamed into the upload as they come.
///
/// Its life is three separate facts, not one sequence of stages:
/// - `released`: closed by every process and queued for upload (write-back only); set once.
/// - `gone`: deleted or replaced, so its content goes nowhere; set once, before or after
///   `released` (an open file can be deleted, and so can a queued one).
/// - `state.dirty`: the server lacks changes; set by writes and truncation, cleared by an
///   upload or a discard, so it comes and goes while the file is open.
///
/// Locks, in the order documented in `namespace.rs`: `job` (taken only on a released handle),
/// then `state`, then `Fs::writing`. `path` and `uploading` are taken under `state` and hold
/// no other lock; nor does `closed_at` (`status` only tries `state` under it, for 20 ms).
pub struct WriteHandle {
    /// The file's path relative to the mount root; a rename of a file waiting in the
    /// write-back queue changes it (under the state lock).
    path: Mutex<String>,
    /// The process that opened the file. A forked child closing its inherited copy of the
    /// descriptor also sends a flush; only the opener's close commits early.
    pub opener: u32,
    /// For a new file (without write-back): the mount's memory that the server refused a
    /// temporary name or renaming one; once set, new files upload under their own name.
    pub(super) temp_refused: Option<Arc<AtomicBool>>,
    /// Opened read-write: spool from the start so reads see the writes.
    pub(super) read_write: bool,
    /// Write-back: spool everything, upload later under a temporary name, keep the content
    /// when an upload fails.
    pub(super) write_back: bool,
    /// Closed by every process; with write-back, waiting in the upload queue.
    pub released: AtomicBool,
    /// What `stat` shows while an upload holds the state lock.
    pub(super) uploading: Mutex<Option<Shown>>,
    /// Held by a write-back upload from start to end (times, modes, cache included); renames
    /// and deletes of a queued file take it first, so they act before or after, never during.
    pub job: Ranked<()>,
    /// Deleted or replaced while open or queued: its content goes nowhere.
    pub(super) gone: AtomicBool,
    /// The content and what is pending (see [`WriteState`]).
    pub state: Ranked<WriteState>,
    /// When the file was opened, for `status`.
    pub opened: std::time::Instant,
    /// Write-back: when the opener closed it, kept for the queue (cleared by a later write).
    /// Its release, which queues the upload, may reach us after `close` returned.
    pub closed_at: Mutex<Option<std::time::Instant>>,
}

/// Size, time and mode as the application sees them.
#[derive(Debug, Clone, Copy)]
pub struct Shown {
    /// The size the application sees.
    pub size: u64,
    /// A modification time asked for and not yet set on the server.
    pub mtime: Option<SystemTime>,
    /// Permission bits asked for and not yet set on the server.
    pub mode: Option<u32>,
}

impl WriteState {
    /// What `stat` shows of this file now.
    pub(super) fn shown(&self) -> Shown {
        Shown { size: self.size, mtime: self.pending_mtime, mode: self.pending_mode }
    }
}

/// What an open file being written is doing, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteProgress {
    /// Sequential writes flowing into an upload: bytes sent so far.
    Streaming(u64),
    /// Changes held in the spool, uploaded at close: the file's size.
    Spooled(u64),
    /// Busy at this moment (a write or the final upload holds the file).
    Busy,
    /// Nothing pending.
    Idle,
}

impl WriteHandle {
    /// A handle on `path`; nothing is sent to the server until the first write (streaming)
    /// or [`WriteHandle::commit`].
    pub fn new(path: String, options: WriteOptions) -> Self {
        let WriteOptions { size, truncate, read_write, opener, write_back, temp_refused } = options;
        let (body, size, dirty) = if truncate { (Body::Empty, 0, true) } else { (Body::Server, size, false) };
        WriteHandle {
            path: Mutex::new(path),
            opener,
            temp_refused,
            read_write,
            write_back,
            released: AtomicBool::new(false),
            uploading: Mutex::new(None),
            job: Ranked::new(lock_order::JOB, ()),
            gone: AtomicBool::new(false),
            state: Ranked::new(
                lock_order::STATE,
                WriteState {
                    body,
                    size,
                    dirty,
                    pending_mtime: None,
                    pending_mode: None,
                    placed_mode: None,
                    placed_mtime: None,
                },
            ),
            opened: std::time::Instant::now(),
            closed_at: Mutex::new(None),
        }
    }

    /// A queued upload found in the write-back journal at mount (left by a crash), released
    /// and dirty; the queue uploads it.
    pub fn resumed(journal: &Journal, file: File, reserved: Reservation, kept: Kept) -> Self {
        let h = WriteHandle::new(
            journal.path.clone(),
            WriteOptions { size: journal.size, write_back: true, ..Default::default() },
        );
        h.released.store(true, Ordering::Relaxed);
        let mut st = h.state.lock();
        st.body = Body::Spooled { file, reserved, kept: Some(kept) };
        st.dirty = true;
        st.pending_mode = journal.mode;
        st.pending_mtime = journal.mtime();
        drop(st);
        h
    }

    /// The file's path now (a rename of a queued file changes it).
    pub fn path(&self) -> String {
        self.path.lock().clone()
    }

    /// For `stat`: never waits for an upload in progress, and asks the server nothing.
    pub fn shown(&self) -> Shown {
        if let Some(st) = self.state.try_lock() {
            return st.shown();
        }
        if let Some(shown) = *self.uploading.lock() {
            return shown;
        }
        self.state.lock().shown()
    }

    /// Points a queued upload at a new name (the upload goes there); the caller holds the
    /// state lock.
    pub fn set_path(&self, _held: &WriteState, to: &str) {
        *self.path.lock() = to.to_string();
    }

    /// Write-back: makes sure the content is in a kept spool file and records in its journal
    /// entry where it goes, so a crash loses nothing that `close` confirmed. Local disk only.
    pub fn persist(&self, spool: &Spool) -> Result<(), RemoteError> {
        let mut st = self.state.lock();
        self.persist_locked(&mut st, spool)
    }

    /// [`WriteHandle::persist`] for a caller that holds the state lock.
    pub fn persist_locked(&self, st: &mut WriteState, spool: &Spool) -> Result<(), RemoteError> {
        if !st.dirty || !self.write_back {
            return Ok(());
        }
        if matches!(st.body, Body::Empty) {
            let (file, reserved, kept) = spool.file()?;
            st.body = Body::Spooled { file, reserved, kept };
        }
        let Body::Spooled { kept: Some(kept), .. } = &st.body else { return Ok(()) };
        let journal = Journal::new(self.path(), st.size, st.pending_mode, st.pending_mtime);
        journal.save(&kept.journal()).map_err(|e| spool_error(&self.path(), e))
    }

    /// Drops changes not uploaded yet (the file was deleted or replaced), now and later;
    /// waits for an upload in progress. Returns where an upload cut short left part of the
    /// file on the server: the caller removes it (this sends nothing).
    #[must_use]
    pub fn discard(&self) -> Option<String> {
        self.gone.store(true, Ordering::Relaxed);
        let mut st = self.state.lock();
        st.dirty = false;
        match std::mem::replace(&mut st.body, Body::Server) {
            Body::Streaming { to, .. } | Body::Failed { to, .. } => Some(to),
            // Still readable through the descriptors open on it, as on a local filesystem.
            spooled @ Body::Spooled { kept: None, .. } => {
                st.body = spooled;
                None
            }
            _ => None,
        }
    }

    /// Where the content of a queued upload is kept on disk (for failure reports).
    pub fn kept_file(&self) -> Option<std::path::PathBuf> {
        match &self.state.lock().body {
            Body::Spooled { kept: Some(k), .. } => Some(k.0.clone()),
            _ => None,
        }
    }

    /// What the file is doing, for `status`. Never waits long: a write or an upload in
    /// progress holds the state.
    pub fn progress(&self) -> WriteProgress {
        let Some(st) = self.state.try_lock_for(std::time::Duration::from_millis(20)) else {
            return WriteProgress::Busy;
        };
        match &st.body {
            Body::Streaming { written, .. } => WriteProgress::Streaming(*written),
            Body::Spooled { .. } if st.dirty => WriteProgress::Spooled(st.size),
            _ => WriteProgress::Idle,
        }
    }
}
