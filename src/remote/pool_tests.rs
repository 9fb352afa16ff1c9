use super::*;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::thread;

/// A clock that only moves when told to.
struct ManualClock(Mutex<Instant>);

impl ManualClock {
    fn advance(&self, by: Duration) {
        *self.0.lock() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.0.lock()
    }
}

/// Sessions are numbers; `live` counts sockets a server would see.
#[derive(Default)]
struct FakeConnector {
    live: AtomicUsize,
    peak: AtomicUsize,
    connects: AtomicUsize,
    checks: AtomicUsize,
    /// The server refuses sessions beyond this many (421).
    server_cap: Option<usize>,
    fail_checks: std::sync::atomic::AtomicBool,
    /// The server does not answer health checks (frozen).
    silent: std::sync::atomic::AtomicBool,
    /// The next this-many connects are refused (a server restarting).
    refuse_connects: AtomicUsize,
}

impl Connector for FakeConnector {
    type Session = usize;
    fn connect(&self) -> Result<usize> {
        if self.refuse_connects.load(SeqCst) > 0 {
            self.refuse_connects.fetch_sub(1, SeqCst);
            return Err(RemoteError::Connection("connection refused".into()));
        }
        let n = self.live.fetch_add(1, SeqCst) + 1;
        if self.server_cap.is_some_and(|cap| n > cap) {
            self.live.fetch_sub(1, SeqCst);
            return Err(RemoteError::TooManyConnections("421 too many".into()));
        }
        self.peak.fetch_max(n, SeqCst);
        Ok(self.connects.fetch_add(1, SeqCst))
    }
    fn check(&self, _: &mut usize) -> Health {
        self.checks.fetch_add(1, SeqCst);
        if self.silent.load(SeqCst) {
            Health::Unresponsive
        } else if self.fail_checks.load(SeqCst) {
            Health::Dead
        } else {
            Health::Alive
        }
    }
    fn close(&self, _: usize) {
        self.live.fetch_sub(1, SeqCst);
    }
    fn abandon(&self, _: usize) {
        self.live.fetch_sub(1, SeqCst);
    }
}

fn pool(conn: FakeConnector, max: usize) -> (Arc<Pool<FakeConnector>>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
    let mut cfg = PoolConfig::new(max);
    cfg.refusal_retry = Duration::from_secs(3600);
    (Pool::new(conn, cfg, clock.clone()), clock)
}

#[test]
fn never_more_sessions_than_max_and_all_requests_served() {
    let (pool, _) = pool(FakeConnector::default(), 3);
    let served = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (pool, served) = (pool.clone(), served.clone());
            thread::spawn(move || {
                for _ in 0..20 {
                    let lease = pool.checkout().unwrap();
                    thread::sleep(Duration::from_micros(200));
                    drop(lease);
                    served.fetch_add(1, SeqCst);
                }
            })
        })
        .collect();
    workers.into_iter().for_each(|w| w.join().unwrap());
    assert_eq!(served.load(SeqCst), 320);
    assert!(pool.connector().peak.load(SeqCst) <= 3);
    assert_eq!(pool.stats().busy, 0);
}

#[test]
fn sessions_are_reused_not_reopened() {
    let (pool, _) = pool(FakeConnector::default(), 4);
    for _ in 0..10 {
        drop(pool.checkout().unwrap());
    }
    assert_eq!(pool.connector().connects.load(SeqCst), 1);
}

#[test]
fn idle_sessions_are_checked_and_replaced_when_dead() {
    let (pool, clock) = pool(FakeConnector::default(), 2);
    drop(pool.checkout().unwrap());
    drop(pool.checkout().unwrap());
    assert_eq!(pool.connector().checks.load(SeqCst), 0, "fresh sessions need no check");
    clock.advance(Duration::from_secs(11));
    pool.connector().fail_checks.store(true, SeqCst);
    drop(pool.checkout().unwrap());
    assert_eq!(pool.connector().checks.load(SeqCst), 1);
    assert_eq!(pool.connector().connects.load(SeqCst), 2, "dead session replaced");
    assert_eq!(pool.connector().live.load(SeqCst), 1, "dead one no longer counted");
}

#[test]
fn a_server_that_does_not_answer_one_check_costs_one_check_not_one_per_idle_session() {
    let (pool, clock) = pool(FakeConnector::default(), 4);
    let leases: Vec<_> = (0..4).map(|_| pool.checkout().unwrap()).collect();
    drop(leases);
    clock.advance(Duration::from_secs(11));
    pool.connector().silent.store(true, SeqCst);
    drop(pool.checkout().unwrap());
    assert_eq!(pool.connector().checks.load(SeqCst), 1, "the other idle sessions were dropped unasked");
    assert_eq!(pool.stats().open, 1, "one fresh session");
}

#[test]
fn a_server_that_refuses_connections_for_a_while_is_waited_for_within_the_window() {
    let (pool, _) = pool(FakeConnector::default(), 2);
    pool.connector().refuse_connects.store(3, SeqCst);
    assert!(pool.checkout().is_err(), "no window yet (the mount's first session): fails at once");
    pool.set_reconnect_for(Duration::from_secs(3600));
    pool.connector().refuse_connects.store(3, SeqCst);
    drop(pool.checkout().expect("ridden out"));
    assert_eq!(pool.connector().refuse_connects.load(SeqCst), 0);
}

#[test]
fn the_reconnect_window_ends() {
    let conn = FakeConnector::default();
    conn.refuse_connects.store(usize::MAX, SeqCst);
    let mut cfg = PoolConfig::new(2);
    cfg.reconnect_for = Duration::from_millis(500);
    let pool = Pool::new(conn, cfg, Arc::new(crate::clock::SystemClock));
    let started = Instant::now();
    assert!(matches!(pool.checkout(), Err(RemoteError::Connection(_))));
    assert!(started.elapsed() >= Duration::from_millis(500));
}

#[test]
fn idle_sessions_close_after_timeout() {
    let (pool, clock) = pool(FakeConnector::default(), 2);
    drop(pool.checkout().unwrap());
    pool.reap();
    assert_eq!(pool.stats().open, 1);
    clock.advance(Duration::from_secs(121));
    pool.reap();
    assert_eq!(pool.stats().open, 0);
    assert_eq!(pool.connector().live.load(SeqCst), 0);
}

#[test]
fn broken_sessions_are_discarded() {
    let (pool, _) = pool(FakeConnector::default(), 1);
    let mut lease = pool.checkout().unwrap();
    lease.mark_broken();
    drop(lease);
    assert_eq!(pool.stats().open, 0);
    drop(pool.checkout().unwrap());
    assert_eq!(pool.connector().connects.load(SeqCst), 2);
}

#[test]
fn after_a_broken_session_the_idle_ones_are_checked_before_reuse() {
    let (pool, _) = pool(FakeConnector::default(), 3);
    let (a, b) = (pool.checkout().unwrap(), pool.checkout().unwrap());
    drop(a);
    let mut b = b;
    b.mark_broken();
    drop(b);
    drop(pool.checkout().unwrap());
    assert_eq!(pool.connector().checks.load(SeqCst), 1, "the survivor was checked, though fresh");
}

#[test]
fn refusals_lower_the_limit_and_it_recovers_after_quiet() {
    let conn = FakeConnector { server_cap: Some(2), ..Default::default() };
    let (pool, clock) = pool(conn, 5);
    let first = pool.checkout().unwrap();
    let second = pool.checkout().unwrap();
    // The third request is refused by the server; it must wait for a session, not fail.
    let waiter = {
        let pool = pool.clone();
        thread::spawn(move || pool.checkout().map(|_| ()))
    };
    while pool.stats().limit != 2 {
        thread::sleep(Duration::from_millis(5));
    }
    drop(first);
    waiter.join().unwrap().unwrap();
    drop(second);
    assert_eq!(pool.stats().limit, 2);
    clock.advance(Duration::from_secs(61));
    drop(pool.checkout().unwrap());
    assert_eq!(pool.stats().limit, 3, "one step up per quiet period");
}

#[test]
fn requests_are_served_in_arrival_order() {
    let (pool, _) = pool(FakeConnector::default(), 1);
    let held = pool.checkout().unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for i in 0..5 {
        let (p, order) = (pool.clone(), order.clone());
        threads.push(thread::spawn(move || {
            let lease = p.checkout().unwrap();
            order.lock().push(i);
            thread::sleep(Duration::from_millis(2));
            drop(lease);
        }));
        // Let each thread join the queue before the next one.
        while pool.stats().waiting < i + 1 {
            thread::sleep(Duration::from_millis(1));
        }
    }
    drop(held);
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(*order.lock(), vec![0, 1, 2, 3, 4]);
}
