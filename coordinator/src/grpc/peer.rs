//! Who is at the other end of a call: the connection's [`PeerInfo`] (its address and
//! class handle) and, over TLS, the client's certificate chain. tonic's own
//! `remote_addr`/`peer_certs` only know its built-in connect info, so these replace them.

use std::{
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
};

use tonic::{
    codegen::http,
    transport::{CertificateDer, server::TlsConnectInfo},
};

use crate::listener::{Conn, PeerInfo};

/// The Session call is marked by its Hello, not by its arrival.
const SESSION_PATH: &str = "/drover.v1.UpdaterService/Session";

fn info(extensions: &http::Extensions) -> Option<&PeerInfo> {
    extensions
        .get::<TlsConnectInfo<PeerInfo>>()
        .map(TlsConnectInfo::get_ref)
        .or_else(|| extensions.get::<PeerInfo>())
}

pub fn remote_addr<T>(request: &tonic::Request<T>) -> Option<SocketAddr> {
    info(request.extensions())?.remote_addr
}

pub fn conn<T>(request: &tonic::Request<T>) -> Option<Conn> {
    info(request.extensions()).map(|info| info.conn.clone())
}

pub fn peer_certs<T>(request: &tonic::Request<T>) -> Option<Arc<Vec<CertificateDer<'static>>>> {
    request
        .extensions()
        .get::<TlsConnectInfo<PeerInfo>>()?
        .peer_certs()
}

/// Marks the connection of every call but a Session as having made a request.
#[derive(Clone, Default)]
pub struct RequestArrivedLayer;

impl<S> tower_layer::Layer<S> for RequestArrivedLayer {
    type Service = RequestArrived<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestArrived { inner }
    }
}

#[derive(Clone)]
pub struct RequestArrived<S> {
    inner: S,
}

impl<S, B> tower_service::Service<http::Request<B>> for RequestArrived<S>
where
    S: tower_service::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != SESSION_PATH
            && let Some(info) = info(request.extensions())
        {
            info.conn.request_arrived();
        }
        self.inner.call(request)
    }
}
