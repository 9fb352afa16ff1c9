//! Changes made on the server become visible (issue 15, item 5): a directory being looked at
//! (held open, or listed lately) is listed again every `--watch-interval`, and a lookup of a
//! name a listing lacks lists again, instead of both waiting for `--dir-timeout`. The kernel is
//! told: removed names reach inotify watchers as IN_DELETE. An idle mount sends nothing.
//!
//! Every wait polls up to a generous deadline; nothing asserts how fast.

mod common;

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Far longer than any test: whatever shows up did not come from a listing that expired.
const LONG_TTL: &[&str] = &["--dir-timeout", "600s", "--attr-timeout", "600s"];
const DEADLINE: Duration = Duration::from_secs(15);

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

/// Polls `check` every 100 ms until it holds or [`DEADLINE`] passes; how long it took.
fn eventually(what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < DEADLINE, "{what}: not within {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// An inotify watch on one directory (non-blocking).
struct Inotify(libc::c_int);

impl Inotify {
    fn watch(dir: &Path, mask: u32) -> Inotify {
        // SAFETY: plain syscalls on a descriptor this value owns.
        unsafe {
            let fd = libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC);
            assert!(fd >= 0);
            let path = CString::new(dir.as_os_str().as_bytes()).unwrap();
            assert!(libc::inotify_add_watch(fd, path.as_ptr(), mask) >= 0, "{}", std::io::Error::last_os_error());
            Inotify(fd)
        }
    }

    /// Events so far, as `MASK name`.
    fn events(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            // SAFETY: reads into a buffer of the length given.
            let n = unsafe { libc::read(self.0, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return out;
            }
            let mut at = 0;
            while at + 16 <= n as usize {
                let field = |i: usize| u32::from_ne_bytes(buf[at + i..at + i + 4].try_into().unwrap());
                let (mask, len) = (field(4), field(12) as usize);
                let name = &buf[at + 16..at + 16 + len];
                let name = String::from_utf8_lossy(name.split(|&b| b == 0).next().unwrap_or_default()).into_owned();
                out.push(format!("{} {name}", mask_names(mask)).trim().to_string());
                at += 16 + len;
            }
        }
    }
}

impl Drop for Inotify {
    fn drop(&mut self) {
        // SAFETY: closes the descriptor this value owns.
        unsafe { libc::close(self.0) };
    }
}

fn mask_names(mask: u32) -> String {
    let known = [
        (libc::IN_CREATE, "IN_CREATE"),
        (libc::IN_DELETE, "IN_DELETE"),
        (libc::IN_MODIFY, "IN_MODIFY"),
        (libc::IN_ATTRIB, "IN_ATTRIB"),
        (libc::IN_MOVED_FROM, "IN_MOVED_FROM"),
        (libc::IN_MOVED_TO, "IN_MOVED_TO"),
        (libc::IN_CLOSE_WRITE, "IN_CLOSE_WRITE"),
        (libc::IN_DELETE_SELF, "IN_DELETE_SELF"),
        (libc::IN_MOVE_SELF, "IN_MOVE_SELF"),
        (libc::IN_IGNORED, "IN_IGNORED"),
        (libc::IN_ISDIR, "IN_ISDIR"),
    ];
    known.iter().filter(|(m, _)| mask & m != 0).map(|(_, n)| *n).collect::<Vec<_>>().join("|")
}

#[test]
fn a_file_added_on_the_server_shows_in_ls_of_a_directory_held_open() {
    let server = Vsftpd::start(TempDir::new("watch-add"), VsftpdOptions::default());
    fs::create_dir(server.root().join("docs")).unwrap();
    fs::write(server.root().join("docs/old.txt"), b"old").unwrap();
    let mount = Mount::of(&server, None, LONG_TTL);
    let docs = mount.path().join("docs");
    // As a file manager: the directory stays open while it is shown.
    let held = fs::File::open(&docs).unwrap();
    assert_eq!(names(&docs), ["old.txt"]);

    fs::write(server.root().join("docs/new.txt"), b"made on the server").unwrap();
    let took = eventually("new.txt in ls", || names(&docs) == ["new.txt", "old.txt"]);
    eprintln!("measured: a file added on the server was listed after {took:?}");
    assert_eq!(fs::read(docs.join("new.txt")).unwrap(), b"made on the server");

    // Changed on the server: ls -l shows the new size.
    fs::write(server.root().join("docs/old.txt"), b"old, and longer").unwrap();
    eventually("the new size in stat", || fs::metadata(docs.join("old.txt")).unwrap().len() == 15);
    drop(held);
    mount.unmount();
}

#[test]
fn ls_after_the_watch_ended_shows_what_the_server_has() {
    let server = Vsftpd::start(TempDir::new("watch-again"), VsftpdOptions::default());
    fs::create_dir(server.root().join("inbox")).unwrap();
    fs::write(server.root().join("inbox/a.txt"), b"a").unwrap();
    // 500 ms: watched for 10 s after a listing.
    let mount =
        Mount::of(&server, None, &["--watch-interval", "500ms", "--dir-timeout", "600s", "--attr-timeout", "600s"]);
    let inbox = mount.path().join("inbox");
    assert_eq!(names(&inbox), ["a.txt"]);
    std::thread::sleep(Duration::from_secs(12));
    fs::write(server.root().join("inbox/b.txt"), b"b").unwrap();
    // A file manager's refresh, or ls again: at once, not after --dir-timeout.
    assert_eq!(names(&inbox), ["a.txt", "b.txt"]);
    mount.unmount();
}

#[test]
fn a_directory_made_on_the_server_is_reachable_by_path_within_seconds() {
    let server = Vsftpd::start(TempDir::new("watch-mkdir"), VsftpdOptions::default());
    fs::create_dir(server.root().join("projects")).unwrap();
    let mount = Mount::of(&server, None, LONG_TTL);
    let unwatched =
        Mount::of(&server, None, &["--dir-timeout", "600s", "--attr-timeout", "600s", "--watch-interval", "0"]);
    for m in [&mount, &unwatched] {
        assert_eq!(names(&m.path().join("projects")), Vec::<String>::new());
        assert!(fs::metadata(m.path().join("projects/2026")).is_err());
    }

    let made = server.root().join("projects/2026");
    fs::create_dir(&made).unwrap();
    fs::write(made.join("plan.txt"), b"plan").unwrap();
    chown_to_user(&made);
    let path = mount.path().join("projects/2026/plan.txt");
    let took = eventually("projects/2026/plan.txt by path", || fs::metadata(&path).is_ok());
    eprintln!("measured: a directory made on the server was reachable by path after {took:?}");
    assert_eq!(fs::read(&path).unwrap(), b"plan");
    assert_eq!(names(&mount.path().join("projects")), ["2026"]);
    // The control: with --watch-interval 0 the cached listing answers for --dir-timeout.
    assert!(fs::metadata(unwatched.path().join("projects/2026")).is_err(), "the control mount re-listed");
    unwatched.unmount();
    mount.unmount();
}

#[test]
fn a_file_removed_on_the_server_disappears_and_what_inotify_and_gio_see() {
    let server = Vsftpd::start(TempDir::new("watch-rm"), VsftpdOptions::default());
    let root = server.root().join("shared");
    fs::create_dir(&root).unwrap();
    for n in ["a.txt", "b.txt", "c.txt"] {
        fs::write(root.join(n), n).unwrap();
    }
    let mount = Mount::of(&server, None, &["--dir-timeout", "600s", "--attr-timeout", "600s", "-vv"]);
    let dir = mount.path().join("shared");
    assert_eq!(names(&dir), ["a.txt", "b.txt", "c.txt"]);
    // As a file manager showing details: every entry was looked at.
    for n in ["a.txt", "b.txt", "c.txt"] {
        fs::metadata(dir.join(n)).unwrap();
    }
    // What a file manager listens to: the directory (GLib: inotify), and an open file's own.
    let dir_events = Inotify::watch(&dir, DIR_EVENTS);
    let file_events = Inotify::watch(&dir.join("c.txt"), FILE_EVENTS);
    let gio = GioMonitor::start(&dir);

    fs::remove_file(root.join("b.txt")).unwrap();
    fs::remove_file(root.join("c.txt")).unwrap();
    let took = eventually("b.txt and c.txt gone from ls", || names(&dir) == ["a.txt"]);
    eprintln!("measured: files removed on the server left ls after {took:?}");
    // The kernel held the entries for --attr-timeout (600 s): only the watcher's notice drops them.
    assert!(fs::metadata(dir.join("b.txt")).is_err(), "stat says it is gone too");
    let log = mount.log();
    assert!(log.contains(r#"told the kernel: "b.txt""#), "the kernel was told of the deletion: {log}");

    fs::write(root.join("d.txt"), b"new").unwrap();
    fs::write(root.join("a.txt"), b"a, longer now").unwrap();
    eventually("d.txt in ls", || names(&dir) == ["a.txt", "d.txt"]);
    eventually("a.txt's new size", || fs::metadata(dir.join("a.txt")).unwrap().len() == 13);
    std::thread::sleep(Duration::from_secs(2));
    // Measured, not asserted (the kernel decides what inotify reports).
    eprintln!("measured: inotify on the directory: {:?}", dir_events.events());
    eprintln!("measured: inotify on c.txt itself: {:?}", file_events.events());
    if let Some(gio) = &gio {
        eprintln!("measured: gio monitor on the directory: {:?}", gio.output());
    }

    // The directory itself removed on the server, while its parent is watched.
    assert_eq!(names(mount.path()), ["shared"]);
    fs::remove_dir_all(&root).unwrap();
    eventually("shared gone from ls", || names(mount.path()).is_empty());
    std::thread::sleep(Duration::from_secs(2));
    eprintln!("measured: inotify on the removed directory: {:?}", dir_events.events());
    if let Some(gio) = &gio {
        eprintln!("measured: gio monitor on the removed directory: {:?}", gio.output());
    }
    mount.unmount();
}

const DIR_EVENTS: u32 = libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_CLOSE_WRITE;
const FILE_EVENTS: u32 = libc::IN_DELETE_SELF | libc::IN_MOVE_SELF | libc::IN_ATTRIB | libc::IN_MODIFY;

/// `gio monitor DIR` (GLib's file monitor, as file managers use it), if gio is installed.
struct GioMonitor {
    _child: Killed,
    out: std::path::PathBuf,
    _dir: TempDir,
}

impl GioMonitor {
    fn start(dir: &Path) -> Option<GioMonitor> {
        let tmp = TempDir::new("gio");
        let out = tmp.path().join("out");
        let child = std::process::Command::new("gio")
            .arg("monitor")
            .arg(dir)
            .stdout(fs::File::create(&out).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        // It reads the directory before it watches.
        std::thread::sleep(Duration::from_millis(500));
        Some(GioMonitor { _child: Killed(child), out, _dir: tmp })
    }

    fn output(&self) -> Vec<String> {
        fs::read_to_string(&self.out).unwrap_or_default().lines().map(str::to_string).collect()
    }
}

/// Commands vsftpd logged (`log_ftp_protocol`).
fn commands(server: &Vsftpd) -> Vec<String> {
    server.log().lines().filter_map(|l| l.split_once("FTP command: ").map(|(_, c)| c.to_string())).collect()
}

#[test]
fn an_idle_mount_sends_no_commands_and_watching_ends() {
    let server = Vsftpd::start(
        TempDir::new("watch-idle"),
        VsftpdOptions { extra: "log_ftp_protocol=YES\n", ..Default::default() },
    );
    fs::create_dir(server.root().join("d")).unwrap();
    // 500 ms: a directory listed once is watched for 20 intervals, 10 s.
    let mount = Mount::of(&server, None, &["--watch-interval", "500ms", "--dir-timeout", "600s"]);
    std::thread::sleep(Duration::from_secs(1));
    let quiet = |secs: u64| {
        let before = commands(&server);
        std::thread::sleep(Duration::from_secs(secs));
        let after = commands(&server);
        after[before.len().min(after.len())..].to_vec()
    };
    let sent = quiet(5);
    assert!(sent.is_empty(), "an idle mount sent {sent:?}");

    // Listed once: watched (the control that the log shows the watcher's commands)...
    names(&mount.path().join("d"));
    let sent = quiet(3);
    assert!(sent.iter().any(|c| c.contains("LIST")), "a directory just listed is watched: {sent:?}");
    eprintln!("measured: commands in 3 s of watching one unchanged directory every 500 ms: {sent:?}");
    // ...for a while, then no more.
    std::thread::sleep(Duration::from_secs(10));
    let sent = quiet(5);
    assert!(sent.is_empty(), "still watching after 20 intervals: {sent:?}");

    // Held open: watched until closed.
    let held = fs::File::open(mount.path().join("d")).unwrap();
    std::thread::sleep(Duration::from_secs(12));
    let sent = quiet(3);
    assert!(sent.iter().any(|c| c.contains("LIST")), "a directory held open is watched: {sent:?}");
    drop(held);
    std::thread::sleep(Duration::from_secs(12));
    let sent = quiet(5);
    assert!(sent.is_empty(), "still watching after the directory was closed: {sent:?}");
    mount.unmount();
}
