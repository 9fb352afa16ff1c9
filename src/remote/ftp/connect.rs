//! Opening a session: resolve, connect with a timeout, the TLS mode (plain, `AUTH TLS`,
//! implicit), the greeting, the data connections' builder (only ever to the host we are
//! connected to), then login and setup ([`open_session`]). Each failure says which stage
//! failed and what to try.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use suppaftp::{FtpError, Status};

use super::reply;
use super::session::{Connection, DataNote, Endpoint, Features, Ftp, FtpSession, Security, TlsMode, tls_security};
use super::tls_adapter::{Connector, SessionTls};
use crate::remote::{RemoteError, Result};
use crate::tls::TlsClient;

/// A new session: connected, secured as the TLS mode says, logged in and set up. `features`
/// is filled by the first session of a mount.
pub fn open_session(ep: &Endpoint, features: &OnceLock<Arc<Features>>) -> Result<FtpSession> {
    let mut s = FtpSession::new(connect_secured(ep)?);
    s.login(ep)?;
    s.setup(ep, features)?;
    ep.greeted_before.store(true, Ordering::Relaxed);
    Ok(s)
}

pub fn resolve(ep: &Endpoint) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = (ep.host.as_str(), ep.port)
        .to_socket_addrs()
        .map_err(|e| {
            RemoteError::Connection(format!("could not resolve host '{}': {e}. Check the host name", ep.host))
        })?
        .collect();
    if addrs.is_empty() {
        return Err(RemoteError::Connection(format!("host '{}' has no address", ep.host)));
    }
    Ok(addrs)
}

fn connect_error(ep: &Endpoint, addr: SocketAddr, e: &io::Error) -> RemoteError {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => RemoteError::Connection(format!(
            "connecting to {} ({addr}) was refused: nothing listens on that port, or a firewall rejects it. \
             Check the host and port (FTP usually uses 21, implicit FTPS 990)",
            ep.addr()
        )),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => RemoteError::Timeout(format!(
            "connecting to {} ({addr}) got no answer within {:?} (--connect-timeout): the host may be down, \
             or a firewall may drop the connection",
            ep.addr(),
            ep.connect_timeout
        )),
        _ => RemoteError::Connection(format!("connecting to {} ({addr}) failed: {e}", ep.addr())),
    }
}

pub fn tcp_connect(ep: &Endpoint) -> Result<TcpStream> {
    let mut last = None;
    for addr in resolve(ep)? {
        match TcpStream::connect_timeout(&addr, ep.connect_timeout) {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                tcp.set_write_timeout(Some(ep.io_timeout)).ok();
                // The greeting should come at once; a silent port often speaks implicit TLS.
                tcp.set_read_timeout(Some(ep.connect_timeout.min(ep.io_timeout))).ok();
                return Ok(tcp);
            }
            Err(e) => last = Some(connect_error(ep, addr, &e)),
        }
    }
    Err(last.expect("resolve returns at least one address"))
}

/// Builds data connections: only ever to the host we are connected to.
/// Opens the data connections of a session. With `tls`, the handshake starts right away.
fn data_stream_builder(
    ep: &Endpoint,
    peer: IpAddr,
    note: DataNote,
    tls: Option<Arc<SessionTls>>,
) -> impl Fn(SocketAddr) -> suppaftp::FtpResult<TcpStream> + Send + Sync + 'static {
    let (connect_timeout, io_timeout) = (ep.connect_timeout, ep.io_timeout);
    let logged = AtomicBool::new(false);
    move |announced: SocketAddr| {
        let ip = data_ip(announced.ip(), peer)
            .map_err(|msg| FtpError::ConnectionError(io::Error::new(io::ErrorKind::PermissionDenied, msg)))?;
        if ip != announced.ip() && !logged.swap(true, Ordering::Relaxed) {
            let msg = format!(
                "the server announced the private passive address {}; using {ip}, the address we are connected to \
                 (normal for a server behind NAT; set its public address, e.g. vsftpd's pasv_address, to avoid this)",
                announced.ip()
            );
            tracing::info!("{msg}");
            *note.lock() = Some(msg);
        }
        let addr = SocketAddr::new(ip, announced.port());
        let mut tcp = TcpStream::connect_timeout(&addr, connect_timeout)
            .map_err(|e| FtpError::ConnectionError(io::Error::new(e.kind(), data_channel_blocked(&addr, &e))))?;
        let _ = tcp.set_nodelay(true);
        tcp.set_read_timeout(Some(io_timeout)).map_err(FtpError::ConnectionError)?;
        tcp.set_write_timeout(Some(io_timeout)).map_err(FtpError::ConnectionError)?;
        if let Some(tls) = &tls {
            tls.start_data(&mut tcp);
        }
        Ok(tcp)
    }
}

/// The message for a data connection that cannot be opened: the seed's "partial connectivity".
pub fn data_channel_blocked(addr: &SocketAddr, e: &io::Error) -> String {
    format!(
        "opening the data connection to {addr} failed ({e}): the control connection works but the data channel \
         is blocked, usually by a firewall or NAT in front of the server's passive (PASV) port range. Listings and \
         transfers need those ports open; this is also why files can appear with zero bytes. Ask the server's \
         administrator to open (and announce) the passive port range, or try from another network"
    )
}

/// Where to open a data connection the server announced at `announced`.
/// A private or unspecified address (a server behind NAT) becomes the control peer; any other
/// host is refused, so a server can never point us at a third machine (FTP bounce).
pub fn data_ip(announced: IpAddr, peer: IpAddr) -> std::result::Result<IpAddr, String> {
    if announced == peer {
        return Ok(peer);
    }
    if is_local_or_private(announced) {
        return Ok(peer);
    }
    Err(format!(
        "the server asked for a data connection to {announced}, which is not the host we are connected to ({peer}); \
         refused (this is how FTP bounce attacks work)"
    ))
}

fn is_local_or_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Connects and applies the TLS mode, up to (not including) login.
pub fn connect_secured(ep: &Endpoint) -> Result<Connection> {
    let note = DataNote::default();
    match ep.tls {
        TlsMode::Implicit => connect_implicit(ep, SessionTls::new(tls_client(ep)?, ep.io_timeout), note),
        TlsMode::Off => {
            Ok(Connection { ftp: connect_plain(ep, &note)?, security: Security::Plain, tls: None, data_note: note })
        }
        TlsMode::Explicit | TlsMode::Auto => {
            let ftp = connect_plain(ep, &note)?;
            upgrade_explicit(ep, ftp, SessionTls::new(tls_client(ep)?, ep.io_timeout), note)
        }
    }
}

/// `AUTH TLS` on a plain control connection; in `auto` mode a server without TLS is used
/// unencrypted, with a warning.
pub fn upgrade_explicit(ep: &Endpoint, ftp: Ftp, tls: Arc<SessionTls>, note: DataNote) -> Result<Connection> {
    match ftp.into_secure(Connector(tls.clone()), &ep.host) {
        Ok(ftp) => {
            restore_io_timeout(&ftp, ep);
            // Data connections from now on begin their handshake as soon as they are open.
            let peer = ftp.get_ref().peer_addr().map(|a| a.ip());
            let ftp = match peer {
                Ok(ip) => ftp.passive_stream_builder(data_stream_builder(ep, ip, note.clone(), Some(tls.clone()))),
                Err(_) => ftp,
            };
            Ok(Connection { ftp, security: tls_security(&tls), tls: Some(tls), data_note: note })
        }
        Err(FtpError::UnexpectedResponse(r)) if ep.tls == TlsMode::Auto && reply::code(&r) >= 500 => {
            tracing::warn!(
                "{} does not offer TLS (AUTH TLS: \"{}\"): continuing WITHOUT encryption; the password and \
                 files cross the network in clear text. Use --tls explicit to require TLS",
                ep.addr(),
                reply::text(&r)
            );
            Ok(Connection { ftp: connect_plain(ep, &note)?, security: Security::Plain, tls: None, data_note: note })
        }
        Err(FtpError::UnexpectedResponse(r)) => Err(RemoteError::Tls(format!(
            "asking {} for TLS (AUTH TLS) failed: server said \"{}\". It may not support FTPS on this port: \
             use --tls implicit if it is an implicit-TLS port (usually 990), or --tls off (insecure)",
            ep.addr(),
            reply::text(&r)
        ))),
        Err(e) if ep.tls == TlsMode::Auto => Err(match tls_failure(ep, &tls, e) {
            RemoteError::Tls(m) => RemoteError::Tls(format!(
                "{m}. The server accepted AUTH TLS, so the connection is not continued in plain text: \
                 that would be a downgrade anyone on the path could force. If you accept sending the password \
                 and files unencrypted to this server, use --tls off (insecure)"
            )),
            other => other,
        }),
        Err(e) => Err(tls_failure(ep, &tls, e)),
    }
}

fn tls_client(ep: &Endpoint) -> Result<Arc<TlsClient>> {
    ep.tls_client.clone().ok_or_else(|| RemoteError::Tls("TLS was requested but no TLS configuration was built".into()))
}

fn tls_failure(ep: &Endpoint, tls: &SessionTls, e: FtpError) -> RemoteError {
    match tls.error_message() {
        Some(detail) => RemoteError::Tls(format!("TLS with {} failed: {detail}", ep.addr())),
        None => reply::map(&format!("setting up TLS with {}", ep.addr()), e),
    }
}

fn restore_io_timeout(ftp: &Ftp, ep: &Endpoint) {
    let _ = ftp.get_ref().set_read_timeout(Some(ep.io_timeout));
}

pub fn connect_plain(ep: &Endpoint, note: &DataNote) -> Result<Ftp> {
    let tcp = tcp_connect(ep)?;
    let peer = tcp.peer_addr().map_err(|e| RemoteError::Connection(format!("connecting to {}: {e}", ep.addr())))?;
    let ftp = Ftp::connect_with_stream(tcp).map_err(|e| greeting_error(ep, e))?;
    let ftp = ftp.passive_stream_builder(data_stream_builder(ep, peer.ip(), note.clone(), None));
    restore_io_timeout(&ftp, ep);
    Ok(ftp)
}

fn greeting_error(ep: &Endpoint, e: FtpError) -> RemoteError {
    let waited = ep.connect_timeout.min(ep.io_timeout);
    match e {
        FtpError::ConnectionError(ref io)
            if matches!(io.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
        {
            if !ep.greeted_before.load(Ordering::Relaxed) && speaks_tls(ep) {
                RemoteError::Tls(format!(
                    "connected to {} but no FTP greeting arrived within {waited:?}, and the port answers a TLS \
                     handshake: it speaks implicit TLS. Use --tls implicit (or an ftps:// URL with port 990)",
                    ep.addr()
                ))
            } else {
                RemoteError::Timeout(format!(
                    "connected to {} but no FTP greeting arrived within {waited:?}: the server is stuck or this \
                     is not an FTP port. If this port speaks implicit TLS (usually 990), use --tls implicit",
                    ep.addr()
                ))
            }
        }
        FtpError::BadResponse => RemoteError::Protocol(format!(
            "{} did not answer like an FTP server. If this port speaks implicit TLS (usually 990), use --tls implicit",
            ep.addr()
        )),
        e => reply::map(&format!("waiting for the greeting of {}", ep.addr()), e),
    }
}

/// Whether a fresh connection to the port completes (or gets as far as the certificate of) a
/// TLS handshake: then it speaks implicit TLS.
fn speaks_tls(ep: &Endpoint) -> bool {
    let Ok(tcp) = tcp_connect(ep) else { return false };
    let client = match &ep.tls_client {
        Some(c) => c.clone(),
        None => match TlsClient::new(&crate::tls::TlsOptions::default()) {
            Ok(c) => Arc::new(c),
            Err(_) => return false,
        },
    };
    match client.connect_control(&ep.host, tcp) {
        Ok(_) => true,
        Err(e) => matches!(e, crate::tls::TlsError::Certificate { .. }),
    }
}

/// The greeting a port sends unasked within a moment, if it is a plain FTP greeting (`220 …`).
fn plain_greeting(ep: &Endpoint) -> Option<String> {
    use std::io::Read;
    let mut tcp = tcp_connect(ep).ok()?;
    tcp.set_read_timeout(Some(ep.connect_timeout.min(Duration::from_secs(3)))).ok()?;
    let mut buf = [0u8; 512];
    let n = tcp.read(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    let line = text.lines().next()?.trim().to_string();
    line.starts_with("220").then_some(line)
}

/// Implicit TLS: suppaftp connects the socket itself (without a timeout), so the whole
/// connect runs on a helper thread that we stop waiting for after the deadline.
pub fn connect_implicit(ep: &Endpoint, tls: Arc<SessionTls>, note: DataNote) -> Result<Connection> {
    let addr = resolve(ep)?[0];
    let (tx, rx) = mpsc::channel();
    let (conn, host) = (Connector(tls.clone()), ep.host.clone());
    std::thread::spawn(move || {
        let _ = tx.send(Ftp::connect_secure_implicit(addr, conn, &host));
    });
    let deadline = ep.connect_timeout + ep.io_timeout;
    let plain_port = |ep: &Endpoint| {
        // Only a port never seen working may be the wrong kind; probing costs another wait.
        let probe = !ep.greeted_before.load(Ordering::Relaxed);
        probe.then(|| plain_greeting(ep)).flatten().map(|greeting| {
            RemoteError::Tls(format!(
                "implicit TLS with {} failed: this port speaks plain FTP (it greeted with \"{greeting}\") rather than \
                 implicit TLS. Use --tls explicit (an ftps:// URL with this port) for TLS via AUTH TLS, or --tls auto",
                ep.addr()
            ))
        })
    };
    let ftp = match rx.recv_timeout(deadline) {
        Ok(Ok(ftp)) => ftp,
        Ok(Err(FtpError::ConnectionError(e))) if tls.peek_certificate_error().is_none() => {
            let _ = tls.take_error();
            return Err(match e.kind() {
                io::ErrorKind::ConnectionRefused | io::ErrorKind::TimedOut => connect_error(ep, addr, &e),
                _ => plain_port(ep).unwrap_or_else(|| {
                    RemoteError::Connection(format!(
                        "implicit TLS with {}: {e}. If this port speaks plain FTP or explicit TLS (usually 21), \
                         use --tls explicit (ftps://host:21/) or --tls auto",
                        ep.addr()
                    ))
                }),
            });
        }
        Ok(Err(e)) => {
            if tls.peek_certificate_error().is_none() {
                if let Some(err) = plain_port(ep) {
                    let _ = tls.take_error();
                    return Err(err);
                }
            }
            return Err(tls_failure(ep, &tls, e));
        }
        Err(_) => {
            return Err(RemoteError::Timeout(format!(
                "implicit TLS with {} did not complete within {deadline:?}: the host may be down or the port \
                 may not speak implicit TLS (try --tls explicit on port 21)",
                ep.addr()
            )));
        }
    };
    let mut ftp = ftp.passive_stream_builder(data_stream_builder(ep, addr.ip(), note.clone(), Some(tls.clone())));
    // suppaftp sends these itself only for explicit TLS.
    for cmd in ["PBSZ 0", "PROT P"] {
        ftp.custom_command(cmd, &[Status::CommandOk])
            .map_err(|e| reply::map(&format!("protecting data connections ({cmd})"), e))?;
    }
    Ok(Connection { ftp, security: tls_security(&tls), tls: Some(tls), data_note: note })
}

#[cfg(test)]
#[path = "connect_tests.rs"]
mod tests;
