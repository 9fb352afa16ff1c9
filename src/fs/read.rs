//! Reading an open file: one streamed download (`REST` + `RETR`) kept open while reads are
//! sequential, skipped forward over small gaps, restarted at the new offset for far jumps,
//! and given back to the pool when idle or when other requests wait for a session.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::content::{CachedFile, Downloading};
use crate::remote::{ReadStream, Remote, RemoteError, Result};

mod buffers;
mod cache_writer;

pub use buffers::Bytes;
use buffers::{Gather, Window};
use cache_writer::{AHEAD, CacheWriter};

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
    /// Shows other readers of the file where this download is (it fills the cache); shared
    /// with the cache writer's jobs, so it lasts until the download's bytes are written.
    mark: Option<Arc<Downloading>>,
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

#[derive(Default)]
struct State {
    stream: Option<Open>,
    window: Window,
    /// The current read wants bytes past `size`: keep the stream at the end to look for more.
    probe: bool,
    /// What the content cache holds of this version of the file; downloads fill it.
    cache: Option<Arc<CachedFile>>,
    /// This reader is to download the bytes the current read wants (see
    /// [`CachedFile::wait_for`]): the mark, until its transfer is opened.
    claim: Option<Downloading>,
    /// Bytes were handed to the cache writer (see [`CacheWriter`]).
    storing: bool,
    /// Bytes of this file waiting for the cache writer.
    queued: Arc<std::sync::atomic::AtomicUsize>,
    /// Bytes not kept because the cache writer was behind.
    skipped: u64,
}

impl State {
    /// Where a new download that is to serve `at` starts: at the first of the missing bytes
    /// just before it, when they are few. The kernel's read-ahead requests arrive out of order
    /// (more so on a busy machine); a download started at the later one would leave the
    /// earlier one to a second download, and the server would send those bytes twice.
    fn start_for(&self, at: u64) -> u64 {
        let window_end = self.window.end().filter(|&e| e <= at).unwrap_or(0);
        let missing_from = self.cache.as_ref().map_or(0, |c| c.missing_from(at)).max(window_end);
        if at - missing_from <= SKIP_LIMIT { missing_from } else { at }
    }

    /// Whether the open stream can serve `at` (it is there, or a small skip ahead).
    fn reusable(&self, at: u64) -> bool {
        self.stream.as_ref().is_some_and(|o| at >= o.pos && at - o.pos <= SKIP_LIMIT)
    }

    /// Records bytes read from the server at `at`.
    fn record(&mut self, at: u64, bytes: &Bytes) {
        if let Some(c) = &self.cache {
            if c.dropped() {
                self.cache = None;
            } else if CacheWriter::get().store(c, at, bytes.clone(), &self.queued, self.mark()) {
                self.storing = true;
            } else {
                c.not_kept(bytes.len() as u64);
                self.skipped += bytes.len() as u64;
            }
        }
        self.window.push(at, bytes.clone());
    }

    fn mark(&self) -> Option<Arc<Downloading>> {
        self.stream.as_ref().and_then(|o| o.mark.clone())
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
    cache: Option<Arc<CachedFile>>,
    /// The version of the file the download is of: only an open of that version continues it.
    pub size: u64,
    pub mtime: Option<std::time::SystemTime>,
}

impl Parked {
    /// How long the parked download has gone unread.
    pub fn idle_for(&self) -> Duration {
        self.stream.last_used.elapsed()
    }

    /// Ends the download no one came back for (see [`Open::end`]).
    pub fn end(self) {
        self.stream.end(self.cache.as_deref());
    }
}

/// One open file being read: a window of recent bytes, the content cache's copy, and at
/// most one download (`REST` + `RETR`) kept open while reads follow each other.
pub struct ReadHandle {
    /// The file's path, relative to the mount root.
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
    /// When the file was opened (for `status`).
    pub opened: Instant,
}

impl ReadHandle {
    /// A handle for `path` of `size` bytes; nothing is downloaded before the first read.
    pub fn new(path: String, size: u64, cache: Option<CachedFile>) -> Self {
        ReadHandle {
            path,
            size: size.into(),
            grown: Default::default(),
            state: Mutex::new(State { cache: cache.map(Arc::new), ..State::default() }),
            delivered: Default::default(),
            opened: Instant::now(),
        }
    }

    /// Whether a download is open or being read right now.
    pub fn in_flight(&self) -> bool {
        self.state.try_lock().is_none_or(|st| st.stream.is_some())
    }

    /// Up to `len` bytes at `offset`: from the recent bytes or the cache, else from the open
    /// download, which is started, skipped forward or restarted at `offset` as needed.
    pub fn read(&self, remote: &dyn Remote, offset: u64, len: usize) -> Result<Bytes> {
        let size = self.size();
        if offset >= size || len == 0 {
            return Ok(Bytes::default());
        }
        let want = len;
        let len = len.min((size - offset) as usize);
        let mut st = self.state.lock();
        let mut out = Gather::default();
        out.add(st.window.get(offset, len));
        while out.len < len {
            let at = offset + out.len as u64;
            let Some(c) = &st.cache else { break };
            let held = c.read(at, len - out.len);
            if !held.is_empty() {
                out.add(held.into());
                continue;
            }
            // Another reader's download of this file is about to bring these bytes (a file
            // manager's thumbnailer and its sniffer read an image at once): wait for them
            // rather than have the server send them twice.
            if st.reusable(at) {
                break;
            }
            // Never for this reader's own download: it cannot move while this read waits.
            let own = st.mark();
            match c.wait_for(at, SKIP_LIMIT, AHEAD as u64, SHARE_PATIENCE, own.as_deref()) {
                Ok(()) => {}
                Err(mark) => {
                    st.claim = Some(mark);
                    break;
                }
            }
        }
        st.probe = want > len;
        if out.len < len {
            let at = offset + out.len as u64;
            let read = self.read_stream(&mut st, remote, at, len - out.len);
            st.claim = None;
            out.add(read?);
        }
        if want > len && out.len == len {
            out.add(self.past_end(&mut st, want - len));
        }
        self.delivered.fetch_add(out.len as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(out.into_bytes())
    }

    /// Reads `len` bytes at `at` from the open stream (skipping a small gap) or a new one. A
    /// transfer that breaks (a dropped connection, a restarted server) is started again at the
    /// same offset, up to [`RESTARTS`] times; the pool waits for a restarting server meanwhile
    /// (`--reconnect-timeout`).
    fn read_stream(&self, st: &mut State, remote: &dyn Remote, at: u64, len: usize) -> Result<Bytes> {
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
    ) -> std::result::Result<Bytes, StreamError> {
        if !st.reusable(at) {
            // Ending a transfer waits for the server's reply (a round trip): let that happen
            // beside the new request, which takes another session (or this one, once freed).
            if let Some(old) = st.stream.take() {
                old.end(st.cache.as_deref());
            }
            let from = st.start_for(at);
            let now = Instant::now();
            let mark = match st.claim.take() {
                Some(m) => {
                    m.at(from);
                    Some(m)
                }
                None => st.cache.as_ref().map(|c| c.downloading(from)),
            };
            let stream = remote.open_read(&self.path, from).map_err(StreamError::Start)?;
            st.stream = Some(Open { stream, pos: from, since: now, last_used: now, mark: mark.map(Arc::new) });
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
                    old.end(st.cache.as_deref());
                }
            }
        }
    }

    /// Whether a download is open for this handle.
    pub fn has_stream(&self) -> bool {
        self.state.lock().stream.is_some()
    }

    /// The open download, for the next open of the file (see [`Parked`]); none while a read
    /// is in progress or when the transfer is at the end.
    pub fn park(&self, mtime: Option<std::time::SystemTime>) -> Option<Parked> {
        self.settle();
        let mut st = self.state.try_lock()?;
        let stream = st.stream.take().filter(|o| o.pos < self.size())?;
        if self.size() - stream.pos > PARK_UP_TO {
            stream.end(st.cache.as_deref());
            return None;
        }
        let (window, cache) = (std::mem::take(&mut st.window), st.cache.take());
        Some(Parked { stream, window, cache, size: self.size(), mtime })
    }

    /// Returns once what this handle downloaded is in the content cache (at close: the next
    /// open finds it there, as if it had been written at once).
    pub fn settle(&self) {
        let (storing, skipped) = {
            let mut st = self.state.lock();
            (std::mem::take(&mut st.storing), std::mem::take(&mut st.skipped))
        };
        if skipped > 0 {
            tracing::debug!("{}: {skipped} bytes read faster than the content cache could keep them", self.path);
        }
        if storing {
            CacheWriter::get().settle();
        }
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
    fn past_end(&self, st: &mut State, n: usize) -> Bytes {
        let size = self.size();
        let Some(open) = st.stream.as_mut().filter(|o| o.pos == size) else { return Bytes::default() };
        let extra = fill(&mut open.stream, Vec::new(), n).unwrap_or_default();
        open.pos += extra.len() as u64;
        // Past the size this version has: the cache is for that version only.
        st.cache = None;
        st.window.push(size, extra.clone());
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
fn read_at(st: &mut State, offset: u64, len: usize) -> std::io::Result<Bytes> {
    let from = st.stream.as_ref().expect("a stream is open").pos;
    let skip = (offset - from) as usize;
    if skip > 0 {
        let buf = st.window.buffer(skip);
        let open = st.stream.as_mut().expect("a stream is open");
        let skipped = fill(&mut open.stream, buf, skip)?;
        open.pos += skipped.len() as u64;
        let short = skipped.len() < skip;
        st.record(from, &skipped);
        st.moved_on();
        if short {
            return Ok(Bytes::default());
        }
    }
    let buf = st.window.buffer(len);
    let open = st.stream.as_mut().expect("a stream is open");
    let got = fill(&mut open.stream, buf, len)?;
    open.pos += got.len() as u64;
    st.record(offset, &got);
    st.moved_on();
    Ok(got)
}

/// Up to `len` bytes from `r` read into `buf` (at least `len` long), fewer only at its end.
fn fill(r: &mut dyn Read, mut buf: Vec<u8>, len: usize) -> std::io::Result<Bytes> {
    buf.resize(buf.len().max(len), 0);
    let mut got = 0;
    while got < len {
        match r.read(&mut buf[got..len]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf.into())
}

#[cfg(test)]
#[path = "read_tests.rs"]
mod tests;
