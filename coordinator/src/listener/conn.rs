//! What one accepted connection has shown of itself, set by the servers above the socket
//! (bytes prove nothing: pings and trickled headers are bytes too):
//!
//! - **pending**: no request yet (gRPC: no Hello on a session). Closed at the handshake
//!   deadline and the first to go at the cap.
//! - **anonymous**: it made a request without credentials. At most `max - reserved` of
//!   these; past that a connection stays pending (so evictable), which keeps a share of
//!   the cap for the next kind.
//! - **trusted**: an updater's Hello was accepted, or a call carried a valid admin token or
//!   agent certificate.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
};

use futures::task::AtomicWaker;

use super::Connections;

const PENDING: u8 = 0;
const ANONYMOUS: u8 = 1;
const TRUSTED: u8 = 2;

/// One accepted connection's place; dropping the last reference frees it.
pub(super) struct ConnState {
    pub(super) connections: Arc<Connections>,
    class: AtomicU8,
    pub(super) evicted: AtomicBool,
    pub(super) waker: AtomicWaker,
}

impl ConnState {
    pub(super) fn new(connections: Arc<Connections>) -> Self {
        Self {
            connections,
            class: AtomicU8::new(PENDING),
            evicted: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        }
    }

    pub(super) fn is_pending(&self) -> bool {
        self.class.load(Ordering::Acquire) == PENDING
    }

    /// Pending and not already chosen for eviction.
    pub(super) fn is_evictable(&self) -> bool {
        self.is_pending() && !self.evicted.load(Ordering::Acquire)
    }

    fn request_arrived(&self) {
        if !self.is_pending() {
            return;
        }
        let connections = &self.connections;
        if !connections.take_anonymous_place() {
            return;
        }
        if self
            .class
            .compare_exchange(PENDING, ANONYMOUS, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            connections.release_anonymous_place();
        }
    }

    fn trusted(&self) {
        match self.class.swap(TRUSTED, Ordering::AcqRel) {
            TRUSTED => return,
            ANONYMOUS => self.connections.release_anonymous_place(),
            _ => {}
        }
        self.connections.add_trusted(1);
    }
}

impl Drop for ConnState {
    fn drop(&mut self) {
        match self.class.load(Ordering::Acquire) {
            ANONYMOUS => self.connections.release_anonymous_place(),
            TRUSTED => self.connections.add_trusted(-1),
            _ => {}
        }
        self.connections.closed();
    }
}

/// A handle on a connection's class for the request handlers; it does not keep the
/// connection's place (a request outliving its connection must not hold it).
#[derive(Clone)]
pub struct Conn(Weak<ConnState>);

impl Conn {
    pub(super) fn new(state: &Arc<ConnState>) -> Self {
        Self(Arc::downgrade(state))
    }

    /// A complete request (HTTP headers, a gRPC call) arrived on this connection.
    pub fn request_arrived(&self) {
        if let Some(state) = self.0.upgrade() {
            state.request_arrived();
        }
    }

    /// The caller proved who it is (Hello accepted, valid token or agent certificate).
    pub fn trusted(&self) {
        if let Some(state) = self.0.upgrade() {
            state.trusted();
        }
    }
}

/// The connect information tonic puts in every request (plain, or inside
/// `TlsConnectInfo`): the peer's address and the connection's [`Conn`].
#[derive(Clone)]
pub struct PeerInfo {
    pub remote_addr: Option<SocketAddr>,
    pub conn: Conn,
}
