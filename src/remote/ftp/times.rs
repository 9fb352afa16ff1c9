//! Exact modification times for a listing whose times are coarser than a second (LIST
//! shows none for this year's files, or no year for older ones): `MDTM` per file, pipelined
//! in batches where the server takes it, else one at a time over a few sessions; and the
//! listing's times turned into UTC (the server's zone is learnt by comparing LIST with MDTM).

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use super::listing::{self, EntryKind, ListEntry, TimePrecision};
use super::retry::retire;
use super::session::{Features, Pipelined, Pipelining};
use super::zone::{self, ServerZone};
use super::{FtpRemote, MDTM_BATCH, MDTM_SESSIONS, PIPELINE_BATCH, PIPELINE_BYTES, PIPELINE_PROBE_TIMEOUT, join};
use crate::remote::Result;

impl FtpRemote {
    /// Asks for exact times of the entries whose listing time is coarser than a second: in
    /// pipelined batches where the server takes them (one round trip per batch), else one
    /// `MDTM` at a time, spread over a few sessions.
    /// `known`: times already asked for (see [`Self::list_asking_times`]).
    pub(super) fn fill_exact_times(&self, dir: &str, entries: &mut [ListEntry], known: &KnownTimes) -> Result<()> {
        let mut wanted = Vec::new();
        for (k, (i, e)) in entries.iter_mut().enumerate().filter(|(_, e)| wants_exact_time(e)).enumerate() {
            match known.get(k, &e.name) {
                Some(t) => set_exact(e, t),
                None => wanted.push(i),
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let paths: Vec<String> = wanted.iter().map(|&i| join(dir, &entries[i].name)).collect();
        let times = match self.exact_times_pipelined(&paths)? {
            Some(times) => times,
            None => self.exact_times_one_by_one(&paths)?,
        };
        for (&i, t) in wanted.iter().zip(times) {
            set_exact(&mut entries[i], t);
        }
        Ok(())
    }

    /// How many sessions a directory's time requests may use: a few, never all (a session
    /// stays free for other requests while a big directory loads).
    fn mdtm_workers(&self, batches: usize) -> usize {
        let spare = self.pool.stats().limit.saturating_sub(1).max(1);
        batches.min(MDTM_SESSIONS).min(spare)
    }

    /// Runs `batch` for every batch of `paths` (by index) on up to [`Self::mdtm_workers`]
    /// threads; the first error ends the run.
    fn run_batches(
        &self,
        batches: &[std::ops::Range<usize>],
        batch: impl Fn(std::ops::Range<usize>) -> Result<()> + Sync,
    ) -> Result<()> {
        let next = AtomicUsize::new(0);
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| -> Result<()> {
            let handles: Vec<_> = (0..self.mdtm_workers(batches.len()))
                .map(|_| {
                    scope.spawn(|| -> Result<()> {
                        while !stop.load(Ordering::Relaxed) {
                            let Some(b) = batches.get(next.fetch_add(1, Ordering::Relaxed)) else { return Ok(()) };
                            if let Err(e) = batch(b.clone()) {
                                stop.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            let mut first = Ok(());
            for h in handles {
                let r = h.join().expect("MDTM worker panicked");
                if first.is_ok() {
                    first = r;
                }
            }
            first
        })
    }

    /// One `MDTM` per round trip, in small batches over several sessions.
    fn exact_times_one_by_one(&self, paths: &[String]) -> Result<Vec<Option<SystemTime>>> {
        let results: Vec<parking_lot::Mutex<Option<SystemTime>>> =
            paths.iter().map(|_| parking_lot::Mutex::new(None)).collect();
        let batches: Vec<_> =
            (0..paths.len()).step_by(MDTM_BATCH).map(|a| a..(a + MDTM_BATCH).min(paths.len())).collect();
        self.run_batches(&batches, |range| {
            self.with_session(true, |s| {
                for k in range.clone() {
                    *results[k].lock() = s.mdtm(&paths[k])?;
                }
                Ok(())
            })
        })?;
        Ok(results.into_iter().map(|m| m.into_inner()).collect())
    }

    /// All `MDTM`s sent without waiting, in batches of at most [`PIPELINE_BATCH`] commands
    /// (and [`PIPELINE_BYTES`]). `None` when the server does not take them well (learnt here
    /// at the first surprise and kept for the mount): then the caller asks one at a time.
    fn exact_times_pipelined(&self, paths: &[String]) -> Result<Option<Vec<Option<SystemTime>>>> {
        let Some(features) = self.pool.connector().features.get().cloned() else { return Ok(None) };
        if Pipelining::from_u8(features.pipelining.load(Ordering::Relaxed)) == Pipelining::Refused {
            return Ok(None);
        }
        let results: Vec<parking_lot::Mutex<Option<SystemTime>>> =
            paths.iter().map(|_| parking_lot::Mutex::new(None)).collect();
        let surprised = std::sync::atomic::AtomicBool::new(false);
        let batches = pipeline_batches(paths);
        let ran = self.run_batches(&batches, |range| {
            if surprised.load(Ordering::Relaxed) {
                return Ok(());
            }
            let Some(times) = self.mdtm_batch(&features, &paths[range.clone()], self.probe_wait(&features))? else {
                surprised.store(true, Ordering::Relaxed);
                return Ok(());
            };
            for (k, t) in range.zip(times) {
                *results[k].lock() = t;
            }
            Ok(())
        });
        ran?;
        if surprised.load(Ordering::Relaxed) {
            return Ok(None);
        }
        Ok(Some(results.into_iter().map(|m| m.into_inner()).collect()))
    }

    /// While it is not known whether the server takes pipelined commands: how long a batch
    /// waits for each reply (a server that drops them must not hold a listing for long).
    fn probe_wait(&self, features: &Features) -> Option<Duration> {
        let untried = Pipelining::from_u8(features.pipelining.load(Ordering::Relaxed)) == Pipelining::Untried;
        untried.then(|| self.pool.connector().endpoint.io_timeout.min(PIPELINE_PROBE_TIMEOUT))
    }

    /// One pipelined batch of `MDTM`s on a pooled session, asked again once on a fresh session
    /// after a transient failure. `probe`: while it is not known whether the server takes
    /// pipelined commands, how long to wait for each reply; the answer is kept for the mount.
    /// `None`: the server did not answer as expected; commands are then no longer pipelined.
    fn mdtm_batch(
        &self,
        features: &Features,
        paths: &[String],
        probe: Option<Duration>,
    ) -> Result<Option<Vec<Option<SystemTime>>>> {
        let mut attempt = 0;
        loop {
            let mut lease = self.pool.checkout()?;
            match lease.mdtm_pipelined(paths, probe) {
                Ok(Pipelined::Done(times)) => {
                    let untried = Pipelining::Untried as u8;
                    if probe.is_some()
                        && features.pipelining.swap(Pipelining::Works as u8, Ordering::Relaxed) == untried
                    {
                        tracing::debug!("the server takes pipelined commands: MDTM in batches of {PIPELINE_BATCH}");
                    }
                    return Ok(Some(times));
                }
                Ok(Pipelined::Surprise(why)) => {
                    lease.mark_broken();
                    if features.pipelining.swap(Pipelining::Refused as u8, Ordering::Relaxed)
                        != Pipelining::Refused as u8
                    {
                        tracing::info!(
                            "the server did not answer commands sent without waiting as expected ({why}); \
                             asking for file times one at a time from now on"
                        );
                    }
                    return Ok(None);
                }
                Err(e) => {
                    // Replies may still be on their way: never reuse the session.
                    retire(&mut lease, &e);
                    lease.mark_broken();
                    drop(lease);
                    if attempt == 0 && e.is_transient() {
                        tracing::debug!("asking the times again on a fresh session after: {e}");
                        attempt += 1;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Runs `list`, a directory's listing, while other sessions ask for the exact times of the
    /// files it has shown so far: for a big directory on a server without MLSD, the `MDTM`s
    /// overlap the `LIST` instead of following it (vsftpd: 100,000 entries take 0.7 s to list
    /// and 1.8 s of `MDTM`s over plain FTP). Not where the server is known to refuse pipelined
    /// commands (the first batch is the probe where that is not known yet); a listing of one
    /// batch or less asks nothing here. The times that were not asked (a failure, a small
    /// listing) are missing from the result, and the caller asks for them the usual way, which
    /// reports any error.
    pub(super) fn list_asking_times<T>(
        &self,
        dir: &str,
        list: impl FnOnce(&mut dyn FnMut(&str)) -> Result<T>,
    ) -> Result<(T, KnownTimes)> {
        let Some(features) = self.pool.connector().features.get().cloned() else {
            return Ok((list(&mut |_| {})?, KnownTimes::new()));
        };
        let refused = Pipelining::from_u8(features.pipelining.load(Ordering::Relaxed)) == Pipelining::Refused;
        if !features.mdtm || features.mlsd || refused {
            return Ok((list(&mut |_| {})?, KnownTimes::new()));
        }
        let known = KnownTimes::new();
        let stop = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel::<Batch>();
        let rx = parking_lot::Mutex::new(rx);
        // The listing holds one session; one more stays free for other requests.
        let most = self.pool.stats().limit.saturating_sub(2).clamp(1, MDTM_SESSIONS);
        let worker = || self.times_worker(&features, dir, &rx, &known, &stop);
        let listed = std::thread::scope(|scope| {
            let (mut batch, mut wanted, mut workers) = (Batch::default(), 0, 0);
            let now = SystemTime::now();
            let mut on_line = |line: &str| {
                let Ok(e) = listing::parse_list_line(line, now) else { return };
                if !wants_exact_time(&e) || stop.load(Ordering::Relaxed) {
                    return;
                }
                if batch.count == 0 {
                    batch.first = wanted;
                }
                wanted += 1;
                batch.push(&e.name);
                if batch.count >= PIPELINE_BATCH || batch.names.len() + batch.count * (dir.len() + 7) >= PIPELINE_BYTES
                {
                    if workers < most {
                        workers += 1;
                        scope.spawn(worker);
                    }
                    let _ = tx.send(std::mem::take(&mut batch));
                }
            };
            let listed = list(&mut on_line);
            match &listed {
                Err(_) => stop.store(true, Ordering::Relaxed),
                Ok(_) if workers > 0 && batch.count > 0 => {
                    // The last batch, beside the others (over a slow link, a round trip saved).
                    if workers < most {
                        scope.spawn(worker);
                    }
                    drop(tx.send(batch));
                }
                Ok(_) => {}
            }
            drop(tx);
            listed
        })?;
        Ok((listed, known))
    }

    /// Asks the times of the batches `batches` hands out until it is closed; the first failure
    /// stops every worker (what is left is asked for afterwards).
    fn times_worker(
        &self,
        features: &Features,
        dir: &str,
        batches: &parking_lot::Mutex<mpsc::Receiver<Batch>>,
        known: &KnownTimes,
        stop: &AtomicBool,
    ) {
        while !stop.load(Ordering::Relaxed) {
            let Ok(batch) = batches.lock().recv() else { return };
            let paths: Vec<String> = batch.names().map(|n| join(dir, n)).collect();
            match self.mdtm_batch(features, &paths, self.probe_wait(features)) {
                Ok(Some(times)) => known.put(batch.first, batch.names().zip(times)),
                Ok(None) => return stop.store(true, Ordering::Relaxed),
                Err(e) => {
                    tracing::debug!("asking for times while listing {dir}: {e}");
                    return stop.store(true, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Names of files wanting an exact time, as a listing shows them, for one pipelined batch:
/// in one buffer, so a big listing read at full speed does not leave a name allocated per
/// file between the entries it keeps (memory the allocator could not give back).
#[derive(Default)]
struct Batch {
    /// The place of its first name among the listing's files wanting a time.
    first: usize,
    count: usize,
    /// Each name followed by `\n` (a listing line never holds one).
    names: String,
}

impl Batch {
    fn push(&mut self, name: &str) {
        self.names.push_str(name);
        self.names.push('\n');
        self.count += 1;
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.names.split_terminator('\n')
    }
}

/// Exact times asked for while a listing arrived, by the place of each file among the
/// listing's files wanting one, with a hash of its name: a listing read again in another order
/// (one cut short and completed) finds no times in the wrong places, only none.
#[derive(Default)]
pub(super) struct KnownTimes {
    hasher: hashbrown::DefaultHashBuilder,
    by_place: parking_lot::Mutex<Vec<Option<Hashed>>>,
}

/// A name's hash, and the time asked for it.
type Hashed = (u64, Option<SystemTime>);

impl KnownTimes {
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// The time asked for the `place`-th file wanting one, if that file is `name`; `Some(None)`:
    /// the server had none.
    fn get(&self, place: usize, name: &str) -> Option<Option<SystemTime>> {
        let (hash, time) = (*self.by_place.lock().get(place)?)?;
        (hash == self.hasher.hash_one(name)).then_some(time)
    }

    fn put<'a>(&self, first: usize, times: impl Iterator<Item = (&'a str, Option<SystemTime>)>) {
        let hashed: Vec<_> = times.map(|(name, t)| (self.hasher.hash_one(name), t)).collect();
        let mut by_place = self.by_place.lock();
        if by_place.len() < first + hashed.len() {
            by_place.resize(first + hashed.len(), None);
        }
        for (k, h) in hashed.into_iter().enumerate() {
            by_place[first + k] = Some(h);
        }
    }
}

/// `paths` cut into pipelined batches: at most [`PIPELINE_BATCH`] commands and about
/// [`PIPELINE_BYTES`] of command lines each (one at least).
pub(super) fn pipeline_batches(paths: &[String]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (k, p) in paths.iter().enumerate() {
        let line = p.len() + "MDTM \r\n".len();
        if k > start && (k - start >= PIPELINE_BATCH || bytes + line > PIPELINE_BYTES) {
            out.push(start..k);
            (start, bytes) = (k, 0);
        }
        bytes += line;
    }
    if start < paths.len() {
        out.push(start..paths.len());
    }
    out
}

/// Turns the times of a LIST listing (received at `listed_at`) into UTC. `listed` holds the
/// times as LIST showed them; entries whose time changed since came from MDTM. The first
/// listing with files to compare teaches the server's zone (see [`zone`]); files changed in
/// the last minutes are not compared, as one changed between LIST and MDTM would make an
/// offset of its own.
pub(super) fn times_to_utc(
    zone: &ServerZone,
    entries: &mut [ListEntry],
    listed: Vec<Option<listing::ListedTime>>,
    listed_at: SystemTime,
) {
    if zone.wants_comparison() {
        let recent = listed_at.checked_sub(zone::RECENT).unwrap_or(listed_at);
        let pairs: Vec<_> = entries
            .iter()
            .zip(&listed)
            .filter_map(|(e, l)| match (&e.mtime, l) {
                (Some(m), Some(l))
                    if m.precision == TimePrecision::Second && l.precision < m.precision && m.time < recent =>
                {
                    Some((l.clone(), m.time))
                }
                _ => None,
            })
            .collect();
        zone.learn(&pairs);
    }
    let (list_zone, mdtm_zone) = (zone.list_zone(), zone.mdtm_zone());
    for (e, l) in entries.iter_mut().zip(listed) {
        if let Some(m) = &mut e.mtime {
            let zone = if Some(&*m) == l.as_ref() { list_zone } else { mdtm_zone };
            m.time = zone.to_utc(m.time);
        }
    }
}

/// An entry's time as `MDTM` gave it; none leaves the listing's.
fn set_exact(e: &mut ListEntry, time: Option<SystemTime>) {
    if let Some(time) = time {
        e.mtime = Some(listing::ListedTime { time, precision: TimePrecision::Second });
    }
}

/// A file whose listed time has no seconds: `MDTM` gives them.
pub(super) fn wants_exact_time(e: &ListEntry) -> bool {
    e.kind == EntryKind::File && e.mtime.as_ref().is_none_or(|t| t.precision < TimePrecision::Second)
}

#[cfg(test)]
#[path = "times_tests.rs"]
mod tests;
