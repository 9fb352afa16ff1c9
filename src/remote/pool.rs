//! A bounded pool of sessions: never more than `max` open at once, FIFO waiting, idle health
//! checks, idle close, and a limit that drops when the server refuses sessions (421) and climbs
//! back after a quiet period.
//!
//! The pool knows nothing about FTP: it opens, checks and closes sessions through [`Connector`].
//! Its lock guards counters and the idle list only; connecting, health checks and closing
//! happen outside it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::{RemoteError, Result, SessionStats};
use crate::clock::Clock;

/// The first pause before reconnecting to a server that cannot be reached, doubling up to
/// [`MAX_BACKOFF`]: a restart of a second or two is ridden out with few attempts.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Opens, checks and closes one kind of session.
pub trait Connector: Send + Sync + 'static {
    type Session: Send + 'static;
    fn connect(&self) -> Result<Self::Session>;
    /// A cheap round trip (NOOP) telling whether an idle session still works.
    fn check(&self, session: &mut Self::Session) -> Health;
    /// Whether an idle session is visibly gone (the server closed it), without a round trip.
    fn closed(&self, _session: &Self::Session) -> bool {
        false
    }
    /// Polite close (QUIT); must not block long.
    fn close(&self, session: Self::Session);
    /// Drops a session that is broken or out of step, without talking to the server.
    fn abandon(&self, session: Self::Session) {
        drop(session);
    }
}

/// What a health check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Alive,
    /// This session is gone (closed, reset): others may be fine.
    Dead,
    /// No answer in time: the server or the network is stuck, and every idle session with it.
    Unresponsive,
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Hard bound on open sessions (`--max-connections`).
    pub max: usize,
    /// Idle sessions older than this are checked with a round trip before reuse.
    pub check_after: Duration,
    /// Idle sessions older than this are closed.
    pub idle_timeout: Duration,
    /// After a refusal, the limit rises by one per quiet period without refusals.
    pub recover_after: Duration,
    /// How long a request waits for the server to accept a session when none is open and the
    /// server keeps refusing (421), before failing.
    pub refusal_retry: Duration,
    /// How long a request keeps reconnecting while the server cannot be reached (a restart, a
    /// network drop) before failing; zero until the mount's first session is up, so a wrong
    /// address fails at once.
    pub reconnect_for: Duration,
}

impl PoolConfig {
    pub fn new(max: usize) -> Self {
        PoolConfig {
            max: max.max(1),
            check_after: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            recover_after: Duration::from_secs(20),
            refusal_retry: Duration::from_secs(30),
            reconnect_for: Duration::ZERO,
        }
    }
}

struct Idle<S> {
    session: S,
    since: Instant,
}

struct State<S> {
    idle: Vec<Idle<S>>,
    /// Sessions that exist or are being connected: idle + leased + connecting.
    open: usize,
    /// Effective limit: `max`, or lower after the server refused sessions.
    limit: usize,
    last_refusal: Option<Instant>,
    /// Tickets of waiting requests, served strictly in order.
    queue: VecDeque<u64>,
    next_ticket: u64,
    /// See [`PoolConfig::reconnect_for`]; set once the first session is up.
    reconnect_for: Duration,
    /// Since when new sessions fail to connect (an outage in progress), for one log line each.
    unreachable_since: Option<Instant>,
}

pub struct Pool<C: Connector> {
    connector: C,
    clock: Arc<dyn Clock>,
    config: PoolConfig,
    state: Mutex<State<C::Session>>,
    changed: Condvar,
}

/// What a request at the head of the queue may do next.
enum Step<S> {
    Reuse(Idle<S>),
    Connect,
    Wait,
}

impl<C: Connector> Pool<C> {
    pub fn new(connector: C, config: PoolConfig, clock: Arc<dyn Clock>) -> Arc<Self> {
        let limit = config.max;
        let reconnect_for = config.reconnect_for;
        Arc::new(Pool {
            connector,
            clock,
            config,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
                limit,
                last_refusal: None,
                queue: VecDeque::new(),
                next_ticket: 0,
                reconnect_for,
                unreachable_since: None,
            }),
            changed: Condvar::new(),
        })
    }

    pub fn connector(&self) -> &C {
        &self.connector
    }

    /// From now on, requests ride out outages of up to `d` (see [`PoolConfig::reconnect_for`]).
    pub fn set_reconnect_for(&self, d: Duration) {
        self.state.lock().reconnect_for = d;
    }

    /// Takes a session, waiting in FIFO order for one to be free or for room to open one.
    /// While the server cannot be reached it keeps trying, with back-off, for the reconnect
    /// window; a server that does not answer at all fails at once (that already took a timeout).
    pub fn checkout(self: &Arc<Self>) -> Result<Lease<C>> {
        let mut refused_since: Option<Instant> = None;
        let mut unreachable_since: Option<Instant> = None;
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.next_step()? {
                Step::Reuse(idle) => {
                    let mut session = idle.session;
                    let idle_for = self.clock.now().saturating_duration_since(idle.since);
                    if self.connector.closed(&session) {
                        tracing::debug!("the server closed an idle session; replacing it");
                        self.discard(session);
                        continue;
                    }
                    if idle_for >= self.config.check_after {
                        match self.connector.check(&mut session) {
                            Health::Alive => {}
                            Health::Dead => {
                                tracing::debug!("idle session failed its health check; replacing it");
                                self.discard(session);
                                continue;
                            }
                            Health::Unresponsive => {
                                // The others would each wait out the same silence: drop them all.
                                tracing::debug!(
                                    "idle session got no answer to its health check; dropping all idle sessions"
                                );
                                self.discard(session);
                                self.discard_idle();
                                continue;
                            }
                        }
                    }
                    return Ok(self.lease(session));
                }
                Step::Connect => match self.connector.connect() {
                    Ok(session) => {
                        self.reachable_again();
                        return Ok(self.lease(session));
                    }
                    Err(err) => {
                        let wait = self.connect_failed(&err);
                        if matches!(err, RemoteError::Connection(_)) {
                            let first = *unreachable_since.get_or_insert_with(|| self.clock.now());
                            if !self.ride_out(&err, first, &mut backoff) {
                                return Err(err);
                            }
                            continue;
                        }
                        let first = *refused_since.get_or_insert_with(|| self.clock.now());
                        let waited = self.clock.now().saturating_duration_since(first);
                        if !wait || waited >= self.config.refusal_retry {
                            return Err(err);
                        }
                        if self.stats().open == 0 {
                            // Nothing to wait for: back off a little before asking again.
                            std::thread::sleep(Duration::from_millis(500));
                        }
                    }
                },
                Step::Wait => unreachable!("next_step only returns once it can act"),
            }
        }
    }

    /// A new session could not be connected (`err`, first at `first`): waits a little and says
    /// whether to try again, within the reconnect window.
    fn ride_out(&self, err: &RemoteError, first: Instant, backoff: &mut Duration) -> bool {
        let window = {
            let mut st = self.state.lock();
            if st.reconnect_for.is_zero() {
                return false;
            }
            if st.unreachable_since.is_none() {
                st.unreachable_since = Some(first);
                tracing::warn!("{err}; reconnecting for up to {:?} (--reconnect-timeout)", st.reconnect_for);
            }
            st.reconnect_for
        };
        let waited = self.clock.now().saturating_duration_since(first);
        if waited >= window {
            return false;
        }
        std::thread::sleep((*backoff).min(window - waited));
        *backoff = (*backoff * 2).min(MAX_BACKOFF);
        true
    }

    fn reachable_again(&self) {
        let mut st = self.state.lock();
        if let Some(since) = st.unreachable_since.take() {
            let after = self.clock.now().saturating_duration_since(since);
            tracing::info!("the server can be reached again (after {:.1} s)", after.as_secs_f64());
        }
    }

    /// Waits until this request is at the head of the queue and can act, then reserves.
    fn next_step(&self) -> Result<Step<C::Session>> {
        let mut st = self.state.lock();
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queue.push_back(ticket);
        loop {
            if st.queue.front() == Some(&ticket) {
                self.recover_limit(&mut st);
                let step = self.try_reserve(&mut st);
                if !matches!(step, Step::Wait) {
                    st.queue.pop_front();
                    self.changed.notify_all();
                    return Ok(step);
                }
            }
            // Wake periodically too: the limit may recover with time alone.
            self.changed.wait_for(&mut st, Duration::from_millis(250));
        }
    }

    fn try_reserve(&self, st: &mut State<C::Session>) -> Step<C::Session> {
        if let Some(idle) = st.idle.pop() {
            return Step::Reuse(idle);
        }
        if st.open < st.limit {
            st.open += 1;
            return Step::Connect;
        }
        Step::Wait
    }

    /// Lowers the limit on a refusal; returns whether the request should keep trying.
    fn connect_failed(&self, err: &RemoteError) -> bool {
        let mut st = self.state.lock();
        st.open -= 1;
        let refused = matches!(err, RemoteError::TooManyConnections(_));
        if refused {
            let lowered = st.open.max(1);
            if lowered < st.limit {
                tracing::warn!(
                    "server refused session {} ({}); lowering the session limit to {lowered}",
                    st.open + 1,
                    err
                );
                st.limit = lowered;
            }
            st.last_refusal = Some(self.clock.now());
        }
        self.changed.notify_all();
        refused
    }

    fn recover_limit(&self, st: &mut State<C::Session>) {
        let Some(last) = st.last_refusal else { return };
        if st.limit >= self.config.max {
            st.last_refusal = None;
            return;
        }
        if self.clock.now().saturating_duration_since(last) >= self.config.recover_after {
            st.limit += 1;
            st.last_refusal = Some(self.clock.now());
            tracing::info!("no refusals for a while; session limit raised to {}", st.limit);
        }
    }

    /// Closes sessions idle past the timeout; the mount's janitor calls this every second.
    /// A session counts as open until its socket is closed, so the server never sees more.
    pub fn reap(&self) {
        let now = self.clock.now();
        let timeout = self.config.idle_timeout;
        let expired: Vec<Idle<C::Session>> = {
            let mut st = self.state.lock();
            let (old, fresh) = std::mem::take(&mut st.idle)
                .into_iter()
                .partition(|i| now.saturating_duration_since(i.since) >= timeout);
            st.idle = fresh;
            old
        };
        if expired.is_empty() {
            return;
        }
        tracing::debug!("closing {} idle session(s)", expired.len());
        for idle in expired {
            self.connector.close(idle.session);
            self.state.lock().open -= 1;
        }
        self.changed.notify_all();
    }

    fn lease(self: &Arc<Self>, session: C::Session) -> Lease<C> {
        Lease { pool: Arc::clone(self), session: Some(session), broken: false, unresponsive: false }
    }

    fn give_back(&self, session: C::Session) {
        let mut st = self.state.lock();
        if st.open > st.limit {
            // The limit was lowered while this session was out: close it instead.
            st.open -= 1;
            drop(st);
            self.connector.close(session);
        } else {
            let since = self.clock.now();
            st.idle.push(Idle { session, since });
            drop(st);
        }
        self.changed.notify_all();
    }

    /// Drops a broken session. Its idle siblings are then checked before their next use: one
    /// broken session often means the server restarted or the network dropped them all.
    fn discard(&self, session: C::Session) {
        self.connector.abandon(session);
        let mut st = self.state.lock();
        st.open -= 1;
        let suspect = self.clock.now().checked_sub(self.config.check_after);
        if let Some(long_ago) = suspect {
            for idle in st.idle.iter_mut() {
                idle.since = idle.since.min(long_ago);
            }
        }
        drop(st);
        self.changed.notify_all();
    }

    /// Drops every idle session without a word to the server (it is not answering).
    fn discard_idle(&self) {
        let idle: Vec<Idle<C::Session>> = std::mem::take(&mut self.state.lock().idle);
        for i in idle {
            self.connector.abandon(i.session);
            self.state.lock().open -= 1;
        }
        self.changed.notify_all();
    }

    /// Closes every idle session (at unmount).
    pub fn close_all(&self) {
        let idle: Vec<Idle<C::Session>> = std::mem::take(&mut self.state.lock().idle);
        for i in idle {
            self.connector.close(i.session);
            self.state.lock().open -= 1;
        }
        self.changed.notify_all();
    }

    pub fn has_waiters(&self) -> bool {
        !self.state.lock().queue.is_empty()
    }

    pub fn stats(&self) -> SessionStats {
        let st = self.state.lock();
        SessionStats {
            open: st.open,
            busy: st.open - st.idle.len(),
            limit: st.limit,
            max: self.config.max,
            waiting: st.queue.len(),
        }
    }
}

/// A session on loan from the pool. Dropping it gives the session back, or discards it when
/// it was marked broken.
pub struct Lease<C: Connector> {
    pool: Arc<Pool<C>>,
    session: Option<C::Session>,
    broken: bool,
    /// The server did not answer on it: the idle sessions are dropped with it.
    unresponsive: bool,
}

impl<C: Connector> Lease<C> {
    /// The session may be out of step with the server: close it instead of reusing it.
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// The server did not answer on this session in time: the idle sessions are most likely
    /// stuck the same way, and are dropped with it, so the next request does not wait out the
    /// same silence on each of them.
    pub fn mark_unresponsive(&mut self) {
        self.broken = true;
        self.unresponsive = true;
    }
}

impl<C: Connector> std::ops::Deref for Lease<C> {
    type Target = C::Session;
    fn deref(&self) -> &C::Session {
        self.session.as_ref().expect("session present until drop")
    }
}

impl<C: Connector> std::ops::DerefMut for Lease<C> {
    fn deref_mut(&mut self) -> &mut C::Session {
        self.session.as_mut().expect("session present until drop")
    }
}

impl<C: Connector> Drop for Lease<C> {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else { return };
        if self.broken {
            self.pool.discard(session);
            if self.unresponsive {
                self.pool.discard_idle();
            }
        } else {
            self.pool.give_back(session);
        }
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
