//! Faults on the way to a real server, through a real mount: connections dropped while idle
//! and in the middle of a read, and a server that stops answering. Bytes are checked.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn connections_dropped_while_idle_are_replaced_without_an_error() {
    let certs = Certs::new();
    let root = TempDir::new("root");
    for d in ["a", "b"] {
        fs::create_dir(root.path().join(d)).unwrap();
        fs::write(root.path().join(d).join("f.txt"), format!("in {d}")).unwrap();
    }
    let server = tls_vsftpd(&certs, root, "");
    let mount = Mount::of(&server, Some(&certs), &[]);
    assert_eq!(fs::read_to_string(mount.path().join("a/f.txt")).unwrap(), "in a");
    assert!(server.kill_sessions() > 0, "sessions were open");
    // Not cached yet: needs the server, over sessions that are gone.
    assert_eq!(fs::read_dir(mount.path().join("b")).unwrap().count(), 1);
    assert_eq!(fs::read_to_string(mount.path().join("b/f.txt")).unwrap(), "in b");
    fs::write(mount.path().join("b/new.txt"), b"written after").unwrap();
    assert_eq!(fs::read(server.root().join("b/new.txt")).unwrap(), b"written after");
}

#[test]
fn a_read_cut_by_dropped_connections_resumes_at_the_right_offset() {
    let certs = Certs::new();
    let root = TempDir::new("root");
    let data = pseudo_random(24 << 20, 77);
    fs::write(root.path().join("big.bin"), &data).unwrap();
    let server = tls_vsftpd(&certs, root, "");
    let mount = Mount::of(&server, Some(&certs), &[]);
    let f = fs::File::open(mount.path().join("big.bin")).unwrap();
    let mut got = vec![0u8; data.len()];
    let half = data.len() / 2;
    f.read_exact_at(&mut got[..half], 0).unwrap();
    // Every session (and the transfer under way) dies, as when a server restarts.
    assert!(server.kill_sessions() > 0);
    f.read_exact_at(&mut got[half..], half as u64).unwrap();
    assert!(got == data, "every byte as on the server");
    assert!(mount.log().contains("starting it again"), "{}", mount.log());
}

#[test]
fn a_server_that_stops_answering_fails_operations_and_cached_ones_still_answer() {
    let certs = Certs::new();
    let root = TempDir::new("root");
    for d in ["seen", "unseen"] {
        fs::create_dir(root.path().join(d)).unwrap();
        fs::write(root.path().join(d).join("f.txt"), d).unwrap();
    }
    let server = tls_vsftpd(&certs, root, "");
    let mount = Mount::of(&server, Some(&certs), &["--io-timeout", "2s", "--connect-timeout", "2s"]);
    let m = mount.path();
    assert_eq!(fs::read_dir(m.join("seen")).unwrap().count(), 1);
    server.freeze();
    let started = Instant::now();
    let err = fs::read_dir(m.join("unseen")).and_then(|d| d.collect::<Result<Vec<_>, _>>()).unwrap_err();
    // Bounded by the timeouts (a few attempts of 2 s each), never a hang.
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    // What the cache holds is still served meanwhile.
    let names: Vec<_> = fs::read_dir(m.join("seen")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["f.txt"]);
    server.thaw();
    // Once it answers again, so does the mount.
    assert_eq!(fs::read_to_string(m.join("unseen/f.txt")).unwrap(), "unseen");
}

#[test]
fn sigterm_during_an_upload_lets_it_finish_and_exits_cleanly() {
    let certs = Certs::new();
    // 200 kB/s per session: the upload below takes a few seconds.
    let server = tls_vsftpd(&certs, TempDir::new("root"), "local_max_rate=200000\n");
    let mount = Mount::of(&server, Some(&certs), &[]);
    let data = pseudo_random(800_000, 5);
    let target = mount.path().join("upload.bin");
    let writer = {
        let (target, data) = (target.clone(), data.clone());
        std::thread::spawn(move || fs::write(target, data))
    };
    std::thread::sleep(Duration::from_millis(700));
    // Sent from here, not by a `kill` process: a fork while a thread writes into the mount
    // may wait for that write.
    signal_pid(mount.pid(), libc::SIGTERM);
    // The application's upload is not cut short: its close still reports success...
    writer.join().unwrap().expect("the write in progress completes");
    // ...the daemon says it ended well, and the server has every byte.
    let (status, log) = mount.unmount_with_log();
    assert!(status.success(), "exit status {status}; the mount's log:\n{log}");
    assert!(fs::read(server.root().join("upload.bin")).unwrap() == data);
}

#[test]
fn a_burst_of_421_refusals_lowers_the_session_limit_the_work_completes_and_the_limit_recovers() {
    let root = TempDir::new("root");
    let files: Vec<Vec<u8>> = (0..8).map(|i| pseudo_random(1 << 20, 500 + i)).collect();
    for (i, data) in files.iter().enumerate() {
        fs::write(root.path().join(format!("f{i}.bin")), data).unwrap();
    }
    let flags = TempDir::new("flags");
    let refuse = flags.path().join("refuse");
    let server = PyFtpd::start(root, None, &["--refuse-while", refuse.to_str().unwrap()]);
    let mount = Mount::of(&server, None, &["--max-connections", "6"]);
    let m = mount.path().to_path_buf();
    let read_all_in_parallel = || {
        let readers: Vec<_> = (0..files.len())
            .map(|i| {
                let path = m.join(format!("f{i}.bin"));
                std::thread::spawn(move || fs::read(path).unwrap())
            })
            .collect();
        for (i, r) in readers.into_iter().enumerate() {
            assert!(r.join().unwrap() == files[i], "f{i}.bin read back exactly");
        }
    };

    // The server suddenly allows one session: the mount keeps working on what it has.
    fs::write(&refuse, b"").unwrap();
    read_all_in_parallel();
    assert!(server.log().contains("Too many connections"), "the server refused sessions: {}", server.log());
    let lowered = status_json(&m)["sessions"]["limit"].as_u64().unwrap();
    assert!(lowered < 6, "limit lowered, is {lowered}");
    assert!(mount.log().contains("lowering the session limit"), "{}", mount.log());

    // Once refusals stop, the limit climbs again (one step per quiet period of 20 s).
    fs::remove_file(&refuse).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut limit = lowered;
    while limit <= lowered {
        assert!(Instant::now() < deadline, "limit still {limit} long after the refusals ended");
        std::thread::sleep(Duration::from_secs(2));
        // Demand for sessions is what lets the pool notice that it may grow.
        read_all_in_parallel();
        limit = status_json(&m)["sessions"]["limit"].as_u64().unwrap();
    }
    assert!(mount.log().contains("session limit raised"), "{}", mount.log());
}

#[test]
fn a_very_slow_server_is_waited_for_and_does_not_hold_up_other_work() {
    let root = TempDir::new("root");
    let slow = pseudo_random(2_000_000, 61);
    fs::write(root.path().join("slow.bin"), &slow).unwrap();
    fs::write(root.path().join("small.txt"), b"small").unwrap();
    // 150 kB/s per session, and an --io-timeout far shorter than the transfers below (13 s and
    // 10 s): slow is not dead, as long as bytes keep coming.
    let server = Vsftpd::start(root, VsftpdOptions { extra: "local_max_rate=150000\n", ..Default::default() });
    let mount = Mount::of(&server, None, &["--io-timeout", "5s"]);
    let m = mount.path().to_path_buf();
    let reader = {
        let path = m.join("slow.bin");
        std::thread::spawn(move || fs::read(path).unwrap())
    };
    let upload = pseudo_random(1_500_000, 62);
    let mut f = fs::File::create(m.join("up.bin")).unwrap();
    f.write_all(&upload).unwrap();
    f.sync_all().unwrap_or_else(|e| panic!("the upload completes: {e}\n{}", mount.log()));
    drop(f);
    // The other sessions keep serving while the slow read goes on.
    assert_eq!(fs::read(m.join("small.txt")).unwrap(), b"small");
    assert!(!reader.is_finished(), "the read of slow.bin still runs");
    assert!(reader.join().unwrap() == slow, "every byte of slow.bin");
    assert!(fs::read(server.root().join("up.bin")).unwrap() == upload, "the upload is complete on the server");
}

#[test]
fn sigkill_mid_upload_leaves_nothing_half_written_under_a_real_name() {
    let root = TempDir::new("root");
    let old = pseudo_random(300_000, 70);
    fs::write(root.path().join("old.bin"), &old).unwrap();
    // 200 kB/s per session: the uploads below are cut a second in.
    let server = Vsftpd::start(root, VsftpdOptions { extra: "local_max_rate=200000\n", ..Default::default() });
    let mut mount = Mount::of(&server, None, &[]);
    let writers: Vec<_> = ["new.bin", "old.bin"]
        .into_iter()
        .map(|name| {
            let path = mount.path().join(name);
            std::thread::spawn(move || fs::write(path, pseudo_random(2_000_000, 71)))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1000));
    mount.kill_daemon(); // SIGKILL, then fusermount3 -u must clear the mountpoint
    for w in writers {
        // Cut either in a write or at close (which fs::write does not report).
        let _ = w.join().unwrap();
    }
    let names = tree_listing(server.root());
    assert!(!names.iter().any(|n| n == "new.bin"), "no partial new.bin under its real name: {names:?}");
    assert!(fs::read(server.root().join("old.bin")).unwrap() == old, "old.bin keeps its old content");
    let partial: Vec<_> = names.iter().filter(|n| n.starts_with('.') && n.ends_with(".part")).collect();
    assert!(!partial.is_empty(), "what was sent waits under hidden temporary names: {names:?}");
}

#[test]
fn a_listing_cut_off_by_a_server_restart_is_asked_again_and_shown_whole() {
    let root = TempDir::new("root");
    fs::create_dir(root.path().join("big")).unwrap();
    let mut want: Vec<String> = (0..1000).map(|i| format!("file-{i:04}.txt")).collect();
    for name in &want {
        fs::write(root.path().join("big").join(name), name).unwrap();
    }
    let server = PyFtpd::start(root, None, &["--cut-listing-once", "big"]);
    let mount = Mount::start(&server.url(), &["--tls", "off"]).unwrap_or_else(|f| panic!("{f:?}"));
    let mut names: Vec<String> = fs::read_dir(mount.path().join("big"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    want.sort();
    assert!(server.log().contains("cut the listing"), "the server did cut it: {}", server.log());
    assert!(names == want, "all 1000 names and nothing from the cut listing ({} shown)", names.len());
    assert_eq!(fs::read_to_string(mount.path().join("big/file-0999.txt")).unwrap(), "file-0999.txt");
}

#[test]
fn a_read_across_a_three_second_server_restart_returns_the_exact_bytes() {
    let certs = Certs::new();
    let root = TempDir::new("root");
    let data = pseudo_random(40 << 20, 303);
    fs::write(root.path().join("big.bin"), &data).unwrap();
    let mut server = tls_vsftpd(&certs, root, "local_max_rate=8000000\n");
    let mount = Mount::of(&server, Some(&certs), &["--io-timeout", "10s"]);
    // Another process reads: while a thread of this one waits in the mount, starting the
    // server again (a fork) was seen to wait too, for 20 s.
    let reader = {
        let path = mount.path().join("big.bin");
        std::thread::spawn(move || std::process::Command::new("cat").arg(path).output().unwrap())
    };
    // About a second into the read, the server goes away for three seconds.
    std::thread::sleep(Duration::from_millis(1200));
    let down = Instant::now();
    server.stop();
    std::thread::sleep(Duration::from_secs(3));
    server.restart();
    let outage = down.elapsed();
    assert!(outage < Duration::from_secs(8), "the server was down for {outage:?}, not about 3 s");
    let out = reader.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the read rides out the restart: {err}\n{}", mount.log());
    let got = out.stdout;
    assert!(got == data, "every byte as on the server ({} of {} bytes read)", got.len(), data.len());
    assert!(mount.log().contains("reconnecting for up to"), "{}", mount.log());
}

#[test]
fn a_server_disk_that_fills_up_is_reported_as_no_space_and_leaves_no_partial_file() {
    let certs = Certs::new();
    let root = TempDir::new("root");
    let server = tls_vsftpd(&certs, root, "");
    // Mounted after the server took the tree, so the FTP user can write it (mode 0777).
    let _disk = SmallDisk::mount(&server.root().join("small"), 2 << 20);
    let mount = Mount::of(&server, Some(&certs), &["--io-timeout", "10s"]);
    let local = TempDir::new("local");
    let big = local.path().join("big.bin");
    fs::write(&big, pseudo_random(16 << 20, 9)).unwrap();
    for how in ["streamed", "from the spool"] {
        let target = mount.path().join("small").join(format!("{}.bin", how.replace(' ', "_")));
        let out = match how {
            "streamed" => std::process::Command::new("cp").arg(&big).arg(&target).output().unwrap(),
            // Written out of order: the content goes to the spool and is uploaded at close.
            _ => std::process::Command::new("python3")
                .arg("-c")
                .arg(
                    "import sys\ndata = open(sys.argv[1], 'rb').read()\nf = open(sys.argv[2], 'wb')\n\
                     f.seek(1 << 20); f.write(data[1 << 20:]); f.seek(0); f.write(data[:1 << 20])\n\
                     try:\n    f.close()\nexcept OSError as e:\n    sys.exit(str(e))",
                )
                .arg(&big)
                .arg(&target)
                .output()
                .unwrap(),
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{how}: the copy must fail");
        assert!(stderr.contains("No space left on device"), "{how}: {stderr}\n{}", mount.log());
        let left: Vec<_> = fs::read_dir(server.root().join("small")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(
            left.is_empty(),
            "{how}: nothing half-written stays on the server: {left:?}\n{}\n{}",
            mount.log(),
            server.log()
        );
    }
}
