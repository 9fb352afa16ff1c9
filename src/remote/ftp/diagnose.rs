//! The stages of a connection, one by one, for `ftpmount check`: what was observed at each,
//! and at the first failure the same message a mount would fail with (the stages call the
//! very functions a mount's sessions use).

use std::io::{Read, Write};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::connect;
use super::session::{self, DataNote, Endpoint, FtpSession, Security, TlsMode};
use super::tls_adapter::SessionTls;
use crate::remote::RemoteError;
use crate::tls;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// Works, with a caveat worth reading.
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub stage: &'static str,
    pub status: Status,
    /// What was observed; on failure, what went wrong and what to do.
    pub message: String,
    /// More lines (the certificate report, notes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

impl Stage {
    pub fn pass(stage: &'static str, message: impl Into<String>) -> Stage {
        Stage { stage, status: Status::Pass, message: message.into(), details: Vec::new() }
    }
    pub fn warn(stage: &'static str, message: impl Into<String>) -> Stage {
        Stage { stage, status: Status::Warn, message: message.into(), details: Vec::new() }
    }
    pub fn fail(stage: &'static str, err: impl ToString) -> Stage {
        Stage { stage, status: Status::Fail, message: err.to_string(), details: Vec::new() }
    }
    fn with(mut self, details: Vec<String>) -> Stage {
        self.details = details;
        self
    }
}

/// Runs DNS → TCP → greeting/TLS → certificate → login → features → data channel, reporting
/// each stage as it ends, and stops at the first failure. `writable`: also upload, download
/// and delete a small file with a unique temporary name in `base`. True when nothing failed.
pub fn diagnose(ep: &Endpoint, base: &str, writable: bool, report: &mut dyn FnMut(Stage)) -> bool {
    let mut emit = |s: Stage| {
        let ok = s.status != Status::Fail;
        report(s);
        ok
    };
    match connect::resolve(ep) {
        Ok(addrs) => {
            let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
            emit(Stage::pass("DNS", format!("{} is {}", ep.host, list.join(", "))));
        }
        Err(e) => return emit(Stage::fail("DNS", e)),
    }
    let started = Instant::now();
    match connect::tcp_connect(ep) {
        Ok(tcp) => {
            let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            emit(Stage::pass("TCP", format!("connected to {} ({peer}) in {ms:.1} ms", ep.addr())));
        }
        Err(e) => return emit(Stage::fail("TCP", e)),
    }
    let Some(conn) = secure(ep, &mut emit) else { return false };
    let mut s = FtpSession::new(conn);
    match s.login(ep) {
        Ok(()) => emit(Stage::pass("login", format!("logged in as '{}'", ep.user))),
        Err(e) => return emit(Stage::fail("login", e)),
    };
    let features = OnceLock::new();
    if let Err(e) = s.setup(ep, &features) {
        return emit(Stage::fail("features", e));
    }
    emit(features_stage(&s));
    let ok = data_channel(&mut s, base, writable, &mut emit);
    s.quit();
    ok
}

/// Greeting and TLS in the order the mode has them; the connection, or `None` after a failure.
fn secure(ep: &Endpoint, emit: &mut dyn FnMut(Stage) -> bool) -> Option<session::Connection> {
    let note = DataNote::default();
    let tls = match ep.tls {
        TlsMode::Off => None,
        _ => match &ep.tls_client {
            Some(client) => Some(SessionTls::new(client.clone(), ep.io_timeout)),
            None => {
                emit(Stage::fail("TLS", "TLS was requested but no TLS configuration was built"));
                return None;
            }
        },
    };
    let result = match (ep.tls, &tls) {
        (TlsMode::Implicit, Some(t)) => connect::connect_implicit(ep, t.clone(), note),
        (TlsMode::Off, _) | (_, None) => {
            let ftp = greeting(ep, &note, emit)?;
            emit(Stage::warn("TLS", "off (--tls off): the password and all files cross the network unencrypted"));
            return Some(session::Connection { ftp, security: Security::Plain, tls: None, data_note: note });
        }
        (_, Some(t)) => {
            let ftp = greeting(ep, &note, emit)?;
            connect::upgrade_explicit(ep, ftp, t.clone(), note)
        }
    };
    let conn = match result {
        Ok(c) => c,
        Err(e) => {
            match tls.as_ref().and_then(|t| t.peek_certificate_error()) {
                Some((problem, cert)) => {
                    emit(Stage::pass("TLS", "the server speaks TLS; its certificate was refused"));
                    let details =
                        cert.map(|c| tls::certificate_report(&c, &ep.host, Some(&problem), None)).unwrap_or_default();
                    emit(Stage::fail("certificate", e).with(details));
                }
                None => {
                    emit(Stage::fail("TLS", e));
                }
            }
            return None;
        }
    };
    let info = conn.tls.as_ref().and_then(|t| t.control_info());
    match (conn.security, ep.tls) {
        (Security::Plain, TlsMode::Off) => {}
        (Security::Plain, _) => {
            emit(Stage::warn(
                "TLS",
                "the server does not offer TLS (AUTH TLS refused): continuing unencrypted (--tls auto)",
            ));
        }
        (Security::Tls(v), mode) => {
            let how =
                if mode == TlsMode::Implicit { "implicit, from the first byte" } else { "explicit, via AUTH TLS" };
            let version = v.map(|v| v.to_string()).unwrap_or_else(|| "TLS".into());
            emit(Stage::pass("TLS", format!("{version} ({how})")));
            if mode == TlsMode::Implicit {
                emit(Stage::pass("greeting", conn.greeting()));
            }
        }
    }
    if let Some((Some(cert), _)) = info {
        let exception = ep.tls_client.as_ref().and_then(|c| c.last_exception());
        let details = tls::certificate_report(&cert, &ep.host, None, exception);
        let summary = format!("{}, issued by {}", cert.subject, cert.issuer);
        emit(
            match exception {
                Some(why) => Stage::warn("certificate", format!("{summary}; {why}")),
                None => Stage::pass("certificate", summary),
            }
            .with(details),
        );
    }
    Some(conn)
}

fn greeting(ep: &Endpoint, note: &DataNote, emit: &mut dyn FnMut(Stage) -> bool) -> Option<session::Ftp> {
    match connect::connect_plain(ep, note) {
        Ok(ftp) => {
            emit(Stage::pass("greeting", session::welcome(&ftp)));
            Some(ftp)
        }
        Err(e) => {
            emit(Stage::fail("greeting", e));
            None
        }
    }
}

fn features_stage(s: &FtpSession) -> Stage {
    let f = &s.features;
    let yn = |b: bool| if b { "yes" } else { "no" };
    let summary = format!(
        "MLSD {}, EPSV {}, MFMT {}, MDTM {}, UTF8 {}, REST STREAM {}, SIZE {}",
        yn(f.mlsd),
        yn(f.epsv),
        yn(f.mfmt),
        yn(f.mdtm),
        yn(f.utf8),
        yn(f.rest_stream),
        yn(f.size)
    );
    if !f.mlsd && !f.mdtm {
        return Stage::warn(
            "features",
            format!(
                "{summary}: without MLSD or MDTM, times are only as exact as LIST shows them (minutes or days), so rsync -a may send unchanged files again"
            ),
        );
    }
    if !f.rest_stream {
        return Stage::warn(
            "features",
            format!(
                "{summary}: without REST STREAM, reads cannot start in the middle of a file (random access is slow)"
            ),
        );
    }
    Stage::pass("features", summary)
}

/// A listing, then (when writable) a small upload, download and delete.
fn data_channel(s: &mut FtpSession, base: &str, writable: bool, emit: &mut dyn FnMut(Stage) -> bool) -> bool {
    let mode = if s.features.epsv { "EPSV" } else { "PASV" };
    let dir = if base.is_empty() { "/".to_string() } else { base.to_string() };
    let listed = match s.list_lines(&dir) {
        Ok(l) => l,
        Err(e) => return emit(Stage::fail("data channel", e)),
    };
    let mut message = format!("{mode}: listing {dir} returned {} line(s)", listed.lines.len());
    let mut status = Status::Pass;
    if let Some(notice) = &listed.cut {
        status = Status::Warn;
        message.push_str(&format!(
            "; the server cut it short (\"{notice}\"). A mount lists such a directory again from the other \
             end of the name order (LIST -ar), which shows up to twice the server's limit; larger directories \
             stay incomplete unless the limit is raised (Pure-FTPd: -L)"
        ));
    }
    if writable {
        match round_trip(s, &dir) {
            Ok(n) => message.push_str(&format!("; a {n}-byte test file was uploaded, read back intact and deleted")),
            Err(RemoteError::PermissionDenied(e)) => {
                status = Status::Warn;
                message.push_str(&format!(
                    "; uploading a test file was refused ({e}): writes will fail (use --read-only)"
                ));
            }
            Err(e) => return emit(Stage::fail("data channel", e)),
        }
    }
    let mut details: Vec<String> = s.data_note.lock().clone().into_iter().collect();
    if let Some(tls) = s.tls.clone() {
        // Every data connection must resume the control session's TLS session on strict
        // servers; with TLS 1.3 that takes a ticket each. A few more show whether they last.
        for _ in 0..2 {
            if let Err(e) = s.list_lines(&dir) {
                if !tls.tls13_tickets_ran_out() {
                    return emit(Stage::fail("data channel", e));
                }
            }
        }
        if tls.tls13_tickets_ran_out() {
            status = Status::Warn;
            details.push(
                "TLS 1.3 data connections cannot keep resuming the control session here: the server hands out \
                 too few session tickets, and strict servers (ProFTPD's default TLSOptions) refuse a data \
                 connection that does not resume it. The mount notices this by itself and uses TLS 1.2 for \
                 this server (or pass --tls-max-version 1.2)"
                    .to_string(),
            );
        } else {
            details.push("data connections resume the control connection's TLS session".to_string());
        }
    }
    emit(Stage { stage: "data channel", status, message, details })
}

const TEST_BYTES: usize = 1024;

fn round_trip(s: &mut FtpSession, dir: &str) -> Result<usize, RemoteError> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let path = format!("{}/.ftpmount-check-{}-{nanos:x}.tmp", dir.trim_end_matches('/'), std::process::id());
    let data: Vec<u8> = (0..TEST_BYTES).map(|i| (i * 7 % 251) as u8).collect();
    let result = upload_and_read(s, &path, &data);
    // Whatever happened, leave nothing behind (after a refused upload there is nothing).
    let _ = s.delete(&path);
    result
}

fn upload_and_read(s: &mut FtpSession, path: &str, data: &[u8]) -> Result<usize, RemoteError> {
    let what = format!("uploading the test file {path}");
    let mut up = s.stor(path, false)?;
    up.write_all(data).map_err(|e| RemoteError::Connection(format!("{what}: {e}")))?;
    up.finish().map_err(|e| super::reply::map(&what, e))?;
    let what = format!("reading back the test file {path}");
    let mut down = s.retr(path, 0)?;
    let mut back = Vec::new();
    down.read_to_end(&mut back).map_err(|e| RemoteError::Connection(format!("{what}: {e}")))?;
    down.finish().map_err(|e| super::reply::map(&what, e))?;
    if back.len() != data.len() {
        return Err(RemoteError::Connection(format!(
            "{what}: it came back with {} of {} bytes. The control connection works but data transfers do not \
             complete: a firewall or NAT is probably interfering with the data channel (the zero-byte-file symptom)",
            back.len(),
            data.len()
        )));
    }
    if back != data {
        return Err(RemoteError::Protocol(format!(
            "{what}: the bytes differ from what was uploaded (is the transfer type ASCII?)"
        )));
    }
    Ok(data.len())
}

/// Opens sessions one after another, up to `max`, and reports where the server refused.
pub fn probe_session_limit(ep: &Endpoint, max: usize) -> Stage {
    let features = OnceLock::new();
    let mut open: Vec<FtpSession> = Vec::new();
    let mut refusal = None;
    while open.len() < max {
        match super::connect::open_session(ep, &features) {
            Ok(s) => open.push(s),
            Err(e) => {
                refusal = Some(e);
                break;
            }
        }
    }
    let n = open.len();
    for s in open {
        s.quit();
    }
    match refusal {
        None => Stage::pass("session limit", format!("{n} sessions open at once, as --max-connections allows")),
        Some(e @ RemoteError::TooManyConnections(_)) | Some(e @ RemoteError::PermissionDenied(_)) if n > 0 => {
            Stage::warn(
                "session limit",
                format!(
                    "the server allows {n} session(s) at once: session {} was refused ({e}). Use --max-connections {n}",
                    n + 1
                ),
            )
        }
        Some(e) => Stage::fail("session limit", format!("after {n} session(s): {e}")),
    }
}
