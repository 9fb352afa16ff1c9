//! Names and attributes: `lookup`, `getattr`, `readlink`, `readdir`, and the close-to-open
//! check an `open` makes (`revalidate`). Answers from cached listings; asks the server when a
//! listing is missing or too old.

use super::*;

/// The inode plain `readdir` shows for an entry the kernel holds no node of (as libfuse does).
pub const UNKNOWN_INO: u64 = 0xffff_ffff;

/// A directory's entries as one open handle reads them: fixed at its first read (offset 0; a
/// rewind reads anew), so the offsets the kernel hands back stay valid while the listing
/// changes, and each `readdir` call costs only the entries it returns.
pub struct DirSnapshot {
    ino: u64,
    dir: String,
    listing: Arc<Listing>,
    /// Files being written here that the server does not list yet.
    pending: Vec<Entry>,
}

impl DirSnapshot {
    /// How many entries the handle reads: the listed ones and the pending ones.
    pub fn len(&self) -> usize {
        self.listing.entries().len() + self.pending.len()
    }

    /// Whether the handle reads no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, i: usize) -> Option<&Entry> {
        let listed = self.listing.entries().len();
        if i < listed { self.listing.entries().get(i) } else { self.pending.get(i - listed) }
    }
}

impl Fs {
    pub(super) fn attr_of(&self, ino: u64, path: &str, e: &Entry) -> Attr {
        let (kind, default_perm) = match e.kind {
            Kind::Dir => (FileKind::Dir, 0o755),
            Kind::Symlink(_) => (FileKind::Symlink, 0o777),
            Kind::File | Kind::Other => (FileKind::File, 0o644),
        };
        let mut perm = e.mode.map(|m| (m & 0o7777) as u16).unwrap_or(default_perm);
        if self.config.read_only {
            perm &= !0o222;
        }
        let mut size = e.size;
        let mut mtime = e.mtime.map(|t| self.exact_time(path, t)).unwrap_or(self.mounted_at);
        let writing = self.writing.lock().get(path).cloned();
        if let Some(shown) = writing.map(|w| w.shown()) {
            size = shown.size;
            if let Some(t) = shown.mtime {
                mtime = t;
            }
            if let Some(m) = shown.mode {
                perm = (m & 0o7777) as u16;
            }
        }
        let (mtime, ctime) = self.local_times(path, mtime);
        let nlink = if kind == FileKind::Dir { self.dir_nlink(path) } else { 1 };
        Attr { ino, kind, size, mtime, ctime, perm, nlink, uid: self.config.uid, gid: self.config.gid }
    }

    /// The time we set on `path`, if the listed time agrees with it at the listing's precision.
    pub(super) fn exact_time(&self, path: &str, listed: SystemTime) -> SystemTime {
        let set = self.set_times.lock();
        let Some(&ours) = set.get(path) else { return listed };
        let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let (l, o) = (secs(listed), secs(ours));
        if l == o || l == o - o % 60 || l == o - o % 86_400 { ours } else { listed }
    }

    pub(super) fn root_attr(&self) -> Attr {
        let (mtime, ctime) = self.local_times("", self.mounted_at);
        Attr {
            ino: ROOT,
            kind: FileKind::Dir,
            size: 0,
            mtime,
            ctime,
            nlink: self.dir_nlink(""),
            perm: if self.config.read_only { 0o555 } else { 0o755 },
            uid: self.config.uid,
            gid: self.config.gid,
        }
    }

    /// A file being written that the server does not list yet.
    pub(super) fn pending_entry(&self, path: &str) -> Option<Entry> {
        self.writing.lock().contains_key(path).then(|| Entry {
            name: split(path).1.to_string(),
            kind: Kind::File,
            size: 0,
            mtime: Some(SystemTime::now()),
            mode: None,
        })
    }

    /// The entry `name` in directory `dir`, from the listing or from files being written;
    /// on a server that folds case, also an entry whose name folds to `name`.
    pub(super) fn find(&self, dir: &str, name: &str) -> Result<Entry> {
        let listing = self.listing(dir)?;
        if let Some(e) = listing.get(name) {
            return Ok(e.clone());
        }
        // Before files being written: one opened as `myfile.txt` may be `MyFile.txt`.
        if self.config.case.folded_lookups() {
            if let Some(e) = self.folded_match(dir, &listing, name) {
                return Ok(e);
            }
        }
        if let Some(e) = self.pending_entry(&join(dir, name)) {
            return Ok(e);
        }
        if listing.complete {
            return Err(FsError::NotFound);
        }
        // A listing the server cut short: a name not in it may still exist.
        match self.remote.lookup(&join(dir, name)) {
            Ok(Some(e)) => {
                // Kept with the listing: the next lookup of it costs nothing.
                self.dirs.upsert(dir, e.clone());
                Ok(e)
            }
            Ok(None) => Err(FsError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// `path` (of an entry found as `entry`) spelled as the server lists it: after a folded
    /// lookup the kernel's name differs, and handles, caches and times must use one name.
    pub(super) fn listed_path(path: &str, entry: &Entry) -> String {
        let (dir, name) = split(path);
        if name == entry.name { path.to_string() } else { join(dir, &entry.name) }
    }

    /// Like `find`, but only the exact name.
    pub(super) fn find_exact(&self, dir: &str, name: &str) -> Option<Entry> {
        let listing = self.listing(dir).ok()?;
        listing.get(name).cloned().or_else(|| self.pending_entry(&join(dir, name)))
    }

    /// Finds `name` in directory `parent`; a found entry counts as a kernel reference.
    pub fn lookup(&self, parent: u64, name: &str) -> Result<Attr> {
        check_name_length(name)?;
        let dir = self.path(parent)?;
        let entry = match self.find(&dir, name) {
            // Made on the server since the directory was listed? (See `watch`.)
            Err(FsError::NotFound) if self.relist_for_lookup(parent, &dir) => self.find(&dir, name)?,
            found => found?,
        };
        let ino = self.inodes.lock().get_or_insert(parent, name, true);
        Ok(self.tell(self.attr_of(ino, &join(&dir, name), &entry)))
    }

    /// `forget`: the kernel dropped `n` references to `ino`; at none, its number is freed (and
    /// may name another file later). Nothing is sent to the server.
    pub fn forget(&self, ino: u64, n: u64) {
        if self.inodes.lock().forget(ino, n) {
            // The number may name another file from now on.
            self.untell(ino);
            self.watch.forgotten(ino);
        }
    }

    /// The entry of `ino` from its parent's listing (refreshed when stale).
    pub(super) fn entry(&self, ino: u64) -> Result<(String, Entry)> {
        let path = self.path(ino)?;
        let (dir, name) = split(&path);
        let entry = self.find(dir, name)?;
        Ok((Self::listed_path(&path, &entry), entry))
    }

    /// `getattr`: the attributes from the parent's cached listing; the server is asked (a
    /// listing, or the one name where the listing was cut short) only when that is stale.
    pub fn getattr(&self, ino: u64) -> Result<Attr> {
        if ino == ROOT {
            return Ok(self.root_attr());
        }
        let (path, entry) = self.entry(ino)?;
        Ok(self.tell(self.attr_of(ino, &path, &entry)))
    }

    /// `readlink`: the target the listing showed for a symbolic link; the server is asked only
    /// as for `getattr`.
    pub fn readlink(&self, ino: u64) -> Result<String> {
        match self.entry(ino)?.1.kind {
            Kind::Symlink(Some(target)) => Ok(target),
            Kind::Symlink(None) => Err(FsError::Unsupported("the server does not show this link's target")),
            _ => Err(FsError::Invalid("not a symbolic link".into())),
        }
    }

    /// The entries an open directory hands out, fixed when it is read from the start (see
    /// [`DirSnapshot`]); later reads of the same handle use them.
    pub fn read_dir(&self, fh: u64, ino: u64, offset: u64) -> Result<Arc<DirSnapshot>> {
        if offset > 0 {
            if let Some(snap) = self.open_dirs.lock().get(&fh) {
                return Ok(snap.clone());
            }
        }
        let snap = Arc::new(self.snapshot_dir(ino)?);
        self.open_dirs.lock().insert(fh, snap.clone());
        Ok(snap)
    }

    fn snapshot_dir(&self, ino: u64) -> Result<DirSnapshot> {
        let dir = self.path(ino)?;
        if ino != ROOT && self.listed_dir_attr(ino)?.kind != FileKind::Dir {
            return Err(FsError::NotDir);
        }
        let asked = self.clock.now();
        let listing = self.listing(&dir).map_err(|e| self.not_listed(&dir, e))?;
        self.watch.listed(ino, self.clock.now(), listing.fetched() >= asked);
        let pending: Vec<Entry> = {
            let writing = self.writing.lock();
            writing
                .keys()
                .filter(|p| split(p).0 == dir && listing.get(split(p).1).is_none())
                .map(|p| Entry { name: split(p).1.to_string(), kind: Kind::File, size: 0, mtime: None, mode: None })
                .collect()
        };
        if let Some(p) = &self.prefetch {
            p.dir_read(&dir, &listing);
        }
        Ok(DirSnapshot { ino, dir, listing, pending })
    }

    /// Entry `i` of an open directory with its attributes, or `None` past the end. With
    /// `plus` (readdirplus) the entry's node counts one kernel reference at once, so a
    /// concurrent `forget` cannot free it while the entry is on its way; a caller that could
    /// not hand the entry over gives the reference back with `forget(ino, 1)`. Plain readdir
    /// makes no node (the kernel keeps nothing of it): a known entry shows its inode, others
    /// [`UNKNOWN_INO`].
    pub fn dir_entry(&self, snap: &DirSnapshot, i: usize, plus: bool) -> Option<DirEntry> {
        let e = snap.get(i)?;
        let child = match plus {
            true => self.inodes.lock().get_or_insert(snap.ino, &e.name, true),
            false => self.inodes.lock().find(snap.ino, &e.name).unwrap_or(UNKNOWN_INO),
        };
        let attr = self.attr_of(child, &join(&snap.dir, &e.name), e);
        let attr = if plus { self.tell(attr) } else { attr };
        Some(DirEntry { ino: child, name: e.name.clone(), attr })
    }

    /// All entries of a directory, as a first `readdir` sees them.
    #[cfg(test)]
    pub fn readdir(&self, ino: u64, plus: bool) -> Result<Vec<DirEntry>> {
        let snap = self.snapshot_dir(ino)?;
        Ok((0..snap.len()).filter_map(|i| self.dir_entry(&snap, i, plus)).collect())
    }

    /// The attributes of a directory being listed (`readdir`, and readdirplus's `.`).
    pub fn listed_dir_attr(&self, ino: u64) -> Result<Attr> {
        self.getattr(ino).map_err(|e| self.not_listed(&self.path(ino).unwrap_or_default(), e))
    }

    /// Never ENOENT while listing a directory: the C library takes it from getdents for the
    /// end of a directory removed meanwhile, and `ls` would show a directory it could not list
    /// as empty. That holds for the look at the parent's listing too (the fault matrix saw a
    /// refused `CWD` into the parent, while readdirplus asked for the directory's own
    /// attributes, turn a directory of 20 files into an empty one).
    pub(super) fn not_listed(&self, dir: &str, e: FsError) -> FsError {
        match e {
            FsError::Remote(RemoteError::NotFound(why)) => {
                self.dirs.invalidate(split(dir).0);
                FsError::Remote(RemoteError::Protocol(format!("{why} (the directory could not be listed)")))
            }
            FsError::NotFound => {
                self.dirs.invalidate(split(dir).0);
                FsError::Remote(RemoteError::Protocol(format!("/{dir} could not be found on the server")))
            }
            e => e,
        }
    }

    /// Close-to-open consistency: the size and time of a file being opened for reading, from
    /// its parent's listing if that is younger than [`OPEN_FRESHNESS`] (or when the caller
    /// knows them as freshly: `just_fetched`, all of the file downloaded as listed by a
    /// transfer begun since), else asked of the server with one cheap command (the listing is
    /// corrected). When they differ from what the kernel was last given, the kernel drops its
    /// cached attributes and pages.
    pub(super) fn revalidate(&self, ino: u64, path: &str, mut entry: Entry, just_fetched: bool) -> Result<Attr> {
        let (dir, name) = split(path);
        let ours = self.writing.lock().contains_key(path);
        let young = self
            .dirs
            .peek(dir)
            .is_some_and(|l| self.clock.now().saturating_duration_since(l.fetched()) < OPEN_FRESHNESS);
        if !ours && !young && !just_fetched {
            match self.remote.stat(path) {
                Ok(Some((size, mtime))) => {
                    let mtime = mtime.or(entry.mtime);
                    if size != entry.size || mtime != entry.mtime {
                        tracing::debug!("{path}: changed on the server ({} -> {size} bytes)", entry.size);
                        entry.size = size;
                        entry.mtime = mtime;
                        self.dirs.upsert(dir, entry.clone());
                    }
                }
                Ok(None) => {
                    self.dirs.remove_entry(dir, name);
                    self.forget_content(path);
                    self.notify(Invalidate::Inode(ino));
                    return Err(FsError::NotFound);
                }
                // The server cannot tell: the listing stays the answer.
                Err(RemoteError::Unsupported(e)) => tracing::trace!("{e}"),
                Err(e) => return Err(e.into()),
            }
        }
        let attr = self.attr_of(ino, path, &entry);
        self.told_changed(&attr);
        Ok(attr)
    }

    /// Records `attr` as the kernel's, telling the kernel to drop what it had if it differs.
    pub(super) fn told_changed(&self, attr: &Attr) {
        let before = self.told.lock().insert(attr.ino, (attr.size, attr.mtime));
        if before.is_some_and(|t| t != (attr.size, attr.mtime)) {
            self.notify(Invalidate::Inode(attr.ino));
        }
    }
}
