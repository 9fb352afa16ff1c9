//! The words: a refused certificate's message, and the certificate report `check` prints.
//! No rustls here; this works on [`CertInfo`] and [`CertProblem`] only.

use std::time::SystemTime;

use super::cert::name_matches;
use super::{Accepted, CertInfo, CertProblem};
use crate::clock::format_utc;

/// The message of [`super::TlsError::Certificate`]: the failed check, what to do about it, and
/// the fingerprint to pin it with.
pub(super) fn certificate_message(problem: &CertProblem, cert: Option<&CertInfo>) -> String {
    let fp = cert.map(|c| c.fingerprint_sha256.as_str()).unwrap_or("(unknown)");
    let who = cert.map(|c| format!(" (subject {}, issuer {})", c.subject, c.issuer)).unwrap_or_default();
    let pin =
        format!("--tls-fingerprint {fp} to trust exactly this certificate (only after checking it is the right one)");
    match problem {
        CertProblem::Expired { not_after } => format!(
            "the server's certificate{who} expired on {}. Renew the server certificate; to connect anyway pass {pin}. SHA-256 fingerprint: {fp}",
            format_utc(*not_after)
        ),
        CertProblem::NotYetValid { not_before } => format!(
            "the server's certificate{who} is not valid before {}. Check this machine's clock and the server's; to connect anyway pass {pin}. SHA-256 fingerprint: {fp}",
            format_utc(*not_before)
        ),
        CertProblem::HostMismatch { host, names } if cert.is_some_and(|c| c.names_from_cn) => {
            let cn = names.join(", ");
            let san = san_for(host);
            if names.iter().any(|n| name_matches(n, host)) {
                format!(
                    "the server's certificate names the host only in its Common Name (CN={cn}) and has no subjectAltName; TLS clients ignore the Common Name (RFC 6125, RFC 2818). Reissue the certificate with subjectAltName={san}, or pass --tls-allow-mismatched-host (insecure), or {pin}. SHA-256 fingerprint: {fp}"
                )
            } else {
                format!(
                    "the server's certificate has no subjectAltName, and its Common Name (CN={cn}) is not '{host}' either (TLS clients ignore the Common Name anyway). Reissue the certificate with subjectAltName={san}, or pass --tls-allow-mismatched-host (insecure), or {pin}. SHA-256 fingerprint: {fp}"
                )
            }
        }
        CertProblem::HostMismatch { host, names } => format!(
            "the server's certificate is for [{}], not for '{host}'. Connect using one of those names, or pass --tls-allow-mismatched-host (insecure), or {pin}. SHA-256 fingerprint: {fp}",
            names.join(", ")
        ),
        CertProblem::SelfSigned => format!(
            "the server's certificate{who} is self-signed. Pass --ca-file with the certificate, or --tls-allow-self-signed (insecure), or {pin}. SHA-256 fingerprint: {fp}"
        ),
        CertProblem::UnknownIssuer => format!(
            "the server's certificate{who} is signed by an unknown certificate authority. Pass --ca-file with the issuing CA, or --tls-allow-self-signed (insecure), or {pin}. SHA-256 fingerprint: {fp}"
        ),
        CertProblem::FingerprintMismatch { expected, actual } => format!(
            "the server's certificate{who} has SHA-256 fingerprint {actual}, not the {expected} given with --tls-fingerprint. The server's certificate changed, or this is not the expected server"
        ),
        CertProblem::Other(why) => {
            format!("the server's certificate{who} was refused: {why}. SHA-256 fingerprint: {fp}")
        }
    }
}

/// A certificate described line by line for `check`: who it names, who issued it, when it is
/// valid, its fingerprint, and each check with its verdict. `refused`: the problem that made
/// the handshake fail, if it did.
pub fn certificate_report(
    cert: &CertInfo,
    host: &str,
    refused: Option<&CertProblem>,
    accepted_by: Option<Accepted>,
) -> Vec<String> {
    let mut lines = vec![
        format!("subject: {}", cert.subject),
        if cert.names_from_cn {
            format!("names: none (no subjectAltName); Common Name: {}", cert.names.join(", "))
        } else {
            format!("names: {}", cert.names.join(", "))
        },
        format!("issuer: {}", cert.issuer),
        format!("valid: {} to {}", format_utc(cert.not_before), format_utc(cert.not_after)),
        format!("SHA-256 fingerprint: {}", cert.fingerprint_sha256),
        format!(
            "checks: {}; {}; {}",
            issuer_check(refused, accepted_by),
            host_check(cert, host, refused),
            dates_check(cert, SystemTime::now())
        ),
    ];
    if let Some(why) = accepted_by {
        lines.push(format!("! {why}"));
    }
    lines
}

fn mark(ok: bool) -> &'static str {
    if ok { "✓" } else { "✗" }
}

fn issuer_check(refused: Option<&CertProblem>, accepted_by: Option<Accepted>) -> String {
    match refused {
        Some(CertProblem::SelfSigned) => format!("{} self-signed, not trusted", mark(false)),
        Some(CertProblem::UnknownIssuer) => {
            format!("{} issuer not trusted (not in the system store or --ca-file)", mark(false))
        }
        Some(CertProblem::FingerprintMismatch { .. }) => {
            format!("{} not the certificate pinned with --tls-fingerprint", mark(false))
        }
        _ => match accepted_by {
            Some(Accepted::IssuerNotVerified) => format!("{} issuer not verified", mark(false)),
            Some(Accepted::Pinned) => "pinned".to_string(),
            Some(Accepted::HostNotVerified) | None => format!("{} issuer trusted", mark(true)),
        },
    }
}

/// The name check as TLS makes it: against subjectAltName only, and never passed when the
/// handshake failed on it.
fn host_check(cert: &CertInfo, host: &str, refused: Option<&CertProblem>) -> String {
    let name_refused = matches!(refused, Some(CertProblem::HostMismatch { .. }));
    let in_names = cert.names.iter().any(|n| name_matches(n, host));
    let host_ok = in_names && !cert.names_from_cn && !name_refused;
    let why = match () {
        _ if host_ok => "",
        _ if cert.names_from_cn && in_names => " only in the Common Name, which TLS ignores: no subjectAltName",
        _ if cert.names_from_cn => " not in the certificate (no subjectAltName)",
        _ => " not in the names",
    };
    format!("{} host name '{host}'{why}", mark(host_ok))
}

fn dates_check(cert: &CertInfo, now: SystemTime) -> String {
    let dates_ok = cert.not_before <= now && now <= cert.not_after;
    let why = if dates_ok {
        ""
    } else if now < cert.not_before {
        " (not valid yet)"
    } else {
        " (expired)"
    };
    format!("{} dates{why}", mark(dates_ok))
}

impl std::fmt::Display for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accepted::Pinned => "pinned with --tls-fingerprint: no other check applies",
            Accepted::IssuerNotVerified => "issuer not verified: accepted by --tls-allow-self-signed (insecure)",
            Accepted::HostNotVerified => "host name not verified: accepted by --tls-allow-mismatched-host (insecure)",
        })
    }
}

/// The subjectAltName a certificate for `host` needs: `DNS:name` or `IP:address`.
fn san_for(host: &str) -> String {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::IpAddr>().is_ok() { format!("IP:{bare}") } else { format!("DNS:{host}") }
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
