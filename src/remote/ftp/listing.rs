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
/// `on_line` sees each line as it arrives (to start work on a big listing before its end).
pub fn read_lines(
    r: &mut impl std::io::BufRead,
    charset: Charset,
    max_total: usize,
    max_line: usize,
    on_line: &mut dyn FnMut(&str),
) -> std::io::Result<Lines> {
    use std::io::{Error, ErrorKind};
    let mut lines = Lines::default();
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
            push_line(&mut lines, &mut line, charset, on_line);
        }
    }
    push_line(&mut lines, &mut line, charset, on_line);
    Ok(lines)
}

fn push_line(lines: &mut Lines, line: &mut Vec<u8>, charset: Charset, on_line: &mut dyn FnMut(&str)) {
    let bytes = line.strip_suffix(b"\r").unwrap_or(line);
    if !bytes.is_empty() {
        let text = charset.decode(bytes);
        on_line(&text);
        lines.push(&text);
    }
    line.clear();
}

/// A listing's lines in one buffer: a directory of 100,000 entries is a few allocations, not
/// 100,000, so the names parsed from it are not left scattered between freed lines (memory
/// the allocator could then not give back).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lines {
    text: String,
    /// Where each line ends in `text`.
    ends: Vec<usize>,
}

impl Lines {
    pub fn push(&mut self, line: &str) {
        self.text.push_str(line);
        self.ends.push(self.text.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(self.ends.iter().copied()).map(|(a, b)| &self.text[a..b])
    }
}

impl<S: AsRef<str>> FromIterator<S> for Lines {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut lines = Lines::default();
        for l in iter {
            lines.push(l.as_ref());
        }
        lines
    }
}

impl<const N: usize> PartialEq<[&str; N]> for Lines {
    fn eq(&self, other: &[&str; N]) -> bool {
        self.iter().eq(other.iter().copied())
    }
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
#[path = "listing_read_lines_tests.rs"]
mod read_lines_tests;

#[cfg(test)]
#[path = "listing_tests.rs"]
mod tests;
