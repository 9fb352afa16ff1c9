//! Certificate verification: webpki against the trust store (system plus `--ca-file`), the
//! exact pin (`--tls-fingerprint`) and the insecure opt-outs, each refusal as a [`CertProblem`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use super::cert::{cert_info, fingerprint, normalize_fingerprint};
use super::{Accepted, CertInfo, CertProblem, TlsError, TlsOptions};

/// Checks certificates with readable outcomes; remembers the last refusal for the caller,
/// because rustls only reports a generic alert through the handshake.
#[derive(Debug)]
pub(super) struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    algorithms: WebPkiSupportedAlgorithms,
    allow_mismatched_host: bool,
    allow_self_signed: bool,
    pin: Option<String>,
    last_refusal: Mutex<Option<(CertProblem, Option<CertInfo>)>>,
    /// Which relaxation accepted the last certificate, if one did (for `check`).
    last_exception: Mutex<Option<Accepted>>,
}

impl Verifier {
    /// The verifier for `opts`; logs each insecure relaxation, and the pin.
    pub(super) fn new(opts: &TlsOptions, provider: &Arc<CryptoProvider>) -> Result<Verifier, TlsError> {
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
        Ok(Verifier {
            webpki,
            algorithms: provider.signature_verification_algorithms,
            allow_mismatched_host: opts.allow_mismatched_host,
            allow_self_signed: opts.allow_self_signed,
            pin,
            last_refusal: Mutex::new(None),
            last_exception: Mutex::new(None),
        })
    }

    /// Forgets the last refusal, before a new handshake.
    pub(super) fn clear_refusal(&self) {
        *self.last_refusal.lock() = None;
    }

    /// The refusal that failed the last handshake, if a certificate check did.
    pub(super) fn take_refusal(&self) -> Option<(CertProblem, Option<CertInfo>)> {
        self.last_refusal.lock().take()
    }

    /// Which relaxation accepted the last certificate, if one did.
    pub(super) fn last_exception(&self) -> Option<Accepted> {
        *self.last_exception.lock()
    }

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

    /// After webpki refused `ce`: the opt-out that accepts the certificate anyway, or the
    /// problem to show.
    fn exception_for(
        &self,
        ce: &CertificateError,
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<Accepted, CertProblem> {
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
        match ce {
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
        }?;
        Ok(if chain_failed { Accepted::IssuerNotVerified } else { Accepted::HostNotVerified })
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
                *self.last_exception.lock() = Some(Accepted::Pinned);
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
        match self.exception_for(ce, end_entity, server_name, now) {
            Ok(accepted) => {
                *self.last_exception.lock() = Some(accepted);
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
