//! Writing through a real FUSE mount of real FTP servers: rsync, cp, mv, rm, editors'
//! saves, appends and truncation, checked byte for byte on the server side; failures surface
//! at close and never leave a truncated file under the real name.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use common::*;

fn tls_server(certs: &Certs) -> Vsftpd {
    tls_vsftpd(certs, TempDir::new("root"), "")
}

/// A tree of many small files (see `small_files_tree`) plus two big files.
fn source_tree(dir: &Path, small: usize) {
    small_files_tree(dir, small);
    fs::write(dir.join("big-20MiB.bin"), pseudo_random(20 << 20, 99)).unwrap();
    fs::write(dir.join("level0/big-33MiB.bin"), pseudo_random(33 << 20, 98)).unwrap();
}

fn rsync_round_trip(server: &dyn Server, certs: Option<&Certs>, extra: &[&str]) {
    let src = TempDir::new("src");
    source_tree(src.path(), 2000);
    let mount = Mount::of(server, certs, extra);
    let dst = mount.path().join("dst");
    let from = format!("{}/", src.path().display());
    run_ok(Command::new("rsync").args(["-a", &from, dst.to_str().unwrap()]));
    assert_same_files(src.path(), &server.root().join("dst"));
    assert_eq!(tree_listing(src.path()), tree_listing(&server.root().join("dst")), "no extra files (temporaries) left");
    let second = run_ok(Command::new("rsync").args(["-a", "--itemize-changes", &from, dst.to_str().unwrap()]));
    let transfers: Vec<&str> =
        second.lines().filter(|l| l.starts_with('>') || l.starts_with('<') || l.starts_with("c")).collect();
    assert!(transfers.is_empty(), "second rsync transferred: {transfers:?}");
}

#[test]
fn rsync_of_2000_small_files_and_big_files_on_vsftpd_tls() {
    let certs = Certs::new();
    let server = tls_server(&certs);
    rsync_round_trip(&server, Some(&certs), &[]);
}

#[test]
fn rsync_of_2000_small_files_and_big_files_on_pyftpdlib() {
    let server = PyFtpd::start(TempDir::new("root"), None, &[]);
    rsync_round_trip(&server, None, &["--tls", "off"]);
}

#[test]
fn rsync_inplace_and_append() {
    let certs = Certs::new();
    let server = tls_server(&certs);
    let mount = Mount::of(&server, Some(&certs), &[]);
    let src = TempDir::new("src");
    let file = src.path().join("log.txt");
    fs::write(&file, b"first part\n").unwrap();
    let dst = mount.path().join("log.txt");
    run_ok(Command::new("rsync").args(["-a", "--inplace", file.to_str().unwrap(), dst.to_str().unwrap()]));
    assert_eq!(fs::read(server.root().join("log.txt")).unwrap(), b"first part\n");
    fs::write(&file, b"first part\nchanged in the middle? no: appended\n").unwrap();
    run_ok(Command::new("rsync").args(["-a", "--append", file.to_str().unwrap(), dst.to_str().unwrap()]));
    assert_eq!(fs::read(server.root().join("log.txt")).unwrap(), fs::read(&file).unwrap());
    fs::write(&file, b"FIRST PART\nchanged in the middle? yes, in place\n").unwrap();
    run_ok(Command::new("rsync").args([
        "-a",
        "--inplace",
        "--no-whole-file",
        file.to_str().unwrap(),
        dst.to_str().unwrap(),
    ]));
    assert_eq!(fs::read(server.root().join("log.txt")).unwrap(), fs::read(&file).unwrap());
}

#[test]
fn cp_mv_rm_mkdir_touch_append_truncate() {
    let certs = Certs::new();
    let server = tls_server(&certs);
    let mount = Mount::of(&server, Some(&certs), &[]);
    let m = mount.path();
    let root = server.root();

    let src = TempDir::new("src");
    fs::create_dir_all(src.path().join("tree/sub")).unwrap();
    fs::write(src.path().join("tree/sub/a.txt"), b"alpha").unwrap();
    set_mtime(&src.path().join("tree/sub/a.txt"), 1_234_567_890);
    run_ok(Command::new("cp").arg("-a").arg(src.path().join("tree")).arg(m));
    assert_eq!(fs::read(root.join("tree/sub/a.txt")).unwrap(), b"alpha");
    assert_same_files(&src.path().join("tree"), &root.join("tree"));

    run_ok(Command::new("mkdir").arg("-p").arg(m.join("x/y/z")));
    assert!(root.join("x/y/z").is_dir());
    run_ok(Command::new("touch").arg(m.join("x/y/z/empty")));
    assert_eq!(fs::metadata(root.join("x/y/z/empty")).unwrap().len(), 0);

    run_ok(Command::new("mv").arg(m.join("tree/sub/a.txt")).arg(m.join("x/moved.txt")));
    assert!(!root.join("tree/sub/a.txt").exists());
    assert_eq!(fs::read(root.join("x/moved.txt")).unwrap(), b"alpha");
    run_ok(Command::new("mv").arg(m.join("x/y")).arg(m.join("renamed-dir")));
    assert!(root.join("renamed-dir/z/empty").exists());
    assert!(m.join("renamed-dir/z/empty").exists(), "the mount shows the move at once");

    let mut f = fs::OpenOptions::new().append(true).open(m.join("x/moved.txt")).unwrap();
    f.write_all(b" beta").unwrap();
    drop(f);
    assert_eq!(fs::read(root.join("x/moved.txt")).unwrap(), b"alpha beta");
    assert_eq!(fs::metadata(m.join("x/moved.txt")).unwrap().len(), 10, "stat sees the new size at once");

    run_ok(Command::new("truncate").args(["-s", "3"]).arg(m.join("x/moved.txt")));
    assert_eq!(fs::read(root.join("x/moved.txt")).unwrap(), b"alp");
    run_ok(Command::new("truncate").args(["-s", "0"]).arg(m.join("x/moved.txt")));
    assert_eq!(fs::read(root.join("x/moved.txt")).unwrap(), b"");

    run_ok(Command::new("touch").args(["-d", "2021-05-06 07:08:09 UTC"]).arg(m.join("x/moved.txt")));
    let secs = |p: &Path| {
        fs::metadata(p).unwrap().modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    };
    assert_eq!(secs(&root.join("x/moved.txt")), 1_620_284_889);
    assert_eq!(secs(&m.join("x/moved.txt")), 1_620_284_889);

    let err = fs::remove_dir(m.join("x")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(39), "ENOTEMPTY: {err}");
    run_ok(Command::new("rm").arg("-r").arg(m.join("x")).arg(m.join("tree")));
    assert!(!root.join("x").exists() && !root.join("tree").exists());
    assert!(!m.join("x").exists());
}

#[test]
fn rename_over_an_existing_file_replaces_it() {
    let certs = Certs::new();
    let server = tls_server(&certs);
    fs::write(server.root().join("target.txt"), b"old").unwrap();
    chown_to_user(server.root());
    let mount = Mount::of(&server, Some(&certs), &[]);
    fs::write(mount.path().join("new.txt"), b"new content").unwrap();
    fs::rename(mount.path().join("new.txt"), mount.path().join("target.txt")).unwrap();
    assert_eq!(fs::read(server.root().join("target.txt")).unwrap(), b"new content");
    assert!(!server.root().join("new.txt").exists());
    assert_eq!(fs::read(mount.path().join("target.txt")).unwrap(), b"new content");
}

#[test]
fn a_file_deleted_while_open_leaves_nothing_behind() {
    let certs = Certs::new();
    let server = tls_server(&certs);
    let mount = Mount::of(&server, Some(&certs), &[]);
    let path = mount.path().join("scratch.bin");
    let mut f = fs::File::create(&path).unwrap();
    // Sequential writes: an upload is under way under the file's own name.
    f.write_all(&pseudo_random(3 << 20, 11)).unwrap();
    fs::remove_file(&path).unwrap();
    // Writing on to a deleted file works, and goes nowhere, as on a local disk.
    f.write_all(b"more").unwrap();
    drop(f);
    assert!(!path.exists());
    assert!(tree_listing(server.root()).is_empty(), "nothing on the server: {:?}", tree_listing(server.root()));

    // Given a time first (`touch -d`, an archiver restoring times): fsync and close succeed.
    let path = mount.path().join("stamped.bin");
    let mut f = fs::File::create(&path).unwrap();
    f.write_all(b"stamped").unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_500_000_000)).unwrap();
    fs::remove_file(&path).unwrap();
    f.sync_all().unwrap();
    let fd = std::os::fd::IntoRawFd::into_raw_fd(f);
    // SAFETY: `fd` was just taken from the File, so it is open and closed only here.
    assert_eq!(unsafe { libc::close(fd) }, 0, "close: {}", std::io::Error::last_os_error());
    assert!(tree_listing(server.root()).is_empty(), "nothing on the server: {:?}", tree_listing(server.root()));
}

#[test]
fn editor_style_saves() {
    let certs = Certs::new();
    let server = tls_server(&certs);
    fs::write(server.root().join("notes.txt"), b"version 1\n").unwrap();
    chown_to_user(server.root());
    let mount = Mount::of(&server, Some(&certs), &[]);
    let m = mount.path();
    // vim: write a new file, rename the old one to a backup, rename the new one in place.
    fs::write(m.join("4913"), b"").unwrap();
    fs::remove_file(m.join("4913")).unwrap();
    fs::write(m.join(".notes.txt.swp"), b"swap").unwrap();
    fs::rename(m.join("notes.txt"), m.join("notes.txt~")).unwrap();
    fs::write(m.join("notes.txt"), b"version 2\n").unwrap();
    fs::remove_file(m.join("notes.txt~")).unwrap();
    fs::remove_file(m.join(".notes.txt.swp")).unwrap();
    assert_eq!(fs::read(server.root().join("notes.txt")).unwrap(), b"version 2\n");
    // nano: truncate and rewrite the same file.
    let mut f = fs::OpenOptions::new().write(true).truncate(true).open(m.join("notes.txt")).unwrap();
    f.write_all(b"version 3\n").unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(fs::read(server.root().join("notes.txt")).unwrap(), b"version 3\n");
    // Write to a temporary and rename over (atomic save, e.g. gedit, VS Code).
    fs::write(m.join(".notes.txt.tmp"), b"version 4\n").unwrap();
    fs::rename(m.join(".notes.txt.tmp"), m.join("notes.txt")).unwrap();
    assert_eq!(fs::read(server.root().join("notes.txt")).unwrap(), b"version 4\n");
    assert_eq!(tree_listing(server.root()), vec!["notes.txt"], "no leftovers");
}

#[test]
fn random_access_writes_use_the_spool_and_keep_the_rest() {
    let certs = Certs::new();
    let server = tls_server(&certs);
    let original = pseudo_random(3 << 20, 5);
    fs::write(server.root().join("data.bin"), &original).unwrap();
    chown_to_user(server.root());
    let mount = Mount::of(&server, Some(&certs), &[]);
    let f = fs::OpenOptions::new().read(true).write(true).open(mount.path().join("data.bin")).unwrap();
    f.write_all_at(b"PATCHED", 1_000_000).unwrap();
    f.write_all_at(b"END", original.len() as u64).unwrap();
    let mut back = vec![0u8; 7];
    f.read_exact_at(&mut back, 1_000_000).unwrap();
    assert_eq!(&back, b"PATCHED", "reads see the handle's own writes");
    f.sync_all().unwrap();
    drop(f);
    let mut want = original.clone();
    want[1_000_000..1_000_007].copy_from_slice(b"PATCHED");
    want.extend_from_slice(b"END");
    assert_eq!(fs::read(server.root().join("data.bin")).unwrap(), want);
}

#[test]
fn parallel_writers_and_a_reader() {
    let certs = Certs::new();
    let server = tls_server(&certs);
    let existing = pseudo_random(8 << 20, 77);
    fs::write(server.root().join("existing.bin"), &existing).unwrap();
    chown_to_user(server.root());
    let mount = Mount::of(&server, Some(&certs), &["--max-connections", "4"]);
    let m = mount.path();
    let datas: Vec<Vec<u8>> = (0..6).map(|i| pseudo_random(3 << 20, 500 + i)).collect();
    std::thread::scope(|s| {
        for (i, d) in datas.iter().enumerate() {
            let p = m.join(format!("w{i}.bin"));
            s.spawn(move || fs::write(&p, d).unwrap());
        }
        s.spawn(|| assert!(fs::read(m.join("existing.bin")).unwrap() == existing));
    });
    for (i, d) in datas.iter().enumerate() {
        assert!(fs::read(server.root().join(format!("w{i}.bin"))).unwrap() == *d, "w{i}.bin");
    }
}

#[test]
fn an_upload_refused_by_the_server_fails_at_close_and_keeps_the_old_file() {
    let certs = Certs::new();
    let server = tls_server(&certs);
    fs::create_dir(server.root().join("locked")).unwrap();
    fs::write(server.root().join("locked/keep.txt"), b"precious").unwrap();
    chown_to_user(server.root());
    // The FTP user may not write into this directory.
    run_ok(Command::new("chown").args(["-R", "root:root"]).arg(server.root().join("locked")));
    let mount = Mount::of(&server, Some(&certs), &[]);
    let err = fs::write(mount.path().join("locked/keep.txt"), b"overwritten").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(13), "EACCES at the application: {err}");
    assert_eq!(fs::read(server.root().join("locked/keep.txt")).unwrap(), b"precious");
    let err = fs::write(mount.path().join("locked/new.txt"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(13), "{err}");
    assert_eq!(tree_listing(&server.root().join("locked")), vec!["keep.txt"]);
}

#[test]
fn links_and_special_files_fail_at_once() {
    let server = Vsftpd::start(TempDir::new("root"), VsftpdOptions::default());
    let mount = Mount::of(&server, None, &["--tls", "off"]);
    fs::write(mount.path().join("f"), b"x").unwrap();
    let e = std::os::unix::fs::symlink("f", mount.path().join("l")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(1), "EPERM: {e}");
    let e = fs::hard_link(mount.path().join("f"), mount.path().join("h")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(1), "EPERM: {e}");
    let out = Command::new("mkfifo").arg(mount.path().join("fifo")).output().unwrap();
    assert!(!out.status.success());
    // Owners cannot change over FTP; accepted so `cp -a`/`rsync -a` as root succeed.
    run_ok(Command::new("chown").arg("12345:12345").arg(mount.path().join("f")));
}

/// Writes `total` bytes in 1 MiB chunks, calling `midway` after the second chunk; returns the
/// first error seen by write, fsync or close.
fn write_with_interruption(path: &Path, total: usize, midway: impl FnOnce()) -> Option<std::io::Error> {
    let mut f = match fs::File::create(path) {
        Ok(f) => f,
        Err(e) => return Some(e),
    };
    let chunk = pseudo_random(1 << 20, 3);
    let mut midway = Some(midway);
    for i in 0..total / chunk.len() {
        if i == 2 {
            (midway.take().unwrap())();
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        if let Err(e) = f.write_all(&chunk) {
            return Some(e);
        }
    }
    if let Err(e) = f.sync_all() {
        return Some(e);
    }
    // close(2) reports the flush result; std ignores close errors, so use libc directly.
    let fd = std::os::fd::IntoRawFd::into_raw_fd(f);
    // SAFETY: fd is an open descriptor we own.
    if unsafe { libc_close(fd) } != 0 {
        return Some(std::io::Error::last_os_error());
    }
    None
}

unsafe extern "C" {
    #[link_name = "close"]
    fn libc_close(fd: i32) -> i32;
}

#[test]
fn a_connection_killed_mid_upload_is_ridden_out_or_reported_and_loses_nothing() {
    let certs = Certs::new();
    let server = tls_server(&certs);
    let old = pseudo_random(1 << 20, 11);
    fs::write(server.root().join("target.bin"), &old).unwrap();
    chown_to_user(server.root());
    let new: Vec<u8> = pseudo_random(1 << 20, 3).repeat(32);

    // With room in the spool, what was streamed is also kept locally and sent again.
    let mount = Mount::of(&server, Some(&certs), &[]);
    let err = write_with_interruption(&mount.path().join("target.bin"), 32 << 20, || {
        assert!(server.kill_sessions() > 0);
    });
    assert!(err.is_none(), "ridden out: {err:?}\n{}", mount.log());
    assert!(fs::read(server.root().join("target.bin")).unwrap() == new, "every byte of the new content");
    assert!(mount.log().contains("sent again from a local copy"), "{}", mount.log());
    drop(mount);
    fs::write(server.root().join("target.bin"), &old).unwrap();

    // Without room for a local copy, the application hears about it and nothing is lost.
    let mount = Mount::of(&server, Some(&certs), &["--cache-max-size", "1M"]);
    let err = write_with_interruption(&mount.path().join("target.bin"), 32 << 20, || {
        assert!(server.kill_sessions() > 0);
    });
    assert!(err.is_some(), "the application must hear about the failed upload: {}", mount.log());
    assert_eq!(fs::read(server.root().join("target.bin")).unwrap(), old, "old content intact");

    let err = write_with_interruption(&mount.path().join("new.bin"), 32 << 20, || {
        server.kill_sessions();
    });
    assert!(err.is_some(), "a failed new upload is reported");
    assert_eq!(tree_listing(server.root()), vec!["target.bin"], "no partial file, no temporary left");

    // The mount recovers: new sessions work.
    fs::write(mount.path().join("after.txt"), b"still works").unwrap();
    assert_eq!(fs::read(server.root().join("after.txt")).unwrap(), b"still works");
}

#[test]
fn a_full_server_disk_is_enospc_and_leaves_no_partial_file() {
    let root = TempDir::new("small-disk");
    let status =
        Command::new("mount").args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"]).arg(root.path()).status().unwrap();
    assert!(status.success(), "mounting a small tmpfs for the server");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let root_path = root.path().to_path_buf();
    let server = Vsftpd::start(root, VsftpdOptions::default());
    // Dropped before the server (and its directory), so the directory can be removed.
    let _guard = Unmount(root_path.clone());
    let mount = Mount::of(&server, None, &["--tls", "off"]);
    let err = write_with_interruption(&mount.path().join("too-big.bin"), 8 << 20, || {}).expect("must fail");
    assert_eq!(err.raw_os_error(), Some(28), "ENOSPC: {err}");
    assert!(tree_listing(&root_path).is_empty(), "the partial upload was removed: {:?}", tree_listing(&root_path));
    assert!(mount.log().contains("full"), "{}", mount.log());
}

#[test]
fn server_symlinks_read_through_the_mount() {
    let root = TempDir::new("root");
    fs::create_dir(root.path().join("sub")).unwrap();
    fs::write(root.path().join("sub/real.txt"), b"the real thing").unwrap();
    std::os::unix::fs::symlink("sub/real.txt", root.path().join("link.txt")).unwrap();
    // vsftpd lists links as `l… link.txt -> sub/real.txt`.
    let server = Vsftpd::start(root, VsftpdOptions::default());
    let mount = Mount::of(&server, None, &["--tls", "off"]);
    let meta = fs::symlink_metadata(mount.path().join("link.txt")).unwrap();
    assert!(meta.file_type().is_symlink());
    assert_eq!(fs::read_link(mount.path().join("link.txt")).unwrap(), Path::new("sub/real.txt"));
    assert_eq!(fs::read(mount.path().join("link.txt")).unwrap(), b"the real thing");
}

#[test]
fn file_manager_copy_move_and_delete() {
    // gio is GNOME's file-manager toolkit (Nautilus uses the same calls); .ci/run installs it.
    let certs = Certs::new();
    let server = tls_server(&certs);
    let mount = Mount::of(&server, Some(&certs), &[]);
    let src = TempDir::new("src");
    fs::write(src.path().join("photo.jpg"), pseudo_random(300_000, 8)).unwrap();
    let m = mount.path();
    run_ok(Command::new("gio").arg("copy").arg(src.path().join("photo.jpg")).arg(m.join("photo.jpg")));
    assert_eq!(fs::read(server.root().join("photo.jpg")).unwrap(), fs::read(src.path().join("photo.jpg")).unwrap());
    run_ok(Command::new("gio").arg("move").arg(m.join("photo.jpg")).arg(m.join("renamed.jpg")));
    assert!(!server.root().join("photo.jpg").exists() && server.root().join("renamed.jpg").exists());
    // No trash on a shared server (SEMANTICS.md "Trash"): gio says so, the file stays, and no
    // trash folder is left behind; deleting it is what a file manager then offers.
    let out = Command::new("gio").arg("trash").arg(m.join("renamed.jpg")).output().unwrap();
    assert!(!out.status.success(), "gio trash succeeded");
    assert!(String::from_utf8_lossy(&out.stderr).contains("trash"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(server.root().join("renamed.jpg").exists());
    run_ok(Command::new("gio").arg("remove").arg(m.join("renamed.jpg")));
    assert_eq!(tree_listing(server.root()), Vec::<String>::new(), "nothing left on the server");
}

#[test]
fn where_the_server_refuses_renames_new_files_go_to_their_own_names_after_the_first() {
    // An upload-only server: files may be stored, never renamed.
    let server =
        Vsftpd::start(TempDir::new("root"), VsftpdOptions { extra: "cmds_denied=RNFR,RNTO\n", ..Default::default() });
    let mount = Mount::of(&server, None, &[]);
    let write = |name: &str, data: &[u8]| -> std::io::Result<()> {
        let mut f = fs::File::create(mount.path().join(name))?;
        f.write_all(data)?;
        f.sync_all()
    };
    let err = write("first.txt", b"one").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{err}");
    assert!(mount.log().contains("write first.txt again"), "{}", mount.log());
    // Written again at once: the kernel still knows the name (its upload failed); it works.
    write("first.txt", b"one").unwrap();
    write("second.txt", b"two").unwrap();
    assert_eq!(fs::read(server.root().join("first.txt")).unwrap(), b"one");
    assert_eq!(fs::read(server.root().join("second.txt")).unwrap(), b"two");
    let names = tree_listing(server.root());
    assert!(names.iter().all(|n| !n.ends_with(".part")), "no temporary left where deleting is allowed: {names:?}");
}
