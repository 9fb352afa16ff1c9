//! Local spool files for writes that cannot stream: anonymous files under `--cache-dir`,
//! bounded in total by `--cache-max-size`.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::remote::RemoteError;

pub struct Spool {
    dir: PathBuf,
    max: u64,
    used: Arc<AtomicU64>,
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
    pub fn new(dir: PathBuf, max: u64) -> Spool {
        Spool { dir, max, used: Arc::new(AtomicU64::new(0)) }
    }

    /// A new anonymous file (already unlinked: nothing is left behind after a crash).
    pub fn file(&self) -> Result<(File, Reservation), RemoteError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            RemoteError::NoSpace(format!("creating the spool directory {}: {e} (see --cache-dir)", self.dir.display()))
        })?;
        let file = tempfile::tempfile_in(&self.dir).map_err(|e| {
            RemoteError::NoSpace(format!("creating a spool file in {}: {e} (see --cache-dir)", self.dir.display()))
        })?;
        Ok((file, Reservation { used: self.used.clone(), bytes: 0 }))
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

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_enforced_and_given_back() {
        let dir = std::env::temp_dir().join(format!("ftpmount-spool-test-{}", std::process::id()));
        let spool = Spool::new(dir.clone(), 100);
        let (_f, mut a) = spool.file().unwrap();
        spool.reserve(&mut a, 60).unwrap();
        let (_g, mut b) = spool.file().unwrap();
        assert!(matches!(spool.reserve(&mut b, 50), Err(RemoteError::NoSpace(_))));
        spool.reserve(&mut b, 40).unwrap();
        drop(a);
        assert_eq!(spool.used(), 40);
        let _ = std::fs::remove_dir_all(dir);
    }
}
