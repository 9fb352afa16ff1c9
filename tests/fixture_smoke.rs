//! The test fixture itself, without ftpmount: every server variant accepts a login and serves
//! files to ordinary clients (curl, lftp), the certificates are what they claim to be, the
//! session counter sees connections, and the helpers behave. When an end-to-end test fails,
//! these say whether the fixture or ftpmount is at fault.

mod fixture;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use fixture::tree::{content_for, mtime_secs, now_secs, write_file};
use fixture::*;

/// `curl -sS --max-time 30 -u USER:PASSWORD ARGS…` → (success, stdout, stderr).
fn curl(server: &dyn FtpServer, args: &[&str]) -> (bool, Vec<u8>, String) {
    let out = run(
        Command::new("curl")
            .args(["-sS", "--max-time", "30", "-u", &format!("{}:{}", server.user(), server.password())])
            .args(args),
        Duration::from_secs(60),
    );
    (out.status.success(), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn curl_ok(server: &dyn FtpServer, args: &[&str]) -> Vec<u8> {
    let (ok, out, err) = curl(server, args);
    assert!(ok, "curl {args:?} failed: {err}\n--- server log:\n{}", proc::tail(&server.log(), 3000));
    out
}

/// The options curl needs for the server's TLS mode (verifying against the test CA).
fn tls_args(server: &dyn FtpServer) -> Vec<String> {
    let ca = server.ca_file().display().to_string();
    match server.tls() {
        Tls::Off => vec![],
        Tls::Explicit => vec!["--ssl-reqd".into(), "--cacert".into(), ca],
        Tls::Implicit => vec!["--cacert".into(), ca],
    }
}

fn file_url(server: &dyn FtpServer, rel: &str) -> String {
    let scheme = if server.tls() == Tls::Implicit { "ftps" } else { "ftp" };
    format!("{scheme}://localhost:{}/{rel}", server.port())
}

/// Puts a few files on the server, fetches them all in one curl run (one control session,
/// several data connections: with vsftpd each must resume the TLS session) while sampling the
/// sessions, and checks the bytes.
fn serves_files(server: &dyn FtpServer, extra: &[&str]) {
    let names = ["hello.txt", "sub dir/Ünïcödé 文件.txt", "big.bin", "empty"];
    let sizes = [12, 1000, 3 << 20, 0];
    for (n, len) in names.iter().zip(sizes) {
        write_file(server.root(), n, len);
    }
    server.fix_owner();
    let out_dir = temp_dir("curl-out");
    let mut args: Vec<String> = tls_args(server);
    args.extend(extra.iter().map(|s| s.to_string()));
    for (i, n) in names.iter().enumerate() {
        let encoded = n.replace(' ', "%20");
        args.push(file_url(server, &encoded));
        args.push("-o".into());
        args.push(out_dir.path().join(format!("out{i}")).display().to_string());
    }
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    curl_ok(server, &args_ref);
    for (i, (n, len)) in names.iter().zip(sizes).enumerate() {
        let got = fs::read(out_dir.path().join(format!("out{i}"))).unwrap_or_default();
        assert!(got == content_for(n, len), "{n}: wrong content ({} bytes)", got.len());
    }
    // The session counter sees a connection to this server (a sampler may miss a short curl
    // session on a busy machine, so hold one open).
    let counter = SessionCounter::new(server.port());
    let before = counter.count();
    let held = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    assert_eq!(counter.count(), before + 1, "the session counter sees a connection");
    drop(held);
    // And a directory listing.
    let mut args = tls_args(server);
    args.push(file_url(server, ""));
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let listing = String::from_utf8(curl_ok(server, &args_ref)).unwrap();
    assert!(listing.contains("hello.txt") && listing.contains("sub dir"), "{listing}");
}

#[test]
fn vsftpd_plain_serves_files() {
    let server = Vsftpd::start(VsftpdOpts::plain());
    serves_files(&server, &[]);
    assert!(server.log().contains("OK LOGIN"), "{}", server.log());
}

#[test]
fn vsftpd_explicit_tls_1_2_serves_files_with_session_reuse() {
    let server = Vsftpd::start(VsftpdOpts::explicit().tls_versions(TlsVersions::Only12));
    serves_files(&server, &["--tls-max", "1.2"]);
    assert_eq!(server.tls_versions_seen(), ["TLSv1.2"]);
    assert!(server.log_count(", reused,") >= 4, "data connections resumed the session:\n{}", server.log());
}

#[test]
fn vsftpd_explicit_tls_1_3_serves_files_with_session_reuse() {
    let server = Vsftpd::start(VsftpdOpts::explicit().tls_versions(TlsVersions::Only13));
    serves_files(&server, &["--tlsv1.3"]);
    assert_eq!(server.tls_versions_seen(), ["TLSv1.3"]);
    assert!(server.log_count(", reused,") >= 4, "data connections resumed the session:\n{}", server.log());
    assert_eq!(server.log_count("session reuse required"), 0);
}

#[test]
fn vsftpd_with_any_tls_version_negotiates_1_3_by_default() {
    let server = Vsftpd::start(VsftpdOpts::explicit());
    serves_files(&server, &[]);
    assert_eq!(server.tls_versions_seen(), ["TLSv1.3"]);
}

#[test]
fn vsftpd_restricted_to_tls_1_3_refuses_tls_1_2() {
    let server = Vsftpd::start(VsftpdOpts::explicit().tls_versions(TlsVersions::Only13));
    write_file(server.root(), "a", 1);
    let url = file_url(&server, "a");
    let (ok, _, err) = curl(&server, &["--ssl-reqd", "--cacert", s(server.ca_file()), "--tls-max", "1.2", &url]);
    assert!(!ok, "TLS 1.2 must be refused");
    assert!(err.contains("SSL") || err.contains("TLS"), "{err}");
}

#[test]
fn vsftpd_implicit_serves_files() {
    let server = Vsftpd::start(VsftpdOpts::implicit());
    serves_files(&server, &[]);
    assert!(server.log().contains("SSL version: TLSv1."), "{}", server.log());
}

#[test]
fn vsftpd_plain_login_is_refused_on_a_tls_server() {
    let server = Vsftpd::start(VsftpdOpts::explicit());
    let (ok, _, err) = curl(&server, &[&file_url(&server, "")]);
    assert!(!ok, "login without TLS must fail");
    assert!(err.contains("530") || err.contains("denied") || err.contains("Access"), "{err}");
}

#[test]
fn lftp_does_consecutive_tls_transfers_with_both_versions() {
    for (versions, lftp_prio) in [(TlsVersions::Only12, "NORMAL:-VERS-ALL:+VERS-TLS1.2"), (TlsVersions::Only13, "NORMAL")] {
        let server = Vsftpd::start(VsftpdOpts::explicit().tls_versions(versions));
        for i in 0..6 {
            write_file(server.root(), &format!("f{i}"), 1000 * i + 1);
        }
        server.fix_owner();
        let out = temp_dir("lftp-out");
        let gets: String = (0..6).map(|i| format!("get f{i} -o {}/f{i}; ", out.path().display())).collect();
        let script = format!(
            "set ssl:ca-file {ca}; set ssl:priority {lftp_prio}; set ftp:ssl-force yes; \
             set ftp:ssl-protect-data yes; set net:max-retries 1; set net:timeout 10; \
             open -u {user},{pw} ftp://localhost:{port}; {gets}",
            ca = server.ca_file().display(),
            user = USER,
            pw = PASSWORD,
            port = server.port()
        );
        run_ok(Command::new("lftp").args(["-c", &script]));
        for i in 0..6 {
            assert_eq!(fs::read(out.path().join(format!("f{i}"))).unwrap(), content_for(&format!("f{i}"), 1000 * i + 1));
        }
        assert_eq!(server.log_count("session reuse required"), 0, "{}", server.log());
    }
}

#[test]
fn vsftpd_lists_dot_files_only_with_list_a() {
    let server = Vsftpd::start(VsftpdOpts::plain());
    write_file(server.root(), ".hidden", 3);
    write_file(server.root(), "visible", 3);
    server.fix_owner();
    let url = file_url(&server, "");
    let plain = String::from_utf8(curl_ok(&server, &[&url])).unwrap();
    assert!(plain.contains("visible") && !plain.contains(".hidden"), "{plain}");
    let all = String::from_utf8(curl_ok(&server, &["-X", "LIST -a", &url])).unwrap();
    assert!(all.contains(".hidden") && all.contains("visible"), "{all}");
}

#[test]
fn vsftpd_limits_sessions_per_ip() {
    let server = Vsftpd::start(VsftpdOpts::plain().max_per_ip(1));
    let greet = |s: &TcpStream| {
        let mut line = String::new();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        BufReader::new(s).read_line(&mut line).unwrap();
        line
    };
    let first = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    assert!(greet(&first).starts_with("220"));
    let second = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    let line = greet(&second);
    assert!(line.starts_with("421"), "{line}");
}

#[test]
fn pyftpd_plain_serves_files_and_mlsd() {
    let server = PyFtpd::start(PyFtpdOpts::plain());
    serves_files(&server, &[]);
    let p = write_file(server.root(), "timed.txt", 5);
    fixture::set_mtime(&p, 1_234_567_890);
    let mlsd = String::from_utf8(curl_ok(&server, &["-X", "MLSD", &file_url(&server, "")])).unwrap();
    assert!(mlsd.contains("type=file;") && mlsd.contains("modify=20090213233130") && mlsd.contains("; timed.txt"), "{mlsd}");
    assert!(mlsd.contains("type=dir;") && mlsd.contains("; sub dir"), "{mlsd}");
}

#[test]
fn pyftpd_tls_serves_files() {
    let server = PyFtpd::start(PyFtpdOpts::explicit());
    serves_files(&server, &[]);
}

#[test]
fn pyftpd_tls_versions_can_be_restricted() {
    let server = PyFtpd::start(PyFtpdOpts::explicit().tls_versions(TlsVersions::Only12));
    serves_files(&server, &["--tls-max", "1.2"]);
    let url = file_url(&server, "hello.txt");
    let (ok, _, err) = curl(&server, &["--ssl-reqd", "--cacert", s(server.ca_file()), "--tlsv1.3", &url]);
    assert!(!ok, "TLS 1.3 must be refused: {err}");
}

#[test]
fn certificates_are_what_they_claim() {
    let certs = Certs::generate();
    let verify = |pair: &CertPair, extra: &[&str]| {
        let out = Command::new("openssl")
            .args(["verify", "-CAfile", s(certs.ca_file())])
            .args(extra)
            .arg(&pair.cert)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let host = ["-verify_hostname", "localhost"];
    let ip = ["-verify_ip", "127.0.0.1"];
    assert!(verify(&certs.good, &host).0);
    assert!(verify(&certs.good, &ip).0);
    let (ok, msg) = verify(&certs.self_signed, &host);
    assert!(!ok && msg.contains("self-signed"), "{msg}");
    let (ok, msg) = verify(&certs.wrong_host, &host);
    assert!(!ok && msg.contains("hostname mismatch"), "{msg}");
    assert!(verify(&certs.wrong_host, &["-verify_hostname", certs::WRONG_HOST]).0);
    let (ok, msg) = verify(&certs.expired, &host);
    assert!(!ok && msg.contains("expired"), "{msg}");
    let (ok, msg) = verify(&certs.not_yet_valid, &host);
    assert!(!ok && msg.contains("not yet valid"), "{msg}");
    let fp = certs.self_signed.fingerprint_sha256();
    assert_eq!(fp.len(), 32 * 3 - 1, "{fp}");
    assert!(fp.split(':').all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit())), "{fp}");
}

#[test]
fn vsftpd_presents_the_requested_certificate() {
    for (variant, curl_complaint) in [
        (CertVariant::Good, ""),
        (CertVariant::SelfSigned, "self-signed"),
        (CertVariant::WrongHost, "subject name"),
        (CertVariant::Expired, "expired"),
        (CertVariant::NotYetValid, "not yet valid"),
    ] {
        let server = Vsftpd::start(VsftpdOpts::explicit().cert(variant));
        let url = file_url(&server, "");
        let (ok, _, err) = curl(&server, &["--ssl-reqd", "--cacert", s(server.ca_file()), &url]);
        if variant == CertVariant::Good {
            assert!(ok, "{err}");
        } else {
            assert!(!ok && err.contains(curl_complaint), "{variant:?}: {err}");
            // Without verification the server works.
            curl_ok(&server, &["--ssl-reqd", "-k", &url]);
        }
    }
}

#[test]
fn session_counter_sees_connections_come_and_go() {
    let server = Vsftpd::start(VsftpdOpts::plain());
    let counter = SessionCounter::new(server.port());
    assert_eq!(counter.count(), 0);
    let sampler = counter.sample();
    let mut a = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    let b = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    let mut line = String::new();
    BufReader::new(&b).read_line(&mut line).unwrap();
    assert!(line.starts_with("220"), "{line}");
    assert_eq!(counter.count(), 2);
    let start = Instant::now();
    while sampler.samples() < 3 {
        assert!(start.elapsed() < Duration::from_secs(5), "the sampler does not sample");
        std::thread::sleep(Duration::from_millis(2));
    }
    a.write_all(b"QUIT\r\n").unwrap();
    drop(a);
    drop(b);
    let start = Instant::now();
    while counter.count() != 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "connections did not go away");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(sampler.stop(), 2);
}

#[test]
fn mount_reports_a_command_that_exits_without_mounting() {
    let failure = Mount::start("/bin/false", "ftp://nobody@localhost:1/", &[], &[]).err().expect("cannot mount");
    assert!(!failure.status.success());
    assert!(!failure.left_mounted && !failure.timed_out);
    assert!(!failure.mountpoint.exists(), "the mountpoint is removed");
    // A stand-in binary that shows what it was given.
    let dir = temp_dir("fake-bin");
    let fake = dir.path().join("fake-ftpmount");
    fs::write(&fake, "#!/bin/sh\necho \"args: $*\" >&2\necho \"pw: $FTPMOUNT_PASSWORD home: $HOME\" >&2\nexit 3\n").unwrap();
    run_ok(Command::new("chmod").arg("+x").arg(&fake));
    let failure = Mount::start(&fake, "ftp://u@h/", &["--x", "y z"], &[("FTPMOUNT_PASSWORD", "pw")]).err().expect("fails");
    assert_eq!(failure.status.code(), Some(3));
    let mnt = failure.mountpoint.display().to_string();
    assert!(failure.stderr.contains(&format!("args: mount ftp://u@h/ {mnt} --x y z")), "{}", failure.stderr);
    assert!(failure.stderr.contains("pw: pw home: /tmp/"), "{}", failure.stderr);
}

#[test]
fn tree_helpers_are_deterministic() {
    let dir = temp_dir("tree");
    let spec = vec![
        Entry::dir("a/b"),
        Entry::file("a/b/Ünïcödé 文件.txt", 10),
        Entry::file("with space/hash#%.bin", 100_000),
        Entry::file("empty", 0),
    ];
    make_tree(dir.path(), &spec);
    assert_eq!(
        relative_paths(dir.path()),
        ["a", "a/b", "a/b/Ünïcödé 文件.txt", "empty", "with space", "with space/hash#%.bin"]
    );
    assert_eq!(fs::read(dir.path().join("with space/hash#%.bin")).unwrap(), content_for("with space/hash#%.bin", 100_000));
    assert_eq!(content_for("x", 64), content_for("x", 64));
    assert_ne!(content_for("x", 64), content_for("y", 64));
    let p = dir.path().join("empty");
    for t in [1_000_000_007, now_secs() - 3, 86_399] {
        fixture::set_mtime(&p, t);
        assert_eq!(mtime_secs(&p), t);
    }
    let wide = fixture::tree::wide_tree(20, 10, 100, 1);
    assert_eq!(wide.len(), 20 * 11);
    let mut rng = XorShift::new(5);
    let v: Vec<u64> = (0..1000).map(|_| rng.range(3, 7)).collect();
    assert!(v.iter().all(|x| (3..=7).contains(x)) && (3..=7).all(|x| v.contains(&x)));
}

#[test]
fn free_ports_are_distinct_and_bindable() {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let p = free_port();
        assert!(seen.insert(p), "port {p} handed out twice");
        assert!(std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
    }
    let (a, b) = free_port_range(10);
    assert_eq!(b - a, 9);
    assert!((a..=b).all(|p| !seen.contains(&p)));
}
