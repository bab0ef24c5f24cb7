//! The storm's simulated updaters: one connection and one session each, speaking the real
//! protocol. Each report's attempt id starts with the phase it belongs to, so its ack is
//! timed against that phase.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use drover_proto::v1::{
    self as pb, coordinator_message::Kind as Down, updater_message::Kind as Up,
    updater_service_client::UpdaterServiceClient,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::load::{self, FleetTls};

/// The phases a storm run measures, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Every updater reports at one instant, unprompted.
    Storm,
    /// An admin sets the channel; every updater installs at once and reports.
    EndToEnd,
    /// A rollout moves every updater on (the rollback's set-up, not measured).
    Rollout,
    /// The rollout is rolled back; every updater goes back and reports.
    Rollback,
}

const PHASES: usize = 4;
const ALL: [Phase; PHASES] = [
    Phase::Storm,
    Phase::EndToEnd,
    Phase::Rollout,
    Phase::Rollback,
];
/// The updater that never installs the rollout, so the rollout is still active (not done)
/// when it is rolled back.
pub const STRAGGLER: usize = 0;
/// `Fleet::following` before any phase follows directives.
const NOT_FOLLOWING: usize = usize::MAX;

impl Phase {
    fn index(self) -> usize {
        self as usize
    }

    fn from_attempt(attempt_id: &str) -> Option<Self> {
        let (phase, _) = attempt_id.split_once('-')?;
        ALL.get(phase.parse::<usize>().ok()?).copied()
    }
}

#[derive(Clone, Debug)]
pub struct Wave {
    pub from: String,
    pub to: String,
}

/// What the fleet does, shared with every simulated updater.
pub struct Fleet {
    /// Set to start the storm: every updater reports `from → to` at once.
    pub wave: watch::Sender<Option<Wave>>,
    pub live: AtomicU64,
    /// Per phase, per updater: when its report was sent, and when it was acknowledged.
    sent: [Vec<OnceLock<Instant>>; PHASES],
    acked: [Vec<OnceLock<Instant>>; PHASES],
    pub failed: AtomicU64,
    /// The phase whose directives updaters follow, "installing" the target at once.
    following: AtomicUsize,
}

impl Fleet {
    pub fn new(n: usize) -> Arc<Self> {
        let per_updater = || std::array::from_fn(|_| (0..n).map(|_| OnceLock::new()).collect());
        Arc::new(Self {
            wave: watch::channel(None).0,
            live: AtomicU64::new(0),
            sent: per_updater(),
            acked: per_updater(),
            failed: AtomicU64::new(0),
            following: AtomicUsize::new(NOT_FOLLOWING),
        })
    }

    /// From now on, a directive to a new target is installed and reported as `phase`'s.
    pub fn follow(&self, phase: Phase) {
        self.following.store(phase.index(), Ordering::Relaxed);
    }

    fn following(&self) -> Option<Phase> {
        ALL.get(self.following.load(Ordering::Relaxed)).copied()
    }

    pub fn acked(&self, phase: Phase) -> &[OnceLock<Instant>] {
        &self.acked[phase.index()]
    }

    /// Each acknowledged report's lag: sent (the install finished) → acknowledged (durable).
    pub fn report_lags(&self, phase: Phase) -> Vec<Duration> {
        let sent = &self.sent[phase.index()];
        let acked = &self.acked[phase.index()];
        sent.iter()
            .zip(acked)
            .filter_map(|(s, a)| Some(*a.get()? - *s.get()?))
            .collect()
    }
}

fn report(phase: Phase, agent_id: &str, from: &str, to: &str) -> pb::UpdaterMessage {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let at = prost_types::Timestamp {
        seconds: now.as_secs() as i64,
        nanos: 0,
    };
    pb::UpdaterMessage {
        kind: Some(Up::Report(pb::UpdateReport {
            attempt_id: format!("{}-{agent_id}", phase.index()),
            from_version: from.into(),
            to_version: to.into(),
            outcome: pb::UpdateOutcome::Succeeded as i32,
            started_at: Some(at),
            finished_at: Some(at),
            ..Default::default()
        })),
    }
}

fn heartbeat(version: &str) -> pb::UpdaterMessage {
    pb::UpdaterMessage {
        kind: Some(Up::Heartbeat(pb::Heartbeat {
            health: pb::AgentHealth::Healthy as i32,
            state: pb::UpdaterState::Idle as i32,
            agent_version: version.into(),
            ..Default::default()
        })),
    }
}

/// One updater; a failed session (a refused connect while 10k others connect, say) is
/// retried after a random pause, and counted.
pub async fn updater(
    fleet: Arc<Fleet>,
    url: String,
    tls: Option<FleetTls>,
    sources: u8,
    index: usize,
) {
    for _ in 0..30 {
        let mut welcomed = false;
        let result = session(&fleet, &url, tls.as_ref(), sources, index, &mut welcomed).await;
        if welcomed {
            fleet.live.fetch_sub(1, Ordering::Relaxed);
        }
        let Err(err) = result else { return };
        fleet.failed.fetch_add(1, Ordering::Relaxed);
        if welcomed {
            eprintln!("updater {index}: session lost: {err:#}");
        }
        let pause = rand::random::<u64>() % 1_000;
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    eprintln!("updater {index}: gave up after 30 failed sessions");
}

async fn session(
    fleet: &Fleet,
    url: &str,
    tls: Option<&FleetTls>,
    sources: u8,
    index: usize,
    welcomed: &mut bool,
) -> anyhow::Result<()> {
    let source = load::source_address(sources, index);
    let tls = tls.map(|tls| (tls.server_ca_pem.as_slice(), tls.agents.get(index)));
    let mut client = UpdaterServiceClient::new(load::connect(url, Some(source), tls).await?);
    let (tx, rx) = mpsc::channel(8);
    let (agent_id, _) = load::agent(index);
    tx.send(load::hello(index, "storm")).await?;
    let mut inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();
    let mut waves = fleet.wave.subscribe();
    let mut version = "1.0.0".to_string();
    // Sends a report of `phase` and the heartbeat after it, as a real updater does once an
    // install finished.
    let install = async |phase: Phase, from: &str, to: &str| {
        let _ = fleet.sent[phase.index()][index].set(Instant::now());
        tx.send(report(phase, &agent_id, from, to)).await?;
        tx.send(heartbeat(to)).await
    };
    loop {
        tokio::select! {
            message = inbound.message() => {
                let Some(message) = message? else { anyhow::bail!("stream closed") };
                match message.kind {
                    Some(Down::Welcome(_)) => {
                        fleet.live.fetch_add(1, Ordering::Relaxed);
                        *welcomed = true;
                    }
                    Some(Down::ReportAck(ack)) => {
                        if let Some(phase) = Phase::from_attempt(&ack.attempt_id) {
                            let _ = fleet.acked[phase.index()][index].set(Instant::now());
                        }
                    }
                    Some(Down::Directive(d)) => {
                        let Some(phase) = fleet.following() else { continue };
                        if phase == Phase::Rollout && index == STRAGGLER {
                            continue;
                        }
                        if !d.target_version.is_empty() && d.target_version != version {
                            install(phase, &version, &d.target_version).await?;
                            version = d.target_version.clone();
                        }
                    }
                    _ => {}
                }
            }
            changed = waves.changed() => {
                changed?;
                let Some(wave) = waves.borrow_and_update().clone() else { continue };
                install(Phase::Storm, &wave.from, &wave.to).await?;
                version = wave.to.clone();
            }
        }
    }
}
