//! The processes the tests start: waiting for a server to listen, and stopping it (with the
//! session processes it forked) when it is dropped.

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// Waits until the server process `child` listens on `port` (panics with its `log` if it
/// exits first).
pub(super) fn wait_for_port(port: u16, child: &mut Child, log: &Path) {
    let start = Instant::now();
    // A connect to a port nobody listens on yet can pick that same port as its own source
    // port and connect to itself (TCP simultaneous open): that is not the server listening.
    let listening = || TcpStream::connect(("127.0.0.1", port)).is_ok_and(|s| s.local_addr().unwrap().port() != port);
    while !listening() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("server exited with {status}: {}", fs::read_to_string(log).unwrap_or_default());
        }
        assert!(start.elapsed() < Duration::from_secs(20), "server did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops every process below `pid` with SIGSTOP, looking again until no new one appears, and
/// returns them. A stopped process cannot fork, so a session that was forking a child while
/// the tree was being killed cannot leave that child running as an orphan.
pub fn freeze_descendants(pid: u32) -> Vec<u32> {
    let mut stopped = Vec::new();
    loop {
        let new: Vec<u32> = descendants(pid).into_iter().filter(|p| !stopped.contains(p)).collect();
        if new.is_empty() {
            return stopped;
        }
        for &p in &new {
            signal_pid(p, libc::SIGSTOP);
        }
        stopped.extend(new);
    }
}

pub fn signal_pid(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory effects; a pid that has already exited gives ESRCH.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
}

/// All processes below `pid`, from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        // Fields after the command name (which may contain spaces) start after the last ')'.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|x| x.parse().ok()) {
            parents.push((p, ppid));
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parents {
            if parent == p {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}

/// A server process that is stopped with its sessions (see `stop_tree`) when dropped.
pub struct ServerProcess(pub Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        stop_tree(&mut self.0);
    }
}

/// Kills a server's sessions (children) and then the server, and reaps it. Stopped first, the
/// server forks no new session while they are killed.
pub fn stop_tree(child: &mut Child) {
    signal_pid(child.id(), libc::SIGSTOP);
    for pid in freeze_descendants(child.id()) {
        signal_pid(pid, libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A child process killed (by its pid) and reaped when dropped. (A vsftpd's session processes
/// end when their clients disconnect.)
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
