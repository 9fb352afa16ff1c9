use super::*;

fn at(y: i32, mo: u8, d: u8, h: u8, mi: u8, s: u8) -> SystemTime {
    utc(Date::from_calendar_date(y, Month::try_from(mo).unwrap(), d).unwrap(), Time::from_hms(h, mi, s).unwrap())
}

fn now() -> SystemTime {
    at(2026, 11, 25, 12, 0, 0)
}

fn list(line: &str) -> ListEntry {
    parse_list_line(line, now()).unwrap_or_else(|e| panic!("{line:?}: {e:?}"))
}

#[test]
fn vsftpd_lines() {
    let e = list("-rw-r--r--    1 1001     1001            0 Nov 24 22:54 empty file.txt");
    assert_eq!((e.name.as_str(), e.kind.clone(), e.size, e.mode), ("empty file.txt", EntryKind::File, 0, Some(0o644)));
    assert_eq!(e.mtime, Some(ListedTime { time: at(2026, 11, 24, 22, 54, 0), precision: TimePrecision::Minute }));
    let d = list("drwxr-xr-x    3 0        0            4096 Jan 05  2023 Old Dir");
    assert_eq!((d.name.as_str(), d.kind), ("Old Dir", EntryKind::Dir));
    assert_eq!(d.mtime, Some(ListedTime { time: at(2023, 1, 5, 0, 0, 0), precision: TimePrecision::Day }));
}

#[test]
fn recent_dates_without_year_take_the_right_year() {
    // December is "last year" when it is November now.
    let e = list("-rw-r--r-- 1 u g 5 Dec 31 23:59 x");
    assert_eq!(e.mtime.unwrap().time, at(2025, 12, 31, 23, 59, 0));
    // Tomorrow (clock skew) stays this year.
    let e = list("-rw-r--r-- 1 u g 5 Nov 26 01:00 x");
    assert_eq!(e.mtime.unwrap().time, at(2026, 11, 26, 1, 0, 0));
}

#[test]
fn names_keep_their_spaces_and_unicode() {
    assert_eq!(list("-rw-r--r-- 1 u g 1 Jan 1 2020  leading space").name, " leading space");
    assert_eq!(list("-rw-r--r-- 1 u g 1 Jan 1 2020 a  b   c ").name, "a  b   c ");
    assert_eq!(list("-rw-r--r-- 1 u g 1 Jan 1 2020 Ünïcödé 文件.txt").name, "Ünïcödé 文件.txt");
    assert_eq!(list("-rw-r--r-- 1 u g 1 Jan 1 2020 #1 100%.txt").name, "#1 100%.txt");
    assert_eq!(list("-rw-r--r-- 1 u g 1 Jan 1 2020 🎉").name, "🎉");
}

#[test]
fn symlinks_split_at_the_first_arrow() {
    let e = list("lrwxrwxrwx 1 0 0 11 Mar 03 12:34 link name -> target -> odd");
    assert_eq!(e.name, "link name");
    assert_eq!(e.kind, EntryKind::Symlink { target: Some("target -> odd".into()) });
}

#[test]
fn devices_sockets_and_pipes_are_other() {
    let e = list("crw-rw-rw- 1 0 0 1, 3 Jan 1 2020 null");
    assert_eq!((e.name.as_str(), e.kind, e.size), ("null", EntryKind::Other, 0));
    assert_eq!(list("srwxr-xr-x 1 0 0 0 Jan 1 2020 sock").kind, EntryKind::Other);
    assert_eq!(list("prw-r--r-- 1 0 0 0 Jan 1 2020 fifo").kind, EntryKind::Other);
}

#[test]
fn owner_group_variants_and_acl_markers() {
    assert_eq!(list("-rw-r--r-- 1 owner 1234 Jan 1 2020 nogroup").size, 1234);
    assert_eq!(list("-rw-r--r--+ 1 u g 7 Jan 1 2020 acl").size, 7);
    assert_eq!(list("-rw-r--r--@ 1 u g 7 Jan 1 2020 xattr").name, "xattr");
    assert_eq!(list("-rw-r--r-- 1 ftp ftp 18446744073709551615 Jan 1 2020 huge").size, u64::MAX);
    // ProFTPD, Pure-FTPd.
    assert_eq!(list("-rw-r--r--   1 ftp      ftp          1024 Mar  3 10:20 proftpd.txt").size, 1024);
    assert_eq!(list("-rw-r--r--    1 1000       1000             42 Mar  3 10:20 pure.txt").size, 42);
    // An owner that looks like a month is not the date.
    assert_eq!(list("-rw-r--r-- 1 may jun 9 Jul 4 2021 months").mtime.unwrap().time, at(2021, 7, 4, 0, 0, 0));
}

#[test]
fn special_mode_bits() {
    assert_eq!(list("-rwsr-sr-t 1 u g 1 Jan 1 2020 x").mode, Some(0o7755));
    assert_eq!(list("-rwSr-Sr-T 1 u g 1 Jan 1 2020 x").mode, Some(0o7644));
    assert_eq!(list("drwx------ 1 u g 1 Jan 1 2020 x").mode, Some(0o700));
}

#[test]
fn ignored_and_unparsable_lines() {
    assert_eq!(parse_list_line("total 12", now()), Err(Skip::Ignored));
    assert_eq!(parse_list_line("drwxr-xr-x 2 u g 4096 Jan 1 2020 .", now()), Err(Skip::Ignored));
    assert_eq!(parse_list_line("drwxr-xr-x 2 u g 4096 Jan 1 2020 ..", now()), Err(Skip::Ignored));
    for bad in [
        "",
        "     ",
        "garbage",
        "-rw-r--r-- 1 u g notasize Jan 1 2020 x",
        "-rw-r--r-- 1 u g 5 Foo 1 2020 x",
        "-rw-r--r-- 1 u g 5 Jan 99 2020 x",
        "-rw-r--r-- 1 u g 5 Jan 1 2020",
        "-rw-r--r-- 1 u g 5 Jan 1 25:99 x",
        "xrw-r--r-- 1 u g 5 Jan 1 2020 x",
        "-rw-r--r-- 1 u g 5 Jan 1 2020 a/b",
        "12-31-99 foo",
    ] {
        assert!(matches!(parse_list_line(bad, now()), Err(Skip::Unparsable(_))), "{bad:?}");
    }
}

#[test]
fn dos_and_iis_lines() {
    let d = list("03-05-24  01:23PM       <DIR>          My Folder");
    assert_eq!((d.name.as_str(), d.kind, d.size), ("My Folder", EntryKind::Dir, 0));
    assert_eq!(d.mtime.unwrap().time, at(2024, 3, 5, 13, 23, 0));
    let f = list("11-28-2021  09:15AM              1234 file name.txt");
    assert_eq!((f.name.as_str(), f.size), ("file name.txt", 1234));
    assert_eq!(f.mtime.unwrap().time, at(2021, 11, 28, 9, 15, 0));
    assert_eq!(list("03-05-1998  13:23  1,234,567 big.bin").size, 1_234_567);
    assert_eq!(list("12-01-99  12:00AM  5 y2k").mtime.unwrap().time, at(1999, 12, 1, 0, 0, 0));
    assert_eq!(list("2024-03-05  07:08  10 iso.txt").mtime.unwrap().time, at(2024, 3, 5, 7, 8, 0));
    assert!(matches!(parse_list_line("13-45-24  01:23PM  5 x", now()), Err(Skip::Unparsable(_))));
    assert!(matches!(parse_list_line("03-05-24  13:23PM  5 x", now()), Err(Skip::Unparsable(_))));
}

#[test]
fn mlsd_lines() {
    let e = parse_mlsd_line(
        "type=file;size=1024;modify=20261124225412;unix.mode=0644;unix.uid=0;unix.gid=0;unique=801g2a; name with spaces.txt",
    )
    .unwrap();
    assert_eq!((e.name.as_str(), e.kind, e.size, e.mode), ("name with spaces.txt", EntryKind::File, 1024, Some(0o644)));
    assert_eq!(e.mtime, Some(ListedTime { time: at(2026, 11, 24, 22, 54, 12), precision: TimePrecision::Second }));
    let d = parse_mlsd_line("Type=dir;Modify=20200101000000.123;Perm=el; a;b=c d").unwrap();
    assert_eq!((d.name.as_str(), d.kind), ("a;b=c d", EntryKind::Dir));
    assert_eq!(d.mtime.unwrap().time, at(2020, 1, 1, 0, 0, 0) + Duration::from_millis(123));
    let l = parse_mlsd_line("type=OS.unix=slink:/etc/target;size=11; link").unwrap();
    assert_eq!(l.kind, EntryKind::Symlink { target: Some("/etc/target".into()) });
    assert_eq!(parse_mlsd_line("type=cdir;modify=20200101000000; /home").unwrap_err(), Skip::Ignored);
    assert_eq!(parse_mlsd_line("type=pdir; ..").unwrap_err(), Skip::Ignored);
    assert_eq!(parse_mlsd_line("type=OS.unix=chr-1/3; null").unwrap().kind, EntryKind::Other);
    let bad_time = parse_mlsd_line("type=file;size=3;modify=2026xx; f").unwrap();
    assert_eq!((bad_time.size, bad_time.mtime), (3, None));
    for bad in ["nofacts", "type=file;size=1;", "size=1; noType", "type=file; ../x", "type=file; a/b", ""] {
        assert!(matches!(parse_mlsd_line(bad), Err(Skip::Unparsable(_))), "{bad:?}");
    }
}

#[test]
fn mdtm_and_formatting_round_trip() {
    let t = at(2026, 11, 24, 22, 54, 12);
    assert_eq!(parse_mdtm_reply("213 20261124225412"), Some(t));
    assert_eq!(parse_mdtm_reply("20261124225412.5"), Some(t + Duration::from_millis(500)));
    assert_eq!(parse_mdtm_reply("550 Could not get file modification time."), None);
    assert_eq!(format_ftp_time(t), "20261124225412");
    assert_eq!(parse_mdtm_reply(&format_ftp_time(at(1999, 1, 2, 3, 4, 5))), Some(at(1999, 1, 2, 3, 4, 5)));
}

#[test]
fn avbl_replies_give_bytes_or_nothing() {
    assert_eq!(parse_avbl_reply("213 1073741824"), Some(1 << 30));
    assert_eq!(parse_avbl_reply("213 0"), Some(0), "a full disk is an answer");
    assert_eq!(parse_avbl_reply("213 52428800 bytes available"), Some(50 << 20));
    assert_eq!(parse_avbl_reply("213-1234"), Some(1234), "the last line of a multi-line reply");
    assert_eq!(parse_avbl_reply("  213 99  "), Some(99));
    assert_eq!(parse_avbl_reply("500 Unknown command."), None);
    assert_eq!(parse_avbl_reply("502 Command not implemented."), None);
    assert_eq!(parse_avbl_reply("550 Could not determine the space."), None);
    assert_eq!(parse_avbl_reply("213 12.5 GB"), None, "units and fractions are not guessed at");
    assert_eq!(parse_avbl_reply("213 12 GB"), None);
    assert_eq!(parse_avbl_reply("213 unlimited"), None);
    assert_eq!(parse_avbl_reply("213"), None);
    assert_eq!(parse_avbl_reply("2131234"), None);
    assert_eq!(parse_avbl_reply("213 99999999999999999999999"), None, "beyond u64");
}

#[test]
fn garbage_never_panics() {
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let alphabet: Vec<char> =
        "-drwxlsSt0123456789 :;=.,<>/\tJanFebDecPMAMtype=filesizemodifyé文🎉\r\n".chars().collect();
    for _ in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 90) as usize;
        let line: String =
            (0..len).map(|i| alphabet[((seed >> (i % 50)) as usize + i * 31) % alphabet.len()]).collect();
        let _ = parse_list_line(&line, now());
        let _ = parse_mlsd_line(&line);
        let _ = parse_mdtm_reply(&line);
        let _ = parse_avbl_reply(&line);
    }
    let long = "x".repeat(1 << 20);
    assert!(parse_list_line(&long, now()).is_err());
    assert!(parse_mlsd_line(&long).is_err());
}
