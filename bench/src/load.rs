//! Simulated updaters for load: each its own TCP connection (from one of several 127.0.0.x
//! source addresses, past the per-address port limit) and one stream, speaking the real
//! protocol. They reconnect with jittered backoff, so a coordinator restart can be timed.

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
use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

pub struct Shared {
    /// Updater `i` connects to `urls[(offset + i) % len]`.
    pub urls: Vec<String>,
    /// This process's first updater index (several loader processes share one fleet).
    pub offset: usize,
    pub sources: u8,
    pub heartbeat: Duration,
    /// Sessions currently open (welcomed and not yet broken).
    pub live: AtomicU64,
    pub errors: AtomicU64,
    pub heartbeats: AtomicU64,
    /// The version a push is expected to carry, and when each updater first held it.
    pub push_target: parking_lot::Mutex<String>,
    pub push_seen: Vec<OnceLock<Instant>>,
    /// The same moment on the Unix clock, comparable across processes.
    pub push_seen_unix_ms: Vec<OnceLock<i64>>,
}

impl Shared {
    pub fn new(url: String, sources: u8, heartbeat: Duration, count: usize) -> Arc<Self> {
        Self::spread(vec![url], sources, heartbeat, count, 0)
    }

    /// `count` updaters from index `offset` on, spread over `urls`.
    pub fn spread(
        urls: Vec<String>,
        sources: u8,
        heartbeat: Duration,
        count: usize,
        offset: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            urls,
            offset,
            sources: sources.max(1),
            heartbeat,
            live: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            heartbeats: AtomicU64::new(0),
            push_target: parking_lot::Mutex::new(String::new()),
            push_seen: (0..count).map(|_| OnceLock::new()).collect(),
            push_seen_unix_ms: (0..count).map(|_| OnceLock::new()).collect(),
        })
    }
}

pub async fn connect(url: &str, source: Option<IpAddr>) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(url.to_string())?
        .local_address(source)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(20))
        .connect()
        .await?)
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

fn hello(agent_id: String, index: usize) -> pb::UpdaterMessage {
    pb::UpdaterMessage {
        kind: Some(Up::Hello(pb::Hello {
            agent_id,
            hostname: "load".into(),
            group: ["dev", "staging", "prod"][index % 3].into(),
            channel: "bench".into(),
            installer: pb::InstallerKind::Simulated as i32,
            agent_version: "1.0.0".into(),
            updater_version: "load".into(),
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
        if let Err(_err) = session(&shared, index, &mut attempt).await {
            shared.errors.fetch_add(1, Ordering::Relaxed);
        }
        let cap = Duration::from_millis(500 * 2u64.pow(attempt.min(4)));
        attempt += 1;
        let delay = cap.mul_f64(rand::rng().random());
        tokio::time::sleep(delay).await;
    }
}

async fn session(shared: &Shared, index: usize, attempt: &mut u32) -> anyhow::Result<()> {
    let global = shared.offset + index;
    let url = &shared.urls[global % shared.urls.len()];
    let mut client = UpdaterServiceClient::new(connect(url, Some(source(shared, index))).await?);
    let (tx, rx) = mpsc::channel(8);
    tx.send(hello(format!("load-{global:06}"), global)).await?;
    let mut inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();
    let mut welcomed: Option<LiveGuard> = None;
    let mut sequence = 0;
    // Spread the first heartbeats over one interval.
    let first = shared.heartbeat.mul_f64(rand::rng().random());
    let mut next = tokio::time::Instant::now() + first;
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
                    _ => {}
                }
            }
            _ = tokio::time::sleep_until(next) => {
                sequence += 1;
                tx.send(heartbeat(sequence, false)).await?;
                shared.heartbeats.fetch_add(1, Ordering::Relaxed);
                next += shared.heartbeat;
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

/// Closed loop on `streams` connections for `duration`: each sends a heartbeat asking for
/// an ack and waits for it before the next. Returns (acks, latencies).
pub async fn closed_loop(
    url: &str,
    streams: usize,
    duration: Duration,
    sources: u8,
) -> anyhow::Result<(u64, Vec<Duration>)> {
    let shared = Shared::new(url.to_string(), sources, Duration::from_secs(3600), 0);
    // Every stream connects first; timing starts for all at once.
    let barrier = Arc::new(tokio::sync::Barrier::new(streams));
    let mut tasks = Vec::new();
    for k in 0..streams {
        let source = source(&shared, k);
        let url = url.to_string();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = UpdaterServiceClient::new(connect(&url, Some(source)).await?);
            let (tx, rx) = mpsc::channel(8);
            tx.send(hello(format!("throughput-{k:05}"), k)).await?;
            let mut inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();
            let mut latencies = Vec::new();
            let mut sequence = 0;
            // Wait for Welcome (and skip the first directive) before timing.
            while let Some(m) = inbound.message().await? {
                if matches!(m.kind, Some(Down::Welcome(_))) {
                    break;
                }
            }
            barrier.wait().await;
            let deadline = Instant::now() + duration;
            while Instant::now() < deadline {
                sequence += 1;
                let sent = Instant::now();
                tx.send(heartbeat(sequence, true)).await?;
                loop {
                    match inbound.message().await?.and_then(|m| m.kind) {
                        Some(Down::HeartbeatAck(ack)) if ack.sequence == sequence => break,
                        Some(_) => continue,
                        None => anyhow::bail!("stream closed"),
                    }
                }
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok((all.len() as u64, all))
}
