//! An established TLS connection, and what it does at the end so later data connections can
//! still resume: read the tickets an upload never reads, then close cleanly.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rustls::{ClientConnection, HandshakeKind};

use super::cert::cert_info;
use super::resume::SessionStore;
use super::{CertInfo, TlsVersion};

/// An established TLS connection over TCP.
#[derive(Debug)]
pub struct TlsStream {
    inner: rustls::StreamOwned<ClientConnection, TcpStream>,
    /// The session's store, for data connections (to keep the ticket supply going).
    store: Option<Arc<SessionStore>>,
    tickets_before: u64,
    /// The server has ended its side (close_notify or EOF): it has sent everything.
    peer_done: bool,
}

/// Longest wait, at the end of an upload, for the ticket a TLS 1.3 server sends after the
/// handshake; only while the server has not shown that it sends none.
const TICKET_WAIT: Duration = Duration::from_millis(300);

impl TlsStream {
    /// A stream over a completed handshake; `store` is its session's, to keep the ticket
    /// supply going.
    pub(super) fn new(conn: ClientConnection, tcp: TcpStream, store: Arc<SessionStore>) -> TlsStream {
        let tickets_before = store.received.load(Ordering::Relaxed);
        TlsStream { inner: rustls::StreamOwned::new(conn, tcp), store: Some(store), tickets_before, peer_done: false }
    }

    /// Stops waiting for tickets at the end (the control connection's come with its replies).
    pub(super) fn detach_store(&mut self) {
        self.store = None;
    }

    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        self.inner.get_ref()
    }

    /// The server's certificate, described.
    pub fn peer_certificate(&self) -> Option<CertInfo> {
        self.inner.conn.peer_certificates()?.first().and_then(|c| cert_info(c))
    }

    /// The negotiated version, if it is one we know.
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
        let read = match self.inner.read(buf) {
            // Some servers close data connections without close_notify after the last byte;
            // the FTP reply (226) tells whether the transfer was complete, so this is EOF.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            other => other,
        };
        self.peer_done |= matches!(read, Ok(0)) && !buf.is_empty();
        read
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
        let Some(store) = self.store.clone() else { return };
        if self.protocol_version() != Some(TlsVersion::Tls13) || *store.data_tickets.lock() == Some(false) {
            return;
        }
        let got = |s: &SessionStore| s.received.load(Ordering::Relaxed) > self.tickets_before;
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
        if self.peer_done {
            reset_on_close(&self.inner.sock);
        }
    }
}

/// Makes closing `tcp` send a reset instead of a FIN. Only for a connection the server has
/// ended after sending everything (a download, a listing), once our close_notify is out: the
/// server has nothing left to tell us, and vsftpd, which closes its end with `SO_LINGER`
/// until our side acknowledges its FIN, otherwise sends the transfer's `226` a round trip
/// later. Never on an upload: a reset may discard data the server has not read yet.
fn reset_on_close(tcp: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: a valid socket descriptor and a correctly sized linger value.
    unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}
