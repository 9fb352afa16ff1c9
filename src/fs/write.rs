//! Writing an open file, without ever leaving a truncated or empty file that looks complete.
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
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;

use crate::remote::{Applied, Remote, RemoteError, WriteStream};

use super::spool::{Kept, Reservation, Spool};
use super::temp_names::temp_name;
use super::writeback::Journal;

/// A local copy of what a streamed upload sent so far.
struct Replay {
    file: File,
    reserved: Reservation,
}

impl Replay {
    fn start(spool: &Spool) -> Option<Replay> {
        spool.file().ok().map(|(file, reserved, _)| Replay { file, reserved })
    }

    /// Keeps `data` written at `offset`; false when the spool has no room (or the disk fails).
    fn keep(&mut self, spool: &Spool, offset: u64, data: &[u8]) -> bool {
        spool.reserve(&mut self.reserved, offset + data.len() as u64).is_ok()
            && self.file.write_all_at(data, offset).is_ok()
    }

    fn into_body(self) -> Body {
        Body::Spooled { file: self.file, reserved: self.reserved, kept: None }
    }
}

/// How often an upload from the spool is tried when the connection breaks (a fresh session
/// waits for a restarting server within --reconnect-timeout).
const UPLOAD_ATTEMPTS: usize = 2;

/// What the handle holds instead of the server's current content.
enum Body {
    /// Unchanged: the content is the server's (`size` bytes).
    Server,
    /// Emptied (new or truncated file); nothing written yet.
    Empty,
    /// An upload in progress, fed by sequential writes, with a local copy of what was sent
    /// while the spool has room, so a broken upload can be sent again.
    Streaming { upload: Box<dyn WriteStream>, to: String, written: u64, replay: Option<Replay> },
    /// The whole content, in a local spool file (named and kept with write-back).
    Spooled { file: File, reserved: Reservation, kept: Option<Kept> },
    /// An upload failed; the error is reported again at close, and what reached the server
    /// (`to`) is removed then.
    Failed { to: String, error: RemoteError },
}

pub struct WriteState {
    body: Body,
    /// The file's size as the application sees it.
    pub size: u64,
    /// Something changed that the server does not have yet.
    pub dirty: bool,
    /// A modification time asked for while changes were pending; set after the upload.
    pub pending_mtime: Option<SystemTime>,
    /// Permission bits asked for while changes were pending; set after the upload.
    pub pending_mode: Option<u32>,
    /// The pending bits and time that the upload set along with its rename (on the temporary,
    /// before: see [`Remote::rename_upload`]); whoever applies the pending ones takes these.
    pub placed_mode: Option<u32>,
    pub placed_mtime: Option<SystemTime>,
}

pub struct WriteHandle {
    /// The file's path relative to the mount root; a rename of a file waiting in the
    /// write-back queue changes it (under the state lock).
    path: Mutex<String>,
    /// The process that opened the file. A forked child closing its inherited copy of the
    /// descriptor also sends a flush; only the opener's close commits early.
    pub opener: u32,
    /// For a new file (without write-back): the mount's memory that the server refused a
    /// temporary name or renaming one; once set, new files upload under their own name.
    temp_refused: Option<Arc<AtomicBool>>,
    /// Opened read-write: spool from the start so reads see the writes.
    read_write: bool,
    /// Write-back: spool everything, upload later under a temporary name, keep the content
    /// when an upload fails.
    write_back: bool,
    /// Closed by every process; with write-back, waiting in the upload queue.
    pub released: AtomicBool,
    /// What `stat` shows while an upload holds the state lock.
    uploading: Mutex<Option<Shown>>,
    /// Held by a write-back upload from start to end (times, modes, cache included); renames
    /// and deletes of a queued file take it first, so they act before or after, never during.
    pub job: Mutex<()>,
    /// Deleted or replaced while open or queued: its content goes nowhere.
    gone: AtomicBool,
    pub state: Mutex<WriteState>,
    pub opened: std::time::Instant,
    /// Write-back: when the opener closed it, kept for the queue (cleared by a later write).
    /// Its release, which queues the upload, may reach us after `close` returned.
    pub closed_at: Mutex<Option<std::time::Instant>>,
}

/// Size, time and mode as the application sees them.
#[derive(Debug, Clone, Copy)]
pub struct Shown {
    pub size: u64,
    pub mtime: Option<SystemTime>,
    pub mode: Option<u32>,
}

impl WriteState {
    fn shown(&self) -> Shown {
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
    /// `truncate`: the old content is dropped (new file, `O_TRUNC`). `temp_refused`: see the
    /// field; `None` for a file that existed, which never uploads under its own name.
    pub fn new(
        path: String,
        temp_refused: Option<Arc<AtomicBool>>,
        size: u64,
        truncate: bool,
        read_write: bool,
        opener: u32,
        write_back: bool,
    ) -> Self {
        let (body, size, dirty) = if truncate { (Body::Empty, 0, true) } else { (Body::Server, size, false) };
        WriteHandle {
            path: Mutex::new(path),
            opener,
            temp_refused,
            read_write,
            write_back,
            released: AtomicBool::new(false),
            uploading: Mutex::new(None),
            job: Mutex::new(()),
            gone: AtomicBool::new(false),
            state: Mutex::new(WriteState {
                body,
                size,
                dirty,
                pending_mtime: None,
                pending_mode: None,
                placed_mode: None,
                placed_mtime: None,
            }),
            opened: std::time::Instant::now(),
            closed_at: Mutex::new(None),
        }
    }

    /// A queued upload found in the write-back journal at mount (left by a crash).
    pub fn resumed(journal: &Journal, file: File, reserved: Reservation, kept: Kept) -> Self {
        let h = WriteHandle::new(journal.path.clone(), None, journal.size, false, false, 0, true);
        h.released.store(true, Ordering::Relaxed);
        let mut st = h.state.lock();
        st.body = Body::Spooled { file, reserved, kept: Some(kept) };
        st.dirty = true;
        st.pending_mode = journal.mode;
        st.pending_mtime = journal.mtime();
        drop(st);
        h
    }

    pub fn path(&self) -> String {
        self.path.lock().clone()
    }

    /// For `stat`: never waits for an upload in progress.
    pub fn shown(&self) -> Shown {
        if let Some(st) = self.state.try_lock() {
            return st.shown();
        }
        if let Some(shown) = *self.uploading.lock() {
            return shown;
        }
        self.state.lock().shown()
    }

    /// Points a queued upload at a new name; the caller holds the state lock.
    pub fn set_path(&self, _held: &WriteState, to: &str) {
        *self.path.lock() = to.to_string();
    }

    /// Write-back: makes sure the content is in a kept spool file and records in its journal
    /// entry where it goes, so a crash loses nothing that `close` confirmed.
    pub fn persist(&self, spool: &Spool) -> Result<(), RemoteError> {
        let mut st = self.state.lock();
        self.persist_locked(&mut st, spool)
    }

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
    /// file on the server: the caller removes it.
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

    /// Where the content of a queued upload is kept (for failure reports).
    pub fn kept_file(&self) -> Option<std::path::PathBuf> {
        match &self.state.lock().body {
            Body::Spooled { kept: Some(k), .. } => Some(k.0.clone()),
            _ => None,
        }
    }

    /// Never waits long: a write in progress holds the state.
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

    /// Writes `data` at `offset`. The per-handle lock is held across the upload on purpose:
    /// writes to one file must reach the stream in order.
    pub fn write(&self, remote: &dyn Remote, spool: &Spool, offset: u64, data: &[u8]) -> Result<(), RemoteError> {
        let mut st = self.state.lock();
        if self.gone.load(Ordering::Relaxed) {
            // Deleted while open: the writes go nowhere, as on a local filesystem.
            st.size = st.size.max(offset + data.len() as u64);
            return Ok(());
        }
        if let Body::Failed { error, .. } = &st.body {
            return Err(error.clone());
        }
        let end = offset + data.len() as u64;
        let streamable = !self.read_write
            && !self.write_back
            && match &st.body {
                Body::Empty => offset == 0,
                // An empty file needs no download to be rewritten from the start.
                Body::Server => offset == 0 && st.size == 0,
                Body::Streaming { written, .. } => offset == *written,
                _ => false,
            };
        if streamable {
            if matches!(st.body, Body::Empty | Body::Server) {
                let path = self.path();
                let to = self.upload_path(&path);
                tracing::debug!("streaming {path} to {to}");
                let (upload, to) = match self.open_upload(remote, to, &path) {
                    Ok(opened) => opened,
                    Err((error, to)) => {
                        // Never an empty file at close for a write that failed: the close
                        // reports this error and removes whatever the server created.
                        st.body = Body::Failed { to, error: error.clone() };
                        return Err(error);
                    }
                };
                st.body = Body::Streaming { upload, to, written: 0, replay: Replay::start(spool) };
            }
            let Body::Streaming { upload, written, replay, .. } = &mut st.body else { unreachable!("just started") };
            match upload.write_all(data) {
                Ok(()) => {
                    *written = end;
                    if replay.as_mut().is_some_and(|r| !r.keep(spool, offset, data)) {
                        *replay = None;
                    }
                }
                Err(e) => {
                    let failed_at = *written;
                    self.fail_stream(&mut st, remote, failed_at, e)?;
                    // The content so far is in the spool now: this write goes there too.
                    let Body::Spooled { file, reserved, .. } = &mut st.body else { unreachable!("just spooled") };
                    spool.reserve(reserved, end)?;
                    file.write_all_at(data, offset).map_err(|e| spool_error(&self.path(), e))?;
                }
            }
        } else {
            if !matches!(st.body, Body::Spooled { .. }) {
                let state = match &st.body {
                    Body::Server => "unchanged".to_string(),
                    Body::Empty => "empty".to_string(),
                    Body::Streaming { written, .. } => format!("streamed {written} bytes"),
                    Body::Spooled { .. } => "spooled".to_string(),
                    Body::Failed { .. } => "failed".to_string(),
                };
                if !self.write_back {
                    tracing::debug!(
                        "{}: write at {offset} ({state}) is not sequential; using a spool file",
                        self.path()
                    );
                }
            }
            self.spool(&mut st, remote, spool)?;
            let Body::Spooled { file, reserved, .. } = &mut st.body else { unreachable!("just spooled") };
            spool.reserve(reserved, end)?;
            file.write_all_at(data, offset).map_err(|e| spool_error(&self.path(), e))?;
        }
        st.size = st.size.max(end);
        st.dirty = true;
        Ok(())
    }

    /// Reads from the handle's own content (read-write opens).
    pub fn read_spooled(
        &self,
        remote: &dyn Remote,
        spool: &Spool,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, RemoteError> {
        let mut st = self.state.lock();
        self.spool(&mut st, remote, spool)?;
        let Body::Spooled { file, .. } = &st.body else { unreachable!("just spooled") };
        let len = len.min(st.size.saturating_sub(offset) as usize);
        let mut buf = vec![0u8; len];
        let n = read_full_at(file, &mut buf, offset).map_err(|e| spool_error(&self.path(), e))?;
        buf.truncate(n);
        Ok(buf)
    }

    /// `truncate` / `ftruncate` to `size`.
    pub fn truncate(&self, remote: &dyn Remote, spool: &Spool, size: u64) -> Result<(), RemoteError> {
        let mut st = self.state.lock();
        if size == st.size && !matches!(st.body, Body::Server) {
            return Ok(());
        }
        if size == 0 && !matches!(st.body, Body::Streaming { .. }) {
            st.body = Body::Empty;
        } else {
            self.spool(&mut st, remote, spool)?;
            let Body::Spooled { file, reserved, .. } = &mut st.body else { unreachable!("just spooled") };
            spool.reserve(reserved, size)?;
            file.set_len(size).map_err(|e| spool_error(&self.path(), e))?;
        }
        st.size = size;
        st.dirty = true;
        Ok(())
    }

    /// The data connection broke: the server's reply on the control connection says why (a
    /// full disk, a quota), and that verdict fails the write, kept for the close. A broken
    /// connection is not final when the local copy has everything written: the content moves
    /// to the spool, to be sent again at close.
    fn fail_stream(&self, st: &mut WriteState, remote: &dyn Remote, at: u64, io: io::Error) -> Result<(), RemoteError> {
        let Body::Streaming { upload, to, replay, .. } = std::mem::replace(&mut st.body, Body::Empty) else {
            unreachable!("called while streaming")
        };
        let error = why_broken(upload, &to, at, io);
        match replay {
            Some(replay) if error.is_transient() => {
                tracing::info!("{}: the upload broke ({error}); it is sent again from a local copy", self.path());
                if let Err(e) = remote.delete(&to) {
                    tracing::debug!("removing the incomplete upload {to}: {e}");
                }
                st.body = replay.into_body();
                Ok(())
            }
            _ => {
                tracing::debug!("{}: {error}", self.path());
                st.body = Body::Failed { to, error: error.clone() };
                Err(error)
            }
        }
    }

    /// A temporary name, unless this is a new file on a server that refused those.
    fn upload_path(&self, path: &str) -> String {
        match &self.temp_refused {
            Some(refused) if refused.load(Ordering::Relaxed) => path.to_string(),
            _ => temp_name(path),
        }
    }

    /// Starts the upload to `to`. Where the server refuses a new file's temporary name but
    /// takes its own name, the mount stops using temporary names for new files. (A directory
    /// that refuses both is just not writable: nothing is learnt.) Returns where it went.
    fn open_upload(
        &self,
        remote: &dyn Remote,
        to: String,
        path: &str,
    ) -> Result<(Box<dyn WriteStream>, String), (RemoteError, String)> {
        match remote.open_write(&to, false) {
            Ok(upload) => Ok((upload, to)),
            Err(RemoteError::PermissionDenied(why)) if to != path && self.temp_refused.is_some() => {
                match remote.open_write(path, false) {
                    Ok(upload) => {
                        self.learn_temp_refused(&why);
                        Ok((upload, path.to_string()))
                    }
                    // This error names the user's file, not the temporary.
                    Err(e) => Err((e, to)),
                }
            }
            Err(e) => Err((e, to)),
        }
    }

    /// Remembers, for the whole mount, that the server refuses temporary names (only a new
    /// file's handle can tell).
    fn learn_temp_refused(&self, why: &str) {
        let Some(refused) = &self.temp_refused else { return };
        if !refused.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the server refused a temporary upload name ({why}); new files now upload under their own \
                 names, so an interrupted upload can leave a partial file there until it is removed"
            );
        }
    }

    /// Moves the content into a spool file (downloading the server's content or finishing
    /// an upload in progress first).
    ///
    /// On failure the handle never falls back to "empty": unchanged content stays the server's,
    /// and what was already streamed becomes a failed upload, reported and removed at close.
    fn spool(&self, st: &mut WriteState, remote: &dyn Remote, spool: &Spool) -> Result<(), RemoteError> {
        let path = self.path();
        // Where the content comes from, and what the handle is if that fails.
        type OnError = fn(Option<String>, RemoteError) -> Body;
        let (source, on_error): (Option<String>, OnError) = match std::mem::replace(&mut st.body, Body::Empty) {
            Body::Spooled { file, reserved, kept } => {
                st.body = Body::Spooled { file, reserved, kept };
                return Ok(());
            }
            Body::Failed { to, error } => {
                st.body = Body::Failed { to, error: error.clone() };
                return Err(error);
            }
            Body::Empty => (None, |_, _| Body::Empty),
            Body::Server => (Some(path.clone()), |_, _| Body::Server),
            Body::Streaming { upload, to, replay: Some(replay), .. } => {
                // A jump after sequential writes: the local copy has what was sent.
                drop(upload);
                if let Err(e) = remote.delete(&to) {
                    tracing::debug!("removing the abandoned upload {to}: {e}");
                }
                st.body = replay.into_body();
                return Ok(());
            }
            Body::Streaming { upload, to, replay: None, .. } => {
                // Rare: a jump after sequential writes. What was sent is fetched back.
                if let Err(error) = upload.finish() {
                    st.body = Body::Failed { to, error: error.clone() };
                    return Err(error);
                }
                (Some(to), |to, error| Body::Failed { to: to.expect("streamed somewhere"), error })
            }
        };
        let filled = spool.file().and_then(|(file, mut reserved, kept)| {
            if let Some(from) = &source {
                spool.reserve(&mut reserved, st.size)?;
                let mut stream = remote.open_read(from, 0)?;
                let mut out = &file;
                let got = copy(&mut stream, &mut out).map_err(|e| download_error(from, e))?;
                // A short copy would turn into zeros (or lost bytes) under the changes.
                if got != st.size {
                    return Err(RemoteError::Connection(format!(
                        "downloading {from} to change it: the server sent {got} bytes where {} were expected; \
                         the file may have changed on the server meanwhile. Nothing was changed: try again",
                        st.size
                    )));
                }
            }
            Ok(Body::Spooled { file, reserved, kept })
        });
        match filled {
            Ok(body) => {
                if let Some(from) = source.filter(|from| from != &path) {
                    let _ = remote.delete(&from);
                }
                st.body = body;
                Ok(())
            }
            Err(error) => {
                st.body = on_error(source, error.clone());
                Err(error)
            }
        }
    }

    /// Puts the changes on the server (flush, fsync, close). Returns the uploaded size, or
    /// `None` when there was nothing to do. After an upload, `keep` sees the local copy of
    /// what was sent, where there is one (for the content cache).
    pub fn commit(&self, remote: &dyn Remote, keep: &dyn Fn(&File, u64)) -> Result<Option<u64>, RemoteError> {
        let mut st = self.state.lock();
        if !st.dirty {
            return Ok(None);
        }
        if matches!(st.body, Body::Server) {
            return Ok(None);
        }
        if self.gone.load(Ordering::Relaxed) {
            st.body = Body::Server;
            st.dirty = false;
            return Ok(None);
        }
        let size = st.size;
        let path = self.path();
        *self.uploading.lock() = Some(st.shown());
        let result = self.upload(&mut st, remote, size, &path);
        *self.uploading.lock() = None;
        match result {
            Ok(applied) => {
                if applied.mode {
                    st.placed_mode = st.pending_mode.take();
                }
                if applied.mtime {
                    st.placed_mtime = st.pending_mtime.take();
                }
                if let Body::Spooled { file, .. } = &st.body {
                    keep(file, size);
                }
                st.body = Body::Server;
                st.dirty = false;
                Ok(Some(size))
            }
            Err(e) if self.write_back && matches!(st.body, Body::Spooled { .. }) => Err(e),
            Err(e) => {
                // The application hears about it; the server keeps the old version (or nothing).
                st.body = Body::Server;
                st.dirty = false;
                Err(e)
            }
        }
    }

    /// Sends the content wherever it is (spool, stream in progress, nothing) and puts it in
    /// place. A streamed upload that broke, and an upload from the spool whose connection
    /// broke, are sent again from the local copy (write-back's queue does its own retries).
    fn upload(&self, st: &mut WriteState, remote: &dyn Remote, size: u64, path: &str) -> Result<Applied, RemoteError> {
        let mut attempt = 1;
        loop {
            let result = self.upload_once(st, remote, size, path);
            match result {
                // Spooled: from the start, or kept from a broken stream by `upload_once`.
                Err(e)
                    if e.is_transient()
                        && !self.write_back
                        && attempt < UPLOAD_ATTEMPTS
                        && matches!(st.body, Body::Spooled { .. }) =>
                {
                    tracing::info!("{path}: the upload broke ({e}); sending it again");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn upload_once(
        &self,
        st: &mut WriteState,
        remote: &dyn Remote,
        size: u64,
        path: &str,
    ) -> Result<Applied, RemoteError> {
        let meta = (st.pending_mode, st.pending_mtime);
        if let Body::Spooled { file, .. } = &mut st.body {
            // Read in place: with write-back the content stays for a retry if this fails.
            let to = self.upload_path(path);
            self.open_upload(remote, to, path).map_err(|(e, _)| e).and_then(|(mut upload, to)| {
                file.seek(SeekFrom::Start(0)).map_err(|e| spool_error(path, e))?;
                let mut limited = (&mut *file).take(size);
                if let Err(e) = copy(&mut limited, &mut upload) {
                    let error = why_broken(upload, &to, 0, e);
                    if let Err(e) = remote.delete(&to) {
                        tracing::debug!("removing the incomplete upload {to}: {e}");
                    }
                    return Err(error);
                }
                self.finish_upload(remote, upload, &to, size, path, meta)
            })
        } else {
            match std::mem::replace(&mut st.body, Body::Server) {
                Body::Server | Body::Spooled { .. } => Ok(Applied::default()),
                Body::Failed { to, error } => {
                    if let Err(e) = remote.delete(&to) {
                        tracing::debug!("removing the incomplete upload {to}: {e}");
                    }
                    Err(error)
                }
                Body::Streaming { upload, to, written, replay } => {
                    let result = self.finish_upload(remote, upload, &to, written, path, meta);
                    match (result, replay) {
                        // Kept for a second attempt (`upload` moves it to the spool).
                        (Err(e), Some(replay)) if e.is_transient() => {
                            st.body = replay.into_body();
                            Err(e)
                        }
                        // Kept for `commit` to show what was sent.
                        (Ok(applied), Some(replay)) => {
                            st.body = replay.into_body();
                            Ok(applied)
                        }
                        (result, _) => result,
                    }
                }
                Body::Empty => {
                    let to = self.upload_path(path);
                    remote.open_write(&to, false).and_then(|u| self.finish_upload(remote, u, &to, 0, path, meta))
                }
            }
        }
    }

    /// Ends an upload, checks what arrived, and puts it in place, with the pending `meta`
    /// (mode, time) where that is free (says which); cleans up on failure.
    fn finish_upload(
        &self,
        remote: &dyn Remote,
        upload: Box<dyn WriteStream>,
        to: &str,
        sent: u64,
        path: &str,
        meta: (Option<u32>, Option<SystemTime>),
    ) -> Result<Applied, RemoteError> {
        let outcome = upload
            .finish()
            .and_then(|()| verify_size(remote, to, sent))
            .and_then(|()| if to != path { replace_upload(remote, to, path, meta) } else { Ok(Applied::default()) })
            .map_err(|e| match e {
                RemoteError::PermissionDenied(why) if to != path && self.temp_refused.is_some() => {
                    self.learn_temp_refused(&why);
                    RemoteError::PermissionDenied(format!(
                        "{why}. The server does not let uploads be renamed here; new files are now written \
                         under their own names: write {path} again"
                    ))
                }
                e => e,
            });
        if outcome.is_err() {
            // A temporary, or a new file that never completed: neither may look like a result.
            if let Err(e) = remote.delete(to) {
                tracing::debug!("removing the incomplete upload {to}: {e}");
            }
        }
        outcome
    }
}

/// The server must hold exactly what we sent; zero bytes where bytes were sent is the classic
/// symptom of a blocked data channel.
fn verify_size(remote: &dyn Remote, path: &str, sent: u64) -> Result<(), RemoteError> {
    match remote.size(path)? {
        None => Ok(()),
        Some(n) if n == sent => Ok(()),
        Some(0) => Err(RemoteError::Connection(format!(
            "uploading {path}: {sent} bytes were sent but the server stored 0. The data connection is probably \
             blocked: check that the server's passive (PASV) ports are open in every firewall on the way"
        ))),
        Some(n) => Err(RemoteError::Connection(format!(
            "uploading {path}: {sent} bytes were sent but the server stored {n}; the upload was discarded"
        ))),
    }
}

/// Renames `from` over `to`; where the server refuses to rename onto an existing file, the
/// old file is deleted first (a short window in which neither name holds the content).
///
/// A rename whose reply was lost or garbled may have happened all the same: when `from` is
/// gone afterwards, it did, and deleting `to` then would delete the file just put in place.
pub fn replace(remote: &dyn Remote, from: &str, to: &str) -> Result<(), RemoteError> {
    match remote.rename(from, to) {
        Ok(()) => Ok(()),
        Err(first) => replace_refused(remote, from, to, first),
    }
}

/// [`replace`] for an upload's temporary, setting its pending mode and time on the way where
/// the server allows that without extra round trips (see [`Remote::rename_upload`]).
fn replace_upload(
    remote: &dyn Remote,
    from: &str,
    to: &str,
    (mode, mtime): (Option<u32>, Option<SystemTime>),
) -> Result<Applied, RemoteError> {
    match remote.rename_upload(from, to, mode, mtime) {
        Ok(applied) => Ok(applied),
        Err(first) => replace_refused(remote, from, to, first).map(|()| Applied::default()),
    }
}

/// What [`replace`] does once the plain rename failed with `first`.
fn replace_refused(remote: &dyn Remote, from: &str, to: &str, first: RemoteError) -> Result<(), RemoteError> {
    if matches!(remote.size(from), Err(RemoteError::NotFound(_))) {
        tracing::info!("renaming {from} to {to} reported a failure ({first}), but it happened");
        return Ok(());
    }
    if first.breaks_session() {
        return Err(first);
    }
    // Refused (IIS, FileZilla Server): the old file is moved aside first, not deleted, so a
    // failure in between puts it back instead of losing it.
    let aside = temp_name(to);
    tracing::debug!("renaming {from} over {to} was refused ({first}); moving {to} aside to {aside} first");
    match remote.rename(to, &aside) {
        Ok(()) => {}
        Err(RemoteError::NotFound(_)) => return remote.rename(from, to),
        Err(_) => return Err(first),
    }
    match remote.rename(from, to) {
        Ok(()) => {
            if let Err(e) = remote.delete(&aside) {
                tracing::warn!("{to} was replaced, but its old version {aside} could not be removed: {e}");
            }
            Ok(())
        }
        Err(e) => {
            if let Err(back) = remote.rename(&aside, to) {
                tracing::error!(
                    "replacing {to} failed ({e}) and its old content could not be put back: it is kept as {aside} ({back})"
                );
            }
            Err(e)
        }
    }
}

/// `io::copy` with big blocks: its 8 KiB ones make as many TLS records and system calls, which
/// took uploads from the spool to a quarter of the streaming speed.
fn copy(from: &mut impl Read, to: &mut impl Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// The data connection of an upload broke after `at` bytes (`io`): the server's reply, when it
/// gives one, says why (a full disk, a quota) and is the better error.
fn why_broken(upload: Box<dyn WriteStream>, to: &str, at: u64, io: io::Error) -> RemoteError {
    match upload.finish() {
        Err(reason) if !matches!(reason, RemoteError::Connection(_) | RemoteError::Timeout(_)) => reason,
        _ if at > 0 => RemoteError::Connection(format!("uploading {to}: the connection broke after {at} bytes: {io}")),
        _ => RemoteError::Connection(format!("uploading {to}: the connection broke: {io}")),
    }
}

/// A download failed: the remote layer's own error when it gave one (the server's verdict).
fn download_error(from: &str, e: io::Error) -> RemoteError {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<RemoteError>()) {
        Some(err) => err.clone(),
        None => RemoteError::Connection(format!("downloading {from}: {e}")),
    }
}

fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64)? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn spool_error(path: &str, e: io::Error) -> RemoteError {
    RemoteError::NoSpace(format!("writing the local spool file for {path}: {e} (see --cache-dir)"))
}
