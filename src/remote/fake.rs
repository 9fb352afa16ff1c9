//! An in-memory [`Remote`] with fault injection and call counting, for testing the filesystem
//! core without a network.

mod gate;

use std::collections::{BTreeMap, HashSet};
use std::io::{Cursor, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;

pub use self::gate::Gate;
use super::{Entry, Kind, Listed, ReadStream, Remote, RemoteError, Result, SessionStats, WriteStream};

#[derive(Clone)]
enum Node {
    File { data: Vec<u8>, mtime: SystemTime },
    Dir,
}

/// An on/off way the fake server misbehaves: switched on by [`FakeRemote::inject`], off by
/// [`FakeRemote::heal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Every rename is refused (an upload-only directory).
    RefuseRenames,
    /// A rename onto an existing file is refused.
    RefuseRenameOver,
    /// Hidden (dot) files cannot be stored.
    RefuseHiddenUploads,
    /// SIZE answers 550 for every file (as some servers do in ASCII mode).
    RefuseSize,
    /// `list_quick` gives times in whole minutes and says they are not exact (as `LIST` on a
    /// server with `MDTM`); without it, it gives what `list` gives.
    CoarseQuickLists,
}

/// A kind of call the fake counts (see [`FakeRemote::count`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// Listings (`list`, and so also `list_quick` and `list_detailed`).
    List,
    /// `list_quick` calls (each also counts as a [`Call::List`]).
    QuickList,
    /// Downloads started (`open_read`).
    Open,
    /// `stat` calls (open's revalidation).
    Stat,
    /// `lookup` calls (one name asked of the server).
    Lookup,
    /// Commands that changed something (mkdir, delete, rename, chmod, uploads started).
    Change,
}

#[derive(Default)]
pub struct FakeRemote {
    nodes: Arc<Mutex<BTreeMap<String, Node>>>,
    faults: Mutex<HashSet<Fault>>,
    /// Calls made so far, indexed by [`Call`] (`Change` is its last kind).
    calls: [AtomicUsize; Call::Change as usize + 1],
    /// When set, uploads fail at `finish` with this error (after storing what was sent, as a
    /// real server does with a broken transfer).
    fail_uploads: Mutex<Option<RemoteError>>,
    /// The next this-many uploads fail at `finish` with a broken connection (then they work).
    break_next_uploads: AtomicUsize,
    /// A directory where every upload is refused (not writable).
    refuse_uploads_in: Mutex<Option<String>>,
    /// The next this-many operations fail with a connection error.
    fail_next: AtomicUsize,
    /// Names that differ only in ASCII case are one name (like a FAT volume or IIS).
    case_insensitive: AtomicBool,
    /// The next download sends this many bytes and then ends with this error in its final
    /// reply (`125`, no data, `425` is `Some((0, …))`).
    cut_next_download: Mutex<Option<(usize, RemoteError)>>,
    /// Downloads end after this many bytes (a transfer cut short that looks finished).
    cut_reads_at: Mutex<Option<usize>>,
    /// SITE CHMOD works (else `Unsupported`); modes set so far, by path.
    chmod_works: AtomicBool,
    modes: Mutex<BTreeMap<String, u32>>,
    /// What `sessions_wanted` answers (other requests wait for a session).
    sessions_wanted: AtomicBool,
    /// Every download started, by path, in order.
    downloads: Mutex<Vec<String>>,
    /// While closed, downloads deliver no bytes (they wait until it opens).
    gate: Arc<Gate>,
    /// Listings stop after this many entries (in name order) and `list_detailed` says they
    /// are not complete, as on a server that cuts listings short (Pure-FTPd at 10,000).
    list_limit: Mutex<Option<usize>>,
    /// Runs during every listing (a test's clock moving on, as a big listing takes seconds).
    while_listing: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

impl FakeRemote {
    pub fn new() -> Self {
        let fake = FakeRemote::default();
        fake.nodes.lock().insert(String::new(), Node::Dir);
        fake
    }

    /// Adds a file (and its parent directories).
    pub fn add_file(&self, path: &str, data: &[u8], mtime: SystemTime) {
        self.add_parents(path);
        self.nodes.lock().insert(path.to_string(), Node::File { data: data.to_vec(), mtime });
    }

    pub fn add_dir(&self, path: &str) {
        self.add_parents(path);
        self.nodes.lock().insert(path.to_string(), Node::Dir);
    }

    pub fn remove(&self, path: &str) {
        self.nodes.lock().remove(path);
    }

    /// A file's bytes, if it exists.
    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        match self.nodes.lock().get(path) {
            Some(Node::File { data, .. }) => Some(data.clone()),
            _ => None,
        }
    }

    pub fn paths(&self) -> Vec<String> {
        self.nodes.lock().keys().filter(|p| !p.is_empty()).cloned().collect()
    }

    pub fn set_case_insensitive(&self, on: bool) {
        self.case_insensitive.store(on, Ordering::SeqCst);
    }

    pub fn is_case_insensitive(&self) -> bool {
        self.case_insensitive.load(Ordering::SeqCst)
    }

    /// The stored path `path` names: itself, or on a case-insensitive fake an existing path
    /// that differs only in case.
    fn resolve(&self, path: &str) -> String {
        let nodes = self.nodes.lock();
        if !self.case_insensitive.load(Ordering::SeqCst) || nodes.contains_key(path) {
            return path.to_string();
        }
        nodes.keys().find(|k| k.eq_ignore_ascii_case(path)).cloned().unwrap_or_else(|| path.to_string())
    }

    /// The next `n` operations fail with a connection error.
    pub fn fail_next(&self, n: usize) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// Switches `fault` on.
    pub fn inject(&self, fault: Fault) {
        self.faults.lock().insert(fault);
    }

    /// Switches `fault` off.
    pub fn heal(&self, fault: Fault) {
        self.faults.lock().remove(&fault);
    }

    fn has(&self, fault: Fault) -> bool {
        self.faults.lock().contains(&fault)
    }

    /// How many calls of this kind were made so far.
    pub fn count(&self, call: Call) -> usize {
        self.calls[call as usize].load(Ordering::SeqCst)
    }

    fn counts(&self, call: Call) {
        self.calls[call as usize].fetch_add(1, Ordering::SeqCst);
    }

    /// Uploads fail at `finish` with `error` (after storing what was sent, as a real server
    /// does with a broken transfer), until [`FakeRemote::heal_uploads`].
    pub fn fail_uploads_with(&self, error: RemoteError) {
        *self.fail_uploads.lock() = Some(error);
    }

    /// Uploads work again after [`FakeRemote::fail_uploads_with`].
    pub fn heal_uploads(&self) {
        *self.fail_uploads.lock() = None;
    }

    /// The next `n` uploads fail at `finish` with a broken connection (then they work).
    pub fn break_next_uploads(&self, n: usize) {
        self.break_next_uploads.store(n, Ordering::SeqCst);
    }

    /// Every upload into `dir` is refused (not writable).
    pub fn refuse_uploads_in(&self, dir: &str) {
        *self.refuse_uploads_in.lock() = Some(dir.to_string());
    }

    /// The next download sends `sent` bytes and then ends with `error` in its final reply
    /// (`125`, no data, `425` is `(0, …)`).
    pub fn cut_next_download(&self, sent: usize, error: RemoteError) {
        *self.cut_next_download.lock() = Some((sent, error));
    }

    /// Downloads end after `n` bytes (a transfer cut short that looks finished).
    pub fn cut_reads_at(&self, n: usize) {
        *self.cut_reads_at.lock() = Some(n);
    }

    /// Listings stop after `n` entries (in name order) and `list_detailed` says they are not
    /// complete, as on a server that cuts listings short (Pure-FTPd at 10,000).
    pub fn limit_listings_to(&self, n: usize) {
        *self.list_limit.lock() = Some(n);
    }

    /// Runs `f` during every listing from now on (say, to move a test's clock on).
    pub fn while_listing(&self, f: impl Fn() + Send + Sync + 'static) {
        *self.while_listing.lock() = Some(Box::new(f));
    }

    /// SITE CHMOD works from now on (else it is `Unsupported`).
    pub fn support_chmod(&self) {
        self.chmod_works.store(true, Ordering::SeqCst);
    }

    /// The modes set by SITE CHMOD so far, by path.
    pub fn modes(&self) -> BTreeMap<String, u32> {
        self.modes.lock().clone()
    }

    /// What `sessions_wanted` answers (true: other requests wait for a session).
    pub fn set_sessions_wanted(&self, wanted: bool) {
        self.sessions_wanted.store(wanted, Ordering::SeqCst);
    }

    /// Every download started so far, by path, in order.
    pub fn downloads(&self) -> Vec<String> {
        self.downloads.lock().clone()
    }

    /// While closed, downloads deliver no bytes (they wait until it opens).
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    fn add_parents(&self, path: &str) {
        let mut nodes = self.nodes.lock();
        let mut p = path;
        while let Some((parent, _)) = p.rsplit_once('/') {
            nodes.entry(parent.to_string()).or_insert(Node::Dir);
            p = parent;
        }
    }

    fn fault(&self) -> Result<()> {
        let left = self.fail_next.load(Ordering::SeqCst);
        if left > 0 {
            self.fail_next.store(left - 1, Ordering::SeqCst);
            return Err(RemoteError::Connection("injected fault".into()));
        }
        Ok(())
    }
}

fn parent_and_name(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

impl FakeRemote {
    /// Every entry of `dir`, in name order.
    fn children(&self, dir: &str) -> Result<Vec<Entry>> {
        let dir = &self.resolve(dir);
        let nodes = self.nodes.lock();
        match nodes.get(dir) {
            Some(Node::Dir) => {}
            Some(_) => return Err(RemoteError::NotADirectory(format!("{dir} is not a directory"))),
            None => return Err(RemoteError::NotFound(format!("{dir} not found"))),
        }
        let entries = nodes
            .iter()
            .filter(|(p, _)| !p.is_empty() && parent_and_name(p).0 == dir)
            .map(|(p, n)| Self::entry(parent_and_name(p).1.to_string(), n))
            .collect();
        Ok(entries)
    }

    fn entry(name: String, node: &Node) -> Entry {
        match node {
            Node::File { data, mtime } => {
                Entry { name, kind: Kind::File, size: data.len() as u64, mtime: Some(*mtime), mode: Some(0o644) }
            }
            Node::Dir => Entry { name, kind: Kind::Dir, size: 0, mtime: None, mode: Some(0o755) },
        }
    }
}

impl Remote for FakeRemote {
    fn list(&self, dir: &str) -> Result<Vec<Entry>> {
        self.counts(Call::List);
        self.fault()?;
        if let Some(f) = &*self.while_listing.lock() {
            f();
        }
        let mut entries = self.children(dir)?;
        if let Some(n) = *self.list_limit.lock() {
            entries.truncate(n);
        }
        Ok(entries)
    }

    fn list_detailed(&self, dir: &str, exact_times: bool) -> Result<Listed> {
        let (entries, exact) = if exact_times { (self.list(dir)?, true) } else { self.list_quick(dir)? };
        let limit = *self.list_limit.lock();
        let complete = limit.is_none_or(|n| self.children(dir).is_ok_and(|all| all.len() <= n));
        Ok(Listed { entries, exact, complete })
    }

    fn lookup(&self, path: &str) -> Result<Option<Entry>> {
        self.counts(Call::Lookup);
        self.fault()?;
        let path = &self.resolve(path);
        let name = parent_and_name(path).1.to_string();
        Ok(self.nodes.lock().get(path).map(|n| Self::entry(name, n)))
    }

    fn open_read(&self, path: &str, offset: u64) -> Result<Box<dyn ReadStream>> {
        self.counts(Call::Open);
        self.downloads.lock().push(path.to_string());
        self.fault()?;
        let path = &self.resolve(path);
        match self.nodes.lock().get(path) {
            Some(Node::File { data, .. }) => {
                let end = self.cut_reads_at.lock().unwrap_or(usize::MAX).min(data.len());
                let start = (offset as usize).min(end);
                let mut rest = data[start..end].to_vec();
                let failure = self.cut_next_download.lock().take().map(|(sent, error)| {
                    rest.truncate(sent);
                    error
                });
                Ok(Box::new(FakeStream(Cursor::new(rest), failure, self.gate.clone())))
            }
            Some(Node::Dir) => Err(RemoteError::IsADirectory(format!("{path} is a directory"))),
            None => Err(RemoteError::NotFound(format!("{path} not found"))),
        }
    }

    fn open_write(&self, path: &str, append: bool) -> Result<Box<dyn WriteStream>> {
        self.fault()?;
        self.counts(Call::Change);
        let path = &self.resolve(path);
        let (parent, name) = parent_and_name(path);
        if self.refuse_uploads_in.lock().as_deref() == Some(parent) {
            return Err(RemoteError::PermissionDenied(format!("storing {path}: 553 Could not create file")));
        }
        if name.starts_with('.') && self.has(Fault::RefuseHiddenUploads) {
            return Err(RemoteError::PermissionDenied(format!("storing {path}: 550 Permission denied")));
        }
        if !matches!(self.nodes.lock().get(parent), Some(Node::Dir)) {
            return Err(RemoteError::NotFound(format!("{parent} not found")));
        }
        let start = if append { self.file(path).unwrap_or_default() } else { Vec::new() };
        let broken = self.break_next_uploads.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        let fail = match broken {
            Ok(_) => Some(RemoteError::Connection("426 connection closed; transfer aborted".into())),
            Err(_) => self.fail_uploads.lock().clone(),
        };
        Ok(Box::new(FakeUpload { nodes: self.nodes.clone(), path: path.to_string(), data: start, fail }))
    }

    fn size(&self, path: &str) -> Result<Option<u64>> {
        self.fault()?;
        if self.has(Fault::RefuseSize) {
            return Err(RemoteError::NotFound(format!("550 SIZE not allowed for {path}")));
        }
        let path = &self.resolve(path);
        self.file(path).map(|d| Some(d.len() as u64)).ok_or_else(|| RemoteError::NotFound(path.into()))
    }

    fn mtime(&self, path: &str) -> Result<Option<SystemTime>> {
        self.fault()?;
        let path = &self.resolve(path);
        match self.nodes.lock().get(path) {
            Some(Node::File { mtime, .. }) => Ok(Some(*mtime)),
            Some(Node::Dir) => Ok(None),
            None => Err(RemoteError::NotFound(path.into())),
        }
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.fault()?;
        self.counts(Call::Change);
        let from = &self.resolve(from);
        // A case-only rename keeps the new spelling; any other existing variant is replaced.
        let to = &match self.resolve(to) {
            same if same == *from => to.to_string(),
            other => other,
        };
        if self.has(Fault::RefuseRenames) {
            return Err(RemoteError::PermissionDenied(format!("renaming {from}: 550 Permission denied")));
        }
        let mut nodes = self.nodes.lock();
        if nodes.contains_key(to) && self.has(Fault::RefuseRenameOver) {
            return Err(RemoteError::PermissionDenied(format!("{to} exists")));
        }
        let moved: Vec<(String, Node)> = nodes
            .iter()
            .filter(|(p, _)| *p == from || p.starts_with(&format!("{from}/")))
            .map(|(p, n)| (p.clone(), n.clone()))
            .collect();
        if moved.is_empty() {
            return Err(RemoteError::NotFound(format!("{from} not found")));
        }
        for (p, n) in moved {
            nodes.remove(&p);
            nodes.insert(format!("{to}{}", &p[from.len()..]), n);
        }
        Ok(())
    }

    fn delete(&self, path: &str) -> Result<()> {
        self.fault()?;
        self.counts(Call::Change);
        let path = &self.resolve(path);
        match self.nodes.lock().remove(path) {
            Some(Node::File { .. }) => Ok(()),
            _ => Err(RemoteError::NotFound(format!("{path} not found"))),
        }
    }

    fn mkdir(&self, path: &str) -> Result<()> {
        self.fault()?;
        self.counts(Call::Change);
        let path = &self.resolve(path);
        let mut nodes = self.nodes.lock();
        if nodes.contains_key(path) {
            return Err(RemoteError::AlreadyExists(path.into()));
        }
        nodes.insert(path.to_string(), Node::Dir);
        Ok(())
    }

    fn rmdir(&self, path: &str) -> Result<()> {
        self.fault()?;
        self.counts(Call::Change);
        let path = &self.resolve(path);
        let mut nodes = self.nodes.lock();
        if nodes.keys().any(|p| p.starts_with(&format!("{path}/"))) {
            return Err(RemoteError::NotEmpty(path.into()));
        }
        match nodes.remove(path) {
            Some(Node::Dir) => Ok(()),
            _ => Err(RemoteError::NotFound(path.into())),
        }
    }

    fn set_mtime(&self, path: &str, time: SystemTime) -> Result<()> {
        self.fault()?;
        let path = &self.resolve(path);
        match self.nodes.lock().get_mut(path) {
            Some(Node::File { mtime, .. }) => {
                *mtime = time;
                Ok(())
            }
            Some(Node::Dir) => Err(RemoteError::Unsupported("no directory times".into())),
            None => Err(RemoteError::NotFound(path.into())),
        }
    }

    fn chmod(&self, path: &str, mode: u32) -> Result<()> {
        if !self.chmod_works.load(Ordering::SeqCst) {
            return Err(RemoteError::Unsupported("no SITE CHMOD".into()));
        }
        self.counts(Call::Change);
        self.modes.lock().insert(path.to_string(), mode & 0o7777);
        Ok(())
    }

    fn stat(&self, path: &str) -> Result<Option<(u64, Option<SystemTime>)>> {
        self.counts(Call::Stat);
        self.fault()?;
        let path = &self.resolve(path);
        Ok(match self.nodes.lock().get(path) {
            Some(Node::File { data, mtime }) => Some((data.len() as u64, Some(*mtime))),
            Some(Node::Dir) => Some((0, None)),
            None => None,
        })
    }

    fn list_quick(&self, dir: &str) -> Result<(Vec<Entry>, bool)> {
        self.counts(Call::QuickList);
        let mut entries = self.list(dir)?;
        if !self.has(Fault::CoarseQuickLists) {
            return Ok((entries, true));
        }
        for e in &mut entries {
            if let Some(t) = &mut e.mtime {
                let secs = t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                *t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs - secs % 60);
            }
        }
        Ok((entries, false))
    }

    fn sessions_wanted(&self) -> bool {
        self.sessions_wanted.load(Ordering::SeqCst)
    }

    fn session_stats(&self) -> SessionStats {
        SessionStats::default()
    }

    fn describe(&self) -> String {
        "fake://".into()
    }
}

struct FakeUpload {
    nodes: Arc<Mutex<BTreeMap<String, Node>>>,
    path: String,
    data: Vec<u8>,
    fail: Option<RemoteError>,
}

impl FakeUpload {
    fn store(&mut self) {
        let data = std::mem::take(&mut self.data);
        self.nodes.lock().insert(self.path.clone(), Node::File { data, mtime: SystemTime::now() });
    }
}

impl std::io::Write for FakeUpload {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.data.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl WriteStream for FakeUpload {
    fn finish(mut self: Box<Self>) -> Result<()> {
        // Like a real server, what arrived is stored even when the transfer then fails.
        self.store();
        match self.fail.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for FakeUpload {
    fn drop(&mut self) {
        if !self.data.is_empty() {
            self.store();
        }
    }
}

/// A download: its bytes, and the failure its final reply reports, if any.
struct FakeStream(Cursor<Vec<u8>>, Option<RemoteError>, Arc<Gate>);

impl Read for FakeStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.2.pass();
        match self.0.read(buf)? {
            0 if !buf.is_empty() => self.1.take().map_or(Ok(0), |e| Err(std::io::Error::other(e))),
            n => Ok(n),
        }
    }
}

impl ReadStream for FakeStream {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_limit_cuts_listings_and_says_so_while_lookup_finds_every_name() {
        let fake = FakeRemote::new();
        for n in ["a", "b", "c"] {
            fake.add_file(&format!("d/{n}"), b"x", SystemTime::UNIX_EPOCH);
        }
        fake.limit_listings_to(2);
        let listed = fake.list_detailed("d", true).unwrap();
        assert!(!listed.complete);
        assert_eq!(listed.entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(fake.lookup("d/c").unwrap().map(|e| e.size), Some(1));
        assert_eq!(fake.lookup("d/nope").unwrap(), None);
        fake.limit_listings_to(3);
        assert!(fake.list_detailed("d", false).unwrap().complete);
    }

    #[test]
    fn an_injected_fault_lasts_until_healed_and_calls_are_counted() {
        let fake = FakeRemote::new();
        fake.add_file("a", b"x", SystemTime::UNIX_EPOCH);
        fake.inject(Fault::RefuseRenames);
        assert!(matches!(fake.rename("a", "b"), Err(RemoteError::PermissionDenied(_))));
        assert!(matches!(fake.rename("a", "b"), Err(RemoteError::PermissionDenied(_))));
        fake.heal(Fault::RefuseRenames);
        fake.rename("a", "b").unwrap();
        assert_eq!(fake.paths(), ["b"]);
        assert_eq!(fake.count(Call::Change), 3);
        assert_eq!(fake.count(Call::List), 0);
    }
}
