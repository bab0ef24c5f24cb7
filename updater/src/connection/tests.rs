//! The stream against a tiny in-process coordinator that pushes directives faster than the
//! heartbeat interval: heartbeats must keep their own schedule.

use std::{pin::Pin, sync::Arc, time::Duration};

use drover_proto::v1::{
    self as pb,
    coordinator_message::Kind as Down,
    updater_message::Kind as Up,
    updater_service_server::{UpdaterService, UpdaterServiceServer},
};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::{
    shared::{Shared, test_config},
    state::StateStore,
};

const HEARTBEAT: Duration = Duration::from_millis(300);
const PUSH_EVERY: Duration = Duration::from_millis(60);

/// Welcomes with `HEARTBEAT`, then pushes a new directive every `PUSH_EVERY` and forwards
/// every heartbeat it receives to `heartbeats`.
struct PushyCoordinator {
    heartbeats: mpsc::UnboundedSender<u64>,
}

type Outbound = Pin<Box<dyn Stream<Item = Result<pb::CoordinatorMessage, Status>> + Send>>;

fn down(kind: Down) -> Result<pb::CoordinatorMessage, Status> {
    Ok(pb::CoordinatorMessage { kind: Some(kind) })
}

#[tonic::async_trait]
impl UpdaterService for PushyCoordinator {
    type SessionStream = Outbound;

    async fn session(
        &self,
        request: Request<Streaming<pb::UpdaterMessage>>,
    ) -> Result<Response<Outbound>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let welcome = pb::Welcome {
            heartbeat_interval: HEARTBEAT.try_into().ok(),
            ..pb::Welcome::default()
        };
        tx.send(down(Down::Welcome(welcome))).await.ok();
        let pushes = tx.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(PUSH_EVERY);
            for n in 0u64.. {
                interval.tick().await;
                let directive = pb::Directive {
                    directive_id: format!("d-{n}"),
                    target_version: if n % 2 == 0 { "1.1.0" } else { "1.2.0" }.into(),
                    ..pb::Directive::default()
                };
                if pushes.send(down(Down::Directive(directive))).await.is_err() {
                    return;
                }
            }
        });
        let heartbeats = self.heartbeats.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                if let Some(Up::Heartbeat(h)) = message.kind {
                    heartbeats.send(h.sequence).ok();
                }
            }
            drop(tx);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_target(
        &self,
        _: Request<pb::GetTargetRequest>,
    ) -> Result<Response<pb::GetTargetResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn get_release_metadata(
        &self,
        _: Request<pb::GetReleaseMetadataRequest>,
    ) -> Result<Response<pb::ReleaseMetadata>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

#[tokio::test]
async fn heartbeats_keep_their_schedule_while_directives_arrive_faster() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (heartbeats_tx, mut heartbeats) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(UpdaterServiceServer::new(PushyCoordinator {
                heartbeats: heartbeats_tx,
            }))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let store = StateStore::Memory {
        agent_id: "agent-1".into(),
    };
    let state = store.load(Some("1.0.0".into())).await.unwrap();
    let shared = Arc::new(Shared::new(
        test_config(&format!("http://{addr}"), &[]),
        store,
        state,
    ));
    // Only the connection runs: no manager, so nothing else wakes it to send a heartbeat.
    let (directives_tx, mut directives) = mpsc::channel(16);
    let shutdown = CancellationToken::new();
    let connection = tokio::spawn(super::run(shared, directives_tx, shutdown.clone()));
    let received = tokio::spawn(async move {
        let mut count = 0u64;
        while directives.recv().await.is_some() {
            count += 1;
        }
        count
    });

    // Five heartbeats take ~1.5 s on schedule; with the timer reset by every push, none come.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for expected in 1..=5u64 {
        let sequence = tokio::time::timeout_at(deadline, heartbeats.recv())
            .await
            .unwrap_or_else(|_| panic!("heartbeat {expected} did not arrive within 10 s"))
            .unwrap();
        assert_eq!(sequence, expected);
    }
    shutdown.cancel();
    connection.await.unwrap();
    let pushed = received.await.unwrap();
    assert!(
        pushed >= 10,
        "only {pushed} directives arrived: the test did not push"
    );
}

#[tokio::test]
async fn a_dead_address_is_skipped_at_once_for_the_next_one() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dead = {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        closed.local_addr().unwrap()
    };
    let (heartbeats_tx, mut heartbeats) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(UpdaterServiceServer::new(PushyCoordinator {
                heartbeats: heartbeats_tx,
            }))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let store = StateStore::Memory {
        agent_id: "agent-1".into(),
    };
    let state = store.load(Some("1.0.0".into())).await.unwrap();
    let mut config = test_config(&format!("http://{dead},http://{addr}"), &[]);
    // A backoff between the two addresses would miss the deadline below.
    config.backoff = crate::backoff::Backoff {
        base: Duration::from_secs(60),
        cap: Duration::from_secs(60),
    };
    let shared = Arc::new(Shared::new(config, store, state));
    let (directives_tx, mut directives) = mpsc::channel(16);
    tokio::spawn(async move { while directives.recv().await.is_some() {} });
    let shutdown = CancellationToken::new();
    let connection = tokio::spawn(super::run(shared.clone(), directives_tx, shutdown.clone()));
    tokio::time::timeout(Duration::from_secs(5), heartbeats.recv())
        .await
        .expect("connected to the live address within 5 s, whichever came first")
        .unwrap();
    let connected = shared.connected.lock().clone().expect("connected");
    assert_eq!(connected.url, format!("http://{addr}"));
    shutdown.cancel();
    connection.await.unwrap();
}
