//! Long names and deep paths through a real mount of vsftpd (issue 13, defect 5): names up
//! to 255 bytes work (their temporary upload names stay within 255 bytes), longer ones and
//! paths the server cannot take fail with ENAMETOOLONG, never with a silently missing file.

mod common;

use std::fs;
use std::process::Command;

use common::*;

/// A name of exactly `len` bytes: ASCII, or two-byte characters with an ASCII tail.
fn name_of(len: usize, multibyte: bool, tag: char) -> String {
    let mut n = String::from(tag);
    if multibyte {
        while n.len() + 2 <= len {
            n.push('é');
        }
    }
    while n.len() < len {
        n.push('x');
    }
    assert_eq!(n.len(), len);
    n
}

#[test]
fn names_of_231_to_255_bytes_are_created_read_and_renamed_and_256_bytes_are_refused() {
    let server = Vsftpd::start(TempDir::new("long"), VsftpdOptions::default());
    let mount = Mount::of(&server, None, &[]);
    let (m, s) = (mount.path(), server.root());
    for len in 231..=255 {
        for multibyte in [false, true] {
            let empty = name_of(len, multibyte, 'e');
            let full = name_of(len, multibyte, 'f');
            fs::File::create(m.join(&empty)).unwrap_or_else(|e| panic!("{len} bytes: {e}"));
            let body = pseudo_random(1000 + len, len as u64);
            fs::write(m.join(&full), &body).unwrap_or_else(|e| panic!("{len} bytes: {e}"));
            assert_eq!(fs::read(m.join(&full)).unwrap(), body);
            assert_eq!(fs::read(s.join(&empty)).unwrap(), b"", "{len}: empty file on the server");
            assert_eq!(fs::read(s.join(&full)).unwrap(), body, "{len}: content on the server");
            let renamed = name_of(len, multibyte, 'r');
            fs::rename(m.join(&full), m.join(&renamed)).unwrap();
            assert_eq!(fs::read(s.join(&renamed)).unwrap(), body);
            assert!(!s.join(&full).exists());
        }
    }
    let too_long = name_of(256, false, 'x');
    let err = fs::File::create(m.join(&too_long)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG), "{err}");
    assert_eq!(fs::create_dir(m.join(&too_long)).unwrap_err().raw_os_error(), Some(libc::ENAMETOOLONG));
    assert_eq!(fs::metadata(m.join(&too_long)).unwrap_err().raw_os_error(), Some(libc::ENAMETOOLONG));
    let leftovers: Vec<String> = fs::read_dir(s)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".ftpmount-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    mount.unmount();
}

/// Walks down through the mount making 200-byte directories until the server refuses the
/// path, then creates files there; prints one line per outcome.
const DEEP: &str = r#"
import os, sys, errno
os.chdir(sys.argv[1])
depth = 0
while True:
    d = "d" * 199 + str(depth % 10)
    try:
        os.mkdir(d)
    except OSError as e:
        print("mkdir", errno.errorcode[e.errno]); break
    os.chdir(d); depth += 1
print("depth", depth)
def make(name, data, sync=True):
    try:
        fd = os.open(name, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    except OSError as e:
        return "open " + errno.errorcode[e.errno]
    try:
        if data: os.write(fd, data)
        if sync: os.fsync(fd)
    except OSError as e:
        try: os.close(fd)
        except OSError: pass
        return "write " + errno.errorcode[e.errno]
    try:
        os.close(fd)
    except OSError as e:
        return "close " + errno.errorcode[e.errno]
    return "ok"
print("empty", make("e" * 250, b""))
print("full", make("f" * 250, b"content"))
print("closed", make("c" * 250, b"content", sync=False))
print("closed-empty", make("z" * 250, b"", sync=False))
"#;

#[test]
fn a_path_too_long_for_the_server_fails_with_enametoolong_and_stores_nothing() {
    let server = Vsftpd::start(TempDir::new("deep"), VsftpdOptions::default());
    let mount = Mount::of(&server, None, &[]);
    let out = run_ok(Command::new("python3").args(["-c", DEEP]).arg(mount.path()));
    let said = |k: &str| out.lines().find_map(|l| l.strip_prefix(&format!("{k} "))).unwrap_or("").to_string();
    assert_eq!(said("mkdir"), "ENAMETOOLONG", "{out}");
    let depth: usize = said("depth").parse().unwrap();
    assert!(depth >= 10, "{out}");
    // An empty file that was not stored must not look created, nor a full one.
    assert!(said("empty").ends_with("ENAMETOOLONG"), "{out}");
    assert!(said("full").ends_with("ENAMETOOLONG"), "{out}");
    // Without fsync: at the write (the upload starts there) or at close, never success.
    assert!(said("closed").ends_with("ENAMETOOLONG"), "{out}");
    assert_eq!(said("closed-empty"), "close ENAMETOOLONG", "{out}");
    // Nothing at the deepest level on the server's disk (walked with relative paths).
    let find = Command::new("find").arg(server.root()).args(["-type", "f"]).output().unwrap();
    assert!(String::from_utf8_lossy(&find.stdout).trim().is_empty(), "{}", String::from_utf8_lossy(&find.stdout));
    mount.unmount();
}
