//! `--write-back`: close() returns once the data is in the local queue and uploads run in the
//! background. Checked on the server's disk: what a queued file went through (rename, chmod,
//! touch, unlink) ends up there as on a local filesystem; `fsync` and `ftpmount sync` wait for
//! the server; refused uploads are reported and their data kept; unmount drains the queue; a
//! crashed daemon's queue is uploaded by the next mount of the same source.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, UNIX_EPOCH};

use common::*;

/// Explicit TLS; `extra` is more vsftpd configuration.
fn tls_server(certs: &Certs, extra: &str) -> Vsftpd {
    tls_vsftpd(certs, TempDir::new("root"), extra)
}

/// vsftpd sends each session's data at this many bytes per second at most, so that uploads
/// are still queued when the test acts on them.
const SLOW: &str = "local_max_rate=100000\n";

/// A `--write-back` mount whose queue lives under `cache`.
fn write_back_mount(server: &Vsftpd, certs: &Certs, cache: &TempDir, extra: &[&str]) -> Mount {
    let mut args = vec!["--write-back", "--cache-dir", cache.path().to_str().unwrap()];
    args.extend(extra);
    Mount::of(server, Some(certs), &args)
}

/// `ftpmount sync MNT`, which waits for every queued upload (given two minutes).
fn sync(mount: &Mount) -> Output {
    let out = Command::new("timeout").arg("120").arg(bin()).arg("sync").arg(mount.path()).output().unwrap();
    assert_ne!(out.status.code(), Some(124), "ftpmount sync did not return in 2 minutes: {}", mount.log());
    out
}

fn sync_ok(mount: &Mount) {
    let out = sync(mount);
    assert!(out.status.success(), "ftpmount sync: {}\n{}", String::from_utf8_lossy(&out.stderr), mount.log());
}

fn mtime(path: &Path) -> u64 {
    fs::metadata(path).unwrap().modified().unwrap().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The `.data` files of the queue under `cache` (its `failed/` part if `failed`); the queue has
/// one directory per source, named by 16 hex digits.
fn queue_files(cache: &Path, failed: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(sources) = fs::read_dir(cache.join("write-back")) else { return out };
    for source in sources {
        let source = source.unwrap().path();
        let name = source.file_name().unwrap().to_str().unwrap();
        assert!(name.len() == 16 && name.chars().all(|c| c.is_ascii_hexdigit()), "queue directory {source:?}");
        let dir = if failed { source.join("failed") } else { source };
        for f in fs::read_dir(dir).into_iter().flatten() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|x| x == "data") {
                out.push(f);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn rsync_with_write_back_uploads_everything_and_a_second_run_sends_nothing() {
    let certs = Certs::new();
    let server = tls_server(&certs, "");
    let cache = TempDir::new("cache");
    let src = TempDir::new("src");
    small_files_tree(src.path(), 300);
    fs::write(src.path().join("big one.bin"), pseudo_random(1536 << 10, 41)).unwrap();
    fs::write(src.path().join("level3/Ünïcödé big.bin"), pseudo_random((5 << 20) - 123, 42)).unwrap();
    let mount = write_back_mount(&server, &certs, &cache, &[]);
    let dst = mount.path().join("dst");
    let from = format!("{}/", src.path().display());
    run_ok(Command::new("rsync").args(["-a", &from, dst.to_str().unwrap()]));
    sync_ok(&mount);

    let on_server = server.root().join("dst");
    assert_same_files(src.path(), &on_server);
    // Equal listings: no upload temporaries (.NAME.ftpmount-…) nor rsync's (.NAME.XXXXXX) left.
    assert_eq!(tree_listing(src.path()), tree_listing(&on_server), "no extra files left");
    let outside: Vec<String> = tree_listing(server.root()).into_iter().filter(|p| !p.starts_with("dst")).collect();
    assert!(outside.is_empty(), "only dst/ on the server: {outside:?}");
    assert!(queue_files(cache.path(), false).is_empty(), "queue emptied: {:?}", queue_files(cache.path(), false));
    assert_eq!(status_json(mount.path())["queued_uploads"], 0);

    let second = run_ok(Command::new("rsync").args(["-a", "--itemize-changes", &from, dst.to_str().unwrap()]));
    let transfers: Vec<&str> =
        second.lines().filter(|l| l.starts_with('>') || l.starts_with('<') || l.starts_with('c')).collect();
    assert!(transfers.is_empty(), "second rsync transferred: {transfers:?}");
    sync_ok(&mount);
    assert_same_files(src.path(), &on_server);
}

#[test]
fn queued_files_can_be_read_renamed_chmodded_touched_and_deleted() {
    let certs = Certs::new();
    // Uploads of 200 kB take about two seconds each.
    let server = tls_server(&certs, SLOW);
    let cache = TempDir::new("cache");
    let mount = write_back_mount(&server, &certs, &cache, &[]);
    let m = mount.path();
    let data: Vec<Vec<u8>> = (0..5).map(|i| pseudo_random(200_000 + i * 1000, 60 + i as u64)).collect();
    for (name, d) in ["read.bin", "rename.bin", "chmod.bin", "touch.bin", "delete.bin"].iter().zip(&data) {
        fs::write(m.join(name), d).unwrap();
    }
    let queued = status_json(mount.path())["queued_uploads"].as_u64().expect("queued_uploads is a number");
    assert!(queued > 0, "the operations below meet queued files");
    assert!(fs::read(m.join("read.bin")).unwrap() == data[0], "a queued file reads back");
    fs::rename(m.join("rename.bin"), m.join("renamed ü.bin")).unwrap();
    fs::set_permissions(m.join("chmod.bin"), fs::Permissions::from_mode(0o640)).unwrap();
    set_mtime(&m.join("touch.bin"), 1_500_000_000);
    fs::remove_file(m.join("delete.bin")).unwrap();

    // Uploads are under way by now: the mount shows what a local filesystem would.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(fs::metadata(m.join("read.bin")).unwrap().len(), data[0].len() as u64);
    assert!(fs::read(m.join("read.bin")).unwrap() == data[0], "read.bin reads back");
    assert!(!m.join("rename.bin").exists());
    assert!(fs::read(m.join("renamed ü.bin")).unwrap() == data[1], "the renamed file reads back");
    assert_eq!(fs::metadata(m.join("chmod.bin")).unwrap().permissions().mode() & 0o777, 0o640);
    assert_eq!(mtime(&m.join("touch.bin")), 1_500_000_000);
    assert!(!m.join("delete.bin").exists(), "{}", mount.log());

    sync_ok(&mount);
    let root = server.root();
    assert_eq!(tree_listing(root), ["chmod.bin", "read.bin", "renamed ü.bin", "touch.bin"], "nothing stray");
    assert!(fs::read(root.join("read.bin")).unwrap() == data[0], "read.bin on the server");
    assert!(fs::read(root.join("renamed ü.bin")).unwrap() == data[1], "renamed ü.bin on the server");
    assert!(fs::read(root.join("chmod.bin")).unwrap() == data[2], "chmod.bin on the server");
    assert_eq!(fs::metadata(root.join("chmod.bin")).unwrap().permissions().mode() & 0o777, 0o640);
    assert!(fs::read(root.join("touch.bin")).unwrap() == data[3], "touch.bin on the server");
    assert_eq!(mtime(&root.join("touch.bin")), 1_500_000_000);
    assert_eq!(status_json(mount.path())["queued_uploads"], 0);
}

#[test]
fn fsync_returns_once_the_file_is_on_the_server() {
    let certs = Certs::new();
    let server = tls_server(&certs, "");
    let cache = TempDir::new("cache");
    let mount = write_back_mount(&server, &certs, &cache, &[]);
    let data = pseudo_random(3 << 20, 7);
    let mut f = fs::File::create(mount.path().join("synced.bin")).unwrap();
    f.write_all(&data).unwrap();
    f.sync_all().unwrap();
    // Still open, and no `ftpmount sync`: fsync alone waited for the server.
    assert!(fs::read(server.root().join("synced.bin")).unwrap() == data, "the server has the bytes after fsync");
    assert_eq!(tree_listing(server.root()), ["synced.bin"], "no temporary left");

    // Written on after the fsync: the rest is uploaded too.
    f.write_all(b"and a tail").unwrap();
    drop(f);
    sync_ok(&mount);
    let mut want = data;
    want.extend_from_slice(b"and a tail");
    assert!(fs::read(server.root().join("synced.bin")).unwrap() == want, "the tail written after fsync");
}

#[test]
fn uploads_refused_by_the_server_are_reported_and_kept() {
    let certs = Certs::new();
    let server = tls_server(&certs, "");
    let ro = server.root().join("ro");
    fs::create_dir(&ro).unwrap();
    chown_to_user(&ro);
    // The FTP user owns it but may not write into it: vsftpd answers 553.
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
    let cache = TempDir::new("cache");
    let mount = write_back_mount(&server, &certs, &cache, &[]);
    let data = pseudo_random(100_000, 9);
    fs::write(mount.path().join("ro/denied.bin"), &data).unwrap();
    // fsync waits for the upload, so it hears of the refusal.
    let mut f = fs::File::create(mount.path().join("ro/fsynced.bin")).unwrap();
    f.write_all(b"refused too").unwrap();
    assert!(f.sync_all().is_err(), "fsync reports the refused upload: {}", mount.log());
    drop(f);

    let start = Instant::now();
    let out = sync(&mount);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "ftpmount sync fails: {stderr}");
    assert!(start.elapsed() < Duration::from_secs(30), "a refusal is not retried: {:?}", start.elapsed());
    // PATH: ERROR (data kept in FILE)
    let line = stderr.lines().find(|l| l.contains("ro/denied.bin")).unwrap_or_else(|| panic!("{stderr}"));
    let kept = line.split("(data kept in ").nth(1).and_then(|r| r.trim_end().strip_suffix(')'));
    let kept = fs::canonicalize(kept.unwrap_or_else(|| panic!("{line}"))).unwrap();
    assert!(fs::read(&kept).unwrap() == data, "{kept:?} holds the bytes");
    let failed = queue_files(cache.path(), true);
    assert!(failed.iter().any(|p| fs::canonicalize(p).unwrap() == kept), "{kept:?} is in failed/: {failed:?}");

    let st = status_json(mount.path());
    let listed: Vec<&str> = st["failed_uploads"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(listed.iter().any(|l| l.contains("ro/denied.bin") && l.contains("data kept in")), "{st:#}");
    assert_eq!(st["queued_uploads"], 0, "{st:#}");
    let log = mount.log();
    assert!(log.lines().any(|l| l.contains("could not upload") && l.contains("ro/denied.bin")), "{log}");
    assert!(tree_listing(&ro).is_empty(), "no partial file or temporary: {:?}", tree_listing(&ro));
}

#[test]
fn uploads_survive_a_daemon_crash_and_resume_at_the_next_mount() {
    let certs = Certs::new();
    let mut server = tls_server(&certs, "");
    let cache = TempDir::new("cache");
    let args = ["--case-collisions", "off"];
    let mut mount = write_back_mount(&server, &certs, &cache, &args);
    assert_eq!(fs::read_dir(mount.path()).unwrap().count(), 0, "the root listing is cached");
    server.stop();
    let data: Vec<Vec<u8>> = (0..5).map(|i| pseudo_random(10_000 + i * 50_000, 80 + i as u64)).collect();
    for (i, d) in data.iter().enumerate() {
        fs::write(mount.path().join(format!("f{i}.bin")), d).unwrap();
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(status_json(mount.path())["queued_uploads"], 5, "{}", mount.log());
    let first_log = mount.log();
    mount.kill_daemon();
    assert_eq!(queue_files(cache.path(), false).len(), 5, "the queue is on disk: {first_log}");

    server.restart();
    let mount = write_back_mount(&server, &certs, &cache, &args);
    sync_ok(&mount);
    for (i, d) in data.iter().enumerate() {
        assert!(fs::read(server.root().join(format!("f{i}.bin"))).unwrap() == *d, "f{i}.bin: {}", mount.log());
    }
    assert_eq!(tree_listing(server.root()), ["f0.bin", "f1.bin", "f2.bin", "f3.bin", "f4.bin"], "nothing stray");
    assert!(mount.log().contains("resuming 5 upload"), "{}", mount.log());
    assert!(queue_files(cache.path(), false).is_empty());
}

#[test]
fn unmount_finishes_queued_uploads() {
    let certs = Certs::new();
    // 1.7 MB over 4 sessions at 100 kB/s: the queue takes seconds to drain.
    let server = tls_server(&certs, SLOW);
    let cache = TempDir::new("cache");
    let mount = write_back_mount(&server, &certs, &cache, &["--max-connections", "4"]);
    let data: Vec<Vec<u8>> = (0..50).map(|i| pseudo_random(10_000 + i * 1000, 100 + i as u64)).collect();
    for (i, d) in data.iter().enumerate() {
        fs::write(mount.path().join(format!("small {i}.txt")), d).unwrap();
    }
    assert!(status_json(mount.path())["queued_uploads"].as_u64().unwrap() > 0, "uploads still queued at unmount");
    let exit = mount.unmount();
    assert!(exit.success(), "the daemon ended with {exit}");
    for (i, d) in data.iter().enumerate() {
        let on_server = fs::read(server.root().join(format!("small {i}.txt")));
        assert!(on_server.is_ok_and(|s| s == *d), "small {i}.txt");
    }
    assert_eq!(tree_listing(server.root()).len(), 50, "nothing stray: {:?}", tree_listing(server.root()));
    assert!(queue_files(cache.path(), false).is_empty());
}

#[test]
fn an_upload_cut_by_a_dropped_connection_is_retried_and_completes() {
    let certs = Certs::new();
    let server = tls_server(&certs, SLOW);
    let cache = TempDir::new("cache");
    let mount = write_back_mount(&server, &certs, &cache, &[]);
    let data = pseudo_random(400_000, 17);
    fs::write(mount.path().join("cut.bin"), &data).unwrap();
    // The upload runs (100 kB/s, about 4 s) when every session dies.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(server.kill_sessions() > 0);
    sync_ok(&mount);
    assert!(fs::read(server.root().join("cut.bin")).unwrap() == data, "every byte: {}", mount.log());
    assert_eq!(tree_listing(server.root()), ["cut.bin"], "no temporary left");
    assert!(mount.log().contains("trying again"), "the log tells of the retry: {}", mount.log());
}
