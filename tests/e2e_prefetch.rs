//! Prefetch for small-file reads (issue 16): a program copying a folder out of the mount
//! (`cp -r`) reads one file after another; after the first two, the next files of the
//! directory are fetched in the background into the content cache. What the server sent is
//! counted from vsftpd's transfer log (one `OK DOWNLOAD` / `FAIL DOWNLOAD` line per `RETR`, with
//! its bytes): every file once, no more.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// What the server sent, from its log since a mark.
#[derive(Default, Debug)]
struct Sent {
    retr: usize,
    bytes: u64,
    /// Per path: (downloads, bytes).
    files: BTreeMap<String, (usize, u64)>,
}

fn sent_since(log: &str, mark: usize) -> Sent {
    let mut s = Sent::default();
    for line in log.get(mark..).unwrap_or("").lines() {
        let Some((kind, path, n)) = parse_transfer(line) else { continue };
        if kind == "DOWNLOAD" {
            s.retr += 1;
            s.bytes += n;
            let e = s.files.entry(path.to_string()).or_default();
            e.0 += 1;
            e.1 += n;
        }
    }
    s
}

/// Waits until the server's log has been quiet for a moment (prefetches and their transfer
/// lines have landed); then what was sent since `mark`.
fn settled(server: &Vsftpd, mark: usize) -> Sent {
    let log = settled_log(server, mark, Duration::from_millis(1500), Duration::from_secs(120), |_| true);
    sent_since(&log, mark)
}

/// `n` files of 1 B to 16 KiB (`f000.dat`…) in `dir`, dated in the past; their total size.
fn small_files(dir: &Path, n: usize, seed: u64) -> u64 {
    fs::create_dir_all(dir).unwrap();
    let mut total = 0;
    for i in 0..n {
        let size = 1 + (i * 7919 + seed as usize * 131) % (16 * 1024);
        let f = dir.join(format!("f{i:03}.dat"));
        fs::write(&f, pseudo_random(size, seed * 1000 + i as u64)).unwrap();
        set_mtime(&f, 1_700_000_000 + i as i64 * 60);
        total += size as u64;
    }
    total
}

/// Every file under `a` is under `b` with the same bytes, and nothing else is.
fn assert_same_tree(a: &Path, b: &Path) {
    let (la, lb) = (tree_listing(a), tree_listing(b));
    assert_eq!(la, lb, "the copy has other names");
    for rel in la {
        let (pa, pb) = (a.join(&rel), b.join(&rel));
        if pa.is_file() {
            assert!(fs::read(&pa).unwrap() == fs::read(&pb).unwrap(), "{rel} differs");
        }
    }
}

#[test]
fn cp_r_of_a_folder_of_small_files_downloads_each_file_once_and_is_served_by_the_prefetch() {
    let certs = Certs::new();
    let root = TempDir::new("root");
    let mut total = small_files(&root.path().join("folder"), 300, 1);
    total += small_files(&root.path().join("folder/sub"), 20, 2);
    let server = tls_vsftpd(&certs, root, "");
    let mount = Mount::of(&server, Some(&certs), &[]);
    let out = TempDir::new("out");

    let mark = server.log().len();
    run_ok(Command::new("cp").arg("-r").arg(mount.path().join("folder")).arg(out.path()));
    let sent = settled(&server, mark);
    assert_same_tree(&server.root().join("folder"), &out.path().join("folder"));

    let status = status_json(mount.path());
    let p = &status["prefetch"];
    eprintln!(
        "issue 16 | cp -r of 320 small files ({total} bytes): {} RETR, {} bytes sent ({:.3}×); prefetch {p}",
        sent.retr,
        sent.bytes,
        sent.bytes as f64 / total as f64
    );
    let twice: Vec<_> = sent.files.iter().filter(|(_, (n, _))| *n != 1).collect();
    assert!(twice.is_empty(), "files downloaded more than once: {twice:?}");
    assert_eq!(sent.files.len(), 320, "every file downloaded");
    assert!(sent.bytes as f64 <= 1.1 * total as f64, "{} bytes sent for {total}", sent.bytes);
    assert!(p["hits"].as_u64().unwrap() > 0, "{status}");
    assert_eq!(p["unused_bytes"].as_u64(), Some(0), "everything fetched ahead was read: {status}");
    let text = run_ok(Command::new(bin()).args(["status", mount.path().to_str().unwrap()]));
    assert!(text.contains("  prefetch: ") && text.contains(" hits "), "{text}");
}

#[test]
fn a_file_changed_on_the_server_during_a_walk_is_read_with_its_new_content() {
    let certs = Certs::new();
    let root = TempDir::new("root");
    small_files(&root.path().join("folder"), 40, 3);
    let server = tls_vsftpd(&certs, root, "");
    let mount = Mount::of(&server, Some(&certs), &[]);
    let dir = mount.path().join("folder");
    let server_dir = server.root().join("folder");

    // Listing order, as `cp -r` and `tar` read a directory.
    let names: Vec<String> =
        fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names.len(), 40);
    for name in &names[..10] {
        assert!(fs::read(dir.join(name)).unwrap() == fs::read(server_dir.join(name)).unwrap(), "{name}");
    }
    // The next file is fetched ahead (the walk is 10 files long by now)…
    let next = &names[10];
    let start = Instant::now();
    while !server.log().contains(&format!("/folder/{next}\", ")) {
        assert!(start.elapsed() < Duration::from_secs(60), "{next} was not fetched ahead");
        std::thread::sleep(Duration::from_millis(20));
    }
    // …and then changed on the server: another size and time.
    let new = pseudo_random(20_000, 99);
    fs::write(server_dir.join(next), &new).unwrap();
    set_mtime(&server_dir.join(next), 1_750_000_000);
    // Past open's one-second trust in the listing: the open asks the server.
    std::thread::sleep(Duration::from_millis(1200));
    for name in &names[10..] {
        let got = fs::read(dir.join(name)).unwrap();
        assert!(got == fs::read(server_dir.join(name)).unwrap(), "{name} differs from the server's");
    }
    assert!(fs::read(dir.join(next)).unwrap() == new);
    let p = status_json(mount.path())["prefetch"].clone();
    eprintln!("issue 16 | changed mid-walk: prefetch {p}");
    assert!(p["unused_bytes"].as_u64().unwrap() > 0, "the old version fetched ahead was not read: {p}");
    assert!(p["hits"].as_u64().unwrap() > 0, "{p}");
}
