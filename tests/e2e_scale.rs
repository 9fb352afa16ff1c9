//! Scale (issue 19): a directory of 30,000 files and a tree of 10,000 through a real mount of
//! vsftpd. `ls -l` shows every name with its exact time, `find` every entry, and what the
//! daemon holds follows what the kernel holds: once the kernel drops its caches (and so
//! forgets the inodes), `status` shows the inodes gone and the listing cache within its bound.
//! (Times and resident memory at 100,000 and 1,000,000 entries: `scripts/bench scale`.)

mod common;

use common::*;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// Files made on the server's disk, tiny, with times to the second spread over years (so
/// `LIST` shows some with minutes and some with the year only, and `MDTM` must give seconds).
fn make_files(dir: &Path, count: usize) {
    fs::create_dir_all(dir).unwrap();
    for i in 0..count {
        let p = dir.join(format!("IMG_{i:06}.jpg"));
        fs::write(&p, &b"0123456789"[..i % 11]).unwrap();
        let secs = if i % 2 == 0 { 1_500_000_000 + i as u64 * 7 } else { now_secs() - 86_400 - i as u64 * 3 };
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        fs::File::options().write(true).open(&p).unwrap().set_modified(t).unwrap();
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect()
}

fn memory(mnt: &Path) -> serde_json::Value {
    status_json(mnt)["memory"].clone()
}

/// `drop_caches` is system-wide: a test counting the inodes the kernel holds must not run while
/// another one makes the kernel drop them. Each test here holds this for its whole run.
static KERNEL_CACHES: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    KERNEL_CACHES.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The kernel drops its cached names and inodes, and with them its references to ours.
fn drop_kernel_caches() {
    fs::write("/proc/sys/vm/drop_caches", "2").expect("dropping the kernel's caches (needs root)");
}

/// Waits (up to a minute) until the mount holds at most `most` inodes; returns how many it holds.
fn inodes_fall_to(mnt: &Path, most: u64) -> u64 {
    let start = Instant::now();
    loop {
        let inodes = memory(mnt)["inodes"].as_u64().unwrap();
        if inodes <= most || start.elapsed() > Duration::from_secs(60) {
            return inodes;
        }
        drop_kernel_caches();
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn ls_l_of_30000_files_shows_every_name_with_its_exact_time_and_the_inodes_go_when_the_kernel_forgets() {
    let _alone = alone();
    let root = TempDir::new("root");
    make_files(&root.path().join("big"), 30_000);
    let server = Vsftpd::start(root, VsftpdOptions::default());
    let mount = Mount::of(&server, None, &["--tls", "off"]);
    let big = mount.path().join("big");

    let out = Command::new("ls").arg("-l").arg(&big).env("LC_ALL", "C").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = String::from_utf8(out.stdout).unwrap();
    assert_eq!(lines.lines().count(), 30_001, "a total line and one line per file");
    assert_eq!(names_in(&big), names_in(&server.root().join("big")), "the same names as on the server's disk");
    for i in (0..30_000).step_by(997) {
        let name = format!("IMG_{i:06}.jpg");
        let (mine, theirs) =
            (fs::metadata(big.join(&name)).unwrap(), fs::metadata(server.root().join("big").join(&name)).unwrap());
        assert_eq!((mine.len(), mine.mtime()), (theirs.len(), theirs.mtime()), "{name}: size and time to the second");
    }

    let held = memory(mount.path());
    assert!(held["inodes"].as_u64().unwrap() >= 30_000, "the kernel holds the entries ls -l saw: {held}");
    let left = inodes_fall_to(mount.path(), 10);
    assert!(left <= 10, "the kernel forgot them, and so did the mount: {} inodes left", left);
    // Still all there: listed again (or from the cache) when asked.
    assert_eq!(names_in(&big).len(), 30_000);
}

#[test]
fn find_walks_a_tree_of_10000_entries_and_the_listing_cache_stays_within_its_bound() {
    let _alone = alone();
    let root = TempDir::new("root");
    for d in 0..20 {
        make_files(&root.path().join("tree").join(format!("d{d:02}")), 500);
    }
    let server = Vsftpd::start(root, VsftpdOptions::default());
    let mount = Mount::of(&server, None, &["--tls", "off"]);
    for pass in ["cold", "warm"] {
        let out = Command::new("find").arg(mount.path().join("tree")).output().unwrap();
        assert!(out.status.success(), "{pass}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1 + 20 + 10_000, "{pass} walk: every entry");
    }
    let out =
        Command::new("du").arg("-s").arg("--apparent-size").arg("-B1").arg(mount.path().join("tree")).output().unwrap();
    let on_disk: u64 = (0..10_000u64).map(|i| (i % 500) % 11).sum();
    let shown: u64 = String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!(shown >= on_disk, "du sees every file's size ({shown} >= {on_disk})");
    let m = memory(mount.path());
    assert!(m["listings"].as_u64().unwrap() >= 21 && m["listing_entries"].as_u64().unwrap() >= 10_000, "{m}");
    let left = inodes_fall_to(mount.path(), 10);
    assert!(left <= 10, "after the kernel forgot the walk: {left} inodes left");
}
