//! The server's time zone: `LIST` shows times in the server's local time with no zone marker
//! (and some servers answer `MDTM` in local time too, against RFC 3659). The offset is learned
//! once per mount by comparing the `LIST` time of a file with its `MDTM` time (FileZilla's
//! way), or given by the user (`--server-timezone`). `MLSD`/`MLST` times are UTC by
//! definition and never shifted.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::listing::{ListedTime, TimePrecision};

/// The largest offset a zone has (UTC+14:00, UTC-12:00 is within it).
const MAX_OFFSET_SECS: i32 = 14 * 3600;
/// Files whose MDTM time is this close to the listing (or after it) are not compared: one
/// changed between LIST and MDTM would show an offset of its own.
pub const RECENT: Duration = Duration::from_secs(300);
/// Zone offsets are whole quarter hours (UTC+05:45, UTC+08:45 included).
const QUARTER_HOUR: i64 = 900;

/// An offset from UTC, in seconds east of UTC (`+05:30` is 19800).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UtcOffset(i32);

impl UtcOffset {
    pub const UTC: UtcOffset = UtcOffset(0);

    pub fn from_secs(secs: i32) -> Option<UtcOffset> {
        (secs.abs() <= MAX_OFFSET_SECS).then_some(UtcOffset(secs))
    }

    pub fn secs(self) -> i32 {
        self.0
    }

    /// The UTC time of a time the server showed in this zone (read as if it were UTC).
    pub fn to_utc(self, shown: SystemTime) -> SystemTime {
        let d = Duration::from_secs(self.0.unsigned_abs() as u64);
        if self.0 >= 0 { shown.checked_sub(d).unwrap_or(shown) } else { shown.checked_add(d).unwrap_or(shown) }
    }
}

impl fmt::Display for UtcOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("UTC");
        }
        let sign = if self.0 < 0 { '-' } else { '+' };
        let a = self.0.unsigned_abs();
        write!(f, "UTC{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
    }
}

impl FromStr for UtcOffset {
    type Err = String;

    /// `UTC`, `Z`, `+05:30`, `-08:00`, `+0530`, `-8`, `UTC+05:30`, `GMT-03`.
    fn from_str(s: &str) -> Result<UtcOffset, String> {
        let bad = || format!("{s:?} is not a UTC offset: write it as +05:30, -08:00 or UTC");
        let t = s.trim();
        let upper = t.to_ascii_uppercase();
        if upper == "Z" {
            return Ok(UtcOffset::UTC);
        }
        let rest = match upper.strip_prefix("UTC").or_else(|| upper.strip_prefix("GMT")) {
            Some("") => return Ok(UtcOffset::UTC),
            Some(r) => r,
            None => upper.as_str(),
        };
        if rest.is_empty() {
            return Err(bad());
        }
        let (sign, digits) = match rest.as_bytes()[0] {
            b'+' => (1, &rest[1..]),
            b'-' => (-1, &rest[1..]),
            _ => return Err(bad()),
        };
        let (h, m) = match digits.split_once(':') {
            Some((h, m)) => (h, m),
            None if digits.len() == 4 => digits.split_at(2),
            None => (digits, "0"),
        };
        let all_digits = |x: &str| !x.is_empty() && x.len() <= 2 && x.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(h) || !all_digits(m) {
            return Err(bad());
        }
        let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if m >= 60 {
            return Err(bad());
        }
        UtcOffset::from_secs(sign * (h * 3600 + m * 60))
            .ok_or_else(|| format!("{s:?}: a UTC offset is at most 14 hours either way"))
    }
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// What one comparison of `LIST` and `MDTM` times says: the zone of `LIST` times relative to
/// `MDTM`'s (`LIST` − `MDTM`, rounded to a quarter hour) shared by every file compared, or `None` when there is nothing to
/// compare, the files disagree, or the offset is no zone's. Only minute-precision `LIST`
/// times count (older files show only the day).
pub fn compare(pairs: &[(ListedTime, SystemTime)]) -> Option<i32> {
    let mut found: Option<i64> = None;
    for (listed, mdtm) in pairs {
        if listed.precision != TimePrecision::Minute {
            continue;
        }
        let diff = unix_secs(listed.time) - unix_secs(*mdtm);
        let rounded = (diff + QUARTER_HOUR / 2).div_euclid(QUARTER_HOUR) * QUARTER_HOUR;
        match found {
            None => found = Some(rounded),
            Some(f) if f == rounded => {}
            Some(_) => return None,
        }
    }
    found.filter(|o| o.abs() <= MAX_OFFSET_SECS as i64).map(|o| o as i32)
}

/// What is known of the server's zone, for the life of a mount.
#[derive(Debug, Default)]
pub struct ServerZone {
    /// `--server-timezone`: wins over what a comparison finds for `LIST` times.
    configured: Option<UtcOffset>,
    state: parking_lot::Mutex<Learned>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Learned {
    /// `LIST` − `MDTM` (the zone of `LIST` times if `MDTM` is UTC), once a comparison has
    /// settled it.
    diff: Option<i32>,
}

impl ServerZone {
    pub fn new(configured: Option<UtcOffset>) -> ServerZone {
        ServerZone { configured, state: Default::default() }
    }

    /// Whether a comparison of `LIST` and `MDTM` times would still teach something.
    pub fn wants_comparison(&self) -> bool {
        self.state.lock().diff.is_none()
    }

    /// Learns from a listing's `LIST` times and the `MDTM` times of the same files; the first
    /// listing whose files agree settles it for the mount.
    pub fn learn(&self, pairs: &[(ListedTime, SystemTime)]) {
        let Some(diff) = compare(pairs) else { return };
        {
            let mut state = self.state.lock();
            if state.diff.is_some() {
                return;
            }
            state.diff = Some(diff);
        }
        let shown = UtcOffset(diff);
        match self.configured {
            None if diff == 0 => tracing::debug!("listing times and MDTM times agree: the server lists times in UTC"),
            None => tracing::info!("the server lists times in {shown}; correcting"),
            Some(c) if c.0 == diff && diff != 0 => tracing::info!(
                "the server lists times in {c} (--server-timezone) and answers MDTM in UTC: only listing times are shifted"
            ),
            Some(c) if diff == 0 => tracing::info!(
                "the server lists times and answers MDTM in the same zone: both are taken as {c} (--server-timezone)"
            ),
            Some(c) => tracing::warn!(
                "listing times are {shown} when MDTM times are taken as UTC, which fits neither \
                 --server-timezone {c} nor MDTM in that zone; taking both as {c} as asked"
            ),
        }
    }

    /// For the server profile: the zone listings are read in, and how it is known.
    pub fn describe(&self) -> String {
        match (self.configured, self.state.lock().diff) {
            (Some(c), _) => format!("listing times taken as {c} (--server-timezone)"),
            (None, Some(d)) => format!("listing times in {} (found by comparing LIST with MDTM)", UtcOffset(d)),
            (None, None) => "listing times taken as UTC (not compared yet)".to_string(),
        }
    }

    /// The zone `LIST` times are in.
    pub fn list_zone(&self) -> UtcOffset {
        self.configured.unwrap_or_else(|| UtcOffset(self.state.lock().diff.unwrap_or(0)))
    }

    /// The zone `MDTM` answers are in: UTC (RFC 3659), unless `--server-timezone` was given and
    /// no comparison showed `MDTM` to be UTC while `LIST` is not.
    pub fn mdtm_zone(&self) -> UtcOffset {
        match self.configured {
            None => UtcOffset::UTC,
            Some(c) if c.0 != 0 && self.state.lock().diff == Some(c.0) => UtcOffset::UTC,
            Some(c) => c,
        }
    }

    /// An `MDTM` answer, in UTC.
    pub fn from_mdtm(&self, t: Option<SystemTime>) -> Option<SystemTime> {
        t.map(|t| self.mdtm_zone().to_utc(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    }

    fn minute(secs: i64) -> ListedTime {
        ListedTime { time: at(secs - secs % 60), precision: TimePrecision::Minute }
    }

    #[test]
    fn offsets_parse_and_print() {
        for (text, secs, shown) in [
            ("+05:30", 19800, "UTC+05:30"),
            ("-08:00", -28800, "UTC-08:00"),
            ("UTC", 0, "UTC"),
            ("utc", 0, "UTC"),
            ("Z", 0, "UTC"),
            ("+0545", 20700, "UTC+05:45"),
            ("-3", -10800, "UTC-03:00"),
            ("UTC+05:30", 19800, "UTC+05:30"),
            ("GMT-09:30", -34200, "UTC-09:30"),
            ("+14:00", 50400, "UTC+14:00"),
            ("+00:00", 0, "UTC"),
        ] {
            let o: UtcOffset = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((o.secs(), o.to_string().as_str()), (secs, shown), "{text}");
        }
        for bad in ["", "05:30", "+5:60", "+15:00", "-14:01", "IST", "+05:30:00", "+123", "UTC+", "++05"] {
            assert!(bad.parse::<UtcOffset>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn shown_times_become_utc() {
        let plus = UtcOffset::from_secs(19800).unwrap();
        assert_eq!(plus.to_utc(at(1_700_019_800)), at(1_700_000_000));
        let minus = UtcOffset::from_secs(-28800).unwrap();
        assert_eq!(minus.to_utc(at(1_700_000_000 - 28800)), at(1_700_000_000));
    }

    #[test]
    fn comparison_rounds_to_quarter_hours_and_wants_agreement() {
        // The server at UTC+05:30: LIST shows local minutes, MDTM has UTC seconds.
        let utc = 1_700_000_045;
        assert_eq!(compare(&[(minute(utc + 19800), at(utc))]), Some(19800));
        // A server at UTC-08:00 lists times 8 hours behind.
        assert_eq!(compare(&[(minute(utc - 28800), at(utc)), (minute(utc + 7 - 28800), at(utc + 7))]), Some(-28800));
        // Seconds lost to LIST's minutes do not make an offset.
        assert_eq!(compare(&[(minute(utc + 59), at(utc + 59))]), Some(0));
        // Files that disagree (one changed between LIST and MDTM) settle nothing.
        assert_eq!(compare(&[(minute(utc), at(utc)), (minute(utc), at(utc + 7200))]), None);
        // Day-precision entries and offsets no zone has are not compared.
        let day = ListedTime { time: at(1_699_920_000), precision: TimePrecision::Day };
        assert_eq!(compare(&[(day.clone(), at(utc))]), None);
        assert_eq!(compare(&[(day, at(utc)), (minute(utc), at(utc))]), Some(0));
        assert_eq!(compare(&[(minute(utc), at(utc + 15 * 3600))]), None);
        assert_eq!(compare(&[]), None);
    }

    #[test]
    fn detection_shifts_listing_times_only() {
        let zone = ServerZone::new(None);
        assert_eq!((zone.list_zone(), zone.mdtm_zone()), (UtcOffset::UTC, UtcOffset::UTC));
        assert!(zone.wants_comparison());
        let utc = 1_700_000_000;
        zone.learn(&[(minute(utc + 19800), at(utc))]);
        assert_eq!(zone.list_zone().to_string(), "UTC+05:30");
        assert!(!zone.wants_comparison());
        // Settled once per mount.
        zone.learn(&[(minute(utc), at(utc))]);
        assert_eq!(zone.list_zone().to_string(), "UTC+05:30");
        assert_eq!(zone.from_mdtm(Some(at(utc))), Some(at(utc)));
        assert_eq!(zone.list_zone().to_utc(minute(utc + 19800).time), minute(utc).time);
    }

    #[test]
    fn the_option_wins_and_mdtm_follows_what_the_comparison_shows() {
        let ist: UtcOffset = "+05:30".parse().unwrap();
        let utc = 1_700_000_000;
        // Nothing compared yet: LIST and MDTM are both taken in the named zone.
        let zone = ServerZone::new(Some(ist));
        assert_eq!((zone.list_zone(), zone.mdtm_zone()), (ist, ist));
        // MDTM in the same zone as LIST: the comparison sees 0, both stay shifted.
        zone.learn(&[(minute(utc + 19800), at(utc + 19800))]);
        assert_eq!((zone.list_zone(), zone.mdtm_zone()), (ist, ist));
        assert_eq!(zone.from_mdtm(Some(at(utc + 19800))), Some(at(utc)));
        // MDTM in UTC (as IIS): only LIST is shifted.
        let zone = ServerZone::new(Some(ist));
        zone.learn(&[(minute(utc + 19800), at(utc))]);
        assert_eq!((zone.list_zone(), zone.mdtm_zone()), (ist, UtcOffset::UTC));
        // The option wins over what a comparison finds for LIST.
        let zone = ServerZone::new(Some("-08:00".parse().unwrap()));
        zone.learn(&[(minute(utc + 3600), at(utc))]);
        assert_eq!(zone.list_zone().to_string(), "UTC-08:00");
    }

    /// A DOS listing from a server at UTC+05:30 whose MDTM is UTC: the file compared teaches
    /// the zone, the directory (LIST only) and the file without an MDTM answer are shifted by
    /// it, the MDTM times are kept.
    #[test]
    fn a_listing_in_local_time_becomes_utc() {
        use super::super::listing::{ListEntry, parse_list_line};
        let now = at(1_800_000_000);
        let lines =
            ["11-14-23  09:43PM  <DIR>  sub", "11-15-23  03:43AM  2 file.txt", "11-15-23  03:44AM  2 no-mdtm.txt"];
        let mut entries: Vec<_> = lines.iter().map(|l| parse_list_line(l, now).unwrap()).collect();
        let listed: Vec<_> = entries.iter().map(|e| e.mtime.clone()).collect();
        // What fill_exact_times leaves: the exact UTC time of file.txt (2023-11-14 22:13:20);
        // the directory is 16:13 UTC, no-mdtm.txt 22:14 UTC.
        entries[1].mtime = Some(ListedTime { time: at(1_700_000_000), precision: TimePrecision::Second });
        let zone = ServerZone::new(None);
        // A file changed between LIST and MDTM (its MDTM is after the listing) is not compared.
        let changed = parse_list_line("11-15-23  06:00AM  2 changed.txt", now).unwrap();
        entries.push(ListEntry {
            mtime: Some(ListedTime { time: now, precision: TimePrecision::Second }),
            ..changed.clone()
        });
        let mut listed = listed;
        listed.push(changed.mtime);
        super::super::times_to_utc(&zone, &mut entries, listed, now);
        assert_eq!(zone.list_zone().to_string(), "UTC+05:30");
        let times: Vec<_> = entries.iter().map(|e| e.mtime.as_ref().unwrap().time).collect();
        assert_eq!(times, [at(1_699_978_380), at(1_700_000_000), at(1_700_000_040), now]);
    }
}
