//! Putting a write handle's content on the server: the upload (to a temporary name, sent
//! again once if the connection breaks), its size check, and the rename into place
//! ([`replace`], which `rename` over an existing file uses too).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use crate::remote::{Applied, Remote, RemoteError, WriteStream};

use super::body::{Body, copy, remove_partial, spool_error, why_broken};
use super::{WriteHandle, WriteState};
use crate::fs::temp_names::temp_name;

/// How often an upload from the spool is tried when the connection breaks (a fresh session
/// waits for a restarting server within --reconnect-timeout).
const UPLOAD_ATTEMPTS: usize = 2;

impl WriteHandle {
    /// Puts the changes on the server (flush, fsync, close, or the write-back queue): ends
    /// the streamed upload or sends the spool, checks the size that arrived and renames the
    /// temporary into place, with the pending mode and time where that is free. Returns the
    /// uploaded size, or `None` when there was nothing to do (or the file is gone). After an
    /// upload, `keep` sees the local copy of what was sent, where there is one (for the
    /// content cache).
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
                    remove_partial(remote, &to);
                    return Err(error);
                }
                self.finish_upload(remote, upload, &to, size, path, meta)
            })
        } else {
            match std::mem::replace(&mut st.body, Body::Server) {
                Body::Server | Body::Spooled { .. } => Ok(Applied::default()),
                Body::Failed { to, error } => {
                    remove_partial(remote, &to);
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

    /// A temporary name, unless this is a new file on a server that refused those.
    pub(super) fn upload_path(&self, path: &str) -> String {
        match &self.temp_refused {
            Some(refused) if refused.load(Ordering::Relaxed) => path.to_string(),
            _ => temp_name(path),
        }
    }

    /// Starts the upload to `to`. Where the server refuses a new file's temporary name but
    /// takes its own name, the mount stops using temporary names for new files. (A directory
    /// that refuses both is just not writable: nothing is learnt.) Returns where it went.
    pub(super) fn open_upload(
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
