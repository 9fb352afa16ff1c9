//! Session resumption: one store per FTP session, shared by its control and data connections
//! (strict servers refuse data connections that do not resume the control session).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use rustls::NamedGroup;
use rustls::client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::pki_types::ServerName;

/// Resumption state of one FTP session: its control connection and its data connections.
/// Every TLS 1.3 ticket the server hands out (on any of them) is kept, because rustls uses up
/// a ticket per resumption; the TLS 1.2 session is reused as is.
#[derive(Debug, Default)]
pub(super) struct SessionStore {
    kx_hint: Mutex<Option<NamedGroup>>,
    tls12: Mutex<Option<Tls12ClientSessionValue>>,
    pub(super) tls13: Mutex<VecDeque<Tls13ClientSessionValue>>,
    /// Tickets received so far, to tell whether a data connection brought one.
    pub(super) received: AtomicU64,
    /// Whether this server sends tickets on data connections (unknown until first seen).
    pub(super) data_tickets: Mutex<Option<bool>>,
}

/// Tickets kept per session; servers send one or two per handshake.
const MAX_TICKETS: usize = 16;

impl ClientSessionStore for SessionStore {
    fn set_kx_hint(&self, _: ServerName<'static>, group: NamedGroup) {
        *self.kx_hint.lock() = Some(group);
    }
    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        *self.kx_hint.lock()
    }
    fn set_tls12_session(&self, _: ServerName<'static>, value: Tls12ClientSessionValue) {
        *self.tls12.lock() = Some(value);
    }
    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.tls12.lock().clone()
    }
    fn remove_tls12_session(&self, _: &ServerName<'static>) {
        *self.tls12.lock() = None;
    }
    fn insert_tls13_ticket(&self, _: ServerName<'static>, value: Tls13ClientSessionValue) {
        self.received.fetch_add(1, Ordering::Relaxed);
        let mut t = self.tls13.lock();
        if t.len() == MAX_TICKETS {
            t.pop_front();
        }
        t.push_back(value);
    }
    fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        // Newest first: older tickets are likelier to have expired.
        self.tls13.lock().pop_back()
    }
}

/// Set once a TLS 1.3 data connection had no ticket left to resume the control session with.
/// rustls spends a ticket per resumption, and some servers hand out one or two per session
/// and none on data connections (ProFTPD's mod_tls), while demanding that every data
/// connection resume the control session. TLS 1.2 sessions resume any number of times, so
/// from then on new sessions use TLS 1.2.
#[derive(Debug, Default)]
pub(super) struct TicketShortage(AtomicBool);

impl TicketShortage {
    /// Records the shortage; warns the first time.
    pub(super) fn note(&self) {
        if !self.0.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the server gave no TLS 1.3 ticket to resume the control session on another data connection \
                 (servers such as ProFTPD hand out one per session, and refuse data connections that do not \
                 resume it); new sessions use TLS 1.2, whose sessions resume any number of times"
            );
        }
    }

    /// Whether new sessions should use TLS 1.2.
    pub(super) fn noted(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
