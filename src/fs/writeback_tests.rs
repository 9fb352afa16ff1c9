//! Write-back against the fake remote: what a queued file looks like, how renames, deletes
//! and retries change its upload, and resuming from the journal.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::inode::ROOT;
use super::tests::test_config;
use super::{Fs, FsConfig, OpenMode, SetAttr};
use crate::clock::SystemClock;
use crate::remote::fake::FakeRemote;

fn config(queue: &std::path::Path) -> FsConfig {
    FsConfig { write_back: Some(queue.to_path_buf()), ..test_config() }
}

/// A write-back queue directory of its own, removed when the test ends.
struct QueueDir(std::path::PathBuf);

impl std::ops::Deref for QueueDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for QueueDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for QueueDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn queue_dir(tag: &str) -> QueueDir {
    let d = std::env::temp_dir().join(format!("ftpmount-wb-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    QueueDir(d)
}

fn mode() -> OpenMode {
    OpenMode { write: true, truncate: true, pid: 7, ..Default::default() }
}

/// Creates `name` in the root with `data` and closes it (flush + release).
fn write_file(fs: &Fs, name: &str, data: &[u8]) {
    let (_, fh) = fs.create(ROOT, name, mode(), false).unwrap();
    fs.write(fh, 0, data).unwrap();
    fs.flush(fh, 7).unwrap();
    fs.release(fh);
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn close_returns_before_the_upload_and_a_rename_redirects_it() {
    let fake = Arc::new(FakeRemote::new());
    let dir = queue_dir("rename");
    let fs = Arc::new(Fs::new(fake.clone(), config(&dir), Arc::new(SystemClock)));
    write_file(&fs, ".f.tmp", b"content");
    assert_eq!(fake.file(".f.tmp"), None, "nothing uploaded at close");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the queue (names, paths) is the user's alone: {mode:o}");
    let attr = fs.lookup(ROOT, ".f.tmp").unwrap();
    assert_eq!(attr.size, 7, "the queued file shows its new size");
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    fs.setattr(attr.ino, None, SetAttr { mtime: Some(t), mode: Some(0o640), ..Default::default() }).unwrap();
    fs.rename(ROOT, ".f.tmp", ROOT, "f", false).unwrap();
    let shown = fs.lookup(ROOT, "f").unwrap();
    assert_eq!((shown.size, shown.mtime, shown.perm), (7, t, 0o640));
    fs.start_write_back(2);
    wait_until("upload", || fs.write_back().unwrap().pending() == 0);
    assert_eq!(fake.file("f").as_deref(), Some(&b"content"[..]));
    assert_eq!(fake.paths(), ["f"], "no temporary, no old name: {:?}", fake.paths());
    assert!(std::fs::read_dir(&dir).unwrap().next().is_none(), "the journal is emptied");
}

#[test]
fn a_deleted_queued_file_is_never_uploaded() {
    let fake = Arc::new(FakeRemote::new());
    let dir = queue_dir("unlink");
    let fs = Arc::new(Fs::new(fake.clone(), config(&dir), Arc::new(SystemClock)));
    write_file(&fs, "gone", b"x");
    fs.unlink(ROOT, "gone").unwrap();
    fs.start_write_back(1);
    std::thread::sleep(Duration::from_millis(400));
    assert!(fake.paths().is_empty(), "{:?}", fake.paths());
    assert!(fs.lookup(ROOT, "gone").is_err());
}

#[test]
fn connection_failures_are_retried_until_the_upload_succeeds() {
    let fake = Arc::new(FakeRemote::new());
    let dir = queue_dir("retry");
    let fs = Arc::new(Fs::new(fake.clone(), config(&dir), Arc::new(SystemClock)));
    write_file(&fs, "f", b"data");
    fake.fail_next(1);
    fs.start_write_back(1);
    wait_until("retried upload", || fake.file("f").is_some());
    assert_eq!(fake.file("f").as_deref(), Some(&b"data"[..]));
    assert!(fs.failed_uploads().is_empty());
}

#[test]
fn refused_uploads_are_reported_and_their_data_kept() {
    let fake = Arc::new(FakeRemote::new());
    let dir = queue_dir("refused");
    let fs = Arc::new(Fs::new(fake.clone(), config(&dir), Arc::new(SystemClock)));
    fake.fail_uploads_with(crate::remote::RemoteError::PermissionDenied("553 no".into()));
    write_file(&fs, "f", b"precious");
    fs.start_write_back(1);
    wait_until("failure", || !fs.failed_uploads().is_empty());
    let failure = &fs.failed_uploads()[0];
    assert_eq!(failure.path, "f");
    assert!(failure.error.contains("553"), "{failure}");
    let kept: Vec<_> = std::fs::read_dir(dir.join("failed")).unwrap().flatten().map(|e| e.path()).collect();
    let data = kept.iter().find(|p| p.extension().is_some_and(|x| x == "data")).expect("data kept");
    assert_eq!(std::fs::read(data).unwrap(), b"precious");
    assert_eq!(failure.kept_in.as_ref(), Some(data), "{failure}");
    assert!(fake.paths().is_empty(), "nothing half-done on the server: {:?}", fake.paths());
}

#[test]
fn uploads_left_by_a_crash_resume_from_the_journal() {
    let fake = Arc::new(FakeRemote::new());
    let dir = queue_dir("resume");
    {
        // No workers: the "crash" comes before any upload.
        let fs = Fs::new(fake.clone(), config(&dir), Arc::new(SystemClock));
        write_file(&fs, "a", b"first");
        write_file(&fs, "b", b"second");
        let b = fs.lookup(ROOT, "b").unwrap();
        fs.setattr(b.ino, None, SetAttr { mode: Some(0o600), ..Default::default() }).unwrap();
        fs.rename(ROOT, "b", ROOT, "c", false).unwrap();
        std::mem::forget(fs);
    }
    let fs = Arc::new(Fs::new(fake.clone(), config(&dir), Arc::new(SystemClock)));
    assert_eq!(fs.resume_write_back(), 2);
    assert_eq!(fs.lookup(ROOT, "c").unwrap().perm, 0o600, "the journal keeps renames and modes");
    fs.start_write_back(2);
    wait_until("resumed uploads", || fs.write_back().unwrap().pending() == 0);
    assert_eq!(fake.file("a").as_deref(), Some(&b"first"[..]));
    assert_eq!(fake.file("c").as_deref(), Some(&b"second"[..]));
    assert_eq!(fake.paths(), ["a", "c"]);
}
