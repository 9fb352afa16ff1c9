//! POSIX edges (issue 13, defect 6): modes at create/mkdir, parent times, ctime, EFBIG,
//! directory link counts.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::inode::ROOT;
use super::tests::fs_with;
use super::{FileKind, MAX_FILE_SIZE, OpenMode, SetAttr};
use crate::remote::fake::FakeRemote;

fn create_mode(mode: u32) -> OpenMode {
    OpenMode { write: true, truncate: true, pid: 7, create_mode: Some(mode), ..Default::default() }
}

fn old() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000)
}

#[test]
fn the_mode_asked_for_at_create_and_mkdir_is_applied_unless_it_is_the_default() {
    let fake = Arc::new(FakeRemote::new());
    fake.support_chmod();
    let fs = fs_with(fake.clone());
    let (a, fh) = fs.create(ROOT, "secret", create_mode(0o600), false).unwrap();
    assert_eq!(a.perm, 0o600, "shown at once");
    fs.write(fh, 0, b"x").unwrap();
    fs.flush(fh, 7).unwrap();
    fs.release(fh);
    assert_eq!(fake.modes().get("secret"), Some(&0o600), "applied after the upload");
    assert_eq!(fs.getattr(a.ino).unwrap().perm, 0o600);
    let (_, fh) = fs.create(ROOT, "plain", create_mode(0o644), false).unwrap();
    fs.flush(fh, 7).unwrap();
    fs.release(fh);
    let d = fs.mkdir_with_mode(ROOT, "private", Some(0o700)).unwrap();
    assert_eq!(d.perm, 0o700);
    assert_eq!(fake.modes().get("private"), Some(&0o700));
    fs.mkdir_with_mode(ROOT, "public", Some(0o755)).unwrap();
    assert_eq!(fake.modes().len(), 2, "defaults cost no SITE CHMOD: {:?}", fake.modes());
}

#[test]
fn a_directorys_mtime_and_ctime_move_when_its_entries_change() {
    let fake = Arc::new(FakeRemote::new());
    fake.add_dir("d");
    fake.add_file("d/f", b"x", old());
    fake.add_dir("d/sub");
    let fs = fs_with(fake.clone());
    let d = fs.lookup(ROOT, "d").unwrap();
    let before = fs.getattr(d.ino).unwrap();
    let step = |what: &str, op: &dyn Fn()| {
        let t0 = fs.getattr(d.ino).unwrap().mtime;
        std::thread::sleep(Duration::from_millis(5));
        op();
        let a = fs.getattr(d.ino).unwrap();
        assert!(a.mtime > t0 && a.ctime >= a.mtime, "{what}: {:?} -> {:?}", t0, a.mtime);
    };
    step("create", &|| {
        let (_, fh) = fs.create(d.ino, "n", create_mode(0o644), false).unwrap();
        fs.flush(fh, 7).unwrap();
        fs.release(fh);
    });
    step("unlink", &|| fs.unlink(d.ino, "n").unwrap());
    step("mkdir", &|| {
        fs.mkdir(d.ino, "m").unwrap();
    });
    step("rmdir", &|| fs.rmdir(d.ino, "m").unwrap());
    step("rename", &|| fs.rename(d.ino, "f", d.ino, "g", false).unwrap());
    assert!(fs.getattr(ROOT).unwrap().mtime >= before.mtime);
    let r0 = fs.getattr(ROOT).unwrap().mtime;
    std::thread::sleep(Duration::from_millis(5));
    fs.mkdir(ROOT, "top").unwrap();
    assert!(fs.getattr(ROOT).unwrap().mtime > r0, "the root too");
}

#[test]
fn chmod_and_other_attribute_changes_advance_ctime() {
    let fake = Arc::new(FakeRemote::new());
    fake.add_file("f", b"x", old());
    let fs = fs_with(fake);
    let f = fs.lookup(ROOT, "f").unwrap();
    assert_eq!(f.ctime, old());
    let a = fs.setattr(f.ino, None, SetAttr { mode: Some(0o600), ..Default::default() }).unwrap();
    assert!(a.ctime > old() + Duration::from_secs(3600), "{:?}", a.ctime);
    assert_eq!(a.mtime, old(), "chmod keeps mtime");
}

#[test]
fn sizes_beyond_the_limit_are_efbig_before_touching_the_spool() {
    let fake = Arc::new(FakeRemote::new());
    fake.add_file("f", b"x", old());
    let fs = fs_with(fake.clone());
    let f = fs.lookup(ROOT, "f").unwrap();
    let huge = SetAttr { size: Some(999_999_999_999_999), ..Default::default() };
    assert_eq!(fs.setattr(f.ino, None, huge).unwrap_err().errno(), libc::EFBIG);
    let (_, fh) = fs.create(ROOT, "g", create_mode(0o644), false).unwrap();
    assert_eq!(fs.write(fh, MAX_FILE_SIZE, b"x").unwrap_err().errno(), libc::EFBIG);
    fs.release(fh);
    assert_eq!(fake.file("f").unwrap(), b"x");
}

#[test]
fn directory_link_counts_are_two_plus_subdirectories_when_listed() {
    let fake = Arc::new(FakeRemote::new());
    fake.add_dir("d/a");
    fake.add_dir("d/b");
    fake.add_file("d/f", b"x", old());
    let fs = fs_with(fake);
    let d = fs.lookup(ROOT, "d").unwrap();
    assert_eq!(d.nlink, 1, "not listed yet: unknown");
    fs.readdir(d.ino, false).unwrap();
    assert_eq!(fs.getattr(d.ino).unwrap().nlink, 4);
    fs.mkdir(d.ino, "c").unwrap();
    assert_eq!(fs.getattr(d.ino).unwrap().nlink, 5);
    fs.rmdir(d.ino, "a").unwrap();
    assert_eq!(fs.getattr(d.ino).unwrap().nlink, 4);
    let f = fs.lookup(d.ino, "f").unwrap();
    assert_eq!((f.kind, f.nlink), (FileKind::File, 1));
    assert_eq!(fs.getattr(ROOT).unwrap().nlink, 3, "root: listed, one subdirectory");
}

#[test]
fn a_time_set_on_a_directory_wins_over_the_time_of_changes_inside() {
    let fake = Arc::new(FakeRemote::new());
    fake.add_dir("d");
    let fs = fs_with(fake);
    let d = fs.lookup(ROOT, "d").unwrap();
    fs.mkdir(d.ino, "sub").unwrap();
    assert!(fs.getattr(d.ino).unwrap().mtime > old());
    // rsync -a sets the source's time after filling the directory (the fake keeps no
    // directory times, so the listing's stays: not the time of the mkdir above).
    let before = fs.getattr(d.ino).unwrap().mtime;
    let a = fs.setattr(d.ino, None, SetAttr { mtime: Some(old()), ..Default::default() }).unwrap();
    assert!(a.mtime < before, "{:?}", a.mtime);
    assert!(a.ctime >= before, "ctime still moved");
}
