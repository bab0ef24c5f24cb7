//! Limits on both listeners (gRPC and HTTP): a cap on open connections kept below the
//! process's open-file limit, a deadline for a new connection's first request, an idle
//! timeout, TCP keepalive and no-delay on every accepted socket, and an accept loop that
//! backs off on errors (EMFILE, ENFILE, …) instead of spinning.
//!
//! - **Classes** (`conn.rs`). The servers mark a connection when a request arrives on it
//!   (anonymous) and when its caller proves who it is (trusted: a Hello accepted, a valid
//!   admin token or agent certificate). Until then it is pending, whatever bytes it sends:
//!   answering pings or trickling headers proves nothing.
//! - **Cap.** At most `max_connections` are open across both listeners. At the cap, the
//!   oldest pending connection is closed to make room, so a silent connection cannot keep
//!   a live client out. Anonymous connections may hold at most `max - reserved` places
//!   (a quarter is reserved): past that, a new one stays pending, so the reserve is
//!   always reachable by evicting. If no connection is pending, a new one is accepted and
//!   closed at once. While evicted connections close, the count may exceed the cap by at
//!   most `max / 16` (at most 64).
//! - **Deadlines.** A connection must make its first request within `handshake_timeout`
//!   of its acceptance (TLS handshake included), and afterwards read something at least
//!   every `idle_timeout`; else it is closed. HTTP/1.1 headers of a later request must
//!   arrive within `handshake_timeout` too (`http_serve.rs`).
//! - Warnings about refused connections and accept errors are logged at most every 10 s.

mod conn;
mod stream;

use std::{
    collections::VecDeque,
    io,
    net::SocketAddr,
    sync::{
        Arc, Weak,
        atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use parking_lot::Mutex;
use tokio::{
    net::{TcpListener, TcpStream},
    time::Instant,
};

use self::conn::ConnState;
pub use self::{
    conn::{Conn, PeerInfo},
    stream::LimitedStream,
};
use crate::error::{DroverError, Result};

/// Open files kept for the store, logs and everything else besides connections.
pub const FILE_HEADROOM: u64 = 256;
const WARN_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// `None`: the open-file limit minus [`FILE_HEADROOM`].
    pub max_connections: Option<usize>,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub tcp_keepalive: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            max_connections: None,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            tcp_keepalive: Duration::from_secs(60),
        }
    }
}

/// The process's soft open-file limit (RLIMIT_NOFILE).
pub fn open_file_limit() -> Result<u64> {
    use nix::sys::resource::{Resource, getrlimit};
    let (soft, _hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|err| DroverError::Internal(format!("reading RLIMIT_NOFILE: {err}")))?;
    Ok(soft)
}

/// The connection cap: the one asked for if it leaves [`FILE_HEADROOM`] files free, else
/// a clear refusal; by default the limit minus the headroom (half the limit if tiny).
pub fn resolve_max_connections(asked: Option<usize>, file_limit: u64) -> Result<usize> {
    let fit = file_limit
        .saturating_sub(FILE_HEADROOM)
        .max(file_limit / 2)
        .max(1);
    match asked {
        None => Ok(usize::try_from(fit).unwrap_or(usize::MAX)),
        Some(0) => Err(DroverError::invalid("--max-connections must be at least 1")),
        Some(asked) if asked as u64 > fit => Err(DroverError::invalid(format!(
            "--max-connections {asked} leaves too few of the process's {file_limit} open \
             files for the store and logs; use at most {fit}, or raise the limit (ulimit -n, \
             or LimitNOFILE= in the systemd unit)"
        ))),
        Some(asked) => Ok(asked),
    }
}

/// Counts shared by both listeners (and shown in `/api/v1/stats`).
pub struct Connections {
    max: usize,
    /// Places anonymous connections may not take.
    reserved: usize,
    limits: ListenerLimits,
    open: AtomicUsize,
    anonymous: AtomicUsize,
    trusted: AtomicI64,
    refused: AtomicU64,
    evicted: AtomicU64,
    timed_out: AtomicU64,
    accept_errors: AtomicU64,
    /// Connections in the order they were accepted, for eviction of the oldest pending
    /// one (lazily pruned).
    accepted: Mutex<VecDeque<Weak<ConnState>>>,
    last_warning: Mutex<Option<Instant>>,
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct ConnectionStats {
    pub open: usize,
    pub max: usize,
    /// Places only trusted (or pending) connections may take.
    pub reserved: usize,
    /// Open connections that made a request without credentials.
    pub anonymous: usize,
    /// Open connections whose caller proved who it is.
    pub trusted: u64,
    /// Accepted and closed at once: the cap was reached and no connection was pending.
    pub refused: u64,
    /// Closed to make room, before they had made a request.
    pub evicted: u64,
    /// Closed for no request within the handshake timeout, or nothing within the idle one.
    pub timed_out: u64,
    pub accept_errors: u64,
}

impl Connections {
    pub fn new(max: usize, limits: ListenerLimits) -> Arc<Self> {
        Arc::new(Self {
            max,
            reserved: max / 4,
            limits,
            open: AtomicUsize::new(0),
            anonymous: AtomicUsize::new(0),
            trusted: AtomicI64::new(0),
            refused: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            accepted: Mutex::new(VecDeque::new()),
            last_warning: Mutex::new(None),
        })
    }

    pub fn stats(&self) -> ConnectionStats {
        ConnectionStats {
            open: self.open.load(Ordering::Relaxed),
            max: self.max,
            reserved: self.reserved,
            anonymous: self.anonymous.load(Ordering::Relaxed),
            trusted: self.trusted.load(Ordering::Relaxed).max(0) as u64,
            refused: self.refused.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            timed_out: self.timed_out.load(Ordering::Relaxed),
            accept_errors: self.accept_errors.load(Ordering::Relaxed),
        }
    }

    /// Takes a place for a new connection, evicting the oldest pending one at the cap;
    /// `None`: no place.
    fn admit(self: &Arc<Self>) -> Option<Arc<ConnState>> {
        let mut accepted = self.accepted.lock();
        let open = self.open.load(Ordering::Acquire);
        if open >= self.max {
            let slack = (self.max / 16).clamp(1, 64);
            if open >= self.max + slack || !evict_oldest(&mut accepted) {
                return None;
            }
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        if accepted.len() > 2 * self.max.max(16) {
            accepted.retain(|weak| weak.upgrade().is_some_and(|state| state.is_evictable()));
        }
        let state = Arc::new(ConnState::new(self.clone()));
        accepted.push_back(Arc::downgrade(&state));
        self.open.fetch_add(1, Ordering::AcqRel);
        Some(state)
    }

    /// An anonymous place, if fewer than `max - reserved` are taken.
    fn take_anonymous_place(&self) -> bool {
        let limit = self.max.saturating_sub(self.reserved).max(1);
        self.anonymous
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    fn release_anonymous_place(&self) {
        self.anonymous.fetch_sub(1, Ordering::AcqRel);
    }

    fn add_trusted(&self, delta: i64) {
        self.trusted.fetch_add(delta, Ordering::Relaxed);
    }

    fn closed(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }

    /// Logs at most every [`WARN_EVERY`].
    fn warn(&self, what: impl FnOnce(ConnectionStats)) {
        let now = Instant::now();
        let mut last = self.last_warning.lock();
        if last.is_none_or(|at| now.duration_since(at) >= WARN_EVERY) {
            *last = Some(now);
            drop(last);
            what(self.stats());
        }
    }
}

fn evict_oldest(accepted: &mut VecDeque<Weak<ConnState>>) -> bool {
    while let Some(weak) = accepted.pop_front() {
        if let Some(state) = weak.upgrade()
            && state.is_evictable()
        {
            state.evicted.store(true, Ordering::Release);
            state.waker.wake();
            return true;
        }
    }
    false
}

/// A listener that applies [`Connections`]' limits; used by both servers.
pub struct LimitedListener {
    listener: TcpListener,
    connections: Arc<Connections>,
    what: &'static str,
    backoff: Duration,
}

impl LimitedListener {
    pub fn new(listener: TcpListener, connections: Arc<Connections>, what: &'static str) -> Self {
        Self {
            listener,
            connections,
            what,
            backoff: Duration::ZERO,
        }
    }

    /// The next admitted connection. Never fails: errors are logged and retried after a
    /// backoff (50 ms doubling to 1 s) so a full file table does not spin the CPU.
    pub async fn accept_limited(&mut self) -> (LimitedStream, SocketAddr) {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    self.accept_error(err).await;
                    continue;
                }
            };
            self.backoff = Duration::ZERO;
            let Some(state) = self.connections.admit() else {
                self.connections.refused.fetch_add(1, Ordering::Relaxed);
                let what = self.what;
                self.connections.warn(|stats| {
                    tracing::warn!(
                        listener = what, open = stats.open, max = stats.max,
                        refused_total = stats.refused,
                        "connection limit reached and no connection is waiting for its first request: closing new connections (raise --max-connections or the open-file limit)"
                    );
                });
                drop(stream);
                continue;
            };
            configure(&stream, &self.connections.limits);
            return (LimitedStream::new(stream, state), peer);
        }
    }

    async fn accept_error(&mut self, err: io::Error) {
        // A connection reset before we accepted it is the client's business.
        if matches!(
            err.kind(),
            io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
        ) {
            return;
        }
        self.connections
            .accept_errors
            .fetch_add(1, Ordering::Relaxed);
        self.backoff = (self.backoff * 2).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let (what, backoff) = (self.what, self.backoff);
        self.connections.warn(|stats| {
            tracing::warn!(
                listener = what, error = %err, retry_in_ms = backoff.as_millis() as u64,
                open = stats.open, "cannot accept connections (out of open files?); backing off"
            );
        });
        tokio::time::sleep(backoff).await;
    }

    /// The accepted connections as a stream, for tonic's `serve_with_incoming_shutdown`.
    pub fn into_stream(
        self,
    ) -> impl futures::Stream<Item = std::result::Result<LimitedStream, io::Error>> + Send {
        futures::stream::unfold(self, |mut listener| async move {
            let (stream, _) = listener.accept_limited().await;
            Some((Ok(stream), listener))
        })
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.accept_limited().await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// Keepalive and no-delay on each accepted socket (a custom incoming stream bypasses
/// tonic's own settings). Failures only cost latency or dead-peer detection: logged.
fn configure(stream: &TcpStream, limits: &ListenerLimits) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(limits.tcp_keepalive)
        .with_interval(Duration::from_secs(10));
    if let Err(err) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %err, "cannot set TCP keepalive");
    }
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(error = %err, "cannot set TCP_NODELAY");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_headroom_and_refuses_too_much() {
        assert_eq!(resolve_max_connections(None, 1024).unwrap(), 768);
        assert_eq!(resolve_max_connections(None, 300).unwrap(), 150);
        assert_eq!(resolve_max_connections(Some(500), 1024).unwrap(), 500);
        let err = resolve_max_connections(Some(900), 1024).unwrap_err();
        assert!(err.to_string().contains("at most 768"), "{err}");
        assert!(resolve_max_connections(Some(0), 1024).is_err());
    }

    /// Anonymous connections fill at most `max - reserved` places; the rest stay pending,
    /// so a trusted newcomer always finds one to evict; trusted ones are never evicted.
    #[test]
    fn anonymous_connections_leave_the_reserve_reachable() {
        let connections = Connections::new(8, ListenerLimits::default());
        let held: Vec<_> = (0..8)
            .map(|_| connections.admit().expect("a place"))
            .collect();
        for state in &held {
            Conn::new(state).request_arrived();
        }
        let stats = connections.stats();
        assert_eq!((stats.open, stats.reserved, stats.anonymous), (8, 2, 6));
        assert_eq!(held.iter().filter(|s| s.is_evictable()).count(), 2);

        // A newcomer at the cap evicts the oldest connection still pending.
        let newcomer = connections.admit().expect("a pending one is evicted");
        assert!(held[6].evicted.load(Ordering::Acquire));
        Conn::new(&newcomer).trusted();
        Conn::new(&held[7]).trusted();
        drop(held);
        let stats = connections.stats();
        assert_eq!((stats.open, stats.anonymous, stats.trusted), (1, 0, 1));
    }

    #[test]
    fn with_nothing_pending_a_newcomer_is_refused() {
        let connections = Connections::new(4, ListenerLimits::default());
        let held: Vec<_> = (0..4)
            .map(|_| connections.admit().expect("a place"))
            .collect();
        for state in &held {
            Conn::new(state).trusted();
        }
        assert!(connections.admit().is_none());
        assert_eq!(connections.stats().trusted, 4);
    }
}
