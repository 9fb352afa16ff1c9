//! Close-to-open consistency through a real mount (issue 13, defect 3): a file changed on the
//! server is read whole, with its new size and time, by the next `open`, although listings
//! and attributes are cached for much longer.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

fn cp_out(from: &Path, to: &Path) {
    run_ok(Command::new("cp").arg(from).arg(to));
}

fn stat_size_mtime(p: &Path) -> (u64, i64) {
    let out = run_ok(Command::new("stat").args(["-c", "%s %Y"]).arg(p));
    let mut f = out.split_whitespace().map(|x| x.parse::<i64>().unwrap());
    (f.next().unwrap() as u64, f.next().unwrap())
}

#[test]
fn a_file_that_grew_or_changed_on_the_server_is_copied_whole_after_a_second() {
    let certs = Certs::new();
    let server = tls_vsftpd(&certs, TempDir::new("c2o"), "");
    let on_server = server.root().join("report.txt");
    fs::write(&on_server, pseudo_random(3893, 1)).unwrap();
    set_mtime(&on_server, 1_700_000_000);
    let mount = Mount::of(&server, Some(&certs), &["--dir-timeout", "30s", "--attr-timeout", "10s"]);
    let out = TempDir::new("c2o-out");
    let copy = out.path().join("copy");
    let f = mount.path().join("report.txt");
    cp_out(&f, &copy);
    assert_eq!(fs::read(&copy).unwrap(), pseudo_random(3893, 1));

    fs::write(&on_server, pseudo_random(8893, 2)).unwrap();
    set_mtime(&on_server, 1_700_000_100);
    std::thread::sleep(Duration::from_millis(1100));
    cp_out(&f, &copy);
    assert_eq!(fs::read(&copy).unwrap(), fs::read(&on_server).unwrap(), "exactly the server's bytes");
    assert_eq!(stat_size_mtime(&f), (8893, 1_700_000_100), "stat shows the new size and time");

    // A same-size edit with a new time.
    fs::write(&on_server, pseudo_random(8893, 3)).unwrap();
    set_mtime(&on_server, 1_700_000_200);
    std::thread::sleep(Duration::from_millis(1100));
    cp_out(&f, &copy);
    assert_eq!(fs::read(&copy).unwrap(), pseudo_random(8893, 3));
    assert_eq!(stat_size_mtime(&f), (8893, 1_700_000_200));
    mount.unmount();
}

#[test]
fn a_grown_file_is_read_whole_while_the_kernel_still_had_the_old_size() {
    let server = Vsftpd::start(TempDir::new("c2o-attr"), VsftpdOptions::default());
    let on_server = server.root().join("log.txt");
    fs::write(&on_server, pseudo_random(3893, 4)).unwrap();
    let mount = Mount::of(&server, None, &["--dir-timeout", "600s", "--attr-timeout", "600s"]);
    let f = mount.path().join("log.txt");
    assert_eq!(fs::metadata(&f).unwrap().size(), 3893, "the kernel caches 3,893 bytes for 10 minutes");
    assert_eq!(fs::read(&f).unwrap().len(), 3893);
    fs::write(&on_server, pseudo_random(8893, 5)).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(fs::read(&f).unwrap(), pseudo_random(8893, 5), "read whole, not cut at the old size");
    assert_eq!(fs::metadata(&f).unwrap().size(), 8893);
    // And a file that shrank: its new end, not the old size padded or an error.
    fs::write(&on_server, pseudo_random(1000, 6)).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(fs::read(&f).unwrap(), pseudo_random(1000, 6));
    assert_eq!(fs::metadata(&f).unwrap().size(), 1000);
    mount.unmount();
}

#[test]
fn on_a_server_with_mlst_open_revalidates_too() {
    let server = PyFtpd::start(TempDir::new("c2o-mlst"), None, &[]);
    let on_server = server.root().join("data.bin");
    fs::write(&on_server, pseudo_random(3893, 7)).unwrap();
    let mount = Mount::of(&server, None, &["--dir-timeout", "600s", "--attr-timeout", "600s", "-v"]);
    let f = mount.path().join("data.bin");
    assert_eq!(fs::read(&f).unwrap().len(), 3893);
    fs::write(&on_server, pseudo_random(8893, 8)).unwrap();
    set_mtime(&on_server, 1_700_000_300);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(fs::read(&f).unwrap(), pseudo_random(8893, 8));
    assert_eq!(stat_size_mtime(&f), (8893, 1_700_000_300));
    mount.unmount();
}

#[test]
fn a_file_that_grows_between_open_and_the_first_read_is_read_to_its_new_end() {
    let server = Vsftpd::start(TempDir::new("c2o-open"), VsftpdOptions::default());
    let on_server = server.root().join("growing.log");
    fs::write(&on_server, pseudo_random(3893, 9)).unwrap();
    let mount = Mount::of(&server, None, &["--attr-timeout", "600s"]);
    let f = mount.path().join("growing.log");
    let mut file = fs::File::open(&f).unwrap();
    // The download starts at the first read, after the file grew.
    fs::write(&on_server, pseudo_random(8893, 10)).unwrap();
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut got).unwrap();
    assert!(got == pseudo_random(8893, 10), "{} bytes: not the transfer's 8893", got.len());
    assert_eq!(fs::metadata(&f).unwrap().size(), 8893);
    drop(file);
    mount.unmount();
}

#[test]
fn a_file_that_shrinks_between_open_and_the_first_read_ends_where_the_server_says() {
    let server = Vsftpd::start(TempDir::new("c2o-shrink"), VsftpdOptions::default());
    let on_server = server.root().join("shrinking.log");
    fs::write(&on_server, pseudo_random(8893, 11)).unwrap();
    let mount = Mount::of(&server, None, &["--attr-timeout", "600s"]);
    let f = mount.path().join("shrinking.log");
    let mut file = fs::File::open(&f).unwrap();
    fs::write(&on_server, pseudo_random(1000, 12)).unwrap();
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut got).unwrap();
    assert!(
        got == pseudo_random(1000, 12),
        "{} bytes, not the server's 1000 (zeros: {})",
        got.len(),
        got.iter().filter(|&&b| b == 0).count()
    );
    assert_eq!(fs::metadata(&f).unwrap().size(), 1000);
    drop(file);
    mount.unmount();
}
