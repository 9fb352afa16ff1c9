//! The `check` command: runs the connection stages in order and prints one line per stage
//! (✓ passed, ! works with a caveat, ✗ failed, with what to do), or JSON for scripts.

use std::process::ExitCode;
use std::sync::Arc;

use crate::clock::SystemClock;
use crate::config::{self, Options};
use crate::fs::case;
use crate::mount::{self, Prepared};
use crate::remote::Remote;
use crate::remote::ftp::FtpRemote;
use crate::remote::ftp::diagnose::{self, Stage, Status};

pub struct CheckRequest {
    pub source: String,
    pub options: Options,
    pub profile_path: Option<std::path::PathBuf>,
    pub json: bool,
    /// Also open sessions up to --max-connections and report where the server refuses.
    pub probe_limit: bool,
}

pub fn run(req: CheckRequest) -> ExitCode {
    let prepared = match mount::resolve(&req.source, req.options.clone(), req.profile_path.clone(), None) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ftpmount: cannot check {}: {e}", config::redact(&req.source));
            return ExitCode::from(2);
        }
    };
    let mut stages = Vec::new();
    let json = req.json;
    let mut report = |s: Stage| {
        if !json {
            print_stage(&s);
        }
        stages.push(s);
    };
    let ok = run_stages(&prepared, req.probe_limit, &mut report);
    if json {
        let out = serde_json::json!({ "source": config::redact(&req.source), "ok": ok, "stages": stages });
        println!("{}", serde_json::to_string_pretty(&out).expect("plain data"));
    } else if ok {
        println!(
            "All stages passed: `ftpmount mount {} MOUNTPOINT` with these options would work.",
            config::redact(&req.source)
        );
    } else {
        let failed = stages.iter().find(|s| s.status == Status::Fail).map(|s| s.stage).unwrap_or("?");
        println!("The {failed} stage failed: a mount would fail the same way (see the message above).");
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

fn run_stages(p: &Prepared, probe_limit: bool, report: &mut dyn FnMut(Stage)) -> bool {
    let writable = !p.options.read_only;
    if !diagnose::diagnose(&p.endpoint, &p.target.path, writable, report) {
        return false;
    }
    let max = p.options.max_connections.unwrap_or(mount::DEFAULT_MAX_CONNECTIONS);
    match FtpRemote::connect(p.endpoint.clone(), 2, &p.target.path, Arc::new(SystemClock)) {
        Ok((remote, _)) => {
            let found = case::detect(&remote, writable);
            let verdict = if found.server_folds { "folds case" } else { "is case-sensitive" };
            report(Stage::pass("case", format!("the server {verdict}: {}", found.how)));
            remote.probe_profile(writable);
            let details = remote.profile().into_iter().map(|(what, how)| format!("{what}: {how}")).collect();
            report(Stage { details, ..Stage::pass("server", "what this server needs, found by probing".to_string()) });
            remote.close();
        }
        Err(e) => {
            report(Stage::fail("case", e));
            return false;
        }
    }
    if probe_limit {
        // Servers count a session until its process is gone: let the ones above close.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let stage = diagnose::probe_session_limit(&p.endpoint, max);
        let failed = stage.status == Status::Fail;
        report(stage);
        return !failed;
    }
    true
}

fn print_stage(s: &Stage) {
    let mark = match s.status {
        Status::Pass => "✓",
        Status::Warn => "!",
        Status::Fail => "✗",
    };
    println!("{mark} {:<13} {}", s.stage, s.message);
    for d in &s.details {
        println!("  {:<13} {d}", "");
    }
}
