//! What the mount learns about a server and shows in `status` and `check`: features, how it
//! answers pipelined commands and early closes, how times can be set, free space. A probe at
//! mount time fills it in before the first user asks.

use std::io;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::file_attrs::MtimeCommand;
use super::session::{EarlyClose, Pipelining, Security};
use super::{Avbl, FtpRemote, PIPELINE_BATCH};
use crate::remote::{Remote, RemoteError};

impl FtpRemote {
    /// Finds out now what the profile would otherwise learn on first use (`check`): the
    /// listing (time zone, link targets) and, where writable, how times are set, on a hidden
    /// file that is removed again.
    pub fn probe_profile(&self, writable: bool) {
        if let Err(e) = self.list("") {
            tracing::debug!("profile probe: {e}");
        }
        if let Err(e) = self.space("") {
            tracing::debug!("profile probe: {e}");
        }
        if !writable {
            return;
        }
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let name = format!(".ftpmount-profile-probe-{}-{nanos:x}", std::process::id());
        let stamp = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_577_934_245);
        let probed = self.open_write(&name, false).and_then(|mut up| {
            io::Write::write_all(&mut up, b"x").map_err(|e| RemoteError::Connection(e.to_string()))?;
            up.finish()
        });
        match probed.and_then(|()| self.set_mtime(&name, stamp)) {
            Ok(()) | Err(RemoteError::Unsupported(_)) => {}
            Err(e) => tracing::debug!("profile probe: {e}"),
        }
        if let Err(e) = self.delete(&name) {
            tracing::warn!("could not remove the probe file /{name}: {e}; remove it by hand");
        }
    }

    /// What was learnt of the server, as label and value, for `status` and `check`.
    pub(super) fn describe_server(&self) -> Vec<(String, String)> {
        // Never waits for a session: `status` must answer while all are busy.
        let Some(f) = self.pool.connector().features.get().cloned() else { return Vec::new() };
        let mut out = vec![(
            "listings".to_string(),
            if f.mlsd {
                "MLSD (exact times, UTC)".to_string()
            } else if f.mdtm {
                "LIST, with MDTM for exact file times".to_string()
            } else {
                "LIST only (times to the minute or day)".to_string()
            },
        )];
        if !f.mlsd {
            out.push(("time zone".into(), self.zone.describe()));
        }
        if !f.mlsd && f.mdtm {
            let how = match Pipelining::from_u8(f.pipelining.load(Ordering::Relaxed)) {
                Pipelining::Untried => "not needed yet".to_string(),
                Pipelining::Works => format!("sent without waiting, {PIPELINE_BATCH} per round trip"),
                Pipelining::Refused => {
                    "one per round trip: the server did not answer commands sent without waiting in order".to_string()
                }
            };
            out.push(("file times (MDTM)".into(), how));
        }
        let setting = match *self.mtime_command.lock() {
            None => "not needed yet".to_string(),
            Some(MtimeCommand::Unsupported) => "impossible: utimensat answers ENOTSUP".to_string(),
            Some(cmd) => cmd.line("TIME", "PATH").to_string(),
        };
        out.push(("setting times".into(), setting));
        out.push((
            "free space".into(),
            match Avbl::from_u8(self.avbl.load(Ordering::Relaxed)) {
                Avbl::NotAsked => "not asked yet".into(),
                Avbl::Answers => "told by AVBL".into(),
                Avbl::Refused => "unknown: the server answers no AVBL (df shows 0, file managers \"unknown\")".into(),
            },
        ));
        if let Some(cut) = self.cuts.lock().describe() {
            out.push(("listing limit".into(), cut));
        }
        if f.link_targets_from_list.load(Ordering::Relaxed) {
            out.push(("link targets".into(), "MLSD shows none: read from LIST".into()));
        }
        out.push((
            "early close of a download".into(),
            EarlyClose::describe(f.early_close.load(Ordering::Relaxed)).into(),
        ));
        if let Security::Tls(version) = self.security {
            let ran_out = self.pool.connector().endpoint.tls_client.as_ref().is_some_and(|c| c.tls13_tickets_ran_out());
            let tls = match (version, ran_out) {
                (_, true) => "TLS 1.2 for new sessions: the server gives too few TLS 1.3 tickets for every data \
                              connection to resume the control session"
                    .to_string(),
                (Some(v), false) => format!("{v}; data connections resume the control session"),
                (None, false) => "TLS; data connections resume the control session".to_string(),
            };
            out.push(("TLS".into(), tls));
        }
        out
    }
}
