//! One FTP control session: connect (plain, explicit or implicit TLS), log in, learn the
//! server's features, and the few commands the remote layer needs.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use suppaftp::types::FileType;
use suppaftp::{FtpError, ImplFtpStream, Mode, Status, TransferStream};

use super::reply;
use super::tls_adapter::{FtpTlsStream, SessionTls};
use crate::names::{self, Charset};
use crate::remote::pool::Health;
use crate::remote::{RemoteError, Result};
use crate::secret::Secret;
use crate::tls::TlsClient;

mod pipeline;
pub use pipeline::{Pipelined, Pipelining, Reply};

pub type Ftp = ImplFtpStream<FtpTlsStream>;
pub type Transfer = TransferStream<FtpTlsStream>;

/// The seed's four SSL choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Use TLS if the server offers it (`AUTH TLS`), else plain with a warning.
    Auto,
    /// Require explicit TLS (`AUTH TLS` on the normal port).
    Explicit,
    /// Require implicit TLS (TLS from the first byte, usually port 990).
    Implicit,
    /// Never use TLS (insecure).
    Off,
}

/// Everything needed to open a session.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Secret,
    pub tls: TlsMode,
    pub tls_client: Option<Arc<TlsClient>>,
    pub connect_timeout: Duration,
    pub io_timeout: Duration,
    /// How long operations keep reconnecting through an outage (`--reconnect-timeout`).
    pub reconnect_for: Duration,
    /// Set once a session has logged in here: a greeting that does not come is then a stuck
    /// server, not a port that speaks implicit TLS, and is not worth a probe (a second wait).
    pub greeted_before: Arc<AtomicBool>,
    /// The charset of file names on the server (`--encoding`).
    pub charset: Charset,
    /// The zone the server's LIST (and MDTM) times are in (`--server-timezone`); `None`:
    /// learned by comparing LIST with MDTM.
    pub server_timezone: Option<super::zone::UtcOffset>,
}

impl Endpoint {
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// What the server said it can do (FEAT), learned once per mount.
#[derive(Debug, Default)]
pub struct Features {
    pub mlsd: bool,
    pub epsv: bool,
    pub mdtm: bool,
    pub mfmt: bool,
    pub size: bool,
    pub utf8: bool,
    pub rest_stream: bool,
    /// Cleared when the server refuses `LIST -a` (then hidden files may be missing).
    pub list_dash_a: AtomicBool,
    /// Set once the log has said that names here are not in the charset of the mount.
    pub foreign_names_told: AtomicBool,
    /// How the server ends a download closed early (see [`EarlyClose`]), once seen.
    pub early_close: std::sync::atomic::AtomicU8,
    /// Set once MLSD named a link without its target and LIST was asked for it.
    pub link_targets_from_list: AtomicBool,
    /// Whether the server takes commands sent without waiting (see [`Pipelining`]).
    pub pipelining: std::sync::atomic::AtomicU8,
}

/// How a server answers when a download's data connection is closed before the end.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyClose {
    NotSeen = 0,
    /// `426`/`451`/`226`: the session goes on.
    Reply = 1,
    /// A `1xx` line and nothing after it (Pure-FTPd): the session goes on.
    Preliminary = 2,
    /// The control connection is closed or out of step (inetutils): one reconnect.
    HangsUp = 3,
}

impl EarlyClose {
    pub fn describe(v: u8) -> &'static str {
        match v {
            1 => "answers 426/226: the session is reused",
            2 => "answers with a 150 line (Pure-FTPd): a NOOP checks the session, which is reused",
            3 => "closes the control connection: one reconnect each",
            _ => "not seen yet",
        }
    }
}

impl Features {
    fn from_feat(feat: &suppaftp::types::Features) -> Self {
        let has = |k: &str| feat.keys().any(|f| f.eq_ignore_ascii_case(k));
        let rest_stream = feat.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("REST") && v.as_deref().is_some_and(|v| v.eq_ignore_ascii_case("STREAM"))
        });
        Features {
            mlsd: has("MLSD") || has("MLST"),
            epsv: has("EPSV"),
            mdtm: has("MDTM"),
            mfmt: has("MFMT"),
            size: has("SIZE"),
            utf8: has("UTF8"),
            rest_stream,
            list_dash_a: AtomicBool::new(true),
            foreign_names_told: AtomicBool::new(false),
            early_close: Default::default(),
            link_targets_from_list: AtomicBool::new(false),
            pipelining: Default::default(),
        }
    }
}

/// File names on the wire in the mount's charset, without loss (see [`names`]).
#[derive(Debug)]
struct WireNames(Charset);

impl suppaftp::Encoding for WireNames {
    fn decode(&self, bytes: &[u8]) -> String {
        self.0.decode(bytes)
    }

    fn encode(&self, text: &str) -> io::Result<Vec<u8>> {
        self.0.encode(text).map_err(|c| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("'{c}' has no byte in the server's charset ({})", self.0),
            )
        })
    }
}

/// A listing being received.
struct Listing(Transfer);

/// A listing as it arrived: its lines, and the line of its final reply saying the server cut
/// it short (Pure-FTPd: `226 Output truncated to 10000 matches`), if one does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    pub lines: super::listing::Lines,
    pub cut: Option<String>,
}

impl Listing {
    /// Its lines, within [`MAX_LISTING`] and [`MAX_LINE`]: a server cannot make the daemon
    /// hold more than that, however much it sends.
    fn read(self, what: &str, charset: Charset, on_line: &mut dyn FnMut(&str)) -> Result<Received> {
        let mut reader = io::BufReader::new(self.0);
        match super::listing::read_lines(&mut reader, charset, MAX_LISTING, MAX_LINE, on_line) {
            Ok(lines) => {
                let end = reader.into_inner().finish_with_reply().map_err(|e| reply::map(what, e))?;
                Ok(Received { lines, cut: reply::cut_notice(&reply::full_text(&end)) })
            }
            // Ending the transfer early leaves the session out of step: it is not reused.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(RemoteError::Protocol(format!("{what}: {e}"))),
            Err(e) => Err(RemoteError::Connection(format!("{what}: {e}"))),
        }
    }
}

/// Most bytes one directory listing may take (about 3 million entries).
const MAX_LISTING: usize = 256 << 20;
/// Longest listing line (names are at most a few hundred bytes; MLSD facts add little).
const MAX_LINE: usize = 64 << 10;

/// How a session's TLS turned out, for logs and `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    Plain,
    Tls(Option<crate::tls::TlsVersion>),
}

impl std::fmt::Display for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Security::Plain => f.write_str("unencrypted"),
            Security::Tls(Some(v)) => write!(f, "{v}"),
            Security::Tls(None) => f.write_str("TLS"),
        }
    }
}

pub(super) fn tls_security(tls: &SessionTls) -> Security {
    Security::Tls(tls.control_info.lock().as_ref().and_then(|(_, v)| *v))
}

pub struct FtpSession {
    ftp: Ftp,
    cwd: Option<String>,
    charset: Charset,
    pub features: Arc<Features>,
    pub security: Security,
    pub tls: Option<Arc<SessionTls>>,
    pub data_note: DataNote,
    /// A `REST` not known to be used up (the transfer after it failed): the next transfer
    /// sends its own offset, even 0, so it cannot start where that one asked.
    rest_pending: bool,
}

/// Set when a data connection went to the control peer instead of the private address the
/// server announced (a server behind NAT): worth telling in `check`.
pub type DataNote = Arc<parking_lot::Mutex<Option<String>>>;

/// A connected control channel, secured as the TLS mode asks, before login.
pub struct Connection {
    pub ftp: Ftp,
    pub security: Security,
    pub tls: Option<Arc<SessionTls>>,
    pub data_note: DataNote,
}

impl Connection {
    /// The server's greeting (`220 …`).
    pub fn greeting(&self) -> String {
        welcome(&self.ftp)
    }
}

/// The greeting a control connection received (`220 …`).
pub fn welcome(ftp: &Ftp) -> String {
    ftp.get_welcome_msg().map(|m| m.trim().to_string()).unwrap_or_default()
}

impl FtpSession {
    /// A session on a connected (and, per the TLS mode, secured) control channel; not yet
    /// logged in.
    pub fn new(c: Connection) -> FtpSession {
        FtpSession {
            ftp: c.ftp,
            cwd: None,
            charset: Charset::Utf8,
            features: Arc::new(Features::default()),
            security: c.security,
            tls: c.tls,
            data_note: c.data_note,
            rest_pending: false,
        }
    }

    pub fn login(&mut self, ep: &Endpoint) -> Result<()> {
        let what = format!("logging in as '{}' on {}", ep.user, ep.addr());
        self.ftp.login(ep.user.as_str(), ep.password.expose()).map_err(|e| match e {
            FtpError::UnexpectedResponse(ref r) if reply::code(r) == 530 || reply::code(r) == 430 => {
                match reply::map_reply(&what, r) {
                    RemoteError::Login(m) => RemoteError::Login(m),
                    _ => RemoteError::Login(format!(
                        "{what} failed: server said \"{}\". Check the user name and password \
                         (FTPMOUNT_PASSWORD, --password-file, ~/.netrc or the config profile)",
                        reply::text(r)
                    )),
                }
            }
            e => reply::map(&what, e),
        })
    }

    pub fn setup(&mut self, ep: &Endpoint, features: &OnceLock<Arc<Features>>) -> Result<()> {
        self.ftp
            .transfer_type(FileType::Binary)
            .map_err(|e| reply::map("switching to binary transfers (TYPE I)", e))?;
        let feats = match features.get() {
            Some(f) => f.clone(),
            None => {
                let f = match self.ftp.feat() {
                    Ok(raw) => Features::from_feat(&raw),
                    Err(e) => {
                        tracing::debug!("FEAT failed ({e}); assuming a minimal server");
                        Features::default()
                    }
                };
                tracing::debug!(
                    "server features on {}: MLSD={} EPSV={} MDTM={} MFMT={} SIZE={} UTF8={} REST STREAM={}",
                    ep.addr(),
                    f.mlsd,
                    f.epsv,
                    f.mdtm,
                    f.mfmt,
                    f.size,
                    f.utf8,
                    f.rest_stream
                );
                features.get_or_init(|| Arc::new(f)).clone()
            }
        };
        if feats.utf8 && ep.charset == Charset::Utf8 {
            // Most servers use UTF-8 anyway; some need to be asked. A refusal changes nothing.
            let _ = self.ftp.opts("UTF8", Some("ON"));
        }
        // After login, so the user name and password go out as typed.
        self.ftp.set_encoding(WireNames(ep.charset));
        self.charset = ep.charset;
        self.ftp.set_mode(if feats.epsv { Mode::ExtendedPassive } else { Mode::Passive });
        self.features = feats;
        Ok(())
    }

    /// A health check for an idle session.
    pub fn noop(&mut self) -> Health {
        match self.ftp.noop() {
            Ok(()) => Health::Alive,
            Err(FtpError::ConnectionError(e))
                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
            {
                Health::Unresponsive
            }
            Err(_) => Health::Dead,
        }
    }

    /// An idle session's socket already says it is over: the server closed it (end of stream)
    /// or sent something unasked (a 421 goodbye). Costs no round trip.
    pub fn closed_by_server(&self) -> bool {
        let tcp = self.ftp.get_ref();
        if tcp.set_nonblocking(true).is_err() {
            return false;
        }
        let peeked = tcp.peek(&mut [0u8; 1]);
        let _ = tcp.set_nonblocking(false);
        !matches!(peeked, Err(ref e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// How long each coming reply may take (the default is --io-timeout).
    pub fn set_reply_timeout(&self, timeout: Duration) {
        let _ = self.ftp.get_ref().set_read_timeout(Some(timeout));
    }

    /// Says goodbye without waiting long for a dead server.
    pub fn quit(mut self) {
        self.set_reply_timeout(Duration::from_secs(1));
        let _ = self.ftp.quit();
    }

    /// Cuts the control connection at once; pending replies will fail fast.
    pub fn shutdown(&self) {
        let _ = self.ftp.get_ref().shutdown(std::net::Shutdown::Both);
    }

    /// Whether `path` is a directory one can change into.
    pub fn is_dir(&mut self, path: &str) -> Result<bool> {
        match self.cwd(path) {
            Ok(()) => Ok(true),
            Err(e) if e.breaks_session() => Err(e),
            Err(_) => Ok(false),
        }
    }

    fn cwd(&mut self, dir: &str) -> Result<()> {
        if self.cwd.as_deref() == Some(dir) {
            return Ok(());
        }
        self.cwd = None;
        self.ftp.cwd(dir).map_err(|e| reply::map(&format!("changing to directory {dir}"), e))?;
        self.cwd = Some(dir.to_string());
        Ok(())
    }

    /// The raw listing lines of `dir`: MLSD where offered, else `LIST -a` (vsftpd hides dot
    /// files from a bare LIST) run inside the directory, so odd names need no quoting.
    pub fn list_lines(&mut self, dir: &str) -> Result<Received> {
        self.list_lines_seen(dir, &mut |_| {})
    }

    /// [`Self::list_lines`], with `on_line` seeing each line as it arrives.
    pub fn list_lines_seen(&mut self, dir: &str, on_line: &mut dyn FnMut(&str)) -> Result<Received> {
        let what = format!("listing {dir}");
        if self.features.mlsd {
            let listing = self.listing(&format!("MLSD {dir}")).map_err(|e| reply::map(&what, e))?;
            return self.read_listing(listing, &what, on_line);
        }
        self.unix_lines(dir, &what, false, on_line)
    }

    /// The raw `LIST -a` (or `LIST`) lines of `dir`, also where MLSD is offered: Unix listings
    /// show symbolic links' targets (`name -> target`), which MLSD does not. `reversed`: with
    /// `-r`, the names in reverse order (where a server cuts listings short, the other end of
    /// the directory).
    pub fn unix_list_lines(&mut self, dir: &str, what: &str, reversed: bool) -> Result<Received> {
        self.unix_lines(dir, what, reversed, &mut |_| {})
    }

    fn unix_lines(&mut self, dir: &str, what: &str, reversed: bool, on_line: &mut dyn FnMut(&str)) -> Result<Received> {
        let what = what.to_string();
        let r = if reversed { "r" } else { "" };
        self.cwd(dir)?;
        if self.features.list_dash_a.load(Ordering::Relaxed) {
            match self.listing(&format!("LIST -a{r}")) {
                Ok(listing) => return self.read_listing(listing, &what, on_line),
                Err(FtpError::UnexpectedResponse(resp)) if reply::code(&resp) >= 500 && !reversed => {
                    // The option, or this directory (unreadable, gone)? Only a plain `LIST`
                    // that works where `LIST -a` did not tells; a directory's refusal must not
                    // hide dot files in every other directory for the rest of the mount.
                    let listing = self.listing("LIST").map_err(|e| reply::map(&what, e))?;
                    tracing::info!("server refused 'LIST -a' ({}); hidden files may not be listed", reply::text(&resp));
                    self.features.list_dash_a.store(false, Ordering::Relaxed);
                    return self.read_listing(listing, &what, on_line);
                }
                Err(e) => return Err(reply::map(&what, e)),
            }
        }
        let command = if reversed { "LIST -r" } else { "LIST" };
        let listing = self.listing(command).map_err(|e| reply::map(&what, e))?;
        self.read_listing(listing, &what, on_line)
    }

    /// The lines of a listing in the mount's charset. Says once per mount when names are not
    /// valid in it: they still work (kept byte for byte) but show oddly, and `--encoding` may
    /// be what the user wants.
    fn read_listing(&self, listing: Listing, what: &str, on_line: &mut dyn FnMut(&str)) -> Result<Received> {
        let received = listing.read(what, self.charset, on_line)?;
        if !self.features.foreign_names_told.load(Ordering::Relaxed)
            && received.lines.iter().any(names::has_escapes)
            && !self.features.foreign_names_told.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "some file names on the server are not valid {}; they are kept byte for byte, so they can \
                 still be opened, renamed and deleted, but show oddly. If the server uses a legacy charset, \
                 mount with --encoding latin1 or --encoding cp1252",
                self.charset
            );
        }
        Ok(received)
    }

    fn listing(&mut self, command: &str) -> std::result::Result<Listing, FtpError> {
        let (_, stream) = self.ftp.custom_data_command(command, &[Status::AboutToSend, Status::AlreadyOpen])?;
        Ok(Listing(stream))
    }

    /// The exact modification time of a file (`MDTM`), or `None` where the server has none.
    pub fn mdtm(&mut self, path: &str) -> Result<Option<SystemTime>> {
        match self.ftp.custom_command(format!("MDTM {path}"), &[Status::File]) {
            Ok(r) => Ok(super::listing::parse_mdtm_reply(&reply::text(&r))),
            Err(FtpError::UnexpectedResponse(r)) if reply::code(&r) >= 500 => Ok(None),
            Err(e) => Err(reply::map(&format!("asking the time of {path} (MDTM)"), e)),
        }
    }

    /// Starts a download at `offset` (`REST` + `RETR`; from the start, `RETR` alone: a round
    /// trip less for every whole-file read).
    pub fn retr(&mut self, path: &str, offset: u64) -> Result<Transfer> {
        let what = format!("reading {path} from byte {offset}");
        let offset =
            usize::try_from(offset).map_err(|_| RemoteError::Unsupported(format!("{what}: offset too large")))?;
        self.restart_at(offset, &what)?;
        let stream = self.ftp.retr_as_stream(path).map_err(|e| self.tls_detail(&what, e))?;
        self.rest_pending = false;
        Ok(stream)
    }

    /// `REST offset` where needed: for an offset, or to undo a `REST` not used up.
    fn restart_at(&mut self, offset: usize, what: &str) -> Result<()> {
        if offset > 0 || self.rest_pending {
            self.rest_pending = true;
            self.ftp.resume_transfer(offset).map_err(|e| reply::map(what, e))?;
            self.rest_pending = offset > 0;
        }
        Ok(())
    }

    /// Starts an upload (`STOR`, or `APPE` to append).
    pub fn stor(&mut self, path: &str, append: bool) -> Result<Transfer> {
        let what = format!("uploading {path}");
        self.restart_at(0, &what)?;
        let r = if append { self.ftp.append_with_stream(path) } else { self.ftp.put_with_stream(path) };
        r.map_err(|e| self.tls_detail(&what, e))
    }

    pub fn size(&mut self, path: &str) -> Result<Option<u64>> {
        match self.ftp.size(path) {
            Ok(n) => Ok(Some(n as u64)),
            Err(FtpError::UnexpectedResponse(r)) if reply::code(&r) == 550 => {
                Err(RemoteError::NotFound(format!("asking the size of {path}: server said \"{}\"", reply::text(&r))))
            }
            Err(FtpError::UnexpectedResponse(r)) if reply::code(&r) >= 500 => Ok(None),
            Err(e) => Err(reply::map(&format!("asking the size of {path} (SIZE)"), e)),
        }
    }

    pub fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        self.ftp.rename(from, to).map_err(|e| reply::map(&format!("renaming {from} to {to}"), e))
    }

    pub fn delete(&mut self, path: &str) -> Result<()> {
        self.ftp.rm(path).map_err(|e| reply::map(&format!("deleting {path}"), e))
    }

    pub fn mkdir(&mut self, path: &str) -> Result<()> {
        self.ftp.mkdir(path).map_err(|e| reply::map(&format!("creating directory {path}"), e))
    }

    pub fn rmdir(&mut self, path: &str) -> Result<()> {
        if self.cwd.as_deref().is_some_and(|c| c == path || c.starts_with(&format!("{path}/"))) {
            // Some servers refuse to remove the working directory.
            self.cwd = None;
            let _ = self.ftp.cwd("/");
        }
        self.ftp.rmdir(path).map_err(|e| reply::map(&format!("removing directory {path}"), e))
    }

    /// Sends a command expecting one of `ok`; returns the reply code on refusal.
    pub fn command(&mut self, cmd: &str, ok: &[Status]) -> Result<std::result::Result<String, (u16, String)>> {
        match self.ftp.custom_command(cmd, ok) {
            Ok(r) => Ok(Ok(reply::text(&r))),
            Err(FtpError::UnexpectedResponse(r)) => Ok(Err((reply::code(&r), reply::text(&r)))),
            Err(e) => Err(reply::map(&format!("sending {}", cmd.split(' ').next().unwrap_or(cmd)), e)),
        }
    }

    /// suppaftp reports TLS failures as strings; prefer the detailed error we kept.
    fn tls_detail(&self, what: &str, e: FtpError) -> RemoteError {
        if let (FtpError::SecureError(_), Some(tls)) = (&e, &self.tls) {
            if let Some(detail) = tls.take_error() {
                return RemoteError::Tls(format!("{what}: {detail}"));
            }
        }
        reply::map_data(what, e, self.tls13_tickets_ran_out())
    }

    /// Whether this session's TLS 1.3 data connections ran out of tickets (see `reply::map_data`).
    pub fn tls13_tickets_ran_out(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.tls13_tickets_ran_out())
    }
}

impl FtpSession {
    /// `MLST path`: the facts of one file (`type=file;size=…;modify=…;`), `Ok(None)` when the
    /// server says there is no such file, `Unsupported` when it has no MLST.
    pub fn mlst(&mut self, path: &str) -> Result<Option<String>> {
        match self.ftp.custom_command(format!("MLST {path}"), &[Status::RequestedFileActionOk]) {
            Ok(r) => {
                let body = String::from_utf8_lossy(&r.body).into_owned();
                // The facts line is the one starting with a space (RFC 3659 7.2).
                let facts = body.lines().find(|l| l.starts_with(' ')).map(|l| l.trim_start().to_string());
                facts.map(Some).ok_or_else(|| RemoteError::Protocol(format!("MLST {path}: no facts in \"{body}\"")))
            }
            Err(FtpError::UnexpectedResponse(r)) if reply::code(&r) == 550 => Ok(None),
            Err(FtpError::UnexpectedResponse(r)) if matches!(reply::code(&r), 500 | 501 | 502 | 504) => {
                Err(RemoteError::Unsupported(format!("MLST {path}: server said \"{}\"", reply::text(&r))))
            }
            Err(e) => Err(reply::map(&format!("asking about {path} (MLST)"), e)),
        }
    }
}

#[cfg(test)]
#[path = "session_pipelining_tests.rs"]
mod pipelining_tests;
