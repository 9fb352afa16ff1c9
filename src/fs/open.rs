//! Open files: the handle table and `open`, `create`, `read`, `write`, `flush`, `fsync` and
//! `release`. Reads stream from the server (or the content cache); writes stream to the
//! server or go to the spool, and are put on the server at `close`/`fsync` — with
//! `--write-back`, `release` queues the upload instead.

use super::*;

impl Fs {
    pub(super) fn add_handle(&self, handle: Handle) -> u64 {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(fh, handle);
        fh
    }

    pub(super) fn write_handle(&self, path: String, existed: bool, size: u64, mode: OpenMode) -> u64 {
        self.forget_content(&path);
        let read_write = mode.read && mode.write;
        let write_back = self.write_back.is_some();
        let temp_refused = (!existed && !write_back).then(|| self.temp_refused.clone());
        let options =
            WriteOptions { size, truncate: mode.truncate, read_write, opener: mode.pid, write_back, temp_refused };
        let handle = Arc::new(WriteHandle::new(path.clone(), options));
        self.writing.lock().insert(path, handle.clone());
        self.add_handle(Handle::Write(handle))
    }

    /// `open`: a file opened for reading has its size and time checked with the server
    /// (close-to-open, unless just listed or fetched; the download starts at the first read);
    /// one opened for writing gets a write handle, and nothing is uploaded before the first
    /// write or the close.
    pub fn open(&self, ino: u64, mode: OpenMode) -> Result<u64> {
        let path = self.path(ino)?;
        if let Some(queued) = self.queued(&path) {
            if !(mode.write || mode.truncate) {
                return Ok(self.add_handle(Handle::ReadQueued(queued)));
            }
            // A writer starts from the uploaded content, and its upload comes after.
            self.settle(&path)?;
        }
        let (path, entry) = match self.entry(ino) {
            // The kernel still knows a name the server does not have (a new file whose upload
            // failed, or one deleted elsewhere): opened to be truncated, it is written anew.
            Err(FsError::NotFound) if mode.write && mode.truncate => {
                self.check_writable()?;
                return Ok(self.write_handle(path, false, 0, mode));
            }
            found => found?,
        };
        match entry.kind {
            Kind::Dir => return Err(FsError::IsDir),
            Kind::Other => return Err(FsError::Unsupported("devices, sockets and pipes cannot be opened over FTP")),
            _ => {}
        }
        if mode.write || mode.truncate {
            self.check_writable()?;
            // Kept content (O_RDWR, O_APPEND) starts from what the server has now.
            let size = if mode.truncate {
                self.attr_of(ino, &path, &entry).size
            } else {
                self.revalidate(ino, &path, entry, false)?.size
            };
            return Ok(self.write_handle(path, true, size, mode));
        }
        // A reader walking the directory: its download, if under way, is waited for first.
        let fetched = self.walk_opened(&path);
        // Close-to-open: the size and time are checked with the server (or a listing younger
        // than a second, or a download of all of it begun less than a second ago); just
        // uploaded, the writer knows them.
        let listed = self.server_mtime(&path).map(|t| Version::of(entry.size, t));
        let just_fetched = fetched.zip(listed).is_some_and(|(f, v)| f.confirms(v, self.clock.now(), OPEN_FRESHNESS));
        let attr = match self.revalidate(ino, &path, entry, just_fetched) {
            Ok(a) => a,
            Err(e) => {
                if let Some(p) = &self.files_ahead {
                    p.served(fetched, false);
                    p.reader_closed(&path);
                }
                return Err(e);
            }
        };
        let (size, mtime) = (attr.size, self.server_mtime(&path));
        let cached = self.content.as_ref().zip(mtime).and_then(|(c, t)| c.open_file(&path, Version::of(size, t)));
        if let Some(p) = &self.files_ahead {
            p.served(fetched, cached.as_ref().is_some_and(|c| c.complete()));
        }
        let handle = ReadHandle::new(path.clone(), size, cached);
        let parked = self.parked.lock().remove(&path);
        match parked {
            Some(p) if p.size == size && p.mtime == mtime => handle.adopt(p),
            Some(other) => other.end(),
            None => {}
        }
        Ok(self.add_handle(Handle::Read(Arc::new(handle), ino)))
    }

    /// Tells the prefetch that `path` is opened for reading (see [`prefetch_files`]).
    pub(super) fn walk_opened(&self, path: &str) -> Option<prefetch_files::Fetched> {
        let p = self.files_ahead.as_ref()?;
        p.reader_opened(path);
        let (dir, name) = split(path);
        let listing = self.dirs.peek(dir)?;
        p.opened(dir, name, &listing, self)
    }

    /// The modification time the server's listing shows for `path` (not this mount's local
    /// view of it): what the content cache checks versions by.
    pub(super) fn server_mtime(&self, path: &str) -> Option<SystemTime> {
        let (dir, name) = split(path);
        self.dirs.peek(dir).and_then(|l| l.get(name).and_then(|e| e.mtime))
    }

    /// Creates `name` in `parent` and opens it for writing. The file appears on the server
    /// when it is first flushed or closed.
    pub fn create(&self, parent: u64, name: &str, mode: OpenMode, exclusive: bool) -> Result<(Attr, u64)> {
        self.check_writable()?;
        self.check_name(name)?;
        let dir = self.path(parent)?;
        trash::refuse(&dir, name)?;
        let path = join(&dir, name);
        let existing = self.find(&dir, name).ok();
        if let Some(e) = &existing {
            if exclusive {
                return Err(FsError::Remote(RemoteError::AlreadyExists(format!("{path} exists"))));
            }
            if e.kind == Kind::Dir {
                return Err(FsError::IsDir);
            }
        }
        if existing.is_some() && !mode.truncate {
            // The kernel took the name for free, but the file is there (a lookup failed, or
            // another client made it): O_CREAT without O_TRUNC opens it as it is.
            let ino = self.inodes.lock().get_or_insert(parent, name, true);
            let fh = self.open(ino, OpenMode { write: true, ..mode })?;
            return Ok((self.getattr(ino)?, fh));
        }
        if existing.is_none() {
            self.check_case(&dir, name, None)?;
        }
        let existed = existing.is_some();
        let fh = self.write_handle(path.clone(), existed, 0, OpenMode { truncate: true, write: true, ..mode });
        // The mode asked for applies to a new file, after its upload (SITE CHMOD).
        if let Some(m) = mode.create_mode.map(|m| m & 0o7777).filter(|&m| !existed && m != DEFAULT_FILE_MODE) {
            self.set_pending(&path, |st| st.pending_mode = Some(m));
        }
        if !existed {
            self.changed(&dir, true);
        }
        let ino = self.inodes.lock().get_or_insert(parent, name, true);
        let entry =
            Entry { name: name.to_string(), kind: Kind::File, size: 0, mtime: Some(SystemTime::now()), mode: None };
        Ok((self.tell(self.attr_of(ino, &path, &entry)), fh))
    }

    /// `read`: from the content cache, or the download kept open for this handle (started or
    /// restarted with `REST` + `RETR` as needed); a file being written is read from its spool.
    pub fn read(&self, fh: u64, offset: u64, len: usize) -> Result<read::Bytes> {
        match self.handle(fh)? {
            Handle::Read(h, ino) => self.read_checked(&h, ino, offset, len),
            Handle::Write(h) | Handle::ReadQueued(h) => {
                Ok(h.read_spooled(self.remote.as_ref(), &self.spool, offset, len)?.into())
            }
        }
    }

    /// `write`: into the upload under way (sequential writes from offset 0 stream to the server)
    /// or into the local spool, uploaded at close. With write-back a full spool waits for
    /// queued uploads to free space.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<usize> {
        match self.handle(fh)? {
            Handle::Write(h) => {
                if offset.saturating_add(data.len() as u64) > MAX_FILE_SIZE {
                    return Err(too_big(offset.saturating_add(data.len() as u64)));
                }
                let started = Instant::now();
                *h.closed_at.lock() = None;
                loop {
                    match h.write(self.remote.as_ref(), &self.spool, offset, data) {
                        Ok(()) => return Ok(data.len()),
                        // Write-back: queued uploads free the space, unless they are stuck.
                        Err(RemoteError::NoSpace(_))
                            if started.elapsed() < SPOOL_WAIT && self.wait_for_spool_space() => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Handle::Read(..) | Handle::ReadQueued(_) => Err(FsError::BadHandle),
        }
    }

    pub(super) fn handle(&self, fh: u64) -> Result<Handle> {
        self.handles.lock().get(&fh).cloned().ok_or(FsError::BadHandle)
    }

    /// `close`: puts a file's changes on the server so errors reach the application; a close
    /// by another process (a child's inherited descriptor) waits for the release instead.
    pub fn flush(&self, fh: u64, pid: u32) -> Result<()> {
        match self.handle(fh)? {
            // Write-back: the content is safe in the spool once its journal entry is written.
            Handle::Write(h) if h.opener == pid && self.write_back.is_some() => {
                h.persist(&self.spool)?;
                *h.closed_at.lock() = Some(Instant::now());
                Ok(())
            }
            Handle::Write(h) if h.opener == pid => self.commit(&h),
            // What was read is in the content cache when `close` returns.
            Handle::Read(h, _) => {
                h.settle();
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// `fsync`: returns once the data is on the server.
    pub fn fsync(&self, fh: u64) -> Result<()> {
        match self.handle(fh)? {
            Handle::Write(h) => self.commit(&h),
            Handle::ReadQueued(h) => self.settle(&h.path()),
            Handle::Read(..) => Ok(()),
        }
    }

    pub(super) fn commit(&self, h: &WriteHandle) -> Result<()> {
        let path = h.path();
        let _busy = self.watch.busy(&[split(&path).0]);
        let keep = |file: &std::fs::File, size: u64| {
            if let Some(c) = &self.content {
                c.keep_upload(&path, file, size);
            }
        };
        let result = h.commit(self.remote.as_ref(), &keep);
        match result {
            Ok(Some(size)) => {
                let (mode, pending, placed_mode, placed_mtime) = {
                    let mut st = h.state.lock();
                    (st.pending_mode.take(), st.pending_mtime.take(), st.placed_mode.take(), st.placed_mtime.take())
                };
                if let Some(mode) = mode {
                    self.apply_mode(&path, mode);
                }
                if let Some(t) = placed_mtime {
                    self.set_times.lock().insert(path.to_string(), t);
                }
                // Without a time asked for, the server's is about now; the next listing has
                // it exactly (asking costs a round trip per file).
                let mtime = match pending {
                    Some(t) => self.apply_mtime(&path, t).map(|()| Some(t)),
                    None => Ok(placed_mtime),
                };
                if let (Some(c), Ok(Some(t))) = (&self.content, &mtime) {
                    c.uploaded_time(&path, *t);
                }
                let mtime = mtime.unwrap_or_else(|e| {
                    tracing::warn!("{path}: {e}");
                    None
                });
                let (dir, name) = split(&path);
                let mode = placed_mode
                    .map(|m| m & 0o7777)
                    .or_else(|| self.dirs.fresh(dir).and_then(|l| l.get(name).and_then(|e| e.mode)));
                let mtime = mtime.or(Some(SystemTime::now()));
                self.dirs.upsert(dir, Entry { name: name.to_string(), kind: Kind::File, size, mtime, mode });
                Ok(())
            }
            Ok(None) => {
                let pending = h.state.lock().pending_mtime.take();
                // A file deleted while open has no time to set: its content went nowhere.
                match pending {
                    Some(t) if !h.gone.load(Ordering::Relaxed) => self.apply_mtime(&path, t),
                    _ => Ok(()),
                }
            }
            Err(e) => {
                tracing::error!("{e}");
                self.forget_content(&path);
                // What the server has now is what a fresh listing shows.
                self.dirs.invalidate(split(&path).0);
                Err(e.into())
            }
        }
    }

    /// `release` (the last close): a written file is uploaded now if `flush` did not already, or
    /// queued with write-back; a read download still open may be parked for the next open.
    /// Failures are only logged: nobody is left to tell.
    pub fn release(&self, fh: u64) {
        let handle = {
            let mut handles = self.handles.lock();
            let handle = handles.remove(&fh);
            // Counted before the handle leaves `handles`, so `status`/`sync` never see a
            // closed write-back file neither open nor queued (see `transfers`).
            if matches!(handle, Some(Handle::Write(_))) {
                self.releasing.fetch_add(1, Ordering::SeqCst);
            }
            handle
        };
        struct Released<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Released<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _released = matches!(handle, Some(Handle::Write(_))).then(|| Released(&self.releasing));
        if let Some(Handle::Read(r, _)) = &handle {
            if let Some(p) = &self.files_ahead {
                p.reader_closed(&r.path);
            }
            if let Some(p) = r.park(self.server_mtime(&r.path)) {
                let old = self.parked.lock().insert(r.path.clone(), p);
                if let Some(old) = old {
                    old.end();
                }
            }
        }
        let Some(Handle::Write(h)) = handle else { return };
        let path = h.path();
        let registered = self.writing.lock().get(&path).is_some_and(|w| Arc::ptr_eq(w, &h));
        if self.write_back.is_some() && registered && h.state.lock().dirty {
            match h.persist(&self.spool) {
                Ok(()) => return self.queue_upload(h),
                Err(e) => tracing::error!("closing {path}: the changes could not be kept for upload: {e}"),
            }
        } else if let Err(e) = self.commit(&h) {
            tracing::error!("closing {path}: the changes could not be saved: {e}");
        }
        let mut writing = self.writing.lock();
        if writing.get(&path).is_some_and(|w| Arc::ptr_eq(w, &h)) {
            writing.remove(&path);
        }
    }

    /// A read, with the transfer's word on the size: more bytes than the size shown (the
    /// file grew) correct the size; fewer (after one restart) are the end only if the
    /// server now says so, else an error, never a silently short file.
    pub(super) fn read_checked(&self, h: &ReadHandle, ino: u64, offset: u64, len: usize) -> Result<read::Bytes> {
        let size = h.size();
        let expected = if offset >= size { 0 } else { len.min((size - offset) as usize) };
        let mut data = h.read(self.remote.as_ref(), offset, len)?;
        if let Some(p) = &self.files_ahead {
            // Read whole, to the end: a step of a walk through the directory.
            let end = offset + data.len() as u64;
            if end >= size && !data.is_empty() && h.delivered.load(Ordering::Relaxed) >= size {
                let (dir, name) = split(&h.path);
                if let Some(listing) = self.dirs.peek(dir) {
                    p.read_to_end(dir, name, &listing, self);
                }
            }
        }
        if h.take_grown() {
            let end = h.size();
            let now = match self.remote.stat(&h.path) {
                Ok(Some((n, mtime))) => Some((n.max(end), mtime)),
                _ => None,
            };
            let (n, mtime) = now.unwrap_or((end, None));
            tracing::debug!("{}: grew on the server ({size} -> {n} bytes)", h.path);
            h.set_size(n);
            self.corrected(ino, &h.path, n, mtime, true);
        } else if data.len() < expected {
            let end = offset + data.len() as u64;
            match self.remote.stat(&h.path) {
                Ok(Some((n, mtime))) if n < size => {
                    tracing::debug!("{}: shrank on the server ({size} -> {n} bytes)", h.path);
                    h.set_size(n);
                    data.truncate(n.saturating_sub(offset) as usize);
                    self.corrected(ino, &h.path, n, mtime, false);
                }
                Ok(None) => return Err(FsError::NotFound),
                _ => {
                    return Err(FsError::Remote(RemoteError::Connection(format!(
                        "reading {}: the transfer ended at byte {end}, but the file has {size} bytes; \
                         the data connection may have been cut. Read the file again",
                        shown(&h.path)
                    ))));
                }
            }
        }
        Ok(data)
    }

    /// The server's file has another size than shown: the listing learns it, and the kernel
    /// too. A file that grew: its attributes are dropped (only those: this runs inside a
    /// read, whose page the kernel holds locked), so the kernel asks for the new size when it
    /// reads past the old one. A file that shrank: the short read itself sets the kernel's
    /// size, but only if no notification came in between (it would then keep the old size
    /// and pad with zeros); its old time is kept as told, so the next `open` corrects it.
    pub(super) fn corrected(&self, ino: u64, path: &str, size: u64, mtime: Option<SystemTime>, grew: bool) {
        self.forget_content(path);
        let (dir, name) = split(path);
        if let Some(mut e) = self.dirs.peek(dir).and_then(|l| l.get(name).cloned()) {
            e.size = size;
            e.mtime = mtime.or(e.mtime);
            self.dirs.upsert(dir, e);
        }
        if grew {
            self.told.lock().remove(&ino);
            self.notify(Invalidate::Attr(ino));
        } else if let Some(t) = self.told.lock().get_mut(&ino) {
            t.0 = size;
        }
    }

    /// Frees sessions held by streams nobody reads; the janitor calls this often.
    pub fn close_idle_streams(&self) {
        let idle = if self.remote.sessions_wanted() { Duration::from_millis(50) } else { read::IDLE_CLOSE };
        let handles: Vec<Arc<ReadHandle>> = self
            .handles
            .lock()
            .values()
            .filter_map(|h| match h {
                Handle::Read(r, _) => Some(r.clone()),
                Handle::Write(_) | Handle::ReadQueued(_) => None,
            })
            .collect();
        for h in handles {
            h.close_if_idle(idle);
        }
        let mut parked = self.parked.lock();
        let done: Vec<String> = parked.iter().filter(|(_, p)| p.idle_for() >= idle).map(|(k, _)| k.clone()).collect();
        let ended: Vec<read::Parked> = done.iter().filter_map(|k| parked.remove(k)).collect();
        drop(parked);
        for p in ended {
            p.end();
        }
        if let Some(c) = &self.content {
            c.flush_if_due();
        }
        if let Some(p) = &self.files_ahead {
            p.tick();
        }
    }

    /// Ends what readers left open and saves what the content cache holds (at unmount).
    pub fn close_reads(&self) {
        if let Some(p) = &self.files_ahead {
            p.stop();
        }
        let parked: Vec<read::Parked> = self.parked.lock().drain().map(|(_, p)| p).collect();
        for p in parked {
            p.end();
        }
        if let Some(c) = &self.content {
            c.flush();
        }
    }

    /// Uploads every file with pending changes (at unmount). Returns how many failed.
    pub fn flush_all(&self) -> usize {
        // Queued write-back uploads are the queue's (see `finish_write_back`).
        let pending: Vec<Arc<WriteHandle>> =
            self.writing.lock().values().filter(|h| !h.released.load(Ordering::Relaxed)).cloned().collect();
        pending.iter().filter(|h| self.commit(h).is_err()).count()
    }
}

impl prefetch_files::View for Fs {
    fn cached_listing(&self, dir: &str) -> Option<Arc<Listing>> {
        self.dirs.peek(dir)
    }

    fn busy(&self, path: &str) -> bool {
        self.writing.lock().contains_key(path)
    }
}
