//! The FTP(S) implementation of [`Remote`]: the only module that talks to suppaftp.

pub mod connect;
mod cut;
pub mod diagnose;
mod file_attrs;
#[cfg(test)]
mod fuzz_tests;
pub mod listing;
mod profile;
pub mod reply;
mod retry;
pub mod session;
pub mod socket;
mod streams;
#[cfg(test)]
mod test_server;
mod times;
pub mod tls_adapter;
pub mod zone;

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use self::file_attrs::MtimeCommand;
use self::listing::{EntryKind, ListEntry, Skip};
use self::session::{Endpoint, Features, FtpSession, Pipelined, Pipelining};
use self::streams::{FtpReadStream, FtpWriteStream};
use self::times::{KnownTimes, times_to_utc, wants_exact_time};
use self::zone::ServerZone;
use super::pool::{self, Health, Pool, PoolConfig};
use super::{Applied, Entry, Kind, Listed, ReadStream, Remote, RemoteError, Result, SessionStats, Space, WriteStream};
use crate::clock::Clock;
use crate::names::Charset;

pub use self::session::{Security, TlsMode};
pub use self::zone::UtcOffset;

/// MDTM requests per batch where the server answers one command at a time; batches of one
/// listing run on several sessions at once. Each MDTM is then a round trip, so over a slow link
/// the batches are small and spread over up to `MDTM_SESSIONS` sessions (never more than the
/// pool allows).
const MDTM_BATCH: usize = 16;
const MDTM_SESSIONS: usize = 16;
/// Where the server takes commands sent without waiting: MDTMs per batch (one round trip
/// each), and the most bytes of command lines per batch, so the server never has much unread.
const PIPELINE_BATCH: usize = 64;
const PIPELINE_BYTES: usize = 16 << 10;
/// How long the first pipelined batch waits for each reply: a server that drops commands sent
/// after the first would otherwise cost a whole --io-timeout before the fallback.
const PIPELINE_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// The longest an idle session's NOOP may take before the server counts as not answering.
const HEALTH_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub struct FtpConnector {
    endpoint: Endpoint,
    features: OnceLock<Arc<Features>>,
}

impl pool::Connector for FtpConnector {
    type Session = FtpSession;

    fn connect(&self) -> Result<FtpSession> {
        let s = connect::open_session(&self.endpoint, &self.features)?;
        tracing::debug!("opened a session to {}", self.endpoint.addr());
        Ok(s)
    }

    fn check(&self, session: &mut FtpSession) -> Health {
        // A live server answers NOOP at once; waiting a whole --io-timeout per idle session
        // would make a stuck server cost one timeout per session.
        session.set_reply_timeout(self.endpoint.io_timeout.min(HEALTH_CHECK_TIMEOUT));
        let health = session.noop();
        session.set_reply_timeout(self.endpoint.io_timeout);
        health
    }

    fn closed(&self, session: &FtpSession) -> bool {
        session.closed_by_server()
    }

    fn close(&self, session: FtpSession) {
        session.quit();
    }
}

pub struct FtpRemote {
    pool: Arc<Pool<FtpConnector>>,
    mtime_command: parking_lot::Mutex<Option<MtimeCommand>>,
    chmod_unsupported: std::sync::atomic::AtomicBool,
    /// The server directory the mount's root maps to, without a trailing slash.
    base: String,
    scheme: &'static str,
    charset: Charset,
    /// The zone LIST (and maybe MDTM) times are in: `--server-timezone`, or learned.
    zone: ServerZone,
    /// How the first session was secured.
    security: Security,
    /// Whether the server answers `AVBL` (see [`Avbl`]).
    avbl: std::sync::atomic::AtomicU8,
    /// Directories whose listings the server cut short.
    cuts: parking_lot::Mutex<cut::CutDirs>,
}

/// What is known of the server's `AVBL` (the space available to the user).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Avbl {
    NotAsked = 0,
    Answers = 1,
    /// Refused as unknown or not implemented (`500`, `502`, …): not asked again.
    Refused = 2,
}

impl Avbl {
    fn from_u8(v: u8) -> Avbl {
        match v {
            1 => Avbl::Answers,
            2 => Avbl::Refused,
            _ => Avbl::NotAsked,
        }
    }
}

impl FtpRemote {
    /// Connects the first session now, so a mount fails early with a clear message.
    pub fn connect(
        endpoint: Endpoint,
        max_sessions: usize,
        base: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, Security)> {
        let scheme = match endpoint.tls {
            TlsMode::Implicit | TlsMode::Explicit => "ftps",
            _ => "ftp",
        };
        let charset = endpoint.charset;
        let zone = ServerZone::new(endpoint.server_timezone);
        let connector = FtpConnector { endpoint, features: OnceLock::new() };
        let pool = Pool::new(connector, PoolConfig::new(max_sessions), clock);
        let security = pool.checkout()?.security;
        // Only now: a wrong address or a server that is down fails the mount at once.
        pool.set_reconnect_for(pool.connector().endpoint.reconnect_for);
        let base = base.trim_end_matches('/').to_string();
        let remote = FtpRemote {
            pool,
            base,
            scheme,
            charset,
            zone,
            security,
            mtime_command: parking_lot::Mutex::new(None),
            chmod_unsupported: Default::default(),
            avbl: Default::default(),
            cuts: Default::default(),
        };
        Ok((remote, security))
    }

    /// Closes idle sessions past their time; the mount's janitor calls it.
    pub fn reap(&self) {
        self.pool.reap();
    }

    /// Closes all idle sessions (unmount).
    pub fn close(&self) {
        self.pool.close_all();
    }

    fn server_path(&self, rel: &str) -> String {
        if rel.is_empty() {
            if self.base.is_empty() { "/".to_string() } else { self.base.clone() }
        } else {
            format!("{}/{}", self.base, rel)
        }
    }

    /// Whether `path` is listed in its directory now.
    fn listed(&self, path: &str) -> bool {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        self.list_names(dir).is_ok_and(|names| names.iter().any(|n| n == name))
    }

    /// MLSD names symbolic links without their targets (ProFTPD `type=OS.unix=symlink`,
    /// Pure-FTPd `type=OS.unix=slink:`); the directory's Unix listing shows them. One more
    /// listing, only for directories that hold such links.
    fn fill_link_targets(&self, dir: &str, entries: &mut [ListEntry]) {
        let missing = |e: &ListEntry| matches!(e.kind, EntryKind::Symlink { target: None });
        if !entries.iter().any(missing) {
            return;
        }
        let what = format!("listing {dir} for link targets");
        if let Some(f) = self.pool.connector().features.get() {
            f.link_targets_from_list.store(true, Ordering::Relaxed);
        }
        let lines = match self.with_session(true, |s| s.unix_list_lines(dir, &what, false)) {
            Ok(r) => r.lines,
            Err(e) => return tracing::debug!("{e}"),
        };
        cut::take_link_targets(entries, &parse_listing(dir, &lines, false));
    }

    /// A directory's entries; `exact_times`: with `MDTM` for entries the listing gives no
    /// seconds for. Also says whether the entries are exact (nothing was left to ask) and
    /// whether they are all of them (see [`cut`]).
    fn list_with(&self, dir: &str, exact_times: bool) -> Result<Listed> {
        let path = self.server_path(dir);
        let started = std::time::Instant::now();
        let fetch = |on_line: &mut dyn FnMut(&str)| self.fetch(&path, on_line);
        let (fetched, known) =
            if exact_times { self.list_asking_times(&path, fetch)? } else { (fetch(&mut |_| {})?, KnownTimes::new()) };
        let cut::Fetched { mut mlsd, mut list, complete, list_seen, .. } = fetched;
        let listed_in = started.elapsed();
        let features = self.pool.connector().features.get().cloned().unwrap_or_default();
        // LIST's entries: exact times where they lack seconds, then UTC.
        let (listed, listed_at): (Vec<_>, _) = (list.iter().map(|e| e.mtime.clone()).collect(), SystemTime::now());
        let exact = !features.mdtm || !mlsd.iter().chain(&list).any(wants_exact_time);
        if features.mdtm && exact_times {
            self.fill_exact_times(&path, &mut mlsd, &KnownTimes::new())?;
            self.fill_exact_times(&path, &mut list, &known)?;
        }
        if !list_seen {
            self.fill_link_targets(&path, &mut mlsd);
        }
        times_to_utc(&self.zone, &mut list, listed, listed_at);
        mlsd.append(&mut list);
        for e in &mut mlsd {
            if let EntryKind::Symlink { target: Some(t) } = &mut e.kind {
                if let Some(rel) = relative_link(&self.base, &path, t) {
                    *t = rel;
                }
            }
        }
        let n = mlsd.len();
        tracing::debug!("listed {path}: {n} entries in {:.2?} ({listed_in:.2?} for the listing)", started.elapsed());
        Ok(Listed { entries: mlsd.into_iter().map(to_entry).collect(), exact, complete })
    }
}

/// An absolute link target inside the mounted tree, rewritten relative to the link's
/// directory, so it resolves inside the mount rather than on the local disk.
fn relative_link(base: &str, dir: &str, target: &str) -> Option<String> {
    if !target.starts_with('/') || !(base.is_empty() || target == base || target.starts_with(&format!("{base}/"))) {
        return None;
    }
    let parts = |p: &str| p.split('/').filter(|c| !c.is_empty()).map(str::to_string).collect::<Vec<_>>();
    let (from, to) = (parts(dir), parts(target));
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut rel: Vec<String> = vec!["..".to_string(); from.len() - common];
    rel.extend(to[common..].iter().cloned());
    Some(if rel.is_empty() { ".".to_string() } else { rel.join("/") })
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') { format!("{dir}{name}") } else { format!("{dir}/{name}") }
}

fn parse_listing(dir: &str, lines: &listing::Lines, mlsd: bool) -> Vec<ListEntry> {
    let now = SystemTime::now();
    let mut entries = Vec::with_capacity(lines.len());
    let mut skipped = 0;
    for line in lines.iter() {
        let parsed = if mlsd { listing::parse_mlsd_line(line) } else { listing::parse_list_line(line, now) };
        match parsed {
            Ok(e) => entries.push(e),
            Err(Skip::Ignored) => {}
            Err(Skip::Unparsable(why)) => {
                skipped += 1;
                if skipped <= 3 {
                    tracing::warn!("skipping a listing line of {dir} ({why}): {line:?}");
                }
            }
        }
    }
    if skipped > 3 {
        tracing::warn!("skipped {skipped} unparsable lines in the listing of {dir} in all");
    }
    entries
}

fn to_entry(e: ListEntry) -> Entry {
    Entry {
        name: e.name,
        kind: match e.kind {
            EntryKind::File => Kind::File,
            EntryKind::Dir => Kind::Dir,
            EntryKind::Symlink { target } => Kind::Symlink(target),
            EntryKind::Other => Kind::Other,
        },
        size: e.size,
        mtime: e.mtime.map(|t| t.time),
        mode: e.mode,
    }
}

impl Remote for FtpRemote {
    fn list(&self, dir: &str) -> Result<Vec<Entry>> {
        Ok(self.list_with(dir, true)?.entries)
    }

    fn list_quick(&self, dir: &str) -> Result<(Vec<Entry>, bool)> {
        let listed = self.list_with(dir, false)?;
        Ok((listed.entries, listed.exact))
    }

    fn list_detailed(&self, dir: &str, exact_times: bool) -> Result<Listed> {
        self.list_with(dir, exact_times)
    }

    fn list_names(&self, dir: &str) -> Result<Vec<String>> {
        // The listing, without the MDTM round trips `list` may add for exact times.
        let f = self.fetch(&self.server_path(dir), &mut |_| {})?;
        Ok(f.mlsd.into_iter().chain(f.list).map(|e| e.name).collect())
    }

    fn lookup(&self, path: &str) -> Result<Option<Entry>> {
        match self.lookup_entry(path)? {
            Some(found) => Ok(found),
            None => super::lookup_in_listing(self, path),
        }
    }

    fn open_read(&self, path: &str, offset: u64) -> Result<Box<dyn ReadStream>> {
        let server_path = self.server_path(path);
        let what = format!("reading {server_path}");
        self.start_transfer::<dyn ReadStream>(
            |lease| lease.retr(&server_path, offset),
            |transfer, lease| Box::new(FtpReadStream::new(transfer, lease, what.clone())),
        )
    }

    fn open_write(&self, path: &str, append: bool) -> Result<Box<dyn WriteStream>> {
        let server_path = self.server_path(path);
        let io_timeout = self.pool.connector().endpoint.io_timeout;
        // Nothing was sent yet when starting fails, so a second try is safe (e.g. a data
        // connection's TLS session refused with 522, which a fresh session gets past).
        self.start_transfer::<dyn WriteStream>(
            |lease| lease.stor(&server_path, append),
            |transfer, lease| {
                Box::new(FtpWriteStream {
                    transfer: Some(transfer),
                    lease,
                    path: server_path.clone(),
                    io_timeout,
                    sent: 0,
                })
            },
        )
    }

    fn size(&self, path: &str) -> Result<Option<u64>> {
        let p = self.server_path(path);
        self.with_session(true, |s| s.size(&p))
    }

    fn mtime(&self, path: &str) -> Result<Option<SystemTime>> {
        let p = self.server_path(path);
        Ok(self.zone.from_mdtm(self.with_session(true, |s| s.mdtm(&p))?))
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (f, t) = (self.server_path(from), self.server_path(to));
        let moved = |e: &RemoteError| matches!(e, RemoteError::NotFound(_)) && self.listed(to) && !self.listed(from);
        self.change(|s| s.rename(&f, &t), moved)
    }

    fn rename_upload(&self, from: &str, to: &str, mode: Option<u32>, mtime: Option<SystemTime>) -> Result<Applied> {
        self.rename_upload_at_once(from, to, mode, mtime)
    }

    fn delete(&self, path: &str) -> Result<()> {
        let p = self.server_path(path);
        self.change(|s| s.delete(&p), |e| matches!(e, RemoteError::NotFound(_)))
    }

    fn mkdir(&self, path: &str) -> Result<()> {
        let p = self.server_path(path);
        self.change(|s| s.mkdir(&p), |e| matches!(e, RemoteError::AlreadyExists(_)))
    }

    fn rmdir(&self, path: &str) -> Result<()> {
        let p = self.server_path(path);
        self.change(|s| s.rmdir(&p), |e| matches!(e, RemoteError::NotFound(_)))
    }

    fn set_mtime(&self, path: &str, time: SystemTime) -> Result<()> {
        self.set_time(path, time)
    }

    fn refuses_name(&self, name: &str) -> Option<String> {
        self.charset.check(name).err()
    }

    fn chmod(&self, path: &str, mode: u32) -> Result<()> {
        self.set_mode(path, mode)
    }

    /// `AVBL path` (draft-peterson-streamlined-ftp-command-extensions): Serv-U and a few
    /// others answer `213 BYTES`. Asked whatever FEAT says (servers that have it do not always
    /// list it); a server that does not know it is not asked again.
    fn space(&self, path: &str) -> Result<Option<Space>> {
        if Avbl::from_u8(self.avbl.load(Ordering::Relaxed)) == Avbl::Refused {
            return Ok(None);
        }
        let p = self.server_path(path);
        let what = format!("asking the space available in {p} (AVBL)");
        match self.with_session(true, |s| s.command(&format!("AVBL {p}"), &[suppaftp::Status::File]))? {
            Ok(text) => match listing::parse_avbl_reply(&text) {
                Some(available) => {
                    self.avbl.store(Avbl::Answers as u8, Ordering::Relaxed);
                    Ok(Some(Space { available, total: None }))
                }
                None => {
                    tracing::debug!("{what}: an answer we cannot read: {text:?}; not asking again");
                    self.avbl.store(Avbl::Refused as u8, Ordering::Relaxed);
                    Ok(None)
                }
            },
            // Unknown command, not implemented, bad parameters: the server has no AVBL.
            Err((500 | 501 | 502 | 504, text)) => {
                tracing::debug!("{what}: server said \"{text}\"; free space is unknown");
                self.avbl.store(Avbl::Refused as u8, Ordering::Relaxed);
                Ok(None)
            }
            Err((code, text)) => Err(reply_error(&what, code, &text)),
        }
    }

    fn profile(&self) -> Vec<(String, String)> {
        self.describe_server()
    }

    fn sessions_wanted(&self) -> bool {
        self.pool.has_waiters()
    }

    fn session_stats(&self) -> SessionStats {
        self.pool.stats()
    }

    fn describe(&self) -> String {
        let ep = &self.pool.connector().endpoint;
        format!("{}://{}@{}{}", self.scheme, ep.user, ep.addr(), if self.base.is_empty() { "/" } else { &self.base })
    }

    /// Close-to-open revalidation: `MLST` (one command) where the server has it, else `SIZE`
    /// and `MDTM` on one session.
    fn stat(&self, path: &str) -> Result<Option<(u64, Option<SystemTime>)>> {
        let p = self.server_path(path);
        self.with_session(true, |s| {
            if s.features.mlsd {
                match s.mlst(&p) {
                    Ok(None) => return Ok(None),
                    Ok(Some(facts)) => {
                        // The MLSD line parser wants a name after the facts.
                        let facts = facts.split_once(' ').map_or(facts.as_str(), |(f, _)| f);
                        if let Ok(e) = listing::parse_mlsd_line(&format!("{facts} x")) {
                            return Ok(Some((e.size, e.mtime.map(|t| t.time))));
                        }
                    }
                    Err(RemoteError::Unsupported(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            if s.features.mdtm
                && Pipelining::from_u8(s.features.pipelining.load(Ordering::Relaxed)) == Pipelining::Works
            {
                return self.size_and_time_pipelined(s, &p);
            }
            let size = match s.size(&p) {
                Ok(Some(n)) => n,
                Ok(None) => return Err(RemoteError::Unsupported(format!("{p}: the server does not tell its size"))),
                Err(RemoteError::NotFound(_)) => return Ok(None),
                Err(e) => return Err(e),
            };
            Ok(Some((size, if s.features.mdtm { self.zone.from_mdtm(s.mdtm(&p)?) } else { None })))
        })
    }
}

impl FtpRemote {
    /// `SIZE` and `MDTM` of `p` sent at once (one round trip: an open's revalidation), on a
    /// server known to take commands sent without waiting. A surprise in the replies leaves
    /// the session out of step: it is retired and the server asked one command at a time
    /// from then on (the caller's retry does that).
    fn size_and_time_pipelined(&self, s: &mut FtpSession, p: &str) -> Result<Option<(u64, Option<SystemTime>)>> {
        const ANSWER: [suppaftp::Status; 1] = [suppaftp::Status::File];
        let commands = [(format!("SIZE {p}"), &ANSWER[..]), (format!("MDTM {p}"), &ANSWER[..])];
        let replies = match s.pipeline(&commands, None)? {
            Pipelined::Done(replies) => replies,
            Pipelined::Surprise(why) => {
                s.features.pipelining.store(Pipelining::Refused as u8, Ordering::Relaxed);
                tracing::info!(
                    "the server did not answer SIZE and MDTM sent at once as expected ({why}); \
                     sending commands one at a time from now on"
                );
                return Err(RemoteError::Connection(format!("asking the size and time of {p}: {why}")));
            }
        };
        let mut replies = replies.into_iter();
        let size = match replies.next().expect("one reply per command") {
            Ok(text) => text.rsplit(' ').next().and_then(|n| n.trim().parse::<u64>().ok()),
            Err((550, _)) => return Ok(None),
            Err((code, text)) if code >= 500 => {
                return Err(RemoteError::Unsupported(format!(
                    "{p}: the server does not tell its size ({code} {text})"
                )));
            }
            Err((code, text)) => return Err(reply_error(&format!("asking the size of {p} (SIZE)"), code, &text)),
        };
        let Some(size) = size else {
            return Err(RemoteError::Unsupported(format!("{p}: the server's SIZE reply has no size")));
        };
        let mtime = match replies.next().expect("one reply per command") {
            Ok(text) => listing::parse_mdtm_reply(&text),
            Err((code, _)) if code >= 500 => None,
            Err((code, text)) => return Err(reply_error(&format!("asking the time of {p} (MDTM)"), code, &text)),
        };
        Ok(Some((size, self.zone.from_mdtm(mtime))))
    }
}

fn reply_error(what: &str, code: u16, text: &str) -> RemoteError {
    let resp = suppaftp::types::Response::new(suppaftp::Status::from(code as u32), text.as_bytes().to_vec());
    reply::map_reply(what, &resp)
}

#[cfg(test)]
#[path = "ftp_tests.rs"]
mod tests;
