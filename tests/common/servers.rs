//! More FTP servers for the compatibility tests (tests/e2e_servers.rs): ProFTPD 1.3.8,
//! Pure-FTPd 1.0.50 and inetutils-ftpd, run side by side from the Debian packages that
//! `.ci/install-test-servers` extracted (their packages conflict), and an IIS-like pyftpdlib.
//! Each runs as root on 127.0.0.1 with a generated configuration in its own temporary
//! directory, and is stopped (listener and sessions, by pid) when dropped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{
    CertPair, PASSWORD, PyFtpd, Server, ServerProcess, TempDir, Tls, USER, chown_to_user, ensure_user, free_port,
    port_range, wait_for_port,
};

/// Where `.ci/install-test-servers` put the extracted trees (`$FTPMOUNT_SERVERS_DIR`).
pub fn servers_dir() -> PathBuf {
    PathBuf::from(std::env::var("FTPMOUNT_SERVERS_DIR").unwrap_or_else(|_| "/opt/ftpmount-test-servers".into()))
}

fn extracted(rel: &str) -> PathBuf {
    let p = servers_dir().join(rel);
    assert!(p.exists(), "{} is missing: run .ci/install-test-servers (as root)", p.display());
    p
}

fn read(path: PathBuf) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// ProFTPD 1.3.8 with mod_tls, as Debian ships it.
pub struct Proftpd {
    /// Stopped with its sessions when dropped.
    _process: ServerProcess,
    port: u16,
    tls: Tls,
    root: TempDir,
    dir: TempDir,
}

impl Proftpd {
    /// Serves `root` (given to the FTP user, who is chrooted there). TLS: `Explicit` means
    /// `TLSRequired on` with the *default* TLSOptions (so data connections must reuse the
    /// control connection's TLS session) and TLS 1.2 and 1.3; `Implicit` adds only
    /// `TLSOptions UseImplicitSSL`. `extra` is appended to the configuration.
    pub fn start(root: TempDir, tls: Tls, cert: Option<CertPair>, extra: &str) -> Proftpd {
        ensure_user();
        chown_to_user(root.path());
        let tree = extracted("proftpd/usr/sbin/proftpd");
        let modules = extracted("proftpd/usr/lib/proftpd/mod_tls.so");
        let dir = TempDir::new("proftpd");
        let d = dir.path();
        let port = free_port();
        let (pasv_min, pasv_max) = port_range(40);
        let mut conf = format!(
            "ServerName \"ftpmount test ProFTPD\"\nServerType standalone\nDefaultServer on\nUseIPv6 off\n\
             DefaultAddress 127.0.0.1\nSocketBindTight on\nPort {port}\nPassivePorts {pasv_min} {pasv_max}\n\
             ModulePath {modules}\nUser nobody\nGroup nogroup\n\
             PidFile {d}/proftpd.pid\nScoreboardFile {d}/proftpd.scoreboard\nDelayTable none\nWtmpLog off\n\
             UseReverseDNS off\nUseFtpUsers off\nRequireValidShell off\nAuthPAM off\nAuthOrder mod_auth_unix.c\n\
             DefaultRoot {root}\nMaxInstances 200\nUmask 022\nAllowOverwrite on\n\
             SystemLog {d}/proftpd.log\nTransferLog {d}/xfer.log\n",
            modules = modules.parent().unwrap().display(),
            d = d.display(),
            root = root.path().display(),
        );
        if tls != Tls::Off {
            let cert = cert.expect("TLS needs a certificate");
            conf.push_str(&format!(
                "LoadModule mod_tls.c\nTLSEngine on\nTLSRequired on\nTLSProtocol TLSv1.2 TLSv1.3\n\
                 TLSRSACertificateFile {}\nTLSRSACertificateKeyFile {}\nTLSVerifyClient off\nTLSLog {}/tls.log\n",
                cert.cert.display(),
                cert.key.display(),
                d.display()
            ));
            if tls == Tls::Implicit {
                conf.push_str("TLSOptions UseImplicitSSL\n");
            }
        }
        conf.push_str(extra);
        fs::write(d.join("proftpd.conf"), conf).unwrap();
        let stderr = d.join("stderr");
        // -n: foreground, log to stderr too; the listener forks a process per session.
        let mut child = Command::new(tree)
            .arg("-n")
            .arg("-c")
            .arg(d.join("proftpd.conf"))
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        wait_for_port(port, &mut child, &stderr);
        Proftpd { _process: ServerProcess(child), port, tls, root, dir }
    }

    /// mod_tls's log (`client did not reuse TLS session, rejecting data connection`...).
    pub fn tls_log(&self) -> String {
        read(self.dir.path().join("tls.log"))
    }

    pub fn transfer_log(&self) -> String {
        read(self.dir.path().join("xfer.log"))
    }

    /// The system log and what ProFTPD wrote to stderr.
    pub fn log(&self) -> String {
        read(self.dir.path().join("proftpd.log")) + &read(self.dir.path().join("stderr"))
    }
}

/// Pure-FTPd 1.0.50 (privsep build), run in the foreground from its command line. Its own
/// user database (puredb, made with the extracted `pure-pw`) maps the test user, with the
/// test password, to the system account and `root` as its home; everyone is chrooted.
pub struct PureFtpd {
    /// Stopped with its sessions when dropped.
    _process: ServerProcess,
    port: u16,
    tls: Tls,
    root: TempDir,
    dir: TempDir,
}

impl PureFtpd {
    /// TLS: `Off` is `-Y 0`, `Explicit` is `-Y 2` (TLS required on the control connection)
    /// with the PEM (key + certificate) given by `--certfile` instead of the default
    /// /etc/ssl/private/pure-ftpd.pem. Dot files are listed (`-D`, the sample config's
    /// default). `extra` are more command-line options.
    pub fn start(root: TempDir, tls: Tls, cert: Option<CertPair>, extra: &[&str]) -> PureFtpd {
        assert!(tls != Tls::Implicit, "Pure-FTPd has no implicit TLS");
        ensure_user();
        chown_to_user(root.path());
        let bin = extracted("pure-ftpd/usr/sbin/pure-ftpd");
        let pure_pw = extracted("pure-ftpd/usr/bin/pure-pw");
        let dir = TempDir::new("pure-ftpd");
        let d = dir.path();
        let id = |flag: &str| {
            let out = Command::new("id").args([flag, USER]).output().unwrap();
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        // A SHA-512 crypt hash, as in /etc/shadow: `pure-pw useradd` would hash with argon2id
        // at a cost that takes seconds per login on a busy test machine.
        let hash = Command::new("openssl").args(["passwd", "-6", "-salt", "ftpmounttest", PASSWORD]).output().unwrap();
        let line = format!(
            "{USER}:{}:{}:{}::{}/./::::::::::::\n",
            String::from_utf8(hash.stdout).unwrap().trim(),
            id("-u"),
            id("-g"),
            root.path().display()
        );
        fs::write(d.join("pureftpd.passwd"), line).unwrap();
        let ok = Command::new(pure_pw)
            .arg("mkdb")
            .arg(d.join("pureftpd.pdb"))
            .arg("-f")
            .arg(d.join("pureftpd.passwd"))
            .status()
            .unwrap();
        assert!(ok.success(), "pure-pw mkdb failed");
        let port = free_port();
        let (pasv_min, pasv_max) = port_range(40);
        let mut cmd = Command::new(bin);
        cmd.args(["-S", &format!("127.0.0.1,{port}"), "-p", &format!("{pasv_min}:{pasv_max}")])
            .arg("-l")
            .arg(format!("puredb:{}", d.join("pureftpd.pdb").display()))
            .args(["-E", "-A", "-H", "-D", "-c", "200", "-C", "200"])
            .arg("-O")
            .arg(format!("clf:{}", d.join("xfer.log").display()))
            .arg("-g")
            .arg(d.join("pure-ftpd.pid"));
        if tls == Tls::Off {
            cmd.args(["-Y", "0"]);
        } else {
            let cert = cert.expect("TLS needs a certificate");
            let pem = d.join("pure-ftpd.pem");
            let mut both = fs::read(&cert.key).unwrap();
            both.extend(fs::read(&cert.cert).unwrap());
            fs::write(&pem, both).unwrap();
            cmd.args(["-Y", "2", "-2"]).arg(&pem);
        }
        cmd.args(extra);
        let stderr = d.join("stderr");
        let mut child = cmd.stdout(Stdio::null()).stderr(fs::File::create(&stderr).unwrap()).spawn().unwrap();
        wait_for_port(port, &mut child, &stderr);
        PureFtpd { _process: ServerProcess(child), port, tls, root, dir }
    }

    /// The transfer log (CLF) and what Pure-FTPd wrote to stderr (its own log goes to syslog).
    pub fn log(&self) -> String {
        read(self.dir.path().join("xfer.log")) + &read(self.dir.path().join("stderr"))
    }
}

/// inetutils-ftpd 2.4, a legacy server (FEAT without MFMT; `MDTM time path` is read as a file
/// name), run by tests/servers/inetd.py: one `ftpd --auth=default` (password file, not PAM)
/// per connection, with the socket as its standard input and output. It has no chroot for
/// ordinary users and no passive-port option: the URL names the served directory by its
/// absolute path, and passive ports are ephemeral.
pub struct Inetutils {
    /// Stopped with its sessions when dropped.
    _process: ServerProcess,
    port: u16,
    root: TempDir,
    dir: TempDir,
}

impl Inetutils {
    pub fn start(root: TempDir) -> Inetutils {
        Self::start_in_zone(root, None)
    }

    /// With `tz` (a POSIX TZ, e.g. `LOC-05:30` for UTC+05:30), ftpd runs in that zone: its
    /// LIST shows local times without a marker, as a server whose clock is set to local time.
    pub fn start_in_zone(root: TempDir, tz: Option<&str>) -> Inetutils {
        ensure_user();
        chown_to_user(root.path());
        let ftpd = extracted("inetutils/usr/sbin/ftpd");
        let dir = TempDir::new("inetutils");
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/servers/inetd.py");
        let log = dir.path().join("inetd.log");
        let mut cmd = Command::new("python3");
        if let Some(tz) = tz {
            cmd.env("TZ", tz);
        }
        let mut child = cmd
            .arg(script)
            .args(["--port", &port.to_string(), "--"])
            .arg(ftpd)
            .arg("--auth=default")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        wait_for_port(port, &mut child, &log);
        Inetutils { _process: ServerProcess(child), port, root, dir }
    }

    /// One line per accepted connection (and what ftpd wrote to stderr).
    pub fn log(&self) -> String {
        read(self.dir.path().join("inetd.log"))
    }
}

impl Server for Inetutils {
    fn port(&self) -> u16 {
        self.port
    }
    fn root(&self) -> &Path {
        self.root.path()
    }
    fn tls(&self) -> Tls {
        Tls::Off
    }
    /// No chroot: the served directory is named by its absolute path.
    fn url(&self) -> String {
        format!("ftp://{USER}@localhost:{}{}/", self.port, self.root.path().display())
    }
}

/// pyftpdlib made to behave like Microsoft's FTP server (IIS) or FileZilla Server: DOS
/// listings and no MLSD/MLST, RNTO onto an existing name refused, and (with `offset`, e.g.
/// `+05:30`) LIST and MDTM in that zone's local time without a marker.
pub fn iis_like(root: TempDir, offset: Option<&str>, extra: &[&str]) -> PyFtpd {
    let mut args = vec!["--dos-listing", "--refuse-rename-over"];
    if let Some(o) = offset {
        args.extend(["--local-time-offset", o]);
    }
    args.extend(extra);
    PyFtpd::start(root, None, &args)
}

started_server!(Proftpd, PureFtpd);
