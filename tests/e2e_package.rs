//! The Debian package (issue 18), installed for real: `.ci/run` builds it with
//! `scripts/package` and runs this with `FTPMOUNT_DEB=path/to/ftpmount_*.deb -- --ignored`.
//! It installs the package with apt-get, reads the man pages, completes in bash through
//! bash-completion's loader, checks the systemd user unit (and runs its commands as systemd
//! would, then stops it with SIGTERM), mounts a server through an fstab
//! line with mount(8) (from a private fstab file, `mount -T`, so /etc/fstab is not touched),
//! unmounts with umount(8), and removes the package, leaving no helper behind.
//!
//! Ignored in a plain `cargo test`: it installs into the system.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

fn sh(script: &str) -> Output {
    Command::new("bash").args(["-c", script]).output().unwrap()
}

fn ok(script: &str) -> String {
    let out = sh(script);
    assert!(
        out.status.success(),
        "{script}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes the package even when an assertion failed half-way.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = sh("DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq ftpmount >/dev/null 2>&1");
    }
}

#[test]
#[ignore = "installs the .deb into the system: run by .ci/run with FTPMOUNT_DEB set"]
fn the_deb_installs_documents_completes_mounts_from_fstab_and_removes_cleanly() {
    let deb = std::env::var("FTPMOUNT_DEB").expect("FTPMOUNT_DEB: the .deb scripts/package built");
    let deb = fs::canonicalize(&deb).unwrap();
    ok(&format!("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {} >/dev/null", deb.display()));
    let installed = Installed;

    // The binary, with the commit it was built from.
    let version = ok("/usr/bin/ftpmount --version");
    assert!(version.starts_with("ftpmount ") && version.contains('('), "{version}");
    assert!(!version.contains("unknown"), "built from a git checkout, the commit is known: {version}");

    // Man pages, for the command and each subcommand.
    let page = ok("MANPAGER=cat MANWIDTH=100 man ftpmount-mount");
    assert!(page.contains("--max-connections") && page.contains("--content-cache-size"), "{page}");
    let page = ok("MANPAGER=cat man ftpmount");
    assert!(page.contains("ftpmount-check(1)") && page.contains("/usr/share/doc/ftpmount"), "{page}");

    // Bash completion, found by bash-completion's loader where the package put it.
    let words = ok("source /usr/share/bash-completion/bash_completion; \
                    _completion_loader ftpmount; \
                    COMP_WORDS=(ftpmount mo); COMP_CWORD=1; COMP_LINE='ftpmount mo'; COMP_POINT=11; \
                    $(complete -p ftpmount | sed -n 's/.*-F \\([^ ]*\\).*/\\1/p') ftpmount mo ftpmount; \
                    echo \"${COMPREPLY[@]}\"");
    assert!(words.split_whitespace().any(|w| w == "mount"), "completing 'ftpmount mo': {words:?}");
    let words = ok("source /usr/share/bash-completion/bash_completion; _completion_loader ftpmount; \
                    COMP_WORDS=(ftpmount mount --max-con); COMP_CWORD=2; \
                    $(complete -p ftpmount | sed -n 's/.*-F \\([^ ]*\\).*/\\1/p') ftpmount --max-con mount; \
                    echo \"${COMPREPLY[@]}\"");
    assert!(words.contains("--max-connections"), "completing 'ftpmount mount --max-con': {words:?}");
    for f in ["/usr/share/zsh/vendor-completions/_ftpmount", "/usr/share/fish/vendor_completions.d/ftpmount.fish"] {
        assert!(fs::metadata(f).is_ok_and(|m| m.len() > 0), "{f}");
    }

    // The systemd user unit is valid and runs what the package installed.
    let unit = "/usr/lib/systemd/user/ftpmount@.service";
    let out = sh(&format!("systemd-analyze verify {unit} 2>&1"));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify {unit}: {said}");

    // An fstab line mounts and unmounts with mount(8) and umount(8).
    let root = TempDir::new("root");
    fs::write(root.path().join("hello.txt"), b"hello through fstab").unwrap();
    let server = Vsftpd::start(root, VsftpdOptions::default());
    the_user_units_commands_mount_and_sigterm_unmounts(unit, &server);
    let dir = TempDir::new("fstab");
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let password = dir.path().join("password");
    fs::write(&password, PASSWORD).unwrap();
    let fstab = dir.path().join("fstab");
    fs::write(
        &fstab,
        format!(
            "{}  {}  fuse.ftpmount  _netdev,noauto,x-systemd.automount,x-systemd.mount-timeout=60,tls=off,max_connections=3,password_file={}  0 0\n",
            server.url(),
            mnt.display(),
            password.display()
        ),
    )
    .unwrap();
    ok(&format!("mount -T {} {}", fstab.display(), mnt.display()));
    let mounted = Mounted(mnt.clone());
    assert_eq!(fs::read(mnt.join("hello.txt")).unwrap(), b"hello through fstab");
    fs::write(mnt.join("up.txt"), b"written through fstab").unwrap();
    assert_eq!(fs::read(server.root().join("up.txt")).unwrap(), b"written through fstab");
    ok(&format!("umount {}", mnt.display()));
    wait_unmounted(&mnt);
    std::mem::forget(mounted);

    // Removed: no binary, no mount helper, no unit left.
    drop(installed);
    for gone in ["/usr/bin/ftpmount", "/sbin/mount.fuse.ftpmount", "/sbin/mount.ftpmount", unit] {
        assert!(fs::symlink_metadata(gone).is_err(), "{gone} is left after apt-get remove");
    }
    let out = sh("dpkg -s ftpmount 2>&1");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Status: install ok installed"));
}

/// Without a systemd to run the user unit (CI has none), its own command lines are run as
/// systemd would for `ftpmount@work` (`%i`, `%h` expanded, HOME set, a profile with the label),
/// and the service is stopped as `KillMode=mixed` does: SIGTERM to ftpmount.
fn the_user_units_commands_mount_and_sigterm_unmounts(unit: &str, server: &Vsftpd) {
    let home = TempDir::new("home");
    let config = home.path().join(".config/ftpmount");
    fs::create_dir_all(&config).unwrap();
    fs::write(config.join("work.password"), PASSWORD).unwrap();
    fs::write(
        config.join("config.toml"),
        format!(
            "[connections.work]\nurl = \"{}\"\ntls = \"off\"\npassword_file = \"{}\"\n",
            server.url(),
            config.join("work.password").display()
        ),
    )
    .unwrap();
    let text = fs::read_to_string(unit).unwrap();
    let line = |key: &str| -> Vec<String> {
        let v = text.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_else(|| panic!("{key} in {unit}"));
        let v = v.replace("%i", "work").replace("%h", home.path().to_str().unwrap());
        v.split_whitespace().map(str::to_string).collect()
    };
    let (pre, start) = (line("ExecStartPre="), line("ExecStart="));
    let status = Command::new(&pre[0]).args(&pre[1..]).env("HOME", home.path()).status().unwrap();
    assert!(status.success(), "{pre:?}");
    let mut child = Command::new(&start[0])
        .args(&start[1..])
        .env("HOME", home.path())
        .env_remove("FTPMOUNT_PASSWORD")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mnt = home.path().join("ftp/work");
    let begun = Instant::now();
    while !is_mounted(&mnt) {
        assert!(child.try_wait().unwrap().is_none(), "{start:?} exited before mounting");
        assert!(begun.elapsed() < Duration::from_secs(20), "{start:?} did not mount {}", mnt.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mounted = Mounted(mnt.clone());
    assert_eq!(fs::read(mnt.join("hello.txt")).unwrap(), b"hello through fstab");
    // SAFETY: a signal to the child we started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "ftpmount after SIGTERM: {status}");
    assert!(!is_mounted(&mnt), "SIGTERM unmounted");
    std::mem::forget(mounted);
}

/// Unmounts at the end of a failed test.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn wait_unmounted(mnt: &Path) {
    let start = Instant::now();
    while is_mounted(mnt) {
        assert!(start.elapsed() < Duration::from_secs(10), "{} is still mounted", mnt.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}
