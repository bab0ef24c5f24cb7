//! The baseline: a bare tonic bidirectional-stream server speaking the same messages, that
//! answers Hello with Welcome and each heartbeat with its ack, and does nothing else. The
//! coordinator's heartbeat path is compared with this in the same run. In the default
//! mode it speaks mutual TLS with the coordinator's own server certificate and CA (read
//! from the coordinator's `tls/` directory), so the baseline pays the same TLS.

use std::{net::SocketAddr, path::Path, pin::Pin};

use anyhow::Context as _;

use drover_proto::v1::{
    self as pb,
    coordinator_message::Kind as Down,
    updater_message::Kind as Up,
    updater_service_server::{UpdaterService, UpdaterServiceServer},
};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{
    Request, Response, Status, Streaming,
    transport::{Certificate, Identity, ServerTlsConfig},
};

pub struct Echo;

type Outbound = Pin<Box<dyn Stream<Item = Result<pb::CoordinatorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl UpdaterService for Echo {
    type SessionStream = Outbound;

    async fn session(
        &self,
        request: Request<Streaming<pb::UpdaterMessage>>,
    ) -> Result<Response<Outbound>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                let reply = match message.kind {
                    Some(Up::Hello(_)) => Down::Welcome(pb::Welcome::default()),
                    Some(Up::Heartbeat(h)) => Down::HeartbeatAck(pb::HeartbeatAck {
                        sequence: h.sequence,
                    }),
                    _ => continue,
                };
                if tx
                    .send(Ok(pb::CoordinatorMessage { kind: Some(reply) }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_target(
        &self,
        _: Request<pb::GetTargetRequest>,
    ) -> Result<Response<pb::GetTargetResponse>, Status> {
        Ok(Response::new(pb::GetTargetResponse::default()))
    }

    async fn get_release_metadata(
        &self,
        _: Request<pb::GetReleaseMetadataRequest>,
    ) -> Result<Response<pb::ReleaseMetadata>, Status> {
        Ok(Response::new(pb::ReleaseMetadata::default()))
    }
}

/// Serves the echo on an ephemeral loopback port, over mutual TLS with the certificate,
/// key and CA in `tls_dir` (a coordinator's `tls/`) if given; returns its address.
pub async fn serve(tls_dir: Option<&Path>) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut server = tonic::transport::Server::builder().tcp_nodelay(true);
    if let Some(dir) = tls_dir {
        let read = |name: &str| {
            std::fs::read(dir.join(name))
                .with_context(|| format!("reading {name} in {}", dir.display()))
        };
        server = server.tls_config(
            ServerTlsConfig::new()
                .identity(Identity::from_pem(
                    read("server.pem")?,
                    read("server-key.pem")?,
                ))
                .client_ca_root(Certificate::from_pem(read("ca.pem")?)),
        )?;
    }
    tokio::spawn(
        server
            .add_service(UpdaterServiceServer::new(Echo))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    Ok(addr)
}
