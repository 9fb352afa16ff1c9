//! Reading an open file: one streamed download (`REST` + `RETR`) kept open while reads are
//! sequential, skipped forward over small gaps, restarted at the new offset for far jumps,
//! and given back to the pool when idle or when other requests wait for a session.

use std::io::Read;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::content::{CachedFile, Downloading};
use crate::remote::{ReadStream, Remote, RemoteError, Result};

/// How reading from a transfer failed.
enum StreamError {
    /// Starting it failed (a refusal, an unreachable data channel): final.
    Start(RemoteError),
    /// A running transfer broke: worth starting again, once.
    Broken(RemoteError),
}

impl StreamError {
    fn into_inner(self) -> RemoteError {
        match self {
            StreamError::Start(e) | StreamError::Broken(e) => e,
        }
    }
}

/// How often one read starts a broken transfer again before it fails.
const RESTARTS: usize = 2;
/// A forward jump up to this size is read and discarded rather than restarting the transfer:
/// a restart costs round trips, a small skip costs only bandwidth.
const SKIP_LIMIT: u64 = 512 * 1024;
/// While others wait for a session, a stream is given up after this long, so sessions are shared.
const FAIR_SHARE: Duration = Duration::from_millis(200);
/// An unused stream is closed after this long (or at once when someone waits for a session).
pub const IDLE_CLOSE: Duration = Duration::from_secs(2);
/// A download is parked at close only with at most this much of the file left. While it waits
/// the server fills its socket buffer whatever our receive window says (on loopback about
/// 4 MiB within 300 ms; measured in `tests/e2e_desktop.rs`), so parking costs up to the rest
/// of the file, and ending at once costs only the bytes in flight.
const PARK_UP_TO: u64 = 4 << 20;

struct Open {
    stream: Box<dyn ReadStream>,
    pos: u64,
    since: Instant,
    last_used: Instant,
    /// Shows other readers of the file where this download is (it fills the cache).
    mark: Option<Downloading>,
}

/// How long a reader waits for another reader's download of the same file to move on before
/// it starts its own (that reader may have stopped reading).
const SHARE_PATIENCE: Duration = Duration::from_millis(500);

/// At most this much of what has already arrived is kept when a download ends early.
const KEEP_ARRIVED: usize = 8 << 20;

impl Open {
    /// Ends the download: what has already arrived goes to the cache (the server sent it
    /// anyway), and the server's reply is waited for beside the caller.
    fn end(mut self, cache: Option<&CachedFile>) {
        // Readers waiting for this download stop waiting now, not after the server's reply.
        let mark = self.mark.take();
        if let Some(c) = cache {
            let arrived = self.stream.take_arrived(KEEP_ARRIVED);
            if !arrived.is_empty() {
                c.downloaded(self.pos, &arrived);
            }
        }
        drop(mark);
        std::thread::spawn(move || drop(self));
    }
}

/// The bytes most recently read from the server. The kernel sends a file's read-ahead as
/// several requests at once, which reach us slightly out of order; serving the late ones from
/// here keeps one stream going instead of restarting the transfer for each (a restart costs
/// several round trips).
#[derive(Default)]
struct Window {
    start: u64,
    data: Vec<u8>,
}

/// How much of the recent past a window keeps (the kernel's read-ahead is at most 1 MiB).
const WINDOW: usize = 2 << 20;

impl Window {
    fn end(&self) -> u64 {
        self.start + self.data.len() as u64
    }

    /// The bytes at `offset..offset + len` that the window holds, from `offset` on.
    fn get(&self, offset: u64, len: usize) -> &[u8] {
        if offset < self.start || offset >= self.end() {
            return &[];
        }
        let from = (offset - self.start) as usize;
        &self.data[from..(from + len).min(self.data.len())]
    }

    /// Records bytes read from the server at `at`.
    fn push(&mut self, at: u64, bytes: &[u8]) {
        if at != self.end() {
            self.start = at;
            self.data.clear();
        }
        self.data.extend_from_slice(bytes);
        if self.data.len() > 2 * WINDOW {
            let drop = self.data.len() - WINDOW;
            self.data.drain(..drop);
            self.start += drop as u64;
        }
    }
}

#[derive(Default)]
struct State {
    stream: Option<Open>,
    window: Window,
    /// The current read wants bytes past `size`: keep the stream at the end to look for more.
    probe: bool,
    /// What the content cache holds of this version of the file; downloads fill it.
    cache: Option<CachedFile>,
    /// This reader is to download the bytes the current read wants (see
    /// [`CachedFile::wait_for`]): the mark, until its transfer is opened.
    claim: Option<Downloading>,
}

impl State {
    /// Whether the open stream can serve `at` (it is there, or a small skip ahead).
    fn reusable(&self, at: u64) -> bool {
        self.stream.as_ref().is_some_and(|o| at >= o.pos && at - o.pos <= SKIP_LIMIT)
    }

    /// Records bytes read from the server at `at`.
    fn record(&mut self, at: u64, bytes: &[u8]) {
        self.window.push(at, bytes);
        if let Some(c) = &self.cache {
            if !c.downloaded(at, bytes) {
                self.cache = None;
            }
        }
    }

    /// Tells readers waiting for the stream's bytes that it moved on (after `record`).
    fn moved_on(&self) {
        if let Some(Open { mark: Some(m), pos, .. }) = &self.stream {
            m.at(*pos);
        }
    }
}

/// A download left open by a reader that closed the file, for the next open of the same
/// version to continue (a file manager sniffs the first bytes, closes, and opens the file
/// again to read it all): the transfer goes on instead of starting anew.
pub struct Parked {
    stream: Open,
    window: Window,
    cache: Option<CachedFile>,
    pub size: u64,
    pub mtime: Option<std::time::SystemTime>,
}

impl Parked {
    pub fn idle_for(&self) -> Duration {
        self.stream.last_used.elapsed()
    }

    /// Ends the download no one came back for (see [`Open::end`]).
    pub fn end(self) {
        self.stream.end(self.cache.as_ref());
    }
}

pub struct ReadHandle {
    pub path: String,
    /// The size when the file was opened (corrected when the transfer shows otherwise):
    /// reads past it need no round trip.
    size: std::sync::atomic::AtomicU64,
    /// Set when the transfer went on past `size` (the file grew): the size needs correcting.
    grown: std::sync::atomic::AtomicBool,
    /// Serialises reads of one open file; held across the transfer on purpose (only this
    /// handle's readers wait on it, never the rest of the filesystem).
    state: Mutex<State>,
    /// Bytes handed to the application so far, and since when (for `status`).
    pub delivered: std::sync::atomic::AtomicU64,
    pub opened: Instant,
}

impl ReadHandle {
    pub fn new(path: String, size: u64, cache: Option<CachedFile>) -> Self {
        ReadHandle {
            path,
            size: size.into(),
            grown: Default::default(),
            state: Mutex::new(State { cache, ..State::default() }),
            delivered: Default::default(),
            opened: Instant::now(),
        }
    }

    /// Whether a download is open or being read right now.
    pub fn in_flight(&self) -> bool {
        self.state.try_lock().is_none_or(|st| st.stream.is_some())
    }

    pub fn read(&self, remote: &dyn Remote, offset: u64, len: usize) -> Result<Vec<u8>> {
        let size = self.size();
        if offset >= size || len == 0 {
            return Ok(Vec::new());
        }
        let want = len;
        let len = len.min((size - offset) as usize);
        let mut st = self.state.lock();
        let mut out = st.window.get(offset, len).to_vec();
        while out.len() < len {
            let at = offset + out.len() as u64;
            let Some(c) = &st.cache else { break };
            let held = c.read(at, len - out.len());
            if !held.is_empty() {
                out.extend(held);
                continue;
            }
            // Another reader's download of this file is about to bring these bytes (a file
            // manager's thumbnailer and its sniffer read an image at once): wait for them
            // rather than have the server send them twice.
            if st.reusable(at) {
                break;
            }
            match c.wait_for(at, SKIP_LIMIT, SHARE_PATIENCE) {
                Ok(()) => {}
                Err(mark) => {
                    st.claim = Some(mark);
                    break;
                }
            }
        }
        st.probe = want > len;
        if out.len() < len {
            let at = offset + out.len() as u64;
            let read = self.read_stream(&mut st, remote, at, len - out.len());
            st.claim = None;
            out.extend_from_slice(&read?);
        }
        if want > len && out.len() == len {
            out.extend_from_slice(&self.past_end(&mut st, want - len));
        }
        self.delivered.fetch_add(out.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(out)
    }

    /// Reads `len` bytes at `at` from the open stream (skipping a small gap) or a new one. A
    /// transfer that breaks (a dropped connection, a restarted server) is started again at the
    /// same offset, up to [`RESTARTS`] times; the pool waits for a restarting server meanwhile
    /// (`--reconnect-timeout`).
    fn read_stream(&self, st: &mut State, remote: &dyn Remote, at: u64, len: usize) -> Result<Vec<u8>> {
        let mut restarts = 0;
        loop {
            match self.read_stream_once(st, remote, at, len, restarts < RESTARTS) {
                Err(StreamError::Broken(e)) if restarts < RESTARTS => {
                    restarts += 1;
                    tracing::info!("{}: the transfer broke at byte {at} ({e}); starting it again there", self.path);
                }
                other => return other.map_err(StreamError::into_inner),
            }
        }
    }

    fn read_stream_once(
        &self,
        st: &mut State,
        remote: &dyn Remote,
        at: u64,
        len: usize,
        short_is_broken: bool,
    ) -> std::result::Result<Vec<u8>, StreamError> {
        if !st.reusable(at) {
            // Ending a transfer waits for the server's reply (a round trip): let that happen
            // beside the new request, which takes another session (or this one, once freed).
            if let Some(old) = st.stream.take() {
                old.end(st.cache.as_ref());
            }
            // The first read of a file near its start: start at 0, so the kernel's other
            // read-ahead requests for the beginning find their bytes in the window (unless
            // the cache has the beginning).
            let cached_start = st.cache.as_ref().is_some_and(|c| c.holds(0));
            let from = if st.window.data.is_empty() && at <= SKIP_LIMIT && !cached_start { 0 } else { at };
            let now = Instant::now();
            let mark = match st.claim.take() {
                Some(m) => {
                    m.at(from);
                    Some(m)
                }
                None => st.cache.as_ref().map(|c| c.downloading(from)),
            };
            let stream = remote.open_read(&self.path, from).map_err(StreamError::Start)?;
            st.stream = Some(Open { stream, pos: from, since: now, last_used: now, mark });
        }
        let mut result = read_at(st, at, len);
        let open = st.stream.as_mut().expect("just set");
        // A transfer that ends before the size the file had is cut, not finished (a connection
        // killed without a TLS goodbye reads as an end); the second attempt takes what comes
        // (the file may have shrunk).
        let size = self.size();
        if short_is_broken && result.as_ref().is_ok_and(|b| b.len() < len && open.pos < size) {
            let msg = format!("the transfer ended at byte {} of {}", open.pos, size);
            result = Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, msg));
        }
        let done = match &result {
            // At the end, a read that wants more keeps the stream to see whether it ends there.
            Ok(buf) => buf.len() < len || (open.pos >= size && !st.probe),
            Err(_) => true,
        };
        open.last_used = Instant::now();
        let yield_session = remote.sessions_wanted() && open.since.elapsed() >= FAIR_SHARE;
        if done || yield_session {
            st.stream = None;
        }
        // A failed read has ended the stream above. The server's own verdicts (a refusal in
        // the final reply) are final; a broken transfer is worth starting again.
        result.map_err(|e| match e.get_ref().and_then(|inner| inner.downcast_ref::<RemoteError>()) {
            Some(verdict) if !verdict.is_transient() => StreamError::Start(verdict.clone()),
            Some(broken) => StreamError::Broken(broken.clone()),
            None => StreamError::Broken(RemoteError::Connection(format!("reading {} at byte {at}: {e}", self.path))),
        })
    }

    /// Closes the stream if unused for `idle`; never waits for a reader in progress.
    pub fn close_if_idle(&self, idle: Duration) {
        if let Some(mut st) = self.state.try_lock() {
            if st.stream.as_ref().is_some_and(|o| o.last_used.elapsed() >= idle) {
                if let Some(old) = st.stream.take() {
                    old.end(st.cache.as_ref());
                }
            }
        }
    }

    pub fn has_stream(&self) -> bool {
        self.state.lock().stream.is_some()
    }

    /// The open download, for the next open of the file (see [`Parked`]); none while a read
    /// is in progress or when the transfer is at the end.
    pub fn park(&self, mtime: Option<std::time::SystemTime>) -> Option<Parked> {
        let mut st = self.state.try_lock()?;
        let stream = st.stream.take().filter(|o| o.pos < self.size())?;
        if self.size() - stream.pos > PARK_UP_TO {
            stream.end(st.cache.as_ref());
            return None;
        }
        let (window, cache) = (std::mem::take(&mut st.window), st.cache.take());
        Some(Parked { stream, window, cache, size: self.size(), mtime })
    }

    /// Continues a download a reader of the same version left (see [`Parked`]).
    pub fn adopt(&self, parked: Parked) {
        let mut st = self.state.lock();
        st.stream = Some(parked.stream);
        st.window = parked.window;
    }
}

impl ReadHandle {
    /// The size reads are served up to.
    pub fn size(&self) -> u64 {
        self.size.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Corrects the size (the server says otherwise, or the transfer showed more).
    pub fn set_size(&self, size: u64) {
        self.size.store(size, std::sync::atomic::Ordering::Relaxed);
    }

    /// True once after the transfer went on past the size the file had (it grew).
    pub fn take_grown(&self) -> bool {
        self.grown.swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// At the old end of the file, with the stream still there: up to `n` more bytes, which
    /// a file that grew has (close-to-open: what the transfer delivers is the truth).
    fn past_end(&self, st: &mut State, n: usize) -> Vec<u8> {
        let size = self.size();
        let Some(open) = st.stream.as_mut().filter(|o| o.pos == size) else { return Vec::new() };
        let extra = fill(&mut open.stream, n).unwrap_or_default();
        open.pos += extra.len() as u64;
        // Past the size this version has: the cache is for that version only.
        st.cache = None;
        st.window.push(size, &extra);
        if extra.len() < n {
            st.stream = None;
        }
        if !extra.is_empty() {
            self.set_size(size + extra.len() as u64);
            self.grown.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        extra
    }
}

/// From the open stream: skips to `offset` (keeping the skipped bytes), then reads up to
/// `len` bytes (fewer only at the end of the file).
fn read_at(st: &mut State, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let open = st.stream.as_mut().expect("a stream is open");
    let from = open.pos;
    let skip = (offset - from) as usize;
    if skip > 0 {
        let skipped = fill(&mut open.stream, skip)?;
        open.pos += skipped.len() as u64;
        let short = skipped.len() < skip;
        st.record(from, &skipped);
        st.moved_on();
        if short {
            return Ok(Vec::new());
        }
    }
    let open = st.stream.as_mut().expect("a stream is open");
    let buf = fill(&mut open.stream, len)?;
    open.pos += buf.len() as u64;
    st.record(offset, &buf);
    st.moved_on();
    Ok(buf)
}

/// Up to `len` bytes from `r`, fewer only at its end (without zeroing a buffer first).
fn fill(r: &mut dyn Read, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    r.take(len as u64).read_to_end(&mut buf)?;
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
        let h = ReadHandle::new("f".into(), d.len() as u64, None);
        let mut got = Vec::new();
        for off in (0..d.len()).step_by(64 * 1024) {
            got.extend(h.read(&fake, off as u64, 64 * 1024).unwrap());
        }
        assert_eq!(got, d);
        assert_eq!(fake.opens.load(Ordering::SeqCst), 1);
        assert!(!h.has_stream(), "stream released at the end of the file");
    }

    #[test]
    fn requests_arriving_slightly_out_of_order_keep_one_stream() {
        let fake = FakeRemote::new();
        let d = data(8 << 20);
        fake.add_file("f", &d, SystemTime::now());
        let h = ReadHandle::new("f".into(), d.len() as u64, None);
        const CHUNK: usize = 128 * 1024;
        // The kernel's read-ahead: requests for 4 chunks at once, handled in a shuffled order.
        for group in (0..d.len()).step_by(4 * CHUNK) {
            for i in [1, 0, 3, 2] {
                let off = group + i * CHUNK;
                assert_eq!(h.read(&fake, off as u64, CHUNK).unwrap(), &d[off..off + CHUNK]);
            }
        }
        assert_eq!(fake.opens.load(Ordering::SeqCst), 1, "no restarts");
    }

    #[test]
    fn the_servers_refusal_keeps_its_kind() {
        let fake = FakeRemote::new();
        let h = ReadHandle::new("vanished".into(), 10, None);
        let err = h.read(&fake, 0, 10).unwrap_err();
        assert!(matches!(err, crate::remote::RemoteError::NotFound(_)), "ENOENT, not EIO: {err:?}");
    }

    #[test]
    fn far_jumps_restart_and_small_gaps_skip() {
        let fake = FakeRemote::new();
        let d = data(4 << 20);
        fake.add_file("f", &d, SystemTime::now());
        let h = ReadHandle::new("f".into(), d.len() as u64, None);
        assert_eq!(h.read(&fake, 0, 100).unwrap(), &d[..100]);
        assert_eq!(h.read(&fake, 1000, 100).unwrap(), &d[1000..1100], "small gap skipped");
        assert_eq!(fake.opens.load(Ordering::SeqCst), 1);
        assert_eq!(h.read(&fake, 3 << 20, 100).unwrap(), &d[3 << 20..(3 << 20) + 100]);
        assert_eq!(h.read(&fake, 10, 100).unwrap(), &d[10..110], "backwards restarts");
        assert_eq!(fake.opens.load(Ordering::SeqCst), 3);
    }

    /// Two handles on one file, sharing a content cache entry.
    fn two_readers(fake: &FakeRemote, d: &[u8]) -> (ReadHandle, ReadHandle, tempfile::TempDir) {
        fake.add_file("f", d, SystemTime::now());
        let dir = tempfile::tempdir().unwrap();
        let cache = super::super::content::ContentCache::open(dir.path(), 1 << 30).unwrap();
        let version = super::super::content::Version::of(d.len() as u64, SystemTime::UNIX_EPOCH);
        let handle = || ReadHandle::new("f".into(), d.len() as u64, cache.open_file("f", version));
        (handle(), handle(), dir)
    }

    fn read_whole(h: &ReadHandle, fake: &FakeRemote, size: usize, pause: Duration) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < size {
            got.extend(h.read(fake, got.len() as u64, 64 * 1024).unwrap());
            std::thread::sleep(pause);
        }
        got
    }

    #[test]
    fn two_readers_of_a_file_at_once_share_one_download() {
        let fake = FakeRemote::new();
        let d = data(3 << 20);
        let (a, b, _dir) = two_readers(&fake, &d);
        std::thread::scope(|s| {
            let first = s.spawn(|| read_whole(&a, &fake, d.len(), Duration::from_millis(2)));
            std::thread::sleep(Duration::from_millis(20));
            let second = s.spawn(|| read_whole(&b, &fake, d.len(), Duration::ZERO));
            assert!(first.join().unwrap() == d, "the first reader's bytes");
            assert!(second.join().unwrap() == d, "the second reader's bytes");
        });
        assert_eq!(fake.opens.load(Ordering::SeqCst), 1, "one download served both");
    }

    #[test]
    fn a_reader_that_stops_is_not_waited_for_long() {
        let fake = FakeRemote::new();
        let d = data(3 << 20);
        let (a, b, _dir) = two_readers(&fake, &d);
        // The first reader takes 128 KiB and keeps the file open, reading no more.
        assert_eq!(a.read(&fake, 0, 128 * 1024).unwrap(), &d[..128 * 1024]);
        let start = Instant::now();
        assert!(read_whole(&b, &fake, d.len(), Duration::ZERO) == d);
        assert!(start.elapsed() < Duration::from_secs(5), "waited {:?}", start.elapsed());
        assert_eq!(fake.opens.load(Ordering::SeqCst), 2, "the second reader fetched the rest itself");
    }

    #[test]
    fn reads_past_the_end_need_no_transfer() {
        let fake = FakeRemote::new();
        fake.add_file("f", b"abc", SystemTime::now());
        let h = ReadHandle::new("f".into(), 3, None);
        assert!(h.read(&fake, 3, 10).unwrap().is_empty());
        assert_eq!(h.read(&fake, 1, 10).unwrap(), b"bc");
        assert_eq!(fake.opens.load(Ordering::SeqCst), 1);
    }
}
