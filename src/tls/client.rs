//! The client side: settings for a mount ([`TlsClient`]), the control connection's handshake,
//! and the data connections' handshakes that resume it ([`DataTls`]).

use std::io;
use std::net::TcpStream;
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use super::resume::{SessionStore, TicketShortage};
use super::verify::Verifier;
use super::{Accepted, TlsError, TlsOptions, TlsStream, TlsVersion};

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

impl TlsClient {
    /// Which relaxation option accepted the last server certificate, if one had to.
    pub fn last_exception(&self) -> Option<Accepted> {
        self.verifier.last_exception()
    }

    /// Loads the trust store and builds the configuration for `opts`.
    pub fn new(opts: &TlsOptions) -> Result<TlsClient, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(Verifier::new(opts, &provider)?);
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
        stream.detach_store();
        let data = DataTls { version: stream.protocol_version(), ..data };
        Ok((stream, data))
    }
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
        self.verifier.clear_refusal();
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
        Ok(TlsStream::new(conn, tcp, self.store.clone()))
    }

    fn handshake_error(&self, e: io::Error) -> TlsError {
        if let Some((problem, cert)) = self.verifier.take_refusal() {
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
