//! One accepted connection under the listeners' limits.

use std::{
    io,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    time::{Instant, Sleep},
};

use super::conn::{Conn, ConnState, PeerInfo};

/// An accepted connection that ends with an error when it is evicted, makes no request
/// within the handshake timeout or reads nothing for the idle timeout, and frees its
/// place when dropped.
pub struct LimitedStream {
    io: TcpStream,
    state: Arc<ConnState>,
    accepted_at: Instant,
    last_read: Instant,
    deadline: Pin<Box<Sleep>>,
}

impl LimitedStream {
    pub(super) fn new(io: TcpStream, state: Arc<ConnState>) -> Self {
        let now = Instant::now();
        let deadline = now + state.connections.limits.handshake_timeout;
        Self {
            io,
            state,
            accepted_at: now,
            last_read: now,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    /// The handle through which the servers say what this connection has shown.
    pub fn conn(&self) -> Conn {
        Conn::new(&self.state)
    }

    /// A pending connection's deadline runs from its acceptance, whatever it sends;
    /// afterwards, from the last bytes read.
    fn due(&self) -> Instant {
        let limits = &self.state.connections.limits;
        if self.state.is_pending() {
            self.accepted_at + limits.handshake_timeout
        } else {
            self.last_read + limits.idle_timeout
        }
    }

    /// Ready when the deadline has passed (checked only while reading).
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

    fn timed_out(&self) -> io::Error {
        self.state
            .connections
            .timed_out
            .fetch_add(1, Ordering::Relaxed);
        io::Error::new(
            io::ErrorKind::TimedOut,
            "no request within the handshake timeout, or nothing within the idle timeout",
        )
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
                if buf.filled().len() > before {
                    this.last_read = Instant::now();
                    // A steady trickle never lets the read go pending: check here too.
                    if this.state.is_pending() && this.last_read >= this.due() {
                        return Poll::Ready(Err(this.timed_out()));
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
                    return Poll::Ready(Err(this.timed_out()));
                }
                Poll::Pending
            }
        }
    }
}

fn evicted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "closed to make room: the connection limit was reached and it had made no request",
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
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        PeerInfo {
            remote_addr: self.io.peer_addr().ok(),
            conn: self.conn(),
        }
    }
}
