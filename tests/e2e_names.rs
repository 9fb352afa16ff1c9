//! File names that are not UTF-8, through a real mount of vsftpd (which stores names as the
//! bytes it is sent): shown byte for byte by default, readable text with `--encoding`, and in
//! both cases readable, renamable and deletable, checked on the server's disk.

mod common;

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use common::*;

fn bytes_name(b: &[u8]) -> OsString {
    OsString::from_vec(b.to_vec())
}

/// The names in `dir`, as raw bytes, sorted.
fn names_in(dir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_vec()).collect();
    names.sort();
    names
}

fn server_with(files: &[(&[u8], &[u8])]) -> Vsftpd {
    let root = TempDir::new("root");
    for (name, body) in files {
        fs::write(root.path().join(bytes_name(name)), body).unwrap();
    }
    Vsftpd::start(root, VsftpdOptions::default())
}

#[test]
fn names_in_a_legacy_charset_are_kept_byte_for_byte_by_default() {
    let server = server_with(&[(b"caf\xe9.txt", b"latin1 name"), (b"ok.txt", b"plain")]);
    let mount = Mount::of(&server, None, &[]);
    let m = mount.path();
    assert_eq!(names_in(m), [b"caf\xe9.txt".to_vec(), b"ok.txt".to_vec()], "listed as the server's bytes");
    let cafe = m.join(bytes_name(b"caf\xe9.txt"));
    assert_eq!(fs::read(&cafe).unwrap(), b"latin1 name");

    fs::rename(&cafe, m.join(bytes_name(b"na\xefve \xfe.txt"))).unwrap();
    assert_eq!(names_in(server.root()), [b"na\xefve \xfe.txt".to_vec(), b"ok.txt".to_vec()]);
    assert_eq!(fs::read(server.root().join(bytes_name(b"na\xefve \xfe.txt"))).unwrap(), b"latin1 name");

    // A new file whose name is not UTF-8 goes to the server as the same bytes.
    fs::write(m.join(bytes_name(b"new\xe0.bin")), b"fresh").unwrap();
    assert_eq!(fs::read(server.root().join(bytes_name(b"new\xe0.bin"))).unwrap(), b"fresh");

    fs::remove_file(m.join(bytes_name(b"na\xefve \xfe.txt"))).unwrap();
    fs::remove_file(m.join(bytes_name(b"new\xe0.bin"))).unwrap();
    assert_eq!(names_in(server.root()), [b"ok.txt".to_vec()]);
    assert!(mount.log().contains("--encoding latin1"), "the log suggests --encoding: {}", mount.log());
}

#[test]
fn with_an_encoding_legacy_names_show_as_text_and_new_names_are_written_in_it() {
    let server = server_with(&[(b"caf\xe9.txt", b"latin1 name")]);
    fs::create_dir(server.root().join(bytes_name(b"r\xe9pertoire"))).unwrap();
    chown_to_user(server.root());
    let mount = Mount::of(&server, None, &["--encoding", "latin1"]);
    let m = mount.path();
    assert_eq!(names_in(m), ["café.txt".as_bytes().to_vec(), "répertoire".as_bytes().to_vec()]);
    assert_eq!(fs::read(m.join("café.txt")).unwrap(), b"latin1 name");

    fs::rename(m.join("café.txt"), m.join("répertoire/été.txt")).unwrap();
    let dir = server.root().join(bytes_name(b"r\xe9pertoire"));
    assert_eq!(fs::read(dir.join(bytes_name(b"\xe9t\xe9.txt"))).unwrap(), b"latin1 name");
    fs::write(m.join("répertoire/naïve.txt"), b"new").unwrap();
    assert_eq!(fs::read(dir.join(bytes_name(b"na\xefve.txt"))).unwrap(), b"new");

    // Latin-1 has no bytes for these: refused before any command, nothing appears.
    let err = fs::write(m.join("日本.txt"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EILSEQ), "{err}");
    let err = fs::rename(m.join("répertoire/été.txt"), m.join("€.txt")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EILSEQ), "{err}");
    assert_eq!(names_in(server.root()), [b"r\xe9pertoire".to_vec()]);
    assert_eq!(names_in(&dir), [b"na\xefve.txt".to_vec(), b"\xe9t\xe9.txt".to_vec()]);
    assert!(mount.log().contains("cannot represent"), "the log says why: {}", mount.log());

    fs::remove_file(m.join("répertoire/été.txt")).unwrap();
    fs::remove_file(m.join("répertoire/naïve.txt")).unwrap();
    fs::remove_dir(m.join("répertoire")).unwrap();
    assert!(names_in(server.root()).is_empty());
}
