//! Reading through a real FUSE mount of real FTP servers: listings, attributes, contents,
//! the session bound, TLS modes and versions, certificate checks, failures that must leave no
//! mount. Every test starts its own servers (free ports, temporary directories).
//!
//! The contract tested (see docs/CONFIGURATION.md): `ftpmount mount SOURCE MNT [options]`
//! stays in the foreground, exits non-zero with a message on stderr (and no mount) when it
//! cannot mount, and exits 0 after `fusermount3 -u MNT`.

mod fixture;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use fixture::tree::{HARD_NAMES, ODD_NAMES, content_for, mtime_secs, now_secs, wide_tree, write_file};
use fixture::*;

const MIB: usize = 1 << 20;
const DAY: i64 = 86_400;

/// `find . -mindepth 1` in `dir`, as sorted relative paths.
fn find(dir: &Path) -> Vec<String> {
    let out = run(Command::new("find").args([".", "-mindepth", "1"]).current_dir(dir), Duration::from_secs(120));
    assert!(out.status.success(), "find failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut v: Vec<String> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| l.strip_prefix("./").unwrap_or(l).to_string()).collect();
    v.sort();
    v
}

/// Asserts that the mount shows exactly the server's tree: the same paths (`find`), the same
/// kinds, and for files the same size and modification time to the second.
fn assert_same_tree(server_root: &Path, mnt: &Path) {
    let want = relative_paths(server_root);
    let got = find(mnt);
    if got != want {
        let missing: Vec<_> = want.iter().filter(|p| !got.contains(p)).take(20).collect();
        let extra: Vec<_> = got.iter().filter(|p| !want.contains(p)).take(20).collect();
        panic!("find through the mount differs from the server's tree: missing {missing:?}, extra {extra:?}");
    }
    for rel in &want {
        let s = fs::symlink_metadata(server_root.join(rel)).unwrap();
        let m = fs::symlink_metadata(mnt.join(rel)).unwrap_or_else(|e| panic!("stat {rel} through the mount: {e}"));
        assert_eq!(m.is_dir(), s.is_dir(), "{rel}: kind");
        if s.is_file() {
            assert_eq!((m.len(), m.mtime()), (s.len(), s.mtime()), "{rel}: (size, mtime)");
        }
    }
}

/// Distinct modification times with non-zero seconds: even `i` more than a year ago (LIST shows
/// only the day), odd `i` within the last days (LIST shows minutes). Only exact seconds
/// (MDTM or MLSD) get these right.
fn mtime_for(i: usize, now: i64) -> i64 {
    let i = i as i64;
    if i % 2 == 0 { now - 400 * DAY - i * 3_607 - 13 } else { now - 2 * DAY - i * 61 - 7 }
}

#[test]
fn ls_lr_and_find_of_10000_files_match_the_server() {
    let root = temp_dir("tree10k");
    let spec = wide_tree(100, 100, 2_000, 10);
    make_tree(root.path(), &spec);
    let now = now_secs();
    let mut files = Vec::new();
    for (i, e) in spec.iter().enumerate() {
        if let Entry::File(rel, len) = e {
            fixture::set_mtime(&root.path().join(rel), mtime_for(i, now));
            files.push((rel.clone(), *len));
        }
    }
    assert_eq!(files.len(), 10_000);
    let server = Vsftpd::start(VsftpdOpts::explicit().root(root));
    let started = Instant::now();
    let mount = Mount::of(&server, &[]);

    // find: exactly the server's paths.
    let got = find(mount.path());
    let want = relative_paths(server.root());
    assert_eq!(got.len(), 10_100);
    assert!(got == want, "find through the mount differs from the server's tree");
    let after_find = started.elapsed();

    // ls -lR: every file and directory, with odd names intact.
    let ls = run_ok(Command::new("ls").arg("-lR").arg(mount.path()));
    assert_eq!(ls.lines().filter(|l| l.starts_with('-')).count(), 10_000, "regular files in ls -lR");
    assert_eq!(ls.lines().filter(|l| l.starts_with('d')).count(), 100, "directories in ls -lR");
    for name in ODD_NAMES {
        assert!(ls.contains(name), "{name} missing from ls -lR");
    }

    // stat -c '%s %Y' of a sample equals the server's size and mtime to the second.
    let mut rng = XorShift::new(99);
    let sample: Vec<&(String, usize)> = (0..300).map(|_| &files[rng.below(files.len() as u64) as usize]).collect();
    let mut stat = Command::new("stat");
    stat.args(["-c", "%s %Y"]);
    for (rel, _) in &sample {
        stat.arg(mount.path().join(rel));
    }
    let out = run_ok(&mut stat);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), sample.len());
    for ((rel, len), line) in sample.iter().zip(lines) {
        let want = format!("{len} {}", mtime_secs(&server.root().join(rel)));
        assert_eq!(line, want, "stat of {rel}: (size mtime) through the mount vs the server");
    }
    // And every file, in-process.
    assert_same_tree(server.root(), mount.path());
    eprintln!("10,000 files: find after {after_find:?}, everything after {:?}", started.elapsed());
}

/// Puts files of 0 B, 1 B and 20 MiB on `server`, mounts it, compares them with `cmp`,
/// unmounts (the daemon must exit 0) and returns the mount's log.
fn files_compare_equal(server: &dyn FtpServer, extra: &[&str]) -> String {
    let sizes = [("empty", 0), ("one-byte", 1), ("twenty-mib.bin", 20 * MIB)];
    for (name, len) in sizes {
        write_file(server.root(), name, len);
    }
    server.fix_owner();
    let mount = Mount::of(server, extra);
    for (name, len) in sizes {
        let through = mount.join(name);
        assert_eq!(fs::metadata(&through).unwrap().len(), len as u64, "{name}: size");
        let (status, out) = run_status(Command::new("cmp").arg(server.root().join(name)).arg(&through));
        assert!(status.success(), "{name} differs through the mount: {out}\n--- mount log:\n{}", mount.log());
    }
    let log = mount.log();
    let status = mount.unmount();
    assert!(status.success(), "ftpmount exits 0 after fusermount3 -u, not {status}\n{log}");
    log
}

#[test]
fn cmp_on_vsftpd_plain() {
    let server = Vsftpd::start(VsftpdOpts::plain());
    let log = files_compare_equal(&server, &[]);
    assert!(log.contains("unencrypted"), "--tls off is warned about: {log}");
}

#[test]
fn cmp_on_vsftpd_explicit_tls_1_2() {
    let server = Vsftpd::start(VsftpdOpts::explicit());
    let log = files_compare_equal(&server, &["--tls-max-version", "1.2"]);
    assert_eq!(server.tls_versions_seen(), ["TLSv1.2"], "every connection used TLS 1.2");
    assert!(log.contains("(TLS 1.2,"), "the mount line names the TLS version: {log}");
    assert_eq!(server.log_count("session reuse required"), 0);
}

#[test]
fn cmp_on_vsftpd_explicit_tls_1_3() {
    let server = Vsftpd::start(VsftpdOpts::explicit());
    let log = files_compare_equal(&server, &["--tls-max-version", "1.3"]);
    assert_eq!(server.tls_versions_seen(), ["TLSv1.3"], "every connection used TLS 1.3");
    assert!(log.contains("(TLS 1.3,"), "the mount line names the TLS version: {log}");
    assert_eq!(server.log_count("session reuse required"), 0);
}

#[test]
fn cmp_on_vsftpd_implicit_tls() {
    let server = Vsftpd::start(VsftpdOpts::implicit());
    let log = files_compare_equal(&server, &[]);
    assert!(server.log_count("SSL version: TLSv1.") > 0);
    assert!(log.contains("(TLS 1."), "the mount line names the TLS version: {log}");
}

#[test]
fn cmp_on_pyftpdlib_with_mlsd() {
    let server = PyFtpd::start(PyFtpdOpts::plain());
    files_compare_equal(&server, &[]);
    assert!(server.log().contains("<- MLSD"), "listings use MLSD where the server offers it");
}

#[test]
fn cmp_on_pyftpdlib_with_tls() {
    let server = PyFtpd::start(PyFtpdOpts::explicit());
    files_compare_equal(&server, &[]);
    assert!(server.log().contains("<- AUTH TLS"));
}

#[test]
fn two_hundred_random_reads_of_a_20_mib_file_are_byte_exact() {
    let server = Vsftpd::start(VsftpdOpts::explicit());
    let len = 20 * MIB;
    write_file(server.root(), "random.bin", len);
    server.fix_owner();
    let want = content_for("random.bin", len);
    let mount = Mount::of(&server, &[]);
    let file = fs::File::open(mount.join("random.bin")).unwrap();
    let mut rng = XorShift::new(0x5EED);
    for i in 0..200 {
        let n = rng.range(1, 64 * 1024) as usize;
        // A few reads right at the end, the rest anywhere.
        let off = if i % 25 == 0 { len - rng.range(1, n as u64) as usize } else { rng.below(len as u64) as usize };
        let mut buf = vec![0u8; n];
        let mut got = 0;
        while got < n {
            let r = file.read_at(&mut buf[got..], (off + got) as u64).unwrap_or_else(|e| panic!("read {i}: {e}"));
            if r == 0 {
                break;
            }
            got += r;
        }
        let end = (off + n).min(len);
        assert_eq!(got, end - off, "read {i} at {off} of {n} bytes: length");
        assert!(buf[..got] == want[off..end], "read {i} at {off} of {n} bytes: content differs");
    }
}

/// 300 small files read one after another over explicit TLS, with vsftpd demanding TLS
/// session reuse on every data connection.
fn three_hundred_small_files(max_version: &str, expect: &str) {
    let server = Vsftpd::start(VsftpdOpts::explicit());
    let mut rng = XorShift::new(300);
    let files: Vec<(String, usize)> =
        (0..300).map(|i| (format!("small/s{i:03}.txt"), rng.range(1, 4096) as usize)).collect();
    for (rel, len) in &files {
        write_file(server.root(), rel, *len);
    }
    server.fix_owner();
    let mount = Mount::of(&server, &["--tls-max-version", max_version]);
    for (rel, len) in &files {
        let got = fs::read(mount.join(rel)).unwrap_or_else(|e| {
            panic!("{rel}: {e}\n--- mount log:\n{}\n--- server log:\n{}", mount.log(), proc::tail(&server.log(), 3000))
        });
        assert!(got == content_for(rel, *len), "{rel}: content differs");
    }
    assert_eq!(server.log_count("session reuse required"), 0, "every data connection resumed the TLS session");
    assert!(server.log_count("OK DOWNLOAD") >= 300, "one download per file");
    assert_eq!(server.tls_versions_seen(), [expect]);
}

#[test]
fn three_hundred_small_files_over_tls_1_2_with_session_reuse() {
    three_hundred_small_files("1.2", "TLSv1.2");
}

#[test]
fn three_hundred_small_files_over_tls_1_3_with_session_reuse() {
    three_hundred_small_files("1.3", "TLSv1.3");
}

#[test]
fn eight_parallel_readers_share_at_most_two_sessions() {
    let server = Vsftpd::start(VsftpdOpts::explicit());
    let names: Vec<String> = (0..8).map(|i| format!("parallel-{i}.bin")).collect();
    for n in &names {
        write_file(server.root(), n, 5 * MIB);
    }
    server.fix_owner();
    let sampler = SessionCounter::new(server.port()).sample();
    let mount = Mount::of(&server, &["--max-connections", "2"]);
    std::thread::scope(|s| {
        for n in &names {
            let path = mount.join(n);
            s.spawn(move || {
                let got = fs::read(&path).unwrap_or_else(|e| panic!("{n}: {e}"));
                assert!(got == content_for(n, 5 * MIB), "{n}: content differs");
            });
        }
    });
    let max = sampler.stop();
    assert!((1..=2).contains(&max), "at most 2 control sessions with --max-connections 2, saw {max}\n{}", mount.log());
}

#[test]
fn wrong_password_fails_clearly_and_leaves_no_mount() {
    let server = Vsftpd::start(VsftpdOpts::explicit());
    let wrong = "Wrong-Passw0rd-4711";
    let f = Mount::start(bin(), &server.source(), &["--ca-file", s(server.ca_file())], &[("FTPMOUNT_PASSWORD", wrong)])
        .err()
        .expect("a wrong password must not mount");
    assert!(!f.status.success() && !f.timed_out, "{f:?}");
    let err = f.stderr.to_lowercase();
    assert!(err.contains("login") || err.contains("password"), "stderr names the failed login: {f:?}");
    assert!(!f.stderr.contains(wrong) && !f.stdout.contains(wrong), "the password is never printed: {f:?}");
    assert!(!f.left_mounted && !is_mounted(&f.mountpoint), "no mount is left behind");
}

/// The self-signed checks, with a trust store of the public authorities plus `extra_trusted`.
fn self_signed_checks(extra_trusted: &[&Path]) {
    let server = Vsftpd::start(VsftpdOpts::explicit().cert(CertVariant::SelfSigned));
    write_file(server.root(), "hello.txt", 5);
    server.fix_owner();
    let fp = server.certs().self_signed.fingerprint_sha256();
    let store = TrustStore::system_bundle_plus(extra_trusted);
    let [file, dir] = store.env();
    let env = [("FTPMOUNT_PASSWORD", PASSWORD), file, dir];
    let source = server.source();

    let f = Mount::start(bin(), &source, &[], &env).err().expect("a self-signed certificate is refused by default");
    assert!(!f.status.success() && !f.left_mounted && !f.timed_out, "{f:?}");
    assert!(f.stderr.to_lowercase().contains(&fp.to_lowercase()), "stderr shows the SHA-256 fingerprint {fp}: {f:?}");
    assert!(f.stderr.contains("self-signed"), "stderr says what is wrong: {f:?}");

    let read_hello = |args: &[&str]| {
        let m = Mount::start(bin(), &source, args, &env).unwrap_or_else(|f| panic!("{args:?}: {f:?}"));
        assert_eq!(fs::read(m.join("hello.txt")).unwrap(), content_for("hello.txt", 5), "{args:?}");
        m.log()
    };
    let log = read_hello(&["--tls-allow-self-signed"]);
    assert!(log.contains("insecure"), "the opt-in is warned about: {log}");
    read_hello(&["--tls-fingerprint", &fp]);
    read_hello(&["--tls-fingerprint", &fp.replace(':', "").to_lowercase()]);

    let wrong_pin = ["ab"; 32].join(":");
    let f = Mount::start(bin(), &source, &["--tls-fingerprint", &wrong_pin], &env).err().expect("a wrong pin is refused");
    assert!(!f.left_mounted, "{f:?}");
    assert!(f.stderr.contains("fingerprint"), "{f:?}");
}

#[test]
fn self_signed_certificate_needs_an_explicit_opt_in() {
    self_signed_checks(&[]);
}

/// Debian's ssl-cert "snakeoil" certificate (self-signed, RSA, often `CN=localhost`) is in
/// `/etc/ssl/certs` on many machines: a trusted authority with the same name as the server's
/// self-signed certificate must not change the outcome.
#[test]
fn self_signed_certificate_with_a_trusted_namesake_authority() {
    let dir = temp_dir("snakeoil");
    let decoy = certs::snakeoil_like_ca(dir.path());
    self_signed_checks(&[&decoy]);
}

#[test]
fn host_name_mismatch_needs_an_explicit_opt_in() {
    let server = Vsftpd::start(VsftpdOpts::explicit().cert(CertVariant::WrongHost));
    let ca = ["--ca-file", s(server.ca_file())];
    let pw = [("FTPMOUNT_PASSWORD", PASSWORD)];
    let f = Mount::start(bin(), &server.source(), &ca, &pw).err().expect("a certificate for another host is refused");
    assert!(!f.left_mounted && !f.timed_out, "{f:?}");
    assert!(f.stderr.contains(certs::WRONG_HOST), "stderr names the certificate's host: {f:?}");
    assert!(f.stderr.contains("localhost"), "stderr names the host asked for: {f:?}");
    assert!(f.stderr.contains("--tls-allow-mismatched-host"), "stderr says what to do: {f:?}");
    let m = Mount::start(bin(), &server.source(), &[ca[0], ca[1], "--tls-allow-mismatched-host"], &pw)
        .unwrap_or_else(|f| panic!("{f:?}"));
    assert!(fs::metadata(m.path()).unwrap().is_dir());
}

#[test]
fn expired_and_not_yet_valid_certificates_are_refused() {
    for (variant, words) in
        [(CertVariant::Expired, &["expired"][..]), (CertVariant::NotYetValid, &["not valid before", "not yet valid"][..])]
    {
        let server = Vsftpd::start(VsftpdOpts::explicit().cert(variant));
        let f = Mount::try_of(&server, &[]).err().unwrap_or_else(|| panic!("{variant:?} must be refused"));
        assert!(!f.left_mounted && !f.timed_out, "{f:?}");
        let err = f.stderr.to_lowercase();
        assert!(words.iter().any(|w| err.contains(w)), "{variant:?}: stderr says why: {f:?}");
    }
}

#[test]
fn hidden_files_root_stat_and_statfs() {
    let server = Vsftpd::start(VsftpdOpts::explicit());
    make_tree(
        server.root(),
        &[Entry::file(".hidden", 3), Entry::file(".hidden-dir/inside.txt", 4), Entry::file("visible.txt", 5)],
    );
    server.fix_owner();
    let mount = Mount::of(&server, &["-v"]);
    let ls = run_ok(Command::new("ls").arg("-a").arg(mount.path()));
    for name in [".hidden", ".hidden-dir", "visible.txt"] {
        assert!(ls.lines().any(|l| l == name), "{name} missing from ls -a: {ls}");
    }
    let inner = run_ok(Command::new("ls").arg("-a").arg(mount.join(".hidden-dir")));
    assert!(inner.lines().any(|l| l == "inside.txt"), "{inner}");
    assert_eq!(fs::read(mount.join(".hidden")).unwrap(), content_for(".hidden", 3));

    assert_eq!(run_ok(Command::new("stat").args(["-c", "%F"]).arg(mount.path())).trim(), "directory");
    assert!(fs::metadata(mount.path()).unwrap().is_dir());
    let df = run_ok(Command::new("df").arg("-P").arg(mount.path()));
    assert!(df.contains(s(mount.path())), "{df}");
    run_ok(Command::new("stat").arg("-f").arg(mount.path()));
    let source = run_ok(Command::new("findmnt").args(["-n", "-o", "SOURCE"]).arg(mount.path()));
    assert_eq!(source.trim(), "ftpmount:localhost", "the mount's source names the server");

    assert!(!mount.log().contains(PASSWORD), "the password is never logged, even with -v");
    let log = mount.log();
    let status = mount.unmount();
    assert!(status.success(), "ftpmount exits 0 after fusermount3 -u, not {status}\n{log}");
}

#[test]
fn read_only_mount_refuses_writes() {
    let server = Vsftpd::start(VsftpdOpts::plain());
    write_file(server.root(), "a.txt", 10);
    server.fix_owner();
    let mount = Mount::of(&server, &["--read-only"]);
    let err = fs::write(mount.join("new.txt"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    assert_eq!(fs::read(mount.join("a.txt")).unwrap(), content_for("a.txt", 10));
    assert!(!server.root().join("new.txt").exists());
}

#[test]
fn ftp_url_uses_tls_when_offered_and_plain_ftp_otherwise() {
    // vsftpd with TLS refuses logins without it, so a mount that works used TLS.
    let tls = Vsftpd::start(VsftpdOpts::explicit());
    write_file(tls.root(), "t.txt", 7);
    tls.fix_owner();
    let pw = [("FTPMOUNT_PASSWORD", PASSWORD)];
    let m = Mount::start(bin(), &tls.url("ftp"), &["--ca-file", s(tls.ca_file())], &pw).unwrap_or_else(|f| panic!("{f:?}"));
    assert_eq!(fs::read(m.join("t.txt")).unwrap(), content_for("t.txt", 7));
    assert!(tls.log_count("SSL version: TLSv1.") > 0);

    let plain = Vsftpd::start(VsftpdOpts::plain());
    write_file(plain.root(), "p.txt", 7);
    plain.fix_owner();
    let m = Mount::start(bin(), &plain.url("ftp"), &[], &pw).unwrap_or_else(|f| panic!("{f:?}"));
    assert_eq!(fs::read(m.join("p.txt")).unwrap(), content_for("p.txt", 7));
}

#[test]
fn tls_off_against_a_tls_only_server_fails_without_a_mount() {
    let server = Vsftpd::start(VsftpdOpts::explicit());
    let f = Mount::start(bin(), &server.url("ftp"), &["--tls", "off"], &[("FTPMOUNT_PASSWORD", PASSWORD)])
        .err()
        .expect("the server refuses plain logins");
    assert!(!f.left_mounted && !f.timed_out, "{f:?}");
    assert!(f.stderr.contains("--tls explicit"), "stderr says TLS is needed: {f:?}");
}

#[test]
fn sigterm_unmounts_and_exits_0() {
    let server = Vsftpd::start(VsftpdOpts::plain());
    let mut mount = Mount::of(&server, &[]);
    mount.signal(libc::SIGTERM);
    let status = mount.wait_exit(Duration::from_secs(15)).expect("ftpmount exits after SIGTERM");
    assert!(status.success(), "{status}\n{}", mount.log());
    assert!(!mount.is_mounted(), "SIGTERM unmounts");
}

/// Odd and hard names, old and recent times, on both servers: vsftpd (LIST + MDTM) and
/// pyftpdlib (MLSD).
fn odd_names_and_exact_times(server: &dyn FtpServer) {
    let now = now_secs();
    let mut i = 0;
    let mut files: BTreeMap<String, usize> = BTreeMap::new();
    for dir in ["", "sub dir/", "Ünïcödé 目录/"] {
        for name in ODD_NAMES.iter().chain(HARD_NAMES) {
            let rel = format!("{dir}{name}");
            let p = write_file(server.root(), &rel, i * 7);
            fixture::set_mtime(&p, mtime_for(i, now));
            files.insert(rel, i * 7);
            i += 1;
        }
    }
    server.fix_owner();
    let mount = Mount::of(server, &[]);
    assert_same_tree(server.root(), mount.path());
    for (rel, len) in &files {
        assert!(fs::read(mount.join(rel)).unwrap() == content_for(rel, *len), "{rel:?}: content");
    }
}

#[test]
fn odd_names_and_exact_times_on_vsftpd() {
    odd_names_and_exact_times(&Vsftpd::start(VsftpdOpts::explicit()));
}

#[test]
fn odd_names_and_exact_times_on_pyftpdlib() {
    odd_names_and_exact_times(&PyFtpd::start(PyFtpdOpts::plain()));
}

#[test]
fn a_server_session_cap_lowers_the_limit_and_all_reads_complete() {
    // vsftpd answers "421 There are too many connections from your internet address" beyond 2.
    let server = Vsftpd::start(VsftpdOpts::plain().max_per_ip(2));
    let names: Vec<String> = (0..6).map(|i| format!("c{i}.bin")).collect();
    for n in &names {
        write_file(server.root(), n, 2 * MIB);
    }
    server.fix_owner();
    let mount = Mount::of(&server, &["--max-connections", "8"]);
    std::thread::scope(|s| {
        for n in &names {
            let path = mount.join(n);
            s.spawn(move || assert!(fs::read(&path).unwrap() == content_for(n, 2 * MIB), "{n} differs"));
        }
    });
    assert!(mount.log().contains("lowering the session limit to"), "{}", mount.log());
    // Refused connections are accepted by the kernel before vsftpd says 421, so the session
    // counter cannot tell them from sessions; the server log can. No retry storm:
    let refused = server.log_count("421 There are too many connections");
    eprintln!("refused connections: {refused}");
    assert!(refused <= 20, "{refused} connections refused with 421:\n{}", mount.log());
}

#[test]
fn a_connection_label_from_the_profile_file_mounts() {
    let server = Vsftpd::start(VsftpdOpts::explicit());
    write_file(server.root(), "labelled.txt", 13);
    server.fix_owner();
    let cfg = temp_dir("config");
    let password_file = cfg.path().join("password");
    fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let profile = cfg.path().join("config.toml");
    fs::write(
        &profile,
        format!(
            "[connections.demo]\nurl = \"{}\"\nca_file = \"{}\"\npassword_file = \"{}\"\nmax_connections = 3\n",
            server.source(),
            server.ca_file().display(),
            password_file.display()
        ),
    )
    .unwrap();
    let mount = Mount::start(bin(), "demo", &["--config", s(&profile)], &[]).unwrap_or_else(|f| panic!("{f:?}"));
    assert_eq!(fs::read(mount.join("labelled.txt")).unwrap(), content_for("labelled.txt", 13));
    assert!(mount.log().contains("up to 3 sessions"), "{}", mount.log());
    assert!(mount.log().contains("can be read by other users"), "world-readable password file warned: {}", mount.log());
}
