//! A real FUSE mount of the ftpmount binary, started and stopped as a user would.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{Certs, PASSWORD, Server, TempDir, Tls, bin};

/// Whether something is mounted at `path` (as /proc/self/mountinfo spells it).
pub fn is_mounted(path: &Path) -> bool {
    let want = path.to_str().unwrap();
    fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().lines().any(|l| l.split(' ').nth(4) == Some(want))
}

/// A running `ftpmount mount`.
pub struct Mount {
    child: Option<Child>,
    dir: TempDir,
    mountpoint: PathBuf,
}

#[derive(Debug)]
pub struct MountFailure {
    pub status: ExitStatus,
    pub stderr: String,
    /// Whether the mountpoint was still a mount after the command ended (a dead mount).
    pub left_mounted: bool,
}

impl Mount {
    /// Runs `ftpmount mount SOURCE MNT ARGS…` with the test password in the environment and
    /// waits until the mount is live, or until the command fails.
    pub fn start(source: &str, args: &[&str]) -> Result<Mount, MountFailure> {
        Self::start_with_env(source, args, &[("FTPMOUNT_PASSWORD", PASSWORD)])
    }

    pub fn start_with_env(source: &str, args: &[&str], env: &[(&str, &str)]) -> Result<Mount, MountFailure> {
        Self::start_at_with_env(source, None, args, env)
    }

    fn start_at_with_env(
        source: &str,
        at: Option<&Path>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Mount, MountFailure> {
        let dir = TempDir::new("mount");
        let mountpoint = match at {
            Some(p) => p.to_path_buf(),
            None => dir.path().join("mnt"),
        };
        fs::create_dir_all(&mountpoint).unwrap();
        let log = dir.path().join("ftpmount.log");
        let mut cmd = Command::new(bin());
        cmd.arg("mount").arg(source).arg(&mountpoint).args(args).env_remove("FTPMOUNT_PASSWORD");
        // The content cache and spool live with the mount (and go with it) unless a test
        // keeps them across mounts with --cache-dir.
        cmd.env("XDG_CACHE_HOME", dir.path().join("cache"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child =
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(fs::File::create(&log).unwrap()).spawn().unwrap();
        let start = Instant::now();
        loop {
            // Ready means: the kernel shows the mount and ftpmount said so.
            let said = fs::read_to_string(&log).unwrap_or_default().contains(" mounted ");
            if said && is_mounted(&mountpoint) {
                return Ok(Mount { child: Some(child), dir, mountpoint });
            }
            if let Some(status) = child.try_wait().unwrap() {
                let left_mounted = is_mounted(&mountpoint);
                if left_mounted {
                    let _ = Command::new("umount").arg("-l").arg(&mountpoint).status();
                }
                return Err(MountFailure {
                    status,
                    stderr: fs::read_to_string(&log).unwrap_or_default(),
                    left_mounted,
                });
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("mount did not become ready: {}", fs::read_to_string(&log).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Mounts `server` with the usual options for its TLS mode (trusting the test CA).
    pub fn of(server: &dyn Server, certs: Option<&Certs>, extra: &[&str]) -> Mount {
        Self::of_at(server, certs, None, extra)
    }

    /// `of`, at a mountpoint the caller keeps (`None`: a fresh one), to mount again at the same
    /// path as a desktop does after a reboot (file managers key what they remember by path).
    pub fn of_at(server: &dyn Server, certs: Option<&Certs>, at: Option<&Path>, extra: &[&str]) -> Mount {
        let ca;
        let mut args: Vec<&str> = Vec::new();
        if let Some(c) = certs {
            ca = c.ca();
            args.extend(["--ca-file", ca.to_str().unwrap()]);
        }
        if server.tls() == Tls::Implicit {
            args.extend(["--tls", "implicit"]);
        }
        args.extend(extra);
        Mount::start_at_with_env(&server.url(), at, &args, &[("FTPMOUNT_PASSWORD", PASSWORD)])
            .unwrap_or_else(|f| panic!("mount failed: {f:?}"))
    }

    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("ftpmount.log")).unwrap_or_default()
    }

    /// Unmounts with fusermount3 and returns the daemon's exit status.
    pub fn unmount(mut self) -> ExitStatus {
        self.stop()
    }

    /// Unmounts and returns the daemon's exit status and everything it logged.
    pub fn unmount_with_log(mut self) -> (ExitStatus, String) {
        let status = self.stop();
        (status, self.log())
    }

    /// A crash: kills the daemon with SIGKILL (it cleans nothing up), then clears the dead
    /// mount as a user would, with fusermount3 -u (lazily if that is refused).
    pub fn kill_daemon(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
        for flags in ["-u", "-uz"] {
            let ok = Command::new("fusermount3").arg(flags).arg(&self.mountpoint).stderr(Stdio::null()).status();
            if ok.is_ok_and(|s| s.success()) {
                break;
            }
        }
        assert!(!is_mounted(&self.mountpoint), "fusermount3 could not clear the dead mount");
    }

    fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        if is_mounted(&self.mountpoint) {
            let ok = Command::new("fusermount3").arg("-u").arg(&self.mountpoint).stderr(Stdio::null()).status();
            if !ok.is_ok_and(|s| s.success()) {
                let _ = Command::new("umount").arg("-l").arg(&self.mountpoint).status();
            }
        }
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            // A --write-back daemon uploads its queue before it exits.
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                return child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
    }
}
