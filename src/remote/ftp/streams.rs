//! An upload or a download in progress on a leased session: the data connection as a
//! `Write` or `Read`, what is checked at its end (the server's final reply, every byte taken),
//! and what a transfer broken off early leaves the session fit for.

use std::io::{self, Read};
use std::sync::atomic::Ordering;

use suppaftp::FtpError;

use super::retry::retire;
use super::session::{EarlyClose, Transfer};
use super::{FtpConnector, reply, socket};
use crate::remote::pool::Health;
use crate::remote::pool::Lease;
use crate::remote::{ReadStream, RemoteError, Result, WriteStream};

/// An upload in progress; holds its session until finished or dropped.
pub(super) struct FtpWriteStream {
    pub(super) transfer: Option<Transfer>,
    pub(super) lease: Lease<FtpConnector>,
    pub(super) path: String,
    pub(super) io_timeout: std::time::Duration,
    pub(super) sent: u64,
}

impl FtpWriteStream {
    /// Runs a write or flush again after a timeout while the server keeps taking bytes: the
    /// kernel wakes a blocked writer only once a good part of the send buffer has drained,
    /// which on a slow server can take longer than --io-timeout although it never stalls.
    /// (Retrying is safe: a write that timed out took nothing.)
    fn while_taking<T>(&mut self, mut op: impl FnMut(&mut Transfer) -> io::Result<T>) -> io::Result<T> {
        let transfer = self.transfer.as_mut().expect("transfer present until finish");
        let mut least = socket::unsent(transfer);
        loop {
            match op(transfer) {
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    match (socket::unsent(transfer), least) {
                        (Some(now), Some(before)) if now < before => least = Some(now),
                        _ => return Err(e),
                    }
                }
                result => return result,
            }
        }
    }
}

/// How long the server gets to say why it broke off an upload (its reply is usually on its
/// way already when the data connection breaks).
const REPLY_AFTER_BREAK: std::time::Duration = std::time::Duration::from_secs(5);

impl FtpWriteStream {
    /// The data connection broke (`io`): the server usually says why on the control
    /// connection (`451 Failure writing to local file`, `552 quota exceeded`), and that reply,
    /// not the broken pipe, is the error the application should see.
    fn why_broken(&mut self, transfer: Transfer, what: &str, io: io::Error) -> RemoteError {
        self.lease.set_reply_timeout(self.io_timeout.min(REPLY_AFTER_BREAK));
        let reply = transfer.finish();
        self.lease.set_reply_timeout(self.io_timeout);
        let err = match reply {
            Err(FtpError::UnexpectedResponse(r)) => reply::map_reply(what, &r),
            _ => reply::map(what, FtpError::ConnectionError(io)),
        };
        // The reply was read or given up on: either way, not a session to reuse.
        self.lease.mark_broken();
        err
    }
}

impl io::Write for FtpWriteStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.while_taking(|t| t.write(buf))?;
        self.sent += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.while_taking(|t| t.flush())
    }
}

impl WriteStream for FtpWriteStream {
    fn finish(mut self: Box<Self>) -> Result<()> {
        let what = format!("finishing the upload of {}", self.path);
        let mut transfer = self.transfer.take().expect("finished once");
        // The server's "226" comes once it has read everything; on a slow server that can be
        // much longer than --io-timeout after the last write. Wait while it keeps taking bytes;
        // then its kernel may still hold up to a few MiB it has not read, and nothing shows
        // how fast it reads them: the reply gets time for that at a floor rate.
        let drained = io::Write::flush(&mut transfer)
            .and_then(|()| socket::wait_until_taken(&transfer, self.io_timeout, || self.lease.closed_by_server()));
        if let Err(e) = drained {
            if e.kind() == io::ErrorKind::TimedOut {
                // Unfinished: dropping the stream with its transfer cuts the session (see Drop).
                self.transfer = Some(transfer);
                // From `wait_until_taken`, which says how long and how much.
                return Err(RemoteError::Timeout(format!(
                    "{what}: {e}. The server or the network may be overloaded or down"
                )));
            }
            return Err(self.why_broken(transfer, &what, e));
        }
        self.lease.set_reply_timeout(self.io_timeout + socket::time_to_read_buffered(self.sent));
        let finished = transfer.finish();
        self.lease.set_reply_timeout(self.io_timeout);
        finished.map_err(|e| {
            let err = reply::map_data(&what, e, self.lease.tls13_tickets_ran_out());
            if err.breaks_session() {
                self.lease.mark_broken();
            }
            err
        })
    }
}

impl Drop for FtpWriteStream {
    fn drop(&mut self) {
        // Unfinished: cut the control connection first, so closing the data connection is
        // never taken for the end of a complete upload by a session we reuse.
        if let Some(transfer) = self.transfer.take() {
            self.lease.shutdown();
            drop(transfer);
            self.lease.mark_broken();
        }
    }
}

/// A download in progress; holds its session until dropped.
pub(super) struct FtpReadStream {
    transfer: Option<Transfer>,
    lease: Lease<FtpConnector>,
    failed: bool,
    /// `reading PATH`, for errors.
    what: String,
    /// Bytes read so far, and how far ahead of them the server may send (see [`Self::grow`]).
    read: u64,
    window: u32,
}

/// How far ahead of the reader a download starts: a file manager sniffing 8 KiB then closing
/// costs the server about this much, not megabytes. Doubled each time the reader used half of
/// it, so a sequential read reaches full speed within a few round trips.
const FIRST_WINDOW: u32 = 128 << 10;
/// Past this, the window is the system's own (auto-tuned up to `net.ipv4.tcp_rmem`).
const OPEN_WINDOW: u32 = 64 << 20;

impl FtpReadStream {
    pub(super) fn new(transfer: Transfer, lease: Lease<FtpConnector>, what: String) -> FtpReadStream {
        let window = if socket::clamp_receive_window(&transfer, FIRST_WINDOW) { FIRST_WINDOW } else { OPEN_WINDOW };
        FtpReadStream { transfer: Some(transfer), lease, failed: false, what, read: 0, window }
    }

    /// Lets the server send further ahead once the reader has used half the window.
    fn grow(&mut self, n: usize) {
        self.read += n as u64;
        if self.window >= OPEN_WINDOW || self.read < u64::from(self.window / 2) {
            return;
        }
        self.window = self.window.saturating_mul(2).min(OPEN_WINDOW);
        if let Some(t) = &self.transfer {
            if !socket::clamp_receive_window(t, self.window) {
                self.window = OPEN_WINDOW;
            }
        }
    }

    /// The data connection has closed: only the server's final reply tells a complete file
    /// from a transfer that failed (`125`, no bytes, then `425`/`426`/`451`). Anything but
    /// success is an error, never an end of file.
    fn end_of_data(&mut self) -> io::Result<()> {
        let transfer = self.transfer.take().expect("transfer present until the end");
        transfer.finish().map_err(|e| {
            let err = match e {
                // The data ended without a word on the control connection either.
                FtpError::ConnectionError(e) => RemoteError::Connection(format!(
                    "{}: the data connection closed but the server never confirmed the transfer: {e}",
                    self.what
                )),
                e => reply::map(&format!("{} (the transfer's final reply)", self.what), e),
            };
            retire(&mut self.lease, &err);
            io::Error::other(err)
        })
    }
}

impl Read for FtpReadStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(t) = self.transfer.as_mut() else { return Ok(0) };
        match t.read(buf) {
            Ok(0) if !buf.is_empty() => self.end_of_data().map(|()| 0),
            Ok(n) => {
                self.grow(n);
                Ok(n)
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }
}

impl ReadStream for FtpReadStream {
    fn take_arrived(&mut self, max: usize) -> Vec<u8> {
        let Some(t) = self.transfer.as_mut() else { return Vec::new() };
        let socket = t.get_ref().get_ref().try_clone();
        let Ok(socket) = socket else { return Vec::new() };
        // Only what is already here: reading more would open the window for the server to
        // send more, which is what ending the download is meant to stop.
        let max = max.min(socket::received(&socket));
        if max == 0 || socket.set_nonblocking(true).is_err() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while out.len() < max {
            let want = buf.len().min(max - out.len());
            match t.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => {
                    // Anything but "nothing more yet" leaves the connection in doubt.
                    self.failed |= e.kind() != io::ErrorKind::WouldBlock;
                    break;
                }
            }
        }
        if socket.set_nonblocking(false).is_err() {
            self.failed = true;
        }
        out
    }
}

impl Drop for FtpReadStream {
    fn drop(&mut self) {
        let Some(transfer) = self.transfer.take() else { return };
        if self.failed {
            // Do not wait for a reply that may never come: cut the session instead.
            self.lease.shutdown();
            drop(transfer);
            self.lease.mark_broken();
            return;
        }
        tracing::debug!(
            "{}: download ended after {} bytes (receive window {} KiB)",
            self.what,
            self.read,
            self.window >> 10
        );
        // Closing the data connection early makes the server answer 426 (or 226 if it had
        // already sent everything); either way the session stays in step.
        let seen = |how: EarlyClose| self.lease.features.early_close.store(how as u8, Ordering::Relaxed);
        match transfer.finish() {
            Ok(()) => {}
            Err(suppaftp::FtpError::UnexpectedResponse(r)) if matches!(reply::code(&r), 426 | 451 | 450) => {
                seen(EarlyClose::Reply)
            }
            // Pure-FTPd ends a download closed early with "150 … (measured here)" and nothing
            // after it. A NOOP answered with 200 proves the session is in step.
            Err(suppaftp::FtpError::UnexpectedResponse(r)) if (100..200).contains(&reply::code(&r)) => {
                seen(EarlyClose::Preliminary);
                if self.lease.noop() != Health::Alive {
                    tracing::debug!(
                        "a download closed early ended with \"{}\" and the session fell out of step",
                        reply::text(&r)
                    );
                    self.lease.mark_broken();
                }
            }
            Err(e) => {
                seen(EarlyClose::HangsUp);
                tracing::debug!("ending a download left the session unusable: {e}");
                self.lease.mark_broken();
            }
        }
    }
}
