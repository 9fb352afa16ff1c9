//! What a write handle holds instead of the server's content (nothing yet, an upload being
//! streamed, a spool file) and the writes, truncations and reads that change or read it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

use crate::remote::{Remote, RemoteError, WriteStream};

use super::{WriteHandle, WriteState};
use crate::fs::spool::{Kept, Reservation, Spool};

/// A local copy of what a streamed upload sent so far.
pub(in crate::fs) struct Replay {
    file: File,
    reserved: Reservation,
}

impl Replay {
    /// A new, empty copy in a spool file; `None` when none can be made (the upload then
    /// streams without one and cannot be sent again).
    pub(super) fn start(spool: &Spool) -> Option<Replay> {
        spool.file().ok().map(|(file, reserved, _)| Replay { file, reserved })
    }

    /// Keeps `data` written at `offset`; false when the spool has no room (or the disk fails).
    pub(super) fn keep(&mut self, spool: &Spool, offset: u64, data: &[u8]) -> bool {
        spool.reserve(&mut self.reserved, offset + data.len() as u64).is_ok()
            && self.file.write_all_at(data, offset).is_ok()
    }

    /// The copy as the handle's content: a spool file with what was sent.
    pub(super) fn into_body(self) -> Body {
        Body::Spooled { file: self.file, reserved: self.reserved, kept: None }
    }
}

/// What the handle holds instead of the server's current content.
pub(in crate::fs) enum Body {
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

impl Body {
    /// What the body is, for logs.
    fn describe(&self) -> String {
        match self {
            Body::Server => "unchanged".to_string(),
            Body::Empty => "empty".to_string(),
            Body::Streaming { written, .. } => format!("streamed {written} bytes"),
            Body::Spooled { .. } => "spooled".to_string(),
            Body::Failed { .. } => "failed".to_string(),
        }
    }
}

impl WriteHandle {
    /// Writes `data` at `offset`: into the upload under way when it continues one (starting
    /// it for a first write at 0), else into the spool, which is filled from the server first
    /// where the old content is kept. The state lock is held across the upload on purpose:
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
        if self.streamable(&st, offset) {
            self.write_streamed(&mut st, remote, spool, offset, data)?;
        } else {
            self.write_spooled(&mut st, remote, spool, offset, data)?;
        }
        st.size = st.size.max(offset + data.len() as u64);
        st.dirty = true;
        Ok(())
    }

    /// Whether a write at `offset` starts or continues a streamed upload.
    fn streamable(&self, st: &WriteState, offset: u64) -> bool {
        !self.read_write
            && !self.write_back
            && match &st.body {
                Body::Empty => offset == 0,
                // An empty file needs no download to be rewritten from the start.
                Body::Server => offset == 0 && st.size == 0,
                Body::Streaming { written, .. } => offset == *written,
                _ => false,
            }
    }

    /// A sequential write, into the upload; if its connection breaks and the local copy has
    /// all that was sent, the content moves to the spool and this write goes there.
    fn write_streamed(
        &self,
        st: &mut WriteState,
        remote: &dyn Remote,
        spool: &Spool,
        offset: u64,
        data: &[u8],
    ) -> Result<(), RemoteError> {
        if matches!(st.body, Body::Empty | Body::Server) {
            self.start_stream(st, remote, spool)?;
        }
        let Body::Streaming { upload, written, replay, .. } = &mut st.body else { unreachable!("just started") };
        match upload.write_all(data) {
            Ok(()) => {
                *written = offset + data.len() as u64;
                if replay.as_mut().is_some_and(|r| !r.keep(spool, offset, data)) {
                    *replay = None;
                }
                Ok(())
            }
            Err(e) => {
                let failed_at = *written;
                self.fail_stream(st, remote, failed_at, e)?;
                // The content so far is in the spool now: this write goes there too.
                self.write_to_spool(st, spool, offset, data)
            }
        }
    }

    /// Opens the upload that sequential writes feed (to a temporary name, see `upload_path`).
    fn start_stream(&self, st: &mut WriteState, remote: &dyn Remote, spool: &Spool) -> Result<(), RemoteError> {
        let path = self.path();
        let to = self.upload_path(&path);
        tracing::debug!("streaming {path} to {to}");
        match self.open_upload(remote, to, &path) {
            Ok((upload, to)) => {
                st.body = Body::Streaming { upload, to, written: 0, replay: Replay::start(spool) };
                Ok(())
            }
            Err((error, to)) => {
                // Never an empty file at close for a write that failed: the close
                // reports this error and removes whatever the server created.
                st.body = Body::Failed { to, error: error.clone() };
                Err(error)
            }
        }
    }

    /// Any other write: into the spool, filled first (see `spool`).
    fn write_spooled(
        &self,
        st: &mut WriteState,
        remote: &dyn Remote,
        spool: &Spool,
        offset: u64,
        data: &[u8],
    ) -> Result<(), RemoteError> {
        if !matches!(st.body, Body::Spooled { .. }) && !self.write_back {
            let state = st.body.describe();
            tracing::debug!("{}: write at {offset} ({state}) is not sequential; using a spool file", self.path());
        }
        self.spool(st, remote, spool)?;
        self.write_to_spool(st, spool, offset, data)
    }

    /// Writes `data` at `offset` into the spool file that holds the content.
    fn write_to_spool(&self, st: &mut WriteState, spool: &Spool, offset: u64, data: &[u8]) -> Result<(), RemoteError> {
        let Body::Spooled { file, reserved, .. } = &mut st.body else { unreachable!("just spooled") };
        spool.reserve(reserved, offset + data.len() as u64)?;
        file.write_all_at(data, offset).map_err(|e| spool_error(&self.path(), e))
    }

    /// Reads from the handle's own content (read-write opens, queued files); the first read
    /// moves the content to the spool (see `spool`: a download, or the end of an upload).
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

    /// `truncate` / `ftruncate` to `size`; the server sees it at commit. Any size but 0 (or
    /// any, mid-stream) moves the content to the spool first (see `spool`).
    pub fn truncate(&self, remote: &dyn Remote, spool: &Spool, size: u64) -> Result<(), RemoteError> {
        let mut st = self.state.lock();
        if size == st.size && !matches!(st.body, Body::Server) {
            return Ok(());
        }
        if size == 0 && !matches!(st.body, Body::Streaming { .. }) {
            // Starting over: what a failed upload left on the server goes.
            if let Body::Failed { to, .. } = std::mem::replace(&mut st.body, Body::Empty) {
                remove_partial(remote, &to);
            }
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
                remove_partial(remote, &to);
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
                remove_partial(remote, &to);
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
        match filled_spool(remote, spool, source.as_deref(), st.size) {
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
}

/// Removes what an upload that failed or was abandoned left under its temporary name (best
/// effort: a leftover is hidden, and logged).
pub(super) fn remove_partial(remote: &dyn Remote, to: &str) {
    if let Err(e) = remote.delete(to) {
        tracing::debug!("removing the incomplete upload {to}: {e}");
    }
}

/// A new spool file with the `size` bytes of `source` downloaded into it (empty without one).
fn filled_spool(remote: &dyn Remote, spool: &Spool, source: Option<&str>, size: u64) -> Result<Body, RemoteError> {
    let (file, mut reserved, kept) = spool.file()?;
    if let Some(from) = source {
        spool.reserve(&mut reserved, size)?;
        let mut stream = remote.open_read(from, 0)?;
        let mut out = &file;
        let got = copy(&mut stream, &mut out).map_err(|e| download_error(from, e))?;
        // A short copy would turn into zeros (or lost bytes) under the changes.
        if got != size {
            return Err(RemoteError::Connection(format!(
                "downloading {from} to change it: the server sent {got} bytes where {size} were expected; \
                 the file may have changed on the server meanwhile. Nothing was changed: try again"
            )));
        }
    }
    Ok(Body::Spooled { file, reserved, kept })
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

/// A spool file could not be written or read: reported as no space, naming `--cache-dir`.
pub(super) fn spool_error(path: &str, e: io::Error) -> RemoteError {
    RemoteError::NoSpace(format!("writing the local spool file for {path}: {e} (see --cache-dir)"))
}

/// `io::copy` with big blocks: its 8 KiB ones make as many TLS records and system calls, which
/// took uploads from the spool to a quarter of the streaming speed.
pub(super) fn copy(from: &mut impl Read, to: &mut impl Write) -> io::Result<u64> {
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
pub(super) fn why_broken(upload: Box<dyn WriteStream>, to: &str, at: u64, io: io::Error) -> RemoteError {
    match upload.finish() {
        Err(reason) if !matches!(reason, RemoteError::Connection(_) | RemoteError::Timeout(_)) => reason,
        _ if at > 0 => RemoteError::Connection(format!("uploading {to}: the connection broke after {at} bytes: {io}")),
        _ => RemoteError::Connection(format!("uploading {to}: the connection broke: {io}")),
    }
}
