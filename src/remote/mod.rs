//! The remote side in FTP-neutral terms: what the filesystem core may ask of a server.
//!
//! Paths are relative to the mount's root, `/`-separated, without a leading slash (`""` is the
//! root). Nothing here knows about inodes, and nothing above this module knows about FTP.

#[cfg(test)]
pub mod fake;
pub mod ftp;
pub mod pool;

use std::io::Read;
use std::time::SystemTime;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Kind {
    File,
    Dir,
    /// A server-side symbolic link; the target as the server shows it, when it does.
    Symlink(Option<String>),
    /// Devices, sockets, pipes: listed, never opened.
    Other,
}

/// One directory entry as the server describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
    pub size: u64,
    pub mtime: Option<SystemTime>,
    /// Permission bits when the listing shows them.
    pub mode: Option<u32>,
}

/// A directory's entries with what is known of them ([`Remote::list_detailed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub entries: Vec<Entry>,
    /// The times are as exact as [`Remote::list`] gives them (see [`Remote::list_quick`]).
    pub exact: bool,
    /// False when the server cut the listing short (Pure-FTPd stops every listing at 10,000
    /// entries) and the rest could not be had: `entries` are some of the directory's, not
    /// all, and a name missing from them may still exist ([`Remote::lookup`] asks). The log
    /// has said so, with what to do.
    pub complete: bool,
}

/// What went wrong on the remote side. Every message is meant for a person: it says what was
/// tried, what happened and, where we know, what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NoSpace(String),
    #[error("{0}")]
    NotADirectory(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    NotEmpty(String),
    #[error("{0}")]
    IsADirectory(String),
    /// The network or the server did not answer in time.
    #[error("{0}")]
    Timeout(String),
    /// The connection broke or could not be made.
    #[error("{0}")]
    Connection(String),
    /// TLS could not be set up or a certificate was refused.
    #[error("{0}")]
    Tls(String),
    /// The server refused the user name or password.
    #[error("{0}")]
    Login(String),
    /// The server refused another session (421 / "too many connections").
    #[error("{0}")]
    TooManyConnections(String),
    #[error("{0}")]
    Unsupported(String),
    /// A name or path longer than the server takes (`500 Input line too long`).
    #[error("{0}")]
    NameTooLong(String),
    /// The server answered something we cannot use.
    #[error("{0}")]
    Protocol(String),
}

impl RemoteError {
    /// Errors after which the session may be out of step with the server and must not be reused.
    pub fn breaks_session(&self) -> bool {
        matches!(
            self,
            RemoteError::Timeout(_)
                | RemoteError::Connection(_)
                | RemoteError::Tls(_)
                | RemoteError::Protocol(_)
                // vsftpd ends the session after an overlong command line.
                | RemoteError::NameTooLong(_)
        )
    }

    /// Errors worth one retry on a fresh session when the operation is idempotent.
    pub fn is_transient(&self) -> bool {
        matches!(self, RemoteError::Timeout(_) | RemoteError::Connection(_))
    }
}

pub type Result<T> = std::result::Result<T, RemoteError>;

/// What [`Remote::rename_upload`] set along with the rename.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub mode: bool,
    pub mtime: bool,
}

/// An open download. Reading yields the file's bytes from the offset it was opened at;
/// dropping it ends the transfer and gives the session back.
pub trait ReadStream: Read + Send {
    /// The bytes that have already arrived, without waiting for more (up to `max`): what a
    /// download being ended early still holds, for the content cache.
    fn take_arrived(&mut self, _max: usize) -> Vec<u8> {
        Vec::new()
    }
}

/// An upload in progress. Bytes written go to the server; `finish` ends the transfer and
/// returns only once the server confirmed it. Dropping it unfinished aborts the transfer, and
/// what reached the server must be treated as garbage (the caller deletes it).
pub trait WriteStream: std::io::Write + Send {
    fn finish(self: Box<Self>) -> Result<()>;
}

/// Storage the server says the user has, where it tells (`AVBL`). FTP has no standard way to
/// ask; most servers tell nothing, and then there is no `Space` at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes the user may still store.
    pub available: u64,
    /// All the bytes the user may hold, used and free, where the server tells it.
    pub total: Option<u64>,
}

/// Counters a running mount can report (sessions, limits).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionStats {
    pub open: usize,
    pub busy: usize,
    pub limit: usize,
    pub max: usize,
    pub waiting: usize,
}

pub trait Remote: Send + Sync {
    /// All entries of a directory, `.` and `..` excluded.
    fn list(&self, dir: &str) -> Result<Vec<Entry>>;
    /// A directory's entries from one listing command, without the round trips `list` may add
    /// for exact times (`MDTM`): cheap enough to repeat every few seconds to see whether a
    /// directory changed. Times may be coarser than `list`'s; the flag says whether the entries
    /// are exactly what `list` would give.
    fn list_quick(&self, dir: &str) -> Result<(Vec<Entry>, bool)> {
        Ok((self.list(dir)?, true))
    }
    /// `list` (`exact_times`) or `list_quick` (not), and whether the entries are all of the
    /// directory's.
    fn list_detailed(&self, dir: &str, exact_times: bool) -> Result<Listed> {
        let (entries, exact) = if exact_times { (self.list(dir)?, true) } else { self.list_quick(dir)? };
        Ok(Listed { entries, exact, complete: true })
    }
    /// One entry, asked of the server by its path (`MLST`) where it can tell, else found in
    /// its directory's listing: `None` when there is no such name. For a name missing from a
    /// listing that is not complete. Link targets may be missing (`MLST` shows none).
    fn lookup(&self, path: &str) -> Result<Option<Entry>> {
        lookup_in_listing(self, path)
    }
    /// Only the names in a directory: may be cheaper than `list` (no exact times).
    fn list_names(&self, dir: &str) -> Result<Vec<String>> {
        Ok(self.list(dir)?.into_iter().map(|e| e.name).collect())
    }
    /// Opens `path` for reading from byte `offset`.
    fn open_read(&self, path: &str, offset: u64) -> Result<Box<dyn ReadStream>>;
    /// Starts an upload to `path` (replacing it), or appending to it.
    fn open_write(&self, path: &str, append: bool) -> Result<Box<dyn WriteStream>>;
    /// The size the server reports for a file, if it can tell.
    fn size(&self, path: &str) -> Result<Option<u64>>;
    /// The exact modification time of a file, if the server can tell.
    fn mtime(&self, path: &str) -> Result<Option<SystemTime>>;
    /// A file's size and exact modification time (if the server tells it), or `None` when the
    /// file is gone (`Unsupported` when the server cannot tell): what `open` revalidates
    /// (close-to-open). One cheap command where possible.
    fn stat(&self, path: &str) -> Result<Option<(u64, Option<SystemTime>)>> {
        let size = match self.size(path) {
            Ok(Some(n)) => n,
            Ok(None) => return Err(RemoteError::Unsupported(format!("the server does not tell the size of {path}"))),
            Err(RemoteError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some((size, self.mtime(path)?)))
    }
    /// Renames; `to` may exist (then it is replaced where the server allows).
    fn rename(&self, from: &str, to: &str) -> Result<()>;
    /// Renames an upload's temporary `from` onto `to` like [`Remote::rename`], and sets
    /// `mode` and `mtime` on `from` before, where that costs no extra round trip (commands sent
    /// without waiting). Says which of the two were set; the caller applies the others. After
    /// an error nothing is known to be set.
    fn rename_upload(&self, from: &str, to: &str, _mode: Option<u32>, _mtime: Option<SystemTime>) -> Result<Applied> {
        self.rename(from, to).map(|()| Applied::default())
    }
    fn delete(&self, path: &str) -> Result<()>;
    fn mkdir(&self, path: &str) -> Result<()>;
    fn rmdir(&self, path: &str) -> Result<()>;
    /// Sets a file's modification time; `Unsupported` when the server has no way.
    fn set_mtime(&self, path: &str, time: SystemTime) -> Result<()>;
    /// Sets permission bits; `Unsupported` when the server has no way.
    fn chmod(&self, path: &str, mode: u32) -> Result<()>;
    /// Why a new `name` cannot be stored on the server (its charset has no bytes for it).
    fn refuses_name(&self, _name: &str) -> Option<String> {
        None
    }
    /// The space the server reports for `path`: `Ok(None)` when it has no way to tell (for the
    /// life of the mount); `Err` when asking failed this time.
    fn space(&self, _path: &str) -> Result<Option<Space>> {
        Ok(None)
    }
    /// What was found out about the server and is used for the life of the mount (listing
    /// style, how times are set, time zone, TLS, …), for `status` and `check`: (what, how).
    fn profile(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// True when some request is waiting for a session: long-held streams should yield.
    fn sessions_wanted(&self) -> bool;
    fn session_stats(&self) -> SessionStats;
    /// `ftps://user@host:port/path`, without secrets, for logs and `findmnt`.
    fn describe(&self) -> String;
}

/// `path`'s entry from its directory's listing; a name missing from a listing that is not
/// complete is unknown (`Unsupported`), not absent.
pub fn lookup_in_listing<R: Remote + ?Sized>(remote: &R, path: &str) -> Result<Option<Entry>> {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let listed = remote.list_detailed(dir, true)?;
    let complete = listed.complete;
    match listed.entries.into_iter().find(|e| e.name == name) {
        Some(e) => Ok(Some(e)),
        None if complete => Ok(None),
        None => Err(RemoteError::Unsupported(format!(
            "looking up /{path}: it is not in the listing of /{dir}, which the server cut short, and the server \
             cannot be asked about one name (no MLST)"
        ))),
    }
}
