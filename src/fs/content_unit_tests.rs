//! Unit tests of the content cache's own parts (byte ranges, versions, the index on disk,
//! eviction); `content_tests.rs` tests it through the filesystem.

use super::*;

fn v(size: u64, mtime: i64) -> Version {
    Version { size, mtime }
}

#[test]
fn ranges_merge_and_report_what_is_new() {
    let mut r = Ranges::default();
    assert_eq!(r.insert(10, 20), 10);
    assert_eq!(r.insert(30, 40), 10);
    assert_eq!(r.insert(15, 35), 10, "only the gap 20..30 is new");
    assert_eq!(r.0.len(), 1);
    assert_eq!(r.covered_from(10), 30);
    assert_eq!(r.covered_from(39), 1);
    assert_eq!(r.covered_from(40), 0);
    assert_eq!(r.covered_from(5), 0);
    assert_eq!(r.insert(40, 50), 10, "touching ranges join");
    assert_eq!(r.0.len(), 1);
    assert_eq!(r.insert(0, 100), 60);
    assert_eq!(r.total(), 100);
}

#[test]
fn a_part_read_is_served_and_a_new_version_drops_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ContentCache::open(dir.path(), 1 << 20).unwrap();
    let f = cache.open_file("/a", v(100, 5)).unwrap();
    assert!(f.read(0, 10).is_empty());
    assert!(f.store(0, &[7u8; 40]));
    assert_eq!(f.read(0, 100), vec![7u8; 40], "the part held, no further");
    assert!(f.read(40, 10).is_empty());
    assert!(!f.complete());
    let again = cache.open_file("/a", v(100, 5)).unwrap();
    assert_eq!(again.read(10, 5), vec![7u8; 5]);
    let changed = cache.open_file("/a", v(100, 6)).unwrap();
    assert!(changed.read(0, 10).is_empty(), "another mtime: nothing served");
    assert!(!f.store(40, &[1; 10]), "the old version's reader stops storing");
}

#[test]
fn bytes_past_the_size_are_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ContentCache::open(dir.path(), 1 << 20).unwrap();
    let f = cache.open_file("/a", v(10, 1)).unwrap();
    assert!(f.store(5, &[1u8; 20]));
    assert_eq!(f.read(5, 100).len(), 5);
    assert_eq!(cache.stats().used, 5);
}

#[test]
fn it_survives_a_remount_and_a_second_mount_cannot_share_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = ContentCache::open(dir.path(), 1 << 20).unwrap();
        assert!(ContentCache::open(dir.path(), 1 << 20).is_err(), "locked while in use");
        let f = cache.open_file("/dir/a b", v(6, 9)).unwrap();
        f.store(0, b"abcdef");
        cache.flush();
    }
    let cache = ContentCache::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(cache.stats().used, 6);
    let f = cache.open_file("/dir/a b", v(6, 9)).unwrap();
    assert_eq!(f.read(0, 6), b"abcdef");
    assert!(f.complete());
}

#[test]
fn ranges_not_flushed_are_not_trusted_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = ContentCache::open(dir.path(), 1 << 20).unwrap();
        let f = cache.open_file("/a", v(6, 9)).unwrap();
        f.store(0, b"abc");
        cache.flush();
        f.store(3, b"def");
        // no flush: a crash
    }
    let cache = ContentCache::open(dir.path(), 1 << 20).unwrap();
    let f = cache.open_file("/a", v(6, 9)).unwrap();
    assert_eq!(f.read(0, 6), b"abc");
}

#[test]
fn the_least_recently_used_files_make_room() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ContentCache::open(dir.path(), 100).unwrap();
    for name in ["/a", "/b", "/c"] {
        let f = cache.open_file(name, v(40, 1)).unwrap();
        f.store(0, &[1; 40]);
    }
    let s = cache.stats();
    assert!(s.used <= 100, "{s:?}");
    assert!(cache.open_file("/a", v(40, 1)).unwrap().read(0, 40).is_empty(), "the oldest went");
    assert_eq!(cache.open_file("/c", v(40, 1)).unwrap().read(0, 40).len(), 40);
    assert!(cache.open_file("/big", v(60, 1)).is_none(), "more than half the limit is not kept");
    cache.flush();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1 + 2 * cache.stats().files as usize);
}

#[test]
fn an_upload_is_served_once_the_server_shows_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ContentCache::open(dir.path(), 1 << 20).unwrap();
    let mut src = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut src, b"uploaded").unwrap();
    cache.keep_upload("/u", &src, 8);
    let server_time = Version::of(8, SystemTime::now()).mtime + 1;
    let f = cache.open_file("/u", v(8, server_time)).unwrap();
    assert_eq!(f.read(0, 8), b"uploaded", "adopted: size equal, time near the upload");
    assert_eq!(cache.stats().miss_bytes, 0, "nothing downloaded");

    cache.keep_upload("/w", &src, 8);
    let f = cache.open_file("/w", v(8, 1000)).unwrap();
    assert!(f.read(0, 8).is_empty(), "a time far from the upload: another version");

    cache.keep_upload("/x", &src, 8);
    let set = SystemTime::UNIX_EPOCH + Duration::from_secs(5000);
    cache.uploaded_time("/x", set);
    assert_eq!(cache.open_file("/x", Version::of(8, set)).unwrap().read(0, 8), b"uploaded");
}
