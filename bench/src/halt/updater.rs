//! The halt benchmark's simulated updaters: the real protocol, one connection and session
//! each, acting as a real updater does on a stop: a directive whose rollout epoch is older
//! than one heard is ignored, every new directive is acknowledged at once, and a target is
//! "installed" (it takes `install`) and reported. Each updater connects to replica
//! `index % urls`, and to the next one when its session fails.

use std::{
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
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::load::{self, FleetTls};

pub struct Fleet {
    pub urls: Vec<String>,
    pub tls: Option<FleetTls>,
    pub install: Duration,
    pub live: AtomicU64,
    pub failed: AtomicU64,
    pub installed: AtomicU64,
    /// When each updater first held a directive of the measured epoch (or newer).
    pub heard: Vec<OnceLock<Instant>>,
    /// The epoch whose hearing is measured (0: none yet).
    pub measured_epoch: AtomicU64,
    /// Every install started: when (monotonic, and the wall clock the coordinator's stop
    /// time can be compared with: one machine), and under which epoch.
    pub installs: parking_lot::Mutex<Vec<(Instant, std::time::SystemTime, u64)>>,
}

impl Fleet {
    pub fn new(urls: Vec<String>, tls: Option<FleetTls>, install: Duration, n: usize) -> Arc<Self> {
        Arc::new(Self {
            urls,
            tls,
            install,
            live: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            installed: AtomicU64::new(0),
            heard: (0..n).map(|_| OnceLock::new()).collect(),
            measured_epoch: AtomicU64::new(0),
            installs: parking_lot::Mutex::new(Vec::new()),
        })
    }
}

/// What one updater keeps across its sessions, as a real one keeps its state file.
struct Held {
    version: String,
    /// (rollout id, newest epoch heard).
    epoch: Option<(String, u64)>,
}

pub async fn updater(fleet: Arc<Fleet>, index: usize) {
    let mut held = Held {
        version: "1.0.0".into(),
        epoch: None,
    };
    for attempt in 0..60 {
        let url = &fleet.urls[(index + attempt) % fleet.urls.len()];
        let mut welcomed = false;
        let result = session(&fleet, url, index, &mut held, &mut welcomed).await;
        if welcomed {
            fleet.live.fetch_sub(1, Ordering::Relaxed);
        }
        if result.is_ok() {
            return;
        }
        fleet.failed.fetch_add(1, Ordering::Relaxed);
        // A real updater's first retry after a lost session comes fast, then backs off.
        let pause = if welcomed {
            rand::random::<u64>() % 100
        } else {
            100 + rand::random::<u64>() % 900
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

fn up(kind: Up) -> pb::UpdaterMessage {
    pb::UpdaterMessage { kind: Some(kind) }
}

fn report(agent_id: &str, from: &str, to: &str, directive: &pb::Directive) -> pb::UpdaterMessage {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let at = prost_types::Timestamp {
        seconds: now.as_secs() as i64,
        nanos: 0,
    };
    up(Up::Report(pb::UpdateReport {
        attempt_id: format!("halt-{agent_id}-{to}"),
        from_version: from.into(),
        to_version: to.into(),
        outcome: pb::UpdateOutcome::Succeeded as i32,
        started_at: Some(at),
        finished_at: Some(at),
        directive_id: directive.directive_id.clone(),
        rollout_id: directive.rollout_id.clone(),
        ..Default::default()
    }))
}

fn heartbeat(version: &str) -> pb::UpdaterMessage {
    up(Up::Heartbeat(pb::Heartbeat {
        health: pb::AgentHealth::Healthy as i32,
        state: pb::UpdaterState::Idle as i32,
        agent_version: version.into(),
        ..Default::default()
    }))
}

async fn session(
    fleet: &Fleet,
    url: &str,
    index: usize,
    held: &mut Held,
    welcomed: &mut bool,
) -> anyhow::Result<()> {
    let tls = fleet
        .tls
        .as_ref()
        .map(|tls| (tls.server_ca_pem.as_slice(), tls.agents.get(index)));
    let mut client = UpdaterServiceClient::new(load::connect(url, None, tls).await?);
    let (tx, rx) = mpsc::channel(16);
    let (agent_id, _) = load::agent(index);
    let mut hello = load::hello(index, "halt");
    if let Some(Up::Hello(h)) = &mut hello.kind {
        h.agent_version = held.version.clone();
    }
    tx.send(hello).await?;
    let mut inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();
    // An install under way: when it finishes, and the directive that asked for it.
    let mut installing: Option<(tokio::time::Instant, pb::Directive)> = None;
    loop {
        let finish = async {
            match &installing {
                Some((at, _)) => tokio::time::sleep_until(*at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = inbound.message() => {
                let Some(message) = message? else { anyhow::bail!("stream closed") };
                match message.kind {
                    Some(Down::Welcome(_)) => {
                        fleet.live.fetch_add(1, Ordering::Relaxed);
                        *welcomed = true;
                    }
                    Some(Down::Directive(d)) => {
                        let stale = held.epoch.as_ref().is_some_and(|(rollout, heard)| {
                            *rollout == d.rollout_id && d.rollout_epoch < *heard
                        });
                        if stale {
                            continue;
                        }
                        if !d.rollout_id.is_empty() {
                            held.epoch = Some((d.rollout_id.clone(), d.rollout_epoch));
                            tx.send(up(Up::DirectiveAck(pb::DirectiveAck {
                                directive_id: d.directive_id.clone(),
                                rollout_id: d.rollout_id.clone(),
                                rollout_epoch: d.rollout_epoch,
                            })))
                            .await?;
                        }
                        let measured = fleet.measured_epoch.load(Ordering::Acquire);
                        if measured > 0 && d.rollout_epoch >= measured {
                            let _ = fleet.heard[index].set(Instant::now());
                        }
                        let wants = !d.target_version.is_empty() && d.target_version != held.version;
                        if wants && installing.is_none() {
                            let now = (Instant::now(), std::time::SystemTime::now());
                            fleet.installs.lock().push((now.0, now.1, d.rollout_epoch));
                            installing = Some((tokio::time::Instant::now() + fleet.install, d));
                        }
                    }
                    _ => {}
                }
            }
            () = finish => {
                let Some((_, directive)) = installing.take() else { continue };
                let from = std::mem::replace(&mut held.version, directive.target_version.clone());
                tx.send(report(&agent_id, &from, &held.version, &directive)).await?;
                tx.send(heartbeat(&held.version)).await?;
                fleet.installed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
