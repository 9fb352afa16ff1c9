//! Unit tests of `Fs` against the fake remote; the settings and helpers other test modules share.

use super::*;
use crate::clock::SystemClock;
use crate::remote::fake::{Call, FakeRemote, Fault};

/// The settings unit tests share: long TTLs, no prefetch, no case checks.
pub(super) fn test_config() -> FsConfig {
    FsConfig {
        dir_ttl: Duration::from_secs(60),
        attr_ttl: Duration::from_secs(1),
        read_only: false,
        uid: 1000,
        gid: 1000,
        dir_cache: crate::fs::dircache::CacheLimits { dirs: 64, entries: 100_000 },
        cache_dir: std::env::temp_dir().join("ftpmount-unit-spool"),
        cache_max_size: 1 << 30,
        case: CaseRules::none(),
        prefetch_workers: 0,
        prefetch_files: 0,
        prefetch_file_sessions: 0,
        write_back: None,
        content_cache: None,
        watch_interval: Duration::ZERO,
    }
}

pub(crate) fn fs_with(fake: Arc<FakeRemote>) -> Fs {
    Fs::new(fake, test_config(), Arc::new(SystemClock))
}

#[test]
fn stat_of_every_entry_costs_one_listing() {
    let fake = Arc::new(FakeRemote::new());
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for i in 0..100 {
        fake.add_file(&format!("d/f{i}"), b"abc", t);
    }
    let fs = fs_with(fake.clone());
    let d = fs.lookup(ROOT, "d").unwrap();
    assert_eq!(d.kind, FileKind::Dir);
    for i in 0..100 {
        let a = fs.lookup(d.ino, &format!("f{i}")).unwrap();
        assert_eq!((a.size, a.mtime, a.uid), (3, t, 1000));
    }
    assert_eq!(fake.count(Call::List), 2, "root + d");
    assert!(matches!(fs.lookup(d.ino, "missing"), Err(FsError::NotFound)));
    assert_eq!(fake.count(Call::List), 2, "negative answer from the cached listing");
}

#[test]
fn reads_return_the_file_bytes() {
    let fake = Arc::new(FakeRemote::new());
    fake.add_file("a b/ü.txt", b"hello world", SystemTime::now());
    let fs = fs_with(fake);
    let dir = fs.lookup(ROOT, "a b").unwrap();
    let f = fs.lookup(dir.ino, "ü.txt").unwrap();
    let fh = fs.open(f.ino, OpenMode { read: true, ..Default::default() }).unwrap();
    assert_eq!(fs.read(fh, 6, 100).unwrap(), b"world");
    fs.release(fh);
    assert!(matches!(fs.read(fh, 0, 1), Err(FsError::BadHandle)));
}

#[test]
fn a_directory_that_cannot_be_listed_is_an_error_not_an_empty_directory() {
    // ENOENT from readdir reads as the end of the directory. With listings trusted, readdir
    // lists the directory and finds it gone; with none trusted, it first fails to find the
    // directory in its parent's listing.
    for dir_ttl in [Duration::from_secs(60), Duration::ZERO] {
        let fake = Arc::new(FakeRemote::new());
        fake.add_file("d/x", b"1", SystemTime::now());
        let fs = Fs::new(fake.clone(), FsConfig { dir_ttl, ..test_config() }, Arc::new(SystemClock));
        let d = fs.lookup(ROOT, "d").unwrap();
        fake.remove("d/x");
        fake.remove("d");
        let Err(err) = fs.readdir(d.ino, false) else { panic!("listed a directory the server lacks") };
        assert_eq!(err.errno(), libc::EIO, "{dir_ttl:?}: {err}");
    }
}

#[test]
fn create_without_truncation_of_a_file_that_exists_keeps_its_content() {
    let fake = Arc::new(FakeRemote::new());
    fake.add_file("f.txt", b"keep me", SystemTime::now());
    let fs = fs_with(fake.clone());
    // As `touch` does when its lookup failed: O_CREAT, no O_TRUNC.
    let (attr, fh) = fs.create(ROOT, "f.txt", OpenMode { write: true, pid: 7, ..Default::default() }, false).unwrap();
    assert_eq!(attr.size, 7);
    fs.flush(fh, 7).unwrap();
    fs.release(fh);
    assert_eq!(fake.file("f.txt").unwrap(), b"keep me");
}

#[test]
fn a_file_unlinked_while_open_for_update_can_still_be_read_through_it() {
    let fake = Arc::new(FakeRemote::new());
    fake.add_file("f", b"Hello", SystemTime::now());
    let fs = fs_with(fake.clone());
    let f = fs.lookup(ROOT, "f").unwrap();
    let fh = fs.open(f.ino, OpenMode { read: true, write: true, pid: 7, ..Default::default() }).unwrap();
    fs.write(fh, 5, b", World!").unwrap();
    fs.unlink(ROOT, "f").unwrap();
    assert_eq!(fs.read(fh, 0, 100).unwrap(), b"Hello, World!");
    fs.flush(fh, 7).unwrap();
    fs.release(fh);
    assert!(fake.paths().is_empty(), "not brought back at close: {:?}", fake.paths());
}

#[test]
fn a_file_given_a_time_and_then_unlinked_while_open_closes_without_error() {
    // `touch -d` (or an archiver restoring times) on an open file that is then deleted: as on
    // a local disk, its close succeeds and nothing reaches the server.
    for written in [true, false] {
        let fake = Arc::new(FakeRemote::new());
        let fs = fs_with(fake.clone());
        let (attr, fh) = fs
            .create(ROOT, "f", OpenMode { write: true, truncate: true, pid: 7, ..Default::default() }, false)
            .unwrap();
        if written {
            fs.write(fh, 0, b"data").unwrap();
        }
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
        fs.setattr(attr.ino, Some(fh), SetAttr { mtime: Some(t), ..Default::default() }).unwrap();
        fs.unlink(ROOT, "f").unwrap();
        fs.flush(fh, 7).unwrap_or_else(|e| panic!("written {written}: {e:?}"));
        fs.fsync(fh).unwrap();
        fs.release(fh);
        assert!(fake.paths().is_empty(), "written {written}: {:?}", fake.paths());
    }
}

#[test]
fn a_directory_just_made_is_known_empty_with_two_links() {
    let fake = Arc::new(FakeRemote::new());
    let fs = fs_with(fake.clone());
    let d = fs.mkdir(ROOT, "d").unwrap();
    let lists = fake.count(Call::List);
    assert_eq!(fs.getattr(d.ino).unwrap().nlink, 2);
    assert!(fs.readdir(d.ino, false).unwrap().is_empty());
    assert_eq!(fake.count(Call::List), lists, "no listing asked for");
}

#[test]
fn readdir_lists_entries_and_refuses_files() {
    let fake = Arc::new(FakeRemote::new());
    fake.add_file("x", b"1", SystemTime::now());
    fake.add_dir("y");
    let fs = fs_with(fake);
    let names: Vec<String> = fs.readdir(ROOT, false).unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["x", "y"]);
    let x = fs.lookup(ROOT, "x").unwrap();
    assert!(matches!(fs.readdir(x.ino, false), Err(FsError::NotDir)));
}

fn write_mode() -> OpenMode {
    OpenMode { write: true, truncate: true, pid: 7, ..Default::default() }
}

#[test]
fn a_failed_replace_keeps_the_old_file_and_leaves_no_temporary() {
    let fake = Arc::new(FakeRemote::new());
    fake.add_file("f.txt", b"old", SystemTime::now());
    let fs = fs_with(fake.clone());
    let f = fs.lookup(ROOT, "f.txt").unwrap();
    let fh = fs.open(f.ino, write_mode()).unwrap();
    fake.fail_uploads_with(RemoteError::NoSpace("552 quota".into()));
    fs.write(fh, 0, b"new content").unwrap();
    let err = fs.flush(fh, 7).unwrap_err();
    assert_eq!(err.errno(), libc::ENOSPC);
    fs.release(fh);
    assert_eq!(fake.file("f.txt").unwrap(), b"old");
    assert_eq!(fake.paths(), ["f.txt"], "temporary removed");
}

#[test]
fn a_failed_new_file_is_removed() {
    let fake = Arc::new(FakeRemote::new());
    let fs = fs_with(fake.clone());
    let (_, fh) = fs.create(ROOT, "new.bin", write_mode(), true).unwrap();
    fake.fail_uploads_with(RemoteError::Connection("426 broken".into()));
    fs.write(fh, 0, &[1u8; 1000]).unwrap();
    assert_eq!(fs.flush(fh, 7).unwrap_err().errno(), libc::EIO);
    fs.release(fh);
    assert!(fake.paths().is_empty(), "{:?}", fake.paths());
}

#[test]
fn replace_deletes_first_where_rename_over_is_refused() {
    let fake = Arc::new(FakeRemote::new());
    fake.add_file("f.txt", b"old", SystemTime::now());
    fake.inject(Fault::RefuseRenameOver);
    let fs = fs_with(fake.clone());
    let f = fs.lookup(ROOT, "f.txt").unwrap();
    let fh = fs.open(f.ino, write_mode()).unwrap();
    fs.write(fh, 0, b"new").unwrap();
    fs.flush(fh, 7).unwrap();
    fs.release(fh);
    assert_eq!(fake.file("f.txt").unwrap(), b"new");
    assert_eq!(fake.paths(), ["f.txt"]);
}

/// Writes `data` to a new file `name` and closes it; the close's result.
fn write_new(fs: &Fs, name: &str, data: &[u8]) -> Result<()> {
    let (_, fh) = fs.create(ROOT, name, write_mode(), false)?;
    fs.write(fh, 0, data)?;
    let closed = fs.flush(fh, 7);
    fs.release(fh);
    closed
}

#[test]
fn new_files_upload_under_a_temporary_name_and_are_renamed_into_place() {
    let fake = Arc::new(FakeRemote::new());
    let fs = fs_with(fake.clone());
    fake.inject(Fault::RefuseRenames);
    // Had it gone to its own name, the refused rename would not matter.
    assert_eq!(write_new(&fs, "a.txt", b"one").unwrap_err().errno(), libc::EACCES);
    assert!(fake.paths().is_empty(), "neither a partial a.txt nor the temporary: {:?}", fake.paths());
}

#[test]
fn where_renames_are_refused_new_files_go_to_their_own_name_from_then_on() {
    let fake = Arc::new(FakeRemote::new());
    fake.inject(Fault::RefuseRenames);
    let fs = fs_with(fake.clone());
    let err = write_new(&fs, "first.txt", b"1").unwrap_err();
    assert!(err.to_string().contains("write first.txt again"), "{err}");
    write_new(&fs, "first.txt", b"1").unwrap();
    write_new(&fs, "second.txt", b"2").unwrap();
    assert_eq!(fake.paths(), ["first.txt", "second.txt"]);
    assert_eq!(fake.file("second.txt").unwrap(), b"2");
}

#[test]
fn ftruncate_to_zero_after_a_failed_upload_removes_what_it_left_and_writes_anew() {
    let fake = Arc::new(FakeRemote::new());
    // A spool too small for a local copy of the stream (a full cache disk).
    let fs = Fs::new(fake.clone(), FsConfig { cache_max_size: 4, ..test_config() }, Arc::new(SystemClock));
    let (attr, fh) = fs.create(ROOT, "n.txt", write_mode(), false).unwrap();
    fs.write(fh, 0, b"streamed").unwrap();
    // Truncating mid-stream finishes the upload first, which fails: part of the file stays
    // on the server under its temporary name.
    fake.fail_uploads_with(RemoteError::NoSpace("552 quota".into()));
    let size = |size| SetAttr { size: Some(size), ..Default::default() };
    assert!(fs.setattr(attr.ino, Some(fh), size(3)).is_err());
    assert_eq!(fake.paths().len(), 1, "the temporary: {:?}", fake.paths());
    fake.heal_uploads();
    fs.setattr(attr.ino, Some(fh), size(0)).unwrap();
    fs.write(fh, 0, b"anew").unwrap();
    fs.flush(fh, 7).unwrap();
    fs.release(fh);
    assert_eq!(fake.paths(), ["n.txt"], "no temporary left");
    assert_eq!(fake.file("n.txt").unwrap(), b"anew");
}

#[test]
fn a_new_file_whose_upload_failed_can_be_opened_with_truncation_and_written_again() {
    let fake = Arc::new(FakeRemote::new());
    let fs = fs_with(fake.clone());
    fake.fail_uploads_with(RemoteError::Connection("426 broken".into()));
    let (attr, fh) = fs.create(ROOT, "n.txt", write_mode(), false).unwrap();
    fs.write(fh, 0, b"lost").unwrap();
    assert!(fs.flush(fh, 7).is_err());
    fs.release(fh);
    fake.heal_uploads();
    // The kernel still has the inode: open(O_TRUNC) on it writes the file anew.
    let fh = fs.open(attr.ino, OpenMode { write: true, truncate: true, ..Default::default() }).unwrap();
    fs.write(fh, 0, b"kept").unwrap();
    fs.flush(fh, 7).unwrap();
    fs.release(fh);
    assert_eq!(fake.file("n.txt").unwrap(), b"kept");
    let plain_open = fs.open(fs.lookup(ROOT, "n.txt").unwrap().ino, OpenMode { read: true, ..Default::default() });
    assert!(plain_open.is_ok());
}

#[test]
fn this_mounts_uploads_in_flight_are_not_listed_but_others_temporaries_are() {
    let fake = Arc::new(FakeRemote::new());
    let t = SystemTime::now();
    fake.add_file(&format!(".a.txt.ftpmount-{}-7.part", std::process::id()), b"in flight", t);
    fake.add_file(".b.txt.ftpmount-1-7.part", b"a leftover", t);
    fake.add_file(".c.ftpmount-x.part", b"just a name", t);
    let fs = fs_with(fake);
    let names: Vec<String> = fs.readdir(ROOT, false).unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, [".b.txt.ftpmount-1-7.part", ".c.ftpmount-x.part"]);
    assert!(temp_names::is_own_temp(split(&temp_names::temp_name("d/e.txt")).1));
}

#[test]
fn a_directory_that_refuses_every_upload_does_not_turn_temporary_names_off() {
    let fake = Arc::new(FakeRemote::new());
    fake.refuse_uploads_in("locked");
    fake.add_dir("locked");
    let fs = fs_with(fake.clone());
    let dir = fs.lookup(ROOT, "locked").unwrap();
    let (_, fh) = fs.create(dir.ino, "x", write_mode(), false).unwrap();
    assert_eq!(fs.write(fh, 0, b"x").unwrap_err().errno(), libc::EACCES);
    fs.release(fh);
    // Elsewhere new files still go through a temporary name (a refused rename shows it).
    fake.inject(Fault::RefuseRenames);
    assert_eq!(write_new(&fs, "a.txt", b"one").unwrap_err().errno(), libc::EACCES);
    assert!(fake.paths().iter().all(|p| p.starts_with("locked")), "{:?}", fake.paths());
}

#[test]
fn where_hidden_names_are_refused_new_files_go_to_their_own_name_at_once() {
    let fake = Arc::new(FakeRemote::new());
    fake.inject(Fault::RefuseHiddenUploads);
    let fs = fs_with(fake.clone());
    write_new(&fs, "a.txt", b"streamed").unwrap();
    assert_eq!(fake.file("a.txt").unwrap(), b"streamed");
    // Spooled (written out of order) as well.
    let (_, fh) = fs.create(ROOT, "b.txt", write_mode(), false).unwrap();
    fs.write(fh, 3, b"def").unwrap();
    fs.write(fh, 0, b"abc").unwrap();
    fs.flush(fh, 7).unwrap();
    fs.release(fh);
    assert_eq!(fake.file("b.txt").unwrap(), b"abcdef");
    assert_eq!(fake.paths(), ["a.txt", "b.txt"]);
}

#[test]
fn jumps_after_streaming_move_to_the_spool_without_losing_bytes() {
    let fake = Arc::new(FakeRemote::new());
    let fs = fs_with(fake.clone());
    let (_, fh) = fs.create(ROOT, "f", write_mode(), false).unwrap();
    fs.write(fh, 0, b"hello ").unwrap();
    fs.write(fh, 6, b"world").unwrap();
    fs.write(fh, 0, b"H").unwrap();
    fs.flush(fh, 7).unwrap();
    fs.release(fh);
    assert_eq!(fake.file("f").unwrap(), b"Hello world");
    assert_eq!(fs.getattr(fs.lookup(ROOT, "f").unwrap().ino).unwrap().size, 11, "cache updated at once");
}

#[test]
fn another_process_closing_an_inherited_descriptor_does_not_commit() {
    let fake = Arc::new(FakeRemote::new());
    let fs = fs_with(fake.clone());
    let (_, fh) = fs.create(ROOT, "f", write_mode(), false).unwrap();
    fs.write(fh, 0, b"part one, ").unwrap();
    fs.flush(fh, 99).unwrap();
    assert!(fake.file("f").is_none_or(|d| d.is_empty()), "nothing committed by pid 99");
    fs.write(fh, 10, b"part two").unwrap();
    fs.flush(fh, 7).unwrap();
    assert_eq!(fake.file("f").unwrap(), b"part one, part two");
    fs.release(fh);
}

#[test]
fn an_append_whose_download_fails_in_its_final_reply_changes_nothing() {
    let fake = Arc::new(FakeRemote::new());
    fake.add_file("log.txt", b"first line\n", SystemTime::now());
    let fs = fs_with(fake.clone());
    let f = fs.lookup(ROOT, "log.txt").unwrap();
    // RETR answered 125, no bytes, then "425 Unable to build data connection", every time.
    for _ in 0..3 {
        let refused = RemoteError::Connection("425 Unable to build data connection".into());
        fake.cut_next_download(0, refused);
        let fh = fs.open(f.ino, OpenMode { write: true, append: true, pid: 7, ..Default::default() }).unwrap();
        let err = fs.write(fh, 11, b"new line\n").unwrap_err();
        assert_eq!(err.errno(), libc::EIO, "{err}");
        let _ = fs.flush(fh, 7);
        fs.release(fh);
        assert_eq!(fake.file("log.txt").unwrap(), b"first line\n", "no NUL bytes, no half change");
    }
    assert_eq!(fake.paths(), ["log.txt"], "no temporary left");
}

#[test]
fn a_download_that_ends_early_with_a_good_reply_is_not_taken_for_the_file() {
    let fake = Arc::new(FakeRemote::new());
    fake.add_file("f", b"0123456789", SystemTime::now());
    let fs = fs_with(fake.clone());
    let f = fs.lookup(ROOT, "f").unwrap();
    let fh = fs.open(f.ino, OpenMode { read: true, write: true, pid: 7, ..Default::default() }).unwrap();
    fake.cut_next_download(0, RemoteError::Connection("426 aborted".into()));
    assert!(fs.read(fh, 0, 10).is_err(), "a failed fill is an error, not an empty file");
    fs.release(fh);
    assert_eq!(fake.file("f").unwrap(), b"0123456789");
}

#[test]
fn a_broken_upload_is_sent_again_from_the_local_copy() {
    let fake = Arc::new(FakeRemote::new());
    fake.add_file("old.txt", b"old", SystemTime::now());
    let fs = fs_with(fake.clone());
    // Streamed (sequential writes), then spooled (written out of order), then a replace.
    fake.break_next_uploads(1);
    write_new(&fs, "streamed.bin", &[7u8; 100_000]).unwrap();
    fake.break_next_uploads(1);
    let (_, fh) = fs.create(ROOT, "spooled.txt", write_mode(), false).unwrap();
    fs.write(fh, 3, b"def").unwrap();
    fs.write(fh, 0, b"abc").unwrap();
    fs.flush(fh, 7).unwrap();
    fs.release(fh);
    fake.break_next_uploads(1);
    let f = fs.lookup(ROOT, "old.txt").unwrap();
    let fh = fs.open(f.ino, write_mode()).unwrap();
    fs.write(fh, 0, b"new").unwrap();
    fs.flush(fh, 7).unwrap();
    fs.release(fh);
    assert_eq!(fake.file("streamed.bin").unwrap(), vec![7u8; 100_000]);
    assert_eq!(fake.file("spooled.txt").unwrap(), b"abcdef");
    assert_eq!(fake.file("old.txt").unwrap(), b"new");
    assert_eq!(fake.paths(), ["old.txt", "spooled.txt", "streamed.bin"], "no temporaries left");
    // Broken twice in a row: the close reports it, and nothing half-done stays.
    fake.break_next_uploads(2);
    assert_eq!(write_new(&fs, "twice.txt", b"x").unwrap_err().errno(), libc::EIO);
    assert_eq!(fake.paths(), ["old.txt", "spooled.txt", "streamed.bin"]);
}

#[test]
fn names_with_line_breaks_are_refused_before_any_command() {
    let fake = Arc::new(FakeRemote::new());
    let fs = fs_with(fake.clone());
    let err = fs.create(ROOT, "a\r\nDELE victim", write_mode(), false).unwrap_err();
    assert_eq!(err.errno(), libc::EINVAL);
    assert_eq!(fs.mkdir(ROOT, "x\ny").unwrap_err().errno(), libc::EINVAL);
}

#[test]
fn remote_failures_surface_as_errors_not_garbage() {
    let fake = Arc::new(FakeRemote::new());
    fake.add_file("x", b"1", SystemTime::now());
    let fs = fs_with(fake.clone());
    fake.fail_next(1);
    let err = fs.lookup(ROOT, "x").unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    assert!(fs.lookup(ROOT, "x").is_ok(), "the next try works");
}

#[test]
fn a_walk_has_only_the_next_few_directories_listed_ahead_of_it() {
    let fake = Arc::new(FakeRemote::new());
    for d in 0..100 {
        fake.add_file(&format!("top/d{d:02}/f"), b"x", SystemTime::now());
    }
    let fs = Fs::new(fake.clone(), FsConfig { prefetch_workers: 2, ..test_config() }, Arc::new(SystemClock));
    let listed = |d: usize| fs.dirs.fresh(&format!("top/d{d:02}")).is_some();
    let settle = |until: &dyn Fn() -> bool| {
        let start = std::time::Instant::now();
        while !until() {
            assert!(start.elapsed() < Duration::from_secs(5), "the listings ahead did not arrive");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100)); // and nothing more comes
    };
    let top = fs.lookup(ROOT, "top").unwrap();
    fs.readdir(top.ino, false).unwrap();
    settle(&|| (0..16).all(listed));
    assert!(!(16..100).any(listed), "only the first 16 subdirectories are listed ahead");

    // The walk enters d10: the 16 after it follow, and no more.
    let d10 = fs.lookup(top.ino, "d10").unwrap();
    fs.readdir(d10.ino, false).unwrap();
    settle(&|| (0..27).all(listed));
    assert!(!(27..100).any(listed), "listed ahead up to d26 only");
    assert_eq!(fake.count(Call::List), 2 + 27, "root, top, d00–d26, each once");

    // On through d79: top stays known as read, so the window keeps moving past 64 siblings.
    for d in 11..80 {
        let dir = fs.lookup(top.ino, &format!("d{d:02}")).unwrap();
        fs.readdir(dir.ino, false).unwrap();
    }
    settle(&|| (80..96).all(listed)); // (the test cache holds 64 listings)
    assert!(!(96..100).any(listed), "listed ahead up to d95 only");

    // `ls top/d50` alone, its parent never read: no walk, so no siblings listed.
    let fs = Fs::new(fake.clone(), FsConfig { prefetch_workers: 2, ..test_config() }, Arc::new(SystemClock));
    let top = fs.lookup(ROOT, "top").unwrap();
    let d50 = fs.lookup(top.ino, "d50").unwrap();
    let lists = fake.count(Call::List);
    fs.readdir(d50.ino, false).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(fake.count(Call::List) - lists, 1, "d50 alone");
}

#[test]
fn what_the_kernel_was_told_gives_its_memory_back_when_the_kernel_forgets() {
    let fake = Arc::new(FakeRemote::new());
    for i in 0..5000 {
        fake.add_file(&format!("d/f{i}"), b"x", SystemTime::now());
    }
    let fs = fs_with(fake);
    let d = fs.lookup(ROOT, "d").unwrap();
    let files: Vec<u64> = (0..5000).map(|i| fs.lookup(d.ino, &format!("f{i}")).unwrap().ino).collect();
    assert!(fs.told.lock().capacity() >= 5000);
    for ino in files {
        fs.forget(ino, 1);
    }
    assert!(fs.told.lock().capacity() < 1024 * 2, "{} slots kept", fs.told.lock().capacity());
}
