//! The fake's gate: holds downloads back while closed.

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

/// Holds downloads back while closed (see [`super::FakeRemote::gate`]).
#[derive(Default)]
pub struct Gate {
    closed: Mutex<bool>,
    opened: parking_lot::Condvar,
    /// Downloads waiting at the gate now.
    waiting: AtomicUsize,
}

impl Gate {
    /// Downloads waiting at the gate now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    pub fn close(&self) {
        *self.closed.lock() = true;
    }

    pub fn open(&self) {
        *self.closed.lock() = false;
        self.opened.notify_all();
    }

    pub(super) fn pass(&self) {
        let mut closed = self.closed.lock();
        if *closed {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            while *closed {
                self.opened.wait(&mut closed);
            }
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
