//! The content cache through the filesystem (issue 15): what is read once is not downloaded
//! again while the file is unchanged, in the same mount and the next; uploads fill it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::inode::ROOT;
use super::tests::test_config;
use super::{Fs, FsConfig, OpenMode};
use crate::clock::SystemClock;
use crate::remote::fake::{Call, FakeRemote};

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

const READ: OpenMode = OpenMode { read: true, write: false, truncate: false, append: false, pid: 1, create_mode: None };

fn config(dir: &std::path::Path) -> FsConfig {
    FsConfig { content_cache: Some((dir.join("content"), 1 << 30)), ..test_config() }
}

fn mount(fake: &Arc<FakeRemote>, dir: &std::path::Path) -> Fs {
    Fs::new(fake.clone(), config(dir), Arc::new(SystemClock))
}

/// Reads `len` bytes from the start of a file (all of it with `usize::MAX`), as a file
/// manager does: 128 KiB requests, then close.
fn read(fs: &Fs, name: &str, len: usize) -> Vec<u8> {
    let ino = fs.lookup(ROOT, name).unwrap().ino;
    let fh = fs.open(ino, READ).unwrap();
    let mut out = Vec::new();
    while out.len() < len {
        let chunk = fs.read(fh, out.len() as u64, (128 * 1024).min(len - out.len())).unwrap();
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    fs.release(fh);
    out
}

fn an_hour_ago() -> SystemTime {
    SystemTime::now() - Duration::from_secs(3600)
}

#[test]
fn a_file_read_once_is_not_downloaded_again_in_this_mount_or_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeRemote::new());
    let d = data(700_000);
    fake.add_file("img.jpg", &d, an_hour_ago());
    {
        let fs = mount(&fake, dir.path());
        assert_eq!(read(&fs, "img.jpg", usize::MAX), d);
        assert_eq!(read(&fs, "img.jpg", usize::MAX), d);
        assert_eq!(fake.count(Call::Open), 1, "the second read came from the cache");
        let stats = fs.content_stats().unwrap();
        assert_eq!(stats.hit_bytes, d.len() as u64);
        fs.close_reads();
    }
    let fs = mount(&fake, dir.path());
    assert_eq!(read(&fs, "img.jpg", usize::MAX), d);
    assert_eq!(fake.count(Call::Open), 1, "after a remount too");
}

#[test]
fn a_file_changed_on_the_server_is_downloaded_again() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeRemote::new());
    let t0 = an_hour_ago();
    fake.add_file("f", &data(5000), t0);
    let fs = mount(&fake, dir.path());
    assert_eq!(read(&fs, "f", usize::MAX), data(5000));
    // Same size, new content, a later time: another version.
    let changed: Vec<u8> = data(5000).iter().map(|b| b ^ 0xff).collect();
    fake.add_file("f", &changed, t0 + Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1100)); // the listing is older than open's freshness
    assert_eq!(read(&fs, "f", usize::MAX), changed, "the new content, never the cached one");
}

#[test]
fn a_sniff_then_a_whole_read_is_one_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeRemote::new());
    let d = data(3 << 20);
    fake.add_file("big.png", &d, an_hour_ago());
    let fs = mount(&fake, dir.path());
    assert_eq!(read(&fs, "big.png", 8192), &d[..8192]);
    assert_eq!(read(&fs, "big.png", usize::MAX), d);
    assert_eq!(fake.count(Call::Open), 1, "the second open went on with the first transfer");
    let stats = fs.content_stats().unwrap();
    assert_eq!(stats.miss_bytes, d.len() as u64, "every byte downloaded once");
}

#[test]
fn a_part_read_earlier_is_not_downloaded_again() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeRemote::new());
    let d = data(2 << 20);
    fake.add_file("v.mp4", &d, an_hour_ago());
    let fs = mount(&fake, dir.path());
    assert_eq!(read(&fs, "v.mp4", 256 * 1024), &d[..256 * 1024]);
    fs.close_reads(); // the transfer ends instead of waiting for the next open
    assert_eq!(read(&fs, "v.mp4", usize::MAX), d);
    let stats = fs.content_stats().unwrap();
    assert!(stats.hit_bytes >= 256 * 1024, "{stats:?}");
    assert_eq!(stats.miss_bytes, d.len() as u64, "the second transfer started where the cache ends: {stats:?}");
}

#[test]
fn a_file_just_uploaded_is_read_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeRemote::new());
    let fs = mount(&fake, dir.path());
    let d = data(300_000);
    let (_, fh) = fs.create(ROOT, "new.jpg", OpenMode { write: true, truncate: true, ..READ }, false).unwrap();
    for (i, chunk) in d.chunks(64 * 1024).enumerate() {
        fs.write(fh, (i * 64 * 1024) as u64, chunk).unwrap();
    }
    fs.flush(fh, 1).unwrap();
    fs.release(fh);
    assert_eq!(fake.file("new.jpg").unwrap(), d);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(read(&fs, "new.jpg", usize::MAX), d);
    assert_eq!(fake.count(Call::Open), 0, "nothing downloaded");
}

#[test]
fn without_the_cache_every_open_downloads() {
    let fake = Arc::new(FakeRemote::new());
    fake.add_file("f", &data(1000), an_hour_ago());
    let fs = Fs::new(fake.clone(), test_config(), Arc::new(SystemClock));
    read(&fs, "f", usize::MAX);
    read(&fs, "f", usize::MAX);
    assert_eq!(fake.count(Call::Open), 2);
    assert!(!fs.keeps_content());
}
