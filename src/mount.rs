//! The `mount` command: resolve settings, connect (so errors come before the mount exists),
//! mount, serve until unmounted or signalled, then close sessions.

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::SystemClock;
use crate::config::{self, Options, Target};
use crate::fs::case::{self, CaseRules, CollisionPolicy, ServerCase};
use crate::fs::{Fs, FsConfig};
use crate::remote::Remote;
use crate::remote::ftp::{FtpRemote, TlsMode, session::Endpoint};
use crate::tls::{TlsClient, TlsOptions};

pub struct MountRequest {
    pub source: String,
    pub mountpoint: PathBuf,
    pub options: Options,
    pub profile_path: Option<PathBuf>,
    pub daemon: bool,
    /// Where the log goes (always set for `--daemon`: a background mount has no stderr).
    pub log_file: Option<PathBuf>,
}

pub const DEFAULT_MAX_CONNECTIONS: usize = 25;
/// How often directories being looked at are listed again (`--watch-interval`).
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(3);
/// Spool files for files being rewritten, all together.
pub const DEFAULT_CACHE_MAX_SIZE: u64 = 10 << 30;
/// File content kept between opens and mounts.
pub const DEFAULT_CONTENT_CACHE_SIZE: u64 = 4 << 30;
/// Files fetched ahead of a reader walking a directory, at most.
pub const DEFAULT_PREFETCH_FILES: usize = 32;
/// Directory listings kept in memory: 4,096 directories and 100,000 entries in all (about
/// 12 MiB; a bigger single directory is kept while it is the newest).
const DIR_CACHE: crate::fs::dircache::CacheLimits = crate::fs::dircache::CacheLimits { dirs: 4096, entries: 100_000 };

/// `$XDG_CACHE_HOME/ftpmount` or `~/.cache/ftpmount`.
fn default_cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("ftpmount")
}

pub fn run(mut req: MountRequest) -> ExitCode {
    // An absolute path, so messages and the unmount on a signal work from anywhere.
    if let Ok(abs) = std::path::absolute(&req.mountpoint) {
        req.mountpoint = abs;
    }
    match prepare(&req) {
        Ok(prepared) => serve(req, prepared),
        Err(msg) => {
            eprintln!("ftpmount: cannot mount {}: {msg}", config::redact(&req.source));
            ExitCode::FAILURE
        }
    }
}

/// What is known before any connection: settings, password, checked mountpoint.
pub struct Prepared {
    pub target: Target,
    pub options: Options,
    pub endpoint: Endpoint,
}

fn prepare(req: &MountRequest) -> Result<Prepared, String> {
    resolve(&req.source, req.options.clone(), req.profile_path.clone(), Some(&req.mountpoint))
}

/// Settings and password for SOURCE (a URL or a connection label); checks the mountpoint,
/// if there is one, before asking for a password.
pub fn resolve(
    source: &str,
    cli: Options,
    profile_path: Option<PathBuf>,
    mountpoint: Option<&Path>,
) -> Result<Prepared, String> {
    let profile_path = profile_path.or_else(config::default_profile_path);
    let profiles = match &profile_path {
        Some(p) => config::load_profiles(p).map_err(|e| e.to_string())?,
        None => Default::default(),
    };
    let (target, options) = config::resolve_source(source, cli, &profiles).map_err(|e| e.to_string())?;
    if let Some(m) = mountpoint {
        check_mountpoint(m)?;
    }
    let password = config::password(&target, &options, prompt_password).map_err(|e| e.to_string())?;
    let tls_client = match target.tls {
        TlsMode::Off => {
            tracing::warn!("TLS is off: the password and all files cross the network unencrypted");
            None
        }
        _ => Some(Arc::new(TlsClient::new(&tls_options(&options)?).map_err(|e| e.to_string())?)),
    };
    let endpoint = Endpoint {
        host: target.host.clone(),
        port: target.port,
        user: target.user.clone(),
        password,
        tls: target.tls,
        tls_client,
        connect_timeout: options.connect_timeout.unwrap_or(Duration::from_secs(10)),
        io_timeout: options.io_timeout.unwrap_or(Duration::from_secs(30)),
        greeted_before: Default::default(),
        reconnect_for: options.reconnect_timeout.or(options.io_timeout).unwrap_or(Duration::from_secs(30)),
        charset: options.encoding.unwrap_or_default(),
        server_timezone: options.server_timezone,
    };
    Ok(Prepared { target, options, endpoint })
}

pub fn tls_options(o: &Options) -> Result<TlsOptions, String> {
    Ok(TlsOptions {
        ca_file: o.ca_file.clone(),
        allow_mismatched_host: o.tls_allow_mismatched_host,
        allow_self_signed: o.tls_allow_self_signed,
        fingerprint_sha256: o.tls_fingerprint.clone(),
        max_version: match o.tls_max_version.as_deref() {
            None => None,
            Some(v) => Some(v.parse().map_err(|e| format!("--tls-max-version: {e}"))?),
        },
    })
}

fn prompt_password(question: &str) -> Option<String> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return None;
    }
    rpassword::prompt_password(question).ok()
}

fn check_mountpoint(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("mountpoint {} is not a directory", path.display())),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Err(format!(
            "mountpoint {} is a dead mount left by an earlier run; clear it with: fusermount3 -u {}",
            path.display(),
            path.display()
        )),
        Err(e) => Err(format!("mountpoint {}: {e}. Create it first: mkdir -p {}", path.display(), path.display())),
    }
}

fn serve(req: MountRequest, p: Prepared) -> ExitCode {
    let mut ready = match go_to_background(req.daemon) {
        Ok(pipe) => pipe,
        Err(code) => return code,
    };
    // Signals are handled by one thread; block them before any other thread starts.
    let signals = block_signals();
    crate::memory::tune_allocator();
    crate::memory::start_trimmer();
    let max = p.options.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    let (remote, security) = match connect(&p, max) {
        Ok(r) => r,
        Err(msg) => return cannot_mount(&req, &mut ready, msg),
    };
    let fs = Arc::new(Fs::new(
        remote.clone() as Arc<dyn Remote>,
        fs_config(&p, remote.as_ref(), max),
        Arc::new(SystemClock),
    ));
    fs.resume_write_back();
    // One session stays free for the application's own requests.
    fs.start_write_back(max.saturating_sub(1));
    let mounted = match mount_fuse(&req, &p, &fs, &remote) {
        Ok(m) => m,
        Err(msg) => {
            remote.close();
            return cannot_mount(&req, &mut ready, msg);
        }
    };
    // Before saying "mounted": whoever waits for that may ask for the status at once.
    let _status = start_status_server(&req, &fs, &remote);
    announce(&req, &mut ready, &remote, security, max);
    spawn_janitor(fs.clone(), remote.clone());
    // After the mount: the watcher tells the kernel through the session's notifier.
    fs.start_watching();
    spawn_signal_handler(signals, req.mountpoint.clone());
    let result = mounted.join();
    finish(&req, &fs, &remote, result)
}

/// With `--daemon`: forks, and returns the pipe the parent waits on for "mounted" or the
/// reason it could not be.
fn go_to_background(daemon: bool) -> Result<Option<std::fs::File>, ExitCode> {
    if !daemon {
        return Ok(None);
    }
    match daemonize() {
        Ok(Some(pipe)) => Ok(Some(pipe)),
        Ok(None) => unreachable!("the parent exits inside daemonize"),
        Err(e) => {
            eprintln!("ftpmount: cannot go to the background: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// Says why the mount could not be made: on stderr, or through the pipe to the parent.
fn cannot_mount(req: &MountRequest, ready: &mut Option<std::fs::File>, msg: String) -> ExitCode {
    let line = format!("ftpmount: cannot mount {}: {msg}", config::redact(&req.source));
    match ready.take() {
        Some(mut pipe) => {
            let _ = writeln!(pipe, "{line}");
        }
        None => eprintln!("{line}"),
    }
    ExitCode::FAILURE
}

/// The session pool, checked end to end before the mount exists: a blocked passive port range
/// fails here with the same words as `ftpmount check`, not later as "Input/output error".
fn connect(p: &Prepared, max: usize) -> Result<(Arc<FtpRemote>, crate::remote::ftp::Security), String> {
    let (remote, security) = FtpRemote::connect(p.endpoint.clone(), max, &p.target.path, Arc::new(SystemClock))
        .map_err(|e| e.to_string())?;
    if let Err(e) = remote.list_names("") {
        remote.close();
        return Err(e.to_string());
    }
    Ok((Arc::new(remote), security))
}

/// The filesystem's settings from the options (and, for case folding, from the server).
fn fs_config(p: &Prepared, remote: &dyn Remote, max: usize) -> FsConfig {
    let read_only = p.options.read_only;
    let cache_dir = p.options.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let queue = write_back_queue(&cache_dir, p);
    let content_limit = p.options.content_cache_size.unwrap_or(DEFAULT_CONTENT_CACHE_SIZE);
    let content_cache =
        (content_limit > 0).then(|| (crate::fs::content::cache_dir(&cache_dir, &source_identity(p)), content_limit));
    if !p.options.write_back {
        warn_about_left_uploads(&queue);
    }
    FsConfig {
        dir_ttl: p.options.dir_timeout.unwrap_or(Duration::from_secs(30)),
        attr_ttl: p.options.attr_timeout.unwrap_or(Duration::from_secs(10)),
        read_only,
        // SAFETY: getuid/getgid cannot fail.
        uid: unsafe { libc::getuid() },
        gid: unsafe { libc::getgid() },
        dir_cache: DIR_CACHE,
        cache_dir,
        cache_max_size: p.options.cache_max_size.unwrap_or(DEFAULT_CACHE_MAX_SIZE),
        case: case_rules(&p.options, remote, read_only),
        // A quarter of the sessions at most, so a walk never crowds out reads and writes.
        prefetch_workers: (max / 4).clamp(1, 4),
        prefetch_files: p.options.prefetch_files.unwrap_or(DEFAULT_PREFETCH_FILES),
        // Files fetched ahead: all sessions but one (one at least). They start only on a
        // session nobody waits for and give it back as soon as somebody does, so a reader
        // walking a folder is fed by every session the server allows (`cp -r` at 20 ms:
        // 18.1 s with half of 8 sessions, 11.1 s with 7).
        prefetch_file_sessions: max.saturating_sub(1).max(1),
        write_back: p.options.write_back.then_some(queue),
        content_cache,
        watch_interval: p.options.watch_interval.unwrap_or(DEFAULT_WATCH_INTERVAL),
    }
}

/// The FUSE mount itself, with `statfs` answered from the server's free space where it tells.
fn mount_fuse(
    req: &MountRequest,
    p: &Prepared,
    fs: &Arc<Fs>,
    remote: &Arc<FtpRemote>,
) -> Result<crate::fuse::Mounted, String> {
    let asker = remote.clone();
    let space = crate::fs::space::SpaceCache::new(
        Arc::new(move || asker.space("")),
        Arc::new(SystemClock),
        p.options.assume_free_space,
    );
    let spec = crate::fuse::MountSpec {
        mountpoint: &req.mountpoint,
        fsname: format!("ftpmount:{}", p.target.host),
        read_only: p.options.read_only,
        allow_other: p.options.allow_other,
        space,
    };
    crate::fuse::mount(fs.clone(), &spec).map_err(|e| format!("mounting at {} failed: {e}", req.mountpoint.display()))
}

/// The socket `ftpmount status` and `sync` talk to; the mount works without it.
fn start_status_server(
    req: &MountRequest,
    fs: &Arc<Fs>,
    remote: &Arc<FtpRemote>,
) -> Option<crate::status::StatusServer> {
    let remote = remote.clone() as Arc<dyn Remote>;
    match crate::status::StatusServer::start(fs.clone(), remote, &req.mountpoint, req.log_file.clone()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(
                "`ftpmount status` will not see this mount: cannot listen on {}: {e}",
                crate::status::socket_path(&req.mountpoint).display()
            );
            None
        }
    }
}

/// "Mounted …, unmount with …": in the log, and to the waiting parent of a daemon.
fn announce(
    req: &MountRequest,
    ready: &mut Option<std::fs::File>,
    remote: &FtpRemote,
    security: crate::remote::ftp::Security,
    max: usize,
) {
    let note = format!(
        "ftpmount: mounted {} at {} ({security}, up to {max} sessions). Unmount with: fusermount3 -u {}",
        remote.describe(),
        req.mountpoint.display(),
        req.mountpoint.display()
    );
    tracing::info!("{}", note.trim_start_matches("ftpmount: "));
    let note = match (&req.log_file, req.daemon) {
        (Some(log), true) => format!("{note}\nftpmount: the log is in {}", log.display()),
        _ => note,
    };
    if let Some(mut pipe) = ready.take() {
        let _ = writeln!(pipe, "OK {note}");
    }
}

/// After the unmount: files still open (a lazy unmount) and queued uploads are put up, the
/// sessions closed, and anything not saved reported. The exit code says whether all was.
fn finish(req: &MountRequest, fs: &Fs, remote: &FtpRemote, result: std::io::Result<()>) -> ExitCode {
    let failed = fs.flush_all();
    fs.close_reads();
    let (failed_uploads, left) = fs.finish_write_back(WRITE_BACK_DRAIN_LIMIT);
    remote.close();
    let queue = || fs.config().write_back.as_ref().map(|d| d.display().to_string()).unwrap_or_default();
    if failed > 0 {
        tracing::error!(
            "{failed} file(s) with unsaved changes could not be uploaded at unmount (see the errors above)"
        );
    }
    if failed_uploads > 0 {
        tracing::error!(
            "write-back: {failed_uploads} upload(s) failed during this mount; their data is kept in {}",
            fs.config().write_back.as_ref().map(|d| d.join("failed").display().to_string()).unwrap_or_default()
        );
    }
    if left > 0 {
        tracing::error!(
            "write-back: {left} upload(s) could not be finished; they stay queued in {} and resume at the next \
             mount of {} with --write-back",
            queue(),
            config::redact(&req.source)
        );
    }
    if failed + failed_uploads + left > 0 {
        return ExitCode::FAILURE;
    }
    match result {
        Ok(()) => {
            tracing::info!("unmounted {}", req.mountpoint.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("the mount ended with an error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How long an unmount waits for queued uploads before leaving them for the next mount.
const WRITE_BACK_DRAIN_LIMIT: Duration = Duration::from_secs(600);

/// The write-back queue of this source: the same account, server and path find the same one.
fn write_back_queue(cache_dir: &std::path::Path, p: &Prepared) -> PathBuf {
    crate::fs::writeback::queue_dir(cache_dir, &source_identity(p))
}

/// The account, server and path a mount shows: what its queue and content cache belong to.
fn source_identity(p: &Prepared) -> String {
    format!("{}@{}:{}/{}", p.endpoint.user, p.endpoint.host, p.endpoint.port, p.target.path)
}

/// A mount without --write-back leaves a queue alone, but says it is there.
fn warn_about_left_uploads(queue: &std::path::Path) {
    let waiting = std::fs::read_dir(queue)
        .map(|d| d.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "json")).count())
        .unwrap_or(0);
    if waiting > 0 {
        tracing::warn!(
            "{waiting} upload(s) queued by an earlier --write-back mount of this source wait in {}; mount with \
             --write-back to finish them",
            queue.display()
        );
    }
}

/// Whether the server folds case (asked, or found out) and the collision policy that follows.
fn case_rules(o: &Options, remote: &dyn Remote, read_only: bool) -> CaseRules {
    let folding = o.case_folding.unwrap_or_default();
    let server_folds = match o.case_insensitive_server.unwrap_or_default() {
        ServerCase::Yes => true,
        ServerCase::No => false,
        ServerCase::Auto => {
            let found = case::detect(remote, !read_only);
            let verdict = if found.server_folds { "folds case" } else { "is case-sensitive" };
            tracing::info!("the server {verdict}: {}", found.how);
            found.server_folds
        }
    };
    let rules = CaseRules::new(o.case_collisions, server_folds, folding);
    let what = match rules.policy {
        CollisionPolicy::Warn => "logged",
        CollisionPolicy::Reject => "refused",
        CollisionPolicy::Off => "not checked",
    };
    tracing::info!("names that differ only in case from an existing name are {what} (--case-collisions)");
    rules
}

/// Frees sessions held by idle downloads and closes sessions idle too long.
fn spawn_janitor(fs: Arc<Fs>, remote: Arc<FtpRemote>) {
    std::thread::Builder::new()
        .name("janitor".into())
        .spawn(move || {
            for round in 1u64.. {
                std::thread::sleep(Duration::from_millis(100));
                fs.close_idle_streams();
                remote.reap();
                // Every second: the listings of directories the kernel just forgot go soon.
                if round % 10 == 0 {
                    fs.forget_old_listings();
                }
            }
        })
        .expect("spawning the janitor thread");
}

fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc signal-set manipulation on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// On Ctrl-C, SIGTERM or SIGHUP: unmount, which ends the FUSE session and lets `serve` finish.
fn spawn_signal_handler(set: libc::sigset_t, mountpoint: PathBuf) {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` holds the signals blocked in every thread.
            unsafe { libc::sigwait(&set, &mut sig) };
            tracing::info!("signal {sig} received: unmounting {}", mountpoint.display());
            crate::fuse::unmount(&mountpoint);
        })
        .expect("spawning the signal thread");
}

/// Forks; the parent waits until the child reports the mount ready (or failed) and exits
/// with that result. Returns the pipe the child reports on.
fn daemonize() -> std::io::Result<Option<std::fs::File>> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fresh descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fork in a process that has started no threads yet.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: each side owns one end of the pipe from here on.
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    if pid > 0 {
        drop(write_end);
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut std::fs::File::from(read_end), &mut text);
        match text.strip_prefix("OK ") {
            Some(note) => {
                eprint!("{note}");
                std::process::exit(0)
            }
            None if text.is_empty() => {
                eprintln!("ftpmount: the background process ended before the mount was ready");
                std::process::exit(1)
            }
            None => {
                eprint!("{text}");
                std::process::exit(1)
            }
        }
    }
    drop(read_end);
    // SAFETY: detaching from the terminal's session; redirecting standard streams.
    unsafe {
        libc::setsid();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            // The log goes to its file; nothing may hold the caller's terminal or pipes.
            for fd in 0..=2 {
                libc::dup2(null, fd);
            }
        }
    }
    Ok(Some(std::fs::File::from(write_end)))
}
