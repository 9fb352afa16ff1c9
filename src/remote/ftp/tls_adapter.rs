//! Plugs [`crate::tls`] into suppaftp: one connector per FTP session, which does the control
//! handshake first and then resumes that same TLS session on every data connection.

use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use suppaftp::{FtpError, FtpResult};

use crate::tls::{self, DataTls, TlsClient};

/// suppaftp's view of one of our TLS streams.
#[derive(Debug)]
pub struct FtpTlsStream(tls::TlsStream);

impl suppaftp::TlsStream for FtpTlsStream {
    type InnerStream = tls::TlsStream;

    fn tcp_stream(self) -> FtpResult<TcpStream> {
        self.0.tcp().try_clone().map_err(FtpError::ConnectionError)
    }

    fn get_ref(&self) -> &TcpStream {
        self.0.tcp()
    }

    fn mut_ref(&mut self) -> &mut tls::TlsStream {
        &mut self.0
    }
}

/// The TLS side of one FTP session. suppaftp calls `connect` for the control channel first and
/// then once per data connection; the first call sets up the session the others resume.
#[derive(Debug)]
pub struct SessionTls {
    client: Arc<TlsClient>,
    data: OnceLock<DataTls>,
    /// suppaftp flattens errors to strings; the full error is kept here for the caller.
    last_error: Mutex<Option<tls::TlsError>>,
    /// Certificate and protocol of the control channel, for `check` and logs.
    pub(crate) control_info: Mutex<Option<(Option<tls::CertInfo>, Option<tls::TlsVersion>)>>,
    io_timeout: std::time::Duration,
    /// A data connection whose handshake began when it was opened (by its descriptor).
    early: Mutex<Option<(RawFd, Result<tls::StartedHandshake, tls::TlsError>)>>,
}

impl SessionTls {
    pub fn new(client: Arc<TlsClient>, io_timeout: std::time::Duration) -> Arc<Self> {
        Arc::new(SessionTls {
            client,
            data: OnceLock::new(),
            last_error: Mutex::new(None),
            control_info: Mutex::new(None),
            io_timeout,
            early: Mutex::new(None),
        })
    }

    /// Begins the TLS handshake of a data connection just opened, if the control channel's
    /// session is known (always, once logged in): see [`tls::DataTls::start`].
    pub fn start_data(&self, tcp: &mut TcpStream) {
        if let Some(data) = self.data.get() {
            *self.early.lock() = Some((tcp.as_raw_fd(), data.start(tcp)));
        }
    }

    /// See [`TlsClient::tls13_tickets_ran_out`].
    pub fn tls13_tickets_ran_out(&self) -> bool {
        self.client.tls13_tickets_ran_out()
    }

    /// The detailed error behind the last `SecureError` suppaftp reported, if any.
    pub fn take_error(&self) -> Option<tls::TlsError> {
        self.last_error.lock().take()
    }

    /// The last failure's message, left in place (for `check`, which also wants its details).
    pub fn error_message(&self) -> Option<String> {
        self.last_error.lock().as_ref().map(|e| e.to_string())
    }

    /// The certificate refusal behind the last failure, left in place.
    pub fn peek_certificate_error(&self) -> Option<(tls::CertProblem, Option<tls::CertInfo>)> {
        match &*self.last_error.lock() {
            Some(tls::TlsError::Certificate { problem, cert }) => Some((problem.clone(), cert.as_deref().cloned())),
            _ => None,
        }
    }

    /// Certificate and protocol of the control channel, once the handshake succeeded.
    pub fn control_info(&self) -> Option<(Option<tls::CertInfo>, Option<tls::TlsVersion>)> {
        self.control_info.lock().clone()
    }

    fn fail(&self, err: tls::TlsError) -> FtpError {
        let msg = err.to_string();
        *self.last_error.lock() = Some(err);
        FtpError::SecureError(msg)
    }
}

/// suppaftp owns its connector, so the session's `Arc` is wrapped.
#[derive(Debug, Clone)]
pub struct Connector(pub Arc<SessionTls>);

impl suppaftp::TlsConnector for Connector {
    type Stream = FtpTlsStream;

    fn connect(&self, host: &str, tcp: TcpStream) -> FtpResult<FtpTlsStream> {
        let s = &self.0;
        // Implicit TLS hands us a socket suppaftp connected itself: give it our timeouts.
        let _ = tcp.set_read_timeout(Some(s.io_timeout));
        let _ = tcp.set_write_timeout(Some(s.io_timeout));
        let _ = tcp.set_nodelay(true);
        if let Some(data) = s.data.get() {
            let early = s.early.lock().take().filter(|(fd, _)| *fd == tcp.as_raw_fd());
            let stream = match early {
                Some((_, started)) => started.and_then(|started| data.finish(started, tcp)),
                None => data.connect(tcp),
            };
            return stream.map(FtpTlsStream).map_err(|e| s.fail(e));
        }
        let (stream, data) = s.client.connect_control(host, tcp).map_err(|e| s.fail(e))?;
        *s.control_info.lock() = Some((stream.peer_certificate(), stream.protocol_version()));
        let _ = s.data.set(data);
        Ok(FtpTlsStream(stream))
    }
}
