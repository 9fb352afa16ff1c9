//! Close-to-open consistency (issue 13, defect 3): `open` revalidates, transfers correct sizes.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use super::inode::ROOT;
use super::tests::test_config;
use super::{Fs, Invalidate, OpenMode};
use crate::clock::Clock;
use crate::remote::fake::{Call, FakeRemote};

struct ManualClock(Mutex<Instant>);

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.0.lock()
    }
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 13 % 251) as u8).collect()
}

struct Setup {
    fake: Arc<FakeRemote>,
    fs: Fs,
    clock: Arc<ManualClock>,
    told: Arc<Mutex<Vec<Invalidate>>>,
}

fn setup() -> Setup {
    let fake = Arc::new(FakeRemote::new());
    let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
    let fs = Fs::new(fake.clone(), test_config(), clock.clone());
    let told = Arc::new(Mutex::new(Vec::new()));
    let t = told.clone();
    fs.set_notifier(Arc::new(move |w| t.lock().push(w)));
    Setup { fake, fs, clock, told }
}

const READ: OpenMode = OpenMode { read: true, write: false, truncate: false, append: false, pid: 1, create_mode: None };

/// Reads a whole file through the filesystem as `cp` does (128 KiB requests until empty).
fn read_all(fs: &Fs, ino: u64) -> super::Result<Vec<u8>> {
    let fh = fs.open(ino, READ)?;
    let mut out = Vec::new();
    loop {
        let chunk = fs.read(fh, out.len() as u64, 128 * 1024)?;
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    fs.release(fh);
    Ok(out)
}

#[test]
fn open_sees_a_file_that_grew_on_the_server_although_the_listing_is_cached() {
    let s = setup();
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    s.fake.add_file("f", &data(3893), t0);
    let f = s.fs.lookup(ROOT, "f").unwrap();
    assert_eq!(read_all(&s.fs, f.ino).unwrap().len(), 3893);
    let t1 = t0 + Duration::from_secs(60);
    s.fake.add_file("f", &data(8893), t1);
    *s.clock.0.lock() += Duration::from_secs(2);
    assert_eq!(read_all(&s.fs, f.ino).unwrap(), data(8893), "the whole new file");
    let a = s.fs.getattr(f.ino).unwrap();
    assert_eq!((a.size, a.mtime), (8893, t1), "the listing was corrected");
    assert!(s.told.lock().contains(&Invalidate::Inode(f.ino)), "the kernel was told");
    assert_eq!(s.fake.count(Call::List), 1, "one stat, not a new listing");
}

#[test]
fn a_same_size_edit_shows_its_new_time_after_open() {
    let s = setup();
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    s.fake.add_file("f", b"aaaa", t0);
    let f = s.fs.lookup(ROOT, "f").unwrap();
    s.fake.add_file("f", b"bbbb", t0 + Duration::from_secs(5));
    *s.clock.0.lock() += Duration::from_secs(2);
    assert_eq!(read_all(&s.fs, f.ino).unwrap(), b"bbbb");
    assert_eq!(s.fs.getattr(f.ino).unwrap().mtime, t0 + Duration::from_secs(5));
    assert_eq!(*s.told.lock(), [Invalidate::Inode(f.ino)]);
}

#[test]
fn a_listing_younger_than_a_second_costs_no_command_at_open() {
    let s = setup();
    s.fake.add_file("f", b"abc", SystemTime::now());
    let f = s.fs.lookup(ROOT, "f").unwrap();
    *s.clock.0.lock() += Duration::from_millis(500);
    assert_eq!(read_all(&s.fs, f.ino).unwrap(), b"abc");
    assert_eq!(s.fake.count(Call::Stat), 0);
    assert!(s.told.lock().is_empty(), "nothing changed, nothing told");
    *s.clock.0.lock() += Duration::from_secs(1);
    read_all(&s.fs, f.ino).unwrap();
    assert_eq!(s.fake.count(Call::Stat), 1);
    assert!(s.told.lock().is_empty(), "unchanged: the kernel keeps its cache");
}

#[test]
fn a_file_that_grows_after_open_is_read_whole_and_its_size_corrected() {
    let s = setup();
    s.fake.add_file("f", &data(3893), SystemTime::now());
    let f = s.fs.lookup(ROOT, "f").unwrap();
    // Grows within the second the listing is trusted: open believes 3,893 bytes.
    s.fake.add_file("f", &data(8893), SystemTime::now());
    let fh = s.fs.open(f.ino, READ).unwrap();
    let first = s.fs.read(fh, 0, 128 * 1024).unwrap();
    assert!(first.len() >= 3893 && data(8893).starts_with(&first), "{}", first.len());
    assert_eq!(s.fs.getattr(f.ino).unwrap().size, 8893, "size corrected");
    assert!(s.told.lock().contains(&Invalidate::Attr(f.ino)), "attributes only, from inside a read");
    let rest = s.fs.read(fh, first.len() as u64, 128 * 1024).unwrap();
    assert_eq!([&first[..], &rest[..]].concat(), data(8893), "reads go on past the old size");
    s.fs.release(fh);
}

#[test]
fn a_file_that_shrank_ends_where_the_server_says() {
    let s = setup();
    s.fake.add_file("f", &data(1000), SystemTime::now());
    let f = s.fs.lookup(ROOT, "f").unwrap();
    s.fake.add_file("f", &data(600), SystemTime::now());
    let fh = s.fs.open(f.ino, READ).unwrap();
    assert_eq!(s.fs.read(fh, 0, 128 * 1024).unwrap(), data(600));
    assert!(s.fs.read(fh, 600, 128 * 1024).unwrap().is_empty());
    assert_eq!(s.fs.getattr(f.ino).unwrap().size, 600);
    assert!(s.told.lock().is_empty(), "the kernel takes the size from the short read itself");
    s.fs.release(fh);
}

#[test]
fn a_transfer_cut_short_while_the_server_keeps_the_size_is_an_error_not_a_short_file() {
    let s = setup();
    s.fake.add_file("f", &data(1000), SystemTime::now());
    let f = s.fs.lookup(ROOT, "f").unwrap();
    s.fake.cut_reads_at(600);
    let err = read_all(&s.fs, f.ino).unwrap_err();
    assert_eq!(err.errno(), libc::EIO, "{err}");
    assert_eq!(s.fs.getattr(f.ino).unwrap().size, 1000);
}

#[test]
fn a_file_deleted_on_the_server_is_not_found_at_open() {
    let s = setup();
    s.fake.add_file("f", b"x", SystemTime::now());
    let f = s.fs.lookup(ROOT, "f").unwrap();
    s.fake.remove("f");
    *s.clock.0.lock() += Duration::from_secs(2);
    assert_eq!(s.fs.open(f.ino, READ).unwrap_err().errno(), libc::ENOENT);
    assert!(s.fs.lookup(ROOT, "f").is_err(), "gone from the cached listing too");
}

#[test]
fn opening_for_update_starts_from_the_servers_current_content() {
    let s = setup();
    s.fake.add_file("f", b"old", SystemTime::now());
    let f = s.fs.lookup(ROOT, "f").unwrap();
    s.fake.add_file("f", b"grown on the server", SystemTime::now());
    *s.clock.0.lock() += Duration::from_secs(2);
    let rw = OpenMode { read: true, write: true, pid: 7, ..Default::default() };
    let fh = s.fs.open(f.ino, rw).unwrap();
    assert_eq!(s.fs.read(fh, 0, 100).unwrap(), b"grown on the server");
    s.fs.write(fh, 0, b"G").unwrap();
    s.fs.flush(fh, 7).unwrap();
    s.fs.release(fh);
    assert_eq!(s.fake.file("f").unwrap(), b"Grown on the server");
}
