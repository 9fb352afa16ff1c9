//! `ftpmount check` against real servers set up to fail in each way the troubleshooting guide
//! lists, and `mount` failing with the same message and leaving no mount behind.

mod common;

use std::process::{Command, Output};

use common::*;
use serde_json::Value;

fn check(source: &str, args: &[&str], password: &str) -> (Output, Value) {
    let out = Command::new(bin())
        .arg("check")
        .arg(source)
        .args(args)
        .arg("--json")
        .env("FTPMOUNT_PASSWORD", password)
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check --json printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, json)
}

/// The stage that failed, and its message.
fn failed_stage(json: &Value) -> (String, String) {
    let stage = json["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["status"] == "fail")
        .unwrap_or_else(|| panic!("no stage failed: {json:#}"));
    (stage["stage"].as_str().unwrap().to_string(), stage["message"].as_str().unwrap().to_string())
}

/// Runs `check`, expects `stage` to fail with a message containing `words`, then expects
/// `mount` with the same arguments to fail with that same message and leave no mount.
fn fails_at(source: &str, args: &[&str], password: &str, stage: &str, words: &[&str]) -> Value {
    let (out, json) = check(source, args, password);
    assert_eq!(out.status.code(), Some(1), "{json:#}");
    assert_eq!(json["ok"], false);
    let (failed, message) = failed_stage(&json);
    assert_eq!(failed, stage, "{json:#}");
    for w in words {
        assert!(message.contains(w), "'{w}' missing from: {message}");
    }
    let mount =
        Mount::start_with_env(source, args, &[("FTPMOUNT_PASSWORD", password)]).err().expect("the mount must fail too");
    assert!(!mount.status.success());
    assert!(mount.stderr.contains(&message), "mount said:\n{}\ncheck said:\n{message}", mount.stderr);
    assert!(!mount.left_mounted);
    json
}

fn stage<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == name)
        .unwrap_or_else(|| panic!("no {name} stage: {json:#}"))
}

fn vsftpd_tls(certs: &Certs, tls: Tls, cert: &str) -> Vsftpd {
    Vsftpd::start(TempDir::new("root"), VsftpdOptions { tls, cert: Some(certs.pair(cert)), ..Default::default() })
}

#[test]
fn every_stage_passes_on_plain_explicit_and_implicit_vsftpd() {
    let certs = Certs::new();
    let ca = certs.ca();
    let plain = Vsftpd::start(TempDir::new("root"), VsftpdOptions::default());
    let (out, json) = check(&plain.url(), &["--tls", "off"], PASSWORD);
    assert!(out.status.success(), "{json:#}");
    assert_eq!(stage(&json, "TLS")["status"], "warn", "--tls off is insecure and says so");
    assert!(stage(&json, "data channel")["message"].as_str().unwrap().contains("read back intact and deleted"));
    assert!(stage(&json, "case")["message"].as_str().unwrap().contains("case-sensitive"));
    assert_eq!(std::fs::read_dir(plain.root()).unwrap().count(), 0, "the test files are gone");

    for tls in [Tls::Explicit, Tls::Implicit] {
        let server = vsftpd_tls(&certs, tls, "server");
        let mut args = vec!["--ca-file", ca.to_str().unwrap()];
        if tls == Tls::Implicit {
            args.extend(["--tls", "implicit"]);
        }
        let (out, json) = check(&server.url(), &args, PASSWORD);
        assert!(out.status.success(), "{tls:?}: {json:#}");
        let tls_stage = stage(&json, "TLS")["message"].as_str().unwrap().to_string();
        assert!(tls_stage.contains(if tls == Tls::Implicit { "implicit" } else { "AUTH TLS" }), "{tls_stage}");
        let cert = stage(&json, "certificate");
        let details = cert["details"].to_string();
        for fact in [
            "subject: CN=localhost",
            "names: localhost, 127.0.0.1",
            "issuer: CN=ftpmount test CA",
            "SHA-256 fingerprint:",
            "✓ host name",
            "✓ dates",
        ] {
            assert!(details.contains(fact), "{fact} in {details}");
        }
        // The plain text form: one line per stage, exit status 0.
        let text = Command::new(bin())
            .arg("check")
            .arg(server.url())
            .args(&args)
            .env("FTPMOUNT_PASSWORD", PASSWORD)
            .output()
            .unwrap();
        assert!(text.status.success());
        let stdout = String::from_utf8(text.stdout).unwrap();
        assert!(stdout.lines().any(|l| l.starts_with("✓ login")), "{stdout}");
        assert!(stdout.contains("All stages passed"), "{stdout}");
    }
}

#[test]
fn nothing_listening_fails_at_tcp() {
    let url = format!("ftp://{USER}@127.0.0.1:{}/", free_port());
    fails_at(&url, &["--tls", "off"], PASSWORD, "TCP", &["refused", "nothing listens on that port"]);
}

#[test]
fn explicit_tls_on_an_implicit_port_says_use_implicit() {
    let certs = Certs::new();
    let server = vsftpd_tls(&certs, Tls::Implicit, "server");
    let ca = certs.ca();
    let url = format!("ftps://{USER}@localhost:{}/", server.port());
    fails_at(
        &url,
        &["--tls", "explicit", "--ca-file", ca.to_str().unwrap(), "--connect-timeout", "2s"],
        PASSWORD,
        "greeting",
        &["speaks implicit TLS", "--tls implicit"],
    );
}

#[test]
fn implicit_tls_on_a_plain_port_says_use_explicit() {
    let certs = Certs::new();
    let server = vsftpd_tls(&certs, Tls::Explicit, "server");
    let ca = certs.ca();
    let url = format!("ftps://{USER}@localhost:{}/", server.port());
    fails_at(
        &url,
        &["--tls", "implicit", "--ca-file", ca.to_str().unwrap()],
        PASSWORD,
        "TLS",
        &["speaks plain FTP", "220", "--tls explicit"],
    );
}

#[test]
fn certificate_problems_name_the_failed_check() {
    let certs = Certs::new();
    let ca = certs.ca();
    let cases: [(&str, &[&str], &str); 4] = [
        ("expired", &["expired on 2020-02-01 00:00:00 UTC"], "✗ dates (expired)"),
        ("not-yet-valid", &["not valid before 2040-01-01 00:00:00 UTC", "clock"], "✗ dates (not valid yet)"),
        (
            "wrong-host",
            &["not for 'localhost'", "ftp.example.invalid", "--tls-allow-mismatched-host"],
            "✗ host name 'localhost'",
        ),
        ("self-signed", &["self-signed", "--tls-allow-self-signed", "--tls-fingerprint"], "✗ self-signed"),
    ];
    for (name, words, check_line) in cases {
        let server = vsftpd_tls(&certs, Tls::Explicit, name);
        let json = fails_at(&server.url(), &["--ca-file", ca.to_str().unwrap()], PASSWORD, "certificate", words);
        let details = stage(&json, "certificate")["details"].to_string();
        assert!(details.contains(check_line), "{name}: {check_line} in {details}");
        assert!(details.contains(&certs.fingerprint(name).to_lowercase()), "{name}: fingerprint in {details}");
    }
}

#[test]
fn a_certificate_without_subject_alt_name_is_named_and_the_host_check_is_not_passed() {
    let certs = Certs::new();
    certs.signed_cn_only("cn-only", "localhost");
    let server = vsftpd_tls(&certs, Tls::Explicit, "cn-only");
    let json = fails_at(
        &server.url(),
        &["--ca-file", certs.ca().to_str().unwrap()],
        PASSWORD,
        "certificate",
        &[
            "names the host only in its Common Name (CN=localhost)",
            "no subjectAltName",
            "subjectAltName=DNS:localhost",
            "--tls-allow-mismatched-host",
        ],
    );
    let (_, message) = failed_stage(&json);
    assert!(!message.contains("not for 'localhost'"), "{message}");
    let details = stage(&json, "certificate")["details"].to_string();
    assert!(details.contains("no subjectAltName); Common Name: localhost"), "{details}");
    assert!(details.contains("✗ host name 'localhost' only in the Common Name"), "{details}");
    assert!(!details.contains("✓ host name"), "{details}");
}

#[test]
fn wrong_password_fails_at_login() {
    let server = Vsftpd::start(TempDir::new("root"), VsftpdOptions::default());
    let json = fails_at(
        &server.url(),
        &["--tls", "off"],
        "not-the-password",
        "login",
        &["530", "Check the user name and password"],
    );
    assert!(!json.to_string().contains("not-the-password"), "the password is never printed");
}

#[test]
fn tls_off_on_a_server_that_requires_tls_says_so() {
    let certs = Certs::new();
    let server = vsftpd_tls(&certs, Tls::Explicit, "server");
    let url = format!("ftp://{USER}@localhost:{}/", server.port());
    fails_at(&url, &["--tls", "off"], PASSWORD, "login", &["requires an encrypted connection", "--tls explicit"]);
}

#[test]
fn a_blocked_data_channel_fails_at_the_data_stage_and_explains_zero_byte_files() {
    let dead_port = free_port().to_string();
    let server = PyFtpd::start(TempDir::new("root"), None, &["--dead-pasv-port", &dead_port]);
    fails_at(
        &server.url(),
        &["--tls", "off"],
        PASSWORD,
        "data channel",
        &["data channel is blocked", "passive (PASV) port range", "zero bytes"],
    );
}

#[test]
fn probe_limit_finds_a_cap_of_three_sessions() {
    let server = Vsftpd::start(TempDir::new("root"), VsftpdOptions { max_per_ip: Some(3), ..Default::default() });
    let (out, json) = check(&server.url(), &["--tls", "off", "--probe-limit", "--max-connections", "8"], PASSWORD);
    assert!(out.status.success(), "a cap is a warning, not a failure: {json:#}");
    let limit = stage(&json, "session limit");
    assert_eq!(limit["status"], "warn", "{json:#}");
    let message = limit["message"].as_str().unwrap();
    assert!(message.contains("allows 3 session(s)") && message.contains("--max-connections 3"), "{message}");
    assert!(message.contains("421"), "{message}");
}

#[test]
fn a_private_passive_address_is_replaced_and_reported() {
    // A server behind NAT: PASV announces 10.9.8.7; the data connection goes to 127.0.0.1.
    let server = PyFtpd::start(TempDir::new("root"), None, &["--masquerade", "10.9.8.7", "--no-epsv"]);
    let (out, json) = check(&server.url(), &["--tls", "off"], PASSWORD);
    assert!(out.status.success(), "{json:#}");
    let data = stage(&json, "data channel");
    assert!(data["message"].as_str().unwrap().starts_with("PASV"), "{data:#}");
    let details = data["details"].to_string();
    assert!(details.contains("announced the private passive address 10.9.8.7; using 127.0.0.1"), "{details}");
}

#[test]
fn an_accepted_exception_is_a_warning_that_names_the_option() {
    let certs = Certs::new();
    let server = vsftpd_tls(&certs, Tls::Explicit, "self-signed");
    let (out, json) = check(&server.url(), &["--tls-allow-self-signed"], PASSWORD);
    assert!(out.status.success(), "{json:#}");
    let cert = stage(&json, "certificate");
    assert_eq!(cert["status"], "warn", "{cert:#}");
    assert!(cert["message"].as_str().unwrap().contains("--tls-allow-self-signed (insecure)"), "{cert:#}");
    let fp = certs.fingerprint("self-signed");
    let (out, json) = check(&server.url(), &["--tls-fingerprint", &fp], PASSWORD);
    assert!(out.status.success(), "{json:#}");
    assert!(
        stage(&json, "certificate")["message"].as_str().unwrap().contains("pinned with --tls-fingerprint"),
        "{json:#}"
    );
}
