//! TLS for FTPS: the only module that imports rustls.
//!
//! - Certificates are checked against the system store (plus `--ca-file`); a refusal names the
//!   failed check (dates, host name, issuer) and the certificate's SHA-256 fingerprint.
//! - The insecure relaxations (`--tls-allow-self-signed`, `--tls-allow-mismatched-host`) and the
//!   exact pin (`--tls-fingerprint`) are explicit and logged.
//! - Each FTP control session gets its own resumption store, shared with its data connections:
//!   servers such as vsftpd (`require_ssl_reuse=YES`) only accept data connections that resume
//!   the control session, and each vsftpd session process has its own ticket keys.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionStore, Resumption, Tls12ClientSessionValue, Tls13ClientSessionValue, WebPkiServerVerifier,
};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, NamedGroup, SignatureScheme,
};
use sha2::{Digest, Sha256};

use crate::clock::format_utc;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
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
    pub subject: String,
    pub issuer: String,
    /// Subject alternative names (DNS and IP), or the common name when there are none.
    pub names: Vec<String>,
    /// The certificate has no subjectAltName: `names` holds its Common Name, which TLS
    /// clients (rustls, browsers: RFC 6125, RFC 2818) never match a host name against.
    pub names_from_cn: bool,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Lowercase hex with `:` between bytes, as `openssl x509 -fingerprint -sha256` prints it.
    pub fingerprint_sha256: String,
    pub self_signed: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CertProblem {
    Expired { not_after: SystemTime },
    NotYetValid { not_before: SystemTime },
    HostMismatch { host: String, names: Vec<String> },
    UnknownIssuer,
    SelfSigned,
    FingerprintMismatch { expected: String, actual: String },
    Other(String),
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}", certificate_message(.problem, .cert.as_deref()))]
    Certificate { problem: CertProblem, cert: Option<Box<CertInfo>> },
    #[error("{0}")]
    Handshake(String),
    #[error("{0}")]
    Io(io::Error),
    #[error("{0}")]
    Config(String),
}

fn certificate_message(problem: &CertProblem, cert: Option<&CertInfo>) -> String {
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
    accepted_by: Option<&str>,
) -> Vec<String> {
    let mark = |ok: bool| if ok { "✓" } else { "✗" };
    let now = SystemTime::now();
    let dates_ok = cert.not_before <= now && now <= cert.not_after;
    // The name check as TLS makes it: against subjectAltName only, and never passed when the
    // handshake failed on it.
    let name_refused = matches!(refused, Some(CertProblem::HostMismatch { .. }));
    let in_names = cert.names.iter().any(|n| name_matches(n, host));
    let host_ok = in_names && !cert.names_from_cn && !name_refused;
    let issuer = match refused {
        Some(CertProblem::SelfSigned) => format!("{} self-signed, not trusted", mark(false)),
        Some(CertProblem::UnknownIssuer) => {
            format!("{} issuer not trusted (not in the system store or --ca-file)", mark(false))
        }
        Some(CertProblem::FingerprintMismatch { .. }) => {
            format!("{} not the certificate pinned with --tls-fingerprint", mark(false))
        }
        _ if accepted_by.is_some_and(|a| a.starts_with("issuer")) => format!("{} issuer not verified", mark(false)),
        _ if accepted_by.is_some_and(|a| a.starts_with("pinned")) => "pinned".to_string(),
        _ => format!("{} issuer trusted", mark(true)),
    };
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
            "checks: {issuer}; {} host name '{host}'{}; {} dates{}",
            mark(host_ok),
            match () {
                _ if host_ok => "",
                _ if cert.names_from_cn && in_names => " only in the Common Name, which TLS ignores: no subjectAltName",
                _ if cert.names_from_cn => " not in the certificate (no subjectAltName)",
                _ => " not in the names",
            },
            mark(dates_ok),
            if dates_ok {
                ""
            } else if now < cert.not_before {
                " (not valid yet)"
            } else {
                " (expired)"
            },
        ),
    ];
    if let Some(why) = accepted_by {
        lines.push(format!("! {why}"));
    }
    lines
}

/// The subjectAltName a certificate for `host` needs: `DNS:name` or `IP:address`.
fn san_for(host: &str) -> String {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::IpAddr>().is_ok() { format!("IP:{bare}") } else { format!("DNS:{host}") }
}

/// `*.example.com` matches one label; names compare without case.
fn name_matches(pattern: &str, host: &str) -> bool {
    let (p, h) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
    match p.strip_prefix("*.") {
        Some(rest) => h.split_once('.').is_some_and(|(_, tail)| tail == rest),
        None => p == h,
    }
}

fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Accepts `AB:CD…`, `abcd…`, with or without separators.
fn normalize_fingerprint(s: &str) -> Result<String, TlsError> {
    let hex: String = s.chars().filter(|c| !matches!(c, ':' | ' ' | '-')).collect::<String>().to_ascii_lowercase();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(TlsError::Config(format!(
            "--tls-fingerprint '{s}' is not a SHA-256 fingerprint (64 hex digits, colons allowed)"
        )));
    }
    Ok(hex.as_bytes().chunks(2).map(|p| std::str::from_utf8(p).expect("ascii")).collect::<Vec<_>>().join(":"))
}

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

/// Checks certificates with readable outcomes; remembers the last refusal for the caller,
/// because rustls only reports a generic alert through the handshake.
#[derive(Debug)]
struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    algorithms: WebPkiSupportedAlgorithms,
    allow_mismatched_host: bool,
    allow_self_signed: bool,
    pin: Option<String>,
    last_refusal: Mutex<Option<(CertProblem, Option<CertInfo>)>>,
    /// Which relaxation accepted the last certificate, if one did (for `check`).
    last_exception: Mutex<Option<&'static str>>,
}

impl Verifier {
    fn refuse(&self, problem: CertProblem, der: &[u8]) -> rustls::Error {
        let text = format!("{problem:?}");
        *self.last_refusal.lock() = Some((problem, cert_info(der)));
        rustls::Error::General(text)
    }

    fn check_dates(&self, der: &[u8], now: UnixTime) -> Result<(), CertProblem> {
        let info = cert_info(der).ok_or_else(|| CertProblem::Other("the certificate cannot be parsed".into()))?;
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs());
        if now > info.not_after {
            return Err(CertProblem::Expired { not_after: info.not_after });
        }
        if now < info.not_before {
            return Err(CertProblem::NotYetValid { not_before: info.not_before });
        }
        Ok(())
    }

    fn check_host(&self, end_entity: &CertificateDer<'_>, server_name: &ServerName<'_>) -> Result<(), CertProblem> {
        if self.allow_mismatched_host {
            return Ok(());
        }
        let parsed = ParsedCertificate::try_from(end_entity).map_err(|e| CertProblem::Other(e.to_string()))?;
        rustls::client::verify_server_name(&parsed, server_name).map_err(|_| self.mismatch(end_entity, server_name))
    }

    fn mismatch(&self, der: &[u8], server_name: &ServerName<'_>) -> CertProblem {
        CertProblem::HostMismatch {
            host: server_name_text(server_name),
            names: cert_info(der).map(|c| c.names).unwrap_or_default(),
        }
    }

    /// The outcome when the chain cannot be verified but self-signed certificates are allowed.
    fn relaxed(&self, ee: &CertificateDer<'_>, name: &ServerName<'_>, now: UnixTime) -> Result<(), CertProblem> {
        self.check_dates(ee, now)?;
        self.check_host(ee, name)
    }
}

fn server_name_text(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().to_string(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => format!("{name:?}"),
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.last_exception.lock() = None;
        if let Some(pin) = &self.pin {
            let actual = fingerprint(end_entity);
            if &actual == pin {
                *self.last_exception.lock() = Some("pinned with --tls-fingerprint: no other check applies");
                return Ok(ServerCertVerified::assertion());
            }
            return Err(self.refuse(CertProblem::FingerprintMismatch { expected: pin.clone(), actual }, end_entity));
        }
        let err = match self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Ok(ok) => return Ok(ok),
            Err(e) => e,
        };
        let rustls::Error::InvalidCertificate(ce) = &err else {
            return Err(self.refuse(CertProblem::Other(err.to_string()), end_entity));
        };
        // A self-signed leaf fails chain building in several ways (unknown issuer, "CA used as
        // end entity", ...): all of them mean "self-signed" to a person.
        let self_signed = cert_info(end_entity).is_some_and(|c| c.self_signed);
        // Anything but a name or date problem is about the chain: for example webpki reports
        // a signature-algorithm mismatch when the trust store holds a different certificate
        // with the same name (Debian's snakeoil "CN=localhost").
        let chain_failed = !matches!(
            ce,
            CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. }
                | CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. }
        );
        let outcome = match ce {
            _ if chain_failed && self.allow_self_signed => self.relaxed(end_entity, server_name, now),
            _ if chain_failed && self_signed => Err(CertProblem::SelfSigned),
            CertificateError::UnknownIssuer => Err(CertProblem::UnknownIssuer),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                // webpki checks the chain and dates before the name, so only the name failed.
                if self.allow_mismatched_host { Ok(()) } else { Err(self.mismatch(end_entity, server_name)) }
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                Err(self.check_dates(end_entity, now).err().unwrap_or(CertProblem::Other("expired".into())))
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                Err(self.check_dates(end_entity, now).err().unwrap_or(CertProblem::Other("not yet valid".into())))
            }
            other => Err(CertProblem::Other(format!("{other:?}"))),
        };
        match outcome {
            Ok(()) => {
                *self.last_exception.lock() = Some(if chain_failed {
                    "issuer not verified: accepted by --tls-allow-self-signed (insecure)"
                } else {
                    "host name not verified: accepted by --tls-allow-mismatched-host (insecure)"
                });
                Ok(ServerCertVerified::assertion())
            }
            Err(problem) => Err(self.refuse(problem, end_entity)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Resumption state of one FTP session: its control connection and its data connections.
/// Every TLS 1.3 ticket the server hands out (on any of them) is kept, because rustls uses up
/// a ticket per resumption; the TLS 1.2 session is reused as is.
#[derive(Debug, Default)]
struct SessionStore {
    kx_hint: Mutex<Option<NamedGroup>>,
    tls12: Mutex<Option<Tls12ClientSessionValue>>,
    tls13: Mutex<VecDeque<Tls13ClientSessionValue>>,
    /// Tickets received so far, to tell whether a data connection brought one.
    received: std::sync::atomic::AtomicU64,
    /// Whether this server sends tickets on data connections (unknown until first seen).
    data_tickets: Mutex<Option<bool>>,
}

/// Tickets kept per session; servers send one or two per handshake.
const MAX_TICKETS: usize = 16;

impl ClientSessionStore for SessionStore {
    fn set_kx_hint(&self, _: ServerName<'static>, group: NamedGroup) {
        *self.kx_hint.lock() = Some(group);
    }
    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        *self.kx_hint.lock()
    }
    fn set_tls12_session(&self, _: ServerName<'static>, value: Tls12ClientSessionValue) {
        *self.tls12.lock() = Some(value);
    }
    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.tls12.lock().clone()
    }
    fn remove_tls12_session(&self, _: &ServerName<'static>) {
        *self.tls12.lock() = None;
    }
    fn insert_tls13_ticket(&self, _: ServerName<'static>, value: Tls13ClientSessionValue) {
        self.received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut t = self.tls13.lock();
        if t.len() == MAX_TICKETS {
            t.pop_front();
        }
        t.push_back(value);
    }
    fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        // Newest first: older tickets are likelier to have expired.
        self.tls13.lock().pop_back()
    }
}

/// TLS settings for a mount; cheap to share between sessions.
#[derive(Debug)]
pub struct TlsClient {
    base: ClientConfig,
    /// The same, TLS 1.2 only: for servers whose TLS 1.3 sessions cannot be resumed often
    /// enough (see [`TicketShortage`]). `None` when `base` is TLS 1.2 only already.
    base_tls12: Option<ClientConfig>,
    verifier: Arc<Verifier>,
    shortage: Arc<TicketShortage>,
}

/// Set once a TLS 1.3 data connection had no ticket left to resume the control session with.
/// rustls spends a ticket per resumption, and some servers hand out one or two per session
/// and none on data connections (ProFTPD's mod_tls), while demanding that every data
/// connection resume the control session. TLS 1.2 sessions resume any number of times, so
/// from then on new sessions use TLS 1.2.
#[derive(Debug, Default)]
struct TicketShortage(std::sync::atomic::AtomicBool);

impl TicketShortage {
    fn note(&self) {
        if !self.0.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                "the server gave no TLS 1.3 ticket to resume the control session on another data connection \
                 (servers such as ProFTPD hand out one per session, and refuse data connections that do not \
                 resume it); new sessions use TLS 1.2, whose sessions resume any number of times"
            );
        }
    }

    fn noted(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl TlsClient {
    /// Which relaxation option accepted the last server certificate, if one had to.
    pub fn last_exception(&self) -> Option<&'static str> {
        *self.verifier.last_exception.lock()
    }

    pub fn new(opts: &TlsOptions) -> Result<TlsClient, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = Arc::new(load_roots(opts.ca_file.as_deref())?);
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| TlsError::Config(format!("setting up certificate checks: {e}")))?;
        let pin = opts.fingerprint_sha256.as_deref().map(normalize_fingerprint).transpose()?;
        if opts.allow_self_signed && pin.is_none() {
            tracing::warn!("--tls-allow-self-signed: certificates from unknown issuers are accepted (insecure)");
        }
        if opts.allow_mismatched_host && pin.is_none() {
            tracing::warn!("--tls-allow-mismatched-host: certificates for other host names are accepted (insecure)");
        }
        if let Some(p) = &pin {
            tracing::info!("trusting exactly the server certificate with SHA-256 fingerprint {p}");
        }
        let verifier = Arc::new(Verifier {
            webpki,
            algorithms: provider.signature_verification_algorithms,
            allow_mismatched_host: opts.allow_mismatched_host,
            allow_self_signed: opts.allow_self_signed,
            pin,
            last_refusal: Mutex::new(None),
            last_exception: Mutex::new(None),
        });
        let versions: &[&'static rustls::SupportedProtocolVersion] = match opts.max_version {
            Some(TlsVersion::Tls12) => &[&rustls::version::TLS12],
            _ => &[&rustls::version::TLS13, &rustls::version::TLS12],
        };
        let config = |versions: &[&'static rustls::SupportedProtocolVersion]| {
            ClientConfig::builder_with_provider(provider.clone() as Arc<CryptoProvider>)
                .with_protocol_versions(versions)
                .map_err(|e| TlsError::Config(e.to_string()))
                .map(|b| b.dangerous().with_custom_certificate_verifier(verifier.clone()).with_no_client_auth())
        };
        let base = config(versions)?;
        let base_tls12 = match versions.len() {
            1 => None,
            _ => Some(config(&[&rustls::version::TLS12])?),
        };
        Ok(TlsClient { base, base_tls12, verifier, shortage: Default::default() })
    }

    /// Whether TLS 1.3 data connections ran out of tickets to resume with (new sessions then
    /// use TLS 1.2; see [`TicketShortage`]).
    pub fn tls13_tickets_ran_out(&self) -> bool {
        self.shortage.noted()
    }

    /// Handshake on a fresh control connection. The returned [`DataTls`] resumes this
    /// session on the session's data connections.
    pub fn connect_control(&self, host: &str, tcp: TcpStream) -> Result<(TlsStream, DataTls), TlsError> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| TlsError::Config(format!("'{host}' is not a valid host name for TLS")))?;
        let mut config = match &self.base_tls12 {
            Some(tls12) if self.shortage.noted() => tls12.clone(),
            _ => self.base.clone(),
        };
        let store = Arc::new(SessionStore::default());
        config.resumption = Resumption::store(store.clone());
        let data = DataTls {
            config: Arc::new(config),
            name,
            verifier: self.verifier.clone(),
            store,
            shortage: self.shortage.clone(),
            version: None,
        };
        let mut tcp = tcp;
        let started = data.start(&mut tcp)?;
        let mut stream = data.handshake(started.0, tcp)?;
        // The control connection's tickets arrive with its next reply; no need to wait here.
        stream.store = None;
        let data = DataTls { version: stream.protocol_version(), ..data };
        Ok((stream, data))
    }
}

fn load_roots(ca_file: Option<&std::path::Path>) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if added == 0 && ca_file.is_none() {
        tracing::warn!("no trusted certificate authorities found on this system; pass --ca-file");
    }
    if let Some(path) = ca_file {
        let pem =
            std::fs::read(path).map_err(|e| TlsError::Config(format!("reading --ca-file {}: {e}", path.display())))?;
        let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::Config(format!("--ca-file {} is not valid PEM: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(TlsError::Config(format!("--ca-file {} holds no PEM certificates", path.display())));
        }
        for c in certs {
            roots.add(c).map_err(|e| TlsError::Config(format!("--ca-file {}: {e}", path.display())))?;
        }
    }
    Ok(roots)
}

/// TLS for the data connections of one FTP session.
#[derive(Debug, Clone)]
pub struct DataTls {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    verifier: Arc<Verifier>,
    store: Arc<SessionStore>,
    shortage: Arc<TicketShortage>,
    /// The control connection's protocol.
    version: Option<TlsVersion>,
}

/// A data connection's handshake whose ClientHello is already sent.
pub struct StartedHandshake(ClientConnection);

impl std::fmt::Debug for StartedHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StartedHandshake")
    }
}

impl DataTls {
    /// Handshake on a data connection, resuming the control session.
    pub fn connect(&self, mut tcp: TcpStream) -> Result<TlsStream, TlsError> {
        let started = self.start(&mut tcp)?;
        self.finish(started, tcp)
    }

    /// Sends the ClientHello at once. Called as soon as a data connection is open, before the
    /// transfer command: the server reads it when it takes the connection, and its answer
    /// comes with the transfer's "150", a round trip earlier than a handshake begun after it.
    pub fn start(&self, tcp: &mut TcpStream) -> Result<StartedHandshake, TlsError> {
        if self.version == Some(TlsVersion::Tls13) && self.store.tls13.lock().is_empty() {
            self.shortage.note();
        }
        let mut conn = ClientConnection::new(self.config.clone(), self.name.clone())
            .map_err(|e| TlsError::Handshake(format!("starting TLS: {e}")))?;
        *self.verifier.last_refusal.lock() = None;
        while conn.wants_write() {
            conn.write_tls(tcp).map_err(|e| self.handshake_error(e))?;
        }
        Ok(StartedHandshake(conn))
    }

    /// Completes a handshake begun with [`DataTls::start`] on the same connection.
    pub fn finish(&self, started: StartedHandshake, tcp: TcpStream) -> Result<TlsStream, TlsError> {
        let stream = self.handshake(started.0, tcp)?;
        if !stream.resumed() {
            tracing::debug!("a data connection's TLS session was not resumed; strict servers refuse this (522)");
        }
        Ok(stream)
    }

    fn handshake(&self, mut conn: ClientConnection, mut tcp: TcpStream) -> Result<TlsStream, TlsError> {
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut tcp) {
                return Err(self.handshake_error(e));
            }
        }
        let tickets_before = self.store.received.load(std::sync::atomic::Ordering::Relaxed);
        Ok(TlsStream { inner: rustls::StreamOwned::new(conn, tcp), store: Some(self.store.clone()), tickets_before })
    }

    fn handshake_error(&self, e: io::Error) -> TlsError {
        if let Some((problem, cert)) = self.verifier.last_refusal.lock().take() {
            return TlsError::Certificate { problem, cert: cert.map(Box::new) };
        }
        let rustls_err = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
        match (e.kind(), rustls_err) {
            (_, Some(rustls::Error::InvalidMessage(_))) => TlsError::Handshake(
                "the server did not answer with TLS: this port may speak plain FTP (try --tls explicit with \
                 ftps:// on port 21, or --tls auto)"
                    .into(),
            ),
            (_, Some(rustls::Error::AlertReceived(alert))) => TlsError::Handshake(format!(
                "the server ended the TLS handshake ({alert:?}): it may not support TLS 1.2/1.3 or any cipher we offer"
            )),
            (_, Some(other)) => TlsError::Handshake(format!("TLS handshake failed: {other}")),
            (io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut, None) => TlsError::Handshake(
                "the server did not answer the TLS handshake in time (--io-timeout); the port may expect plain FTP"
                    .into(),
            ),
            (io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset, None) => TlsError::Handshake(
                "the server closed the connection during the TLS handshake: it may not speak TLS on this port, \
                 or it refused our TLS versions or ciphers"
                    .into(),
            ),
            (_, None) => TlsError::Io(e),
        }
    }
}

/// An established TLS connection over TCP.
#[derive(Debug)]
pub struct TlsStream {
    inner: rustls::StreamOwned<ClientConnection, TcpStream>,
    /// The session's store, for data connections (to keep the ticket supply going).
    store: Option<Arc<SessionStore>>,
    tickets_before: u64,
}

/// Longest wait, at the end of an upload, for the ticket a TLS 1.3 server sends after the
/// handshake; only while the server has not shown that it sends none.
const TICKET_WAIT: Duration = Duration::from_millis(300);

impl TlsStream {
    pub fn tcp(&self) -> &TcpStream {
        self.inner.get_ref()
    }

    pub fn peer_certificate(&self) -> Option<CertInfo> {
        self.inner.conn.peer_certificates()?.first().and_then(|c| cert_info(c))
    }

    pub fn protocol_version(&self) -> Option<TlsVersion> {
        match self.inner.conn.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_2 => Some(TlsVersion::Tls12),
            rustls::ProtocolVersion::TLSv1_3 => Some(TlsVersion::Tls13),
            _ => None,
        }
    }

    /// Whether the handshake resumed an earlier session.
    pub fn resumed(&self) -> bool {
        self.inner.conn.handshake_kind() == Some(HandshakeKind::Resumed)
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            // Some servers close data connections without close_notify after the last byte;
            // the FTP reply (226) tells whether the transfer was complete, so this is EOF.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            other => other,
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl TlsStream {
    /// Processes whatever the server already sent without waiting: on an upload nobody reads
    /// the data connection, so the TLS 1.3 session tickets it carries would otherwise be lost,
    /// and later data connections could not resume (vsftpd: "522 session reuse required").
    fn absorb_pending(&mut self) {
        let sock = &mut self.inner.sock;
        if sock.set_nonblocking(true).is_err() {
            return;
        }
        while let Ok(n) = self.inner.conn.read_tls(sock) {
            if n == 0 || self.inner.conn.process_new_packets().is_err() {
                break;
            }
        }
        let _ = sock.set_nonblocking(false);
    }
}

impl TlsStream {
    /// TLS 1.3 data connections use up a ticket each; the server sends a new one right after
    /// the handshake, which an upload never reads. Waits (briefly) for it, so the next data
    /// connection can resume too.
    fn await_ticket(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(store) = self.store.clone() else { return };
        if self.protocol_version() != Some(TlsVersion::Tls13) || *store.data_tickets.lock() == Some(false) {
            return;
        }
        let got = |s: &SessionStore| s.received.load(Relaxed) > self.tickets_before;
        let start = std::time::Instant::now();
        let old_timeout = self.inner.sock.read_timeout().ok().flatten();
        let _ = self.inner.sock.set_read_timeout(Some(Duration::from_millis(10)));
        while !got(&store) && start.elapsed() < TICKET_WAIT {
            match self.inner.conn.read_tls(&mut self.inner.sock) {
                Ok(0) => break,
                Ok(_) => {
                    if self.inner.conn.process_new_packets().is_err() {
                        break;
                    }
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        let _ = self.inner.sock.set_read_timeout(old_timeout);
        let mut known = store.data_tickets.lock();
        if known.is_none() {
            *known = Some(got(&store));
            if !got(&store) {
                tracing::debug!("this server sends no TLS tickets on data connections; not waiting for them again");
            }
        }
    }
}

impl Drop for TlsStream {
    fn drop(&mut self) {
        self.absorb_pending();
        self.await_ticket();
        // Best effort: the socket has timeouts, so this never blocks long.
        self.inner.conn.send_close_notify();
        let _ = self.inner.conn.complete_io(&mut self.inner.sock);
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
