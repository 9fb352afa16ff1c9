//! Exact times asked while a big listing is still arriving, against a small server that holds
//! the end of its `LIST` back until an `MDTM` has reached it on another session.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::remote::Remote;
use crate::remote::ftp::UtcOffset;
use crate::remote::ftp::test_server;

/// Files `f00000`…, listed without seconds (`Mon DD HH:MM`), with `MDTM` giving them.
#[derive(Clone)]
struct HoldingServer {
    files: usize,
    /// When the files were changed; `MDTM` adds the seconds `LIST` leaves out.
    changed: SystemTime,
    /// How long a `LIST` waits halfway for an `MDTM`.
    hold: Duration,
    mdtm_seen: Arc<AtomicUsize>,
    /// Drop the connection of an `MDTM` that comes while a `LIST` is being sent.
    cut_mdtm_during_list: bool,
    listing: Arc<std::sync::atomic::AtomicBool>,
    /// For each `LIST`: whether an `MDTM` arrived between its first and its last line.
    overlapped: Arc<parking_lot::Mutex<Vec<bool>>>,
}

impl test_server::Script for HoldingServer {
    fn feat(&self) -> String {
        "211-Extensions:\r\n MDTM\r\n SIZE\r\n211 End.".to_string()
    }

    fn answer(
        &self,
        verb: &str,
        arg: &str,
        control: &mut TcpStream,
        pasv: &mut Option<TcpListener>,
    ) -> Option<Option<String>> {
        Some(match verb {
            "LIST" => Some(self.list(control, pasv.take())),
            "MDTM" => {
                self.mdtm_seen.fetch_add(1, Ordering::SeqCst);
                if self.cut_mdtm_during_list && self.listing.load(Ordering::SeqCst) {
                    return Some(None);
                }
                Some(match arg.trim_start_matches('/').strip_prefix('f') {
                    Some(_) => format!("213 {}", listing::format_ftp_time(self.changed)),
                    None => "550 no such file".to_string(),
                })
            }
            _ => return None,
        })
    }
}

impl HoldingServer {
    /// Sends the first half of the lines, waits (at most `hold`) for an `MDTM` on another
    /// session, then the rest.
    fn list(&self, out: &mut TcpStream, pasv: Option<TcpListener>) -> String {
        let Some(l) = pasv else { return "425 no PASV".into() };
        out.write_all(b"150 Here it comes\r\n").unwrap();
        let (mut data, _) = l.accept().unwrap();
        self.listing.store(true, Ordering::SeqCst);
        let dt = time::OffsetDateTime::from(self.changed);
        let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        let when = format!("{} {:02} {:02}:{:02}", month[dt.month() as usize - 1], dt.day(), dt.hour(), dt.minute());
        let line = |i: usize| format!("-rw-r--r--    1 1001  1001   3 {when} f{i:05}\r\n");
        let (half, before) = (self.files / 2, self.mdtm_seen.load(Ordering::SeqCst));
        for i in 0..half {
            data.write_all(line(i).as_bytes()).unwrap();
        }
        let waited = Instant::now();
        while self.mdtm_seen.load(Ordering::SeqCst) == before && waited.elapsed() < self.hold {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.overlapped.lock().push(self.mdtm_seen.load(Ordering::SeqCst) > before);
        for i in half..self.files {
            data.write_all(line(i).as_bytes()).unwrap();
        }
        drop(data);
        self.listing.store(false, Ordering::SeqCst);
        "226 Transfer complete".into()
    }
}

fn remote(server: HoldingServer, sessions: usize) -> FtpRemote {
    test_server::remote(test_server::start(server), sessions, Some(UtcOffset::UTC))
}

fn holding(files: usize, hold: Duration) -> HoldingServer {
    // A few days ago (LIST shows hours and minutes), at 17 seconds past the minute.
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let changed = SystemTime::UNIX_EPOCH + Duration::from_secs((now - 3 * 86_400) / 60 * 60 + 17);
    HoldingServer {
        files,
        changed,
        hold,
        mdtm_seen: Default::default(),
        cut_mdtm_during_list: false,
        listing: Default::default(),
        overlapped: Default::default(),
    }
}

/// As if an earlier listing had shown that the server takes pipelined commands.
fn pipelining_known(r: &FtpRemote) {
    let features = r.pool.connector().features.get().expect("connected");
    features.pipelining.store(Pipelining::Works as u8, Ordering::Relaxed);
}

#[test]
fn a_big_listing_gets_its_times_asked_while_it_still_arrives() {
    let server = holding(1000, Duration::from_secs(10));
    let (overlapped, changed) = (server.overlapped.clone(), server.changed);
    let r = remote(server, 4);
    // The first listing of a mount: its first batch is also the probe for pipelining.
    let listed = r.list("").unwrap();
    assert_eq!(listed.len(), 1000);
    assert!(listed.iter().all(|e| e.mtime == Some(changed)), "every time exact, to the second");
    assert_eq!(*overlapped.lock(), [true], "MDTMs began before the listing's end");
    let features = r.pool.connector().features.get().cloned().unwrap();
    assert_eq!(Pipelining::from_u8(features.pipelining.load(Ordering::Relaxed)), Pipelining::Works);
}

#[test]
fn a_listing_without_exact_times_asks_none_while_it_arrives() {
    let server = holding(1000, Duration::from_millis(300));
    let (overlapped, seen) = (server.overlapped.clone(), server.mdtm_seen.clone());
    let r = remote(server, 4);
    pipelining_known(&r);
    let (quick, exact) = r.list_quick("").unwrap();
    assert_eq!(quick.len(), 1000);
    assert!(!exact);
    assert_eq!(seen.load(Ordering::SeqCst), 0, "list_quick asks for no times");
    assert_eq!(*overlapped.lock(), [false]);
}

#[test]
fn times_that_fail_while_the_listing_arrives_are_asked_after_it() {
    let mut server = holding(1000, Duration::from_secs(10));
    server.cut_mdtm_during_list = true;
    let (overlapped, changed) = (server.overlapped.clone(), server.changed);
    let r = remote(server, 4);
    pipelining_known(&r);
    let listed = r.list("").unwrap();
    assert_eq!(listed.len(), 1000);
    assert!(listed.iter().all(|e| e.mtime == Some(changed)), "every time exact, to the second");
    assert_eq!(*overlapped.lock(), [true], "MDTMs were tried before the listing's end");
}

#[test]
fn times_known_by_place_are_found_only_for_the_same_name() {
    let known = KnownTimes::new();
    let t = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_017));
    known.put(2, [("c", t), ("d", None)].into_iter());
    assert_eq!(known.get(2, "c"), Some(t));
    assert_eq!(known.get(3, "d"), Some(None), "asked: the server had no time");
    assert_eq!(known.get(3, "c"), None, "another file in that place (a listing read in another order)");
    assert_eq!(known.get(0, "a"), None, "not asked");
    assert_eq!(known.get(9, "z"), None);
}

#[test]
fn a_batch_keeps_names_byte_for_byte() {
    let mut batch = Batch::default();
    for name in ["a b", "odd\r", " lead", "é"] {
        batch.push(name);
    }
    assert_eq!(batch.count, 4);
    assert_eq!(batch.names().collect::<Vec<_>>(), ["a b", "odd\r", " lead", "é"]);
}
