//! Commands sent without waiting for each reply (the vendored suppaftp's `send_commands` /
//! `read_response`): a batch and a `NOOP`, read back in order. Where the server takes them,
//! a directory's `MDTM`s or an upload's rename and time cost one round trip instead of many;
//! replies that do not fit the commands mark the session out of step.

use std::io;
use std::time::{Duration, SystemTime};

use suppaftp::{FtpError, Status};

use super::FtpSession;
use crate::remote::Result;
use crate::remote::ftp::reply;

/// What is known of a server's answers to commands sent without waiting for each reply.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pipelining {
    /// Not tried yet: the first batch is a probe, with a short reply timeout.
    Untried = 0,
    /// A batch came back complete and in order.
    Works = 1,
    /// Replies went missing or came out of place once: one command at a time from now on.
    Refused = 2,
}

impl Pipelining {
    pub fn from_u8(v: u8) -> Pipelining {
        match v {
            1 => Pipelining::Works,
            2 => Pipelining::Refused,
            _ => Pipelining::Untried,
        }
    }
}

/// One pipelined command's reply: its text where the code was expected, else code and text.
pub type Reply = std::result::Result<String, (u16, String)>;

/// What came of commands sent without waiting (see [`FtpSession::mdtm_pipelined`]).
#[derive(Debug)]
pub enum Pipelined<T> {
    Done(T),
    /// The replies did not fit the commands (missing, extra, out of place, or an answer that
    /// one command alone does not give): the session is out of step, and the server should be
    /// asked one command at a time.
    Surprise(String),
}

impl FtpSession {
    /// The exact modification times of `paths` (`MDTM`), asked all at once and followed by a
    /// `NOOP`: one round trip for the batch. The replies must come one per command, in order,
    /// with the `NOOP`'s `200` last; anything else is a [`Pipelined::Surprise`]. A syntax error
    /// (`500`–`504`) is asked again alone, and must be the same then. With `probe`, replies get
    /// that long at most, and one that does not come is a surprise (a server that dropped the
    /// commands after the first), not a timeout. After an error or a surprise the session is
    /// out of step: the caller must not reuse it.
    pub fn mdtm_pipelined(
        &mut self,
        paths: &[String],
        probe: Option<Duration>,
    ) -> Result<Pipelined<Vec<Option<SystemTime>>>> {
        self.with_probe_timeout(probe, |s| s.mdtm_batch(paths, probe))
    }

    fn mdtm_batch(&mut self, paths: &[String], probe: Option<Duration>) -> Result<Pipelined<Vec<Option<SystemTime>>>> {
        let n = paths.len();
        let what = format!("asking the times of {n} files at once (MDTM)");
        let mut lines: Vec<String> = paths.iter().map(|p| format!("MDTM {p}")).collect();
        lines.push("NOOP".to_string());
        self.ftp.send_commands(&lines).map_err(|e| reply::map(&what, e))?;
        let missing = |i: usize, e: &FtpError| match (probe, e) {
            (Some(t), FtpError::ConnectionError(io))
                if matches!(io.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
            {
                Some(format!("no reply to command {} of {} within {t:?}", i + 1, n + 1))
            }
            _ => None,
        };
        let (mut times, mut odd, mut refused) = (Vec::with_capacity(n), Vec::new(), None);
        for (i, path) in paths.iter().enumerate() {
            match self.ftp.read_response(&[Status::File]) {
                Ok(r) => times.push(crate::remote::ftp::listing::parse_mdtm_reply(&reply::text(&r))),
                Err(FtpError::UnexpectedResponse(r)) => {
                    let code = reply::code(&r);
                    match code {
                        // The connection is ending: nothing more will come.
                        421 => return Err(reply::map(&what, FtpError::UnexpectedResponse(r))),
                        // What a server may answer MDTM alone: kept as it would be then.
                        500..=504 => odd.push((i, code)),
                        505..=599 => {}
                        400..=499 => {
                            refused.get_or_insert_with(|| {
                                reply::map(
                                    &format!("asking the time of {path} (MDTM)"),
                                    FtpError::UnexpectedResponse(r),
                                )
                            });
                        }
                        _ => {
                            return Ok(Pipelined::Surprise(format!(
                                "reply {} of {} to {n} MDTM and a NOOP was \"{}\"",
                                i + 1,
                                n + 1,
                                reply::text(&r)
                            )));
                        }
                    }
                    times.push(None);
                }
                Err(e) => {
                    return match missing(i, &e) {
                        Some(why) => Ok(Pipelined::Surprise(why)),
                        None => Err(reply::map(&what, e)),
                    };
                }
            }
        }
        match self.ftp.read_response(&[Status::CommandOk]) {
            Ok(_) => {}
            Err(FtpError::UnexpectedResponse(r)) => {
                return Ok(Pipelined::Surprise(format!(
                    "the NOOP sent after {n} MDTM was answered \"{}\"",
                    reply::text(&r)
                )));
            }
            Err(e) => {
                return match missing(n, &e) {
                    Some(why) => Ok(Pipelined::Surprise(why)),
                    None => Err(reply::map(&what, e)),
                };
            }
        }
        if let Some(e) = refused {
            return Err(e);
        }
        Ok(match self.asked_alone(paths, &odd)? {
            Some(why) => Pipelined::Surprise(why),
            None => Pipelined::Done(times),
        })
    }

    /// The `MDTM`s answered with a syntax error (`500`–`504`, by index) in a batch, asked again
    /// alone: a server that then gives a time did not take the batch as sent (why, if so).
    fn asked_alone(&mut self, paths: &[String], odd: &[(usize, u16)]) -> Result<Option<String>> {
        for &(i, code) in odd {
            if self.mdtm(&paths[i])?.is_some() {
                return Ok(Some(format!("MDTM {} was answered {code} among others but with a time alone", paths[i])));
            }
        }
        Ok(None)
    }

    /// Sends `commands` without waiting, then a `NOOP`, and reads one reply per command: its
    /// text where its code is one of those expected, else its code and text. A reply no
    /// command of the batch would give (a `1xx`, or a `2xx`/`3xx` not expected), or a `NOOP`
    /// answer out of place, is a [`Pipelined::Surprise`]; so is a missing reply with `probe`
    /// (see [`Self::mdtm_pipelined`]). After an error or a surprise the session is out of step.
    pub fn pipeline(
        &mut self,
        commands: &[(String, &[Status])],
        probe: Option<Duration>,
    ) -> Result<Pipelined<Vec<Reply>>> {
        self.with_probe_timeout(probe, |s| s.pipeline_batch(commands, probe))
    }

    fn pipeline_batch(
        &mut self,
        commands: &[(String, &[Status])],
        probe: Option<Duration>,
    ) -> Result<Pipelined<Vec<Reply>>> {
        let n = commands.len();
        let verb = |c: &str| c.split(' ').next().unwrap_or(c).to_string();
        let what = format!("sending {} at once", commands.iter().map(|(c, _)| verb(c)).collect::<Vec<_>>().join(", "));
        let mut lines: Vec<&str> = commands.iter().map(|(c, _)| c.as_str()).collect();
        lines.push("NOOP");
        self.ftp.send_commands(&lines).map_err(|e| reply::map(&what, e))?;
        let missing = |i: usize, e: FtpError| match (probe, &e) {
            (Some(t), FtpError::ConnectionError(io))
                if matches!(io.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
            {
                Ok(Pipelined::Surprise(format!("no reply to command {} of {} within {t:?}", i + 1, n + 1)))
            }
            _ => Err(reply::map(&what, e)),
        };
        let mut out = Vec::with_capacity(n);
        for (i, (command, expected)) in commands.iter().enumerate() {
            match self.ftp.read_response(expected) {
                Ok(r) => out.push(Ok(reply::text(&r))),
                Err(FtpError::UnexpectedResponse(r)) => {
                    let code = reply::code(&r);
                    if code == 421 {
                        return Err(reply::map(&what, FtpError::UnexpectedResponse(r)));
                    }
                    if code < 400 {
                        return Ok(Pipelined::Surprise(format!(
                            "reply {} of {} (to {}) was \"{}\"",
                            i + 1,
                            n + 1,
                            verb(command),
                            reply::text(&r)
                        )));
                    }
                    out.push(Err((code, reply::text(&r))));
                }
                Err(e) => return missing(i, e),
            }
        }
        match self.ftp.read_response(&[Status::CommandOk]) {
            Ok(_) => Ok(Pipelined::Done(out)),
            Err(FtpError::UnexpectedResponse(r)) => Ok(Pipelined::Surprise(format!(
                "the NOOP sent after {n} commands was answered \"{}\"",
                reply::text(&r)
            ))),
            Err(e) => missing(n, e),
        }
    }

    /// Runs `batch` with replies given `probe` at most (when probing), then puts the session's
    /// reply timeout back as it was.
    fn with_probe_timeout<T>(&mut self, probe: Option<Duration>, batch: impl FnOnce(&mut Self) -> T) -> T {
        let before = self.ftp.get_ref().read_timeout().ok().flatten();
        if let Some(t) = probe {
            self.set_reply_timeout(t);
        }
        let result = batch(self);
        if probe.is_some() {
            let _ = self.ftp.get_ref().set_read_timeout(before);
        }
        result
    }
}
