//! The everyday side of a mount: the fstab helper (`mount.fuse.ftpmount SOURCE DIR -o …`),
//! `ftpmount status` with a transfer in flight, and how `findmnt` shows the mount.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Unmounts a mount made in the background and waits for its daemon to end.
struct Detached {
    mountpoint: PathBuf,
    pid: Option<u32>,
}

impl Drop for Detached {
    fn drop(&mut self) {
        if is_mounted(&self.mountpoint) {
            let _ = Command::new("fusermount3").arg("-u").arg(&self.mountpoint).status();
        }
        let Some(pid) = self.pid else { return };
        let start = Instant::now();
        while Path::new(&format!("/proc/{pid}")).exists() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn fstab_helper_mounts_with_o_options_and_findmnt_shows_a_network_filesystem() {
    let root = TempDir::new("root");
    std::fs::write(root.path().join("hello.txt"), b"hello from the server").unwrap();
    let server = Vsftpd::start(root, VsftpdOptions::default());
    let dir = TempDir::new("helper");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    // How mount(8) runs a helper for an fstab line
    //   ftp://ftpmount-test@localhost:PORT/  /mnt  fuse.ftpmount  rw,_netdev,tls=off,max_connections=3  0 0
    let helper = dir.path().join("mount.fuse.ftpmount");
    std::os::unix::fs::symlink(bin(), &helper).unwrap();
    let out = Command::new(&helper)
        .arg(server.url())
        .arg(&mnt)
        .args(["-o", "rw,_netdev,tls=off,max_connections=3,x-systemd.automount"])
        .env("FTPMOUNT_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    let mut guard = Detached { mountpoint: mnt.clone(), pid: None };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(is_mounted(&mnt), "the helper returns once the mount is ready");
    assert_eq!(std::fs::read(mnt.join("hello.txt")).unwrap(), b"hello from the server");

    let st = status_json(&mnt);
    guard.pid = st["pid"].as_u64().map(|p| p as u32);
    assert_eq!(st["sessions"]["max"], 3, "max_connections=3 reached the mount: {st:#}");

    let findmnt = Command::new("findmnt").args(["-n", "-o", "FSTYPE,SOURCE"]).arg(&mnt).output().unwrap();
    let shown = String::from_utf8(findmnt.stdout).unwrap();
    assert_eq!(shown.split_whitespace().collect::<Vec<_>>(), ["fuse.ftpmount", "ftpmount:localhost"], "{shown}");

    // A misspelt option is named, and nothing is mounted.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let out = Command::new(&helper).arg(server.url()).arg(&other).args(["-o", "max_conections=3"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown mount option 'max_conections'"));
    assert!(!is_mounted(&other));
}

#[test]
fn fuse3s_mount_fuse_calling_convention_also_mounts() {
    // fuse3's /sbin/mount.fuse runs `ftpmount SOURCE MOUNTPOINT -o OPTIONS`.
    let server = Vsftpd::start(TempDir::new("root"), VsftpdOptions::default());
    let dir = TempDir::new("helper");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = Command::new(bin())
        .arg(server.url())
        .arg(&mnt)
        .args(["-o", "rw,tls=off,read_only"])
        .env("FTPMOUNT_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    let mut guard = Detached { mountpoint: mnt.clone(), pid: None };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    guard.pid = status_json(&mnt)["pid"].as_u64().map(|p| p as u32);
    let err = std::fs::write(mnt.join("x"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(30), "EROFS: read_only reached the mount: {err}");
}

#[test]
fn status_reports_a_transfer_in_flight() {
    let server = Vsftpd::start(TempDir::new("root"), VsftpdOptions::default());
    // Made after the server gave the tree to the FTP user: root's, not writable for it.
    std::fs::create_dir(server.root().join("locked")).unwrap();
    let mount = Mount::of(&server, None, &["--tls", "off", "--max-connections", "5"]);
    let idle = status_json(mount.path());
    assert_eq!(idle["transfers"].as_array().unwrap().len(), 0, "{idle:#}");
    assert_eq!(idle["source"], server.url());
    // The mountpoint named another way (through a symbolic link) finds the same mount.
    let links = TempDir::new("links");
    std::os::unix::fs::symlink(mount.path(), links.path().join("m")).unwrap();
    assert_eq!(status_json(&links.path().join("m"))["pid"], idle["pid"]);

    // A file half written: the upload is streaming and the file stays open.
    let mut file = std::fs::File::create(mount.path().join("big.bin")).unwrap();
    file.write_all(&pseudo_random(3 << 20, 5)).unwrap();
    let busy = status_json(mount.path());
    let transfers = busy["transfers"].as_array().unwrap();
    assert_eq!(transfers.len(), 1, "{busy:#}");
    assert_eq!(transfers[0]["path"], "/big.bin");
    assert_eq!(transfers[0]["direction"], "upload");
    assert!(transfers[0]["bytes"].as_u64().unwrap() >= 3 << 20, "{busy:#}");
    assert!(busy["sessions"]["busy"].as_u64().unwrap() >= 1, "{busy:#}");
    // The text form, as a person reads it.
    let text = Command::new(bin()).arg("status").arg(mount.path()).output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("upload   /big.bin") && text.contains("MiB"), "{text}");
    drop(file);
    assert_eq!(std::fs::read(server.root().join("big.bin")).unwrap().len(), 3 << 20);

    // Failures reported to applications are listed (a directory the FTP user may not write).
    assert!(std::fs::write(mount.path().join("locked/x.txt"), b"x").is_err());
    let after = status_json(mount.path());
    assert_eq!(after["transfers"].as_array().unwrap().len(), 0, "{after:#}");
    let errors = after["recent_errors"].to_string();
    assert!(errors.contains("locked/x.txt"), "{after:#}");
}
