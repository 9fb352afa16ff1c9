//! Commands sent without waiting (the vendored suppaftp's `send_commands`/`read_response`),
//! against small fake servers that take them well or badly.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

use super::*;

/// A server that greets, then reads command lines and answers each with `answer` (its
/// reply lines, possibly none); a NOOP gets `200` unless `answer` says otherwise.
fn server(answer: impl Fn(&str) -> Vec<String> + Send + 'static) -> (FtpSession, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (socket, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(socket);
        reader.get_mut().write_all(b"220 hi\r\n").unwrap();
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            for reply in answer(line.trim_end()) {
                if reader.get_mut().write_all(format!("{reply}\r\n").as_bytes()).is_err() {
                    return;
                }
            }
            line.clear();
        }
    });
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let ftp = Ftp::connect_with_stream(tcp).unwrap();
    let c = Connection { ftp, security: Security::Plain, tls: None, data_note: DataNote::default() };
    (FtpSession::new(c), handle)
}

fn paths(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("/d/f{i}")).collect()
}

/// `MDTM /d/fN` answered with a time N seconds after 2020-01-01, `/d/gone` with 550.
fn honest(line: &str) -> Vec<String> {
    match line.strip_prefix("MDTM /d/f") {
        Some(n) => vec![format!("213 202001010000{:02}", n.parse::<u32>().unwrap() % 60)],
        None if line == "NOOP" => vec!["200 NOOP ok.".into()],
        None => vec!["550 Could not get file modification time.".into()],
    }
}

fn stamp(secs: u64) -> Option<SystemTime> {
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_577_836_800 + secs))
}

#[test]
fn replies_in_order_give_every_time() {
    let (mut s, _h) = server(honest);
    let mut asked = paths(3);
    asked.insert(1, "/d/gone".into());
    match s.mdtm_pipelined(&asked, Some(Duration::from_secs(5))).unwrap() {
        Pipelined::Done(times) => assert_eq!(times, vec![stamp(0), None, stamp(1), stamp(2)]),
        other => panic!("{other:?}"),
    }
    // The session is in step afterwards.
    assert_eq!(s.noop(), Health::Alive);
}

#[test]
fn a_server_that_drops_commands_is_a_surprise_not_a_long_wait() {
    // Answers the first MDTM of what arrives together, and nothing else.
    let (mut s, _h) = server({
        let answered = AtomicBool::new(false);
        move |line| if answered.swap(true, Ordering::Relaxed) { vec![] } else { honest(line) }
    });
    let start = std::time::Instant::now();
    match s.mdtm_pipelined(&paths(5), Some(Duration::from_millis(300))).unwrap() {
        Pipelined::Surprise(why) => assert!(why.contains("no reply to command 2 of 6"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn replies_out_of_place_are_a_surprise() {
    // One MDTM is answered twice: the NOOP's reply is not where it belongs.
    let (mut s, _h) = server(|line| {
        let mut r = honest(line);
        if line == "MDTM /d/f1" {
            r.push("213 20200101000001".into());
        }
        r
    });
    match s.mdtm_pipelined(&paths(3), None).unwrap() {
        Pipelined::Surprise(why) => assert!(why.contains("NOOP"), "{why}"),
        other => panic!("{other:?}"),
    }
    // A reply that no MDTM gives.
    let (mut s, _h) = server(|line| if line == "MDTM /d/f0" { vec!["200 What?".into()] } else { honest(line) });
    assert!(matches!(s.mdtm_pipelined(&paths(2), None).unwrap(), Pipelined::Surprise(_)));
}

#[test]
fn a_syntax_error_only_when_pipelined_is_a_surprise() {
    // A server that garbles commands that arrive together, but answers one alone.
    let (mut s, _h) = server({
        let seen = std::sync::atomic::AtomicUsize::new(0);
        move |line| {
            let n = seen.fetch_add(1, Ordering::Relaxed);
            if n == 1 { vec!["500 Unknown command.".into()] } else { honest(line) }
        }
    });
    match s.mdtm_pipelined(&paths(3), None).unwrap() {
        Pipelined::Surprise(why) => assert!(why.contains("/d/f1"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_refusal_of_one_file_is_an_error_after_the_batch() {
    let (mut s, _h) = server(|line| if line == "MDTM /d/f1" { vec!["450 Busy.".into()] } else { honest(line) });
    let err = s.mdtm_pipelined(&paths(3), None).unwrap_err();
    assert!(err.to_string().contains("/d/f1"), "{err}");
    assert_eq!(s.noop(), Health::Alive, "every reply was read");
}

#[test]
fn a_mixed_batch_gives_each_reply_or_a_surprise() {
    let rename = |line: &str| match line.split(' ').next() {
        Some("SITE") => vec!["200 SITE CHMOD command ok.".to_string()],
        Some("MDTM") => vec!["550 Could not set file modification time.".to_string()],
        Some("RNFR") => vec!["350 Ready for RNTO.".to_string()],
        Some("RNTO") => vec!["250 Rename successful.".to_string()],
        _ => vec!["200 NOOP ok.".to_string()],
    };
    let batch: Vec<(String, &[Status])> = vec![
        ("SITE CHMOD 644 /d/.t".into(), &[Status::CommandOk]),
        ("MDTM 20200101000000 /d/.t".into(), &[Status::File]),
        ("RNFR /d/.t".into(), &[Status::RequestFilePending]),
        ("RNTO /d/t".into(), &[Status::RequestedFileActionOk]),
    ];
    let (mut s, _h) = server(rename);
    match s.pipeline(&batch, Some(Duration::from_secs(5))).unwrap() {
        Pipelined::Done(r) => {
            assert!(r[0].is_ok() && r[2].is_ok() && r[3].is_ok());
            assert_eq!(r[1].as_ref().unwrap_err().0, 550);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.noop(), Health::Alive);
    // A positive reply that does not belong to its command: out of step.
    let (mut s, _h) = server(move |line| if line.starts_with("RNFR") { vec!["200 Hm.".into()] } else { rename(line) });
    assert!(matches!(s.pipeline(&batch, None).unwrap(), Pipelined::Surprise(w) if w.contains("RNFR")));
}

#[test]
fn pipelined_commands_go_out_in_one_write() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        socket.write_all(b"220 hi\r\n").unwrap();
        // Everything arrives before any reply was sent.
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.ends_with(b"NOOP\r\n") {
            let n = socket.read(&mut buf).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8(got).unwrap();
        let replies: String = text.lines().map(|l| format!("{}\r\n", honest(l)[0])).collect();
        socket.write_all(replies.as_bytes()).unwrap();
        text
    });
    let tcp = TcpStream::connect(addr).unwrap();
    let ftp = Ftp::connect_with_stream(tcp).unwrap();
    let c = Connection { ftp, security: Security::Plain, tls: None, data_note: DataNote::default() };
    let mut s = FtpSession::new(c);
    assert!(matches!(s.mdtm_pipelined(&paths(4), None).unwrap(), Pipelined::Done(t) if t.len() == 4));
    assert_eq!(h.join().unwrap(), "MDTM /d/f0\r\nMDTM /d/f1\r\nMDTM /d/f2\r\nMDTM /d/f3\r\nNOOP\r\n");
}
