//! An in-memory [`Remote`] with fault injection and call counting, for testing the filesystem
//! core without a network.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;

use super::{Entry, Kind, ReadStream, Remote, RemoteError, Result, SessionStats};

#[derive(Clone)]
enum Node {
    File { data: Vec<u8>, mtime: SystemTime },
    Dir,
}

#[derive(Default)]
pub struct FakeRemote {
    nodes: Mutex<BTreeMap<String, Node>>,
    /// The next this-many operations fail with a connection error.
    fail_next: AtomicUsize,
    pub lists: AtomicUsize,
    pub opens: AtomicUsize,
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

    pub fn fail_next(&self, n: usize) {
        self.fail_next.store(n, Ordering::SeqCst);
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

impl Remote for FakeRemote {
    fn list(&self, dir: &str) -> Result<Vec<Entry>> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.fault()?;
        let nodes = self.nodes.lock();
        match nodes.get(dir) {
            Some(Node::Dir) => {}
            Some(_) => return Err(RemoteError::NotADirectory(format!("{dir} is not a directory"))),
            None => return Err(RemoteError::NotFound(format!("{dir} not found"))),
        }
        let entries = nodes
            .iter()
            .filter(|(p, _)| !p.is_empty() && parent_and_name(p).0 == dir)
            .map(|(p, n)| {
                let name = parent_and_name(p).1.to_string();
                match n {
                    Node::File { data, mtime } => {
                        Entry { name, kind: Kind::File, size: data.len() as u64, mtime: Some(*mtime), mode: Some(0o644) }
                    }
                    Node::Dir => Entry { name, kind: Kind::Dir, size: 0, mtime: None, mode: Some(0o755) },
                }
            })
            .collect();
        Ok(entries)
    }

    fn open_read(&self, path: &str, offset: u64) -> Result<Box<dyn ReadStream>> {
        self.opens.fetch_add(1, Ordering::SeqCst);
        self.fault()?;
        match self.nodes.lock().get(path) {
            Some(Node::File { data, .. }) => {
                let start = (offset as usize).min(data.len());
                Ok(Box::new(FakeStream(Cursor::new(data[start..].to_vec()))))
            }
            Some(Node::Dir) => Err(RemoteError::IsADirectory(format!("{path} is a directory"))),
            None => Err(RemoteError::NotFound(format!("{path} not found"))),
        }
    }

    fn sessions_wanted(&self) -> bool {
        false
    }

    fn session_stats(&self) -> SessionStats {
        SessionStats::default()
    }

    fn describe(&self) -> String {
        "fake://".into()
    }
}

struct FakeStream(Cursor<Vec<u8>>);

impl Read for FakeStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl ReadStream for FakeStream {}
