//! The HTTP server's connection loop (in place of `axum::serve`, which cannot time out
//! slow headers nor tell the listener what a connection has shown): each request marks
//! its connection (`listener::Conn`) and carries the handle for the authentication layer;
//! HTTP/1.1 headers must arrive within the handshake timeout; shutdown is graceful.

use std::time::Duration;

use axum::{Router, body::Body};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use crate::listener::Conn;

/// A connection whose class the servers can mark.
pub trait Classified {
    fn conn(&self) -> Conn;
}

impl Classified for crate::listener::LimitedStream {
    fn conn(&self) -> Conn {
        crate::listener::LimitedStream::conn(self)
    }
}

impl<T: Classified> Classified for tokio_rustls::server::TlsStream<T> {
    fn conn(&self) -> Conn {
        self.get_ref().0.conn()
    }
}

/// Serves `router` on every connection `listener` yields until `shutdown`, then lets open
/// requests finish.
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
) where
    L: axum::serve::Listener,
    L::Io: Classified,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    loop {
        let (io, _peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let conn = io.conn();
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            conn.request_arrived();
            request.extensions_mut().insert(conn.clone());
            router.clone().call(request.map(Body::new))
        });
        let connection = builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::trace!(error = %err, "HTTP connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
}
