//! Name length limits (issue 13, defect 5).

use std::sync::Arc;

use super::inode::ROOT;
use super::tests::fs_with;
use super::{NAME_MAX, OpenMode, split, temp_names};
use crate::remote::fake::{Call, FakeRemote};

fn write_mode() -> OpenMode {
    OpenMode { write: true, truncate: true, pid: 7, ..Default::default() }
}

#[test]
fn temporary_names_of_long_names_fit_in_255_bytes_and_are_still_recognised() {
    for name in ["a".repeat(255), "é".repeat(127) + "x", "文".repeat(85), "x".repeat(200), "short.txt".into()] {
        let temp = temp_names::temp_name(&format!("dir/{name}"));
        let (dir, t) = split(&temp);
        assert_eq!(dir, "dir");
        assert!(t.len() <= NAME_MAX, "{} bytes: {t}", t.len());
        assert!(temp_names::is_own_temp(t), "{t}");
        let stem = &t[1..t.rfind(".ftpmount-").unwrap()];
        assert!(name.starts_with(stem) || name.starts_with(&stem[..stem.rfind('~').unwrap()]), "{t}");
    }
    assert!(temp_names::temp_name("short.txt").starts_with(".short.txt.ftpmount-"), "short names are kept whole");
}

#[test]
fn names_longer_than_255_bytes_are_refused_before_any_command() {
    let fake = Arc::new(FakeRemote::new());
    fake.add_file("f", b"x", std::time::SystemTime::now());
    let fs = fs_with(fake.clone());
    let long = "n".repeat(256);
    let multi = "é".repeat(128);
    for name in [&long, &multi] {
        assert_eq!(fs.lookup(ROOT, name).unwrap_err().errno(), libc::ENAMETOOLONG);
        assert_eq!(fs.create(ROOT, name, write_mode(), false).unwrap_err().errno(), libc::ENAMETOOLONG);
        assert_eq!(fs.mkdir(ROOT, name).unwrap_err().errno(), libc::ENAMETOOLONG);
        assert_eq!(fs.symlink(ROOT, name).unwrap_err().errno(), libc::ENAMETOOLONG);
    }
    assert_eq!(fake.count(Call::List), 0, "not even a listing");
    let f = fs.lookup(ROOT, "f").unwrap();
    assert_eq!(fs.rename(ROOT, "f", ROOT, &long, false).unwrap_err().errno(), libc::ENAMETOOLONG);
    assert_eq!(fake.count(Call::Change), 0);
    assert_eq!(fs.symlink(ROOT, "ok").unwrap_err().errno(), libc::EPERM);
    assert!(fs.getattr(f.ino).is_ok());
    // 255 bytes are fine.
    let (_, fh) = fs.create(ROOT, &"m".repeat(255), write_mode(), false).unwrap();
    fs.write(fh, 0, b"data").unwrap();
    fs.flush(fh, 7).unwrap();
    fs.release(fh);
    assert_eq!(fake.file(&"m".repeat(255)).unwrap(), b"data");
}
