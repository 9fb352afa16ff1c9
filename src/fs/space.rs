//! Free space for `statfs`: the server's figure where it tells one (`AVBL`), kept for a while,
//! and never a long wait. `df`, file managers and every `statvfs` call end up here, so the
//! server is asked at most once per [`SPACE_TTL`], by one background thread, and only the
//! first callers wait, for the very first answer (at most [`FIRST_ANSWER_WAIT`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::clock::Clock;
use crate::remote::{Result, Space};

/// How long an answer is shown before the server is asked again.
pub const SPACE_TTL: Duration = Duration::from_secs(30);
/// The first `statfs` of a mount waits this long for the server; later ones never wait.
pub const FIRST_ANSWER_WAIT: Duration = Duration::from_secs(2);

/// Asks the server (in the background thread): `Ok(None)` means it has no way to tell.
pub type Ask = Arc<dyn Fn() -> Result<Option<Space>> + Send + Sync>;

/// What `statfs` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    /// The server's figure.
    Server(Space),
    /// The server tells none and the user named a figure (`--assume-free-space`).
    Assumed(u64),
    /// Nobody knows: `statfs` reports 0 blocks, which `df` shows as 0 and GLib as unknown.
    Unknown,
}

#[derive(Default)]
struct State {
    value: Option<Space>,
    /// When the server last answered (or failed to).
    asked_at: Option<Instant>,
    asking: bool,
    /// The server has no way to tell: never asked again.
    none: bool,
    /// A caller already waited for the first answer: nobody waits again.
    waited: bool,
}

/// The last answer about free space, with the background refresh that keeps it current (see
/// the module comment).
pub struct SpaceCache {
    ask: Ask,
    clock: Arc<dyn Clock>,
    assumed: Option<u64>,
    state: Mutex<State>,
    answered: Condvar,
}

impl SpaceCache {
    /// A cache that asks with `ask`, at most once per [`SPACE_TTL`]; `assumed` is shown where the
    /// server cannot tell. Nothing is asked before the first `get`.
    pub fn new(ask: Ask, clock: Arc<dyn Clock>, assumed: Option<u64>) -> Arc<SpaceCache> {
        Arc::new(SpaceCache { ask, clock, assumed, state: Mutex::new(State::default()), answered: Condvar::new() })
    }

    /// The figure to report now. Starts a refresh in the background when the last answer is
    /// older than [`SPACE_TTL`]; waits (briefly) only while there has never been an answer.
    pub fn get(self: &Arc<Self>) -> Reported {
        let mut st = self.state.lock();
        let now = self.clock.now();
        let stale = st.asked_at.is_none_or(|at| now.saturating_duration_since(at) >= SPACE_TTL);
        if !st.none && stale && !st.asking {
            st.asking = true;
            let me = self.clone();
            let spawned = std::thread::Builder::new().name("statfs".into()).spawn(move || me.refresh());
            if spawned.is_err() {
                st.asking = false;
            }
        }
        if st.asked_at.is_none() && st.asking && !st.waited {
            let deadline = Instant::now() + FIRST_ANSWER_WAIT;
            while st.asking && !self.answered.wait_until(&mut st, deadline).timed_out() {}
            st.waited = true;
        }
        match (st.value, self.assumed) {
            (Some(space), _) => Reported::Server(space),
            (None, Some(bytes)) => Reported::Assumed(bytes),
            (None, None) => Reported::Unknown,
        }
    }

    fn refresh(&self) {
        // No lock held while the server is asked.
        let answer = (self.ask)();
        let mut st = self.state.lock();
        match answer {
            Ok(Some(space)) => st.value = Some(space),
            Ok(None) => {
                st.value = None;
                st.none = true;
            }
            // The last figure stays until the next try; a server that is down is not asked
            // more often than a working one.
            Err(e) => tracing::debug!("free space: {e}"),
        }
        st.asked_at = Some(self.clock.now());
        st.asking = false;
        self.answered.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::RemoteError;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct ManualClock(Mutex<Instant>);
    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.0.lock()
        }
    }

    fn clock() -> Arc<ManualClock> {
        Arc::new(ManualClock(Mutex::new(Instant::now())))
    }

    fn space(n: u64) -> Space {
        Space { available: n, total: None }
    }

    /// Waits until the background refresh has ended.
    fn settle(cache: &SpaceCache) {
        let start = Instant::now();
        while cache.state.lock().asking {
            assert!(start.elapsed() < Duration::from_secs(5), "refresh never ended");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn the_first_answer_is_waited_for_and_then_kept_for_the_ttl() {
        let asked = Arc::new(AtomicUsize::new(0));
        let a = asked.clone();
        let clock = clock();
        let cache = SpaceCache::new(
            Arc::new(move || Ok(Some(space(1000 + a.fetch_add(1, Ordering::SeqCst) as u64)))),
            clock.clone(),
            None,
        );
        assert_eq!(cache.get(), Reported::Server(space(1000)));
        for _ in 0..100 {
            assert_eq!(cache.get(), Reported::Server(space(1000)));
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1, "statfs in a loop asks the server once");
        *clock.0.lock() += SPACE_TTL;
        // Stale: the old figure at once, the new one after the background refresh.
        assert_eq!(cache.get(), Reported::Server(space(1000)));
        settle(&cache);
        assert_eq!(cache.get(), Reported::Server(space(1001)));
        assert_eq!(asked.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_server_without_a_figure_is_not_asked_again() {
        let asked = Arc::new(AtomicUsize::new(0));
        let a = asked.clone();
        let clock = clock();
        let cache = SpaceCache::new(
            Arc::new(move || {
                a.fetch_add(1, Ordering::SeqCst);
                Ok(None)
            }),
            clock.clone(),
            None,
        );
        assert_eq!(cache.get(), Reported::Unknown);
        *clock.0.lock() += SPACE_TTL * 10;
        assert_eq!(cache.get(), Reported::Unknown);
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        let assumed = SpaceCache::new(Arc::new(|| Ok(None)), clock, Some(1 << 40));
        assert_eq!(assumed.get(), Reported::Assumed(1 << 40), "--assume-free-space stands in for no answer");
    }

    #[test]
    fn a_slow_server_never_holds_statfs_past_the_first_wait() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let g = gate.clone();
        let cache = SpaceCache::new(
            Arc::new(move || {
                let mut open = g.0.lock();
                while !*open {
                    g.1.wait(&mut open);
                }
                Ok(Some(space(7)))
            }),
            clock(),
            None,
        );
        let start = Instant::now();
        assert_eq!(cache.get(), Reported::Unknown);
        let waited = start.elapsed();
        assert!(waited >= FIRST_ANSWER_WAIT && waited < FIRST_ANSWER_WAIT * 3, "{waited:?}");
        let start = Instant::now();
        assert_eq!(cache.get(), Reported::Unknown, "still asking: no second wait");
        assert!(start.elapsed() < Duration::from_millis(100));
        *gate.0.lock() = true;
        gate.1.notify_all();
        settle(&cache);
        assert_eq!(cache.get(), Reported::Server(space(7)));
    }

    #[test]
    fn a_failure_keeps_the_last_figure_until_the_next_try() {
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let f = fail.clone();
        let clock = clock();
        let cache = SpaceCache::new(
            Arc::new(move || {
                if f.load(Ordering::SeqCst) { Err(RemoteError::Connection("down".into())) } else { Ok(Some(space(5))) }
            }),
            clock.clone(),
            None,
        );
        assert_eq!(cache.get(), Reported::Server(space(5)));
        fail.store(true, Ordering::SeqCst);
        *clock.0.lock() += SPACE_TTL;
        cache.get();
        settle(&cache);
        assert_eq!(cache.get(), Reported::Server(space(5)));
    }
}
