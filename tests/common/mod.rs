//! End-to-end fixture: real FTP servers (vsftpd, pyftpdlib) on 127.0.0.1 with generated
//! certificates, a real FUSE mount of the ftpmount binary, and helpers to check the results.
//! Everything a test starts is stopped (by pid) and unmounted when it is dropped, also when
//! the test fails.
//!
//! This file holds vsftpd, pyftpdlib, the fault proxy and small helpers; `certs.rs` the test
//! certificates, `mount.rs` the FUSE mount, `process.rs` waiting for and stopping server
//! processes, `servers.rs` the other servers of the compatibility tests.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `Server` for a server process the tests started: its port, TLS mode and root directory.
macro_rules! started_server {
    ($($t:ty),*) => {$(
        impl Server for $t {
            fn port(&self) -> u16 {
                self.port
            }
            fn root(&self) -> &Path {
                self.root.path()
            }
            fn tls(&self) -> Tls {
                self.tls
            }
        }
    )*};
}

mod certs;
mod mount;
mod process;
pub mod servers;

pub use certs::*;
pub use mount::*;
pub use process::*;
#[allow(unused_imports)] // only tests/e2e_servers.rs uses them
pub use servers::*;

pub const USER: &str = "ftpmount-test";
pub const PASSWORD: &str = "Test-Passw0rd";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ftpmount")
}

/// A fresh temporary directory under /tmp, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "ftpmount-e2e-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn sh(cmd: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A range of `n` ports nobody listens on, distinct for each call in this process.
fn port_range(n: u16) -> (u16, u16) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    loop {
        // Each test process gets its own thousand ports; each server its own slice of them.
        let slot = (NEXT.fetch_add(1, Ordering::SeqCst) as u16) % (1000 / n);
        let base = 20000 + (std::process::id() % 20) as u16 * 1000 + slot * n;
        if (base..base + n).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return (base, base + n - 1);
        }
    }
}

/// The system account vsftpd logs in (it needs a real user); created once.
pub fn ensure_user() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let exists =
            Command::new("id").arg(USER).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap().success();
        if !exists {
            let _ = Command::new("useradd").args(["-m", "-s", "/bin/bash", USER]).status();
        }
        let mut chpasswd = Command::new("chpasswd").stdin(Stdio::piped()).spawn().unwrap();
        use std::io::Write;
        writeln!(chpasswd.stdin.take().unwrap(), "{USER}:{PASSWORD}").unwrap();
        assert!(chpasswd.wait().unwrap().success(), "chpasswd failed");
        if let Ok(text) = fs::read_to_string("/etc/ftpusers") {
            if text.lines().any(|l| l.trim() == USER) {
                let kept: Vec<&str> = text.lines().filter(|l| l.trim() != USER).collect();
                fs::write("/etc/ftpusers", kept.join("\n") + "\n").unwrap();
            }
        }
        fs::create_dir_all("/var/run/vsftpd/empty").unwrap();
    });
}

/// Gives the FTP user the tree (vsftpd serves it as that user).
pub fn chown_to_user(path: &Path) {
    sh("chown", &["-R", &format!("{USER}:{USER}"), path.to_str().unwrap()]);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tls {
    Off,
    Explicit,
    Implicit,
}

/// A server the tests talk to.
pub trait Server {
    fn port(&self) -> u16;
    fn root(&self) -> &Path;
    fn tls(&self) -> Tls;
    /// `ftp://USER@localhost:PORT/` or `ftps://…`.
    fn url(&self) -> String {
        let scheme = if self.tls() == Tls::Off { "ftp" } else { "ftps" };
        format!("{scheme}://{USER}@localhost:{}/", self.port())
    }
}

pub struct Vsftpd {
    child: Killed,
    port: u16,
    tls: Tls,
    root: TempDir,
    dir: TempDir,
}

pub struct VsftpdOptions<'a> {
    pub tls: Tls,
    pub cert: Option<CertPair>,
    pub max_per_ip: Option<u32>,
    pub extra: &'a str,
    /// Leave the root's owner alone (a FAT volume has none; fusefat lets everyone write).
    pub keep_owner: bool,
}

impl Default for VsftpdOptions<'_> {
    fn default() -> Self {
        VsftpdOptions { tls: Tls::Off, cert: None, max_per_ip: None, extra: "", keep_owner: false }
    }
}

impl Vsftpd {
    /// Starts vsftpd serving `root` (its contents are given to the FTP user).
    pub fn start(root: TempDir, opts: VsftpdOptions) -> Vsftpd {
        ensure_user();
        if !opts.keep_owner {
            chown_to_user(root.path());
        }
        let dir = TempDir::new("vsftpd");
        let port = free_port();
        let (pasv_min, pasv_max) = port_range(40);
        let log = dir.path().join("vsftpd.log");
        let mut conf = format!(
            "listen=YES\nlisten_address=127.0.0.1\nlisten_port={port}\nbackground=NO\nanonymous_enable=NO\n\
             local_enable=YES\nwrite_enable=YES\nlocal_umask=022\nchroot_local_user=YES\nallow_writeable_chroot=YES\n\
             local_root={root}\npasv_enable=YES\npasv_min_port={pasv_min}\npasv_max_port={pasv_max}\n\
             seccomp_sandbox=NO\nsecure_chroot_dir=/var/run/vsftpd/empty\npam_service_name=vsftpd\n\
             vsftpd_log_file={log}\nxferlog_enable=YES\nmax_clients=200\n",
            root = root.path().display(),
            log = log.display(),
        );
        conf.push_str(&format!("max_per_ip={}\n", opts.max_per_ip.unwrap_or(0)));
        if opts.tls != Tls::Off {
            let cert = opts.cert.expect("TLS needs a certificate");
            // require_ssl_reuse stays at its default (YES): data connections must resume TLS.
            conf.push_str(&format!(
                "ssl_enable=YES\nrsa_cert_file={}\nrsa_private_key_file={}\nssl_ciphers=HIGH\n\
                 force_local_logins_ssl=YES\nforce_local_data_ssl=YES\n",
                cert.cert.display(),
                cert.key.display()
            ));
            if opts.tls == Tls::Implicit {
                conf.push_str("implicit_ssl=YES\n");
            }
        }
        conf.push_str(opts.extra);
        fs::write(dir.path().join("vsftpd.conf"), conf).unwrap();
        let child = Self::spawn(dir.path(), port);
        Vsftpd { child, port, tls: opts.tls, root, dir }
    }

    /// Runs vsftpd on the configuration in `dir` and waits until it listens on `port` (killed
    /// if it never does, so a failed wait leaves no server behind).
    fn spawn(dir: &Path, port: u16) -> Killed {
        let stderr = dir.join("stderr");
        let mut child = Command::new("vsftpd")
            .arg(dir.join("vsftpd.conf"))
            .stdout(Stdio::null())
            .stderr(fs::File::options().create(true).append(true).open(&stderr).unwrap())
            .spawn()
            .map(Killed)
            .expect("vsftpd is installed (see .ci/run)");
        wait_for_port(port, &mut child.0, &stderr);
        child
    }

    /// Takes the server down: the listener and every session are killed, so connections
    /// break and new ones are refused, until `restart`.
    pub fn stop(&mut self) {
        stop_tree(&mut self.child.0);
    }

    /// Starts the server again after `stop`, with the same configuration and port.
    pub fn restart(&mut self) {
        self.child = Self::spawn(self.dir.path(), self.port);
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("vsftpd.log")).unwrap_or_default()
    }

    /// Kills every session process (as if the network dropped all connections); the
    /// listener keeps accepting new sessions.
    pub fn kill_sessions(&self) -> usize {
        self.signal_sessions(libc::SIGKILL)
    }

    /// The server stops answering (listener and sessions stopped, connections left open),
    /// until `thaw`.
    pub fn freeze(&self) {
        signal_pid(self.child.0.id(), libc::SIGSTOP);
        self.signal_sessions(libc::SIGSTOP);
    }

    pub fn thaw(&self) {
        self.signal_sessions(libc::SIGCONT);
        signal_pid(self.child.0.id(), libc::SIGCONT);
    }

    fn signal_sessions(&self, signal: libc::c_int) -> usize {
        let victims = freeze_descendants(self.child.0.id());
        for &pid in &victims {
            signal_pid(pid, signal);
        }
        victims.len()
    }
}

started_server!(Vsftpd, PyFtpd);

/// pyftpdlib: a different server, with MLSD, run from tests/servers/pyftpd.py.
pub struct PyFtpd {
    child: Killed,
    port: u16,
    tls: Tls,
    root: TempDir,
    dir: TempDir,
}

impl PyFtpd {
    pub fn start(root: TempDir, tls_cert: Option<CertPair>, extra_args: &[&str]) -> PyFtpd {
        let dir = TempDir::new("pyftpd");
        let port = free_port();
        let (pasv_min, pasv_max) = port_range(40);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/servers/pyftpd.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .args(["--port", &port.to_string(), "--root", root.path().to_str().unwrap()])
            .args(["--user", USER, "--password", PASSWORD])
            .args(["--passive", &format!("{pasv_min}-{pasv_max}")])
            .args(extra_args);
        if let Some(c) = &tls_cert {
            cmd.args(["--cert", c.cert.to_str().unwrap(), "--key", c.key.to_str().unwrap()]);
        }
        let log = dir.path().join("pyftpd.log");
        let mut child = cmd.stdout(Stdio::null()).stderr(fs::File::create(&log).unwrap()).spawn().unwrap();
        wait_for_port(port, &mut child, &log);
        let tls = if tls_cert.is_some() { Tls::Explicit } else { Tls::Off };
        PyFtpd { child: Killed(child), port, tls, root, dir }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("pyftpd.log")).unwrap_or_default()
    }
}

/// tests/servers/faultproxy.py between the mount and a real server, for plain FTP: it relays
/// control and data connections and injects the faults of its rules (see the script's doc).
/// As a `Server` it stands for the server behind it (same root), so `Mount::of` works.
pub struct FaultProxy {
    child: Killed,
    port: u16,
    root: Option<PathBuf>,
    dir: TempDir,
    generation: u64,
}

impl FaultProxy {
    /// A proxy in front of `upstream_port` on 127.0.0.1, with no faults yet.
    pub fn start(upstream_port: u16) -> FaultProxy {
        let dir = TempDir::new("faultproxy");
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/servers/faultproxy.py");
        let log = dir.path().join("proxy.log");
        let stderr = dir.path().join("stderr");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--listen-port", &port.to_string(), "--upstream-port", &upstream_port.to_string()])
            .arg("--rules")
            .arg(dir.path().join("rules.json"))
            .arg("--log")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        wait_for_port(port, &mut child, &stderr);
        FaultProxy { child: Killed(child), port, root: None, dir, generation: 0 }
    }

    /// A proxy in front of `server` (plain FTP), standing for it in `Mount::of`.
    pub fn in_front_of(server: &dyn Server) -> FaultProxy {
        assert_eq!(server.tls(), Tls::Off, "the fault proxy relays plain FTP only");
        let mut proxy = FaultProxy::start(server.port());
        proxy.root = Some(server.root().to_path_buf());
        proxy
    }

    /// Puts `json` (an object: `{"rules": [...], "refuse_for": 3, ...}`) in force and returns
    /// once the proxy has loaded it (it acknowledges each generation).
    pub fn set_rules(&mut self, json: &str) {
        let mut spec: serde_json::Value = serde_json::from_str(json).expect("rules are JSON");
        self.generation += 1;
        spec["generation"] = serde_json::json!(self.generation);
        let path = self.dir.path().join("rules.json");
        let tmp = self.dir.path().join("rules.json.tmp");
        fs::write(&tmp, spec.to_string()).unwrap();
        fs::rename(&tmp, &path).unwrap();
        let ack = self.dir.path().join("rules.json.ack");
        let start = Instant::now();
        while fs::read_to_string(&ack).unwrap_or_default().trim() != self.generation.to_string() {
            assert!(start.elapsed() < Duration::from_secs(10), "the proxy did not load rules: {}", self.log());
            if let Ok(Some(status)) = self.child.0.try_wait() {
                panic!("the proxy exited with {status}: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// No faults.
    pub fn clear(&mut self) {
        self.set_rules("{}");
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// A position in the log, for `commands_since`.
    pub fn mark(&self) -> usize {
        self.log().len()
    }

    /// The commands relayed or answered since `mark`, as `VERB arg` (in order).
    pub fn commands_since(&self, mark: usize) -> Vec<String> {
        let log = self.log();
        log.get(mark..)
            .unwrap_or("")
            .lines()
            .filter_map(|l| l.split_once(" C> ").map(|(_, c)| c.trim_end().to_string()))
            .collect()
    }

    /// How many times the client sent `verb`.
    pub fn count(&self, verb: &str) -> usize {
        self.commands_since(0).iter().filter(|c| c.split(' ').next() == Some(verb)).count()
    }
}

impl Server for FaultProxy {
    fn port(&self) -> u16 {
        self.port
    }
    fn root(&self) -> &Path {
        self.root.as_deref().expect("FaultProxy::in_front_of knows the server's root")
    }
    fn tls(&self) -> Tls {
        Tls::Off
    }
}

/// Counts established TCP connections to a server's control port, sampled in the background;
/// `peak()` is the most seen at once.
pub struct SessionCounter {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

/// Client-side TCP connections to `port` in state ESTABLISHED. /proc/net/tcp is read in chunks
/// and, while other tests open and close connections, a socket can be listed twice (the kernel
/// resumes each chunk by position in a changing table), so sockets are counted once by address.
pub fn established_to(port: u16) -> usize {
    let mut seen = std::collections::HashSet::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(f) = fs::File::open(file) else { continue };
        for line in BufReader::new(f).lines().skip(1).map_while(Result::ok) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // local_address rem_address st: count the client side (remote port = server port).
            let remote_port =
                cols.get(2).and_then(|a| a.rsplit(':').next()).and_then(|p| u16::from_str_radix(p, 16).ok());
            if remote_port == Some(port) && cols.get(3) == Some(&"01") {
                seen.insert((cols[1].to_string(), cols[2].to_string()));
            }
        }
    }
    seen.len()
}

impl SessionCounter {
    pub fn start(port: u16) -> SessionCounter {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicUsize::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                p.fetch_max(established_to(port), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        SessionCounter { stop, peak, thread: Some(thread) }
    }

    pub fn peak(&mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.peak.load(Ordering::SeqCst)
    }
}

impl Drop for SessionCounter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// vsftpd with explicit TLS and the test server certificate; `extra` is more configuration.
pub fn tls_vsftpd(certs: &Certs, root: TempDir, extra: &str) -> Vsftpd {
    Vsftpd::start(
        root,
        VsftpdOptions { tls: Tls::Explicit, cert: Some(certs.pair("server")), extra, ..Default::default() },
    )
}

/// `ftpmount status MOUNTPOINT --json`: the mount's entry.
pub fn status_json(mountpoint: &Path) -> serde_json::Value {
    let out = Command::new(bin()).args(["status", mountpoint.to_str().unwrap(), "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    all[0].clone()
}

/// Runs `cmd`, which must succeed; its standard output.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Deterministic bytes for file contents.
/// One line of vsftpd's transfer log: kind (`DOWNLOAD`, `UPLOAD`), path and bytes, as in
/// `…] OK DOWNLOAD: Client "127.0.0.1", "/dir/file", 123 bytes, 4.5Kbyte/sec`.
pub fn parse_transfer(line: &str) -> Option<(&str, &str, u64)> {
    let (_, rest) = line.split_once("] OK ").or_else(|| line.split_once("] FAIL "))?;
    let (kind, rest) = rest.split_once(": Client \"")?;
    let (_, rest) = rest.split_once("\", \"")?;
    let end = rest.rfind(" bytes, ")?;
    let (path, n) = rest[..end].rsplit_once("\", ")?;
    Some((kind, path, n.parse().ok()?))
}

/// Waits until `server`'s log since `mark` is `ready` and has not changed for `quiet` (at most
/// `limit` in all); then the whole log.
pub fn settled_log(
    server: &Vsftpd,
    mark: usize,
    quiet: Duration,
    limit: Duration,
    ready: impl Fn(&str) -> bool,
) -> String {
    let start = Instant::now();
    let mut last = String::new();
    let mut quiet_since = Instant::now();
    loop {
        let log = server.log();
        let tail = log.get(mark..).unwrap_or("");
        if tail != last {
            last = tail.to_string();
            quiet_since = Instant::now();
        } else if ready(tail) && quiet_since.elapsed() > quiet {
            return log;
        }
        assert!(start.elapsed() < limit, "the server's log did not settle:\n{tail}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Sets a file's modification time (seconds since the epoch).
pub fn set_mtime(path: &Path, secs: i64) {
    let f = fs::File::options().write(true).open(path).or_else(|_| fs::File::open(path)).unwrap();
    let t = std::time::UNIX_EPOCH + Duration::from_secs(secs as u64);
    f.set_modified(t).unwrap();
}

/// Many small files (0 B to 16 KiB, each with its own past mtime) in nested directories with
/// awkward names: spaces, Unicode, `#`, `%`, a leading dot.
pub fn small_files_tree(dir: &Path, n: usize) {
    let names = ["plain", "with space", "Ünïcödé 文件", "hash#", "percent%", ".dot"];
    for i in 0..n {
        let sub = dir.join(format!("level{}/{}", i % 7, names[i % names.len()])).join(format!("n{}", i % 3));
        fs::create_dir_all(&sub).unwrap();
        let size = match i % 10 {
            0 => 0,
            1 => 1,
            _ => (i * 131) % (16 * 1024),
        };
        let file = sub.join(format!("{} {i}.dat", names[(i / 7) % names.len()]));
        fs::write(&file, pseudo_random(size, i as u64)).unwrap();
        set_mtime(&file, 1_600_000_000 + i as i64 * 17);
    }
}

/// Every file under `a` exists under `b` with the same bytes and whole-second mtime.
pub fn assert_same_files(a: &Path, b: &Path) {
    for rel in tree_listing(a) {
        let (pa, pb) = (a.join(&rel), b.join(&rel));
        let ma = fs::metadata(&pa).unwrap();
        let mb = fs::metadata(&pb).unwrap_or_else(|e| panic!("{rel} missing on the server: {e}"));
        if ma.is_file() {
            assert_eq!(fs::read(&pa).unwrap(), fs::read(&pb).unwrap(), "{rel} differs");
            let secs =
                |m: &fs::Metadata| m.modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            assert_eq!(secs(&ma), secs(&mb), "{rel} mtime");
        }
    }
}

/// Relative paths of everything under `root`, sorted, like `find . -mindepth 1`.
pub fn tree_listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().to_str().unwrap().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    walk(root, root, &mut out);
    out.sort();
    out
}

/// A FAT volume (an image file served by fusefat): a real case-insensitive filesystem, as on a
/// Windows or IIS server. `new` returns it with its root, ready to be a server's root.
pub struct FatVolume {
    child: Child,
    mountpoint: PathBuf,
    _image: TempDir,
}

impl FatVolume {
    pub fn new() -> (FatVolume, TempDir) {
        let image_dir = TempDir::new("fat-image");
        let image = image_dir.path().join("volume.img");
        let file = fs::File::create(&image).unwrap();
        file.set_len(64 << 20).unwrap();
        drop(file);
        sh("mkfs.vfat", &[image.to_str().unwrap()]);
        let root = TempDir::new("fat-root");
        // rw+ is fusefat's "really write" mode; -f keeps it a child we can stop by pid.
        let mut child = Command::new("fusefat")
            .args(["-f", "-o", "rw+,allow_other"])
            .arg(&image)
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("fusefat is installed (see .ci/run)");
        let start = Instant::now();
        while !is_mounted(root.path()) {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("fusefat exited with {status}");
            }
            assert!(start.elapsed() < Duration::from_secs(20), "fusefat did not mount");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mountpoint = root.path().to_path_buf();
        (FatVolume { child, mountpoint, _image: image_dir }, root)
    }
}

impl Drop for FatVolume {
    fn drop(&mut self) {
        let ok = Command::new("fusermount3").arg("-u").arg(&self.mountpoint).stderr(Stdio::null()).status();
        if !ok.is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.mountpoint).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The server's root directory was this mountpoint: it could only go once unmounted.
        let _ = fs::remove_dir_all(&self.mountpoint);
    }
}

/// A small tmpfs mounted at `dir`: a disk that fills up. Unmounted on drop.
pub struct SmallDisk(PathBuf);

impl SmallDisk {
    pub fn mount(dir: &Path, bytes: u64) -> SmallDisk {
        fs::create_dir_all(dir).unwrap();
        sh("mount", &["-t", "tmpfs", "-o", &format!("size={bytes},mode=0777"), "tmpfs", dir.to_str().unwrap()]);
        SmallDisk(dir.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
