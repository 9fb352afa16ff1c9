//! Listings cut short: what a final reply says, how two ends of the name order join, and the
//! whole recovery against a small server that cuts listings as Pure-FTPd does.

use super::*;
use crate::remote::ftp::reply::cut_notice;
use crate::remote::ftp::test_server;
use crate::remote::{Listed, Remote};

fn file(name: &str) -> ListEntry {
    ListEntry { name: name.into(), kind: EntryKind::File, size: 1, mtime: None, mode: None }
}

fn files(names: &[&str]) -> Vec<ListEntry> {
    names.iter().map(|n| file(n)).collect()
}

fn names(entries: &[ListEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.name.as_str()).collect()
}

fn bytes(name: &str) -> Option<Vec<u8>> {
    Some(name.as_bytes().to_vec())
}

#[test]
fn pure_ftpd_final_replies_say_when_a_listing_was_cut() {
    // As Pure-FTPd 1.0.50 sends them (multi-line, with its options line first).
    let cut = "226-Options: -a -l \n226 Output truncated to 10000 matches";
    assert_eq!(cut_notice(cut).as_deref(), Some("Output truncated to 10000 matches"));
    assert_eq!(cut_notice("226 Output truncated to 2000 matches").as_deref(), Some("Output truncated to 2000 matches"));
    assert_eq!(cut_notice("226-Options: -a -l \n226 3002 matches total"), None);
    assert_eq!(cut_notice("226 Transfer complete"), None);
    assert_eq!(cut_notice("250 Closing data connection. Directory send OK."), None);
    // A glob that failed lists nothing, and says so before a harmless last line: not a cut.
    let glob = "226-Out of memory during globbing of f0*\n226-(This probably means \"Permission denied\")\n226 0 matches total";
    assert_eq!(cut_notice(glob), None);
}

#[test]
fn other_wordings_of_a_cut_are_seen_in_any_line() {
    assert!(cut_notice("226-Listing TRUNCATED at 5000 entries\n226 Transfer complete").is_some());
    assert!(cut_notice("226 Too many files, listing stopped").is_some());
    assert!(cut_notice("226 Listing limited to 1000 entries").is_some());
    assert_eq!(cut_notice("226 Too many people know this"), None, "no count of entries named");
    assert_eq!(cut_notice("226 Limited edition"), None);
}

#[test]
fn two_ends_that_meet_are_the_whole_directory_in_name_order() {
    let first = files(&["a", "b", "c", "d"]);
    let last = files(&["g", "f", "e", "d", "c"]);
    let (all, whole) = join_windows(first, last, bytes);
    assert!(whole);
    assert_eq!(names(&all), ["a", "b", "c", "d", "e", "f", "g"]);
}

#[test]
fn two_ends_with_a_gap_are_not_the_whole_directory() {
    // "d".."m" may hold names neither end reached.
    let (all, whole) = join_windows(files(&["a", "b", "c"]), files(&["z", "y", "n"]), bytes);
    assert!(!whole);
    assert_eq!(names(&all), ["a", "b", "c", "n", "y", "z"], "what was had is kept");
}

#[test]
fn ends_that_are_not_in_name_order_prove_nothing() {
    // A server that ignores -r sends the same first names again: they "meet" everywhere.
    let (_, whole) = join_windows(files(&["a", "b", "c"]), files(&["a", "b", "c"]), bytes);
    assert!(!whole);
    // A first end out of order (a server that does not sort) proves nothing either.
    let (_, whole) = join_windows(files(&["b", "a", "c"]), files(&["d", "c", "b"]), bytes);
    assert!(!whole);
    // A name the charset cannot give bytes for: its place in the order is unknown.
    let (_, whole) = join_windows(files(&["a", "b"]), files(&["c", "b"]), |n| (n != "c").then(|| bytes(n)).flatten());
    assert!(!whole);
}

#[test]
fn name_order_is_byte_order_as_the_server_sorts() {
    // strcmp: "Z" < "a" < "é" (0xC3…), unlike a case-folding or locale order.
    let first = files(&["Z", "a", "b"]);
    let last = files(&["é", "b"]);
    let (all, whole) = join_windows(first, last, bytes);
    assert!(whole);
    assert_eq!(names(&all), ["Z", "a", "b", "é"]);
}

#[test]
fn mlsd_facts_win_and_list_adds_names_and_link_targets() {
    let mut link = file("l");
    link.kind = EntryKind::Symlink { target: None };
    let mlsd = vec![file("a"), link.clone()];
    let mut listed_link = file("l");
    listed_link.kind = EntryKind::Symlink { target: Some("a".into()) };
    let mut listed_a = file("a");
    listed_a.size = 999;
    let (mlsd, rest) = merge_mlsd(mlsd, vec![listed_a, listed_link, file("b")]);
    assert_eq!(mlsd[0].size, 1, "MLSD's facts kept");
    assert_eq!(mlsd[1].kind, EntryKind::Symlink { target: Some("a".into()) });
    assert_eq!(names(&rest), ["b"]);
}

#[test]
fn each_directory_is_told_once_per_outcome_and_status_names_them() {
    let mut cuts = CutDirs::default();
    assert!(cuts.describe().is_none());
    assert!(cuts.record("/big", "Output truncated to 10000 matches", false, 20000));
    assert!(!cuts.record("/big", "Output truncated to 10000 matches", false, 20001), "told already");
    assert!(cuts.record("/mid", "Output truncated to 10000 matches", true, 15000));
    let text = cuts.describe().unwrap();
    assert!(text.contains("\"Output truncated to 10000 matches\""), "{text}");
    assert!(text.contains("LIST -ar): /mid"), "{text}");
    assert!(text.contains("INCOMPLETE: /big (20001 shown)"), "{text}");
    assert!(text.contains("-L"), "{text}");
    assert!(cuts.record("/big", "Output truncated to 10000 matches", true, 19000), "a new outcome is told");
}

/// A server that cuts listings as Pure-FTPd does (see `cut_server`).
mod server {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    use crate::remote::ftp::test_server::Script;

    /// What the server holds and how it lists.
    #[derive(Clone)]
    pub struct Cutting {
        /// File names in the served directory.
        pub names: Vec<String>,
        /// Entries per listing, `.` and `..` included (Pure-FTPd's `-L`).
        pub limit: usize,
        pub mlsd: bool,
        /// Whether `LIST -r` reverses the order (else it is ignored).
        pub honours_r: bool,
    }

    impl Script for Cutting {
        fn feat(&self) -> String {
            if self.mlsd {
                "211-Extensions:\r\n MLST type*;size*;\r\n MLSD\r\n211 End."
            } else {
                "211-Extensions:\r\n SIZE\r\n211 End."
            }
            .to_string()
        }

        fn answer(
            &self,
            verb: &str,
            arg: &str,
            control: &mut TcpStream,
            pasv: &mut Option<TcpListener>,
        ) -> Option<Option<String>> {
            Some(Some(match verb {
                "LIST" | "MLSD" => {
                    let lines = if verb == "MLSD" { self.mlsd_lines() } else { self.list_lines(arg) };
                    self.send(control, pasv.take(), lines)
                }
                "MLST" => self.mlst(arg),
                _ => return None,
            }))
        }
    }

    impl Cutting {
        /// Writes `lines` (cut at the limit) on the data connection; the final reply.
        fn send(&self, out: &mut TcpStream, pasv: Option<TcpListener>, lines: Vec<String>) -> String {
            let Some(l) = pasv else { return "425 no PASV".into() };
            out.write_all(b"150 Accepted data connection\r\n").unwrap();
            let (mut data, _) = l.accept().unwrap();
            let cut = lines.len() > self.limit;
            for l in lines.iter().take(self.limit) {
                data.write_all(format!("{l}\r\n").as_bytes()).unwrap();
            }
            drop(data);
            let n = lines.len().min(self.limit);
            if cut {
                format!("226-Options: -a -l\r\n226 Output truncated to {n} matches")
            } else {
                format!("226-Options: -a -l\r\n226 {n} matches total")
            }
        }

        /// `.`, `..` and the names in strcmp order (reversed with `-r`).
        fn list_lines(&self, arg: &str) -> Vec<String> {
            let mut names: Vec<String> = self.names.clone();
            names.extend([".".to_string(), "..".to_string()]);
            names.sort();
            if self.honours_r && arg.starts_with('-') && arg.contains('r') {
                names.reverse();
            }
            let kind = |n: &str| if n.starts_with('.') { 'd' } else { '-' };
            names.iter().map(|n| format!("{}rw-r--r--    1 1001  1001   3 Jan 01  2020 {n}", kind(n))).collect()
        }

        /// In "readdir" order: neither name order (every third name first).
        fn mlsd_lines(&self) -> Vec<String> {
            let mut order: Vec<&String> = self.names.iter().step_by(3).collect();
            order.extend(self.names.iter().enumerate().filter(|(i, _)| i % 3 != 0).map(|(_, n)| n));
            let mut lines = vec!["type=cdir; .".to_string(), "type=pdir; ..".to_string()];
            lines.extend(order.iter().map(|n| format!("type=file;size=3;modify=20200101000000; {n}")));
            lines
        }

        fn mlst(&self, arg: &str) -> String {
            let name = arg.rsplit('/').next().unwrap_or(arg);
            if !self.mlsd {
                "502 no MLST".into()
            } else if self.names.iter().any(|n| n == name) {
                format!("250-Begin\r\n type=file;size=3;modify=20200101000000; {arg}\r\n250 End.")
            } else {
                "550 Can't check for file existence".into()
            }
        }
    }
}

fn remote(server: server::Cutting) -> FtpRemote {
    test_server::remote(test_server::start(server), 2, None)
}

fn many(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("f{i:05}")).collect()
}

fn sorted_names(listed: &Listed) -> Vec<String> {
    let mut n: Vec<String> = listed.entries.iter().map(|e| e.name.clone()).collect();
    n.sort();
    n
}

#[test]
fn a_listing_cut_short_is_completed_from_both_ends_of_the_name_order() {
    for mlsd in [false, true] {
        let r = remote(server::Cutting { names: many(25), limit: 15, mlsd, honours_r: true });
        let listed = r.list_detailed("", false).unwrap();
        assert!(listed.complete, "mlsd={mlsd}");
        assert_eq!(sorted_names(&listed), many(25), "mlsd={mlsd}");
        let status = r.cuts.lock().describe().unwrap();
        assert!(status.contains("LIST -ar): /"), "{status}");
    }
}

#[test]
fn a_directory_beyond_twice_the_limit_is_marked_incomplete_with_what_was_had() {
    for mlsd in [false, true] {
        let r = remote(server::Cutting { names: many(40), limit: 12, mlsd, honours_r: true });
        let listed = r.list_detailed("", true).unwrap();
        assert!(!listed.complete, "mlsd={mlsd}");
        let shown = sorted_names(&listed);
        // Each end: the limit less `.` and `..` at the start; MLSD adds what readdir gave first.
        assert!(shown.len() >= 10 + 12, "mlsd={mlsd}: {shown:?}");
        assert!(shown.iter().all(|n| many(40).contains(n)), "no made-up names");
        assert_eq!(shown.len(), shown.iter().collect::<std::collections::HashSet<_>>().len(), "no name twice");
        let again: Vec<String> = r.list("").unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(again.len(), shown.len(), "list gives the same");
        // A name neither end reached is found by asking for it; a missing one is not.
        let gap = many(40).into_iter().find(|n| !shown.contains(n)).unwrap();
        if mlsd {
            assert_eq!(r.lookup(&gap).unwrap().map(|e| e.size), Some(3));
            assert_eq!(r.lookup("nope").unwrap(), None);
        } else {
            assert!(matches!(r.lookup(&gap), Err(RemoteError::Unsupported(_))), "unknown, not absent");
        }
    }
}

#[test]
fn a_server_that_ignores_reverse_order_leaves_the_listing_incomplete() {
    let r = remote(server::Cutting { names: many(15), limit: 10, mlsd: false, honours_r: false });
    let listed = r.list_detailed("", false).unwrap();
    assert!(!listed.complete);
    assert_eq!(listed.entries.len(), 8);
}

#[test]
fn a_listing_not_cut_costs_one_command_and_is_complete() {
    let r = remote(server::Cutting { names: many(9), limit: 11, mlsd: true, honours_r: true });
    let listed = r.list_detailed("", false).unwrap();
    assert!(listed.complete);
    assert_eq!(sorted_names(&listed), many(9));
    assert!(r.cuts.lock().describe().is_none());
}
