//! A randomized soak through a real mount, checked against an in-memory model: writes (whole
//! and at offsets), truncation, renames (also over existing files), deletes, mkdir/rmdir and
//! reads, with the server's sessions killed now and then. After every step the mount must show
//! what the model holds; an operation that failed because of an injected fault must have
//! happened entirely or not at all; at the end the server's files equal the model.
//!
//! Fixed seed, `SOAK_OPS` operations (default 5,000, about 90 s; `scripts/soak` runs it for longer).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use common::*;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const DIRS: [&str; 3] = ["", "d1", "d2"];
const NAMES: [&str; 5] = ["a.txt", "b.bin", "c", "dd", "e e"];

#[derive(Clone, Default, PartialEq, Debug)]
struct Model {
    files: BTreeMap<String, Vec<u8>>,
    dirs: BTreeSet<String>,
}

impl Model {
    fn parent_exists(&self, path: &str) -> bool {
        match path.rsplit_once('/') {
            None => true,
            Some((dir, _)) => self.dirs.contains(dir),
        }
    }
}

/// The server's files and directories, as the model would hold them (temporaries apart).
fn server_state(root: &Path) -> (Model, Vec<String>) {
    let mut m = Model::default();
    let mut temporaries = Vec::new();
    for rel in tree_listing(root) {
        let p = root.join(&rel);
        if rel.contains(".ftpmount-") {
            temporaries.push(rel);
        } else if p.is_dir() {
            m.dirs.insert(rel);
        } else {
            m.files.insert(rel, fs::read(&p).unwrap());
        }
    }
    (m, temporaries)
}

enum Op {
    Write(String, Vec<u8>),
    WriteAt(String, u64, Vec<u8>),
    Truncate(String, u64),
    Rename(String, String),
    Unlink(String),
    Mkdir(String),
    Rmdir(String),
}

fn random_op(rng: &mut Rng, model: &Model) -> Op {
    let path = |rng: &mut Rng| {
        let dir = DIRS[rng.below(DIRS.len() as u64) as usize];
        let name = NAMES[rng.below(NAMES.len() as u64) as usize];
        if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") }
    };
    let existing = |rng: &mut Rng| {
        let files: Vec<&String> = model.files.keys().collect();
        if files.is_empty() { path(rng) } else { files[rng.below(files.len() as u64) as usize].clone() }
    };
    match rng.below(10) {
        0..=2 => {
            let n = [0, 1, 100, 5000, 70_000][rng.below(5) as usize];
            Op::Write(path(rng), rng.bytes(n))
        }
        3 => {
            let p = existing(rng);
            let len = model.files.get(&p).map_or(0, |d| d.len() as u64);
            let at = rng.below(len + 1000);
            let n = 1 + rng.below(3000) as usize;
            Op::WriteAt(p, at, rng.bytes(n))
        }
        4 => {
            let p = existing(rng);
            let len = model.files.get(&p).map_or(0, |d| d.len() as u64);
            Op::Truncate(p, rng.below(len + 500))
        }
        5 | 6 => Op::Rename(existing(rng), path(rng)),
        7 => Op::Unlink(existing(rng)),
        8 => Op::Mkdir(DIRS[1 + rng.below(2) as usize].to_string()),
        _ => Op::Rmdir(DIRS[1 + rng.below(2) as usize].to_string()),
    }
}

/// Applies `op` to the model as a local filesystem would; `None` when it must fail.
fn expected(model: &Model, op: &Op) -> Option<Model> {
    let mut m = model.clone();
    match op {
        Op::Write(p, data) => {
            if !m.parent_exists(p) {
                return None;
            }
            m.files.insert(p.clone(), data.clone());
        }
        Op::WriteAt(p, at, data) => {
            let f = m.files.get_mut(p)?;
            let end = *at as usize + data.len();
            if f.len() < end {
                f.resize(end, 0);
            }
            f[*at as usize..end].copy_from_slice(data);
        }
        Op::Truncate(p, size) => m.files.get_mut(p)?.resize(*size as usize, 0),
        Op::Rename(from, to) => {
            if !m.parent_exists(to) || !m.files.contains_key(from) {
                return None;
            }
            if from != to {
                let data = m.files.remove(from)?;
                m.files.insert(to.clone(), data);
            }
        }
        Op::Unlink(p) => {
            m.files.remove(p)?;
        }
        Op::Mkdir(d) => {
            if !m.dirs.insert(d.clone()) {
                return None;
            }
        }
        Op::Rmdir(d) => {
            let prefix = format!("{d}/");
            if m.files.keys().any(|f| f.starts_with(&prefix)) || !m.dirs.remove(d) {
                return None;
            }
        }
    }
    Some(m)
}

/// Runs `op` through the mount. Writes end with `fsync`: errors at `close` are lost when a
/// `File` is dropped, and an upload's failure is reported at `close` or `fsync`.
fn run(mnt: &Path, op: &Op) -> std::io::Result<()> {
    match op {
        Op::Write(p, data) => {
            let mut f = fs::File::create(mnt.join(p))?;
            f.write_all(data)?;
            f.sync_all()
        }
        Op::WriteAt(p, at, data) => {
            let mut f = fs::OpenOptions::new().write(true).open(mnt.join(p))?;
            f.seek(SeekFrom::Start(*at))?;
            f.write_all(data)?;
            f.sync_all()
        }
        Op::Truncate(p, size) => {
            let f = fs::OpenOptions::new().write(true).open(mnt.join(p))?;
            f.set_len(*size)?;
            f.sync_all()
        }
        Op::Rename(from, to) => fs::rename(mnt.join(from), mnt.join(to)),
        Op::Unlink(p) => fs::remove_file(mnt.join(p)),
        Op::Mkdir(d) => fs::create_dir(mnt.join(d)),
        Op::Rmdir(d) => fs::remove_dir(mnt.join(d)),
    }
}

/// What the mount shows, in model form.
fn mount_state(mnt: &Path) -> Result<Model, String> {
    let mut m = Model::default();
    for rel in tree_listing(mnt) {
        let p = mnt.join(&rel);
        if p.is_dir() {
            m.dirs.insert(rel);
        } else {
            let data = fs::read(&p).map_err(|e| format!("reading {rel}: {e}"))?;
            m.files.insert(rel, data);
        }
    }
    Ok(m)
}

/// Directories, and files with their sizes and a checksum: enough to see what differs.
fn summary(m: &Model) -> String {
    let sum = |d: &[u8]| d.iter().fold(0u32, |a, &b| a.rotate_left(5) ^ b as u32);
    let files: Vec<String> = m.files.iter().map(|(k, v)| format!("{k}:{}:{:x}", v.len(), sum(v))).collect();
    format!("dirs {:?} files {files:?}", m.dirs)
}

fn describe(op: &Op) -> String {
    match op {
        Op::Write(p, d) => format!("write {p} ({} bytes)", d.len()),
        Op::WriteAt(p, at, d) => format!("write {} bytes at {at} in {p}", d.len()),
        Op::Truncate(p, s) => format!("truncate {p} to {s}"),
        Op::Rename(a, b) => format!("rename {a} -> {b}"),
        Op::Unlink(p) => format!("unlink {p}"),
        Op::Mkdir(d) => format!("mkdir {d}"),
        Op::Rmdir(d) => format!("rmdir {d}"),
    }
}

#[test]
fn random_operations_with_dropped_connections_match_a_model() {
    let ops: usize = std::env::var("SOAK_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let seed: u64 = std::env::var("SOAK_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed_f7b0);
    let certs = Certs::new();
    let server = tls_vsftpd(&certs, TempDir::new("root"), "");
    // Short listing cache: the mount re-reads the server often, as another client would see it.
    let mount = Mount::of(
        &server,
        Some(&certs),
        &["--dir-timeout", "1s", "--attr-timeout", "1s", "--case-collisions", "off", "-v"],
    );
    let mnt = mount.path();
    let mut rng = Rng(seed | 1);
    let mut model = Model::default();
    let (mut faults, mut failed_by_fault) = (0, 0);
    for step in 0..ops {
        let op = random_op(&mut rng, &model);
        let fault = rng.below(40) == 0;
        if fault {
            faults += 1;
            server.kill_sessions();
        }
        let want = expected(&model, &op);
        let got = run(mnt, &op);
        let what = format!("step {step} (seed {seed:#x}): {}", describe(&op));
        let log_tail = || {
            let log = mount.log();
            let tail: Vec<String> = log.lines().rev().take(40).map(str::to_string).collect();
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        };
        match (&want, &got) {
            (Some(after), Ok(())) => model = after.clone(),
            (None, Err(_)) => {}
            (Some(after), Err(e)) if fault => {
                // All or nothing: the server holds the state before or the state after.
                failed_by_fault += 1;
                let (server_now, _) = server_state(server.root());
                assert!(
                    server_now == model || server_now == *after,
                    "{what} failed ({e}) and left a third state: server {}, before {}, after {}",
                    summary(&server_now),
                    summary(&model),
                    summary(after),
                );
                model = server_now;
                // What the mount and the kernel cached may predate the failure: it converges
                // within the cache timeouts.
                std::thread::sleep(std::time::Duration::from_millis(1200));
            }
            (Some(_), Err(e)) => panic!("{what} failed: {e}\n{}", log_tail()),
            (None, Ok(())) => panic!("{what} succeeded where a local filesystem refuses it"),
        }
        let seen = mount_state(mnt).unwrap_or_else(|e| panic!("{what} (fault: {fault}): {e}\n{}", log_tail()));
        if seen != model {
            panic!(
                "{what} (fault: {fault}): the mount shows {} but the model holds {}\nserver: {}\n{}",
                summary(&seen),
                summary(&model),
                summary(&server_state(server.root()).0),
                log_tail()
            );
        }
    }
    let (server_now, temporaries) = server_state(server.root());
    assert!(server_now == model, "the server holds {} but the model {}", summary(&server_now), summary(&model));
    assert!(temporaries.is_empty() || faults > 0, "temporaries left without faults: {temporaries:?}");
    eprintln!(
        "soak: {ops} operations, {faults} faults injected, {failed_by_fault} failed by them, {} temporaries left",
        temporaries.len()
    );
}
