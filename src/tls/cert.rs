//! Certificates as a person sees them: parsed names and dates, fingerprints, host-name matching.

use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::{CertInfo, TlsError};

/// `*.example.com` matches one label; names compare without case.
pub(super) fn name_matches(pattern: &str, host: &str) -> bool {
    let (p, h) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
    match p.strip_prefix("*.") {
        Some(rest) => h.split_once('.').is_some_and(|(_, tail)| tail == rest),
        None => p == h,
    }
}

/// SHA-256 of a DER certificate, as [`CertInfo::fingerprint_sha256`] holds it.
pub(super) fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Accepts `AB:CD…`, `abcd…`, with or without separators.
pub(super) fn normalize_fingerprint(s: &str) -> Result<String, TlsError> {
    let hex: String = s.chars().filter(|c| !matches!(c, ':' | ' ' | '-')).collect::<String>().to_ascii_lowercase();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(TlsError::Config(format!(
            "--tls-fingerprint '{s}' is not a SHA-256 fingerprint (64 hex digits, colons allowed)"
        )));
    }
    Ok(hex.as_bytes().chunks(2).map(|p| std::str::from_utf8(p).expect("ascii")).collect::<Vec<_>>().join(":"))
}

/// Describes a DER certificate; `None` when it cannot be parsed.
pub fn cert_info(der: &[u8]) -> Option<CertInfo> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => names.push(d.to_string()),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => names.push(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).ok()?).to_string()),
                    16 => names.push(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).ok()?).to_string()),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let names_from_cn = names.is_empty();
    if names_from_cn {
        names.extend(cert.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(str::to_string));
    }
    let time =
        |t: x509_parser::time::ASN1Time| SystemTime::UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64);
    Some(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        names,
        not_before: time(cert.validity().not_before),
        not_after: time(cert.validity().not_after),
        fingerprint_sha256: fingerprint(der),
        self_signed: cert.subject() == cert.issuer(),
        names_from_cn,
    })
}

#[cfg(test)]
#[path = "cert_tests.rs"]
mod tests;
