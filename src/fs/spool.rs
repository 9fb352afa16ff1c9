//! Local spool files for writes that cannot stream: anonymous files under `--cache-dir`,
//! bounded in total by `--cache-max-size`. With write-back they are named files in the
//! source's queue directory instead, so queued uploads survive a crash.

use std::fs::File;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::remote::RemoteError;

/// Where writes that cannot stream are kept until their upload, within `--cache-max-size`.
pub struct Spool {
    dir: PathBuf,
    max: u64,
    used: Arc<AtomicU64>,
    /// Write-back's queue directory: spool files are named and kept there.
    keep_in: Option<PathBuf>,
}

/// A named spool file: removed, with its journal entry, when the content is no longer needed.
#[derive(Debug)]
pub struct Kept(pub PathBuf);

impl Kept {
    /// The journal entry describing the file (`<name>.json` beside `<name>.data`).
    pub fn journal(&self) -> PathBuf {
        journal_of(&self.0)
    }
}

/// The journal entry of the named spool file `data` (`<name>.json` beside `<name>.data`).
pub fn journal_of(data: &Path) -> PathBuf {
    data.with_extension("json")
}

impl Drop for Kept {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.journal());
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Bytes of the spool budget held by one file; given back when dropped.
pub struct Reservation {
    used: Arc<AtomicU64>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl Spool {
    /// A spool in `dir` holding at most `max` bytes; with `keep_in` (write-back), files are named
    /// and kept in that queue directory.
    pub fn new(dir: PathBuf, max: u64, keep_in: Option<PathBuf>) -> Spool {
        Spool { dir, max, used: Arc::new(AtomicU64::new(0)), keep_in }
    }

    /// A new file: anonymous (already unlinked, nothing is left behind after a crash), or
    /// with write-back a named file in the queue directory.
    pub fn file(&self) -> Result<(File, Reservation, Option<Kept>), RemoteError> {
        let dir = self.keep_in.as_ref().unwrap_or(&self.dir);
        let failed = |what: &str, e: std::io::Error| {
            RemoteError::NoSpace(format!("{what} {}: {e} (see --cache-dir)", dir.display()))
        };
        // The write-back queue names files and where they go: for the user's eyes only.
        let mode = if self.keep_in.is_some() { 0o700 } else { 0o755 };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .map_err(|e| failed("creating the spool directory", e))?;
        let (file, kept) = match &self.keep_in {
            None => (tempfile::tempfile_in(dir).map_err(|e| failed("creating a spool file in", e))?, None),
            Some(_) => {
                let named = tempfile::Builder::new()
                    .prefix("")
                    .suffix(".data")
                    .tempfile_in(dir)
                    .map_err(|e| failed("creating a spool file in", e))?;
                let (file, path) = named.keep().map_err(|e| failed("keeping a spool file in", e.error))?;
                (file, Some(Kept(path)))
            }
        };
        Ok((file, self.reservation(), kept))
    }

    /// An empty share of the budget, to be grown with [`Spool::reserve`].
    pub fn reservation(&self) -> Reservation {
        Reservation { used: self.used.clone(), bytes: 0 }
    }

    /// Grows `r` to cover `total` bytes, or fails with ENOSPC past `--cache-max-size`.
    pub fn reserve(&self, r: &mut Reservation, total: u64) -> Result<(), RemoteError> {
        if total <= r.bytes {
            return Ok(());
        }
        let more = total - r.bytes;
        let before = self.used.fetch_add(more, Ordering::Relaxed);
        if before + more > self.max {
            self.used.fetch_sub(more, Ordering::Relaxed);
            return Err(RemoteError::NoSpace(format!(
                "the spool for files being rewritten is full ({} of {} bytes used; raise --cache-max-size)",
                before, self.max
            )));
        }
        r.bytes = total;
        Ok(())
    }

    /// Bytes held by spool files now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// A queued upload's journal entry: what the write-back queue keeps beside a spool file so
/// the upload can resume after a restart (its path, size, and the mode and time to set).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    /// Path relative to the mount root.
    pub path: String,
    pub size: u64,
    pub mode: Option<u32>,
    /// Modification time to set, as (seconds, nanoseconds) since the epoch.
    pub mtime: Option<(u64, u32)>,
}

impl Journal {
    /// The entry for `path`, spooled with `size` bytes, and what is to be set after upload.
    pub fn new(path: String, size: u64, mode: Option<u32>, mtime: Option<SystemTime>) -> Journal {
        let mtime =
            mtime.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map(|d| (d.as_secs(), d.subsec_nanos()));
        Journal { path, size, mode, mtime }
    }

    /// The modification time to set after the upload.
    pub fn mtime(&self) -> Option<SystemTime> {
        self.mtime.map(|(s, n)| SystemTime::UNIX_EPOCH + Duration::new(s, n))
    }

    /// Written beside and renamed into place, so a crash leaves the old entry or the new one.
    pub fn save(&self, to: &Path) -> std::io::Result<()> {
        let mut tmp = to.as_os_str().to_owned();
        tmp.push(".tmp");
        std::fs::write(&tmp, serde_json::to_vec(self).expect("a journal entry serializes"))?;
        std::fs::rename(&tmp, to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_enforced_and_given_back() {
        let dir = std::env::temp_dir().join(format!("ftpmount-spool-test-{}", std::process::id()));
        let spool = Spool::new(dir.clone(), 100, None);
        let (_f, mut a, _) = spool.file().unwrap();
        spool.reserve(&mut a, 60).unwrap();
        let (_g, mut b, _) = spool.file().unwrap();
        assert!(matches!(spool.reserve(&mut b, 50), Err(RemoteError::NoSpace(_))));
        spool.reserve(&mut b, 40).unwrap();
        drop(a);
        assert_eq!(spool.used(), 40);
        let _ = std::fs::remove_dir_all(dir);
    }
}
