//! The lock order of `Fs` (a write handle's `job`, then its `state`, then `Fs::writing`),
//! checked in debug builds. [`Ranked`] is a `parking_lot` mutex with a [`Rank`]: each thread
//! notes the ranks it holds, and a `lock` whose rank is not above every rank the thread holds
//! panics, naming both locks, before it waits (so an inversion fails in the tests instead of
//! deadlocking once in a while in use). Equal ranks are refused too: no code holds two
//! handles' `job` or `state` at once (`rename_pending` discards the replaced handle before it
//! locks the moving one; `settle_tree` settles one file at a time), which would be a deadlock
//! between two handles waiting to happen; and taking the same lock twice deadlocks anyway.
//! `try_lock` and `try_lock_for` never wait for long, so they are not checked, but what they
//! take counts as held. In release builds none of this exists: a `Ranked` is the plain mutex.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};

/// A place in the lock order: a lock may be taken only while every lock this thread holds
/// ranks lower. Zero-sized in release builds.
#[derive(Debug, Clone, Copy)]
pub struct Rank {
    #[cfg(debug_assertions)]
    level: u8,
    #[cfg(debug_assertions)]
    name: &'static str,
}

impl Rank {
    /// A rank named as the panic message names it (the field's name).
    #[cfg_attr(not(debug_assertions), allow(unused_variables))]
    pub const fn new(level: u8, name: &'static str) -> Rank {
        Rank {
            #[cfg(debug_assertions)]
            level,
            #[cfg(debug_assertions)]
            name,
        }
    }
}

/// A write handle's `job` (one upload of it at a time): taken first.
pub const JOB: Rank = Rank::new(1, "job");
/// A write handle's `state`: after its `job`.
pub const STATE: Rank = Rank::new(2, "state");
/// `Fs::writing`: last; no handle's lock is taken while it is held.
pub const WRITING: Rank = Rank::new(3, "writing");

/// A mutex with a place in the lock order; locks like `parking_lot::Mutex`.
pub struct Ranked<T> {
    mutex: Mutex<T>,
    #[cfg(debug_assertions)]
    rank: Rank,
}

/// What [`Ranked::lock`] returns: derefs to the data; dropping it unlocks (and, in debug
/// builds, forgets the rank). Like parking_lot's guard, it stays on the thread that locked.
pub struct RankedGuard<'a, T> {
    guard: MutexGuard<'a, T>,
    #[cfg(debug_assertions)]
    _held: held::Held,
}

impl<T> Ranked<T> {
    #[cfg_attr(not(debug_assertions), allow(unused_variables))]
    pub const fn new(rank: Rank, value: T) -> Ranked<T> {
        Ranked {
            mutex: Mutex::new(value),
            #[cfg(debug_assertions)]
            rank,
        }
    }

    /// Waits for the lock. Debug builds: panics first if this thread holds a lock of the
    /// same or a higher rank.
    pub fn lock(&self) -> RankedGuard<'_, T> {
        #[cfg(debug_assertions)]
        held::check(self.rank);
        self.guard(self.mutex.lock())
    }

    /// The lock if it is free now (not checked: it never waits).
    pub fn try_lock(&self) -> Option<RankedGuard<'_, T>> {
        self.mutex.try_lock().map(|g| self.guard(g))
    }

    /// The lock if it comes free within `timeout` (not checked: it waits no longer).
    pub fn try_lock_for(&self, timeout: Duration) -> Option<RankedGuard<'_, T>> {
        self.mutex.try_lock_for(timeout).map(|g| self.guard(g))
    }

    fn guard<'a>(&'a self, guard: MutexGuard<'a, T>) -> RankedGuard<'a, T> {
        RankedGuard {
            #[cfg(debug_assertions)]
            _held: held::Held::note(self.rank, &self.mutex as *const Mutex<T> as usize),
            guard,
        }
    }
}

impl<T> Deref for RankedGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for RankedGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// Debug builds only: the ranks each thread holds.
#[cfg(debug_assertions)]
mod held {
    use std::cell::RefCell;

    use super::Rank;

    thread_local! {
        /// (rank, address of the mutex) of every ranked lock this thread holds, oldest first.
        static HELD: RefCell<Vec<(Rank, usize)>> = const { RefCell::new(Vec::new()) };
    }

    /// Panics if this thread holds a lock that must not be held when taking one of `rank`.
    pub(super) fn check(rank: Rank) {
        let clash = HELD.with(|h| h.borrow().iter().find(|(r, _)| r.level >= rank.level).map(|(r, _)| r.name));
        if let Some(held) = clash {
            panic!(
                "lock order: took `{}` while holding `{held}` (the order is job -> state -> writing, \
                 one handle at a time; see `Fs`)",
                rank.name
            );
        }
    }

    /// One held lock, noted while it lives. The mutex's address tells it from others of the
    /// same rank, so guards may be dropped in any order.
    pub(super) struct Held(usize);

    impl Held {
        pub(super) fn note(rank: Rank, addr: usize) -> Held {
            HELD.with(|h| h.borrow_mut().push((rank, addr)));
            Held(addr)
        }
    }

    impl Drop for Held {
        fn drop(&mut self) {
            // `try_with`: a guard dropped while the thread's locals are torn down.
            let _ = HELD.try_with(|h| {
                let mut h = h.borrow_mut();
                if let Some(i) = h.iter().rposition(|(_, a)| *a == self.0) {
                    h.remove(i);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_order_works_and_can_be_taken_again() {
        let (job, state, writing) = (Ranked::new(JOB, ()), Ranked::new(STATE, 1), Ranked::new(WRITING, 2));
        for _ in 0..2 {
            let _j = job.lock();
            let mut s = state.lock();
            *s += 1;
            let w = writing.lock();
            assert_eq!(*w, 2);
        }
        // Skipping a step is fine too.
        let _j = job.lock();
        let _w = writing.lock();
    }

    #[test]
    fn guards_dropped_out_of_order_leave_the_right_ones_held() {
        let (job, state, writing) = (Ranked::new(JOB, ()), Ranked::new(STATE, ()), Ranked::new(WRITING, ()));
        let j = job.lock();
        let s = state.lock();
        drop(j);
        // `state` still held: `writing` may follow it.
        let w = writing.lock();
        drop(s);
        drop(w);
        // Nothing held: any order may start again.
        let s = state.lock();
        let other = Ranked::new(JOB, ());
        drop(s);
        let _j = other.lock();
    }

    #[test]
    fn try_lock_is_not_checked_but_counts_as_held() {
        let (state, writing) = (Ranked::new(STATE, ()), Ranked::new(WRITING, ()));
        let _w = writing.lock();
        let s = state.try_lock().expect("free");
        drop(s);
        assert!(state.try_lock_for(Duration::from_millis(1)).is_some());
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "lock order: took `state` while holding `writing`")]
    fn a_handle_lock_under_writing_panics() {
        let (state, writing) = (Ranked::new(STATE, ()), Ranked::new(WRITING, ()));
        let _w = writing.lock();
        let _s = state.lock();
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "lock order: took `job` while holding `state`")]
    fn job_under_state_panics() {
        let (job, state) = (Ranked::new(JOB, ()), Ranked::new(STATE, ()));
        let _s = state.lock();
        let _j = job.lock();
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "lock order: took `state` while holding `state`")]
    fn two_handles_states_at_once_panic() {
        let (a, b) = (Ranked::new(STATE, ()), Ranked::new(STATE, ()));
        let _a = a.lock();
        let _b = b.lock();
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "lock order: took `state` while holding `writing`")]
    fn a_lock_tried_counts_as_held() {
        let (state, writing) = (Ranked::new(STATE, ()), Ranked::new(WRITING, ()));
        let _w = writing.try_lock().expect("free");
        let _s = state.lock();
    }
}
