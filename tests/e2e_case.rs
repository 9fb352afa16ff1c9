//! Case folding through a real FUSE mount: vsftpd on an ordinary (case-sensitive) directory,
//! and vsftpd on a FAT volume (case-insensitive, as on Windows/IIS). `touch`, `rsync`, `mv`
//! under each policy, the server detection, and `ftpmount collisions`.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use common::*;

/// vsftpd serving an ordinary directory.
fn sensitive_server() -> Vsftpd {
    Vsftpd::start(TempDir::new("root"), VsftpdOptions::default())
}

/// vsftpd serving a FAT volume; the volume must outlive the server.
fn folding_server() -> (Vsftpd, FatVolume) {
    let (fat, root) = FatVolume::new();
    let server = Vsftpd::start(root, VsftpdOptions { keep_owner: true, ..Default::default() });
    (server, fat)
}

fn mount(server: &Vsftpd, extra: &[&str]) -> Mount {
    let mut args = vec!["--tls", "off"];
    args.extend(extra);
    Mount::of(server, None, &args)
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn touch_both(mount: &Mount) -> Output {
    run(Command::new("touch").current_dir(mount.path()).args(["MyFile.txt", "myfile.txt"]))
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[test]
fn detection_tells_a_fat_volume_from_an_ordinary_directory() {
    let plain = sensitive_server();
    let m = mount(&plain, &[]);
    assert!(m.log().contains("the server is case-sensitive: a file created as .ftpmount-case-probe-"), "{}", m.log());
    assert!(
        m.log().contains("are logged (--case-collisions)"),
        "default on a case-sensitive server is warn: {}",
        m.log()
    );
    drop(m);
    assert!(names_in(plain.root()).is_empty(), "the probe file is gone: {:?}", names_in(plain.root()));

    let (fat_server, _fat) = folding_server();
    let m = mount(&fat_server, &[]);
    assert!(m.log().contains("the server folds case: a file created as .ftpmount-case-probe-"), "{}", m.log());
    assert!(m.log().contains("are refused (--case-collisions)"), "default on a folding server is reject: {}", m.log());
    drop(m);
    assert!(names_in(fat_server.root()).is_empty(), "{:?}", names_in(fat_server.root()));

    // Read-only: no probe file; an existing name asked for in another case decides.
    fs::write(fat_server.root().join("Report.pdf"), b"x").unwrap();
    let m = mount(&fat_server, &["--read-only"]);
    assert!(m.log().contains("the server folds case: the file Report.pdf was found as rEPORT.PDF"), "{}", m.log());
    drop(m);
    fs::write(plain.root().join("Report.pdf"), b"x").unwrap();
    let m = mount(&plain, &["--read-only"]);
    assert!(
        m.log().contains("the server is case-sensitive: the file Report.pdf was not found as rEPORT.PDF"),
        "{}",
        m.log()
    );
}

#[test]
fn touch_on_a_case_sensitive_server_under_each_policy() {
    let server = sensitive_server();
    // warn (the default here): both files arrive, the log names both paths.
    let m = mount(&server, &[]);
    assert!(touch_both(&m).status.success());
    assert_eq!(names_in(server.root()), ["MyFile.txt", "myfile.txt"]);
    assert!(m.log().contains("case collision: /myfile.txt and /MyFile.txt differ only in case"), "{}", m.log());
    drop(m);
    for f in ["MyFile.txt", "myfile.txt"] {
        fs::remove_file(server.root().join(f)).unwrap();
    }

    // reject: the second name is refused with "File exists".
    let m = mount(&server, &["--case-collisions", "reject"]);
    let out = touch_both(&m);
    assert!(!out.status.success());
    assert!(text(&out).contains("myfile.txt") && text(&out).contains("File exists"), "{}", text(&out));
    assert_eq!(names_in(server.root()), ["MyFile.txt"]);
    assert!(m.log().contains("refused to create /myfile.txt: /MyFile.txt differs only in case"), "{}", m.log());
    drop(m);
    fs::remove_file(server.root().join("MyFile.txt")).unwrap();

    // off: both arrive, nothing is said.
    let m = mount(&server, &["--case-collisions", "off"]);
    assert!(touch_both(&m).status.success());
    assert_eq!(names_in(server.root()), ["MyFile.txt", "myfile.txt"]);
    assert!(!m.log().contains("case collision") && !m.log().contains("refused"), "{}", m.log());
}

#[test]
fn touch_on_a_folding_server_under_each_policy() {
    let (server, _fat) = folding_server();
    // reject (the default here): the second name would be the first file; it is refused.
    fs::write(server.root().join("MyFile.txt"), b"precious").unwrap();
    let m = mount(&server, &[]);
    let out = touch_both(&m);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("File exists"), "{}", text(&out));
    assert_eq!(names_in(server.root()), ["MyFile.txt"]);
    assert_eq!(fs::read(server.root().join("MyFile.txt")).unwrap(), b"precious");
    assert!(
        m.log().contains(
            "refused to create /myfile.txt: /MyFile.txt differs only in case; this server treats them as one name"
        ),
        "{}",
        m.log()
    );
    // The mount shows what the server has: one file, under its own name.
    assert_eq!(names_in(m.path()), ["MyFile.txt"]);
    drop(m);

    // warn: myfile.txt is MyFile.txt (as on Windows); the log says so.
    let m = mount(&server, &["--case-collisions", "warn", "-v"]);
    let out = touch_both(&m);
    assert!(out.status.success(), "{}\n{}", text(&out), m.log());
    assert_eq!(fs::read(m.path().join("myfile.txt")).unwrap(), b"precious", "a folded lookup finds the file");
    assert_eq!(names_in(server.root()), ["MyFile.txt"]);
    assert!(m.log().contains("/myfile.txt was asked for and /MyFile.txt answered"), "{}", m.log());
    drop(m);

    // off: the same, silently.
    let m = mount(&server, &["--case-collisions", "off"]);
    assert!(touch_both(&m).status.success());
    assert_eq!(names_in(server.root()), ["MyFile.txt"]);
    assert!(!m.log().contains("asked for"), "{}", m.log());
}

/// A tree with `Docs/` and `docs/` that hold a file of the same name with different bytes.
fn colliding_tree() -> TempDir {
    let src = TempDir::new("src");
    for (dir, bytes) in [("Docs", 1u64), ("docs", 2)] {
        fs::create_dir_all(src.path().join(dir)).unwrap();
        fs::write(src.path().join(dir).join("index.html"), pseudo_random(3000, bytes)).unwrap();
        fs::write(src.path().join(dir).join(format!("only-in-{dir}.txt")), dir).unwrap();
    }
    fs::write(src.path().join("top.txt"), b"top").unwrap();
    src
}

fn rsync_to(src: &TempDir, dest: &Path) -> Output {
    run(Command::new("rsync").args(["-a", &format!("{}/", src.path().display()), dest.to_str().unwrap()]))
}

#[test]
fn rsync_with_reject_on_a_folding_server_neither_overwrites_nor_merges() {
    let (server, _fat) = folding_server();
    let src = colliding_tree();
    let m = mount(&server, &[]);
    let out = rsync_to(&src, m.path());
    // rsync's mkdir gets "File exists"; it then reports docs/ and the files it could not send.
    assert_eq!(out.status.code(), Some(23), "rsync reports the refused names: {}", text(&out));
    assert!(text(&out).contains("/docs"), "{}", text(&out));
    // Exactly one of the two folders arrived, whole and unmixed.
    assert_eq!(names_in(server.root()), ["Docs", "top.txt"]);
    assert_eq!(names_in(&server.root().join("Docs")), ["index.html", "only-in-Docs.txt"]);
    assert_eq!(fs::read(server.root().join("Docs/index.html")).unwrap(), pseudo_random(3000, 1));
    assert!(m.log().contains("refused to create /docs: /Docs differs only in case"), "{}", m.log());
}

#[test]
fn rsync_with_warn_on_a_case_sensitive_server_sends_both_and_names_them() {
    let server = sensitive_server();
    let src = colliding_tree();
    let m = mount(&server, &["--case-collisions", "warn"]);
    let out = rsync_to(&src, m.path());
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(tree_listing(server.root()), tree_listing(src.path()));
    for dir in ["Docs", "docs"] {
        assert_eq!(
            fs::read(server.root().join(dir).join("index.html")).unwrap(),
            fs::read(src.path().join(dir).join("index.html")).unwrap()
        );
    }
    assert!(m.log().contains("case collision: /docs and /Docs differ only in case"), "{}", m.log());
    // A second run sends nothing.
    let again = run(Command::new("rsync").args([
        "-a",
        "--itemize-changes",
        &format!("{}/", src.path().display()),
        m.path().to_str().unwrap(),
    ]));
    let sent: Vec<&str> = std::str::from_utf8(&again.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with('<') || l.starts_with("cd"))
        .collect();
    assert!(sent.is_empty(), "{sent:?}");
}

#[test]
fn a_listing_with_colliding_names_is_warned_about_once() {
    let server = sensitive_server();
    for name in ["Photo.JPG", "photo.jpg", "other.txt"] {
        fs::write(server.root().join(name), name).unwrap();
    }
    let m = mount(&server, &["--dir-timeout", "0s"]);
    for _ in 0..3 {
        assert_eq!(names_in(m.path()).len(), 3);
    }
    let warnings = m.log().matches("/ holds names that differ only in case: Photo.JPG / photo.jpg").count();
    assert_eq!(warnings, 1, "{}", m.log());
}

#[test]
fn case_only_rename_works_on_both_servers() {
    let plain = sensitive_server();
    let (folding, _fat) = folding_server();
    for (server, extra) in [(&plain, &[][..]), (&folding, &[][..]), (&folding, &["--case-collisions", "warn"][..])] {
        fs::write(server.root().join("readme"), b"read me").unwrap();
        fs::create_dir(server.root().join("photos")).unwrap();
        let m = mount(server, extra);
        let out = run(Command::new("mv").current_dir(m.path()).args(["readme", "README"]));
        assert!(out.status.success(), "{extra:?}: {}", text(&out));
        // -T: with folded lookups `Photos` already looks like a directory, and plain mv would
        // move photos into it (refused: it would be moving into itself).
        let out = run(Command::new("mv").current_dir(m.path()).args(["-T", "photos", "Photos"]));
        assert!(out.status.success(), "{extra:?}: {}", text(&out));
        assert_eq!(names_in(server.root()), ["Photos", "README"], "{extra:?}");
        assert_eq!(fs::read(server.root().join("README")).unwrap(), b"read me");
        assert_eq!(names_in(m.path()), ["Photos", "README"]);
        drop(m);
        fs::remove_file(server.root().join("README")).unwrap();
        fs::remove_dir(server.root().join("Photos")).unwrap();
    }
}

#[test]
fn collisions_command_lists_groups_and_sets_the_exit_status() {
    let src = colliding_tree();
    fs::write(src.path().join("Docs/Straße.txt"), b"1").unwrap();
    fs::write(src.path().join("Docs/STRASSE.TXT"), b"2").unwrap();
    let check =
        |args: &[&str]| run(Command::new(bin()).arg("collisions").args(args).env("FTPMOUNT_PASSWORD", PASSWORD));

    // A local tree.
    let out = check(&[src.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(stdout, "/: \"Docs/\", \"docs/\"\n/Docs: \"STRASSE.TXT\", \"Straße.txt\"\n", "{}", text(&out));
    // ASCII folding does not join ß and SS.
    let out = check(&[src.path().to_str().unwrap(), "--case-folding", "ascii"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/: \"Docs/\", \"docs/\"\n");
    // A subtree without collisions.
    let out = check(&[src.path().to_str().unwrap(), "docs"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(out.stdout.is_empty());

    // The same tree on a server, by URL, and through a mount of it.
    let server = sensitive_server();
    run(Command::new("cp").args(["-a", &format!("{}/.", src.path().display()), server.root().to_str().unwrap()]));
    chown_to_user(server.root());
    let out = check(&[&server.url(), "--tls", "off"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), stdout);
    let m = mount(&server, &["--case-collisions", "off"]);
    let out = check(&[m.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), stdout);

    // A clean tree exits 0; an unreachable server exits 2 with a reason.
    let clean = TempDir::new("clean");
    fs::write(clean.path().join("a"), b"").unwrap();
    assert_eq!(check(&[clean.path().to_str().unwrap()]).status.code(), Some(0));
    let out = check(&[&format!("ftp://{USER}@127.0.0.1:{}/", free_port()), "--tls", "off"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("cannot check"), "{}", text(&out));
}
