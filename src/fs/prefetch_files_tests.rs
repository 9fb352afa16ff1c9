//! Prefetch of small files for a reader walking a directory (issue 16), against the fake
//! remote: when a walk is seen, what is fetched and how often, the bounds, and what a change
//! on the server or a waiting request does to it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use super::content::{ContentCache, Version};
use super::dircache::Listing;
use super::inode::ROOT;
use super::prefetch_files::{FilePrefetcher, Limits};
use super::tests::test_config;
use super::{Fs, FsConfig, OpenMode};
use crate::clock::Clock;
use crate::remote::Remote;
use crate::remote::fake::{Call, FakeRemote};

const READ: OpenMode = OpenMode { read: true, write: false, truncate: false, append: false, pid: 1, create_mode: None };
const WAIT: Duration = Duration::from_secs(10);

struct Manual(Mutex<Instant>);

impl Clock for Manual {
    fn now(&self) -> Instant {
        *self.0.lock()
    }
}

fn data(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 31 + seed * 7) % 251) as u8).collect()
}

fn an_hour_ago() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// `n` files `d/f000`… of a few KiB each.
fn folder(fake: &FakeRemote, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let d = data(1000 + i * 37, i);
            fake.add_file(&format!("d/f{i:03}"), &d, an_hour_ago());
            d
        })
        .collect()
}

struct Rig {
    fake: Arc<FakeRemote>,
    fs: Fs,
    clock: Arc<Manual>,
    _dir: tempfile::TempDir,
}

fn rig(fake: Arc<FakeRemote>, files_ahead: usize) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(Manual(Mutex::new(Instant::now())));
    let config = FsConfig {
        content_cache: Some((dir.path().join("content"), 1 << 30)),
        prefetch_files: files_ahead,
        prefetch_file_sessions: 2,
        ..test_config()
    };
    let fs = Fs::new(fake.clone(), config, clock.clone());
    Rig { fake, fs, clock, _dir: dir }
}

impl Rig {
    /// Lists `d` (as `cp -r` does first) and lets the listing age past open's freshness, so
    /// every open asks the server (close-to-open).
    fn list(&self) -> u64 {
        let d = self.fs.lookup(ROOT, "d").unwrap().ino;
        self.fs.readdir(d, false).unwrap();
        *self.clock.0.lock() += Duration::from_secs(2);
        d
    }

    /// Opens `d/name`, reads it whole in 128 KiB requests, closes it.
    fn read(&self, d: u64, name: &str) -> Vec<u8> {
        let ino = self.fs.lookup(d, name).unwrap().ino;
        let fh = self.fs.open(ino, READ).unwrap();
        let mut out = Vec::new();
        loop {
            let chunk = self.fs.read(fh, out.len() as u64, 128 * 1024).unwrap();
            if chunk.is_empty() {
                break;
            }
            out.extend_from_slice(&chunk);
        }
        self.fs.release(fh);
        out
    }

    fn downloads_of(&self, path: &str) -> usize {
        self.fake.downloads().iter().filter(|p| *p == path).count()
    }

    fn downloads(&self) -> usize {
        self.fake.downloads().len()
    }

    fn prefetcher(&self) -> &Arc<FilePrefetcher> {
        self.fs.files_ahead.as_ref().expect("prefetch on")
    }

    /// Reads f000 and f001 whole, in order (a walk), and waits for what that fetches ahead.
    fn walk_two(&self, d: u64) {
        self.read(d, "f000");
        self.read(d, "f001");
        self.settle();
    }

    fn settle(&self) {
        assert!(self.prefetcher().wait_idle(WAIT), "the prefetch did not finish");
    }
}

#[test]
fn a_walk_through_a_directory_is_served_from_files_fetched_ahead_each_downloaded_once() {
    let fake = Arc::new(FakeRemote::new());
    let files = folder(&fake, 60);
    let r = rig(fake, 8);
    let d = r.list();
    for (i, want) in files.iter().enumerate() {
        assert_eq!(&r.read(d, &format!("f{i:03}")), want, "f{i:03}");
        // Deterministic: what was wanted is fetched before the next open.
        r.settle();
        if i == 0 {
            assert_eq!(r.downloads(), 1, "one read is no walk yet");
        }
        if i == 1 {
            assert_eq!(r.downloads(), 2 + 4, "two whole reads in order make a walk: the next 4 files are fetched");
        }
    }
    for i in 0..60 {
        assert_eq!(r.downloads_of(&format!("d/f{i:03}")), 1, "f{i:03} was downloaded once");
    }
    let s = r.fs.prefetch_stats().unwrap();
    assert_eq!(s.hits, 58, "all but the first two: {s:?}");
    assert_eq!(s.files, s.hits, "every file fetched ahead was read: {s:?}");
    assert_eq!(s.bytes, s.hit_bytes, "{s:?}");
    assert_eq!(s.unused_bytes, 0, "{s:?}");
}

#[test]
fn a_walk_goes_on_into_the_next_directory_as_cp_r_does() {
    let fake = Arc::new(FakeRemote::new());
    for d in ["a", "b"] {
        for i in 0..10 {
            fake.add_file(&format!("t/{d}/f{i:03}"), &data(2000, i), an_hour_ago());
        }
    }
    let r = rig(fake, 4);
    let t = r.fs.lookup(ROOT, "t").unwrap().ino;
    r.fs.readdir(t, false).unwrap();
    let (a, b) = (r.fs.lookup(t, "a").unwrap().ino, r.fs.lookup(t, "b").unwrap().ino);
    r.fs.readdir(a, false).unwrap();
    r.fs.readdir(b, false).unwrap();
    *r.clock.0.lock() += Duration::from_secs(2);
    for i in 0..10 {
        r.read(a, &format!("f{i:03}"));
        r.settle();
    }
    assert_eq!(r.downloads_of("t/b/f000"), 1, "the first files of the next directory are fetched");
    for i in 0..10 {
        r.read(b, &format!("f{i:03}"));
        r.settle();
    }
    let s = r.fs.prefetch_stats().unwrap();
    assert_eq!(s.hits, 18, "all but the first two of a: {s:?}");
    assert_eq!(r.downloads(), 20, "each file once");
}

#[test]
fn no_prefetch_without_whole_reads_in_listing_order() {
    let fake = Arc::new(FakeRemote::new());
    folder(&fake, 20);
    let r = rig(fake, 8);
    let d = r.list();
    // Out of order, whole: no walk.
    for i in [0, 5, 2, 9, 3] {
        r.read(d, &format!("f{i:03}"));
    }
    // In order, but only the first bytes of each (a file manager sniffing types): no walk.
    for i in 10..16 {
        let ino = r.fs.lookup(d, &format!("f{i:03}")).unwrap().ino;
        let fh = r.fs.open(ino, READ).unwrap();
        r.fs.read(fh, 0, 100).unwrap();
        r.fs.release(fh);
    }
    r.settle();
    assert_eq!(r.downloads(), 11, "only what was read");
    assert_eq!(r.fs.prefetch_stats().unwrap().files, 0);
}

#[test]
fn a_miss_stops_the_walk_and_the_window_bounds_how_far_it_goes() {
    let fake = Arc::new(FakeRemote::new());
    folder(&fake, 100);
    fake.add_file("d/f001x-big", &data(5 << 20, 1), an_hour_ago());
    let r = rig(fake, 4);
    let d = r.list();
    r.walk_two(d);
    // f001x-big (5 MiB, after f001 in listing order) counts in the window but is not fetched.
    assert_eq!(r.downloads_of("d/f001x-big"), 0, "files over 4 MiB are left to the reader");
    assert_eq!(r.downloads(), 2 + 3, "the window: 4 files ahead, the big one skipped");
    // A jump elsewhere in the directory: the walk stops.
    r.read(d, "f050");
    r.read(d, "f070");
    r.settle();
    assert_eq!(r.downloads(), 2 + 3 + 2, "nothing more fetched after a miss");
    let s = r.fs.prefetch_stats().unwrap();
    assert_eq!((s.files, s.hits), (3, 0), "{s:?}");
    assert_eq!(s.waiting_bytes, s.bytes, "fetched, not read yet: {s:?}");
}

#[test]
fn the_window_grows_while_files_are_found_ready() {
    let fake = Arc::new(FakeRemote::new());
    folder(&fake, 80);
    let r = rig(fake, 32);
    let d = r.list();
    let mut most_ahead = 0;
    for i in 0..40 {
        r.read(d, &format!("f{i:03}"));
        r.settle();
        most_ahead = most_ahead.max(r.downloads() - (i + 1));
    }
    assert_eq!(most_ahead, 32, "4 files ahead at first, doubling up to --prefetch-files");
}

#[test]
fn the_byte_bound_holds_however_many_files_are_wanted() {
    let fake = Arc::new(FakeRemote::new());
    let dir = tempfile::tempdir().unwrap();
    for i in 0..20 {
        fake.add_file(&format!("d/f{i:03}"), &data(10_000, i), an_hour_ago());
    }
    let cache = ContentCache::open(dir.path(), 1 << 30).unwrap();
    let limits = Limits { files: 100, bytes: 35_000, file_size: 1 << 20, sessions: 1 };
    let clock = Arc::new(Manual(Mutex::new(Instant::now())));
    let p = FilePrefetcher::start(cache.clone(), fake.clone(), limits, clock);
    let listing = Listing::new(fake.list("d").unwrap(), Instant::now());
    struct NoView;
    impl super::prefetch_files::View for NoView {
        fn cached_listing(&self, _: &str) -> Option<Arc<Listing>> {
            None
        }
        fn busy(&self, _: &str) -> bool {
            false
        }
    }
    let no = NoView;
    for name in ["f000", "f001"] {
        assert_eq!(p.opened("d", name, &listing, &no), None);
        p.read_to_end("d", name, &listing, &no);
    }
    assert!(p.wait_idle(WAIT));
    assert_eq!(fake.downloads().len(), 3, "35,000 bytes: three files of 10,000");
    // Reading one makes room for one more.
    assert!(p.opened("d", "f002", &listing, &no).is_some());
    p.read_to_end("d", "f002", &listing, &no);
    assert!(p.wait_idle(WAIT));
    assert_eq!(fake.downloads().len(), 4);
    assert!(cache.holds_whole("d/f005", Version::of(10_000, an_hour_ago())));
}

#[test]
fn no_download_starts_while_requests_wait_for_a_session() {
    let fake = Arc::new(FakeRemote::new());
    folder(&fake, 20);
    let r = rig(fake.clone(), 8);
    let d = r.list();
    r.walk_two(d);
    let before = r.downloads();
    fake.set_sessions_wanted(true);
    r.read(d, "f002");
    r.read(d, "f003");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(r.downloads(), before, "the queue waits while others want a session");
    fake.set_sessions_wanted(false);
    r.settle();
    assert!(r.downloads() > before, "and goes on once they have one");
}

#[test]
fn an_open_waits_for_the_download_under_way_instead_of_starting_another() {
    let fake = Arc::new(FakeRemote::new());
    let files = folder(&fake, 10);
    let r = Arc::new(rig(fake.clone(), 2));
    let d = r.list();
    walk_with_downloads_held(&r, d);
    let reader = {
        let r = r.clone();
        std::thread::spawn(move || r.read(d, "f002"))
    };
    std::thread::sleep(Duration::from_millis(50));
    fake.gate().open();
    assert_eq!(reader.join().unwrap(), files[2]);
    r.settle();
    assert_eq!(r.downloads_of("d/f002"), 1, "the open took the prefetch's download");
    assert_eq!(r.fs.prefetch_stats().unwrap().hits, 1);
}

#[test]
fn a_file_changed_or_deleted_on_the_server_is_read_as_it_is_now() {
    let fake = Arc::new(FakeRemote::new());
    let files = folder(&fake, 12);
    let r = rig(fake.clone(), 8);
    let d = r.list();
    r.walk_two(d);
    assert_eq!(r.downloads_of("d/f003"), 1, "fetched ahead");
    // Changed on the server more than a second after it was fetched: open sees the new version.
    *r.clock.0.lock() += Duration::from_secs(2);
    let new = b"changed on the server".to_vec();
    fake.add_file("d/f003", &new, an_hour_ago() + Duration::from_secs(60));
    // Deleted: open says so.
    fake.remove("d/f004");
    assert_eq!(r.read(d, "f002"), files[2]);
    assert_eq!(r.read(d, "f003"), new, "the new content, not the one fetched ahead");
    let ino = r.fs.lookup(d, "f004").unwrap().ino;
    assert!(r.fs.open(ino, READ).is_err(), "deleted on the server");
    r.settle();
    let s = r.fs.prefetch_stats().unwrap();
    assert!(s.unused_bytes >= files[3].len() as u64 + files[4].len() as u64, "{s:?}");
}

#[test]
fn a_file_fetched_ahead_less_than_a_second_ago_needs_no_check_at_open() {
    let fake = Arc::new(FakeRemote::new());
    let files = folder(&fake, 12);
    let r = rig(fake.clone(), 8);
    let d = r.list();
    r.walk_two(d);
    // All of f002 came from the server just now (by the mount's clock): as good an answer
    // to close-to-open as a listing younger than a second.
    let asked = fake.count(Call::Stat);
    assert_eq!(r.read(d, "f002"), files[2]);
    assert_eq!(fake.count(Call::Stat), asked, "no SIZE/MDTM for f002");
    // A second later the same answer is too old: f003's open asks.
    r.settle();
    *r.clock.0.lock() += Duration::from_secs(2);
    assert_eq!(r.read(d, "f003"), files[3]);
    assert_eq!(fake.count(Call::Stat), asked + 1, "f003 was checked");
}

#[test]
fn a_download_under_way_is_cancelled_when_the_file_is_deleted_here() {
    let fake = Arc::new(FakeRemote::new());
    folder(&fake, 6);
    let r = rig(fake.clone(), 2);
    let d = r.list();
    walk_with_downloads_held(&r, d);
    r.fs.unlink(d, "f002").unwrap();
    fake.gate().open();
    r.settle();
    let s = r.fs.prefetch_stats().unwrap();
    assert_eq!(s.files, 1, "only f003 was kept: {s:?}");
    assert!(fake.file("d/f002").is_none());
}

/// Reads f000 and f001 (a walk), then lets the two prefetch workers start on f002 and f003
/// and holds their downloads at the fake's gate.
fn walk_with_downloads_held(r: &Rig, d: u64) {
    r.fake.set_sessions_wanted(true);
    r.read(d, "f000");
    r.read(d, "f001");
    r.fake.gate().close();
    r.fake.set_sessions_wanted(false);
    let start = Instant::now();
    while r.fake.gate().waiting() < 2 {
        assert!(start.elapsed() < WAIT, "both workers are downloading");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn off_without_the_content_cache_or_with_zero_files() {
    let fake = Arc::new(FakeRemote::new());
    folder(&fake, 5);
    let off = Fs::new(
        fake.clone(),
        FsConfig { prefetch_files: 8, prefetch_file_sessions: 2, ..test_config() },
        Arc::new(crate::clock::SystemClock),
    );
    assert!(off.prefetch_stats().is_none(), "no content cache: no prefetch");
    let r = rig(fake, 0);
    assert!(r.fs.prefetch_stats().is_none());
}

#[test]
fn a_file_open_in_another_reader_is_not_fetched_ahead_too() {
    // A file manager reads several images at once: one reader holds f004 while another
    // walks past it. f004 is its reader's to download; the prefetch leaves it alone.
    let fake = Arc::new(FakeRemote::new());
    let files = folder(&fake, 20);
    let r = rig(fake, 8);
    let d = r.list();
    let held = r.fs.open(r.fs.lookup(d, "f004").unwrap().ino, READ).unwrap();
    for (i, want) in files.iter().enumerate().take(3) {
        assert_eq!(&r.read(d, &format!("f{i:03}")), want);
    }
    r.settle();
    assert_eq!(r.downloads_of("d/f004"), 0, "f004 is left to the reader that has it open");
    let read = r.fs.read(held, 0, 1 << 20).unwrap();
    assert_eq!(read, files[4]);
    r.fs.release(held);
    assert_eq!(r.downloads_of("d/f004"), 1, "f004 was sent once");
    assert!(r.downloads_of("d/f005") == 1, "the files after it are fetched ahead as before");
}
