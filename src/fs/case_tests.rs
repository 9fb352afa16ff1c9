//! The filesystem core under each case policy, on a case-sensitive and on a case-folding
//! in-memory server.

use std::sync::Arc;
use std::time::Duration;

use super::case::{CaseRules, CollisionPolicy};
use super::inode::ROOT;
use super::{Fs, FsConfig, OpenMode};
use crate::casefold::Folding;
use crate::clock::{Clock, SystemClock};
use crate::remote::Remote;
use crate::remote::fake::{Call, FakeRemote};
use parking_lot::Mutex;
use std::time::{Instant, SystemTime};

fn fs(fake: &Arc<FakeRemote>, policy: CollisionPolicy) -> Fs {
    fs_with_clock(fake, policy, Arc::new(SystemClock))
}

fn fs_with_clock(fake: &Arc<FakeRemote>, policy: CollisionPolicy, clock: Arc<dyn Clock>) -> Fs {
    let server_folds = fake.is_case_insensitive();
    let config =
        FsConfig { case: CaseRules::new(Some(policy), server_folds, Folding::Unicode), ..super::tests::test_config() };
    Fs::new(fake.clone(), config, clock)
}

struct ManualClock(Mutex<Instant>);

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.0.lock()
    }
}

fn server(folds: bool) -> Arc<FakeRemote> {
    let fake = Arc::new(FakeRemote::new());
    fake.set_case_insensitive(folds);
    fake
}

/// `touch NAME`: lookup, and create when the lookup finds nothing.
fn touch(fs: &Fs, name: &str) -> Result<(), i32> {
    if fs.lookup(ROOT, name).is_ok() {
        return Ok(());
    }
    let mode = OpenMode { write: true, truncate: true, pid: 7, ..Default::default() };
    let (_, fh) = fs.create(ROOT, name, mode, false).map_err(|e| e.errno())?;
    fs.write(fh, 0, name.as_bytes()).unwrap();
    fs.flush(fh, 7).unwrap();
    fs.release(fh);
    Ok(())
}

#[test]
fn reject_refuses_a_name_that_differs_only_in_case_on_either_server() {
    for folds in [false, true] {
        let fake = server(folds);
        let fs = fs(&fake, CollisionPolicy::Reject);
        touch(&fs, "MyFile.txt").unwrap();
        assert_eq!(touch(&fs, "myfile.txt"), Err(libc::EEXIST), "folds={folds}");
        assert_eq!(fake.paths(), ["MyFile.txt"]);
        assert_eq!(fake.file("MyFile.txt").unwrap(), b"MyFile.txt", "not overwritten");
        assert_eq!(fs.mkdir(ROOT, "MYFILE.TXT").unwrap_err().errno(), libc::EEXIST);
    }
}

#[test]
fn warn_lets_both_names_exist_on_a_case_sensitive_server() {
    let fake = server(false);
    let fs = fs(&fake, CollisionPolicy::Warn);
    touch(&fs, "MyFile.txt").unwrap();
    touch(&fs, "myfile.txt").unwrap();
    fs.mkdir(ROOT, "Docs").unwrap();
    fs.mkdir(ROOT, "docs").unwrap();
    assert_eq!(fake.paths(), ["Docs", "MyFile.txt", "docs", "myfile.txt"]);
}

#[test]
fn a_folding_server_answers_lookups_by_folded_name_except_under_reject() {
    let fake = server(true);
    fake.add_file("README.TXT", b"hello", SystemTime::now());
    let warn = fs(&fake, CollisionPolicy::Warn);
    assert_eq!(warn.lookup(ROOT, "readme.txt").unwrap().size, 5, "exact first, then the one folded match");
    let off = fs(&fake, CollisionPolicy::Off);
    assert!(off.lookup(ROOT, "Readme.Txt").is_ok());
    let reject = fs(&fake, CollisionPolicy::Reject);
    assert_eq!(
        reject.lookup(ROOT, "readme.txt").unwrap_err().errno(),
        libc::ENOENT,
        "or rsync would merge docs/ into Docs/"
    );
    let sensitive = server(false);
    sensitive.add_file("README.TXT", b"hello", SystemTime::now());
    assert!(fs(&sensitive, CollisionPolicy::Warn).lookup(ROOT, "readme.txt").is_err());
}

#[test]
fn case_only_rename_works_under_every_policy_and_server() {
    for folds in [false, true] {
        for policy in [CollisionPolicy::Warn, CollisionPolicy::Reject, CollisionPolicy::Off] {
            let fake = server(folds);
            fake.add_file("readme", b"text", SystemTime::now());
            let fs = fs(&fake, policy);
            fs.lookup(ROOT, "readme").unwrap();
            // What the kernel does for `mv readme README`: look the target up, then rename.
            let _ = fs.lookup(ROOT, "README");
            fs.rename(ROOT, "readme", ROOT, "README", false)
                .unwrap_or_else(|e| panic!("folds={folds} {policy:?}: {e}"));
            assert_eq!(fake.paths(), ["README"], "folds={folds} {policy:?}");
            assert_eq!(fake.file("README").unwrap(), b"text");
            let names: Vec<String> = fs.readdir(ROOT, false).unwrap().into_iter().map(|e| e.name).collect();
            assert_eq!(names, ["README"]);
        }
    }
}

#[test]
fn renaming_onto_another_entrys_case_variant_is_a_collision() {
    let fake = server(true);
    fake.add_file("readme", b"keep", SystemTime::now());
    fake.add_file("notes", b"other", SystemTime::now());
    let fs = fs(&fake, CollisionPolicy::Reject);
    fs.lookup(ROOT, "notes").unwrap();
    assert_eq!(fs.rename(ROOT, "notes", ROOT, "README", false).unwrap_err().errno(), libc::EEXIST);
    assert_eq!(fake.file("readme").unwrap(), b"keep");
}

#[test]
fn a_name_created_but_not_yet_uploaded_counts() {
    let fake = server(false);
    let fs = fs(&fake, CollisionPolicy::Reject);
    let mode = OpenMode { write: true, truncate: true, pid: 7, ..Default::default() };
    let (_, fh) = fs.create(ROOT, "Draft.txt", mode, false).unwrap();
    assert_eq!(fs.create(ROOT, "draft.TXT", mode, false).unwrap_err().errno(), libc::EEXIST);
    fs.release(fh);
}

#[test]
fn a_name_added_by_someone_else_is_seen_once_the_cache_is_a_second_old() {
    let fake = server(false);
    let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
    let fs = fs_with_clock(&fake, CollisionPolicy::Reject, clock.clone());
    assert!(fs.readdir(ROOT, false).unwrap().is_empty(), "cached: an empty directory");
    fake.add_file("README", b"by another client", SystemTime::now());
    *clock.0.lock() += Duration::from_secs(2);
    assert_eq!(touch(&fs, "readme"), Err(libc::EEXIST));
    assert_eq!(fake.paths(), ["README"]);
}

#[test]
fn many_creates_cost_one_names_listing_per_second_not_one_each() {
    let fake = server(false);
    let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
    let fs = fs_with_clock(&fake, CollisionPolicy::Warn, clock.clone());
    fs.readdir(ROOT, false).unwrap();
    *clock.0.lock() += Duration::from_secs(2);
    let before = fake.count(Call::List);
    for i in 0..20 {
        touch(&fs, &format!("file{i}")).unwrap();
    }
    assert_eq!(fake.count(Call::List) - before, 1, "names confirmed once, then trusted for a second");
    assert_eq!(fake.list("").unwrap().len(), 20);
}
