//! POSIX edges through a real mount of vsftpd (issue 13, defect 6, found with pjdfstest):
//! modes asked for at create and mkdir reach the server's disk, a directory's times move
//! when its entries change, chmod moves ctime, huge sizes get EFBIG, and link counts of
//! listed directories count their subdirectories without hiding anything from `find`.

mod common;

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::process::Command;
use std::time::Duration;

use common::*;

fn mode_on_disk(p: &std::path::Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn modes_at_create_and_mkdir_reach_the_servers_disk() {
    let server = Vsftpd::start(TempDir::new("modes"), VsftpdOptions::default());
    let mount = Mount::of(&server, None, &[]);
    let (m, s) = (mount.path(), server.root());
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(m.join("secret")).unwrap();
    std::io::Write::write_all(&mut f, b"key").unwrap();
    drop(f);
    fs::OpenOptions::new().write(true).create_new(true).mode(0o640).open(m.join("empty")).unwrap();
    fs::DirBuilder::new().mode(0o700).create(m.join("private")).unwrap();
    fs::DirBuilder::new().mode(0o777).create(m.join("public")).unwrap();
    assert_eq!(fs::read(s.join("secret")).unwrap(), b"key");
    assert_eq!(mode_on_disk(&s.join("secret")), 0o600);
    assert_eq!(mode_on_disk(&s.join("empty")), 0o640);
    assert_eq!(mode_on_disk(&s.join("private")), 0o700);
    assert_eq!(mode_on_disk(&s.join("public")), 0o755, "0777 less the umask 022");
    assert_eq!(fs::metadata(m.join("private")).unwrap().permissions().mode() & 0o7777, 0o700);
    mount.unmount();
}

#[test]
fn parent_times_move_after_changes_and_chmod_moves_ctime() {
    let root = TempDir::new("times");
    fs::create_dir(root.path().join("d")).unwrap();
    fs::write(root.path().join("d/f"), b"x").unwrap();
    set_mtime(&root.path().join("d/f"), 1_600_000_000);
    let server = Vsftpd::start(root, VsftpdOptions::default());
    let mount = Mount::of(&server, None, &["--attr-timeout", "60s", "--dir-timeout", "60s"]);
    let d = mount.path().join("d");
    let mtime_ns = |p: &std::path::Path| {
        let md = fs::metadata(p).unwrap();
        (
            md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
            md.ctime() as i128 * 1_000_000_000 + md.ctime_nsec() as i128,
        )
    };
    let ops: [(&str, &dyn Fn()); 5] = [
        ("create", &|| fs::write(d.join("new"), b"n").unwrap()),
        ("rename", &|| fs::rename(d.join("new"), d.join("renamed")).unwrap()),
        ("unlink", &|| fs::remove_file(d.join("renamed")).unwrap()),
        ("mkdir", &|| fs::create_dir(d.join("sub")).unwrap()),
        ("rmdir", &|| fs::remove_dir(d.join("sub")).unwrap()),
    ];
    for (what, op) in ops {
        let (m0, _) = mtime_ns(&d);
        std::thread::sleep(Duration::from_millis(20));
        op();
        let (m1, c1) = mtime_ns(&d);
        assert!(m1 > m0 && c1 >= m1, "{what}: the directory's mtime {m0} -> {m1}, ctime {c1}");
    }
    let f = d.join("f");
    let before = fs::metadata(&f).unwrap();
    assert_eq!(before.ctime(), 1_600_000_000);
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    let after = fs::metadata(&f).unwrap();
    assert!(after.ctime() > 1_600_000_000 + 3600, "chmod moved ctime: {}", after.ctime());
    assert_eq!(after.mtime(), 1_600_000_000, "and not mtime");
    assert_eq!(mode_on_disk(&server.root().join("d/f")), 0o600);
    mount.unmount();
}

#[test]
fn huge_sizes_get_efbig_and_link_counts_do_not_hide_anything_from_find() {
    let root = TempDir::new("big");
    for d in ["a/b/c", "a/b2", "x/y", "z"] {
        fs::create_dir_all(root.path().join(d)).unwrap();
        fs::write(root.path().join(d).join("file"), d).unwrap();
    }
    fs::write(root.path().join("f"), b"small").unwrap();
    let server = Vsftpd::start(root, VsftpdOptions::default());
    let mount = Mount::of(&server, None, &[]);
    let m = mount.path();
    let f = fs::OpenOptions::new().write(true).open(m.join("f")).unwrap();
    assert_eq!(f.set_len(999_999_999_999_999).unwrap_err().raw_os_error(), Some(libc::EFBIG));
    drop(f);
    assert_eq!(fs::read(server.root().join("f")).unwrap(), b"small");
    // Some directories listed (and so counted), others not.
    fs::read_dir(m.join("a")).unwrap().for_each(drop);
    fs::read_dir(m.join("a/b")).unwrap().for_each(drop);
    assert_eq!(fs::metadata(m.join("a")).unwrap().nlink(), 4, "2 + b + b2");
    assert_eq!(fs::metadata(m.join("a/b")).unwrap().nlink(), 3);
    fs::create_dir(m.join("a/new")).unwrap();
    assert_eq!(fs::metadata(m.join("a")).unwrap().nlink(), 5);
    let out = run_ok(Command::new("find").arg(m).args(["-type", "f"]));
    let mut found: Vec<&str> = out.lines().map(|l| l.strip_prefix(m.to_str().unwrap()).unwrap()).collect();
    found.sort();
    assert_eq!(found, ["/a/b/c/file", "/a/b2/file", "/f", "/x/y/file", "/z/file"]);
    mount.unmount();
}
