//! The baseline: a bare tonic bidirectional-stream server speaking the same messages, that
//! answers Hello with Welcome and each heartbeat with its ack, and does nothing else. The
//! coordinator's heartbeat path is compared with this in the same run.

use std::{net::SocketAddr, pin::Pin};

use drover_proto::v1::{
    self as pb,
    coordinator_message::Kind as Down,
    updater_message::Kind as Up,
    updater_service_server::{UpdaterService, UpdaterServiceServer},
};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

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
}

/// Serves the echo on an ephemeral loopback port; returns its address.
pub async fn serve() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(UpdaterServiceServer::new(Echo))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    Ok(addr)
}
