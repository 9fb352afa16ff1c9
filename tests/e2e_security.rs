//! Hostile input and secrets, through a real mount: names that would smuggle FTP commands,
//! a server that points data connections at another host, a server without TLS when TLS was
//! asked for, and the password, which must never show in logs, status or process arguments.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;

fn tls_server(certs: &Certs, extra: &str) -> Vsftpd {
    tls_vsftpd(certs, TempDir::new("root"), extra)
}

/// The mount options the kernel shows for `mountpoint` (`/proc/self/mountinfo`).
fn mount_options(mountpoint: &std::path::Path) -> String {
    let want = mountpoint.to_str().unwrap();
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info.lines().find(|l| l.split(' ').nth(4) == Some(want)).expect("mounted");
    // Per-mount options (field 6) and, after " - ", the filesystem's own.
    line.to_string()
}

#[test]
fn names_with_line_breaks_never_become_ftp_commands() {
    let certs = Certs::new();
    let server = tls_server(&certs, "log_ftp_protocol=YES\n");
    fs::write(server.root().join("victim"), b"keep me").unwrap();
    let mount = Mount::of(&server, Some(&certs), &[]);
    let m = mount.path();
    for name in ["a\r\nDELE victim", "b\nDELE victim", "c\rDELE victim"] {
        let einval = |r: std::io::Result<()>, what: &str| {
            let err = r.expect_err(what);
            assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{what}: {err}");
        };
        einval(fs::File::create(m.join(name)).map(drop), "create");
        einval(fs::create_dir(m.join(name)), "mkdir");
        einval(fs::rename(m.join("victim"), m.join(name)), "rename");
    }
    assert_eq!(fs::read(server.root().join("victim")).unwrap(), b"keep me");
    let log = server.log();
    assert!(log.contains("FTP command"), "the server logs commands: {log}");
    let changes_victim = |l: &&str| {
        l.contains("FTP command")
            && l.contains("victim")
            && ["DELE", "RNFR", "RNTO", "STOR"].iter().any(|c| l.contains(c))
    };
    let smuggled: Vec<&str> = log.lines().filter(changes_victim).collect();
    assert!(smuggled.is_empty(), "nothing touching the victim reached the server: {smuggled:?}");
    let created: Vec<&str> = log.lines().filter(|l| l.contains("FTP command") && l.contains("MKD")).collect();
    assert!(created.is_empty(), "no directory was made: {created:?}");
}

#[test]
fn the_password_never_shows_in_logs_status_or_process_arguments() {
    let certs = Certs::new();
    let server = tls_server(&certs, "");
    let ca = certs.ca();
    // Everything the daemon can log, at its most verbose.
    let env = [("FTPMOUNT_PASSWORD", PASSWORD), ("RUST_LOG", "trace")];
    let mount = Mount::start_with_env(&server.url(), &["--ca-file", ca.to_str().unwrap(), "-vv"], &env)
        .unwrap_or_else(|f| panic!("mount failed: {f:?}"));
    let m = mount.path();
    fs::write(m.join("f.txt"), b"data").unwrap();
    assert_eq!(fs::read(m.join("f.txt")).unwrap(), b"data");
    fs::rename(m.join("f.txt"), m.join("g.txt")).unwrap();
    fs::remove_file(m.join("g.txt")).unwrap();
    assert!(fs::read(m.join("missing")).is_err());

    let status = Command::new(bin()).arg("status").arg(m).arg("--json").output().unwrap();
    let status_text = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.status.success(), "{status_text}");
    let pid = serde_json::from_str::<serde_json::Value>(&status_text).unwrap()[0]["pid"].as_u64().unwrap();
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let check = Command::new(bin())
        .args(["check", &server.url(), "--ca-file", ca.to_str().unwrap(), "--json", "-vv"])
        .env("FTPMOUNT_PASSWORD", PASSWORD)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let log = mount.log();
    assert!(log.contains("DEBUG") && log.contains("TRACE"), "a verbose log was written: {log}");
    for (what, text) in [
        ("the mount's log", log.as_str()),
        ("status", status_text.as_str()),
        ("the daemon's arguments", &String::from_utf8_lossy(&cmdline)),
        ("check's output", &String::from_utf8_lossy(&check.stdout)),
        ("check's log", &String::from_utf8_lossy(&check.stderr)),
    ] {
        assert!(!text.contains(PASSWORD), "the password appears in {what}");
    }
}

#[test]
fn a_password_file_others_can_read_draws_a_warning() {
    let certs = Certs::new();
    let server = tls_server(&certs, "");
    let dir = TempDir::new("secrets");
    let file = dir.path().join("password");
    fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let ca = certs.ca();
    for (mode, warned) in [(0o644, true), (0o600, false)] {
        fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
        let args = ["--ca-file", ca.to_str().unwrap(), "--password-file", file.to_str().unwrap()];
        let mount = Mount::start_with_env(&server.url(), &args, &[]).unwrap_or_else(|f| panic!("{f:?}"));
        let log = mount.log();
        assert_eq!(log.contains("can be read by other users"), warned, "mode {mode:o}: {log}");
        assert!(!log.contains(PASSWORD));
    }
}

#[test]
fn the_kernel_checks_permissions_and_only_the_owner_sees_the_mount_unless_asked() {
    let certs = Certs::new();
    let server = tls_server(&certs, "");
    let private = Mount::of(&server, Some(&certs), &[]);
    let options = mount_options(private.path());
    assert!(options.contains("default_permissions"), "{options}");
    assert!(!options.contains("allow_other"), "{options}");
    let shared = Mount::of(&server, Some(&certs), &["--allow-other"]);
    assert!(mount_options(shared.path()).contains("allow_other"));
}

#[test]
fn data_connections_to_another_host_are_refused() {
    // The server announces a public address that is not the one we connected to: connecting
    // there would be an FTP bounce (the server used to reach a third host).
    let server = PyFtpd::start(TempDir::new("root"), None, &["--masquerade", "198.51.100.9", "--no-epsv"]);
    let failure = Mount::start(&server.url(), &["--tls", "off"]).err().expect("must not mount");
    assert!(failure.stderr.contains("bounce"), "{}", failure.stderr);
    assert!(failure.stderr.contains("198.51.100.9"), "{}", failure.stderr);
    assert!(!failure.left_mounted);
}

#[test]
fn tls_asked_for_is_never_given_up_for_plain_ftp() {
    // A server without TLS: with ftps:// (explicit) the login must not happen in clear text.
    let server = Vsftpd::start(
        TempDir::new("root"),
        VsftpdOptions { tls: Tls::Off, extra: "log_ftp_protocol=YES\n", ..Default::default() },
    );
    let url = server.url().replacen("ftp://", "ftps://", 1);
    let failure = Mount::start(&url, &[]).err().expect("must not mount without TLS");
    assert!(failure.stderr.contains("AUTH TLS"), "says which step failed: {}", failure.stderr);
    assert!(!failure.left_mounted);
    let log = server.log();
    assert!(log.contains("AUTH TLS"), "{log}");
    let login = log.lines().filter(|l| l.contains("FTP command") && (l.contains("USER") || l.contains("PASS")));
    assert_eq!(login.count(), 0, "no login in clear text: {log}");
}

#[test]
fn a_listing_that_never_ends_is_cut_off_and_the_mount_goes_on() {
    let root = TempDir::new("root");
    fs::create_dir(root.path().join("flood")).unwrap();
    fs::write(root.path().join("calm.txt"), b"fine").unwrap();
    let server = PyFtpd::start(root, None, &["--endless-listing", "flood"]);
    let mount = Mount::start(&server.url(), &["--tls", "off"]).unwrap_or_else(|f| panic!("{f:?}"));
    let err = fs::read_dir(mount.path().join("flood")).and_then(|d| d.collect::<Result<Vec<_>, _>>()).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(mount.log().contains("longer than"), "the log says why: {}", mount.log());
    // The daemon held at most the bound, and serves on.
    assert_eq!(fs::read(mount.path().join("calm.txt")).unwrap(), b"fine");
}

#[test]
fn a_reply_that_never_ends_is_cut_off_and_the_mount_goes_on() {
    let root = TempDir::new("root");
    fs::write(root.path().join("calm.txt"), b"fine").unwrap();
    let server = PyFtpd::start(root, None, &["--endless-size-reply"]);
    let mount = Mount::start(&server.url(), &["--tls", "off"]).unwrap_or_else(|f| panic!("{f:?}"));
    // Every upload is checked with SIZE, which this server answers without end.
    let mut f = fs::File::create(mount.path().join("new.txt")).unwrap();
    std::io::Write::write_all(&mut f, b"data").unwrap();
    let err = f.sync_all().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(mount.log().contains("larger than"), "the log says why: {}", mount.log());
    // The daemon held at most the bound (256 KiB), and serves on.
    let status = fs::read_to_string(format!("/proc/{}/status", mount.pid())).unwrap();
    let peak_kib: u64 =
        status.lines().find(|l| l.starts_with("VmHWM:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(peak_kib < 200 << 10, "daemon peak memory {peak_kib} KiB");
    assert_eq!(fs::read(mount.path().join("calm.txt")).unwrap(), b"fine");
}
