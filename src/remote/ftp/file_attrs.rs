//! Setting what a file carries besides its bytes: its modification time (`MFMT`, `MDTM` with a
//! time, `SITE UTIME`; which one the server takes is found out on first use) and its mode
//! (`SITE CHMOD`), and an upload's finish sent in one batch (mode, time, `RNFR`/`RNTO`).

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::retry::retire;
use super::session::{Features, Pipelined, Pipelining, Reply};
use super::{FtpRemote, PIPELINE_PROBE_TIMEOUT, listing, reply_error};
use crate::remote::{Applied, Remote, RemoteError, Result};

/// How this server lets us set modification times; found out on first use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MtimeCommand {
    Mfmt,
    /// `MDTM YYYYMMDDHHMMSS path` (vsftpd, IIS); other servers read it as a file name.
    MdtmSet,
    /// `SITE UTIME YYYYMMDDhhmmss path` (ProFTPD's mod_site_misc).
    SiteUtime,
    /// `SITE UTIME path atime mtime ctime UTC` (ProFTPD, and servers following it).
    SiteUtime5,
    Unsupported,
}

/// Replies that mean a time was set.
const MTIME_SET_OK: [suppaftp::Status; 3] =
    [suppaftp::Status::File, suppaftp::Status::CommandOk, suppaftp::Status::RequestedFileActionOk];

impl MtimeCommand {
    /// What to try, in order: what FEAT advertises first; commands FEAT cannot show after.
    fn candidates(features: &Features) -> Vec<MtimeCommand> {
        let mut all = Vec::new();
        if features.mfmt {
            all.push(MtimeCommand::Mfmt);
        }
        all.push(MtimeCommand::MdtmSet);
        all.extend([MtimeCommand::SiteUtime, MtimeCommand::SiteUtime5]);
        all
    }

    /// The command line that sets `path`'s time to `stamp` (`YYYYMMDDhhmmss`, UTC).
    pub(super) fn line(self, stamp: &str, path: &str) -> String {
        match self {
            MtimeCommand::Mfmt => format!("MFMT {stamp} {path}"),
            MtimeCommand::MdtmSet => format!("MDTM {stamp} {path}"),
            MtimeCommand::SiteUtime => format!("SITE UTIME {stamp} {path}"),
            MtimeCommand::SiteUtime5 => format!("SITE UTIME {path} {stamp} {stamp} {stamp} UTC"),
            MtimeCommand::Unsupported => unreachable!("never sent"),
        }
    }
}

fn no_time_setting(path: &str) -> RemoteError {
    RemoteError::Unsupported(format!(
        "setting the time of {path}: the server offers no way to set modification times (see the log)"
    ))
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl FtpRemote {
    /// `SITE CHMOD` and the time-setting command this server takes, on the temporary, then
    /// `RNFR`/`RNTO`, all sent at once: one round trip instead of up to four (two for a bare
    /// rename). Only where the server took commands sent without waiting (or has not been tried
    /// yet: the first batch is then a probe); the time only where how to set it is known.
    pub(super) fn rename_upload_at_once(
        &self,
        from: &str,
        to: &str,
        mode: Option<u32>,
        mtime: Option<SystemTime>,
    ) -> Result<Applied> {
        let (f, t) = (self.server_path(from), self.server_path(to));
        let Some(features) = self.pool.connector().features.get().cloned() else {
            return self.rename(from, to).map(|()| Applied::default());
        };
        let state = Pipelining::from_u8(features.pipelining.load(Ordering::Relaxed));
        let set_time = match (*self.mtime_command.lock(), mtime) {
            (Some(cmd), Some(time)) if cmd != MtimeCommand::Unsupported => {
                Some(cmd.line(&listing::format_ftp_time(time), &f))
            }
            _ => None,
        };
        let chmod = mode
            .filter(|_| !self.chmod_unsupported.load(Ordering::Relaxed))
            .map(|m| format!("SITE CHMOD {:o} {f}", m & 0o7777));
        if state == Pipelining::Refused {
            return self.rename(from, to).map(|()| Applied::default());
        }
        const CHMOD_OK: [suppaftp::Status; 1] = [suppaftp::Status::CommandOk];
        const RNFR_OK: [suppaftp::Status; 1] = [suppaftp::Status::RequestFilePending];
        const RNTO_OK: [suppaftp::Status; 2] = [suppaftp::Status::RequestedFileActionOk, suppaftp::Status::CommandOk];
        let mut commands: Vec<(String, &[suppaftp::Status])> = Vec::new();
        if let Some(c) = &chmod {
            commands.push((c.clone(), &CHMOD_OK));
        }
        if let Some(c) = &set_time {
            commands.push((c.clone(), &MTIME_SET_OK));
        }
        commands.push((format!("RNFR {f}"), &RNFR_OK));
        commands.push((format!("RNTO {t}"), &RNTO_OK));
        let probe = (state == Pipelining::Untried)
            .then(|| self.pool.connector().endpoint.io_timeout.min(PIPELINE_PROBE_TIMEOUT));
        let what = format!("renaming {f} to {t}");
        let mut lease = self.pool.checkout()?;
        let replies = match lease.pipeline(&commands, probe) {
            Ok(Pipelined::Done(replies)) => replies,
            Ok(Pipelined::Surprise(why)) => {
                lease.mark_broken();
                if features.pipelining.swap(Pipelining::Refused as u8, Ordering::Relaxed) != Pipelining::Refused as u8 {
                    tracing::info!(
                        "the server did not answer commands sent without waiting as expected ({why}); \
                         sending commands one at a time from now on"
                    );
                }
                drop(lease);
                // Whether the rename happened is not known: look, on another session. Mode
                // and time count as not set (the caller sets them on `to`).
                return match self.size(from) {
                    Err(RemoteError::NotFound(_)) => Ok(Applied::default()),
                    _ => self.rename(from, to).map(|()| Applied::default()),
                };
            }
            Err(e) => {
                retire(&mut lease, &e);
                lease.mark_broken();
                drop(lease);
                if !e.is_transient() {
                    return Err(e);
                }
                // The connection broke: the batch may have been done in part or whole. A plain
                // rename on a fresh session finds out (a rename already done counts as done);
                // mode and time count as not set (the caller sets them on `to`).
                tracing::debug!("{what} again, on a fresh session, after: {e}");
                return self.rename(from, to).map(|()| Applied::default());
            }
        };
        drop(lease);
        if state == Pipelining::Untried
            && features.pipelining.swap(Pipelining::Works as u8, Ordering::Relaxed) == Pipelining::Untried as u8
        {
            tracing::debug!("the server takes pipelined commands");
        }
        self.applied(&f, &what, replies, chmod.is_some(), set_time.is_some())
    }

    /// What the batch of [`Self::rename_upload_at_once`] did, from its replies: mode and time
    /// set (or refused: set again after the rename), and the rename's own verdict.
    fn applied(&self, f: &str, what: &str, replies: Vec<Reply>, chmod: bool, set_time: bool) -> Result<Applied> {
        let mut replies = replies.into_iter();
        let mut applied = Applied::default();
        if chmod {
            match replies.next().expect("one reply per command") {
                Ok(_) => applied.mode = true,
                Err((500 | 502 | 504, text)) => {
                    tracing::info!(
                        "the server does not support SITE CHMOD ({text}); permission changes are accepted and ignored"
                    );
                    self.chmod_unsupported.store(true, Ordering::Relaxed);
                }
                Err((_, text)) => tracing::debug!("{f}: SITE CHMOD refused ({text}); tried again after the rename"),
            }
        }
        if set_time {
            match replies.next().expect("one reply per command") {
                Ok(_) => applied.mtime = true,
                Err((_, text)) => {
                    tracing::debug!("{f}: setting the time refused ({text}); tried again after the rename")
                }
            }
        }
        let (rnfr, rnto) = (replies.next().expect("RNFR reply"), replies.next().expect("RNTO reply"));
        match rnfr.and(rnto) {
            Ok(_) => Ok(applied),
            Err((code, text)) => Err(reply_error(what, code, &text)),
        }
    }

    /// Sets the modification time with the command this server takes, found out on first
    /// use (and remembered; a server with none is said so once, in the log).
    pub(super) fn set_time(&self, path: &str, time: SystemTime) -> Result<()> {
        let p = self.server_path(path);
        let stamp = listing::format_ftp_time(time);
        match *self.mtime_command.lock() {
            Some(MtimeCommand::Unsupported) => return Err(no_time_setting(&p)),
            Some(cmd) => {
                return match self.with_session(true, |s| s.command(&cmd.line(&stamp, &p), &MTIME_SET_OK))? {
                    Ok(_) => Ok(()),
                    Err((code, text)) => Err(reply_error(&format!("setting the time of {p}"), code, &text)),
                };
            }
            None => {}
        }
        let features = self.pool.checkout()?.features.clone();
        let candidates = MtimeCommand::candidates(&features);
        for cmd in candidates {
            match self.with_session(true, |s| s.command(&cmd.line(&stamp, &p), &MTIME_SET_OK))? {
                // Read as asking for the time of a file with an odd name, and answered: no.
                Ok(text) if cmd == MtimeCommand::MdtmSet && listing::parse_mdtm_reply(&text).is_some() => {}
                Ok(text) => {
                    // Accepted; a form the server does not mean as "set" is caught by reading
                    // the time back (where it can be read).
                    let read_back = if features.mdtm { self.mtime(path).ok().flatten() } else { Some(time) };
                    // Within 2 s: FAT volumes keep even seconds.
                    if read_back.is_some_and(|t| secs(t).abs_diff(secs(time)) <= 2) {
                        tracing::debug!("setting modification times with {cmd:?}");
                        *self.mtime_command.lock() = Some(cmd);
                        return Ok(());
                    }
                    tracing::debug!("{cmd:?} was answered \"{text}\" but did not set the time");
                }
                Err((500 | 501 | 502 | 504, text)) => {
                    tracing::debug!("{cmd:?} not supported: {text}");
                }
                // A refusal about this file (a directory, permissions), or a server that read
                // the command as naming another file (inetutils answers "MDTM time path" with
                // 550 "no such file"). Only an existing file refused a form FEAT did not
                // promise shows the second; otherwise nothing is learnt from it.
                Err((code, text)) => {
                    let advertised = cmd == MtimeCommand::Mfmt;
                    let is_file = || {
                        matches!(self.stat(path), Ok(Some(_)))
                            && !self.with_session(true, |s| s.is_dir(&p)).unwrap_or(true)
                    };
                    if advertised || !is_file() {
                        return Err(reply_error(&format!("setting the time of {p}"), code, &text));
                    }
                    tracing::debug!("{cmd:?} refused for an existing file ({text}); trying another way");
                }
            }
        }
        *self.mtime_command.lock() = Some(MtimeCommand::Unsupported);
        tracing::warn!(
            "this server cannot set modification times (it takes none of MFMT, MDTM with a time, SITE UTIME): \
             files keep the time of their upload, so `touch -d`, `cp -p` and `rsync -a` report \
             \"Operation not supported\", and rsync sends unchanged files again on every run. With rsync, \
             use --size-only (or --checksum)"
        );
        Err(no_time_setting(&p))
    }

    /// `SITE CHMOD`; a server without it is said so once, and not asked again.
    pub(super) fn set_mode(&self, path: &str, mode: u32) -> Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.chmod_unsupported.load(Relaxed) {
            return Err(RemoteError::Unsupported("the server does not support SITE CHMOD".into()));
        }
        let p = self.server_path(path);
        let line = format!("SITE CHMOD {:o} {p}", mode & 0o7777);
        match self.with_session(true, |s| s.command(&line, &[suppaftp::Status::CommandOk]))? {
            Ok(_) => Ok(()),
            Err((500 | 502 | 504, text)) => {
                tracing::info!(
                    "the server does not support SITE CHMOD ({text}); permission changes are accepted and ignored"
                );
                self.chmod_unsupported.store(true, Relaxed);
                Err(RemoteError::Unsupported("the server does not support SITE CHMOD".into()))
            }
            Err((code, text)) => Err(reply_error(&format!("changing the mode of {p}"), code, &text)),
        }
    }
}
