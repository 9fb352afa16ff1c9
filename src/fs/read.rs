//! Reading an open file: one streamed download (`REST` + `RETR`) kept open while reads are
//! sequential, skipped forward over small gaps, restarted at the new offset for far jumps,
//! and given back to the pool when idle or when other requests wait for a session.

use std::io::Read;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::remote::{ReadStream, Remote, Result};

/// A forward jump up to this size is read and discarded rather than restarting the transfer:
/// a restart costs round trips, a small skip costs only bandwidth.
const SKIP_LIMIT: u64 = 512 * 1024;
/// While others wait for a session, a stream is given up after this long, so sessions are shared.
const FAIR_SHARE: Duration = Duration::from_millis(200);
/// An unused stream is closed after this long (or at once when someone waits for a session).
pub const IDLE_CLOSE: Duration = Duration::from_secs(2);

struct Open {
    stream: Box<dyn ReadStream>,
    pos: u64,
    since: Instant,
    last_used: Instant,
}

pub struct ReadHandle {
    pub path: String,
    /// The size when the file was opened: reads past it need no round trip.
    size: u64,
    /// Serialises reads of one open file; held across the transfer on purpose (only this
    /// handle's readers wait on it, never the rest of the filesystem).
    open: Mutex<Option<Open>>,
    /// Bytes handed to the application so far, and since when (for `status`).
    pub delivered: std::sync::atomic::AtomicU64,
    pub opened: Instant,
}

impl ReadHandle {
    pub fn new(path: String, size: u64) -> Self {
        ReadHandle { path, size, open: Mutex::new(None), delivered: Default::default(), opened: Instant::now() }
    }

    /// Whether a download is open or being read right now.
    pub fn in_flight(&self) -> bool {
        self.open.try_lock().is_none_or(|slot| slot.is_some())
    }

    pub fn read(&self, remote: &dyn Remote, offset: u64, len: usize) -> Result<Vec<u8>> {
        if offset >= self.size || len == 0 {
            return Ok(Vec::new());
        }
        let len = len.min((self.size - offset) as usize);
        let mut slot = self.open.lock();
        let reusable = slot.as_ref().is_some_and(|o| offset >= o.pos && offset - o.pos <= SKIP_LIMIT);
        if !reusable {
            // Dropping the old stream ends its transfer and frees its session first.
            *slot = None;
            let now = Instant::now();
            *slot = Some(Open { stream: remote.open_read(&self.path, offset)?, pos: offset, since: now, last_used: now });
        }
        let open = slot.as_mut().expect("just set");
        let result = read_at(open, offset, len);
        if let Ok(buf) = &result {
            self.delivered.fetch_add(buf.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        let done = match &result {
            Ok(buf) => buf.len() < len || open.pos >= self.size,
            Err(_) => true,
        };
        open.last_used = Instant::now();
        let yield_session = remote.sessions_wanted() && open.since.elapsed() >= FAIR_SHARE;
        if done || yield_session {
            *slot = None;
        }
        result.map_err(|e| {
            crate::remote::RemoteError::Connection(format!("reading {} at byte {offset}: {e}", self.path))
        })
    }

    /// Closes the stream if unused for `idle`; never waits for a reader in progress.
    pub fn close_if_idle(&self, idle: Duration) {
        if let Some(mut slot) = self.open.try_lock() {
            if slot.as_ref().is_some_and(|o| o.last_used.elapsed() >= idle) {
                *slot = None;
            }
        }
    }

    pub fn has_stream(&self) -> bool {
        self.open.lock().is_some()
    }
}

/// Skips to `offset`, then reads up to `len` bytes (fewer only at the end of the file).
fn read_at(open: &mut Open, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let skip = offset - open.pos;
    if skip > 0 {
        let copied = std::io::copy(&mut (&mut open.stream).take(skip), &mut std::io::sink())?;
        open.pos += copied;
        if copied < skip {
            return Ok(Vec::new());
        }
    }
    let mut buf = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        match open.stream.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    open.pos += filled as u64;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::fake::FakeRemote;
    use std::sync::atomic::Ordering;
    use std::time::SystemTime;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn sequential_reads_use_one_stream() {
        let fake = FakeRemote::new();
        let d = data(1 << 20);
        fake.add_file("f", &d, SystemTime::now());
        let h = ReadHandle::new("f".into(), d.len() as u64);
        let mut got = Vec::new();
        for off in (0..d.len()).step_by(64 * 1024) {
            got.extend(h.read(&fake, off as u64, 64 * 1024).unwrap());
        }
        assert_eq!(got, d);
        assert_eq!(fake.opens.load(Ordering::SeqCst), 1);
        assert!(!h.has_stream(), "stream released at the end of the file");
    }

    #[test]
    fn far_jumps_restart_and_small_gaps_skip() {
        let fake = FakeRemote::new();
        let d = data(4 << 20);
        fake.add_file("f", &d, SystemTime::now());
        let h = ReadHandle::new("f".into(), d.len() as u64);
        assert_eq!(h.read(&fake, 0, 100).unwrap(), &d[..100]);
        assert_eq!(h.read(&fake, 1000, 100).unwrap(), &d[1000..1100], "small gap skipped");
        assert_eq!(fake.opens.load(Ordering::SeqCst), 1);
        assert_eq!(h.read(&fake, 3 << 20, 100).unwrap(), &d[3 << 20..(3 << 20) + 100]);
        assert_eq!(h.read(&fake, 10, 100).unwrap(), &d[10..110], "backwards restarts");
        assert_eq!(fake.opens.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn reads_past_the_end_need_no_transfer() {
        let fake = FakeRemote::new();
        fake.add_file("f", b"abc", SystemTime::now());
        let h = ReadHandle::new("f".into(), 3);
        assert!(h.read(&fake, 3, 10).unwrap().is_empty());
        assert_eq!(h.read(&fake, 1, 10).unwrap(), b"bc");
        assert_eq!(fake.opens.load(Ordering::SeqCst), 1);
    }
}
