//! Bounded property ("fuzz") tests for everything that reads what an FTP server sends: LIST
//! lines (Unix and DOS), MLSD lines, MDTM replies, reply codes and texts, and the PASV/EPSV
//! data address check. A hostile or broken server controls all of these bytes; whatever it
//! sends, the parsers must not panic and must never produce a name that walks out of its
//! directory (`.`, `..`, `/`, NUL), that could not be sent back in a command (CR, LF), or that
//! is not part of what the server sent.
//!
//! No extra dependencies: a fixed-seed xorshift64 generator, so any failure names the seed and
//! iteration and reproduces exactly. Every loop stops at its iteration count or at
//! [`TIME_CAP`], whichever comes first, so a slow (debug, loaded CI) build stays bounded.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant, SystemTime};

use suppaftp::FtpError;
use suppaftp::Status;
use suppaftp::types::Response;

use super::connect::data_ip;
use super::listing::{EntryKind, ListEntry, Skip, format_ftp_time, parse_list_line, parse_mdtm_reply, parse_mlsd_line};
use super::reply::{code, map, map_reply, text};

/// Wall-clock bound per fuzz loop; the iteration counts are sized to stay far below it in a
/// release build, and it only cuts the tail of a slow debug run.
const TIME_CAP: Duration = Duration::from_millis(1500);

const RANDOM_LINES: usize = 20_000;
const MUTATED_LIST_LINES: usize = 20_000;
const MUTATED_MLSD_LINES: usize = 20_000;
const REPLIES: usize = 20_000;
const MDTM_VALUES: usize = 20_000;
const DATA_ADDRESSES: usize = 50_000;

/// The iterations of one fuzz loop: `max` of them, fewer if [`TIME_CAP`] runs out first.
fn bounded(max: usize) -> impl Iterator<Item = usize> {
    let start = Instant::now();
    (0..max).take_while(move |_| start.elapsed() < TIME_CAP)
}

/// xorshift64: tiny, deterministic, good enough to pick edits.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform-ish in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = self.below(max_len);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Runs one parser call, turning a panic into a failure that shows the input to reproduce it.
fn guarded<T>(what: &str, seed: u64, iteration: usize, input: &str, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => panic!("{what} panicked (seed {seed:#x}, iteration {iteration}) on input {input:?}"),
    }
}

fn now_values() -> [SystemTime; 3] {
    let day = 86_400;
    [
        // 2026-11-25 12:00 UTC, as in listing.rs's tests.
        SystemTime::UNIX_EPOCH + Duration::from_secs(20_417 * day + 12 * 3600),
        // 2024-01-01 00:00 UTC: a year boundary after a leap year.
        SystemTime::UNIX_EPOCH + Duration::from_secs(19_723 * day),
        SystemTime::UNIX_EPOCH,
    ]
}

/// The properties every accepted listing entry must have, whatever the server sent.
fn check_entry(parser: &str, line: &str, parsed: &Result<ListEntry, Skip>, seed: u64, iteration: usize) {
    let Ok(e) = parsed else { return };
    let ctx = || format!("{parser} (seed {seed:#x}, iteration {iteration}) on input {line:?} gave {e:?}");
    assert!(!e.name.is_empty(), "empty name: {}", ctx());
    assert!(e.name != "." && e.name != "..", "dot name: {}", ctx());
    assert!(!e.name.contains('/'), "name with '/': {}", ctx());
    assert!(!e.name.contains('\0'), "name with NUL: {}", ctx());
    assert!(!e.name.contains(['\r', '\n']), "name with CR or LF: {}", ctx());
    assert!(e.name.len() <= line.len(), "name longer than the line: {}", ctx());
    assert!(line.contains(e.name.as_str()), "name not taken from the line: {}", ctx());
    // Documented: permission bits only.
    assert!(e.mode.is_none_or(|m| m <= 0o7777), "mode beyond 0o7777: {}", ctx());
    if let EntryKind::Symlink { target: Some(t) } = &e.kind {
        assert!(t.len() <= line.len() && line.contains(t.as_str()), "link target not from the line: {}", ctx());
    }
}

fn check_list_line(line: &str, seed: u64, iteration: usize) {
    for now in now_values() {
        let parsed = guarded("parse_list_line", seed, iteration, line, || parse_list_line(line, now));
        check_entry("parse_list_line", line, &parsed, seed, iteration);
    }
}

fn check_mlsd_line(line: &str, seed: u64, iteration: usize) {
    let parsed = guarded("parse_mlsd_line", seed, iteration, line, || parse_mlsd_line(line));
    check_entry("parse_mlsd_line", line, &parsed, seed, iteration);
}

/// Real lines from vsftpd, ProFTPD, Pure-FTPd and the like, with the name each must give.
const UNIX_LIST: &[(&str, &str)] = &[
    ("-rw-r--r--    1 1001     1001           12 Nov 24 22:54 a file.txt", "a file.txt"),
    ("drwxr-xr-x    2 0        0            4096 Jan 05  2023 Old Dir", "Old Dir"),
    ("lrwxrwxrwx    1 0        0              11 Mar 03 12:34 link name -> target/file", "link name"),
    ("lrwxrwxrwx    1 0        0               7 Mar 03  2021 abs -> /etc/passwd", "abs"),
    ("-rw-r--r--   1 ftp      ftp          1024 Mar  3 10:20 proftpd.txt", "proftpd.txt"),
    ("-rw-r--r--    1 1000       1000             42 Mar  3 10:20 pure.txt", "pure.txt"),
    ("drwxr-xr-x   3 ftp      ftp          4096 Feb 29  2024 leap day dir", "leap day dir"),
    ("crw-rw-rw-    1 0        0          1,   3 Jan 01  2020 null", "null"),
    ("brw-rw----    1 0        6          8,   0 Jun 10 08:15 sda", "sda"),
    ("prw-r--r--    1 0        0               0 Jan 01  2020 fifo", "fifo"),
    ("srwxrwxrwx    1 0        0               0 Dec 31 23:59 socket", "socket"),
    ("-rw-r--r--    1 1000     1000   18446744073709551615 Jan 01  1970 huge", "huge"),
    ("-rwsr-sr-t+   1 root     wheel          42 Aug 15  1999 setuid with acl", "setuid with acl"),
    ("-rw-r--r--    1 owner    12 Jul  4  2021 no group", "no group"),
    ("-rw-r--r--    1 u        g               5 Sep  9 09:09  spaces around  ", " spaces around  "),
    ("-rw-r--r--    1 u        g               5 Oct 10  2010 Ünïcödé 文件 🎉.txt", "Ünïcödé 文件 🎉.txt"),
    ("-rw-r--r--    1 u        g               5 Oct 10  2010 name -> not a link", "name -> not a link"),
    ("-rw-r--r--    1 may      jun             9 Jul  4  2021 months", "months"),
];

/// IIS / DOS style LIST lines.
const DOS_LIST: &[(&str, &str)] = &[
    ("01-02-24  03:04PM       <DIR>          name", "name"),
    ("01-02-24  03:04PM       <DIR>          Program Files", "Program Files"),
    ("11-28-2021  09:15AM              1234 file name.txt", "file name.txt"),
    ("03-05-1998  13:23         1,234,567 big.bin", "big.bin"),
    ("12-01-99  12:00AM                 5 y2k", "y2k"),
    ("2024-03-05  07:08                10 iso.txt", "iso.txt"),
    ("02-29-24  11:59PM     18446744073709551615 max", "max"),
];

/// MLSD lines; `None` marks lines that are rightly ignored (`cdir`, `pdir`).
const MLSD: &[(&str, Option<&str>)] = &[
    ("type=file;size=12;modify=20240102030405.123;perm=r; name", Some("name")),
    ("type=dir;modify=20240102030405;perm=flcdmpe; sub dir", Some("sub dir")),
    ("type=cdir; .", None),
    ("type=pdir;modify=20240102030405; ..", None),
    (
        "type=file;size=1024;modify=20261124225412;unix.mode=0644;unix.uid=0;unix.gid=0;unique=801g2a; with spaces.txt",
        Some("with spaces.txt"),
    ),
    ("Type=OS.unix=slink:/etc/target;Size=11;Modify=19991231235959; link", Some("link")),
    ("type=OS.unix=chr-1/3;modify=20200101000000; null", Some("null")),
    ("size=0;type=file;UNIX.mode=4755; setuid", Some("setuid")),
    ("type=file;sizd=5;modify=20240229120000.5; a;b=c d", Some("a;b=c d")),
    ("type=file;size=3; Ünïcödé 文件 🎉.txt", Some("Ünïcödé 文件 🎉.txt")),
];

/// Replies as servers send them, with the code and the one-line text they must give.
const REPLY_SAMPLES: &[(&str, u16, &str)] = &[
    ("220 (vsFTPd 3.0.5)\r\n", 220, "220 (vsFTPd 3.0.5)"),
    ("550 Failed to open file.\r\n", 550, "550 Failed to open file."),
    ("230-Welcome\r\n230-second line\r\n230 Login successful.\r\n", 230, "230 Login successful."),
    ("211-Features:\r\n MDTM\r\n MLST type*;size*;modify*;\r\n UTF8\r\n211 End\r\n", 211, "211 End"),
    ("522 SSL connection failed: session reuse required\r\n", 522, "522 SSL connection failed: session reuse required"),
    ("421 Too many connections (8) from this IP\r\n", 421, "421 Too many connections (8) from this IP"),
    ("213 20261124225412\r\n", 213, "213 20261124225412"),
    ("452 Insufficient storage\r\n", 452, "452 Insufficient storage"),
];

/// Pieces a hostile server might splice into a line.
const TOKENS: &[&str] = &[
    "/",
    "\0",
    "\r",
    "\n",
    "\r\n",
    "..",
    ".",
    " ",
    "  ",
    "\t",
    " -> ",
    "->",
    "../../etc/passwd",
    "/etc/passwd",
    "a/b",
    "0000000000000000000000000000000000000000",
    "9999999999999999999999999999999999999999",
    "18446744073709551615",
    "18446744073709551616",
    "4294967296",
    "-1",
    "+1",
    "0",
    "é",
    "文件",
    "🎉",
    "\u{FFFD}",
    "\u{202E}",
    "\u{2215}",
    "Feb",
    "29",
    "31",
    "60:60",
    "23:59",
    "24:00",
    "12:00PM",
    "13:00AM",
    "99:99PM",
    "<DIR>",
    "<dir>",
    ",",
    ";",
    "=",
    ":",
    "type=dir;",
    "type=cdir;",
    "type=OS.unix=slink:;",
    "size=",
    "modify=99999999999999.99999999999999999999",
    "modify=00000000000000",
    "unix.mode=7777777777777",
    "unix.mode=0o-1",
    "total",
    "total ",
    "213 ",
];

/// Names that must never come out of a parser as they are.
const HOSTILE_NAMES: &[&str] = &["", ".", "..", "../x", "/", "a/b", "x\0y", " ", "/..", "..\0", "\r", "./.", ". ."];

/// One random edit of `line`.
fn mutate_once(rng: &mut Rng, line: &mut Vec<u8>) {
    let len = line.len();
    match rng.below(10) {
        // Flip a bit or overwrite a byte.
        0 if len > 0 => {
            let i = rng.below(len);
            if rng.chance(2) { line[i] ^= 1 << rng.below(8) } else { line[i] = rng.next() as u8 }
        }
        1 => line.insert(rng.below(len + 1), rng.next() as u8),
        2 if len > 0 => {
            line.remove(rng.below(len));
        }
        3 if len > 0 => {
            let a = rng.below(len);
            let b = (a + 1 + rng.below(8)).min(len);
            line.drain(a..b);
        }
        4 | 5 => {
            let at = rng.below(len + 1);
            let t = rng.pick(TOKENS).as_bytes();
            line.splice(at..at, t.iter().copied());
        }
        // Replace one space-separated field with a token.
        6 => {
            let fields: Vec<(usize, usize)> = field_spans(line);
            if let Some(&(a, b)) = (!fields.is_empty()).then(|| rng.pick(&fields)) {
                let t = rng.pick(TOKENS).as_bytes();
                line.splice(a..b, t.iter().copied());
            }
        }
        // Replace everything after some space (the name, or more) with a hostile name.
        7 => {
            let spaces: Vec<usize> = line.iter().enumerate().filter(|(_, b)| **b == b' ').map(|(i, _)| i).collect();
            if !spaces.is_empty() {
                let at = *rng.pick(&spaces) + 1;
                line.truncate(at);
                line.extend_from_slice(rng.pick(HOSTILE_NAMES).as_bytes());
            }
        }
        8 if len > 0 => line.truncate(rng.below(len)),
        // Duplicate a chunk.
        _ if len > 0 => {
            let a = rng.below(len);
            let b = (a + 1 + rng.below(16)).min(len);
            let chunk = line[a..b].to_vec();
            let at = rng.below(len + 1);
            line.splice(at..at, chunk);
        }
        _ => line.push(rng.next() as u8),
    }
}

fn field_spans(line: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, &b) in line.iter().enumerate() {
        match (b == b' ', start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, line.len()));
    }
    spans
}

/// A corpus line with one to four random edits, as a `String` the way the session reads it.
fn mutated(rng: &mut Rng, sample: &str) -> String {
    let mut line = sample.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        mutate_once(rng, &mut line);
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// Sanity: the Unix and DOS corpus lines the mutations start from are valid and give the
/// expected names (so the fuzzing starts next to the accepting paths, not in the garbage).
#[test]
fn corpus_list_lines_parse() {
    for &(line, name) in UNIX_LIST.iter().chain(DOS_LIST) {
        for now in now_values() {
            let e = parse_list_line(line, now).unwrap_or_else(|e| panic!("{line:?}: {e:?}"));
            assert_eq!(e.name, name, "{line:?}");
            check_entry("parse_list_line", line, &Ok(e), 0, 0);
        }
    }
}

/// Sanity: the MLSD corpus lines parse (or are rightly ignored) with the expected names.
#[test]
fn corpus_mlsd_lines_parse() {
    for &(line, name) in MLSD {
        match (parse_mlsd_line(line), name) {
            (Ok(e), Some(name)) => {
                assert_eq!(e.name, name, "{line:?}");
                check_entry("parse_mlsd_line", line, &Ok(e), 0, 0);
            }
            (Err(Skip::Ignored), None) => {}
            (other, _) => panic!("{line:?}: {other:?}"),
        }
    }
}

/// Sanity: sample replies give their code and last-line text.
#[test]
fn corpus_replies_parse() {
    for &(raw, want_code, want_text) in REPLY_SAMPLES {
        let resp = Response::new(Status::Unknown, raw.as_bytes().to_vec());
        assert_eq!(code(&resp), want_code, "{raw:?}");
        assert_eq!(text(&resp), want_text, "{raw:?}");
        let err = map_reply("x", &resp);
        assert!(err.to_string().contains(want_text), "{raw:?} -> {err}");
    }
}

/// Sanity: the data address check accepts the control peer and NAT addresses, refuses others.
#[test]
fn corpus_data_addresses() {
    let peer: IpAddr = "203.0.113.7".parse().unwrap();
    for nat in ["10.1.2.3", "192.168.0.9", "172.16.5.5", "127.0.0.1", "0.0.0.0", "169.254.1.1", "100.64.0.1"] {
        assert_eq!(data_ip(nat.parse().unwrap(), peer), Ok(peer), "{nat}");
    }
    assert_eq!(data_ip(peer, peer), Ok(peer));
    for other in ["8.8.8.8", "203.0.113.8", "2001:4860:4860::8888", "::ffff:8.8.8.8"] {
        assert!(data_ip(other.parse().unwrap(), peer).is_err(), "{other}");
    }
}

/// Guards against servers sending arbitrary bytes as listing lines or MDTM replies: no panic,
/// no unsafe or made-up names.
#[test]
fn fuzz_random_bytes_as_listing_lines() {
    const SEED: u64 = 0x5eed_0001_f7a5_11e5;
    let mut rng = Rng::new(SEED);
    for i in bounded(RANDOM_LINES) {
        let bytes = rng.bytes(300);
        let line = String::from_utf8_lossy(&bytes);
        check_list_line(&line, SEED, i);
        check_mlsd_line(&line, SEED, i);
        guarded("parse_mdtm_reply", SEED, i, &line, || parse_mdtm_reply(&line));
    }
}

/// Guards against malformed Unix/DOS LIST lines (mangled fields, huge numbers, spliced `/`,
/// NUL, CR/LF, `..`, unicode): no panic, and never a name that leaves the directory.
#[test]
fn fuzz_mutated_list_lines() {
    const SEED: u64 = 0x5eed_0002_0115_7000;
    let mut rng = Rng::new(SEED);
    let corpus: Vec<&str> = UNIX_LIST.iter().chain(DOS_LIST).map(|(l, _)| *l).collect();
    for i in bounded(MUTATED_LIST_LINES) {
        let sample = *rng.pick(&corpus);
        let line = mutated(&mut rng, sample);
        check_list_line(&line, SEED, i);
        // A server that answers LIST where MLSD was expected (or the reverse) must be safe too.
        check_mlsd_line(&line, SEED, i);
    }
}

/// Guards against malformed MLSD lines (broken facts, bogus types, spliced separators, hostile
/// names): no panic, and never a name that leaves the directory.
#[test]
fn fuzz_mutated_mlsd_lines() {
    const SEED: u64 = 0x5eed_0003_0315_d000;
    let mut rng = Rng::new(SEED);
    let corpus: Vec<&str> = MLSD.iter().map(|(l, _)| *l).collect();
    for i in bounded(MUTATED_MLSD_LINES) {
        let sample = *rng.pick(&corpus);
        let line = mutated(&mut rng, sample);
        check_mlsd_line(&line, SEED, i);
        check_list_line(&line, SEED, i);
    }
}

/// Guards against malformed MDTM replies: no panic, and any time accepted is a real calendar
/// time that formats back to 14 digits and parses again to the same second.
#[test]
fn fuzz_mdtm_replies() {
    const SEED: u64 = 0x5eed_0004_0d70_0000;
    let mut rng = Rng::new(SEED);
    let samples = ["213 20261124225412", "20240229235959.999", "213 19700101000000.1", "00000101000000"];
    for i in bounded(MDTM_VALUES) {
        let sample = *rng.pick(&samples);
        let reply = mutated(&mut rng, sample);
        let Some(t) = guarded("parse_mdtm_reply", SEED, i, &reply, || parse_mdtm_reply(&reply)) else { continue };
        let formatted = guarded("format_ftp_time", SEED, i, &reply, || format_ftp_time(t));
        let again = parse_mdtm_reply(&formatted);
        let ok = formatted.len() == 14
            && formatted.bytes().all(|b| b.is_ascii_digit())
            && again.is_some_and(|a| t.duration_since(a).is_ok_and(|d| d < Duration::from_secs(1)));
        assert!(ok, "MDTM (seed {SEED:#x}, iteration {i}) {reply:?} -> {t:?} -> {formatted:?} -> {again:?}");
    }
}

const REPLY_WORDS: &[&str] = &[
    "denied",
    "Permission",
    "not allowed",
    "quota",
    "No space",
    "disk full",
    "TLS",
    "SSL",
    "encrypt",
    "is a directory",
    "Not a directory",
    "Failed to open file.",
    "writing to local file",
    "\r",
    "\n",
    "\r\n",
    "\0",
    "文件",
    "🎉",
    "   ",
];

/// A reply as a server might send it: random or real-looking code, single or multi-line, with
/// random or meaningful words; or simply random bytes.
fn random_reply(rng: &mut Rng) -> Vec<u8> {
    let code = |rng: &mut Rng| -> String {
        match rng.below(6) {
            0 => String::from_utf8_lossy(&rng.bytes(5)).into_owned(),
            1 => format!("{}", rng.below(100_000)),
            _ => format!("{:03}", rng.below(1000)),
        }
    };
    let words = |rng: &mut Rng| -> String {
        let mut s = String::new();
        for _ in 0..rng.below(6) {
            if rng.chance(3) {
                s.push_str(&String::from_utf8_lossy(&rng.bytes(12)));
            } else {
                s.push_str(rng.pick::<&str>(REPLY_WORDS));
            }
            s.push(' ');
        }
        s
    };
    match rng.below(4) {
        0 => rng.bytes(300),
        1 => format!("{} {}\r\n", code(rng), words(rng)).into_bytes(),
        _ => {
            let c = code(rng);
            let mut s = format!("{c}-{}\r\n", words(rng));
            for _ in 0..rng.below(5) {
                let prefix = if rng.chance(2) { format!("{c}-") } else { " ".to_string() };
                s.push_str(&format!("{prefix}{}\r\n", words(rng)));
            }
            s.push_str(&format!("{} {}", if rng.chance(4) { code(rng) } else { c }, words(rng)));
            if rng.chance(2) {
                s.push_str("\r\n");
            }
            s.into_bytes()
        }
    }
}

const STATUS_CODES: &[u32] =
    &[0, 110, 125, 150, 200, 213, 220, 226, 227, 229, 230, 331, 421, 425, 426, 450, 451, 500, 530, 550];

/// Guards against malformed replies (bad codes, binary garbage, odd multi-line forms): reading
/// the code and text and mapping them to an error never panics, the code is at most three
/// digits, the text is one line, and the error message quotes what was tried and what was said.
#[test]
fn fuzz_replies() {
    const SEED: u64 = 0x5eed_0005_4e91_1e50;
    let mut rng = Rng::new(SEED);
    for i in bounded(REPLIES) {
        let body = random_reply(&mut rng);
        let shown = String::from_utf8_lossy(&body).into_owned();
        let status = Status::from(*rng.pick(STATUS_CODES));
        let resp = Response::new(status, body.clone());
        let ctx = || format!("(seed {SEED:#x}, iteration {i}) reply {shown:?}");

        let c = guarded("reply::code", SEED, i, &shown, || code(&resp));
        assert!(c <= 999, "code {c} {}", ctx());
        if body.len() >= 3 && body[..3].iter().all(u8::is_ascii_digit) {
            let want: u16 = std::str::from_utf8(&body[..3]).unwrap().parse().unwrap();
            assert_eq!(c, want, "{}", ctx());
        }

        let t = guarded("reply::text", SEED, i, &shown, || text(&resp));
        assert!(!t.contains('\n'), "multi-line text {t:?} {}", ctx());
        assert!(t.len() <= shown.len() && shown.contains(t.as_str()), "text {t:?} not from the reply {}", ctx());
        assert_eq!(t, t.trim(), "{}", ctx());

        let what = "listing /d";
        let err = guarded("reply::map_reply", SEED, i, &shown, || map_reply(what, &resp));
        let msg = err.to_string();
        assert!(msg.starts_with(what) && msg.contains(t.as_str()), "message {msg:?} {}", ctx());
        let _ = (err.is_transient(), err.breaks_session());

        let mapped = guarded("reply::map", SEED, i, &shown, || map(what, FtpError::UnexpectedResponse(resp.clone())));
        assert_eq!(mapped.to_string(), msg, "{}", ctx());

        // The other error kinds carry server or system text too.
        let other = match rng.below(5) {
            0 => FtpError::ConnectionError(std::io::Error::new(std::io::ErrorKind::TimedOut, shown.clone())),
            1 => FtpError::ConnectionError(std::io::Error::other(shown.clone())),
            2 => FtpError::SecureError(shown.clone()),
            3 => FtpError::InvalidAddress(
                shown.parse::<IpAddr>().err().unwrap_or_else(|| "x".parse::<IpAddr>().unwrap_err()),
            ),
            _ => {
                if rng.chance(2) {
                    FtpError::BadResponse
                } else {
                    FtpError::DataConnectionAlreadyOpen
                }
            }
        };
        let err = guarded("reply::map", SEED, i, &shown, || map(what, other));
        assert!(err.to_string().starts_with(what), "{err} {}", ctx());
    }
}

fn random_ip(rng: &mut Rng) -> IpAddr {
    match rng.below(8) {
        0 => IpAddr::V4(Ipv4Addr::from(rng.next() as u32)),
        1 => IpAddr::V6(Ipv6Addr::from(((rng.next() as u128) << 64) | rng.next() as u128)),
        // Private and special ranges, as servers behind NAT announce them.
        2 => IpAddr::V4(Ipv4Addr::new(*rng.pick(&[10, 127, 172, 192, 169, 100, 0]), rng.next() as u8, 0, 1)),
        3 => IpAddr::V6(Ipv6Addr::new(*rng.pick(&[0xfc00, 0xfd12, 0xfe80, 0xfebf, 0, 0x2001]), 0, 0, 0, 0, 0, 0, 1)),
        4 => IpAddr::V6(Ipv4Addr::from(rng.next() as u32).to_ipv6_mapped()),
        5 => IpAddr::V4(Ipv4Addr::new(8, rng.next() as u8, rng.next() as u8, rng.next() as u8)),
        6 => IpAddr::V6(Ipv6Addr::new(0x2a00 | (rng.next() as u16 & 0xf), rng.next() as u16, 0, 0, 0, 0, 0, 1)),
        _ => IpAddr::V4(Ipv4Addr::new(203, 0, 113, rng.next() as u8)),
    }
}

/// Guards against FTP bounce: whatever address a PASV/EPSV reply announces, the data
/// connection goes to the control peer or nowhere; a public third host is always refused.
#[test]
fn fuzz_data_addresses() {
    const SEED: u64 = 0x5eed_0006_da7a_0000;
    let mut rng = Rng::new(SEED);
    for i in bounded(DATA_ADDRESSES) {
        let peer = random_ip(&mut rng);
        let announced = if rng.chance(4) { peer } else { random_ip(&mut rng) };
        let ctx = || format!("(seed {SEED:#x}, iteration {i}) announced {announced}, peer {peer}");
        let got = guarded("data_ip", SEED, i, &ctx(), || data_ip(announced, peer));
        match &got {
            Ok(ip) => assert_eq!(*ip, peer, "data connection to a third host {}", ctx()),
            Err(msg) => assert!(msg.contains(&announced.to_string()), "{msg:?} {}", ctx()),
        }
        if announced == peer {
            assert_eq!(got, Ok(peer), "{}", ctx());
        }
        // Global unicast ranges no NAT uses: a different such host is always refused.
        let public = match announced {
            IpAddr::V4(v4) => v4.octets()[0] == 8,
            IpAddr::V6(v6) => (v6.segments()[0] & 0xfff0) == 0x2a00 || v6.to_ipv4_mapped().is_some(),
        };
        if public && announced != peer {
            assert!(got.is_err(), "{}", ctx());
        }
    }
}

/// Guards against a listed name carrying a bare CR (suppaftp splits listings at LF, so CR is
/// the one that survives): opening such a file would send `RETR a<CR>DELE x` to the server.
/// Found by `fuzz_mutated_list_lines`; such names are now skipped like '/' and NUL.
#[test]
fn listed_names_never_carry_cr_or_lf() {
    let now = now_values()[0];
    for line in ["-rw-r--r-- 1 u g 5 Oct 10  2010 a\rDELE x", "01-02-24  03:04PM  <DIR>  a\rb"] {
        if let Ok(e) = parse_list_line(line, now) {
            assert!(!e.name.contains(['\r', '\n']), "{line:?} -> {:?}", e.name);
        }
    }
    if let Ok(e) = parse_mlsd_line("type=file;size=3; a\rDELE x") {
        assert!(!e.name.contains(['\r', '\n']), "{:?}", e.name);
    }
}
