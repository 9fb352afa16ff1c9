//! TLS for FTPS: the only module that imports rustls.
//!
//! - Certificates are checked against the system store (plus `--ca-file`); a refusal names the
//!   failed check (dates, host name, issuer) and the certificate's SHA-256 fingerprint.
//! - The insecure relaxations (`--tls-allow-self-signed`, `--tls-allow-mismatched-host`) and the
//!   exact pin (`--tls-fingerprint`) are explicit and logged.
//! - Each FTP control session gets its own resumption store, shared with its data connections:
//!   servers such as vsftpd (`require_ssl_reuse=YES`) only accept data connections that resume
//!   the control session, and each vsftpd session process has its own ticket keys.
//!
//! Files: this one holds the public types; `client.rs` the client settings and handshakes,
//! `stream.rs` the established connection, `verify.rs` certificate checks (pin, opt-outs,
//! trust store), `resume.rs` session resumption, `cert.rs` certificate parsing and names,
//! `report.rs` the words (refusal messages, `check`'s report; no rustls).

use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

mod cert;
mod client;
mod report;
mod resume;
mod stream;
mod verify;

pub use cert::cert_info;
pub use client::{DataTls, StartedHandshake, TlsClient};
pub use report::certificate_report;
pub use stream::TlsStream;

/// TLS settings from the command line or profile.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Extra trusted roots (PEM); the system store is always used too.
    pub ca_file: Option<PathBuf>,
    /// Skip only the host-name check (insecure).
    pub allow_mismatched_host: bool,
    /// Accept an unknown or self-signed issuer; dates and host are still checked (insecure).
    pub allow_self_signed: bool,
    /// Trust exactly this leaf certificate (hex SHA-256, `:` optional); replaces all other checks.
    pub fingerprint_sha256: Option<String>,
    /// Highest version offered; TLS 1.2 is always the minimum.
    pub max_version: Option<TlsVersion>,
}

/// A TLS protocol version we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2, the minimum.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl std::str::FromStr for TlsVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "1.2" => Ok(TlsVersion::Tls12),
            "1.3" => Ok(TlsVersion::Tls13),
            _ => Err(format!("'{s}' is not a TLS version (use 1.2 or 1.3)")),
        }
    }
}

impl std::fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "TLS 1.2",
            TlsVersion::Tls13 => "TLS 1.3",
        })
    }
}

/// What a person needs to know about a certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct CertInfo {
    /// The subject's distinguished name.
    pub subject: String,
    /// The issuer's distinguished name.
    pub issuer: String,
    /// Subject alternative names (DNS and IP), or the common name when there are none.
    pub names: Vec<String>,
    /// The certificate has no subjectAltName: `names` holds its Common Name, which TLS
    /// clients (rustls, browsers: RFC 6125, RFC 2818) never match a host name against.
    pub names_from_cn: bool,
    /// Start of the validity period.
    pub not_before: SystemTime,
    /// End of the validity period.
    pub not_after: SystemTime,
    /// Lowercase hex with `:` between bytes, as `openssl x509 -fingerprint -sha256` prints it.
    pub fingerprint_sha256: String,
    /// Subject and issuer are the same name.
    pub self_signed: bool,
}

/// Why a server certificate was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum CertProblem {
    /// Past its validity period.
    Expired { not_after: SystemTime },
    /// Before its validity period.
    NotYetValid { not_before: SystemTime },
    /// Not issued for `host`, the name we connected to; `names` are the ones it holds.
    HostMismatch { host: String, names: Vec<String> },
    /// Signed by an authority not in the system store or `--ca-file`.
    UnknownIssuer,
    /// Self-signed and not trusted.
    SelfSigned,
    /// Not the certificate pinned with `--tls-fingerprint`.
    FingerprintMismatch { expected: String, actual: String },
    /// Any other refusal, with its reason.
    Other(String),
}

/// Why a server certificate was accepted without passing every check: the pin, or one of the
/// insecure opt-outs. A certificate that passed every check has none. Its `Display` is the
/// sentence `check` prints (in `report.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// It is the certificate pinned with `--tls-fingerprint`; no other check applies.
    Pinned,
    /// The chain could not be verified; `--tls-allow-self-signed` accepted it (dates and host
    /// name were still checked).
    IssuerNotVerified,
    /// The host name did not match; `--tls-allow-mismatched-host` accepted it.
    HostNotVerified,
}

/// A TLS failure, worded for a person.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The server's certificate was refused; `cert` is absent when it could not be parsed.
    #[error("{}", report::certificate_message(.problem, .cert.as_deref()))]
    Certificate { problem: CertProblem, cert: Option<Box<CertInfo>> },
    /// The handshake failed for another reason.
    #[error("{0}")]
    Handshake(String),
    /// The connection failed.
    #[error("{0}")]
    Io(io::Error),
    /// The TLS options cannot be used.
    #[error("{0}")]
    Config(String),
}
