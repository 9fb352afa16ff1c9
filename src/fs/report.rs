//! What `status` shows: transfers under way, failed uploads, recent errors and counters.

use super::*;

impl Fs {
    /// Open files with data moving or waiting to move, and the write-back queue, for
    /// `status`; sorted by path.
    pub fn transfers(&self) -> Vec<TransferStatus> {
        let handles: Vec<Handle> = self.handles.lock().values().map(Handle::clone).collect();
        let mut out = Vec::new();
        for h in handles {
            match h {
                Handle::Read(r, _) if r.in_flight() => out.push(TransferStatus {
                    path: shown(&r.path),
                    direction: Direction::Download,
                    bytes: Some(r.delivered.load(Ordering::Relaxed)),
                    state: TransferState::Streaming,
                    seconds: r.opened.elapsed().as_secs_f64(),
                }),
                // Closed, its release (which queues it) still on the way: `sync` waits for it.
                Handle::Write(w)
                    if w.closed_at.lock().is_some_and(|t| t.elapsed() < RELEASE_WAIT)
                        && matches!(w.progress(), write::WriteProgress::Spooled(_)) =>
                {
                    out.push(TransferStatus {
                        path: shown(&w.path()),
                        direction: Direction::Upload,
                        bytes: None,
                        state: TransferState::Closing,
                        seconds: w.opened.elapsed().as_secs_f64(),
                    });
                }
                Handle::Write(w) => {
                    let (bytes, state) = match w.progress() {
                        write::WriteProgress::Streaming(n) => (Some(n), TransferState::Streaming),
                        write::WriteProgress::Spooled(n) => (Some(n), TransferState::Spooled),
                        write::WriteProgress::Busy => (None, TransferState::Busy),
                        write::WriteProgress::Idle => continue,
                    };
                    out.push(TransferStatus {
                        path: shown(&w.path()),
                        direction: Direction::Upload,
                        bytes,
                        state,
                        seconds: w.opened.elapsed().as_secs_f64(),
                    });
                }
                _ => {}
            }
        }
        // A write handle between its release and its place in the queue (a moment).
        if self.write_back.is_some() && self.releasing.load(Ordering::SeqCst) > 0 {
            out.push(TransferStatus {
                path: "(a file being closed)".into(),
                direction: Direction::Upload,
                bytes: None,
                state: TransferState::Closing,
                seconds: 0.0,
            });
        }
        for (path, uploading) in self.queued_uploads() {
            let state = if uploading { TransferState::Uploading } else { TransferState::Queued };
            out.push(TransferStatus {
                path: shown(&path),
                direction: Direction::Upload,
                bytes: None,
                state,
                seconds: 0.0,
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    /// Write-back uploads that failed for good during this mount.
    pub fn failed_uploads(&self) -> Vec<writeback::FailedUpload> {
        self.write_back().map(|wb| wb.failures()).unwrap_or_default()
    }

    /// Listing cache (hits, misses) since the mount started.
    pub fn cache_counts(&self) -> (u64, u64) {
        (self.dirs.hits.load(Ordering::Relaxed), self.dirs.misses.load(Ordering::Relaxed))
    }

    /// Records a failure reported to an application; true if it is the first of its kind.
    pub fn note_error(&self, op: &str, e: &FsError) -> bool {
        let mut log = self.errors.lock();
        if log.recent.len() == RECENT_ERRORS {
            log.recent.pop_front();
        }
        log.recent.push_back((SystemTime::now(), format!("{op}: {e}")));
        log.kinds.insert(e.kind())
    }

    /// The latest failures, oldest first: (when, "OPERATION: ERROR").
    pub fn recent_errors(&self) -> Vec<(SystemTime, String)> {
        self.errors.lock().recent.iter().cloned().collect()
    }

    /// Files open now (read and write handles).
    pub fn open_handles(&self) -> usize {
        self.handles.lock().len()
    }

    /// Drops cached listings no longer of use: older than `--dir-timeout` (they answer
    /// nothing), of directories not being watched (the watcher compares their listings with
    /// the server's).
    pub fn forget_old_listings(&self) {
        let watched: std::collections::HashSet<String> =
            self.watch.watched_inodes(self.clock.now()).into_iter().filter_map(|ino| self.path(ino).ok()).collect();
        self.dirs.drop_older_than(self.config.dir_ttl, |dir| watched.contains(dir));
    }

    /// What the mount holds in memory, for `status`.
    pub fn memory_stats(&self) -> MemoryStats {
        let (listings, listing_entries) = self.dirs.size();
        MemoryStats { resident_bytes: resident_bytes(), inodes: self.inodes.lock().len(), listings, listing_entries }
    }
}

/// What the mount holds in memory (`status`): it depends on what the kernel and the listing
/// cache hold now, not on everything the mount has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemoryStats {
    /// The daemon's resident memory.
    pub resident_bytes: u64,
    /// Inodes the kernel holds (the root included).
    pub inodes: usize,
    /// Directory listings cached, and their entries together.
    pub listings: usize,
    pub listing_entries: usize,
}

/// This process's resident memory, from /proc/self/statm (0 where it cannot be read).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}
