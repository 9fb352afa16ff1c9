//! Parsers for FTP directory listings: MLSD facts (RFC 3659), Unix `ls -l` style LIST and
//! DOS/IIS LIST, plus MDTM replies. Pure functions; every line either becomes a correct entry
//! or is reported as skipped, never as a made-up entry.
//!
//! All times are UTC: MLSD and MDTM are UTC by definition, and LIST carries no zone.

use std::time::{Duration, SystemTime};

use time::{Date, Month, PrimitiveDateTime, Time};

use crate::names::Charset;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink {
        target: Option<String>,
    },
    /// Devices, sockets, pipes, unknown MLSD types.
    Other,
}

/// How precise a listed time is: LIST shows minutes for recent files and only the day for
/// older ones; MLSD `modify` has seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimePrecision {
    Day,
    Minute,
    Second,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTime {
    pub time: SystemTime,
    pub precision: TimePrecision,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub name: String,
    pub kind: EntryKind,
    pub size: u64,
    pub mtime: Option<ListedTime>,
    /// Permission bits (0o7777) when the listing shows them.
    pub mode: Option<u32>,
}

/// Why a line is not an entry. `Ignored` lines are normal (`total 12`, `.`, `..`, MLSD
/// `cdir`/`pdir`); `Unparsable` ones are worth a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    Ignored,
    Unparsable(String),
}

fn unparsable(why: &str) -> Skip {
    Skip::Unparsable(why.to_string())
}

/// Names that could walk out of the directory or break paths are never accepted.
/// The lines of a listing, without their line ends, empty ones dropped, decoded from
/// `charset` without loss (see [`crate::names`]). Fails with `InvalidData` past `max_total`
/// bytes or a line longer than `max_line`, instead of holding whatever a server sends.
pub fn read_lines(
    r: &mut impl std::io::BufRead,
    charset: Charset,
    max_total: usize,
    max_line: usize,
) -> std::io::Result<Vec<String>> {
    use std::io::{Error, ErrorKind};
    let mut lines = Vec::new();
    let mut line: Vec<u8> = Vec::new();
    let mut total = 0usize;
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            break;
        }
        let (chunk, end_of_line) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        total += chunk.len() + usize::from(end_of_line);
        if line.len() + chunk.len() > max_line {
            return Err(Error::new(ErrorKind::InvalidData, format!("a listing line is longer than {max_line} bytes")));
        }
        if total > max_total {
            return Err(Error::new(ErrorKind::InvalidData, format!("the listing is larger than {max_total} bytes")));
        }
        line.extend_from_slice(chunk);
        let used = chunk.len() + usize::from(end_of_line);
        r.consume(used);
        if end_of_line {
            push_line(&mut lines, &mut line, charset);
        }
    }
    push_line(&mut lines, &mut line, charset);
    Ok(lines)
}

fn push_line(lines: &mut Vec<String>, line: &mut Vec<u8>, charset: Charset) {
    let bytes = line.strip_suffix(b"\r").unwrap_or(line);
    if !bytes.is_empty() {
        lines.push(charset.decode(bytes));
    }
    line.clear();
}

fn check_name(name: &str) -> Result<(), Skip> {
    if name.is_empty() {
        return Err(unparsable("empty name"));
    }
    if name == "." || name == ".." {
        return Err(Skip::Ignored);
    }
    // A name with CR or LF could never be sent back in a command (and a server that ends
    // commands at a bare CR would run what follows): skipped like '/' and NUL.
    if name.contains(['/', '\0', '\r', '\n']) {
        return Err(unparsable("unsafe name (contains '/', NUL, CR or LF)"));
    }
    Ok(())
}

fn utc(date: Date, time: Time) -> SystemTime {
    let secs = PrimitiveDateTime::new(date, time).assume_utc().unix_timestamp();
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// `YYYYMMDDHHMMSS[.fff]` → UTC time.
fn parse_timeval(v: &str) -> Option<SystemTime> {
    let (main, frac) = v.split_once('.').unwrap_or((v, ""));
    if main.len() != 14 || !main.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| main[r].parse::<u32>().ok();
    let date = Date::from_calendar_date(n(0..4)? as i32, Month::try_from(n(4..6)? as u8).ok()?, n(6..8)? as u8).ok()?;
    let time = Time::from_hms(n(8..10)? as u8, n(10..12)? as u8, n(12..14)? as u8).ok()?;
    let nanos = if frac.is_empty() { 0 } else { format!("{frac:0<9}")[..9].parse::<u64>().ok()? };
    Some(utc(date, time) + Duration::from_nanos(nanos))
}

/// Parses one MLSD line: `fact=value;fact=value; name`. A malformed `modify` only drops the
/// time; a line without facts is unparsable.
pub fn parse_mlsd_line(line: &str) -> Result<ListEntry, Skip> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (facts, name) = line.split_once(' ').ok_or_else(|| unparsable("no space between facts and name"))?;
    if !facts.contains('=') {
        return Err(unparsable("no facts"));
    }
    let (mut kind, mut size, mut mtime, mut mode) = (None, None, None, None);
    for fact in facts.split(';').filter(|f| !f.is_empty()) {
        let (key, value) = fact.split_once('=').ok_or_else(|| unparsable("fact without '='"))?;
        match key.to_ascii_lowercase().as_str() {
            "type" => kind = Some(mlsd_type(value)?),
            "size" | "sizd" => size = value.parse::<u64>().ok(),
            "modify" => mtime = parse_timeval(value).map(|time| ListedTime { time, precision: TimePrecision::Second }),
            "unix.mode" => mode = u32::from_str_radix(value.trim_start_matches("0o"), 8).ok().map(|m| m & 0o7777),
            _ => {}
        }
    }
    check_name(name)?;
    let kind = kind.ok_or_else(|| unparsable("no type fact"))?;
    Ok(ListEntry { name: name.to_string(), kind, size: size.unwrap_or(0), mtime, mode })
}

fn mlsd_type(value: &str) -> Result<EntryKind, Skip> {
    let lower = value.to_ascii_lowercase();
    Ok(match lower.as_str() {
        "file" => EntryKind::File,
        "dir" => EntryKind::Dir,
        "cdir" | "pdir" => return Err(Skip::Ignored),
        _ if lower.starts_with("os.unix=slink") || lower.starts_with("os.unix=symlink") => {
            let target = value.split_once(':').map(|(_, t)| t.to_string()).filter(|t| !t.is_empty());
            EntryKind::Symlink { target }
        }
        _ => EntryKind::Other,
    })
}

/// Parses one LIST line, Unix or DOS/IIS style (detected per line). `now` places Unix dates
/// without a year: the year that puts the date no later than a day ahead of `now`.
pub fn parse_list_line(line: &str, now: SystemTime) -> Result<ListEntry, Skip> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Err(unparsable("empty line"));
    }
    let lower = line.to_ascii_lowercase();
    if lower.starts_with("total ") && line.split_whitespace().count() == 2 {
        return Err(Skip::Ignored);
    }
    let first = line.as_bytes()[0];
    if first.is_ascii_digit() { parse_dos_line(line) } else { parse_unix_line(line, now) }
}

/// Splits off the first whitespace-separated token.
fn token(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches(' ');
    if s.is_empty() {
        return None;
    }
    let end = s.find(' ').unwrap_or(s.len());
    Some((&s[..end], &s[end..]))
}

fn unix_mode(perms: &str) -> Option<(EntryKind, u32)> {
    let b = perms.as_bytes();
    if b.len() < 10 {
        return None;
    }
    let kind = match b[0] {
        b'-' => EntryKind::File,
        b'd' => EntryKind::Dir,
        b'l' => EntryKind::Symlink { target: None },
        b'c' | b'b' | b'p' | b's' | b'D' => EntryKind::Other,
        _ => return None,
    };
    let mut mode = 0u32;
    for (i, &c) in b[1..10].iter().enumerate() {
        let bit = 1 << (8 - i);
        let special = match i {
            2 => 0o4000,
            5 => 0o2000,
            8 => 0o1000,
            _ => 0,
        };
        match c {
            b'-' => {}
            b'r' | b'w' | b'x' => mode |= bit,
            b's' | b't' => mode |= bit | special,
            b'S' | b'T' => mode |= special,
            _ => return None,
        }
    }
    // Only an ACL or extended-attribute marker may follow the ten characters.
    if b.len() > 11 || (b.len() == 11 && !matches!(b[10], b'+' | b'@' | b'.')) {
        return None;
    }
    Some((kind, mode))
}

fn month(s: &str) -> Option<Month> {
    const NAMES: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    let i = NAMES.iter().position(|m| m.eq_ignore_ascii_case(s))?;
    Month::try_from(i as u8 + 1).ok()
}

fn parse_unix_line(line: &str, now: SystemTime) -> Result<ListEntry, Skip> {
    let (perms, rest) = token(line).ok_or_else(|| unparsable("empty"))?;
    let (kind, mode) = unix_mode(perms).ok_or_else(|| unparsable("not a Unix permission string"))?;
    // Tokens up to the month name: links, owner, [group], size (or "major, minor" for devices).
    let mut fields = Vec::new();
    let mut rest = rest;
    let mon = loop {
        let (t, r) = token(rest).ok_or_else(|| unparsable("no date"))?;
        rest = r;
        // The month follows the size (a number) and precedes the day: an owner or group
        // that happens to be a month name is not the date.
        let after_size =
            fields.len() >= 2 && fields.last().is_some_and(|f: &&str| f.bytes().all(|b| b.is_ascii_digit()));
        let before_day = token(r).is_some_and(|(d, _)| d.parse::<u8>().is_ok_and(|d| (1..=31).contains(&d)));
        if let (Some(m), true) = (month(t), after_size && before_day) {
            break m;
        }
        fields.push(t);
        if fields.len() > 6 {
            return Err(unparsable("no month name where the date should be"));
        }
    };
    let size = if matches!(kind, EntryKind::Other) {
        0
    } else {
        fields.last().and_then(|s| s.parse::<u64>().ok()).ok_or_else(|| unparsable("bad size"))?
    };
    let (day, r) = token(rest).ok_or_else(|| unparsable("no day"))?;
    let (year_or_time, r) = token(r).ok_or_else(|| unparsable("no year or time"))?;
    let name = r.strip_prefix(' ').ok_or_else(|| unparsable("no name"))?;
    let day: u8 = day.parse().map_err(|_| unparsable("bad day"))?;
    let mtime = unix_time(mon, day, year_or_time, now).ok_or_else(|| unparsable("bad date"))?;
    let (name, kind) = match kind {
        EntryKind::Symlink { .. } => match name.split_once(" -> ") {
            Some((n, t)) => (n, EntryKind::Symlink { target: Some(t.to_string()) }),
            None => (name, EntryKind::Symlink { target: None }),
        },
        k => (name, k),
    };
    check_name(name)?;
    Ok(ListEntry { name: name.to_string(), kind, size, mtime: Some(mtime), mode: Some(mode) })
}

fn unix_time(mon: Month, day: u8, year_or_time: &str, now: SystemTime) -> Option<ListedTime> {
    if let Some((h, m)) = year_or_time.split_once(':') {
        let time = Time::from_hms(h.parse().ok()?, m.parse().ok()?, 0).ok()?;
        let now_dt = time::OffsetDateTime::from(now);
        // The most recent year that does not put the date more than a day into the future.
        for year in [now_dt.year(), now_dt.year() - 1] {
            if let Ok(date) = Date::from_calendar_date(year, mon, day) {
                let t = utc(date, time);
                if t <= now + Duration::from_secs(86_400) {
                    return Some(ListedTime { time: t, precision: TimePrecision::Minute });
                }
            }
        }
        return None;
    }
    let year: i32 = year_or_time.parse().ok()?;
    let date = Date::from_calendar_date(year, mon, day).ok()?;
    Some(ListedTime { time: utc(date, Time::MIDNIGHT), precision: TimePrecision::Day })
}

/// `03-05-24  01:23PM  <DIR>  name`, `11-28-2021  13:15  1,234 name`, `2024-03-05 01:23 …`.
fn parse_dos_line(line: &str) -> Result<ListEntry, Skip> {
    let (date, rest) = token(line).ok_or_else(|| unparsable("empty"))?;
    let (clock, rest) = token(rest).ok_or_else(|| unparsable("no time"))?;
    let (size_or_dir, rest) = token(rest).ok_or_else(|| unparsable("no size"))?;
    let name = rest.trim_start_matches(' ');
    let date = dos_date(date).ok_or_else(|| unparsable("bad DOS date"))?;
    let time = dos_clock(clock).ok_or_else(|| unparsable("bad DOS time"))?;
    let (kind, size) = if size_or_dir.eq_ignore_ascii_case("<DIR>") {
        (EntryKind::Dir, 0)
    } else {
        let digits: String = size_or_dir.chars().filter(|&c| c != ',' && c != '.').collect();
        (EntryKind::File, digits.parse::<u64>().map_err(|_| unparsable("bad size"))?)
    };
    check_name(name)?;
    let mtime = ListedTime { time: utc(date, time), precision: TimePrecision::Minute };
    Ok(ListEntry { name: name.to_string(), kind, size, mtime: Some(mtime), mode: None })
}

fn dos_date(s: &str) -> Option<Date> {
    let parts: Vec<&str> = s.split(['-', '/', '.']).collect();
    let [a, b, c] = parts.as_slice() else { return None };
    let (y, m, d) = if a.len() == 4 { (*a, *b, *c) } else { (*c, *a, *b) };
    let mut year: i32 = y.parse().ok()?;
    if y.len() == 2 {
        year += if year >= 70 { 1900 } else { 2000 };
    }
    Date::from_calendar_date(year, Month::try_from(m.parse::<u8>().ok()?).ok()?, d.parse().ok()?).ok()
}

fn dos_clock(s: &str) -> Option<Time> {
    let upper = s.to_ascii_uppercase();
    let (clock, pm) = match (upper.strip_suffix("PM"), upper.strip_suffix("AM")) {
        (Some(c), _) => (c.to_string(), Some(true)),
        (_, Some(c)) => (c.to_string(), Some(false)),
        _ => (upper.clone(), None),
    };
    let (h, m) = clock.split_once(':')?;
    let (mut h, m): (u8, u8) = (h.parse().ok()?, m.get(..2)?.parse().ok()?);
    match pm {
        Some(true) if h < 12 => h += 12,
        Some(false) if h == 12 => h = 0,
        Some(_) if h > 12 => return None,
        _ => {}
    }
    Time::from_hms(h, m, 0).ok()
}

/// Parses an MDTM reply (`213 20261124225412`) or its value; UTC.
pub fn parse_mdtm_reply(reply: &str) -> Option<SystemTime> {
    let v = reply.trim();
    let v = v.strip_prefix("213").map(str::trim_start).unwrap_or(v);
    parse_timeval(v)
}

/// The bytes an `AVBL` reply says are available: `213 123456789`
/// (draft-peterson-streamlined-ftp-command-extensions; Serv-U). Anything else is no answer:
/// a number with a unit, a fraction or words around it is not trusted.
pub fn parse_avbl_reply(reply: &str) -> Option<u64> {
    let v = reply.trim();
    let v = v.strip_prefix("213")?;
    let v = v.strip_prefix([' ', '-'])?.trim();
    let digits = v.split_whitespace().next()?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Free text after the number is allowed ("213 1234 bytes free"), a unit is not.
    let rest = v[digits.len()..].trim_start().to_ascii_lowercase();
    if !(rest.is_empty() || rest.starts_with("byte")) {
        return None;
    }
    digits.parse().ok()
}

/// `YYYYMMDDHHMMSS` (UTC), for `MFMT` and `MDTM time path`.
pub fn format_ftp_time(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        dt.year(),
        dt.month() as u8,
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

#[cfg(test)]
mod read_lines_tests {
    use super::read_lines;
    use crate::names::Charset;

    #[test]
    fn lines_are_split_trimmed_and_decoded() {
        let mut input: &[u8] = b"a\r\n\r\nb c\n\xffd\ne";
        let lines = read_lines(&mut input, Charset::Utf8, 1000, 100).unwrap();
        assert_eq!(lines, ["a", "b c", "\u{efff}d", "e"], "an undecodable byte is kept, escaped");
        let mut input: &[u8] = b"caf\xe9\r\n";
        assert_eq!(read_lines(&mut input, Charset::Latin1, 1000, 100).unwrap(), ["café"]);
    }

    #[test]
    fn a_server_cannot_make_a_listing_grow_without_bound() {
        // An endless line, and endless lines: both end with an error, having held little.
        let mut endless = std::io::Read::take(std::io::repeat(b'x'), u64::MAX);
        let mut r = std::io::BufReader::new(&mut endless);
        let err = read_lines(&mut r, Charset::Utf8, 1 << 20, 4096).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        let mut many = std::io::Read::take(std::io::repeat(b'\n'), u64::MAX);
        let mut r = std::io::BufReader::new(&mut many);
        assert_eq!(
            read_lines(&mut r, Charset::Utf8, 1 << 20, 4096).unwrap_err().kind(),
            std::io::ErrorKind::InvalidData
        );
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(
            (e.name.as_str(), e.kind.clone(), e.size, e.mode),
            ("empty file.txt", EntryKind::File, 0, Some(0o644))
        );
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
        assert_eq!(
            (e.name.as_str(), e.kind, e.size, e.mode),
            ("name with spaces.txt", EntryKind::File, 1024, Some(0o644))
        );
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
}
