use std::time::{Duration, SystemTime};

use super::*;
use crate::tls::TlsError;

fn cert(names: &[&str], from_days: i64, to_days: i64, self_signed: bool) -> CertInfo {
    let shift = |d: i64| Duration::from_secs(86_400 * d.unsigned_abs());
    let day = |d: i64| if d >= 0 { SystemTime::now() + shift(d) } else { SystemTime::now() - shift(d) };
    CertInfo {
        subject: "CN=x".into(),
        issuer: "CN=ca".into(),
        names: names.iter().map(|n| n.to_string()).collect(),
        not_before: day(from_days),
        not_after: day(to_days),
        fingerprint_sha256: "aa:bb".into(),
        self_signed,
        names_from_cn: false,
    }
}

#[test]
fn the_certificate_report_names_each_check() {
    let good = certificate_report(&cert(&["localhost"], -1, 30, false), "localhost", None, None);
    assert!(good.last().unwrap().contains("✓ issuer trusted; ✓ host name 'localhost'; ✓ dates"), "{good:?}");
    let expired = certificate_report(&cert(&["localhost"], -30, -1, false), "localhost", None, None);
    assert!(expired.last().unwrap().contains("✗ dates (expired)"), "{expired:?}");
    let early = certificate_report(&cert(&["localhost"], 2, 30, false), "localhost", None, None);
    assert!(early.last().unwrap().contains("✗ dates (not valid yet)"), "{early:?}");
    let other = certificate_report(&cert(&["ftp.example.com"], -1, 30, false), "localhost", None, None);
    assert!(other.last().unwrap().contains("✗ host name 'localhost' not in the names"), "{other:?}");
    let selfs =
        certificate_report(&cert(&["localhost"], -1, 30, true), "localhost", Some(&CertProblem::SelfSigned), None);
    assert!(selfs.last().unwrap().contains("✗ self-signed, not trusted"), "{selfs:?}");
    let relaxed =
        certificate_report(&cert(&["localhost"], -1, 30, true), "localhost", None, Some(Accepted::IssuerNotVerified));
    assert!(relaxed.iter().any(|l| l.contains("✗ issuer not verified")), "{relaxed:?}");
    assert!(relaxed.last().unwrap().starts_with("! issuer not verified"), "{relaxed:?}");
}

#[test]
fn a_certificate_without_subject_alt_name_is_named_as_the_cause() {
    let cn_only = CertInfo { names_from_cn: true, ..cert(&["localhost"], -1, 30, false) };
    let mismatch = CertProblem::HostMismatch { host: "localhost".into(), names: vec!["localhost".into()] };
    let report = certificate_report(&cn_only, "localhost", Some(&mismatch), None);
    assert!(report.iter().any(|l| l == "names: none (no subjectAltName); Common Name: localhost"), "{report:?}");
    let checks = report.last().unwrap();
    assert!(!checks.contains("✓ host name"), "{checks}");
    assert!(checks.contains("✗ host name 'localhost' only in the Common Name"), "{checks}");
    // Even unrefused (a relaxed check), a name only in the CN is no pass.
    let relaxed = certificate_report(&cn_only, "localhost", None, None);
    assert!(relaxed.last().unwrap().contains("✗ host name"), "{relaxed:?}");
    let msg = TlsError::Certificate { problem: mismatch, cert: Some(Box::new(cn_only.clone())) }.to_string();
    for w in ["only in its Common Name (CN=localhost)", "no subjectAltName", "subjectAltName=DNS:localhost", "RFC 6125"]
    {
        assert!(msg.contains(w), "'{w}' in {msg}");
    }
    assert!(!msg.contains("not for 'localhost'"), "{msg}");
    let by_ip = CertProblem::HostMismatch { host: "127.0.0.1".into(), names: vec!["localhost".into()] };
    let msg = TlsError::Certificate { problem: by_ip, cert: Some(Box::new(cn_only)) }.to_string();
    assert!(msg.contains("no subjectAltName") && msg.contains("subjectAltName=IP:127.0.0.1"), "{msg}");
    // A refused name with a subjectAltName is never shown as passed either.
    let with_san = cert(&["localhost"], -1, 30, false);
    let odd = CertProblem::HostMismatch { host: "localhost".into(), names: vec!["localhost".into()] };
    assert!(certificate_report(&with_san, "localhost", Some(&odd), None).last().unwrap().contains("✗ host name"));
}

#[test]
fn messages_name_the_check_and_the_fingerprint() {
    let cert = CertInfo {
        subject: "CN=localhost".into(),
        issuer: "CN=localhost".into(),
        names: vec!["localhost".into()],
        not_before: SystemTime::UNIX_EPOCH,
        not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(1_740_787_200),
        fingerprint_sha256: "aa:bb".into(),
        self_signed: true,
        names_from_cn: false,
    };
    let e = TlsError::Certificate {
        problem: CertProblem::Expired { not_after: cert.not_after },
        cert: Some(Box::new(cert.clone())),
    };
    let msg = e.to_string();
    assert!(msg.contains("expired on 2025-03-01 00:00:00 UTC") && msg.contains("aa:bb"), "{msg}");
    let e = TlsError::Certificate {
        problem: CertProblem::HostMismatch { host: "127.0.0.1".into(), names: vec!["ftp.example.com".into()] },
        cert: Some(Box::new(cert)),
    };
    assert!(e.to_string().contains("[ftp.example.com], not for '127.0.0.1'"), "{e}");
}

#[test]
fn an_accepted_exception_reads_as_before_and_sets_the_issuer_check() {
    let texts = [
        (Accepted::Pinned, "pinned with --tls-fingerprint: no other check applies"),
        (Accepted::IssuerNotVerified, "issuer not verified: accepted by --tls-allow-self-signed (insecure)"),
        (Accepted::HostNotVerified, "host name not verified: accepted by --tls-allow-mismatched-host (insecure)"),
    ];
    for (accepted, text) in texts {
        assert_eq!(accepted.to_string(), text);
        let report = certificate_report(&cert(&["localhost"], -1, 30, false), "localhost", None, Some(accepted));
        assert_eq!(report.last().unwrap(), &format!("! {text}"), "{report:?}");
    }
    let issuer = |a: Accepted| {
        let report = certificate_report(&cert(&["localhost"], -1, 30, false), "localhost", None, Some(a));
        report.iter().find(|l| l.starts_with("checks: ")).cloned().unwrap_or_default()
    };
    assert!(issuer(Accepted::Pinned).starts_with("checks: pinned;"));
    assert!(issuer(Accepted::IssuerNotVerified).starts_with("checks: ✗ issuer not verified;"));
    assert!(issuer(Accepted::HostNotVerified).starts_with("checks: ✓ issuer trusted;"));
}
