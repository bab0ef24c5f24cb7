//! Simulated updaters for load: each its own TCP connection (from one of several 127.0.0.x
//! source addresses, past the per-address port limit) and one stream, speaking the real
//! protocol. They reconnect with jittered backoff, so a coordinator restart can be timed.
//! In the default mode each presents its own enrolled certificate over TLS.

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use drover_proto::v1::{
    self as pb, coordinator_message::Kind as Down, updater_message::Kind as Up,
    updater_service_client::UpdaterServiceClient,
};
use drover_tests::enrol::AgentCert;
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// TLS for a fleet: the CA its server's certificate chains to, and updater `i`'s enrolled
/// certificate (`agents[i]`, whose id and group the Hello then names).
#[derive(Clone)]
pub struct FleetTls {
    pub server_ca_pem: Arc<Vec<u8>>,
    pub agents: Arc<Vec<AgentCert>>,
}

/// How often the fleet sends heartbeats, and whether it asks for (and times) acks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pace {
    pub every: Duration,
    pub timed: bool,
}

pub struct Shared {
    /// Updater `i` connects to `urls[(offset + i) % len]`.
    pub urls: Vec<String>,
    /// `None`: plaintext, with ids `load-{index:06}`.
    pub tls: Option<FleetTls>,
    /// Changed while the fleet runs (see [`Shared::set_pace`]).
    pace: watch::Sender<Pace>,
    /// Heartbeat → ack times while the pace is `timed`.
    pub ack_latencies: parking_lot::Mutex<Vec<Duration>>,
    /// This process's first updater index (several loader processes share one fleet).
    pub offset: usize,
    pub sources: u8,
    /// Sessions currently open (welcomed and not yet broken).
    pub live: AtomicU64,
    pub errors: AtomicU64,
    pub heartbeats: AtomicU64,
    /// The version a push is expected to carry, and when each updater first held it.
    pub push_target: parking_lot::Mutex<String>,
    pub push_seen: Vec<OnceLock<Instant>>,
    /// The same moment on the Unix clock, comparable across processes.
    pub push_seen_unix_ms: Vec<OnceLock<i64>>,
    /// Connection attempts (TCP and TLS handshakes) in progress at once. Each real updater
    /// has its host's CPU for its side of the handshake; thousands here share two cores,
    /// and unbounded they all time out together (100k over TLS: 25 connected a second).
    connecting: tokio::sync::Semaphore,
}

/// See [`Shared::connecting`]: enough to keep a server's handshakes busy.
const CONNECTING_AT_ONCE: usize = 64;

impl Shared {
    /// One coordinator's fleet of `count`, speaking TLS with `tls`'s certificates (`None`:
    /// plaintext).
    pub fn with_tls(
        url: String,
        sources: u8,
        heartbeat: Duration,
        count: usize,
        tls: Option<FleetTls>,
    ) -> Arc<Self> {
        let mut shared = Self::build(vec![url], sources, heartbeat, count, 0);
        shared.tls = tls;
        Arc::new(shared)
    }

    /// Every updater sends heartbeats at this pace from now on (re-armed at once).
    pub fn set_pace(&self, pace: Pace) {
        self.pace.send_replace(pace);
    }

    /// `count` updaters from index `offset` on, spread over `urls`; `tls.agents[i]` is
    /// local updater `i`'s.
    pub fn spread(
        urls: Vec<String>,
        sources: u8,
        heartbeat: Duration,
        count: usize,
        offset: usize,
        tls: Option<FleetTls>,
    ) -> Arc<Self> {
        let mut shared = Self::build(urls, sources, heartbeat, count, offset);
        shared.tls = tls;
        Arc::new(shared)
    }

    fn build(
        urls: Vec<String>,
        sources: u8,
        heartbeat: Duration,
        count: usize,
        offset: usize,
    ) -> Self {
        Self {
            urls,
            tls: None,
            pace: watch::Sender::new(Pace {
                every: heartbeat,
                timed: false,
            }),
            ack_latencies: parking_lot::Mutex::new(Vec::new()),
            offset,
            sources: sources.max(1),
            live: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            heartbeats: AtomicU64::new(0),
            push_target: parking_lot::Mutex::new(String::new()),
            push_seen: (0..count).map(|_| OnceLock::new()).collect(),
            push_seen_unix_ms: (0..count).map(|_| OnceLock::new()).collect(),
            connecting: tokio::sync::Semaphore::new(CONNECTING_AT_ONCE),
        }
    }
}

/// A channel to `url` from `source`; over TLS when `tls` gives the server's CA and, for
/// mutual TLS, this updater's certificate.
pub async fn connect(
    url: &str,
    source: Option<IpAddr>,
    tls: Option<(&[u8], Option<&AgentCert>)>,
) -> anyhow::Result<Channel> {
    let mut endpoint = Endpoint::from_shared(url.to_string())?
        .local_address(source)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(20));
    if let Some((ca, agent)) = tls {
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let Some(agent) = agent {
            config = config.identity(Identity::from_pem(&agent.cert_pem, &agent.key_pem));
        }
        endpoint = endpoint.tls_config(config)?;
    }
    Ok(endpoint.connect().await?)
}

/// The loopback source address of updater `index` (127.0.0.1 … 127.0.0.`sources`).
pub fn source_address(sources: u8, index: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        0,
        1 + (index % sources.max(1) as usize) as u8,
    ))
}

fn source(shared: &Shared, index: usize) -> IpAddr {
    source_address(shared.sources, shared.offset + index)
}

/// Updater `index`'s agent id and group (`enrolled.rs` enrols them under these).
pub fn agent(index: usize) -> (String, &'static str) {
    (
        format!("load-{index:06}"),
        ["dev", "staging", "prod"][index % 3],
    )
}

/// The Hello of simulated updater `index`; `who` names the benchmark that sends it.
pub fn hello(index: usize, who: &str) -> pb::UpdaterMessage {
    let (agent_id, group) = agent(index);
    pb::UpdaterMessage {
        kind: Some(Up::Hello(pb::Hello {
            agent_id,
            hostname: who.into(),
            group: group.into(),
            channel: "bench".into(),
            installer: pb::InstallerKind::Simulated as i32,
            agent_version: "1.0.0".into(),
            updater_version: who.into(),
            health: pb::AgentHealth::Healthy as i32,
            ..Default::default()
        })),
    }
}

fn heartbeat(sequence: u64, want_ack: bool) -> pb::UpdaterMessage {
    pb::UpdaterMessage {
        kind: Some(Up::Heartbeat(pb::Heartbeat {
            health: pb::AgentHealth::Healthy as i32,
            state: pb::UpdaterState::Idle as i32,
            agent_version: "1.0.0".into(),
            sequence,
            want_ack,
            ..Default::default()
        })),
    }
}

/// One simulated updater, forever: connect, hello, heartbeats, watch directives.
pub async fn updater(shared: Arc<Shared>, index: usize) {
    let mut attempt = 0u32;
    loop {
        let pushback = match session(&shared, index, &mut attempt).await {
            Ok(()) => None,
            Err(err) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                drover_updater::backoff::pushback(&err)
            }
        };
        let cap = Duration::from_millis(500 * 2u64.pow(attempt.min(4)));
        attempt += 1;
        // As the real updater: at least what a busy coordinator asked for.
        let delay = drover_updater::backoff::honouring(
            cap.mul_f64(rand::rng().random()),
            pushback,
            rand::rng().random(),
        );
        tokio::time::sleep(delay).await;
    }
}

async fn session(shared: &Shared, index: usize, attempt: &mut u32) -> anyhow::Result<()> {
    let global = shared.offset + index;
    let url = &shared.urls[global % shared.urls.len()];
    let tls = shared
        .tls
        .as_ref()
        .map(|tls| (tls.server_ca_pem.as_slice(), tls.agents.get(index)));
    let handshaking = shared.connecting.acquire().await?;
    let channel = connect(url, Some(source(shared, index)), tls).await?;
    drop(handshaking);
    let mut client = UpdaterServiceClient::new(channel);
    let (tx, rx) = mpsc::channel(8);
    tx.send(hello(global, "load")).await?;
    let mut inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();
    let mut welcomed: Option<LiveGuard> = None;
    let mut sequence = 0;
    let mut pace_changes = shared.pace.subscribe();
    let mut pace = *pace_changes.borrow_and_update();
    // Spread the first heartbeats over one interval (and again whenever the pace changes).
    let mut next = tokio::time::Instant::now() + pace.every.mul_f64(rand::rng().random());
    let mut unacked: Option<(u64, Instant)> = None;
    let result = loop {
        tokio::select! {
            message = inbound.message() => {
                let Some(message) = message? else { break Ok(()) };
                match message.kind {
                    Some(Down::Welcome(_)) => {
                        *attempt = 0;
                        shared.live.fetch_add(1, Ordering::Relaxed);
                        welcomed = Some(LiveGuard(&shared.live));
                    }
                    Some(Down::Directive(d))
                        if !d.target_version.is_empty() && *shared.push_target.lock() == d.target_version =>
                    {
                        let _ = shared.push_seen[index].set(Instant::now());
                        let _ = shared.push_seen_unix_ms[index].set(crate::stats::unix_ms());
                    }
                    Some(Down::HeartbeatAck(ack)) => {
                        if let Some((sent_sequence, sent)) = unacked
                            && sent_sequence == ack.sequence
                        {
                            shared.ack_latencies.lock().push(sent.elapsed());
                            unacked = None;
                        }
                    }
                    _ => {}
                }
            }
            Ok(()) = pace_changes.changed() => {
                pace = *pace_changes.borrow_and_update();
                next = tokio::time::Instant::now() + pace.every.mul_f64(rand::rng().random());
            }
            _ = tokio::time::sleep_until(next) => {
                sequence += 1;
                tx.send(heartbeat(sequence, pace.timed)).await?;
                if pace.timed {
                    unacked = Some((sequence, Instant::now()));
                }
                shared.heartbeats.fetch_add(1, Ordering::Relaxed);
                next += pace.every;
            }
        }
    };
    drop(welcomed);
    result
}

/// Counts a session as live until it ends, however it ends (an early `?` included).
struct LiveGuard<'a>(&'a AtomicU64);

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
