//! Changing attributes: `setattr` (size, modification time, mode). On a file being written
//! they are kept and applied after its upload; otherwise they go to the server at once.

use super::*;

impl Fs {
    /// `setattr`: truncates (see `truncate`), sets the time (`MFMT`/`MDTM`) and the mode (`SITE CHMOD`)
    /// at once, or, on a file whose content is still to be uploaded, keeps them for after its upload.
    /// Owner changes are accepted and not sent (FTP cannot change owners).
    pub fn setattr(&self, ino: u64, fh: Option<u64>, change: SetAttr) -> Result<Attr> {
        if change.size.is_some() || change.mtime.is_some() || change.mode.is_some() {
            self.check_writable()?;
        }
        if change.size.is_some_and(|s| s > MAX_FILE_SIZE) {
            return Err(too_big(change.size.unwrap_or_default()));
        }
        let path = if ino == ROOT { String::new() } else { self.entry(ino)?.0 };
        let _busy = self.watch.busy(&[split(&path).0]);
        if change.size.is_some() || change.mtime.is_some() || change.mode.is_some() || change.owner_change {
            self.changed(&path, false);
        }
        if change.mtime.is_some() {
            // A time set on purpose (`rsync -a` on a directory it filled) wins over ours.
            if let Some(t) = self.local_times.lock().get_mut(&path) {
                t.mtime = None;
            }
        }
        if let Some(size) = change.size {
            self.truncate(ino, &path, fh, size)?;
        }
        if let Some(mtime) = change.mtime {
            match self.set_pending(&path, |st| st.pending_mtime = Some(mtime)) {
                true => {}
                false => {
                    self.apply_mtime(&path, mtime)?;
                    let (dir, name) = split(&path);
                    if let Ok(mut e) = self.find(dir, name) {
                        e.mtime = Some(mtime);
                        self.dirs.upsert(dir, e);
                    }
                }
            }
        }
        // Not on the server yet (or about to be replaced): applied after the upload.
        if let Some(mode) = change.mode {
            if !self.set_pending(&path, |st| st.pending_mode = Some(mode)) {
                self.apply_mode(&path, mode);
            }
        }
        // Owners cannot be changed over FTP; accepted so `cp -a` and `rsync -a` succeed.
        self.getattr(ino)
    }

    /// Changes an attribute of a file whose content is still to be uploaded; false when
    /// there is no such file (any more).
    pub(super) fn set_pending(&self, path: &str, change: impl FnOnce(&mut write::WriteState)) -> bool {
        let Some(w) = self.writing.lock().get(path).cloned() else { return false };
        let _running = w.released.load(Ordering::Relaxed).then(|| w.job.lock());
        let mut st = w.state.lock();
        if !st.dirty {
            return false;
        }
        change(&mut st);
        if w.released.load(Ordering::Relaxed) {
            if let Err(e) = w.persist_locked(&mut st, &self.spool) {
                tracing::warn!("write-back: {e}");
            }
        }
        true
    }

    pub(super) fn truncate(&self, ino: u64, path: &str, fh: Option<u64>, size: u64) -> Result<()> {
        self.settle(path)?;
        let open = match fh.map(|f| self.handle(f)) {
            Some(Ok(Handle::Write(h))) => Some(h),
            _ => self.writing.lock().get(path).cloned(),
        };
        if let Some(h) = open {
            return Ok(h.truncate(self.remote.as_ref(), &self.spool, size)?);
        }
        let attr = self.getattr(ino)?;
        if attr.kind == FileKind::Dir {
            return Err(FsError::IsDir);
        }
        if attr.size == size {
            return Ok(());
        }
        // Not open: rewrite the file through a short-lived handle (safe replace applies).
        let h = WriteHandle::new(path.to_string(), WriteOptions { size: attr.size, ..Default::default() });
        h.truncate(self.remote.as_ref(), &self.spool, size)?;
        self.commit(&h)
    }

    pub(super) fn apply_mtime(&self, path: &str, t: SystemTime) -> Result<()> {
        match self.remote.set_mtime(path, t) {
            Ok(()) => {
                self.set_times.lock().insert(path.to_string(), t);
                Ok(())
            }
            // Many servers set times on files only; a directory keeps the server's time.
            Err(e) if self.is_dir(path) => {
                tracing::debug!("{path}: the server does not set directory times ({e})");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn is_dir(&self, path: &str) -> bool {
        let (dir, name) = split(path);
        path.is_empty() || self.find(dir, name).is_ok_and(|e| e.kind == Kind::Dir)
    }

    /// Permission bits go to the server where it supports SITE CHMOD; where it does not, or
    /// refuses, the change is accepted and the server's bits stay (documented), because
    /// copying tools treat a failed chmod as a failed copy.
    pub(super) fn apply_mode(&self, path: &str, mode: u32) {
        let (dir, name) = split(path);
        // rsync and cp -p set the mode the file already has (often twice): no round trip.
        let current = self.dirs.fresh(dir).and_then(|l| l.get(name).and_then(|e| e.mode));
        if current == Some(mode & 0o7777) {
            return;
        }
        match self.remote.chmod(path, mode) {
            Ok(()) => {
                if let Ok(mut e) = self.find(dir, name) {
                    e.mode = Some(mode & 0o7777);
                    self.dirs.upsert(dir, e);
                }
            }
            Err(RemoteError::Unsupported(_)) => {}
            Err(e) => tracing::debug!("{path}: permission change not applied: {e}"),
        }
    }
}
