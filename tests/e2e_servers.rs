//! Every server people really run (issue 14), through a real FUSE mount: a compatibility
//! core (read, write, overwrite, rsync and a re-run that sends nothing, editor save,
//! rename/delete/mkdir/rmdir, links, times, case detection, session bound, the content cache
//! across a remount, changes made on the server showing up) per server, and a
//! test reproducing each quirk seen in the wild. The servers: vsftpd (plain, explicit,
//! implicit), ProFTPD 1.3.8 (plain, explicit with its default TLS options and TLS 1.3,
//! implicit), Pure-FTPd 1.0.50 (plain, TLS), pyftpdlib (MLSD), an IIS-like pyftpdlib and
//! inetutils-ftpd (see tests/common/servers.rs; `.ci/install-test-servers` extracts them).

mod common;

use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, symlink};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;

/// A server under test, how to mount it, and what it can do.
struct Target {
    server: Box<dyn Server>,
    certs: Option<Certs>,
    args: Vec<&'static str>,
    /// Its listings show symlink targets (`LIST` with `name -> target`).
    links: bool,
    /// It can set modification times (MFMT, or vsftpd's two-argument MDTM).
    set_times: bool,
}

impl Target {
    fn mount(&self, extra: &[&str]) -> Mount {
        let mut args = self.args.clone();
        args.extend(extra);
        Mount::of(&*self.server, self.certs.as_ref(), &args)
    }
    fn root(&self) -> &Path {
        self.server.root()
    }
}

fn plain(server: impl Server + 'static) -> Target {
    Target { server: Box::new(server), certs: None, args: vec!["--tls", "off"], links: true, set_times: true }
}

fn with_tls(server: impl Server + 'static, certs: Certs) -> Target {
    Target { server: Box::new(server), certs: Some(certs), args: vec![], links: true, set_times: true }
}

fn vsftpd(tls: Tls) -> Target {
    if tls == Tls::Off {
        return plain(Vsftpd::start(TempDir::new("root"), VsftpdOptions::default()));
    }
    let certs = Certs::new();
    let opts = VsftpdOptions { tls, cert: Some(certs.pair("server")), ..Default::default() };
    with_tls(Vsftpd::start(TempDir::new("root"), opts), certs)
}

fn proftpd(tls: Tls) -> Target {
    if tls == Tls::Off {
        return plain(Proftpd::start(TempDir::new("root"), Tls::Off, None, ""));
    }
    let certs = Certs::new();
    with_tls(Proftpd::start(TempDir::new("root"), tls, Some(certs.pair("server")), ""), certs)
}

fn pure_ftpd(tls: Tls) -> Target {
    if tls == Tls::Off {
        return plain(PureFtpd::start(TempDir::new("root"), Tls::Off, None, &[]));
    }
    let certs = Certs::new();
    with_tls(PureFtpd::start(TempDir::new("root"), tls, Some(certs.pair("server")), &[]), certs)
}

fn pyftpdlib() -> Target {
    // pyftpdlib's MLSD gives no link targets.
    Target { links: false, ..plain(PyFtpd::start(TempDir::new("root"), None, &[])) }
}

fn iis() -> Target {
    // DOS listings have no links.
    Target { links: false, ..plain(iis_like(TempDir::new("root"), None, &[])) }
}

fn inetutils() -> Target {
    // No MFMT, no SITE UTIME: nothing can set times.
    Target { set_times: false, ..plain(Inetutils::start(TempDir::new("root"))) }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn mtime(p: &Path) -> i64 {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).mtime()
}

/// Puts a file on the server side, owned by the FTP user, with the given mtime.
fn server_file(t: &Target, rel: &str, bytes: &[u8], secs: i64) {
    let p = t.root().join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, bytes).unwrap();
    set_mtime(&p, secs);
    // The directories it made too: the FTP user writes there.
    chown_to_user(t.root());
}

/// Transfers that `rsync --itemize-changes` reports (`>f…`, `<f…`, `cd…`), not attribute-only lines.
fn transfers(itemized: &str) -> Vec<String> {
    itemized
        .lines()
        .filter(|l| l.starts_with('>') || l.starts_with('<') || l.starts_with('c'))
        .map(String::from)
        .collect()
}

// ---------------------------------------------------------------- the compatibility core

fn core_read(t: &Target) {
    let bytes = pseudo_random(3 << 20, 1);
    server_file(t, "read/big.bin", &bytes, 1_650_000_000);
    let m = t.mount(&[]);
    assert!(fs::read(m.path().join("read/big.bin")).unwrap() == bytes, "read differs");
}

fn core_write_new(t: &Target) {
    let m = t.mount(&[]);
    let bytes = pseudo_random(1 << 20, 2);
    fs::write(m.path().join("new.bin"), &bytes).unwrap();
    drop(m);
    assert!(fs::read(t.root().join("new.bin")).unwrap() == bytes, "new file differs on the server");
}

fn core_overwrite(t: &Target) {
    server_file(t, "over.txt", &pseudo_random(200_000, 3), 1_650_000_000);
    let m = t.mount(&[]);
    fs::write(m.path().join("over.txt"), b"shorter content\n").unwrap();
    assert_eq!(fs::read(m.path().join("over.txt")).unwrap(), b"shorter content\n");
    drop(m);
    assert_eq!(fs::read(t.root().join("over.txt")).unwrap(), b"shorter content\n");
}

fn core_rsync(t: &Target) {
    let src = TempDir::new("src");
    small_files_tree(src.path(), 40);
    let m = t.mount(&[]);
    let dst = m.path().join("rsync");
    let from = format!("{}/", src.path().display());
    let flags = if t.set_times { "-a" } else { "-rl" };
    let out = run(Command::new("rsync").args([flags, &from, dst.to_str().unwrap()]));
    assert!(out.status.success(), "rsync {flags}: {}", text(&out));
    if t.set_times {
        assert_same_files(src.path(), &t.root().join("rsync"));
        let out = run(Command::new("rsync").args(["-a", "--itemize-changes", &from, dst.to_str().unwrap()]));
        assert!(out.status.success(), "second rsync -a: {}", text(&out));
        let sent = transfers(&String::from_utf8_lossy(&out.stdout));
        assert!(sent.is_empty(), "second rsync transferred {} item(s): {:?}", sent.len(), &sent[..sent.len().min(5)]);
    } else {
        for rel in tree_listing(src.path()) {
            let (a, b) = (src.path().join(&rel), t.root().join("rsync").join(&rel));
            if a.is_file() {
                assert!(fs::read(&a).unwrap() == fs::read(&b).unwrap(), "{rel} differs");
            }
        }
    }
    assert_eq!(tree_listing(src.path()), tree_listing(&t.root().join("rsync")), "no temporaries left");
}

fn core_editor_save(t: &Target) {
    server_file(t, "notes.txt", b"old notes\n", 1_650_000_000);
    let m = t.mount(&[]);
    // As vim (backupcopy=no), gedit, VS Code: write a temporary, rename it over the file.
    let tmp = m.path().join(".notes.txt.swp");
    fs::write(&tmp, b"new notes\n").unwrap();
    fs::rename(&tmp, m.path().join("notes.txt")).unwrap_or_else(|e| panic!("rename over notes.txt: {e}"));
    assert_eq!(fs::read(m.path().join("notes.txt")).unwrap(), b"new notes\n");
    drop(m);
    assert_eq!(fs::read(t.root().join("notes.txt")).unwrap(), b"new notes\n");
    assert!(!t.root().join(".notes.txt.swp").exists(), "the temporary is gone");
}

fn core_rename_delete_mkdir(t: &Target) {
    let m = t.mount(&[]);
    let d = m.path().join("dir one");
    fs::create_dir(&d).unwrap();
    fs::write(d.join("a.txt"), b"a").unwrap();
    fs::rename(d.join("a.txt"), d.join("b.txt")).unwrap();
    fs::create_dir(d.join("sub")).unwrap();
    fs::rename(&d, m.path().join("dir two")).unwrap();
    assert_eq!(fs::read(m.path().join("dir two/b.txt")).unwrap(), b"a");
    assert!(t.root().join("dir two/b.txt").exists() && !t.root().join("dir one").exists(), "renamed on the server");
    fs::remove_file(m.path().join("dir two/b.txt")).unwrap();
    fs::remove_dir(m.path().join("dir two/sub")).unwrap();
    fs::remove_dir(m.path().join("dir two")).unwrap();
    assert!(!m.path().join("dir two").exists());
    drop(m);
    assert!(!t.root().join("dir two").exists(), "removed on the server");
}

fn core_links(t: &Target) {
    if !t.links {
        return;
    }
    server_file(t, "target.txt", b"through the link\n", 1_650_000_000);
    symlink("target.txt", t.root().join("link")).unwrap();
    let _ = Command::new("chown").args(["-h", &format!("{USER}:{USER}")]).arg(t.root().join("link")).status();
    let m = t.mount(&[]);
    let target = fs::read_link(m.path().join("link")).unwrap_or_else(|e| panic!("readlink: {e}"));
    assert_eq!(target, Path::new("target.txt"));
    assert_eq!(fs::read(m.path().join("link")).unwrap(), b"through the link\n", "following the link");
}

fn core_times(t: &Target) {
    // A time set on the server is seen through the mount, to the second.
    server_file(t, "times/old.txt", b"old", 1_600_000_007);
    for i in 0..70 {
        server_file(t, &format!("times/many/f{i:02}.txt"), b"m", 1_600_000_100 + i);
    }
    let m = t.mount(&[]);
    assert_eq!(mtime(&m.path().join("times/old.txt")), 1_600_000_007, "server-side mtime through the mount");
    // Exact times of a directory's files come in pipelined MDTM batches where the server
    // takes them (more than one batch here), or one at a time where it does not: exact either way.
    for i in 0..70 {
        assert_eq!(mtime(&m.path().join(format!("times/many/f{i:02}.txt"))), 1_600_000_100 + i, "f{i:02}.txt");
    }
    let profile = status_json(m.path())["server_profile"].to_string();
    eprintln!("file times on this server: {profile}");
    if !profile.contains("MLSD") && !profile.contains("LIST only") {
        assert!(profile.contains("file times (MDTM)"), "{profile}");
    }
    let f = m.path().join("times/touched.txt");
    fs::write(&f, b"x").unwrap();
    if !t.set_times {
        // A server that cannot set times says so honestly, and nothing else changes.
        let out = run(Command::new("touch").args(["-d", "@1620284889"]).arg(&f));
        assert!(!out.status.success() && text(&out).contains("Operation not supported"), "touch -d: {}", text(&out));
        assert_eq!(fs::read(t.root().join("times/touched.txt")).unwrap(), b"x", "the file is untouched");
        return;
    }
    let out = run(Command::new("touch").args(["-d", "@1620284889"]).arg(&f));
    assert!(out.status.success(), "touch -d: {}", text(&out));
    assert_eq!(mtime(&f), 1620284889, "mtime through the mount after touch -d");
    drop(m);
    assert_eq!(mtime(&t.root().join("times/touched.txt")), 1620284889, "mtime on the server after touch -d");
}

fn core_case(t: &Target) {
    let m = t.mount(&[]);
    // A file in the root is looked up; the probe runs at mount.
    let _ = fs::read_dir(m.path()).unwrap().count();
    std::thread::sleep(Duration::from_millis(300));
    assert!(m.log().contains("the server is case-sensitive"), "case detection: {}", m.log());
}

fn core_session_bound(t: &Target) {
    for i in 0..8 {
        server_file(t, &format!("bound/f{i}.bin"), &pseudo_random(1 << 20, 10 + i as u64), 1_650_000_000);
    }
    let m = t.mount(&["--max-connections", "3"]);
    let mut counter = SessionCounter::start(t.server.port());
    let cats: Vec<_> = (0..8)
        .map(|i| {
            Command::new("cat").arg(m.path().join(format!("bound/f{i}.bin"))).stdout(Stdio::null()).spawn().unwrap()
        })
        .collect();
    for mut c in cats {
        assert!(c.wait().unwrap().success(), "cat failed: {}", m.log());
    }
    let peak = counter.peak();
    assert!(peak <= 3, "{peak} sessions at once with --max-connections 3");
}

type Check = fn(&Target);

/// A file read once is read again after a remount from the content cache (nothing
/// downloaded), and a change on the server, even one that keeps the size, is seen.
fn core_content_cache(t: &Target) {
    let bytes = pseudo_random(700_000, 21);
    server_file(t, "cache/photo.jpg", &bytes, 1_650_000_000);
    let cache = TempDir::new("content-cache");
    let args = ["--cache-dir", cache.path().to_str().unwrap()];
    let m = t.mount(&args);
    let f = m.path().join("cache/photo.jpg");
    run(Command::new("head").arg("-c").arg("8192").arg(&f));
    assert!(fs::read(&f).unwrap() == bytes, "first read differs");
    drop(m);

    let m = t.mount(&args);
    let f = m.path().join("cache/photo.jpg");
    assert!(fs::read(&f).unwrap() == bytes, "read from the cache differs");
    let cc = &status_json(m.path())["content_cache"];
    assert_eq!(cc["miss_bytes"].as_u64(), Some(0), "downloaded again after a remount: {cc}");
    assert!(cc["hit_bytes"].as_u64().unwrap() >= bytes.len() as u64, "{cc}");

    // Same size, new bytes, a time one minute later (servers that list minutes only see it).
    let changed = pseudo_random(700_000, 22);
    server_file(t, "cache/photo.jpg", &changed, 1_650_000_060);
    std::thread::sleep(Duration::from_millis(1100));
    assert!(fs::read(&f).unwrap() == changed, "a changed file was read from the cache");
}

/// A file made on the server shows up in `ls` of a directory being looked at, without a
/// remount and long before `--dir-timeout`.
fn core_changes_on_the_server(t: &Target) {
    server_file(t, "watched/a.txt", b"a", 1_650_000_000);
    let m = t.mount(&["--dir-timeout", "600s"]);
    let dir = m.path().join("watched");
    let names = || -> Vec<String> {
        let mut v: Vec<String> =
            fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    };
    assert_eq!(names(), ["a.txt"]);
    server_file(t, "watched/b.txt", b"b", 1_650_000_100);
    let start = std::time::Instant::now();
    while names() != ["a.txt", "b.txt"] {
        assert!(start.elapsed() < Duration::from_secs(30), "b.txt made on the server never showed: {:?}", names());
        std::thread::sleep(Duration::from_millis(200));
    }
}

const CORE: &[(&str, Check)] = &[
    ("read", core_read),
    ("write new", core_write_new),
    ("overwrite", core_overwrite),
    ("rsync + re-run", core_rsync),
    ("editor save", core_editor_save),
    ("rename/delete/mkdir/rmdir", core_rename_delete_mkdir),
    ("links", core_links),
    ("times", core_times),
    ("case detection", core_case),
    ("session bound", core_session_bound),
    ("content cache", core_content_cache),
    ("changes on the server", core_changes_on_the_server),
];

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A check's panic is reported in one line by `compatibility_core`, not with a backtrace;
/// panics elsewhere (other tests run in parallel) are printed as usual.
fn quiet_panics_in_checks() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                default(info)
            }
        }));
    });
}

/// Runs every check of the core against one server (each with its own mount), reports each
/// result, and fails if any failed.
fn compatibility_core(name: &str, make: fn() -> Target) {
    quiet_panics_in_checks();
    let t = make();
    let mut failed = Vec::new();
    for (check, f) in CORE {
        QUIET.with(|q| q.set(true));
        let result = catch_unwind(AssertUnwindSafe(|| f(&t)));
        QUIET.with(|q| q.set(false));
        match result {
            Ok(()) => eprintln!("[{name}] {check}: ok"),
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let first = msg.lines().next().unwrap_or("").chars().take(300).collect::<String>();
                eprintln!("[{name}] {check}: FAILED: {first}");
                failed.push(format!("{check}: {first}"));
            }
        }
    }
    assert!(failed.is_empty(), "[{name}] compatibility core failed:\n{}", failed.join("\n"));
}

macro_rules! compatibility_core {
    ($($test:ident: $make:expr;)*) => {
        $(
            #[test]
            fn $test() {
                compatibility_core(stringify!($test), || $make);
            }
        )*
    };
}

compatibility_core! {
    core_vsftpd_plain: vsftpd(Tls::Off);
    core_vsftpd_explicit: vsftpd(Tls::Explicit);
    core_vsftpd_implicit: vsftpd(Tls::Implicit);
    core_proftpd_plain: proftpd(Tls::Off);
    core_proftpd_explicit_tls13_default_options: proftpd(Tls::Explicit);
    core_proftpd_implicit: proftpd(Tls::Implicit);
    core_pure_ftpd_plain: pure_ftpd(Tls::Off);
    core_pure_ftpd_tls: pure_ftpd(Tls::Explicit);
    core_pyftpdlib_mlsd: pyftpdlib();
    core_pyftpdlib_iis_like: iis();
    core_inetutils_ftpd: inetutils();
}

// ---------------------------------------------------------------- quirk reproductions

/// Quirk 1: ProFTPD, TLS 1.3, default TLSOptions (data connections must reuse the control
/// connection's TLS session): 20 sequential uploads and an rsync of 500 files all succeed.
fn proftpd_tls13_uploads(tls: Tls) {
    let certs = Certs::new();
    let server = Proftpd::start(TempDir::new("root"), tls, Some(certs.pair("server")), "");
    let m = Mount::of(&server, Some(&certs), &[]);
    let src = TempDir::new("src");
    let mut failures = Vec::new();
    for i in 0..20 {
        let f = src.path().join(format!("up-{i}.bin"));
        fs::write(&f, pseudo_random(64 << 10, i)).unwrap();
        let out = run(Command::new("cp").arg(&f).arg(m.path().join(format!("up-{i}.bin"))));
        if !out.status.success() {
            failures.push(format!("cp #{}: {}", i + 1, text(&out).trim()));
        }
    }
    let tree = TempDir::new("tree");
    small_files_tree(tree.path(), 500);
    let from = format!("{}/", tree.path().display());
    let out = run(Command::new("rsync").args(["-a", &from, m.path().join("tree").to_str().unwrap()]));
    let log = m.log();
    drop(m);
    // The refusal it may meet is named for what it is: not a firewall.
    assert!(!log.contains("firewall"), "{log}");
    // At most one refused data connection: the one that may teach ftpmount what the server needs.
    let refused = server.tls_log().matches("did not reuse TLS session").count();
    let pick = |text: &str, keys: &[&str]| {
        text.lines().filter(|l| keys.iter().any(|k| l.contains(k))).take(4).collect::<Vec<_>>().join("\n")
    };
    assert!(
        failures.is_empty() && out.status.success() && refused <= 1,
        "{refused} data connections refused by ProFTPD; {} of 20 uploads failed: {failures:#?}\nrsync rc {:?}, {} of 500 files missing: {}\nmount log: {}\nProFTPD TLS log: {}",
        failures.len(),
        out.status.code(),
        tree_listing(tree.path())
            .iter()
            .filter(|r| r.ends_with(".dat") && !server.root().join("tree").join(r).exists())
            .count(),
        text(&out).lines().take(3).collect::<Vec<_>>().join("\n"),
        pick(&log, &["425", "TLS", "tickets"]),
        pick(&server.tls_log(), &["did not reuse", "reject"]),
    );
    assert_same_files(tree.path(), &server.root().join("tree"));
}

#[test]
fn quirk1_proftpd_tls13_default_options_explicit_20_uploads_and_rsync_of_500_files() {
    proftpd_tls13_uploads(Tls::Explicit);
}

#[test]
fn quirk1_proftpd_tls13_default_options_implicit_20_uploads_and_rsync_of_500_files() {
    proftpd_tls13_uploads(Tls::Implicit);
}

/// Client connections to `port` seen at any time (distinct client addresses), sampled from
/// /proc/net/tcp every 2 ms: how many sessions were opened in all.
struct SessionsOpened {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<HashSet<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl SessionsOpened {
    fn start(port: u16) -> SessionsOpened {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(HashSet::new()));
        let (s, seen2) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
                    let Ok(f) = fs::File::open(file) else { continue };
                    for line in BufReader::new(f).lines().skip(1).map_while(Result::ok) {
                        let cols: Vec<&str> = line.split_whitespace().collect();
                        let remote = cols.get(2).and_then(|a| a.rsplit(':').next());
                        if remote.and_then(|p| u16::from_str_radix(p, 16).ok()) == Some(port)
                            && cols.get(3) == Some(&"01")
                        {
                            seen2.lock().unwrap().insert(cols[1].to_string());
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        SessionsOpened { stop, seen, thread: Some(thread) }
    }

    fn total(&mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.seen.lock().unwrap().len()
    }
}

impl Drop for SessionsOpened {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Quirk 2: Pure-FTPd ends an early-closed download with `150 … (measured here)` /
/// `150 Logout.`; with --max-connections 3, 8 parallel partial reads, twice, open at most 6
/// sessions in all.
fn pure_ftpd_partial_reads(tls: Tls) {
    partial_reads(pure_ftpd(tls), 6);
}

/// 8 parallel `head -c 1M` of 8 large files, twice, with --max-connections 3: at most
/// `max_sessions` sessions opened in all.
fn partial_reads(t: Target, max_sessions: usize) {
    for i in 0..8 {
        server_file(&t, &format!("large/f{i}.bin"), &pseudo_random(8 << 20, 20 + i as u64), 1_650_000_000);
    }
    // -v: the debug log says why a session was given up.
    let m = t.mount(&["--max-connections", "3", "-v"]);
    let _ = fs::read_dir(m.path().join("large")).unwrap().count();
    let mut opened = SessionsOpened::start(t.server.port());
    let mut at_once = SessionCounter::start(t.server.port());
    let started = std::time::Instant::now();
    // Normally a second or two; past 45 s the reads are given up (killed) and reported.
    let deadline = Duration::from_secs(45);
    let mut unfinished = 0;
    for _round in 0..2 {
        let mut heads: Vec<_> = (0..8)
            .map(|i| {
                Command::new("head")
                    .args(["-c", "1M"])
                    .arg(m.path().join(format!("large/f{i}.bin")))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        while !heads.is_empty() {
            heads.retain_mut(|h| match h.try_wait().unwrap() {
                Some(status) => {
                    assert!(status.success(), "head -c 1M failed: {}", m.log());
                    false
                }
                None if started.elapsed() > deadline => {
                    let _ = h.kill();
                    let _ = h.wait();
                    unfinished += 1;
                    false
                }
                None => true,
            });
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let elapsed = started.elapsed();
    let (sampled, peak) = (opened.total(), at_once.peak());
    let log = m.log();
    // Sampling every 2 ms can miss a session that lives less; the debug log names each one.
    let total = sampled.max(log.matches("opened a session").count().saturating_sub(1));
    let notable: Vec<&str> = log.lines().filter(|l| l.contains("unusable") || l.contains("opened a session")).collect();
    assert!(
        total <= max_sessions && peak <= 3 && unfinished == 0,
        "{total} sessions opened ({peak} at once) in {elapsed:.1?} for 16 partial reads with --max-connections 3 \
         ({unfinished} reads unfinished after {deadline:?}); {} session lines in the log, the first: {:#?}",
        notable.len(),
        &notable[..notable.len().min(3)]
    );
}

/// inetutils-ftpd closes the control connection after an early close: that may cost one
/// reconnect per early close (3 + 16), never more. (A guard: this passes today.)
#[test]
fn inetutils_partial_reads_cost_at_most_one_reconnect_each() {
    partial_reads(inetutils(), 3 + 16);
}

#[test]
fn quirk2_pure_ftpd_partial_reads_open_at_most_6_sessions() {
    pure_ftpd_partial_reads(Tls::Off);
}

#[test]
fn quirk2_pure_ftpd_tls_partial_reads_open_at_most_6_sessions() {
    pure_ftpd_partial_reads(Tls::Explicit);
}

/// Quirk 3: MLSD gives symlinks without targets (ProFTPD `type=OS.unix=symlink`, Pure-FTPd
/// `type=OS.unix=slink:`), but LIST shows `name -> target`: readlink must work.
fn readlink_works(t: Target) {
    server_file(&t, "docs/target.txt", b"linked\n", 1_650_000_000);
    symlink("docs/target.txt", t.root().join("link")).unwrap();
    symlink("../docs", t.root().join("docs/self")).unwrap();
    let m = t.mount(&[]);
    let link = fs::read_link(m.path().join("link"));
    let dir_link = fs::read_link(m.path().join("docs/self"));
    let read = fs::read(m.path().join("link"));
    assert!(
        matches!(&link, Ok(p) if p == Path::new("docs/target.txt"))
            && matches!(&dir_link, Ok(p) if p == Path::new("../docs"))
            && matches!(&read, Ok(b) if b == b"linked\n"),
        "readlink link: {link:?}; readlink docs/self: {dir_link:?}; read through the link: {:?}",
        read.map(|b| String::from_utf8_lossy(&b).to_string())
    );
}

#[test]
fn quirk3_readlink_on_proftpd() {
    readlink_works(proftpd(Tls::Off));
}

#[test]
fn quirk3_readlink_on_pure_ftpd() {
    readlink_works(pure_ftpd(Tls::Off));
}

/// Quirk 4: inetutils-ftpd has no MFMT and reads `MDTM <time> <path>` as a file name: touch
/// and rsync must never get ENOENT, and the server's files are never touched wrongly.
#[test]
fn quirk4_times_on_inetutils_never_enoent() {
    let t = inetutils();
    server_file(&t, "keep.txt", b"keep me\n", 1_600_000_000);
    let m = t.mount(&[]);
    let f = m.path().join("keep.txt");
    let touch = run(Command::new("touch").args(["-d", "@1620284889"]).arg(&f));
    let src = TempDir::new("src");
    small_files_tree(src.path(), 30);
    let from = format!("{}/", src.path().display());
    let rsync = run(Command::new("rsync").args(["-a", &from, m.path().join("tree").to_str().unwrap()]));
    let log = m.log();
    drop(m);
    // The server's copy is intact, and nothing else appeared beside it.
    assert_eq!(fs::read(t.root().join("keep.txt")).unwrap(), b"keep me\n");
    let top: Vec<String> = tree_listing(t.root()).into_iter().filter(|p| !p.contains('/')).collect();
    assert_eq!(top, ["keep.txt", "tree"], "no stray files on the server");
    let enoent = |o: &Output| text(o).contains("No such file or directory");
    assert!(
        !enoent(&touch) && !enoent(&rsync),
        "touch -d rc {:?}: {}\nrsync -a rc {:?}: {}\nmount log: {}",
        touch.status.code(),
        text(&touch).trim(),
        rsync.status.code(),
        text(&rsync).lines().take(3).collect::<Vec<_>>().join("\n"),
        log.lines().filter(|l| l.contains("MDTM") || l.contains("time")).take(5).collect::<Vec<_>>().join("\n")
    );
}

/// Quirk 5: a server in UTC+05:30 that lists local times without a marker. Times through the
/// mount match the server's clock: to the second for files (MDTM has seconds), to the minute
/// for directories (only the DOS LIST has them).
fn times_match_in_plus_0530(t: &Target, extra: &[&str]) {
    server_file(t, "tz/file.txt", b"tz", 1_700_000_000);
    let dir = t.root().join("tz/sub");
    fs::create_dir_all(&dir).unwrap();
    chown_to_user(&dir);
    set_mtime(&t.root().join("tz/file.txt"), 1_700_000_000);
    let m = t.mount(extra);
    let file = mtime(&m.path().join("tz/file.txt"));
    let sub = mtime(&m.path().join("tz/sub"));
    let want_dir = mtime(&dir);
    let f = m.path().join("tz/touched.txt");
    fs::write(&f, b"x").unwrap();
    let touch = run(Command::new("touch").args(["-d", "@1620284889"]).arg(&f));
    let touched = mtime(&f);
    drop(m);
    let on_server = mtime(&t.root().join("tz/touched.txt"));
    assert!(
        file == 1_700_000_000
            && (sub - want_dir).abs() < 60
            && touch.status.success()
            && touched == 1620284889
            && on_server == 1620284889,
        "file: mount shows {file}, server has 1700000000 (off by {}s); dir: mount {sub}, server {want_dir} (off by {}s); \
         touch -d @1620284889: {} -> mount {touched}, server {on_server}",
        file - 1_700_000_000,
        sub - want_dir,
        text(&touch).trim(),
    );
}

/// LIST local, MDTM in UTC (as IIS): the offset can be found by comparing the two.
#[test]
fn quirk5_iis_like_in_utc_plus_0530_times_match_detected() {
    let t = Target { links: false, ..plain(iis_like(TempDir::new("root"), Some("+05:30"), &["--utc-mdtm"])) };
    times_match_in_plus_0530(&t, &[]);
}

/// LIST and MDTM both local: nothing to compare, the user names the zone.
#[test]
fn quirk5_iis_like_in_utc_plus_0530_times_match_with_server_timezone() {
    let t = Target { links: false, ..plain(iis_like(TempDir::new("root"), Some("+05:30"), &[])) };
    times_match_in_plus_0530(&t, &["--server-timezone", "+05:30"]);
}

/// Quirk 5 on a legacy server: inetutils-ftpd in UTC+05:30 lists local times (no MLSD);
/// its MDTM is in UTC. No MFMT, so nothing is set: only what the server shows is compared.
fn inetutils_in_plus_0530(extra: &[&str]) -> String {
    let t = Target { set_times: false, ..plain(Inetutils::start_in_zone(TempDir::new("root"), Some("LOC-05:30"))) };
    // A day ago: recent enough for LIST to show hours and minutes (older entries show the year).
    let when = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 - 86_400;
    server_file(&t, "tz/file.txt", b"tz", when);
    let dir = t.root().join("tz/sub");
    fs::create_dir_all(&dir).unwrap();
    chown_to_user(&dir);
    set_mtime(&dir, when);
    let m = t.mount(extra);
    let file = mtime(&m.path().join("tz/file.txt"));
    let sub = mtime(&m.path().join("tz/sub"));
    assert!(
        file == when && (sub - when).abs() < 60,
        "file: mount shows {file} (off by {}s); dir: mount shows {sub} (off by {}s); the server has {when} for both",
        file - when,
        sub - when
    );
    m.log()
}

#[test]
fn quirk5_inetutils_in_utc_plus_0530_times_match() {
    let log = inetutils_in_plus_0530(&[]);
    let told = log.matches("the server lists times in UTC+05:30; correcting").count();
    assert_eq!(told, 1, "the detected zone is logged once:\n{log}");
}

/// `--server-timezone` on a server whose MDTM is UTC (RFC 3659) while LIST is local: the
/// comparison shows MDTM to be UTC, so only listing times are shifted.
#[test]
fn quirk5_inetutils_in_utc_plus_0530_with_server_timezone_keeps_utc_mdtm() {
    inetutils_in_plus_0530(&["--server-timezone", "+05:30"]);
}

/// A LIST-only server (no MLSD, no MDTM) in UTC+05:30: nothing to compare, so times are off
/// by the offset until the user names the zone; then files and directories match to the
/// minute (LIST has no seconds).
#[test]
fn quirk5_list_only_server_in_utc_plus_0530_with_server_timezone() {
    let t = Target { links: false, ..plain(iis_like(TempDir::new("root"), Some("+05:30"), &["--no-mdtm"])) };
    server_file(&t, "tz/file.txt", b"tz", 1_700_000_000);
    let dir = t.root().join("tz/sub");
    fs::create_dir_all(&dir).unwrap();
    chown_to_user(&dir);
    set_mtime(&dir, 1_650_000_000);
    let shown = |extra: &[&str]| {
        let m = t.mount(extra);
        (mtime(&m.path().join("tz/file.txt")), mtime(&m.path().join("tz/sub")))
    };
    let (file, sub) = shown(&[]);
    assert_eq!((file - 1_700_000_000, sub - 1_650_000_000), (19800 - 20, 19800), "without the option: off by 5:30");
    let (file, sub) = shown(&["--server-timezone", "+05:30"]);
    assert_eq!((file - 1_700_000_000, sub - 1_650_000_000), (-20, 0), "with --server-timezone +05:30");
}

/// Quirk 6: the IIS-like server refuses RNTO onto an existing name: an editor's save and
/// rsync's temp-file-then-rename still work, and the old content survives until the new
/// content is in place.
#[test]
fn quirk6_editor_save_and_rsync_on_a_server_refusing_rename_over() {
    let t = iis();
    server_file(&t, "notes.txt", b"old notes\n", 1_650_000_000);
    let m = t.mount(&[]);
    let tmp = m.path().join(".notes.txt.swp");
    fs::write(&tmp, b"new notes\n").unwrap();
    let save = fs::rename(&tmp, m.path().join("notes.txt"));
    // rsync: first run creates, the second replaces changed files by rename.
    let src = TempDir::new("src");
    small_files_tree(src.path(), 20);
    let from = format!("{}/", src.path().display());
    let dst = m.path().join("tree");
    let first = run(Command::new("rsync").args(["-a", &from, dst.to_str().unwrap()]));
    for rel in tree_listing(src.path()).iter().filter(|r| r.ends_with(".dat")).take(5) {
        fs::write(src.path().join(rel), b"changed on the client\n").unwrap();
    }
    let second = run(Command::new("rsync").args(["-a", &from, dst.to_str().unwrap()]));
    drop(m);
    let saved = fs::read(t.root().join("notes.txt")).unwrap_or_default();
    assert!(
        save.is_ok() && saved == b"new notes\n" && first.status.success() && second.status.success(),
        "editor save: {save:?}, server has {:?}; rsync #1 rc {:?}; rsync #2 rc {:?}: {}",
        String::from_utf8_lossy(&saved),
        first.status.code(),
        second.status.code(),
        text(&second).lines().take(3).collect::<Vec<_>>().join("\n")
    );
    assert_same_files(src.path(), &t.root().join("tree"));
}

/// Quirk 7: `--tls auto` against a server that accepts AUTH TLS and then fails the handshake:
/// the mount stops (plain text would be a downgrade) and says so, naming `--tls off`.
#[test]
fn quirk7_tls_auto_with_a_broken_handshake_names_the_downgrade_and_tls_off() {
    let server = PyFtpd::start(TempDir::new("root"), None, &["--auth-tls-then-fail"]);
    let url = format!("ftp://{USER}@localhost:{}/", server.port());
    let failure = match Mount::start(&url, &["--tls", "auto"]) {
        Ok(m) => panic!("the mount went on (in plain text?): {}", m.log()),
        Err(f) => f,
    };
    let msg = failure.stderr.to_lowercase();
    assert!(
        msg.contains("downgrade") && failure.stderr.contains("--tls off"),
        "the message names neither the downgrade nor --tls off: {}",
        failure.stderr.trim()
    );
}

/// Quirk 6, safety: replacing onto a server that refuses rename-over must not delete the old
/// file before the new one is in place. The fault: the step after a DELE of the target (an
/// RNTO onto its name) fails once, as if the connection broke between the two. The file must
/// still be there afterwards, with its old content (the save failed) or the new one.
#[test]
fn quirk6_replace_on_a_server_refusing_rename_over_keeps_the_old_content_on_failure() {
    let t = Target { links: false, ..plain(iis_like(TempDir::new("root"), None, &["--fail-rnto-after-dele"])) };
    server_file(&t, "notes.txt", b"old notes\n", 1_650_000_000);
    let m = t.mount(&[]);
    let tmp = m.path().join(".notes.txt.swp");
    fs::write(&tmp, b"new notes\n").unwrap();
    let save = fs::rename(&tmp, m.path().join("notes.txt"));
    drop(m);
    let on_server = fs::read(t.root().join("notes.txt"));
    assert!(
        matches!(&on_server, Ok(b) if b == b"old notes\n" || b == b"new notes\n"),
        "rename over notes.txt: {save:?}; the server's notes.txt afterwards: {:?}",
        on_server.map(|b| String::from_utf8_lossy(&b).to_string())
    );
}

/// Quirk 1, `check`: it passed against ProFTPD with TLS 1.3 and default TLSOptions while
/// uploads failed. Its data-connection stage must meet the refusal (several data connections
/// in a row), and its server profile must say what the server needs for TLS resumption on
/// data connections (and what ftpmount does about it).
#[test]
fn quirk1_check_on_proftpd_tls13_reports_the_session_reuse_requirement() {
    let certs = Certs::new();
    let server = Proftpd::start(TempDir::new("root"), Tls::Explicit, Some(certs.pair("server")), "");
    let out = Command::new(bin())
        .arg("check")
        .arg(server.url())
        .args(["--ca-file", certs.ca().to_str().unwrap()])
        .env("FTPMOUNT_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    let said = text(&out);
    let about_reuse: Vec<&str> = said
        .lines()
        .filter(|l| {
            let l = l.to_lowercase();
            l.contains("reuse") || l.contains("resum")
        })
        .collect();
    assert!(
        !about_reuse.is_empty(),
        "check (rc {:?}) says nothing about TLS session reuse/resumption on data connections:\n{}\nProFTPD TLS log: {}",
        out.status.code(),
        said.trim(),
        server.tls_log().lines().filter(|l| l.contains("did not reuse")).take(2).collect::<Vec<_>>().join("\n")
    );
}

/// Pure-FTPd without TLS (`-Y 0`) still lists `AUTH TLS` in FEAT and answers `AUTH TLS` with
/// `500 This security scheme is not implemented`: `--tls auto` (the default for ftp://) goes
/// on in plain text, with its warning, as for any server without TLS.
#[test]
fn pure_ftpd_advertising_auth_tls_it_refuses_mounts_with_tls_auto() {
    let server = PureFtpd::start(TempDir::new("root"), Tls::Off, None, &[]);
    let m = Mount::start(&server.url(), &["--tls", "auto"]).unwrap_or_else(|f| panic!("mount failed: {}", f.stderr));
    fs::write(m.path().join("plain.txt"), b"plain\n").unwrap();
    assert!(m.log().contains("unencrypted"), "{}", m.log());
    drop(m);
    assert_eq!(fs::read(server.root().join("plain.txt")).unwrap(), b"plain\n");
}

/// `check` probes what each server needs and shows it as a "server profile"; a mount shows
/// what it learnt in `status`.
#[test]
fn check_and_status_show_the_server_profile_found_by_probing() {
    let legacy = Inetutils::start(TempDir::new("root"));
    let out = Command::new(bin())
        .arg("check")
        .arg(legacy.url())
        .args(["--tls", "off"])
        .env("FTPMOUNT_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    let said = text(&out);
    assert!(said.contains("server") && said.contains("setting times: impossible"), "{said}");
    assert!(said.contains("listings: LIST"), "{said}");
    assert!(!fs::read_dir(legacy.root()).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains("probe")));

    let certs = Certs::new();
    let pro = Proftpd::start(TempDir::new("root"), Tls::Explicit, Some(certs.pair("server")), "");
    fs::write(pro.root().join("a.txt"), b"a").unwrap();
    chown_to_user(pro.root());
    let m = Mount::of(&pro, Some(&certs), &[]);
    for i in 0..3 {
        fs::write(m.path().join(format!("f{i}.txt")), b"x").unwrap();
    }
    let st = status_json(m.path());
    let profile = st["server_profile"].to_string();
    assert!(profile.contains("TLS 1.2 for new sessions"), "{profile}");
    assert!(profile.contains("MLSD"), "{profile}");
}

// ---------------------------------------------------------------- quirk 8: listings cut short

/// `n` files `f00000.txt`… in `dir` (content: their number), each with its own time from
/// `secs` on (0: the time they are made).
fn numbered_files(dir: &Path, n: usize, secs: i64) -> HashSet<String> {
    fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|i| {
            let name = format!("f{i:05}.txt");
            fs::write(dir.join(&name), format!("{i}\n")).unwrap();
            if secs > 0 {
                set_mtime(&dir.join(&name), secs + i as i64);
            }
            name
        })
        .collect()
}

/// Names only LIST shows get their exact times by MDTM, on up to 16 sessions opened at once.
/// The fixture's Pure-FTPd takes at most 20 users (its 40 passive ports) and leaves further
/// connections unanswered in its backlog (no 421), so a session opened beyond that waits for
/// a greeting until --io-timeout: a limit of its own, not this test's subject.
const PURE_FTPD_SESSIONS: &[&str] = &["--max-connections", "8"];

/// The names `readdir` gives in a directory `rel` of the mount.
fn shown_names(m: &Mount, rel: &str) -> Vec<String> {
    let failed = |e: std::io::Error| -> ! { panic!("readdir {rel}: {e}\n{}", m.log()) };
    let entries = fs::read_dir(m.path().join(rel)).unwrap_or_else(|e| failed(e));
    entries.map(|e| e.unwrap_or_else(|e| failed(e)).file_name().to_string_lossy().into_owned()).collect()
}

/// Quirk 8 (issue 19): Pure-FTPd cuts every listing (MLSD, NLST, LIST) at 10,000 entries by
/// default and says so only in the final reply ("226 Output truncated to 10000 matches"); its
/// glob refuses any pattern in such a directory. Listed from both ends of the name order (LIST
/// -a, LIST -ar) a directory of up to twice the limit is whole; 25,000 entries are not: the
/// mount shows what it got (both ends, nothing made up) and says clearly that it is incomplete.
#[test]
fn quirk8_pure_ftpd_25000_entries_at_the_default_limit_listed_or_said_incomplete() {
    let t = pure_ftpd(Tls::Off);
    let disk = numbered_files(&t.root().join("big"), 25_000, 0);
    chown_to_user(t.root());
    let m = t.mount(PURE_FTPD_SESSIONS);
    let shown = shown_names(&m, "big");
    let set: HashSet<String> = shown.iter().cloned().collect();
    assert_eq!(set.len(), shown.len(), "a name shown twice");
    let made_up: Vec<&String> = set.difference(&disk).take(5).collect();
    assert!(made_up.is_empty(), "names not on the server: {made_up:?}");
    // LIST -a gives the first 9,998 names (`.` and `..` count), LIST -ar the last 10,000.
    let ends = (0..9_998).chain(15_000..25_000).map(|i| format!("f{i:05}.txt"));
    let missing: Vec<String> = ends.filter(|n| !set.contains(n)).take(5).collect();
    assert!(missing.is_empty(), "names from both ends of the name order missing: {missing:?}");
    if set.len() < disk.len() {
        let log = m.log();
        let said = log.lines().find(|l| l.contains("WARN") && l.contains("/big is INCOMPLETE"));
        let said = said.unwrap_or_else(|| panic!("a cut listing shown without a warning:\n{log}"));
        assert!(said.contains("Output truncated to 10000 matches") && said.contains("-L"), "{said}");
        assert!(said.contains("MLSD, LIST -a, LIST -ar"), "what was tried: {said}");
        let profile = status_json(m.path())["server_profile"].to_string();
        assert!(profile.contains("INCOMPLETE: /big ("), "{profile}");
    }
    // `check` on that directory says its listing was cut.
    let out = run(Command::new(bin())
        .args(["check", &format!("{}big", t.server.url()), "--tls", "off"])
        .env("FTPMOUNT_PASSWORD", PASSWORD));
    assert!(text(&out).contains("cut it short (\"Output truncated to 10000 matches\")"), "{}", text(&out));
}

/// Quirk 8 at a lower limit (`-L 2000:5`) over TLS: 3,005 entries (links, a directory, a dot
/// file, spaces and non-ASCII names among them) are more than one listing holds but no more
/// than both ends of the name order: the mount shows exactly the server's names, with exact
/// times (from MLSD, or MDTM for names only LIST gave) and link targets.
#[test]
fn quirk8_pure_ftpd_tls_limit_2000_lists_3005_entries_whole() {
    let certs = Certs::new();
    let server = PureFtpd::start(TempDir::new("root"), Tls::Explicit, Some(certs.pair("server")), &["-L", "2000:5"]);
    let t = with_tls(server, certs);
    let dir = t.root().join("mid");
    let mut disk = numbered_files(&dir, 3_000, 1_600_000_000);
    for odd in ["sp ace.txt", "é-accent.txt", ".hidden"] {
        fs::write(dir.join(odd), b"odd\n").unwrap();
        disk.insert(odd.to_string());
    }
    fs::create_dir(dir.join("sub")).unwrap();
    symlink("f00001.txt", dir.join("zz-link")).unwrap();
    disk.extend(["sub".to_string(), "zz-link".to_string()]);
    chown_to_user(t.root());
    let m = t.mount(PURE_FTPD_SESSIONS);
    let shown = shown_names(&m, "mid");
    let set: HashSet<String> = shown.iter().cloned().collect();
    assert_eq!(shown.len(), set.len(), "a name shown twice");
    let missing: Vec<&String> = disk.difference(&set).take(5).collect();
    let extra: Vec<&String> = set.difference(&disk).take(5).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}, not on the server {extra:?}");
    for i in [0, 999, 1_500, 2_001, 2_999] {
        let p = format!("mid/f{i:05}.txt");
        assert_eq!(mtime(&m.path().join(&p)), mtime(&t.root().join(&p)), "{p}: time to the second");
        assert_eq!(fs::read_to_string(m.path().join(&p)).unwrap(), format!("{i}\n"));
    }
    assert_eq!(fs::read_link(m.path().join("mid/zz-link")).unwrap(), Path::new("f00001.txt"));
    let log = m.log();
    assert!(log.contains("the server cut the listing of /mid short (\"Output truncated to 2000 matches\")"), "{log}");
    assert!(!log.contains("INCOMPLETE"), "{log}");
}

/// Quirk 8: a name that a cut listing does not show is asked of the server (MLST), not
/// answered "no such file"; a name that does not exist still is.
#[test]
fn quirk8_pure_ftpd_names_missing_from_a_cut_listing_are_asked_for() {
    let t = pure_ftpd(Tls::Off);
    let disk = numbered_files(&t.root().join("big"), 25_000, 0);
    chown_to_user(t.root());
    let m = t.mount(PURE_FTPD_SESSIONS);
    let shown: HashSet<String> = shown_names(&m, "big").into_iter().collect();
    let gap = disk.iter().find(|n| !shown.contains(*n)).expect("25,000 entries are more than Pure-FTPd shows");
    let p = m.path().join("big").join(gap);
    let meta = fs::metadata(&p).unwrap_or_else(|e| panic!("stat {gap}, past the cut: {e}"));
    assert_eq!(meta.len(), fs::metadata(t.root().join("big").join(gap)).unwrap().len());
    let number: usize = gap[1..6].parse().unwrap();
    assert_eq!(fs::read_to_string(&p).unwrap(), format!("{number}\n"));
    let none = fs::metadata(m.path().join("big/f99999.txt"));
    assert_eq!(none.map_err(|e| e.kind()).err(), Some(std::io::ErrorKind::NotFound));
}
