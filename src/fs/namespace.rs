//! Changing names: `mkdir`, `unlink`, `rmdir`, `rename` (and `symlink`, refused).
//!
//! A write handle's locks and `Fs::writing` are taken in this order: its `job`, then its
//! `state`, then `Fs::writing` (as `rename_pending` does; it renames on the server while
//! holding the first two, so an upload of that file waits for the rename).

use super::*;

impl Fs {
    /// New names that cannot be sent in an FTP command, or that the server's charset cannot
    /// hold, are refused before any command is built.
    pub(super) fn check_name(&self, name: &str) -> Result<()> {
        check_name_length(name)?;
        if name.contains(['\r', '\n', '\0']) || name.contains('/') {
            return Err(FsError::Invalid(format!(
                "{name:?} contains a character FTP cannot carry (CR, LF, NUL or '/')"
            )));
        }
        match self.remote.refuses_name(name) {
            Some(why) => Err(FsError::Unrepresentable(why)),
            None => Ok(()),
        }
    }

    /// Symbolic links cannot be made over FTP (EPERM); an overlong name is still ENAMETOOLONG.
    pub fn symlink(&self, _parent: u64, name: &str) -> Result<Attr> {
        check_name_length(name)?;
        Err(FsError::NotPermitted("FTP cannot create symbolic links"))
    }

    /// `mkdir` with the server's usual mode: one `MKD` (see [`Fs::mkdir_with_mode`]).
    pub fn mkdir(&self, parent: u64, name: &str) -> Result<Attr> {
        self.mkdir_with_mode(parent, name, None)
    }

    /// `mkdir` with the permission bits asked for (umask applied), set with SITE CHMOD
    /// where they differ from the server's usual 0755.
    pub fn mkdir_with_mode(&self, parent: u64, name: &str, mode: Option<u32>) -> Result<Attr> {
        self.check_writable()?;
        self.check_name(name)?;
        let dir = self.path(parent)?;
        let _busy = self.watch.busy(&[&dir]);
        if self.find(&dir, name).is_ok() {
            return Err(FsError::Remote(RemoteError::AlreadyExists(format!("{} exists", join(&dir, name)))));
        }
        trash::refuse(&dir, name)?;
        self.check_case(&dir, name, None)?;
        let path = join(&dir, name);
        self.remote.mkdir(&path).map_err(|e| self.unsure(&[&dir], e))?;
        let mut entry =
            Entry { name: name.to_string(), kind: Kind::Dir, size: 0, mtime: Some(SystemTime::now()), mode: None };
        self.dirs.upsert(&dir, entry.clone());
        self.changed(&dir, true);
        if let Some(m) = mode.map(|m| m & 0o7777).filter(|&m| m != DEFAULT_DIR_MODE) {
            self.apply_mode(&path, m);
            entry = self.dirs.peek(&dir).and_then(|l| l.get(name).cloned()).unwrap_or(entry);
        }
        // A new directory is empty: no need to ask.
        self.dirs.insert_empty(&path);
        let ino = self.inodes.lock().get_or_insert(parent, name, true);
        Ok(self.attr_of(ino, &path, &entry))
    }

    /// `unlink`: `DELE` at once (of a listed file). A file still being written is dropped with it: its changes are
    /// never uploaded, and a partial temporary upload is deleted too.
    pub fn unlink(&self, parent: u64, name: &str) -> Result<()> {
        self.check_writable()?;
        let dir = self.path(parent)?;
        let _busy = self.watch.busy(&[&dir]);
        let entry = self.find(&dir, name)?;
        if entry.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        let path = Self::listed_path(&join(&dir, name), &entry);
        let pending = self.writing.lock().get(&path).cloned();
        if let Some(h) = pending {
            // Changes not uploaded never will be (not at close either). A write-back upload in
            // progress finishes first, and then the file is listed like any other.
            let _running = h.released.load(Ordering::Relaxed).then(|| h.job.lock());
            if let Some(partial) = h.discard() {
                let _ = self.remote.delete(&partial);
            }
            let mut writing = self.writing.lock();
            if writing.get(&path).is_some_and(|w| Arc::ptr_eq(w, &h)) {
                writing.remove(&path);
            }
        }
        if self.listing(&dir)?.get(&entry.name).is_some() {
            self.remote.delete(&path).map_err(|e| self.unsure(&[&dir], e))?;
        }
        // The listed name, which differs from `name` after a folded lookup.
        self.dirs.remove_entry(&dir, &entry.name);
        self.forget_content(&path);
        self.set_times.lock().remove(&path);
        self.changed(&dir, true);
        self.inodes.lock().detach(parent, name);
        Ok(())
    }

    /// `rmdir`: lists the directory again (someone may have added files), then `RMD` if it is
    /// empty; refused while files are being written under it.
    pub fn rmdir(&self, parent: u64, name: &str) -> Result<()> {
        self.check_writable()?;
        let dir = self.path(parent)?;
        let _busy = self.watch.busy(&[&dir]);
        let entry = self.find(&dir, name)?;
        if entry.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        let path = Self::listed_path(&join(&dir, name), &entry);
        let prefix = format!("{path}/");
        if self.writing.lock().keys().any(|p| p.starts_with(&prefix)) {
            return Err(FsError::Remote(RemoteError::NotEmpty(format!("{path} holds files being written"))));
        }
        // Ask the server, not the cache: someone may have added files.
        self.dirs.invalidate(&path);
        match self.listing(&path) {
            Ok(listing) if !listing.entries().is_empty() => {
                return Err(FsError::Remote(RemoteError::NotEmpty(format!("{path} is not empty"))));
            }
            Ok(_) => {}
            // One that cannot be entered (no x bit) may still be removed: the server decides.
            Err(FsError::Remote(RemoteError::NotFound(_) | RemoteError::PermissionDenied(_))) => {}
            Err(e) => return Err(e),
        }
        self.remote.rmdir(&path).map_err(|e| self.unsure(&[&dir], e))?;
        self.forget_content_under(&path);
        self.dirs.remove_entry(&dir, &entry.name);
        self.dirs.invalidate_tree(&path);
        self.changed(&dir, true);
        self.inodes.lock().detach(parent, name);
        Ok(())
    }

    /// POSIX rename: replaces an existing file (or empty directory) at the destination.
    pub fn rename(&self, parent: u64, name: &str, new_parent: u64, new_name: &str, no_replace: bool) -> Result<()> {
        self.check_writable()?;
        self.check_name(new_name)?;
        let (dir, new_dir) = (self.path(parent)?, self.path(new_parent)?);
        trash::refuse(&new_dir, new_name)?;
        let _busy = self.watch.busy(&[&dir, &new_dir]);
        let entry = self.find(&dir, name)?;
        let (from, to) = (Self::listed_path(&join(&dir, name), &entry), join(&new_dir, new_name));
        if from == to {
            return Ok(());
        }
        if self.config.case.server_folds && self.folds_into(&to, &from) {
            // `mv photos Photos` where a folded lookup made `Photos` look like another
            // directory: mv would move photos into itself, which breaks some servers.
            return Err(FsError::Invalid(format!(
                "{} would move into itself on this server (it folds case); for a case-only rename use mv -T",
                shown(&from)
            )));
        }
        let target_exists = self.find_exact(&new_dir, new_name).is_some();
        // `mv readme README`: the same entry under a new spelling, not a collision.
        let case_only =
            dir == new_dir && !target_exists && crate::casefold::collide(name, new_name, self.config.case.folding);
        if !target_exists {
            self.check_case(&new_dir, new_name, (dir == new_dir).then_some(name))?;
        }
        if no_replace && target_exists {
            return Err(FsError::Remote(RemoteError::AlreadyExists(format!("{to} exists"))));
        }
        let pending = self.writing.lock().get(&from).cloned();
        if let Some(w) = pending {
            if self.write_back.is_some() && !case_only && self.rename_pending(&w, &from, &to, &new_dir, new_name)? {
                self.renamed(parent, name, new_parent, new_name, &from, &to);
                return Ok(());
            }
            // Changes still pending go up first, under the old name, so they are not lost.
            self.commit(&w)?;
        }
        if entry.kind == Kind::Dir {
            self.settle_tree(&from)?;
        }
        if case_only {
            self.rename_case_only(&from, &to)?;
        } else if let Ok(existing) = self.find(&new_dir, new_name) {
            self.make_room(&entry, &existing, &to, no_replace)?;
            write::upload::replace(self.remote.as_ref(), &from, &to).map_err(|e| self.unsure(&[&dir, &new_dir], e))?;
        } else {
            self.remote.rename(&from, &to).map_err(|e| self.unsure(&[&dir, &new_dir], e))?;
        }
        self.moved_in_caches(&dir, &entry.name, &new_dir, new_name, &from, &to);
        self.renamed(parent, name, new_parent, new_name, &from, &to);
        Ok(())
    }

    /// Before `moving` replaces `existing` at `to` on the server: refused where POSIX refuses
    /// (and with `no_replace`); an empty directory there is removed (RMD).
    fn make_room(&self, moving: &Entry, existing: &Entry, to: &str, no_replace: bool) -> Result<()> {
        if no_replace {
            return Err(FsError::Remote(RemoteError::AlreadyExists(format!("{to} exists"))));
        }
        match (moving.kind == Kind::Dir, existing.kind == Kind::Dir) {
            (false, true) => return Err(FsError::IsDir),
            (true, false) => return Err(FsError::NotDir),
            (true, true) => {
                self.dirs.invalidate(to);
                if !self.listing(to)?.entries().is_empty() {
                    return Err(FsError::Remote(RemoteError::NotEmpty(format!("{to} is not empty"))));
                }
                self.remote.rmdir(to)?;
            }
            (false, false) => {}
        }
        Ok(())
    }

    /// After a rename on the server: the entry moves between cached listings, and what was
    /// cached under either path (listings below, content) is dropped.
    fn moved_in_caches(&self, dir: &str, listed: &str, new_dir: &str, new_name: &str, from: &str, to: &str) {
        if let Some(mut e) = self.dirs.remove_entry(dir, listed) {
            e.name = new_name.to_string();
            self.dirs.upsert(new_dir, e);
        } else {
            self.dirs.invalidate(dir);
            self.dirs.invalidate(new_dir);
        }
        self.dirs.invalidate_tree(from);
        self.dirs.invalidate_tree(to);
        for p in [from, to] {
            self.forget_content(p);
            self.forget_content_under(p);
        }
    }

    /// A change whose connection failed may or may not have happened on the server: the
    /// listings involved are dropped, so the next look shows what the server has.
    pub(super) fn unsure(&self, dirs: &[&str], e: RemoteError) -> FsError {
        if e.breaks_session() {
            for d in dirs {
                self.dirs.invalidate(d);
            }
        }
        e.into()
    }

    /// Bookkeeping after a rename: times we set, and the inode's name.
    pub(super) fn renamed(&self, parent: u64, name: &str, new_parent: u64, new_name: &str, from: &str, to: &str) {
        let mut times = self.set_times.lock();
        if let Some(t) = times.remove(from) {
            times.insert(to.to_string(), t);
        }
        drop(times);
        self.changed(split(from).0, true);
        self.changed(split(to).0, true);
        self.changed(to, false);
        self.inodes.lock().rename(parent, name, new_parent, new_name);
    }

    /// Write-back: a file whose upload has not happened moves by changing where the upload
    /// goes (the old version, if the server has one, moves along now so the old name is gone).
    /// False when the upload has just finished and the server must do the rename.
    pub(super) fn rename_pending(
        &self,
        w: &Arc<WriteHandle>,
        from: &str,
        to: &str,
        new_dir: &str,
        new_name: &str,
    ) -> Result<bool> {
        // Whatever waits to be uploaded to the target is replaced by this file. (Bound first:
        // an `if let` scrutinee's guard would hold `writing` through the discard and the DELE.)
        let other = self.writing.lock().get(to).cloned();
        if let Some(other) = other {
            if !Arc::ptr_eq(&other, w) {
                if let Some(partial) = other.discard() {
                    let _ = self.remote.delete(&partial);
                }
            }
        }
        let _running = w.released.load(Ordering::Relaxed).then(|| w.job.lock());
        let (dir, name) = split(from);
        let listed = self.listing(dir)?.get(name).cloned();
        if self.find_exact(new_dir, new_name).is_some_and(|e| e.kind == Kind::Dir) {
            return Err(FsError::IsDir);
        }
        let st = w.state.lock();
        if !st.dirty {
            return Ok(false);
        }
        if let Some(mut old) = listed {
            write::upload::replace(self.remote.as_ref(), from, to)?;
            old.name = new_name.to_string();
            self.dirs.upsert(new_dir, old);
        }
        self.dirs.remove_entry(dir, name);
        w.set_path(&st, to);
        let mut writing = self.writing.lock();
        if writing.get(from).is_some_and(|x| Arc::ptr_eq(x, w)) {
            writing.remove(from);
        }
        writing.insert(to.to_string(), w.clone());
        drop(writing);
        drop(st);
        if w.released.load(Ordering::Relaxed) {
            self.persist(w);
        }
        Ok(true)
    }
}
