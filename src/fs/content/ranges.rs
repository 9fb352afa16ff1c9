//! What an entry holds: which version of the file, and which byte ranges of it.

use super::*;

/// Which version of a file an entry holds: size and whole seconds of the modification time
/// (servers keep seconds at best; a listing may show less, but the same each time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub size: u64,
    pub mtime: i64,
}

impl Version {
    /// The version of a file of `size` bytes last modified at `mtime` (whole seconds, rounded down).
    pub fn of(size: u64, mtime: SystemTime) -> Version {
        let secs = match mtime.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
        };
        Version { size, mtime: secs }
    }
}

/// Byte ranges held, as start → end (exclusive), never overlapping or touching.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ranges(pub(super) BTreeMap<u64, u64>);

impl Ranges {
    /// Adds `start..end`; returns how many bytes were new.
    pub fn insert(&mut self, mut start: u64, mut end: u64) -> u64 {
        if start >= end {
            return 0;
        }
        let before = self.total();
        // Merge with a range that starts before and reaches `start`.
        if let Some((&s, &e)) = self.0.range(..=start).next_back() {
            if e >= start {
                start = s;
                end = end.max(e);
            }
        }
        // Swallow ranges that start within `start..=end`.
        let inside: Vec<(u64, u64)> = self.0.range(start..=end).map(|(&s, &e)| (s, e)).collect();
        for (s, e) in inside {
            self.0.remove(&s);
            end = end.max(e);
        }
        self.0.insert(start, end);
        self.total() - before
    }

    /// How many bytes from `offset` on are held without a gap.
    pub fn covered_from(&self, offset: u64) -> u64 {
        match self.0.range(..=offset).next_back() {
            Some((_, &e)) if e > offset => e - offset,
            _ => 0,
        }
    }

    /// Where the run of missing bytes that ends at `offset` starts: the end of the last range
    /// before it, or 0 (`offset` itself when that byte is held).
    pub fn missing_from(&self, offset: u64) -> u64 {
        match self.0.range(..=offset).next_back() {
            Some((_, &e)) => e.min(offset),
            None => 0,
        }
    }

    /// How many bytes the ranges hold together.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|(s, e)| e - s).sum()
    }
}
