//! How the mount presents itself to the desktop (issue 15): free space (`df`, GLib's
//! filesystem::free), what GLib can tell of it (filesystem::remote, type), what a file
//! manager's "Move to Trash" does, and `ftpmount status` from another XDG_RUNTIME_DIR.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("running {cmd}: {e}"))
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `df -B1 --output=size,used,avail MNT`: the mount's size, used and available bytes.
fn df(mnt: &Path) -> Vec<String> {
    let out = run("df", &["-B1", "--output=size,used,avail", mnt.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout.lines().nth(1).unwrap_or_default().split_whitespace().map(str::to_string).collect()
}

/// `gio info -f MNT`: GLib's filesystem attributes, `name: value`.
fn gio_fs_info(mnt: &Path) -> String {
    let out = run("gio", &["info", "-f", mnt.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// Whether `df` (with `args`) lists the mount.
fn df_lists(mnt: &Path, args: &[&str]) -> bool {
    let out = run("df", &[args, &["--output=target"]].concat());
    String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == mnt.to_str().unwrap())
}

#[test]
fn free_space_is_the_servers_avbl_figure() {
    // 5 GiB, as a Serv-U-like server answers AVBL.
    let server = PyFtpd::start(TempDir::new("root"), None, &["--avbl", "5368709120"]);
    let m = Mount::of(&server, None, &["--tls", "off"]);
    assert_eq!(df(m.path()), ["5368709120", "0", "5368709120"], "size = available, used unknown (0)");
    let info = gio_fs_info(m.path());
    assert!(info.contains("filesystem::free: 5368709120"), "{info}");
    assert!(df_lists(m.path(), &[]), "a filesystem with a size is listed by plain df");
    let st = status_json(m.path());
    assert!(st["server_profile"].to_string().contains("told by AVBL"), "{st:#}");
}

#[test]
fn without_a_figure_df_shows_zeros_and_glib_reports_no_free_space() {
    let server = Vsftpd::start(TempDir::new("root"), VsftpdOptions::default());
    let m = Mount::of(&server, None, &["--tls", "off"]);
    assert_eq!(df(m.path()), ["0", "0", "0"], "no more 1 PiB");
    // GLib leaves filesystem::free/size/used out for FUSE with f_bfree = f_bavail = 0: file
    // managers show "unknown", not "0 bytes free".
    let info = gio_fs_info(m.path());
    assert!(!info.contains("filesystem::free") && !info.contains("filesystem::size"), "{info}");
    // What GLib can tell of a FUSE mount: its type is "fuse" and it is not on its short list of
    // remote types (nfs, cifs, smb, fuse.sshfs).
    assert!(info.contains("filesystem::type: fuse"), "{info}");
    assert!(info.contains("filesystem::remote: FALSE"), "{info}");
    // df: a 0-block filesystem shows only with -a or when named; -l (local only) leaves it out,
    // as the source `ftpmount:HOST` has a colon (gnulib's ME_REMOTE).
    assert!(!df_lists(m.path(), &[]));
    assert!(df_lists(m.path(), &["-a"]));
    assert!(!df_lists(m.path(), &["-a", "-l"]), "df -l counts the mount as remote");
    let st = status_json(m.path());
    assert!(st["server_profile"].to_string().contains("unknown: the server answers no AVBL"), "{st:#}");
    drop(m);

    // --assume-free-space: for file managers that refuse to copy onto 0 bytes free (Dolphin).
    let m = Mount::of(&server, None, &["--tls", "off", "--assume-free-space", "1T"]);
    assert_eq!(df(m.path()), ["1099511627776", "0", "1099511627776"]);
}

#[test]
fn move_to_trash_fails_cleanly_and_leaves_no_trash_folder_on_the_server() {
    let server = Vsftpd::start(TempDir::new("root"), VsftpdOptions::default());
    let m = Mount::of(&server, None, &["--tls", "off"]);
    let file = m.path().join("photo.jpg");
    std::fs::write(&file, b"jpeg bytes").unwrap();
    std::fs::create_dir(m.path().join("album")).unwrap();
    let server_names = || {
        let mut names: Vec<String> =
            std::fs::read_dir(server.root()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    };
    for target in [file.clone(), m.path().join("album")] {
        let out = run("gio", &["trash", target.to_str().unwrap()]);
        assert!(!out.status.success(), "{}", text(&out));
        // GLib's words for G_IO_ERROR_NOT_SUPPORTED here: file managers then offer to delete.
        assert!(text(&out).contains("Unable to find or create trash directory"), "{}", text(&out));
        assert!(target.exists(), "nothing moved");
    }
    assert_eq!(server_names(), ["album", "photo.jpg"], "no .Trash-UID on the server");
    // By hand too, with the errno GLib maps to "not supported".
    let err = std::fs::create_dir(m.path().join(".Trash-1000")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTSUP), "{err}");
    assert!(std::fs::write(m.path().join(".Trash"), b"x").is_err());
    // Deleting permanently, what the file manager offers next, works.
    let out = run("gio", &["remove", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(server_names(), ["album"]);
    // Not an error worth listing in `status`: it is the policy.
    let st = status_json(m.path());
    assert_eq!(st["recent_errors"].as_array().unwrap().len(), 0, "{st:#}");
}

#[test]
fn status_finds_a_mount_made_with_another_xdg_runtime_dir() {
    let server = Vsftpd::start(TempDir::new("root"), VsftpdOptions::default());
    let runtime = TempDir::new("xdg-at-mount");
    let m = Mount::start_with_env(
        &server.url(),
        &["--tls", "off"],
        &[("FTPMOUNT_PASSWORD", PASSWORD), ("XDG_RUNTIME_DIR", runtime.path().to_str().unwrap())],
    )
    .unwrap_or_else(|f| panic!("{f:?}"));
    let sockets = || std::fs::read_dir(runtime.path().join("ftpmount")).unwrap().count();
    assert_eq!(sockets(), 1, "the socket is where XDG_RUNTIME_DIR said");
    let other = TempDir::new("xdg-later");
    let mnt = m.path().to_str().unwrap();
    // The mount's own XDG_RUNTIME_DIR sees the socket and its record: one mount.
    for xdg in [Some(runtime.path().to_str().unwrap()), Some(other.path().to_str().unwrap()), None] {
        let status = |args: &[&str]| {
            let mut cmd = Command::new(bin());
            cmd.arg("status").args(args);
            match xdg {
                Some(x) => cmd.env("XDG_RUNTIME_DIR", x),
                None => cmd.env_remove("XDG_RUNTIME_DIR"),
            };
            cmd.output().unwrap()
        };
        let one = status(&[mnt, "--json"]);
        assert!(one.status.success(), "XDG_RUNTIME_DIR={xdg:?}: {}", text(&one));
        let all = status(&["--json"]);
        assert!(all.status.success(), "XDG_RUNTIME_DIR={xdg:?}: {}", text(&all));
        let all: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
        let ours: Vec<_> = all.as_array().unwrap().iter().filter(|s| s["mountpoint"] == mnt).collect();
        assert_eq!(ours.len(), 1, "listed once (socket and its record are one mount): {all:#}");
    }
    // The record the mount left where every `status` looks (other mounts may have theirs).
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let run_user = format!("/run/user/{uid}");
    let registry =
        if Path::new(&run_user).is_dir() { format!("{run_user}/ftpmount") } else { format!("/tmp/ftpmount-{uid}") };
    let recorded = || {
        std::fs::read_dir(&registry)
            .unwrap()
            .flatten()
            .any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.starts_with(runtime.path())))
    };
    assert!(recorded(), "a link to the socket in {registry}");
    drop(m);
    assert_eq!(sockets(), 0, "the socket goes with the mount");
    assert!(!recorded(), "the record in {registry} goes with the mount");
}
