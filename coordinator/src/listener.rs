//! Limits on both listeners (gRPC and HTTP): a cap on open connections kept below the
//! process's open-file limit, a deadline for a new connection's first bytes, an idle
//! timeout, TCP keepalive and no-delay on every accepted socket, and an accept loop that
//! backs off on errors (EMFILE, ENFILE, …) instead of spinning.
//!
//! - **Cap.** At most `max_connections` are open across both listeners. At the cap, the
//!   oldest connection that has not yet sent its first bytes (`HANDSHAKE_BYTES`) is closed
//!   to make room: a silent connection cannot keep a live client out, and a client that
//!   has spoken is never pushed out by newcomers. If every connection has spoken, a new
//!   one is accepted and closed at once. While evicted connections close, the count may
//!   exceed the cap by at most `max / 16` (at most 64).
//! - **Deadlines.** A connection must send its first `HANDSHAKE_BYTES` within
//!   `handshake_timeout`, and afterwards something at least every `idle_timeout`; else it
//!   is closed. The gRPC server pings every 30 s, so a live gRPC client always answers
//!   within that.
//! - Warnings about refused connections and accept errors are logged at most every 10 s.
//! - **TLS** (`tls.rs`) wraps these streams: a connection counts as started only once its
//!   TLS handshake completed (a ClientHello alone keeps it evictable), and the whole
//!   handshake must finish within `handshake_timeout`.

use std::{
    collections::VecDeque,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use futures::task::AtomicWaker;
use parking_lot::Mutex;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    time::{Instant, Sleep},
};

use crate::error::{DroverError, Result};

/// Bytes a connection must send before it counts as started: the length of the HTTP/2
/// client preface (any HTTP/1.1 request line and headers are longer).
pub const HANDSHAKE_BYTES: u64 = 24;
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
    limits: ListenerLimits,
    open: AtomicUsize,
    refused: AtomicU64,
    evicted: AtomicU64,
    timed_out: AtomicU64,
    accept_errors: AtomicU64,
    /// Connections that have not yet sent their first bytes, oldest first (lazily pruned).
    silent: Mutex<VecDeque<Weak<ConnState>>>,
    last_warning: Mutex<Option<Instant>>,
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct ConnectionStats {
    pub open: usize,
    pub max: usize,
    /// Accepted and closed at once: the cap was reached and every connection had spoken.
    pub refused: u64,
    /// Closed to make room, before they had sent their first bytes.
    pub evicted: u64,
    /// Closed for saying nothing within the handshake or idle timeout.
    pub timed_out: u64,
    pub accept_errors: u64,
}

impl Connections {
    pub fn new(max: usize, limits: ListenerLimits) -> Arc<Self> {
        Arc::new(Self {
            max,
            limits,
            open: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            silent: Mutex::new(VecDeque::new()),
            last_warning: Mutex::new(None),
        })
    }

    pub fn stats(&self) -> ConnectionStats {
        ConnectionStats {
            open: self.open.load(Ordering::Relaxed),
            max: self.max,
            refused: self.refused.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            timed_out: self.timed_out.load(Ordering::Relaxed),
            accept_errors: self.accept_errors.load(Ordering::Relaxed),
        }
    }

    /// Takes a place for a new connection, evicting the oldest silent one at the cap;
    /// `None`: no place.
    fn admit(self: &Arc<Self>) -> Option<Arc<ConnState>> {
        let mut silent = self.silent.lock();
        let open = self.open.load(Ordering::Acquire);
        if open >= self.max {
            let slack = (self.max / 16).clamp(1, 64);
            if open >= self.max + slack || !evict_oldest(&mut silent) {
                return None;
            }
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        if silent.len() > 2 * self.max.max(16) {
            silent.retain(|weak| weak.upgrade().is_some_and(|state| state.is_silent()));
        }
        let state = Arc::new(ConnState {
            connections: self.clone(),
            spoken: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        });
        silent.push_back(Arc::downgrade(&state));
        self.open.fetch_add(1, Ordering::AcqRel);
        Some(state)
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

fn evict_oldest(silent: &mut VecDeque<Weak<ConnState>>) -> bool {
    while let Some(weak) = silent.pop_front() {
        if let Some(state) = weak.upgrade()
            && state.is_silent()
        {
            state.evicted.store(true, Ordering::Release);
            state.waker.wake();
            return true;
        }
    }
    false
}

/// One accepted connection's place; dropping the last reference frees it.
struct ConnState {
    connections: Arc<Connections>,
    spoken: AtomicBool,
    evicted: AtomicBool,
    waker: AtomicWaker,
}

impl ConnState {
    fn is_silent(&self) -> bool {
        !self.spoken.load(Ordering::Acquire) && !self.evicted.load(Ordering::Acquire)
    }
}

impl Drop for ConnState {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Ordering::AcqRel);
    }
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
                        "connection limit reached: closing new connections (raise --max-connections or the open-file limit)"
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

/// An accepted connection that ends with an error when it says nothing in time or is
/// evicted, and frees its place when dropped.
pub struct LimitedStream {
    io: TcpStream,
    state: Arc<ConnState>,
    received: u64,
    accepted_at: Instant,
    last_read: Instant,
    deadline: Pin<Box<Sleep>>,
    /// Counted as started only by [`Self::mark_started`] (after a TLS handshake), not by
    /// its first bytes: a ClientHello alone must not make a connection unevictable.
    start_marked_by_caller: bool,
}

impl LimitedStream {
    fn new(io: TcpStream, state: Arc<ConnState>) -> Self {
        let now = Instant::now();
        let deadline = now + state.connections.limits.handshake_timeout;
        Self {
            io,
            state,
            received: 0,
            accepted_at: now,
            last_read: now,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            start_marked_by_caller: false,
        }
    }

    /// The connection counts as started only when [`Self::mark_started`] says so.
    pub fn defer_start(&mut self) {
        self.start_marked_by_caller = true;
    }

    /// From now on the connection is never evicted to make room (see `defer_start`).
    pub fn mark_started(&self) {
        self.state.spoken.store(true, Ordering::Release);
    }

    fn due(&self) -> Instant {
        let limits = &self.state.connections.limits;
        if self.received < HANDSHAKE_BYTES {
            self.accepted_at + limits.handshake_timeout
        } else {
            self.last_read + limits.idle_timeout
        }
    }

    /// Ready when the connection has been silent too long (checked only while reading).
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let due = self.due();
            if self.deadline.deadline() != due {
                self.deadline.as_mut().reset(due);
            }
            if self.deadline.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if Instant::now() >= self.due() {
                return Poll::Ready(());
            }
        }
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.state.evicted.load(Ordering::Acquire) {
            return Poll::Ready(Err(evicted()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = (buf.filled().len() - before) as u64;
                if read > 0 {
                    this.last_read = Instant::now();
                    this.received = this.received.saturating_add(read);
                    if this.received >= HANDSHAKE_BYTES && !this.start_marked_by_caller {
                        this.state.spoken.store(true, Ordering::Release);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                this.state.waker.register(cx.waker());
                if this.state.evicted.load(Ordering::Acquire) {
                    return Poll::Ready(Err(evicted()));
                }
                if this.poll_deadline(cx).is_ready() {
                    this.state
                        .connections
                        .timed_out
                        .fetch_add(1, Ordering::Relaxed);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the connection said nothing within its handshake or idle timeout",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

fn evicted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "closed to make room: the connection limit was reached and it had said nothing",
    )
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for LimitedStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
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
}
