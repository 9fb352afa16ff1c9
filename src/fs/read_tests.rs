use super::*;
use crate::remote::fake::{Call, FakeRemote};
use std::sync::atomic::Ordering;
use std::time::SystemTime;

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn sequential_reads_use_one_stream() {
    let fake = FakeRemote::new();
    let d = data(1 << 20);
    fake.add_file("f", &d, SystemTime::now());
    let h = ReadHandle::new("f".into(), d.len() as u64, None);
    let mut got = Vec::new();
    for off in (0..d.len()).step_by(64 * 1024) {
        got.extend_from_slice(&h.read(&fake, off as u64, 64 * 1024).unwrap());
    }
    assert_eq!(got, d);
    assert_eq!(fake.count(Call::Open), 1);
    assert!(!h.has_stream(), "stream released at the end of the file");
}

#[test]
fn requests_arriving_slightly_out_of_order_keep_one_stream() {
    let fake = FakeRemote::new();
    let d = data(8 << 20);
    fake.add_file("f", &d, SystemTime::now());
    let h = ReadHandle::new("f".into(), d.len() as u64, None);
    const CHUNK: usize = 128 * 1024;
    // The kernel's read-ahead: requests for 4 chunks at once, handled in a shuffled order.
    for group in (0..d.len()).step_by(4 * CHUNK) {
        for i in [1, 0, 3, 2] {
            let off = group + i * CHUNK;
            assert_eq!(h.read(&fake, off as u64, CHUNK).unwrap(), &d[off..off + CHUNK]);
        }
    }
    assert_eq!(fake.count(Call::Open), 1, "no restarts");
}

#[test]
fn a_download_far_ahead_of_the_cache_writer_is_not_held_back() {
    use crate::fs::content::{ContentCache, Version};
    use std::sync::atomic::AtomicUsize;
    let dir = tempfile::tempdir().unwrap();
    let cache = ContentCache::open(dir.path(), 1 << 30).unwrap();
    let c = Arc::new(cache.open_file("f", Version { size: 8 << 20, mtime: 1 }).unwrap());
    let w = CacheWriter::get();
    let queued = Arc::new(AtomicUsize::new(AHEAD));
    assert!(!w.store(&c, 0, Bytes::from(vec![7; 4096]), &queued, None), "4 MiB already wait: not kept");
    queued.store(AHEAD - 4096, Ordering::SeqCst);
    assert!(w.store(&c, 0, Bytes::from(vec![7; 4096]), &queued, None), "room for it");
    w.settle();
    assert!(c.holds(0) && !c.holds(4096));
    assert_eq!(queued.load(Ordering::SeqCst), AHEAD - 4096, "its bytes no longer wait");
}

#[test]
fn the_servers_refusal_keeps_its_kind() {
    let fake = FakeRemote::new();
    let h = ReadHandle::new("vanished".into(), 10, None);
    let err = h.read(&fake, 0, 10).unwrap_err();
    assert!(matches!(err, crate::remote::RemoteError::NotFound(_)), "ENOENT, not EIO: {err:?}");
}

#[test]
fn far_jumps_restart_and_small_gaps_skip() {
    let fake = FakeRemote::new();
    let d = data(4 << 20);
    fake.add_file("f", &d, SystemTime::now());
    let h = ReadHandle::new("f".into(), d.len() as u64, None);
    assert_eq!(h.read(&fake, 0, 100).unwrap(), &d[..100]);
    assert_eq!(h.read(&fake, 1000, 100).unwrap(), &d[1000..1100], "small gap skipped");
    assert_eq!(fake.count(Call::Open), 1);
    assert_eq!(h.read(&fake, 3 << 20, 100).unwrap(), &d[3 << 20..(3 << 20) + 100]);
    assert_eq!(h.read(&fake, 10, 100).unwrap(), &d[10..110], "backwards restarts");
    assert_eq!(fake.count(Call::Open), 3);
}

/// Two handles on one file, sharing a content cache entry.
fn two_readers(fake: &FakeRemote, d: &[u8]) -> (ReadHandle, ReadHandle, tempfile::TempDir) {
    fake.add_file("f", d, SystemTime::now());
    let dir = tempfile::tempdir().unwrap();
    let cache = super::super::content::ContentCache::open(dir.path(), 1 << 30).unwrap();
    let version = super::super::content::Version::of(d.len() as u64, SystemTime::UNIX_EPOCH);
    let handle = || ReadHandle::new("f".into(), d.len() as u64, cache.open_file("f", version));
    (handle(), handle(), dir)
}

fn read_whole(h: &ReadHandle, fake: &FakeRemote, size: usize, pause: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < size {
        got.extend_from_slice(&h.read(fake, got.len() as u64, 64 * 1024).unwrap());
        std::thread::sleep(pause);
    }
    got
}

#[test]
fn two_readers_of_a_file_at_once_share_one_download() {
    let fake = FakeRemote::new();
    let d = data(3 << 20);
    let (a, b, _dir) = two_readers(&fake, &d);
    std::thread::scope(|s| {
        let first = s.spawn(|| read_whole(&a, &fake, d.len(), Duration::from_millis(2)));
        std::thread::sleep(Duration::from_millis(20));
        let second = s.spawn(|| read_whole(&b, &fake, d.len(), Duration::ZERO));
        assert!(first.join().unwrap() == d, "the first reader's bytes");
        assert!(second.join().unwrap() == d, "the second reader's bytes");
    });
    assert_eq!(fake.count(Call::Open), 1, "one download served both");
}

#[test]
fn a_reader_that_stops_is_not_waited_for_long() {
    let fake = FakeRemote::new();
    let d = data(3 << 20);
    let (a, b, _dir) = two_readers(&fake, &d);
    // The first reader takes 128 KiB and keeps the file open, reading no more.
    assert_eq!(a.read(&fake, 0, 128 * 1024).unwrap(), &d[..128 * 1024]);
    let start = Instant::now();
    assert!(read_whole(&b, &fake, d.len(), Duration::ZERO) == d);
    assert!(start.elapsed() < Duration::from_secs(5), "waited {:?}", start.elapsed());
    assert_eq!(fake.count(Call::Open), 2, "the second reader fetched the rest itself");
}

#[test]
fn read_ahead_arriving_out_of_order_after_a_cached_head_takes_one_download() {
    let fake = FakeRemote::new();
    let d = data(4 << 20);
    let (a, b, _dir) = two_readers(&fake, &d);
    // An earlier reader (`head`) left the first bytes in the cache.
    let head = 96_251;
    assert_eq!(a.read(&fake, 0, head).unwrap(), &d[..head]);
    a.close_if_idle(Duration::ZERO);
    a.settle();
    // A whole read: the kernel's request for the second chunk comes before the first's.
    const CHUNK: usize = 128 * 1024;
    let (first, second) = (head, head + 12 * 4096);
    assert_eq!(b.read(&fake, second as u64, CHUNK).unwrap(), &d[second..second + CHUNK]);
    assert_eq!(b.read(&fake, first as u64, CHUNK).unwrap(), &d[first..first + CHUNK]);
    assert_eq!(fake.count(Call::Open), 2, "the head's download and one more");
}

#[test]
fn reads_past_the_end_need_no_transfer() {
    let fake = FakeRemote::new();
    fake.add_file("f", b"abc", SystemTime::now());
    let h = ReadHandle::new("f".into(), 3, None);
    assert!(h.read(&fake, 3, 10).unwrap().is_empty());
    assert_eq!(h.read(&fake, 1, 10).unwrap(), b"bc");
    assert_eq!(fake.count(Call::Open), 1);
}
