//! A simulated fleet: many updaters in one process, each with its own real gRPC connection
//! to the coordinator, an in-memory state and a simulated installer. For demos and load.
//! Against an `https://` coordinator each agent enrols itself first (key and certificate in
//! memory only).

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tracing::Instrument;

use crate::{
    address::Coordinators,
    backoff::Backoff,
    connection::coordinator_ca,
    enrol::{self, EnrolRequest},
    health::Health,
    identity::ClientIdentity,
    installers::{backend::Backend, simulated::SimulatedInstaller},
    pin::{CaPin, certificate_pem, fetch_pinned_ca},
    sample::{SampleConfig, SampleSource},
    shared::{Clock, UpdaterConfig},
    state::StateStore,
};

#[derive(Debug, Clone)]
pub struct SimulationConfig {
    /// Every simulated updater fails over between these (enrolment uses the first).
    pub coordinator: Coordinators,
    /// The CA to trust for an `https://` coordinator.
    pub coordinator_ca: Option<tonic::transport::Certificate>,
    pub count: usize,
    pub groups: Vec<String>,
    pub channel: String,
    /// Initial agent versions, spread across the fleet.
    pub versions: Vec<String>,
    pub unhealthy_fraction: f64,
    pub broken_versions: Vec<String>,
    /// The broken versions break only agents with this label.
    pub broken_on: Option<(String, String)>,
    /// How long each install takes; `None`: a random 50–400 ms.
    pub install_time: Option<Duration>,
    pub id_prefix: String,
    /// Connections are opened over this span, so the coordinator is not hit all at once.
    pub ramp_up: Duration,
    pub recheck_interval: Option<Duration>,
    pub seed: u64,
    /// Simulated health samples this often; `None`: none.
    pub sample_interval: Option<Duration>,
    /// Versions whose simulated agents use half as much memory again (a leak to catch).
    pub leaky_versions: Vec<String>,
}

/// How simulated agents enrol with an `https://` coordinator.
#[derive(Debug, Clone)]
pub struct SimulatedEnrolment {
    pub token: String,
    /// Keeps each agent's certificate and key here (`ID.pem`, mode 0600), so a restarted
    /// simulation is the same fleet (agent ids are never enrolled twice); `None`: memory only.
    pub keep_in: Option<std::path::PathBuf>,
}

/// The CA to trust and how agents enrol, from `simulate`'s flags: an `https://` coordinator
/// needs `token`, and its CA from `ca_file` or fetched against `ca_pin`.
pub async fn simulation_tls(
    coordinator: &Coordinators,
    ca_file: Option<&std::path::Path>,
    ca_pin: Option<CaPin>,
    token: Option<String>,
) -> anyhow::Result<(Option<Certificate>, Option<SimulatedEnrolment>)> {
    let https = coordinator.https();
    let enrolment = match (token, https) {
        (Some(token), true) => Some(SimulatedEnrolment {
            token,
            keep_in: None,
        }),
        (None, true) => anyhow::bail!(
            "{coordinator} is served over TLS: give --token T (a join token from `droverctl \
             tokens create`) so each simulated agent can enrol"
        ),
        (_, false) => None,
    };
    let ca = match ca_pin {
        Some(pin) if https => Some(Certificate::from_pem(certificate_pem(
            &fetch_pinned_ca(coordinator.first(), pin).await?,
        ))),
        Some(_) => anyhow::bail!("--ca-pin is for https:// coordinators"),
        None => coordinator_ca(coordinator, ca_file)?,
    };
    Ok((ca, enrolment))
}

/// At most this many enrolments are in flight, so a large fleet does not flood the CA.
const ENROLMENTS_IN_FLIGHT: usize = 16;

/// Runs the fleet without enrolment (an `--insecure` coordinator, or one that needs none).
pub async fn run(config: SimulationConfig, shutdown: CancellationToken) {
    run_enrolled(config, None, shutdown).await;
}

/// Runs the fleet; with `enrolment`, each agent first enrols itself and keeps its key and
/// certificate in memory only.
pub async fn run_enrolled(
    config: SimulationConfig,
    enrolment: Option<SimulatedEnrolment>,
    shutdown: CancellationToken,
) {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut tasks = Vec::with_capacity(config.count);
    let step = config
        .ramp_up
        .checked_div(config.count.max(1) as u32)
        .unwrap_or_default();
    let enroller = match (enrolment, &config.coordinator_ca) {
        (Some(enrolment), Some(ca)) => match enrolment_channel(config.coordinator.first(), ca) {
            Ok(channel) => Some(Arc::new(Enroller {
                channel,
                token: enrolment.token,
                keep_in: enrolment.keep_in,
                in_flight: Semaphore::new(ENROLMENTS_IN_FLIGHT),
            })),
            Err(err) => {
                tracing::error!(error = format!("{err:#}"), "cannot start enrolling");
                return;
            }
        },
        _ => None,
    };
    for i in 0..config.count {
        let agent_id = format!("{}-{i:05}", config.id_prefix);
        let group = config.groups[i % config.groups.len().max(1)].clone();
        let version = config.versions[rng.random_range(0..config.versions.len().max(1))].clone();
        let health = if rng.random_bool(config.unhealthy_fraction.clamp(0.0, 1.0)) {
            Health::Unhealthy
        } else {
            Health::Healthy
        };
        // Each updater's log lines name it, so a test can follow one agent's directives.
        // Log context only: as a trace span it would last the whole run and end at shutdown.
        // (The target ends with `drover_telemetry::LOG_ONLY`.)
        let span = tracing::info_span!(target: "drover_updater::simulate::log_only", "sim", agent = %agent_id);
        let (config, enroller, stop) = (config.clone(), enroller.clone(), shutdown.clone());
        tasks.push(tokio::spawn(
            async move {
                let mut agent = Agent {
                    agent_id,
                    group,
                    identity: ClientIdentity::None,
                };
                if let Some(enroller) = enroller {
                    match enroller.enrol(&agent, &stop).await {
                        Ok(Some(enrolled)) => agent = enrolled,
                        Ok(None) => return,
                        Err(err) => {
                            tracing::error!(
                                error = enrol::refusal(&err),
                                "enrolment refused; this simulated agent is skipped"
                            );
                            return;
                        }
                    }
                }
                let store = StateStore::Memory {
                    agent_id: agent.agent_id.clone(),
                };
                let updater = updater_config(&config, agent, version, health);
                if let Err(err) = crate::run(updater, store, stop).await {
                    tracing::error!(error = format!("{err:#}"), "simulated updater stopped");
                }
            }
            .instrument(span),
        ));
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(step) => {}
        }
    }
    futures::future::join_all(tasks).await;
}

/// Who a simulated agent is.
struct Agent {
    agent_id: String,
    group: String,
    identity: ClientIdentity,
}

fn updater_config(
    config: &SimulationConfig,
    agent: Agent,
    version: String,
    health: Health,
) -> UpdaterConfig {
    let agent_id = agent.agent_id.clone();
    let labels = simulated_host(&agent_id);
    UpdaterConfig {
        coordinator: config.coordinator.clone(),
        coordinator_ca: config.coordinator_ca.clone(),
        identity: agent.identity,
        hostname: format!("{}.sim", agent.agent_id),
        group: agent.group,
        channel: config.channel.clone(),
        labels: labels.clone(),
        installer: Backend::Simulated(SimulatedInstaller {
            broken_versions: if config
                .broken_on
                .as_ref()
                .is_none_or(|label| labels.contains(label))
            {
                config.broken_versions.clone()
            } else {
                Vec::new()
            },
            install_time: config.install_time,
        }),
        initial_agent_version: Some(version),
        recheck_interval: config.recheck_interval,
        backoff: Backoff::default(),
        health: None,
        initial_health: health,
        samples: config.sample_interval.map(|interval| SampleConfig {
            interval,
            source: SampleSource::Simulated {
                seed: crate::sample::seed_of(&agent_id),
                leaky_versions: config.leaky_versions.clone(),
            },
        }),
        health_grace: Duration::from_secs(30),
        clock: Clock::default(),
        directive_mirror: None,
        release: None,
    }
}

/// One TLS channel (without a client certificate) shared by every enrolment; it reconnects
/// by itself.
fn enrolment_channel(coordinator: &str, ca: &Certificate) -> anyhow::Result<Channel> {
    crate::connection::use_ring_crypto();
    Ok(Endpoint::from_shared(coordinator.to_string())
        .with_context(|| format!("'{coordinator}' is not a valid coordinator address"))?
        .connect_timeout(Duration::from_secs(5))
        .tls_config(ClientTlsConfig::new().ca_certificate(ca.clone()))
        .context("cannot use the coordinator's CA")?
        .connect_lazy())
}

struct Enroller {
    channel: Channel,
    token: String,
    keep_in: Option<std::path::PathBuf>,
    in_flight: Semaphore,
}

impl Enroller {
    /// Enrols `agent`, retrying while the coordinator is busy or unreachable; `None` when
    /// the fleet stops first.
    async fn enrol(
        &self,
        agent: &Agent,
        stop: &CancellationToken,
    ) -> anyhow::Result<Option<Agent>> {
        let kept = self
            .keep_in
            .as_ref()
            .map(|dir| dir.join(format!("{}.pem", agent.agent_id)));
        if let Some(file) = &kept
            && let Ok(text) = std::fs::read_to_string(file)
        {
            let (cert_pem, key_pem) = crate::identity::split_credentials(&text)
                .with_context(|| format!("{} is damaged; delete it", file.display()))?;
            return Ok(Some(Agent {
                agent_id: agent.agent_id.clone(),
                group: agent.group.clone(),
                identity: ClientIdentity::InMemory { cert_pem, key_pem },
            }));
        }
        let enrolled = self.enrol_now(agent, stop).await?;
        if let (
            Some(file),
            Some(Agent {
                identity: ClientIdentity::InMemory { cert_pem, key_pem },
                ..
            }),
        ) = (&kept, &enrolled)
        {
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            crate::identity::write_private(
                file,
                crate::identity::credentials(cert_pem, key_pem).as_bytes(),
            )?;
        }
        Ok(enrolled)
    }

    async fn enrol_now(
        &self,
        agent: &Agent,
        stop: &CancellationToken,
    ) -> anyhow::Result<Option<Agent>> {
        let request = EnrolRequest {
            token: self.token.clone(),
            agent_id: agent.agent_id.clone(),
            group: agent.group.clone(),
            hostname: format!("{}.sim", agent.agent_id),
        };
        let backoff = Backoff::default();
        for attempt in 0u32.. {
            let outcome = tokio::select! {
                _ = stop.cancelled() => return Ok(None),
                outcome = async {
                    let _permit = self.in_flight.acquire().await?;
                    enrol::enroll(self.channel.clone(), &request).await
                } => outcome,
            };
            match outcome {
                Ok(enrolled) => {
                    return Ok(Some(Agent {
                        agent_id: enrolled.agent_id,
                        group: enrolled.group,
                        identity: ClientIdentity::InMemory {
                            cert_pem: enrolled.issued.cert_pem,
                            key_pem: enrolled.issued.key_pem,
                        },
                    }));
                }
                Err(err) if enrol::is_transient(&err) => {
                    tracing::debug!(error = enrol::refusal(&err), "enrolment failed; retrying");
                    let delay = crate::backoff::honouring(
                        backoff.delay(attempt, rand::rng().random()),
                        crate::backoff::pushback(&err),
                        rand::rng().random(),
                    );
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(None),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Err(err) => return Err(err),
            }
        }
        Ok(None)
    }
}

/// A simulated host's labels: a fixed mix of kinds of host, each agent always the same
/// kind, so rollouts over a simulated fleet have strata to cover.
fn simulated_host(agent_id: &str) -> Vec<(String, String)> {
    let roll = crate::sample::seed_of(agent_id) % 100;
    let (os, version) = match roll {
        0..70 => ("debian", "12"),
        70..85 => ("ubuntu", "24.04"),
        _ => ("rocky", "9"),
    };
    let arch = if roll.is_multiple_of(7) {
        "aarch64"
    } else {
        "x86_64"
    };
    [
        ("simulated", "true"),
        ("os", os),
        ("os_version", version),
        ("arch", arch),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}
