//! Time that more than one layer needs: a clock tests can move by hand (the session pool, the
//! caches and the watcher take their time from it), and how times are written for people.

use std::time::{Instant, SystemTime};

/// Where the pool and the caches get their time from, so tests can move it by hand.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Formats a time as `2025-03-01 00:00:00 UTC`.
pub fn format_utc(t: SystemTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from(t).format(&fmt).unwrap_or_else(|_| format!("{t:?}"))
}
