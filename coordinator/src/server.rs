//! Wiring: open the store, start the fleet and the supervised background tasks, serve gRPC
//! and HTTP until shutdown (or until a task the coordinator cannot run without fails).

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use drover_proto::v1::{
    FILE_DESCRIPTOR_SET, admin_service_server::AdminServiceServer,
    enrolment_service_server::EnrolmentServiceServer, updater_service_server::UpdaterServiceServer,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::health_server::{Health, HealthServer};

use crate::{
    error::{DroverError, Result},
    fleet::{Fleet, FleetConfig, run_background_tasks},
    grpc::{
        AdminApi, EnrolmentApi, MAX_ADMIN_MESSAGE_BYTES, MAX_ENROLMENT_MESSAGE_BYTES,
        MAX_UPDATER_MESSAGE_BYTES, UpdaterApi,
    },
    http,
    listener::{
        Connections, LimitedListener, ListenerLimits, open_file_limit, resolve_max_connections,
    },
    profile,
    readiness::{self, ReadinessTask},
    retention::{RetentionConfig, run_retention},
    store::Store,
    supervisor::{Policy, Supervisor},
    tls::{self, TlsSettings},
    webhook::Webhooks,
};
use futures::FutureExt;

#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub database: String,
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
    /// Set at start-up if given (handy for demos and for a control plane that deploys us).
    pub control_plane_version: Option<String>,
    pub fleet: FleetConfig,
    /// Where to write the bound addresses as JSON once serving (for tests and scripts).
    pub ready_file: Option<PathBuf>,
    pub max_concurrent_streams: u32,
    /// Connection cap, handshake and idle timeouts, TCP keepalive (both listeners).
    pub listener: ListenerLimits,
    pub retention: RetentionConfig,
    /// How often readiness probes the store with a write.
    pub readiness_interval: Duration,
    /// How often the dashboard's version timeline takes a sample.
    pub version_sample_interval: Duration,
    /// Tests only: this supervised task panics each time it starts.
    pub test_panic_task: Option<String>,
    /// TLS on both listeners (`None`: plaintext, `--insecure`, loopback addresses only).
    pub tls: Option<TlsSettings>,
    /// Receivers of rollout alerts (`--webhook`; empty: none).
    pub webhooks: Vec<String>,
    /// Extra CA certificates (PEM) trusted for https receivers, beside the system roots.
    pub webhook_ca_file: Option<PathBuf>,
}

/// The addresses actually bound (ports may have been 0).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct BoundAddresses {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

/// The ready file: the bound addresses and, with TLS, what clients trust.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReadyFile {
    #[serde(flatten)]
    pub bound: BoundAddresses,
    /// `None`: the coordinator runs `--insecure` (plaintext).
    pub tls: Option<ReadyTls>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReadyTls {
    /// `sha256:HEX` of the CA certificate's DER.
    pub ca_pin: String,
    /// The CA certificate (PEM) clients trust.
    pub ca_file: PathBuf,
    /// The admin profile for droverctl (`DROVER_PROFILE`).
    pub admin_profile: PathBuf,
}

/// Plaintext is for loopback only: refuses `--insecure` with any other listen address.
pub fn check_insecure(listen: &[SocketAddr]) -> Result<()> {
    match listen.iter().find(|addr| !addr.ip().is_loopback()) {
        None => Ok(()),
        Some(addr) => Err(DroverError::invalid(format!(
            "--insecure serves plaintext, so it only listens on loopback addresses \
             (127.0.0.1, ::1), not {addr}; drop --insecure to serve TLS (the default), or \
             listen on 127.0.0.1"
        ))),
    }
}

pub async fn run(config: CoordinatorConfig, shutdown: CancellationToken) -> Result<()> {
    // Refuse test-only hooks, or plaintext off loopback, before touching the store.
    crate::fleet::FleetClock::new(config.fleet.manual_clock_start_ms)?;
    #[cfg(not(feature = "testing"))]
    if config.test_panic_task.is_some() {
        return Err(crate::error::DroverError::invalid(
            "--test-panic-task is for tests only, and this drover-coordinator was built without \
             them; run it without the flag",
        ));
    }
    let webhooks = Webhooks::new(&config.webhooks, config.webhook_ca_file.as_deref())?;
    let listen = [config.grpc_listen, config.http_listen];
    let tls = match config.tls.clone() {
        None => {
            check_insecure(&listen)?;
            tracing::warn!(
                "--insecure: serving plaintext on loopback; anyone on this host can read and speak"
            );
            None
        }
        Some(settings) => {
            let tls = tokio::task::spawn_blocking(move || {
                tls::load_or_create(&settings, &listen).map(|tls| (tls, settings))
            })
            .await
            .map_err(|err| DroverError::Internal(format!("TLS set-up task: {err}")))??;
            tracing::info!(ca_pin = %tls.0.ca_pin, ca_file = %tls.0.ca_file.display(), "TLS on both listeners; clients pin this CA");
            Some(tls)
        }
    };
    let store = Arc::new(Store::open(&config.database).await?);
    tracing::info!(backend = store.backend_name(), "store open and migrated");
    let fleet = Fleet::new(store.clone(), config.fleet.clone()).await?;
    if let Some((tls, _)) = &tls {
        fleet.enable_enrolment(tls.agents.clone(), tls.ca_pem.clone());
        fleet.remember_live_join_tokens().await?;
    }
    if let Some(version) = &config.control_plane_version {
        fleet
            .set_control_plane_version(version, &startup_flag(), false)
            .await?;
    }

    let file_limit = open_file_limit()?;
    let max_connections = resolve_max_connections(config.listener.max_connections, file_limit)?;
    tracing::info!(
        max_connections,
        open_file_limit = file_limit,
        handshake_timeout_ms = config.listener.handshake_timeout.as_millis() as u64,
        idle_timeout_ms = config.listener.idle_timeout.as_millis() as u64,
        "connection limits"
    );
    let connections = Connections::new(max_connections, config.listener.clone());
    let grpc_listener = bind(config.grpc_listen, "gRPC").await?;
    let http_listener = bind(config.http_listen, "HTTP").await?;
    let bound = BoundAddresses {
        grpc: grpc_listener.local_addr().map_err(io_error)?,
        http: http_listener.local_addr().map_err(io_error)?,
    };

    // Admin access before anything is served: the profile (with the bootstrap token on a
    // first start) and the credential cache; `--insecure` takes no tokens.
    let ready_tls = match &tls {
        None => {
            fleet.admins().open_without_tokens();
            tracing::warn!("--insecure: admin calls need no token; every caller is an admin");
            None
        }
        Some((tls, settings)) => {
            let admin_profile =
                profile::prepare(&fleet, &settings.data_dir, bound.grpc, tls).await?;
            tracing::info!(profile = %admin_profile.display(), "droverctl: export DROVER_PROFILE={}", admin_profile.display());
            Some(ReadyTls {
                ca_pin: tls.ca_pin.clone(),
                ca_file: std::path::absolute(&tls.ca_file).unwrap_or_else(|_| tls.ca_file.clone()),
                admin_profile,
            })
        }
    };

    let supervisor = Supervisor::new(shutdown.clone(), config.test_panic_task.clone());
    run_background_tasks(&fleet, &supervisor);
    let (retention_store, retention) = (store.clone(), config.retention.clone());
    supervisor.spawn("retention", Policy::Restart, move |shutdown| {
        run_retention(retention_store.clone(), retention.clone(), shutdown)
    });
    if let Some(webhooks) = webhooks {
        let queue = fleet.alerts().clone();
        queue.enable(webhooks.receivers());
        supervisor.spawn("webhooks", Policy::Restart, move |shutdown| {
            webhooks.clone().run(queue.clone(), shutdown)
        });
    }
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    readiness::set_health(&health_reporter, tonic_health::ServingStatus::NotServing).await;
    let (verdict_tx, verdict) = readiness::channel();
    let (readiness_store, readiness_supervisor) = (store.clone(), supervisor.clone());
    let readiness_interval = config.readiness_interval;
    // Without it nobody would notice the coordinator turning unhealthy: a failure stops us.
    supervisor.spawn("readiness", Policy::ExitProcess, move |shutdown| {
        ReadinessTask {
            store: readiness_store.clone(),
            supervisor: readiness_supervisor.clone(),
            health: health_reporter.clone(),
            verdict: verdict_tx.clone(),
            interval: readiness_interval,
        }
        .run(shutdown)
    });

    // The servers are not restarted: if one stops before shutdown, the coordinator stops
    // and exits non-zero.
    let stopped_server = Arc::new(parking_lot::Mutex::new(None));
    let grpc_listener = LimitedListener::new(grpc_listener, connections.clone(), "gRPC");
    let live = crate::live::start(
        &fleet,
        &supervisor,
        std::time::Duration::from_secs(1),
        config.version_sample_interval,
    );
    let service_manager = tokio::spawn(crate::service_manager::notify_readiness(
        verdict.clone(),
        shutdown.clone(),
    ));
    let router = http::router(fleet.clone(), verdict, connections.clone(), live);
    let http_listener = LimitedListener::new(http_listener, connections, "HTTP");
    let handshake_timeout = config.listener.handshake_timeout;
    let grpc_server = {
        let (fleet, streams) = (fleet.clone(), config.max_concurrent_streams);
        let shutdown = shutdown.clone();
        match &tls {
            Some((tls, _)) => {
                let incoming = tls::accept_tls(
                    grpc_listener,
                    tls.grpc.clone(),
                    handshake_timeout,
                    bound.grpc,
                );
                serve_grpc(
                    fleet,
                    incoming.into_stream(),
                    health_service,
                    streams,
                    shutdown,
                )
                .boxed()
            }
            None => serve_grpc(
                fleet,
                grpc_listener.into_stream(),
                health_service,
                streams,
                shutdown,
            )
            .boxed(),
        }
    };
    let http_server = match &tls {
        Some((tls, _)) => {
            let incoming = tls::accept_tls(
                http_listener,
                tls.http.clone(),
                handshake_timeout,
                bound.http,
            );
            let accept_loop = incoming.stopped();
            let serve = http::serve::serve(incoming, router, handshake_timeout, shutdown.clone());
            async move {
                tokio::select! {
                    () = serve => {}
                    // Ends this server, which stops the coordinator (see stop_if_it_ends).
                    () = accept_loop.cancelled() => {
                        tracing::error!("the HTTPS accept loop stopped");
                    }
                }
            }
            .boxed()
        }
        None => {
            http::serve::serve(http_listener, router, handshake_timeout, shutdown.clone()).boxed()
        }
    };
    let grpc = tokio::spawn(stop_if_it_ends(
        "gRPC server",
        grpc_server,
        shutdown.clone(),
        stopped_server.clone(),
    ));
    let http = tokio::spawn(stop_if_it_ends(
        "HTTP server",
        http_server,
        shutdown.clone(),
        stopped_server.clone(),
    ));

    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(grpc = %bound.grpc, http = %bound.http, scheme, "coordinator serving");
    if let Some(path) = &config.ready_file {
        let ready = ReadyFile {
            bound,
            tls: ready_tls,
        };
        let json = serde_json::to_vec(&ready).map_err(|e| DroverError::Internal(e.to_string()))?;
        write_atomically(path, &json).await?;
    }

    shutdown.cancelled().await;
    let _ = tokio::join!(grpc, http, supervisor.join(), service_manager);
    store.close().await;
    if let Some(server) = *stopped_server.lock() {
        return Err(DroverError::Internal(format!(
            "the {server} stopped unexpectedly; the coordinator stopped"
        )));
    }
    match supervisor.fatal() {
        None => Ok(()),
        Some((task, cause)) => Err(DroverError::Internal(format!(
            "the supervised task {task} failed ({cause}); the coordinator stopped"
        ))),
    }
}

/// Runs a server; if it ends before shutdown was asked for, records it and shuts down.
async fn stop_if_it_ends(
    name: &'static str,
    server: impl std::future::Future<Output = ()>,
    shutdown: CancellationToken,
    stopped: Arc<parking_lot::Mutex<Option<&'static str>>>,
) {
    server.await;
    if !shutdown.is_cancelled() {
        stopped.lock().get_or_insert(name);
        shutdown.cancel();
        tracing::error!(server = name, "server stopped unexpectedly; shutting down");
    }
}

async fn serve_grpc<S, IO>(
    fleet: Arc<Fleet>,
    incoming: S,
    health_service: HealthServer<impl Health>,
    max_concurrent_streams: u32,
    shutdown: CancellationToken,
) where
    S: futures::Stream<Item = std::result::Result<IO, std::io::Error>> + Send + 'static,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
{
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1();
    let reflection = match reflection {
        Ok(service) => Some(service),
        Err(err) => {
            tracing::warn!(error = %err, "gRPC reflection disabled");
            None
        }
    };
    let updater = UpdaterServiceServer::new(UpdaterApi::new(fleet.clone()))
        .max_decoding_message_size(MAX_UPDATER_MESSAGE_BYTES);
    let enrolment = EnrolmentServiceServer::new(EnrolmentApi::new(fleet.clone()))
        .max_decoding_message_size(MAX_ENROLMENT_MESSAGE_BYTES);
    let admin = tonic::service::interceptor::InterceptedService::new(
        AdminServiceServer::new(AdminApi::new(fleet.clone()))
            .max_decoding_message_size(MAX_ADMIN_MESSAGE_BYTES),
        crate::grpc::admin_interceptor(fleet.clone()),
    );
    let sessions_closed = shutdown.clone();
    let result = tonic::transport::Server::builder()
        .layer(crate::grpc::timing::TimingLayer::new(
            fleet.metrics().clone(),
        ))
        .layer(crate::grpc::peer::RequestArrivedLayer)
        .max_concurrent_streams(max_concurrent_streams)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        // TCP keepalive and no-delay are set on each accepted socket (`listener`).
        .add_service(health_service)
        .add_optional_service(reflection)
        .add_service(updater)
        .add_service(enrolment)
        .add_service(admin)
        .serve_with_incoming_shutdown(incoming, async move {
            sessions_closed.cancelled().await;
            // Open streams would hold graceful shutdown forever: end them first.
            fleet.shutdown.cancel();
        })
        .await;
    if let Err(err) = result {
        tracing::error!(error = %err, "gRPC server failed");
    }
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|err| {
        DroverError::invalid(format!(
            "cannot listen for {what} on {addr} ({err}); pick a free address with the listen flag"
        ))
    })
}

fn io_error(err: std::io::Error) -> DroverError {
    DroverError::Internal(err.to_string())
}

async fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    tokio::fs::write(&tmp, bytes).await.map_err(io_error)?;
    tokio::fs::rename(&tmp, path).await.map_err(io_error)
}

/// `--control-plane-version` at start: recorded (and audited) as the operator's own change.
fn startup_flag() -> crate::fleet::Caller {
    crate::fleet::Caller::operator("startup flag", "SetControlPlaneVersion", "control plane")
}
