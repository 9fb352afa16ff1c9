use super::*;
use crate::clock::Clock;
use crate::fs::inode::ROOT;
use crate::fs::tests::test_config;
use crate::remote::fake::{Call, FakeRemote, Fault};
use std::time::SystemTime;

struct Manual(Mutex<Instant>);
impl Clock for Manual {
    fn now(&self) -> Instant {
        *self.0.lock()
    }
}

fn e(name: &str, kind: Kind, size: u64, secs: u64) -> Entry {
    Entry { name: name.into(), kind, size, mtime: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)), mode: None }
}

#[test]
fn diff_names_what_was_added_removed_and_changed() {
    let t = Instant::now();
    let old = Listing::new(
        vec![
            e("same", Kind::File, 1, 100),
            e("grew", Kind::File, 1, 100),
            e("touched", Kind::File, 1, 100),
            e("gone", Kind::File, 1, 100),
            e("dir", Kind::Dir, 4096, 100),
            e("became-dir", Kind::File, 1, 100),
        ],
        t,
    );
    let new = Listing::new(
        vec![
            e("same", Kind::File, 1, 100),
            e("grew", Kind::File, 2, 100),
            e("touched", Kind::File, 1, 160),
            e("dir", Kind::Dir, 0, 100),
            e("became-dir", Kind::Dir, 4096, 100),
            e("new", Kind::File, 0, 100),
        ],
        t,
    );
    let c = diff(&old, &new);
    assert_eq!(c.added, ["became-dir", "new"]);
    assert_eq!(c.removed, ["became-dir", "gone"]);
    assert_eq!(
        c.changed,
        [("grew".to_string(), true), ("touched".to_string(), true)],
        "a directory's size is no change"
    );
    assert!(diff(&old, &old).is_empty());
}

#[test]
fn cheap_listings_are_compared_by_shape_and_by_their_previous_digest() {
    let cached = Listing::new(vec![e("a", Kind::File, 1, 100), e("d", Kind::Dir, 0, 100)], Instant::now());
    // Coarser times and a directory's size do not count; a size, a name or a kind does.
    assert!(same_shape(&cached, &[e("a", Kind::File, 1, 60), e("d", Kind::Dir, 4096, 60)]));
    assert!(!same_shape(&cached, &[e("a", Kind::File, 2, 60), e("d", Kind::Dir, 0, 60)]));
    assert!(!same_shape(&cached, &[e("a", Kind::File, 1, 60), e("d", Kind::File, 0, 60)]));
    assert!(!same_shape(&cached, &[e("a", Kind::File, 1, 60)]));
    let one = [e("a", Kind::File, 1, 60), e("b", Kind::File, 1, 60)];
    let other_order = [e("b", Kind::File, 1, 60), e("a", Kind::File, 1, 60)];
    assert_eq!(fingerprint(&one), fingerprint(&other_order));
    assert_ne!(fingerprint(&one), fingerprint(&[e("a", Kind::File, 1, 120), e("b", Kind::File, 1, 60)]));
}

/// A mount with watching every 3 s on a manual clock, and the notifications it sends.
struct Rig {
    fs: Arc<Fs>,
    clock: Arc<Manual>,
    sent: Arc<Mutex<Vec<Invalidate>>>,
}

impl Rig {
    fn new(fake: Arc<FakeRemote>) -> Rig {
        let clock = Arc::new(Manual(Mutex::new(Instant::now())));
        let config = crate::fs::FsConfig {
            watch_interval: Duration::from_secs(3),
            dir_ttl: Duration::from_secs(600),
            ..test_config()
        };
        let fs = Arc::new(Fs::new(fake, config, clock.clone()));
        let sent: Arc<Mutex<Vec<Invalidate>>> = Arc::default();
        let s = sent.clone();
        fs.set_notifier(Arc::new(move |what| s.lock().push(what)));
        Rig { fs, clock, sent }
    }

    fn advance(&self, secs: u64) {
        *self.clock.0.lock() += Duration::from_secs(secs);
    }

    /// A watch round; what it sent.
    fn round(&self) -> Vec<Invalidate> {
        self.fs.watch_round();
        self.fs.send_pending();
        std::mem::take(&mut *self.sent.lock())
    }

    fn names(&self, ino: u64) -> Vec<String> {
        self.fs.readdir(ino, false).unwrap().into_iter().map(|e| e.name).collect()
    }
}

#[test]
fn a_listed_directory_is_watched_and_the_kernel_is_told_what_changed() {
    let fake = Arc::new(FakeRemote::new());
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    fake.add_file("d/keep", b"1", t);
    fake.add_file("d/grows", b"1", t);
    fake.add_file("d/goes", b"1", t);
    let rig = Rig::new(fake.clone());
    let d = rig.fs.lookup(ROOT, "d").unwrap();
    assert_eq!(rig.names(d.ino), ["goes", "grows", "keep"]);
    let grows = rig.fs.lookup(d.ino, "grows").unwrap().ino;
    let goes = rig.fs.lookup(d.ino, "goes").unwrap().ino;

    fake.add_file("d/new", b"fresh", t);
    fake.add_file("d/grows", b"1234", t);
    fake.remove("d/goes");
    rig.advance(3);
    let sent = rig.round();
    assert_eq!(
        sent,
        [
            Invalidate::Deleted { parent: d.ino, child: goes, name: "goes".into() },
            Invalidate::Entry { parent: d.ino, name: "new".into() },
            Invalidate::Inode(grows),
            Invalidate::Attr(d.ino),
        ]
    );
    assert_eq!(rig.names(d.ino), ["grows", "keep", "new"], "the cache has the server's listing");
    assert_eq!(rig.fs.lookup(d.ino, "grows").unwrap().size, 4);
    assert!(rig.fs.path(goes).is_err(), "a removed name's inode is detached");

    // Nothing changed: one cheap listing, nothing sent.
    let lists = fake.count(Call::List);
    rig.advance(3);
    assert!(rig.round().is_empty());
    assert_eq!(fake.count(Call::List), lists + 1);
}

#[test]
fn an_idle_mount_lists_nothing_and_watching_ends_after_the_linger() {
    let fake = Arc::new(FakeRemote::new());
    fake.add_file("d/a", b"1", SystemTime::now());
    let rig = Rig::new(fake.clone());
    let d = rig.fs.lookup(ROOT, "d").unwrap();
    let lists = fake.count(Call::List);
    for _ in 0..5 {
        rig.advance(3);
        rig.round();
    }
    assert_eq!(fake.count(Call::List), lists, "looked up, never listed: not watched");

    rig.names(d.ino);
    let lists = fake.count(Call::List);
    let rounds = LINGER_ROUNDS as usize + 5;
    for _ in 0..rounds {
        rig.advance(3);
        rig.round();
    }
    let watched_rounds = fake.count(Call::List) - lists;
    assert!((LINGER_ROUNDS as usize - 2..LINGER_ROUNDS as usize).contains(&watched_rounds), "{watched_rounds}");
    assert_eq!(rig.fs.watched_dirs(), 0, "forgotten");

    // Held open: watched however long ago it was listed, until released.
    let fh = rig.fs.opendir(d.ino).unwrap();
    let lists = fake.count(Call::List);
    for _ in 0..rounds {
        rig.advance(3);
        rig.round();
    }
    assert_eq!(fake.count(Call::List) - lists, rounds);
    rig.fs.releasedir(fh, d.ino);
    rig.advance(3);
    rig.round();
    assert_eq!(rig.fs.watched_dirs(), 0);
}

#[test]
fn opening_a_directory_no_longer_watched_checks_its_listing_first() {
    let fake = Arc::new(FakeRemote::new());
    fake.add_file("d/a", b"1", SystemTime::now());
    let rig = Rig::new(fake.clone());
    let d = rig.fs.lookup(ROOT, "d").unwrap();
    rig.names(d.ino);
    for _ in 0..LINGER_ROUNDS + 1 {
        rig.advance(3);
        rig.round();
    }
    assert_eq!(rig.fs.watched_dirs(), 0);
    // A refresh in a file manager, after a while: the listing (600 s TTL) is checked first.
    fake.add_file("d/b", b"1", SystemTime::now());
    let lists = fake.count(Call::List);
    let fh = rig.fs.opendir(d.ino).unwrap();
    assert_eq!(rig.names(d.ino), ["a", "b"]);
    rig.fs.releasedir(fh, d.ino);
    assert_eq!(fake.count(Call::List), lists + 1);
    // Again at once: the listing is current.
    let fh = rig.fs.opendir(d.ino).unwrap();
    rig.names(d.ino);
    rig.fs.releasedir(fh, d.ino);
    assert_eq!(fake.count(Call::List), lists + 1);
}

#[test]
fn a_round_gives_way_to_requests_waiting_for_a_session() {
    let fake = Arc::new(FakeRemote::new());
    fake.add_dir("d");
    let rig = Rig::new(fake.clone());
    rig.names(ROOT);
    let lists = fake.count(Call::List);
    fake.set_sessions_wanted(true);
    rig.advance(3);
    rig.round();
    assert_eq!(fake.count(Call::List), lists);
    fake.set_sessions_wanted(false);
    rig.advance(3);
    rig.round();
    assert_eq!(fake.count(Call::List), lists + 1);
}

#[test]
fn where_cheap_listings_are_coarse_a_full_listing_follows_only_a_change() {
    let fake = Arc::new(FakeRemote::new());
    fake.inject(Fault::CoarseQuickLists);
    // 27 s into a minute.
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_007);
    fake.add_file("f", b"1", t);
    let rig = Rig::new(fake.clone());
    rig.names(ROOT);
    let f = rig.fs.lookup(ROOT, "f").unwrap();
    assert_eq!(f.mtime, t);
    let (lists, quick) = (fake.count(Call::List), fake.count(Call::QuickList));
    for _ in 0..3 {
        rig.advance(3);
        assert!(rig.round().is_empty(), "coarse times are no change");
    }
    assert_eq!(fake.count(Call::QuickList) - quick, 3);
    assert_eq!(fake.count(Call::List) - lists, 3, "no full listing");

    // Same size, same minute: a coarse listing cannot see it, so it does not make the
    // cached listing count as fresh, and open still asks the server (close-to-open).
    fake.add_file("f", b"1", t + Duration::from_secs(1));
    rig.advance(3);
    assert!(rig.round().is_empty());
    let stats = fake.count(Call::Stat);
    let fh = rig.fs.open(f.ino, crate::fs::OpenMode { read: true, ..Default::default() }).unwrap();
    rig.fs.release(fh);
    assert_eq!(fake.count(Call::Stat), stats + 1);
    assert_eq!(rig.fs.getattr(f.ino).unwrap().mtime, t + Duration::from_secs(1));
    rig.sent.lock().clear();

    // Another minute is seen, and the full listing gives the exact time.
    fake.add_file("f", b"2", t + Duration::from_secs(61));
    let lists = fake.count(Call::List);
    rig.advance(3);
    assert_eq!(rig.round(), [Invalidate::Inode(f.ino), Invalidate::Attr(ROOT)]);
    assert_eq!(fake.count(Call::List) - lists, 2, "cheap, then full");
    assert_eq!(rig.fs.getattr(f.ino).unwrap().mtime, t + Duration::from_secs(61));
}

#[test]
fn a_change_this_mount_makes_during_a_listing_is_not_taken_for_a_removal() {
    let fake = Arc::new(FakeRemote::new());
    fake.add_file("a", b"1", SystemTime::now());
    let rig = Rig::new(fake.clone());
    rig.names(ROOT);
    let a = rig.fs.lookup(ROOT, "a").unwrap();
    // A rename through the mount is under way: the server has the new name, the cache
    // not yet.
    let busy = rig.fs.watch.busy(&[""]);
    fake.remove("a");
    fake.add_file("b", b"1", SystemTime::now());
    rig.advance(3);
    assert!(rig.round().is_empty(), "nothing told while this mount changes the directory");
    assert!(rig.fs.path(a.ino).is_ok(), "the inode is not detached");
    assert_eq!(rig.names(ROOT), ["a"], "the listing made meanwhile is not stored");
    drop(busy);
    // Had it been another client's change, the next round tells it.
    rig.advance(3);
    assert_eq!(
        rig.round(),
        [
            Invalidate::Deleted { parent: ROOT, child: a.ino, name: "a".into() },
            Invalidate::Entry { parent: ROOT, name: "b".into() },
            Invalidate::Attr(ROOT),
        ]
    );
}

#[test]
fn a_negative_lookup_lists_again_once_per_interval() {
    let fake = Arc::new(FakeRemote::new());
    fake.add_dir("d");
    let rig = Rig::new(fake.clone());
    let d = rig.fs.lookup(ROOT, "d").unwrap();
    assert!(rig.fs.lookup(d.ino, "new").is_err());
    fake.add_dir("d/new");
    let lists = fake.count(Call::List);
    assert!(rig.fs.lookup(d.ino, "new").is_err(), "a listing younger than the interval answers");
    rig.advance(3);
    assert!(rig.fs.lookup(d.ino, "other").is_err());
    assert_eq!(fake.count(Call::List), lists + 1, "listed again");
    assert!(rig.fs.lookup(d.ino, "new").is_ok(), "found without waiting for --dir-timeout");
    for _ in 0..10 {
        assert!(rig.fs.lookup(d.ino, "missing").is_err());
    }
    assert_eq!(fake.count(Call::List), lists + 1, "at most once per interval");
    // The kernel hears of the new name from the watcher's thread, not from the lookup.
    assert!(rig.sent.lock().is_empty());
    rig.fs.send_pending();
    assert!(rig.sent.lock().contains(&Invalidate::Entry { parent: d.ino, name: "new".into() }));
}

#[test]
fn without_a_watch_interval_nothing_is_listed_again() {
    let fake = Arc::new(FakeRemote::new());
    fake.add_dir("d");
    let fs = Fs::new(fake.clone(), test_config(), Arc::new(crate::clock::SystemClock));
    let d = fs.lookup(ROOT, "d").unwrap();
    fs.readdir(d.ino, false).unwrap();
    fs.opendir(d.ino).unwrap();
    let lists = fake.count(Call::List);
    fs.watch_round();
    assert!(fs.lookup(d.ino, "x").is_err());
    assert_eq!(fake.count(Call::List), lists);
    assert_eq!(fs.watched_dirs(), 0);
}

#[test]
fn an_open_directory_with_no_cached_listing_is_not_listed_by_the_watch() {
    // Its first listing may be on its way (a big one takes seconds): a second one at the same
    // time would only slow it, and there would be nothing to compare it with.
    let fake = Arc::new(FakeRemote::new());
    fake.add_file("d/a", b"1", SystemTime::now());
    let rig = Rig::new(fake.clone());
    let d = rig.fs.lookup(ROOT, "d").unwrap();
    let fh = rig.fs.opendir(d.ino).unwrap();
    rig.fs.dirs.invalidate("d");
    let lists = fake.count(Call::List);
    rig.advance(3);
    assert!(rig.round().is_empty());
    assert_eq!(fake.count(Call::List), lists);
    // Once listed, it is watched again.
    assert_eq!(rig.names(d.ino), ["a"]);
    rig.advance(3);
    rig.round();
    assert_eq!(fake.count(Call::List), lists + 2);
    rig.fs.releasedir(fh, d.ino);
}

#[test]
fn a_slow_listing_counts_its_watch_period_from_its_end() {
    // 100,000 entries over TLS take seconds to list: counted from its start, the period would
    // be over by the time the listing arrives, and it would be listed again at once.
    let fake = Arc::new(FakeRemote::new());
    fake.add_file("d/a", b"1", SystemTime::now());
    let rig = Rig::new(fake.clone());
    let d = rig.fs.lookup(ROOT, "d").unwrap();
    rig.fs.dirs.invalidate("d");
    let clock = rig.clock.clone();
    fake.while_listing(move || *clock.0.lock() += Duration::from_secs(5));
    assert_eq!(rig.names(d.ino), ["a"]);
    let lists = fake.count(Call::List);
    assert!(rig.round().is_empty());
    assert_eq!(fake.count(Call::List), lists, "not listed again right after its end");
    rig.advance(3);
    rig.round();
    assert_eq!(fake.count(Call::List), lists + 1, "a period after its end, it is");
}
