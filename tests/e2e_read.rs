//! Reading through a real FUSE mount of real FTP servers: listings, attributes, contents,
//! session bounds, TLS modes and certificate checks.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

fn tls_server(certs: &Certs, root: TempDir, tls: Tls) -> Vsftpd {
    Vsftpd::start(root, VsftpdOptions { tls, cert: Some(certs.pair("server")), ..Default::default() })
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `find` output: relative path, size, whole-second mtime, type; sorted.
fn find_listing(dir: &Path) -> Vec<String> {
    let out = run("find", &[dir.to_str().unwrap(), "-mindepth", "1", "-printf", "%P|%s|%T@|%y\n"]);
    let mut lines: Vec<String> = out
        .lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split('|').collect();
            let secs = f[2].split('.').next().unwrap();
            f[2] = secs;
            // Directory sizes are not comparable between a disk and FTP.
            if f[3] == "d" { format!("{}|d", f[0]) } else { f.join("|") }
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn ls_lr_and_find_of_10000_files_match_the_server() {
    let certs = Certs::new();
    let root = TempDir::new("tree");
    let now = now_secs();
    for d in 0..100 {
        let dir = root.path().join(match d {
            7 => "dir with spaces".to_string(),
            8 => "Ünïcödé 文件夹".to_string(),
            _ => format!("d{d:03}"),
        });
        fs::create_dir(&dir).unwrap();
        for f in 0..100 {
            let name = match f {
                0 => "a file with spaces.txt".to_string(),
                1 => "Ünïcödé 文件.txt".to_string(),
                2 => ".hidden".to_string(),
                3 => "#hash %percent".to_string(),
                _ => format!("f{f:03}.dat"),
            };
            let path = dir.join(&name);
            fs::write(&path, pseudo_random((d * 7 + f) % 97, (d * 100 + f) as u64)).unwrap();
            // Old files (LIST shows only the day) and recent ones (LIST shows minutes).
            let mtime =
                if f % 2 == 0 { 1_500_000_000 + (d * 100 + f) as i64 * 3_601 } else { now - (d * 100 + f) as i64 * 7 };
            set_mtime(&path, mtime);
        }
    }
    let server = tls_server(&certs, root, Tls::Explicit);
    let mount = Mount::of(&server, Some(&certs), &[]);

    let out = Command::new("ls").arg("-lR").arg(mount.path()).output().unwrap();
    assert!(out.status.success(), "ls -lR failed: {}", String::from_utf8_lossy(&out.stderr));
    let ls = String::from_utf8(out.stdout).unwrap();
    assert!(ls.contains("Ünïcödé 文件.txt") && ls.contains("a file with spaces.txt"));

    let seen = find_listing(mount.path());
    let expected = find_listing(server.root());
    assert_eq!(seen.len(), 100 + 100 * 100);
    assert_eq!(seen, expected, "names, sizes and mtimes through the mount equal the server's files");

    let stat = run("stat", &["-c", "%s %Y", mount.path().join("d042/f017.dat").to_str().unwrap()]);
    let want = fs::metadata(server.root().join("d042/f017.dat")).unwrap();
    let want_mtime = want.modified().unwrap().duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(stat.trim(), format!("{} {}", want.len(), want_mtime));
}

/// Mounts, compares files of 0 B, 1 B and 20 MiB; returns the mount log.
fn files_compare_equal(server: &dyn Server, certs: Option<&Certs>, extra: &[&str]) -> String {
    let root = server.root();
    let big = pseudo_random(20 << 20, 1);
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("one"), b"x").unwrap();
    fs::write(root.join("twenty-mib.bin"), &big).unwrap();
    chown_to_user(root);
    let mount = Mount::of(server, certs, extra);
    for name in ["empty", "one", "twenty-mib.bin"] {
        let status = Command::new("cmp").arg(mount.path().join(name)).arg(root.join(name)).status().unwrap();
        assert!(status.success(), "{name} differs through the mount");
    }
    assert_eq!(fs::read(mount.path().join("twenty-mib.bin")).unwrap(), big);
    let log = mount.log();
    assert!(mount.unmount().success(), "clean exit after fusermount3 -u");
    log
}

#[test]
fn contents_equal_on_plain_vsftpd() {
    let server = Vsftpd::start(TempDir::new("root"), VsftpdOptions::default());
    let log = files_compare_equal(&server, None, &["--tls", "off"]);
    assert!(log.contains("unencrypted"), "{log}");
}

#[test]
fn contents_equal_on_explicit_tls_1_2() {
    let certs = Certs::new();
    let server = tls_server(&certs, TempDir::new("root"), Tls::Explicit);
    let log = files_compare_equal(&server, Some(&certs), &["--tls-max-version", "1.2"]);
    assert!(log.contains("(TLS 1.2,"), "{log}");
}

#[test]
fn contents_equal_on_explicit_tls_1_3() {
    let certs = Certs::new();
    let server = tls_server(&certs, TempDir::new("root"), Tls::Explicit);
    let log = files_compare_equal(&server, Some(&certs), &["--tls-max-version", "1.3"]);
    assert!(log.contains("(TLS 1.3,"), "{log}");
}

#[test]
fn contents_equal_on_implicit_tls() {
    let certs = Certs::new();
    let server = tls_server(&certs, TempDir::new("root"), Tls::Implicit);
    let log = files_compare_equal(&server, Some(&certs), &[]);
    assert!(log.contains("ftps://") && log.contains("(TLS 1."), "{log}");
}

#[test]
fn contents_equal_on_pyftpdlib_with_mlsd() {
    let server = PyFtpd::start(TempDir::new("root"), None, &[]);
    files_compare_equal(&server, None, &["--tls", "off"]);
}

#[test]
fn contents_equal_on_pyftpdlib_with_tls() {
    let certs = Certs::new();
    let server = PyFtpd::start(TempDir::new("root"), Some(certs.pair("server")), &[]);
    files_compare_equal(&server, Some(&certs), &[]);
}

#[test]
fn mlsd_server_shows_exact_times_and_odd_names() {
    let root = TempDir::new("root");
    for (i, name) in ["plain.txt", " leading space", "semi;colon=eq", "Ünïcödé 文件.txt", ".dot"].iter().enumerate()
    {
        let p = root.path().join(name);
        fs::write(&p, vec![b'a'; i * 3]).unwrap();
        set_mtime(&p, 1_600_000_000 + i as i64 * 61);
    }
    fs::create_dir(root.path().join("sub dir")).unwrap();
    let server = PyFtpd::start(root, None, &[]);
    let mount = Mount::of(&server, None, &["--tls", "off"]);
    assert_eq!(find_listing(mount.path()), find_listing(server.root()));
}

#[test]
fn two_hundred_random_reads_are_byte_exact() {
    let certs = Certs::new();
    let root = TempDir::new("root");
    let data = pseudo_random(20 << 20, 7);
    fs::write(root.path().join("big.bin"), &data).unwrap();
    let server = tls_server(&certs, root, Tls::Explicit);
    let mount = Mount::of(&server, Some(&certs), &[]);
    let file = fs::File::open(mount.path().join("big.bin")).unwrap();
    let mut rng = 12345u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for i in 0..200 {
        let len = 1 + (next() % (64 * 1024)) as usize;
        let off = (next() % data.len() as u64) as usize;
        let mut buf = vec![0u8; len];
        let n = file.read_at(&mut buf, off as u64).unwrap();
        let want = &data[off..(off + len).min(data.len())];
        assert_eq!(&buf[..n], want, "read {i} at {off}+{len}");
    }
}

fn many_small_reads(max_version: &str) {
    let certs = Certs::new();
    let root = TempDir::new("root");
    for i in 0..300 {
        fs::write(root.path().join(format!("small-{i:03}.txt")), format!("file number {i}\n")).unwrap();
    }
    let server = tls_server(&certs, root, Tls::Explicit);
    let mount = Mount::of(&server, Some(&certs), &["--tls-max-version", max_version]);
    assert!(mount.log().contains(&format!("(TLS {max_version},")), "{}", mount.log());
    for i in 0..300 {
        let got = fs::read_to_string(mount.path().join(format!("small-{i:03}.txt"))).unwrap();
        assert_eq!(got, format!("file number {i}\n"));
    }
    assert!(!server.log().contains("session reuse required"), "every data connection resumed TLS");
}

#[test]
fn three_hundred_small_reads_with_session_reuse_tls_1_2() {
    many_small_reads("1.2");
}

#[test]
fn three_hundred_small_reads_with_session_reuse_tls_1_3() {
    many_small_reads("1.3");
}

#[test]
fn parallel_readers_never_exceed_max_connections() {
    let certs = Certs::new();
    let root = TempDir::new("root");
    let files: Vec<Vec<u8>> = (0..8).map(|i| pseudo_random(5 << 20, 100 + i)).collect();
    for (i, data) in files.iter().enumerate() {
        fs::write(root.path().join(format!("p{i}.bin")), data).unwrap();
    }
    let server = tls_server(&certs, root, Tls::Explicit);
    let mount = Mount::of(&server, Some(&certs), &["--max-connections", "2"]);
    let mut counter = SessionCounter::start(server.port());
    std::thread::scope(|s| {
        for (i, data) in files.iter().enumerate() {
            let path = mount.path().join(format!("p{i}.bin"));
            s.spawn(move || assert!(fs::read(&path).unwrap() == *data, "p{i}.bin differs"));
        }
    });
    let peak = counter.peak();
    assert!((1..=2).contains(&peak), "peak control sessions {peak}, limit 2");
}

#[test]
fn wrong_password_fails_clearly_and_leaves_no_mount() {
    let certs = Certs::new();
    let server = tls_server(&certs, TempDir::new("root"), Tls::Explicit);
    let ca = certs.ca();
    let failure =
        Mount::start_with_env(&server.url(), &["--ca-file", ca.to_str().unwrap()], &[("FTPMOUNT_PASSWORD", "wrong")])
            .err()
            .expect("must not mount");
    assert!(!failure.status.success());
    assert!(failure.stderr.contains("password") && failure.stderr.contains("530"), "{}", failure.stderr);
    assert!(!failure.stderr.contains("wrong"), "the password is never printed: {}", failure.stderr);
    assert!(!failure.left_mounted, "a failed mount leaves no dead mount behind");
}

#[test]
fn self_signed_certificate_is_refused_unless_trusted_explicitly() {
    let certs = Certs::new();
    let server = Vsftpd::start(
        TempDir::new("root"),
        VsftpdOptions { tls: Tls::Explicit, cert: Some(certs.pair("self-signed")), ..Default::default() },
    );
    fs::write(server.root().join("hello.txt"), b"hello").unwrap();
    chown_to_user(server.root());
    let fingerprint = certs.fingerprint("self-signed");
    let refused = Mount::start(&server.url(), &[]).err().expect("self-signed must be refused");
    assert!(refused.stderr.contains("self-signed"), "{}", refused.stderr);
    assert!(refused.stderr.to_lowercase().contains(&fingerprint.to_lowercase()), "fingerprint in: {}", refused.stderr);

    let m = Mount::start(&server.url(), &["--tls-allow-self-signed"]).expect("accepted with the opt-in");
    assert_eq!(fs::read(m.path().join("hello.txt")).unwrap(), b"hello");
    assert!(m.log().contains("insecure"), "the opt-in is warned about");
    drop(m);
    let m = Mount::start(&server.url(), &["--tls-fingerprint", &fingerprint]).expect("accepted with the pin");
    assert_eq!(fs::read(m.path().join("hello.txt")).unwrap(), b"hello");
    drop(m);
    let wrong_pin = "00".repeat(32);
    let refused = Mount::start(&server.url(), &["--tls-fingerprint", &wrong_pin]).err().expect("wrong pin refused");
    assert!(refused.stderr.contains("fingerprint"), "{}", refused.stderr);
}

#[test]
fn host_mismatch_is_refused_unless_allowed() {
    let certs = Certs::new();
    let server = Vsftpd::start(
        TempDir::new("root"),
        VsftpdOptions { tls: Tls::Explicit, cert: Some(certs.pair("wrong-host")), ..Default::default() },
    );
    let ca = certs.ca();
    let ca = ca.to_str().unwrap();
    let refused = Mount::start(&server.url(), &["--ca-file", ca]).err().expect("mismatch refused");
    assert!(
        refused.stderr.contains("ftp.example.invalid") && refused.stderr.contains("localhost"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--tls-allow-mismatched-host"), "{}", refused.stderr);
    let m =
        Mount::start(&server.url(), &["--ca-file", ca, "--tls-allow-mismatched-host"]).expect("accepted when allowed");
    assert!(m.path().join(".").exists());
}

#[test]
fn hidden_files_root_attributes_and_statfs() {
    let certs = Certs::new();
    let root = TempDir::new("root");
    fs::write(root.path().join(".hidden"), b"h").unwrap();
    fs::create_dir(root.path().join(".hidden-dir")).unwrap();
    fs::write(root.path().join("visible"), b"v").unwrap();
    let server = tls_server(&certs, root, Tls::Explicit);
    let mount = Mount::of(&server, Some(&certs), &["--read-only"]);
    let ls = run("ls", &["-a", mount.path().to_str().unwrap()]);
    for name in [".hidden", ".hidden-dir", "visible"] {
        assert!(ls.lines().any(|l| l == name), "{name} missing from ls -a: {ls}");
    }
    let root_meta = fs::metadata(mount.path()).unwrap();
    assert!(root_meta.is_dir());
    let df = run("df", &["-P", mount.path().to_str().unwrap()]);
    assert!(df.contains("ftpmount:localhost"), "{df}");
    let findmnt = run("findmnt", &["-n", "-o", "SOURCE", mount.path().to_str().unwrap()]);
    assert_eq!(findmnt.trim(), "ftpmount:localhost");
    let err = fs::write(mount.path().join("new.txt"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc_erofs()), "read-only mount refuses writes: {err}");
}

fn libc_erofs() -> i32 {
    30
}

#[test]
fn sigterm_unmounts_cleanly() {
    let server = Vsftpd::start(TempDir::new("root"), VsftpdOptions::default());
    let mount = Mount::of(&server, None, &["--tls", "off"]);
    let out = run("pgrep", &["-f", &format!("ftpmount mount .* {}", mount.path().display())]);
    let pid = out.split_whitespace().next().unwrap().to_string();
    run("kill", &["-TERM", &pid]);
    let start = std::time::Instant::now();
    while fs::read_to_string("/proc/self/mountinfo").unwrap().contains(mount.path().to_str().unwrap()) {
        assert!(start.elapsed() < Duration::from_secs(10), "still mounted after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(mount.unmount().success(), "exit status 0 after SIGTERM");
}

#[test]
fn plain_login_on_a_tls_only_server_says_tls_is_required() {
    let certs = Certs::new();
    let server = tls_server(&certs, TempDir::new("root"), Tls::Explicit);
    let url = format!("ftp://{USER}@localhost:{}/", server.port());
    let failure = Mount::start(&url, &["--tls", "off"]).err().expect("must fail");
    assert!(failure.stderr.contains("--tls explicit"), "{}", failure.stderr);
}

#[test]
fn a_server_session_cap_lowers_the_limit_and_all_reads_complete() {
    // vsftpd answers "421 There are too many connections from your internet address" beyond 2.
    let root = TempDir::new("root");
    let files: Vec<Vec<u8>> = (0..6).map(|i| pseudo_random(2 << 20, 300 + i)).collect();
    for (i, data) in files.iter().enumerate() {
        fs::write(root.path().join(format!("c{i}.bin")), data).unwrap();
    }
    let server = Vsftpd::start(root, VsftpdOptions { max_per_ip: Some(2), ..Default::default() });
    let mount = Mount::of(&server, None, &["--tls", "off", "--max-connections", "4"]);
    let mut counter = SessionCounter::start(server.port());
    std::thread::scope(|s| {
        for (i, data) in files.iter().enumerate() {
            let path = mount.path().join(format!("c{i}.bin"));
            s.spawn(move || assert!(fs::read(&path).unwrap() == *data, "c{i}.bin differs"));
        }
    });
    // Connections the server refuses are counted too: they are attempts within the bound,
    // made before the first 421 arrived.
    assert!(counter.peak() <= 4, "never more than --max-connections");
    assert!(mount.log().contains("lowering the session limit to"), "{}", mount.log());
}

#[test]
fn a_connection_label_from_the_profile_file_mounts() {
    let certs = Certs::new();
    let root = TempDir::new("root");
    fs::write(root.path().join("labelled.txt"), b"via a profile").unwrap();
    let server = tls_server(&certs, root, Tls::Explicit);
    let cfg = TempDir::new("config");
    let password_file = cfg.path().join("password");
    fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let profile = cfg.path().join("config.toml");
    fs::write(
        &profile,
        format!(
            "[connections.demo]\nurl = \"{}\"\nca_file = \"{}\"\npassword_file = \"{}\"\nmax_connections = 3\n",
            server.url(),
            certs.ca().display(),
            password_file.display()
        ),
    )
    .unwrap();
    let mount = Mount::start_with_env("demo", &["--config", profile.to_str().unwrap()], &[]).expect("label mounts");
    assert_eq!(fs::read(mount.path().join("labelled.txt")).unwrap(), b"via a profile");
    assert!(mount.log().contains("up to 3 sessions"), "{}", mount.log());
    assert!(mount.log().contains("can be read by other users"), "world-readable password file warned: {}", mount.log());
}
