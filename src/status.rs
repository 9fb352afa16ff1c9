//! `ftpmount status`: a running mount answers on a Unix socket under the user's runtime
//! directory (never inside the mount) with its sessions, cache, transfers and last errors.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fs::{Fs, TransferStatus};
use crate::remote::{Remote, SessionStats};

/// What a mount reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountStatus {
    pub mountpoint: String,
    pub source: String,
    pub pid: u32,
    pub uptime_seconds: u64,
    pub sessions: SessionStats,
    pub listing_cache_hits: u64,
    pub listing_cache_misses: u64,
    pub transfers: Vec<TransferStatus>,
    /// Files with changes held locally: spooled and uploaded at close, or closed and waiting
    /// in the write-back queue.
    pub queued_uploads: usize,
    /// Write-back uploads that failed for good, as [`FailedUpload`](crate::fs::writeback::FailedUpload)
    /// shows them: "PATH: ERROR (data kept in FILE)".
    #[serde(default)]
    pub failed_uploads: Vec<String>,
    /// The latest failures reported to applications, oldest first.
    pub recent_errors: Vec<String>,
    /// Where the mount logs, when it logs to a file.
    pub log_file: Option<String>,
    /// What was found out about the server: (what, how).
    #[serde(default)]
    pub server_profile: Vec<(String, String)>,
    /// The content cache's counters (`None`: off).
    #[serde(default)]
    pub content_cache: Option<crate::fs::content::ContentStats>,
    /// Files fetched ahead for readers walking a directory (`None`: off).
    #[serde(default)]
    pub prefetch: Option<crate::fs::prefetch_files::PrefetchStats>,
    /// What the daemon holds in memory (`None` from a mount of an older version).
    #[serde(default)]
    pub memory: Option<crate::fs::MemoryStats>,
}

fn uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

/// Where mounts put their sockets: `$XDG_RUNTIME_DIR/ftpmount`, else `/run/user/UID/ftpmount`,
/// else `/tmp/ftpmount-UID`.
pub fn socket_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("ftpmount");
    }
    registry_dir_or(std::env::temp_dir())
}

/// `/run/user/UID/ftpmount`, else `TMP/ftpmount-UID`.
fn registry_dir_or(tmp: PathBuf) -> PathBuf {
    let run = PathBuf::from(format!("/run/user/{}", uid()));
    if run.is_dir() {
        return run.join("ftpmount");
    }
    tmp.join(format!("ftpmount-{}", uid()))
}

/// The one place every mount of this user is recorded, whatever `XDG_RUNTIME_DIR` or
/// `TMPDIR` said when it was made: `/run/user/UID/ftpmount`, else `/tmp/ftpmount-UID`. A mount
/// whose socket is elsewhere leaves a symbolic link to it here.
pub fn registry_dir() -> PathBuf {
    registry_dir_or(PathBuf::from("/tmp"))
}

/// Every directory a mount of this user may have put its socket (or a link to it) in, the
/// current one first: `status` finds a mount made with another `XDG_RUNTIME_DIR`.
fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![socket_dir(), registry_dir(), registry_dir_or(std::env::temp_dir())];
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(x).join("ftpmount"));
    }
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| private_dir(d) && seen.insert(std::fs::canonicalize(d).unwrap_or_else(|_| d.clone())));
    dirs
}

/// A directory of this user's that nobody else may write to (a shared /tmp could hold one
/// made by someone else, with sockets that would answer for them).
fn private_dir(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == uid() && m.mode() & 0o022 == 0)
}

/// `<hash>.sock`: the socket's name for the mount at `mountpoint` (an absolute path).
fn socket_name(mountpoint: &Path) -> String {
    let digest = Sha256::digest(mountpoint.as_os_str().as_encoded_bytes());
    let name: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{name}.sock")
}

/// The socket of the mount at `mountpoint` (an absolute path).
pub fn socket_path(mountpoint: &Path) -> PathBuf {
    socket_dir().join(socket_name(mountpoint))
}

/// The log of a background mount without --log-file: beside its socket, `<hash>.log`.
pub fn default_log_file(mountpoint: &Path) -> PathBuf {
    let abs = std::path::absolute(mountpoint).unwrap_or_else(|_| mountpoint.to_path_buf());
    let _ = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(socket_dir());
    socket_path(&abs).with_extension("log")
}

/// Records `socket` in the registry directory when it lives elsewhere; returns the link made.
fn register(socket: &Path) -> Option<PathBuf> {
    let registry = registry_dir();
    let link = registry.join(socket.file_name()?);
    if socket.parent() == Some(registry.as_path()) {
        return None;
    }
    let made = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&registry);
    if made.is_err() || !private_dir(&registry) {
        tracing::warn!(
            "`ftpmount status` run with another XDG_RUNTIME_DIR will not see this mount: {} is not a private \
             directory of this user",
            registry.display()
        );
        return None;
    }
    let _ = std::fs::remove_file(&link);
    match std::os::unix::fs::symlink(socket, &link) {
        Ok(()) => Some(link),
        Err(e) => {
            tracing::warn!("cannot record the status socket in {}: {e}", registry.display());
            None
        }
    }
}

/// Serves status requests while it lives; the socket (and its link in the registry) is
/// removed when it is dropped.
pub struct StatusServer {
    path: PathBuf,
    link: Option<PathBuf>,
}

impl StatusServer {
    pub fn start(
        fs: Arc<Fs>,
        remote: Arc<dyn Remote>,
        mountpoint: &Path,
        log_file: Option<PathBuf>,
    ) -> std::io::Result<StatusServer> {
        let dir = socket_dir();
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        let path = socket_path(mountpoint);
        // A socket left by a daemon that died; a live one would be this mountpoint's, and a
        // mountpoint holds one mount.
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        let started = Instant::now();
        let mountpoint = mountpoint.display().to_string();
        std::thread::Builder::new().name("status".into()).spawn(move || {
            for conn in listener.incoming().flatten() {
                let status = collect(&fs, remote.as_ref(), &mountpoint, log_file.as_deref(), started);
                answer(conn, &status);
            }
        })?;
        let link = register(&path);
        Ok(StatusServer { path, link })
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(link) = &self.link {
            // Only our own link: a later mount at this mountpoint may have replaced it.
            if std::fs::read_link(link).is_ok_and(|t| t == self.path) {
                let _ = std::fs::remove_file(link);
            }
        }
    }
}

fn collect(fs: &Fs, remote: &dyn Remote, mountpoint: &str, log_file: Option<&Path>, started: Instant) -> MountStatus {
    let (hits, misses) = fs.cache_counts();
    let transfers = fs.transfers();
    let queued_uploads = transfers.iter().filter(|t| t.state.waits_for_upload()).count();
    MountStatus {
        mountpoint: mountpoint.to_string(),
        source: remote.describe(),
        pid: std::process::id(),
        uptime_seconds: started.elapsed().as_secs(),
        sessions: remote.session_stats(),
        server_profile: remote.profile(),
        listing_cache_hits: hits,
        listing_cache_misses: misses,
        content_cache: fs.content_stats(),
        prefetch: fs.prefetch_stats(),
        memory: Some(fs.memory_stats()),
        transfers,
        queued_uploads,
        // As text: that is all `status` and `sync` print, and the line does not parse back
        // into its parts unambiguously (a path may hold ": ").
        failed_uploads: fs.failed_uploads().iter().map(ToString::to_string).collect(),
        recent_errors: fs
            .recent_errors()
            .into_iter()
            .map(|(at, msg)| format!("{} {msg}", crate::clock::format_utc(at)))
            .collect(),
        log_file: log_file.map(|p| p.display().to_string()),
    }
}

fn answer(mut conn: UnixStream, status: &MountStatus) {
    let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
    let mut line = serde_json::to_string(status).expect("plain data");
    line.push('\n');
    let _ = conn.write_all(line.as_bytes());
}

/// Asks the mount behind `socket` for its status.
fn query(socket: &Path) -> std::io::Result<MountStatus> {
    let conn = UnixStream::connect(socket)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line)?;
    serde_json::from_str(&line).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// The socket of the mount at `m` as the user spelt it: the path as given (made absolute), or
/// resolved through symbolic links, in each of the [`search_dirs`]; the first that exists.
fn socket_for(m: &Path) -> PathBuf {
    let given = socket_name(&std::path::absolute(m).unwrap_or_else(|_| m.to_path_buf()));
    let resolved = std::fs::canonicalize(m).map(|c| socket_name(&c)).ok();
    let names: Vec<&String> = std::iter::once(&given).chain(resolved.as_ref()).collect();
    search_dirs()
        .iter()
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.exists())
        .unwrap_or_else(|| socket_dir().join(given))
}

fn not_answering(m: &Path, e: &std::io::Error) {
    let looked: Vec<String> = search_dirs().iter().map(|d| d.display().to_string()).collect();
    eprintln!(
        "ftpmount: no running ftpmount answers for {} ({e}; looked in {}). Is it mounted (findmnt -t \
         fuse.ftpmount)? Mounts started by another user are not visible",
        m.display(),
        if looked.is_empty() { socket_dir().display().to_string() } else { looked.join(", ") }
    );
}

/// `ftpmount sync`: waits until the mount's queued uploads are on the server. Exit status 0
/// when all are, 1 when some failed (each printed), 2 when the mount does not answer.
pub fn sync(mountpoint: &Path) -> ExitCode {
    let socket = socket_for(mountpoint);
    let mut last_note = Instant::now();
    loop {
        let st = match query(&socket) {
            Ok(st) => st,
            Err(e) => {
                not_answering(mountpoint, &e);
                return ExitCode::from(2);
            }
        };
        // Files still open are the application's to close; only the queue is waited for.
        let queued = st.transfers.iter().filter(|t| t.state.is_write_back()).count();
        if queued == 0 {
            if st.failed_uploads.is_empty() {
                return ExitCode::SUCCESS;
            }
            eprintln!("ftpmount: {} upload(s) failed:", st.failed_uploads.len());
            for f in &st.failed_uploads {
                eprintln!("  {f}");
            }
            return ExitCode::from(1);
        }
        if last_note.elapsed() >= Duration::from_secs(5) {
            eprintln!("ftpmount: waiting for {queued} upload(s)…");
            last_note = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct StatusRequest {
    pub mountpoint: Option<PathBuf>,
    pub json: bool,
}

/// Exit status: 0 with at least one mount reported, 1 when there is none.
pub fn run(req: StatusRequest) -> ExitCode {
    let sockets: Vec<PathBuf> = match &req.mountpoint {
        // The mount registered the path as it was given (made absolute); a path spelt another
        // way (through a symbolic link, with ..) is tried resolved too.
        Some(m) => vec![socket_for(m)],
        None => search_dirs()
            .iter()
            .filter_map(|dir| std::fs::read_dir(dir).ok())
            .flat_map(|d| d.flatten().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sock"))
            .collect(),
    };
    let mut found: Vec<MountStatus> = Vec::new();
    for s in &sockets {
        match query(s) {
            // The same mount through its socket and through its link in the registry.
            Ok(st) if found.iter().any(|f| f.pid == st.pid && f.mountpoint == st.mountpoint) => {}
            Ok(st) => found.push(st),
            // A socket whose daemon is gone: tidy it away when listing all.
            Err(_) if req.mountpoint.is_none() => {
                let _ = std::fs::remove_file(s);
            }
            Err(e) => {
                not_answering(req.mountpoint.as_ref().expect("asked for one"), &e);
                return ExitCode::from(1);
            }
        }
    }
    if req.json {
        println!("{}", serde_json::to_string_pretty(&found).expect("plain data"));
    } else if found.is_empty() {
        println!("no ftpmount mounts are running for this user");
    } else {
        for st in &found {
            print!("{}", render(st));
        }
    }
    if found.is_empty() { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// The text form of a mount's status.
pub fn render(st: &MountStatus) -> String {
    let mut out = String::new();
    render_overview(&mut out, st);
    render_content_cache(&mut out, st.content_cache.as_ref());
    render_prefetch(&mut out, st.prefetch.as_ref());
    render_profile(&mut out, &st.server_profile);
    render_transfers(&mut out, &st.transfers);
    out += &format!("  queued uploads: {}\n", st.queued_uploads);
    render_failed_uploads(&mut out, &st.failed_uploads);
    if let Some(log) = &st.log_file {
        out += &format!("  log: {log}\n");
    }
    render_errors(&mut out, &st.recent_errors);
    out
}

/// The mount's line, its sessions and its listing cache.
fn render_overview(out: &mut String, st: &MountStatus) {
    let up = Duration::from_secs(st.uptime_seconds);
    *out += &format!("{}  {}  (pid {}, up {})\n", st.mountpoint, st.source, st.pid, format_uptime(up));
    let s = &st.sessions;
    *out += &format!(
        "  sessions: {} open, {} busy, limit {} (--max-connections {}), {} waiting\n",
        s.open, s.busy, s.limit, s.max, s.waiting
    );
    let total = st.listing_cache_hits + st.listing_cache_misses;
    let rate = if total == 0 { 0.0 } else { 100.0 * st.listing_cache_hits as f64 / total as f64 };
    *out += &format!(
        "  listing cache: {} hits, {} misses ({rate:.0}% hits)\n",
        st.listing_cache_hits, st.listing_cache_misses
    );
    if let Some(m) = &st.memory {
        *out += &format!(
            "  memory: {} MiB resident; {} inodes held by the kernel; {} listings cached ({} entries)\n",
            m.resident_bytes >> 20,
            m.inodes,
            m.listings,
            m.listing_entries
        );
    }
}

fn render_content_cache(out: &mut String, cache: Option<&crate::fs::content::ContentStats>) {
    let Some(c) = cache else {
        *out += "  content cache: off\n";
        return;
    };
    *out += &format!(
        "  content cache: {} in {} files (limit {}); {} read from it, {} downloaded\n",
        human_bytes(c.used),
        c.files,
        human_bytes(c.limit),
        human_bytes(c.hit_bytes),
        human_bytes(c.miss_bytes)
    );
}

fn render_prefetch(out: &mut String, prefetch: Option<&crate::fs::prefetch_files::PrefetchStats>) {
    let Some(p) = prefetch else {
        *out += "  prefetch: off\n";
        return;
    };
    *out += &format!(
        "  prefetch: {} hits ({}); {} files ({}) fetched ahead, {} never read, {} waiting; \
         {} walks (up to {} files ahead)\n",
        p.hits,
        human_bytes(p.hit_bytes),
        p.files,
        human_bytes(p.bytes),
        human_bytes(p.unused_bytes),
        human_bytes(p.waiting_bytes),
        p.walks,
        p.max_files
    );
}

/// What was found out about the server (nothing at all when nothing was).
fn render_profile(out: &mut String, profile: &[(String, String)]) {
    if profile.is_empty() {
        return;
    }
    *out += "  server profile:\n";
    for (what, how) in profile {
        *out += &format!("    {what}: {how}\n");
    }
}

fn render_transfers(out: &mut String, transfers: &[TransferStatus]) {
    if transfers.is_empty() {
        *out += "  transfers: none\n";
        return;
    }
    *out += "  transfers:\n";
    for t in transfers {
        *out += &format!("    {:<8} {}  {}  {}\n", t.direction, t.path, transfer_amount(t), t.state);
    }
}

/// Bytes moved, with the rate when the transfer has run for a while.
fn transfer_amount(t: &TransferStatus) -> String {
    match t.bytes {
        Some(b) if t.seconds > 0.0 => {
            format!("{} in {:.1} s ({}/s)", human_bytes(b), t.seconds, human_bytes((b as f64 / t.seconds) as u64))
        }
        Some(b) => human_bytes(b),
        None => "(busy)".into(),
    }
}

/// Failed uploads are listed only when there are some.
fn render_failed_uploads(out: &mut String, failed: &[String]) {
    if failed.is_empty() {
        return;
    }
    *out += "  failed uploads:\n";
    for f in failed {
        *out += &format!("    {f}\n");
    }
}

fn render_errors(out: &mut String, errors: &[String]) {
    if errors.is_empty() {
        *out += "  last errors: none\n";
        return;
    }
    *out += "  last errors:\n";
    for e in errors {
        *out += &format!("    {e}\n");
    }
}

fn format_uptime(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
