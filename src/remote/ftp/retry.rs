//! How an operation reaches the server and what follows when it fails: it runs on a session
//! from the pool; a read (`with_session` with `idempotent`) or a transfer not started yet is
//! tried once more on a fresh session when the connection broke; a change (`change`) is sent
//! again and a refusal that means "already done" counts as done; and a session left out of
//! step by a failure is retired (`retire`), so the pool does not hand it out again.

use super::session::{FtpSession, Transfer};
use super::{FtpConnector, FtpRemote};
use crate::remote::pool::Lease;
use crate::remote::{RemoteError, Result};

impl FtpRemote {
    /// Runs `op` on a pooled session. Idempotent operations that failed on a broken session
    /// are retried once on a fresh one (the server may have closed an idle connection, or
    /// restarted: the fresh session then waits for it within --reconnect-timeout).
    pub(super) fn with_session<T>(
        &self,
        idempotent: bool,
        mut op: impl FnMut(&mut FtpSession) -> Result<T>,
    ) -> Result<T> {
        let mut attempt = 0;
        loop {
            let mut lease = self.pool.checkout()?;
            match op(&mut lease) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    retire(&mut lease, &e);
                    drop(lease);
                    if attempt == 0 && idempotent && e.is_transient() {
                        tracing::debug!("retrying on a fresh session after: {e}");
                        attempt += 1;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Runs `op`, a command that changes the server, on a pooled session. When the connection
    /// breaks under it (a server restart, a dropped connection found only when used), the
    /// server may or may not have acted: `op` is sent once more on a fresh session, and a
    /// refusal then that `done` says means "already done" (the file is gone, the directory is
    /// there) counts as success.
    pub(super) fn change(
        &self,
        mut op: impl FnMut(&mut FtpSession) -> Result<()>,
        done: impl Fn(&RemoteError) -> bool,
    ) -> Result<()> {
        match self.with_session(false, &mut op) {
            Err(e) if e.is_transient() => {
                tracing::debug!("sending the change again on a fresh session after: {e}");
                match self.with_session(false, op) {
                    Err(again) if done(&again) => Ok(()),
                    other => other,
                }
            }
            other => other,
        }
    }

    /// Starts a transfer with `start` on a pooled session and wraps it with `wrap`; a start
    /// that failed on a broken session is tried once more on a fresh one.
    pub(super) fn start_transfer<S: ?Sized>(
        &self,
        mut start: impl FnMut(&mut Lease<FtpConnector>) -> Result<Transfer>,
        wrap: impl Fn(Transfer, Lease<FtpConnector>) -> Box<S>,
    ) -> Result<Box<S>> {
        let mut attempt = 0;
        loop {
            let mut lease = self.pool.checkout()?;
            match start(&mut lease) {
                Ok(transfer) => return Ok(wrap(transfer, lease)),
                Err(e) => {
                    retire(&mut lease, &e);
                    drop(lease);
                    if attempt == 0 && e.is_transient() {
                        tracing::debug!("starting the transfer again on a fresh session after: {e}");
                        attempt += 1;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }
}

/// Marks a session that failed with `e` so the pool does not reuse it when it is out of step;
/// one that got no answer in time takes the idle sessions with it.
pub(super) fn retire(lease: &mut Lease<FtpConnector>, e: &RemoteError) {
    match e {
        RemoteError::Timeout(_) => lease.mark_unresponsive(),
        e if e.breaks_session() => lease.mark_broken(),
        _ => {}
    }
}
