//! drover-updater: keeps one agent on its target version. See `drover-updater --help`.
#![forbid(unsafe_code)]

mod main_installer;
mod main_kube;
mod main_simulate;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use drover_telemetry::LogFormat;
use drover_updater::{
    Clock, Health, StateStore, UpdaterConfig,
    address::Coordinators,
    backoff::Backoff,
    enrol::{EnrolOptions, EnrolRequest, RunIdentity, enrol_state_dir},
    health::{HealthConfig, Probe},
    identity::identity_dir,
    installers::backend::Backend,
    mirror::DirectiveMirror,
    pin::CaPin,
    sample::{SampleConfig, SampleSource},
    state::read_dir_state,
};
use main_installer::{PackageManager, installer};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "drover-updater",
    version,
    about = "Keep one agent on the version its Drover coordinator asks for."
)]
struct Cli {
    /// Log lines on stderr: text, or one JSON object per line with trace ids. Traces are
    /// exported over OTLP only when OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set.
    #[arg(
        long,
        global = true,
        env = "DROVER_LOG_FORMAT",
        default_value = "text",
        value_name = "text|json"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Enrol this host with a join token: make a key here, get a client certificate for it
    /// and save the identity in STATE_DIR/identity/ (needed before `run` with https://).
    Enroll(EnrollArgs),
    /// Run the updater next to one agent.
    Run(Box<RunArgs>),
    /// Show what the updater knows: versions, directive, last decision and reports.
    Status {
        #[arg(
            long,
            env = "DROVER_STATE_DIR",
            default_value = "/var/lib/drover-updater"
        )]
        state_dir: PathBuf,
        /// Print the raw state as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Keep one container of a Kubernetes Deployment or StatefulSet on its target: each
    /// version is a tag of --image-repository, verified with --cosign-public-key and run by
    /// digest; health is the workload's rollout and pods' readiness.
    Kube(Box<main_kube::KubeArgs>),
    /// Simulate a fleet of updaters (one real gRPC connection each) for demos and load.
    Simulate(Box<main_simulate::SimulateArgs>),
}

#[derive(Parser, Debug)]
struct EnrollArgs {
    /// The coordinator's gRPC address (https:// only).
    #[arg(
        long,
        env = "DROVER_COORDINATOR",
        default_value = "https://127.0.0.1:7400"
    )]
    coordinator: String,
    /// The join token from `droverctl tokens create`.
    #[arg(long, env = "DROVER_JOIN_TOKEN", hide_env_values = true)]
    token: String,
    /// The coordinator's CA pin, sha256:HEX, as the coordinator prints it (ready file, log):
    /// the CA is trusted only if its SHA-256 matches.
    #[arg(long, env = "DROVER_CA_PIN", value_name = "sha256:HEX")]
    ca_pin: CaPin,
    /// The agent id to ask for; default: the state dir's existing id, else the coordinator
    /// makes one from the hostname.
    #[arg(long, env = "DROVER_AGENT_ID")]
    agent_id: Option<String>,
    /// The group to join (one the token allows); default: the token's first group.
    #[arg(long, env = "DROVER_GROUP")]
    group: Option<String>,
    /// Where the identity is saved (STATE_DIR/identity/), the same dir `run` uses.
    #[arg(
        long,
        env = "DROVER_STATE_DIR",
        default_value = "/var/lib/drover-updater"
    )]
    state_dir: PathBuf,
    /// Enrol again (new key, certificate and possibly agent id) over an existing identity.
    #[arg(long)]
    force: bool,
}

#[derive(Parser, Debug)]
pub(crate) struct RunArgs {
    /// The coordinator's gRPC address: https:// (enrol first with `drover-updater enroll`),
    /// or http:// for a coordinator started with --insecure. Several replicas: comma-
    /// separated (a DNS name counts once per address it resolves to); on a lost session
    /// the updater connects to another.
    #[arg(
        long,
        env = "DROVER_COORDINATOR",
        default_value = "https://127.0.0.1:7400",
        value_parser = parse_coordinators,
        value_name = "URL[,URL…]"
    )]
    coordinator: Coordinators,
    /// The CA certificate (PEM) to trust for an https:// coordinator instead of the one
    /// saved at enrolment (STATE_DIR/identity/ca.pem).
    #[arg(long, env = "DROVER_CA_FILE", value_name = "PATH")]
    ca_file: Option<PathBuf>,
    /// Keeps the identity, the agent id, the last directive and unacknowledged reports
    /// across restarts.
    #[arg(
        long,
        env = "DROVER_STATE_DIR",
        default_value = "/var/lib/drover-updater"
    )]
    state_dir: PathBuf,
    /// The agent's id. Enrolled: taken from the identity (a different value is refused).
    /// Otherwise generated and saved in the state dir when not given.
    #[arg(long, env = "DROVER_AGENT_ID")]
    agent_id: Option<String>,
    /// The agent's group. Enrolled: taken from the identity (a different value is refused).
    /// Otherwise `default` when not given.
    #[arg(long, env = "DROVER_GROUP")]
    group: Option<String>,
    #[arg(long, env = "DROVER_CHANNEL", default_value = "default")]
    channel: String,
    /// The agent's version on first start (later the state dir knows).
    #[arg(long, env = "DROVER_AGENT_VERSION")]
    agent_version: Option<String>,
    /// The release team's TUF root.json (`droverctl releases init` writes it): with it, every
    /// install must be listed in signed, unexpired release metadata, at or above its signed
    /// floor, whatever the coordinator says. Strongly recommended (README, security).
    #[arg(long, env = "DROVER_RELEASE_ROOT", value_name = "ROOT_JSON")]
    release_root: Option<PathBuf>,
    /// Install with a command: `sh -c` runs it with $DROVER_TARGET_VERSION; exit 0 means
    /// installed. (Give this, --tarball-root, or --installer with --package.)
    #[arg(long, env = "DROVER_INSTALL_COMMAND", conflicts_with_all = ["tarball_root", "installer"])]
    install_command: Option<String>,
    /// Install the agent as a system package with this package manager, from the host's
    /// configured (signed) repositories: exactly the target version, held/locked between
    /// updates.
    #[arg(
        long,
        env = "DROVER_INSTALLER",
        value_enum,
        requires = "package",
        conflicts_with = "tarball_root"
    )]
    installer: Option<PackageManager>,
    /// The agent's package name (with --installer).
    #[arg(long, env = "DROVER_PACKAGE")]
    package: Option<String>,
    /// With --installer: work on the system under this directory instead of / (apt: its
    /// Dir and dpkg --root; dnf --installroot; zypper --root), e.g. an image being built.
    #[arg(long, env = "DROVER_PACKAGE_ROOT", requires = "installer")]
    package_root: Option<PathBuf>,
    /// With --installer: one more global option for the package manager, repeatable, e.g.
    /// `--package-option=--setopt=reposdir=/etc/agent.repos.d` (dnf) or
    /// `--package-option=-oAcquire::http::Proxy=…` (apt).
    #[arg(
        long = "package-option",
        requires = "installer",
        allow_hyphen_values = true
    )]
    package_options: Vec<String>,
    /// Install signed tarballs under this directory (versions/<v>/ and a `current` symlink).
    #[arg(long, env = "DROVER_TARBALL_ROOT", requires_all = ["release_url", "release_public_key"])]
    tarball_root: Option<PathBuf>,
    /// Where releases live: {URL}/{version}/manifest.json, its .minisig, and the artifact.
    #[arg(long, env = "DROVER_RELEASE_URL")]
    release_url: Option<String>,
    /// The minisign public key file (from `minisign -G`) that release manifests must verify with.
    #[arg(long, env = "DROVER_RELEASE_PUBLIC_KEY")]
    release_public_key: Option<PathBuf>,
    /// Run after each switch to (re)start the agent; gets $DROVER_VERSION and $DROVER_AGENT_DIR.
    #[arg(long, env = "DROVER_RESTART_COMMAND")]
    restart_command: Option<String>,
    #[arg(long, default_value_t = 600)]
    install_timeout_secs: u64,
    /// Bytes accepted for a release artifact whose signed manifest declares no `size` (a
    /// declared size is enforced exactly).
    #[arg(long, default_value_t = 4 << 30)]
    max_download_bytes: u64,
    /// Seconds a whole release download (manifest, signature, artifact) may take.
    #[arg(long, default_value_t = 3600)]
    download_timeout_secs: u64,
    /// Probe the agent's health with an HTTP GET (healthy: 2xx within the timeout).
    #[arg(long, group = "probe")]
    health_http: Option<String>,
    /// Probe the agent's health with a command (healthy: exit 0).
    #[arg(long, group = "probe")]
    health_command: Option<String>,
    /// Probe the agent's health through a systemd unit's active state.
    #[arg(long, group = "probe")]
    health_systemd_unit: Option<String>,
    #[arg(long, default_value_t = 5000)]
    health_interval_ms: u64,
    #[arg(long, default_value_t = 2000)]
    health_timeout_ms: u64,
    /// Consecutive failed probes before the agent counts as unhealthy.
    #[arg(long, default_value_t = 3)]
    health_failure_threshold: u32,
    /// Consecutive good probes before it counts as healthy.
    #[arg(long, default_value_t = 1)]
    health_success_threshold: u32,
    /// How long a new version has to become healthy before it is reverted.
    #[arg(long, default_value_t = 60)]
    health_grace_secs: u64,
    /// Once healthy, how long a new version must stay healthy (and its unit unrestarted)
    /// before the install counts; a failure or a restart inside it reverts.
    #[arg(long, default_value_t = 30)]
    health_stable_secs: u64,
    /// The agent's systemd unit, watched for restarts (NRestarts, main PID, activation time)
    /// while a new version proves itself; defaults to --health-systemd-unit.
    #[arg(long)]
    agent_unit: Option<String>,
    /// The agent's pid file (what a restart script writes): its process is sampled for RSS,
    /// CPU and restarts. With --agent-unit the unit's main PID is used instead.
    #[arg(long)]
    agent_pid_file: Option<std::path::PathBuf>,
    /// How often the agent's health is sampled for the coordinator's verdict (RSS, CPU,
    /// probes, restarts); 0 turns samples off.
    #[arg(long, default_value_t = 30)]
    sample_secs: u64,
    /// Shift the updater's clock (testing only: puts it just before a window).
    #[arg(long, hide = true, default_value_t = 0, allow_hyphen_values = true)]
    clock_offset_ms: i64,
    /// KEY=VALUE, repeatable. Reported with the host's own `os`, `os_version` (from
    /// os-release) and `arch`, which a label of the same name replaces.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Override the coordinator's re-check interval (seconds).
    #[arg(long)]
    recheck_secs: Option<u64>,
}

/// Samples when there is something to sample: a probe, a unit or a pid file.
fn sample_config(args: &RunArgs, health: Option<&HealthConfig>) -> Option<SampleConfig> {
    let unit = args
        .agent_unit
        .clone()
        .or_else(|| args.health_systemd_unit.clone());
    let watched = health.is_some() || unit.is_some() || args.agent_pid_file.is_some();
    let source = match health.map(|h| &h.probe) {
        Some(Probe::Workload { api, workload }) => SampleSource::Workload {
            api: api.clone(),
            workload: workload.clone(),
        },
        _ => SampleSource::Process {
            pid_file: args.agent_pid_file.clone(),
            unit,
        },
    };
    (args.sample_secs > 0 && watched).then(|| SampleConfig {
        interval: Duration::from_secs(args.sample_secs),
        source,
    })
}

fn health_config(args: &RunArgs) -> Option<HealthConfig> {
    let probe = if let Some(url) = &args.health_http {
        Probe::Http { url: url.clone() }
    } else if let Some(command) = &args.health_command {
        Probe::Command {
            command: command.clone(),
        }
    } else {
        Probe::SystemdUnit {
            unit: args
                .health_systemd_unit
                .clone()
                .or_else(|| args.agent_unit.clone())?,
        }
    };
    Some(HealthConfig {
        probe,
        interval: Duration::from_millis(args.health_interval_ms.max(50)),
        timeout: Duration::from_millis(args.health_timeout_ms.max(10)),
        failure_threshold: args.health_failure_threshold,
        success_threshold: args.health_success_threshold,
        stable_for: Duration::from_secs(args.health_stable_secs),
        agent_unit: args
            .agent_unit
            .clone()
            .or_else(|| args.health_systemd_unit.clone()),
    })
}

fn parse_coordinators(text: &str) -> Result<Coordinators, String> {
    Coordinators::parse(text).map_err(|err| format!("{err:#}"))
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("label '{text}' must look like KEY=VALUE"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // One crypto provider for every rustls user here (tonic's TLS and the downloads).
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The agent's id names this process in a collector when it is given (an enrolled
    // updater learns it later: a random instance id then).
    let instance = match &cli.command {
        Command::Run(args) => args.agent_id.clone(),
        _ => None,
    };
    let telemetry =
        match drover_telemetry::init("drover-updater", instance.as_deref(), cli.log_format) {
            Ok(telemetry) => telemetry,
            Err(err) => {
                eprintln!("drover-updater: {err}");
                return std::process::ExitCode::FAILURE;
            }
        };
    let result = dispatch(cli.command).await;
    // The last spans leave (bounded wait) off the runtime's threads.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("drover-updater: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    match command {
        Command::Enroll(args) => {
            let hostname = hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default();
            let record = enrol_state_dir(EnrolOptions {
                coordinator: args.coordinator,
                pin: args.ca_pin,
                state_dir: args.state_dir.clone(),
                request: EnrolRequest {
                    token: args.token,
                    agent_id: args.agent_id.unwrap_or_default(),
                    group: args.group.unwrap_or_default(),
                    hostname,
                },
                force: args.force,
            })
            .await?;
            println!(
                "enrolled as agent {} in group {} (certificate valid until {}); identity saved in {}",
                record.agent_id,
                record.group,
                drover_rules::time::rfc3339(record.not_after_ms),
                identity_dir(&args.state_dir).display()
            );
            Ok(())
        }
        Command::Run(args) => {
            let (installer, health) = (installer(&args)?, health_config(&args));
            run(*args, installer, health, None, shutdown).await
        }
        Command::Kube(args) => {
            let (installer, health, mirror) = main_kube::kube_backend(&args)?;
            run(args.run, installer, Some(health), Some(mirror), shutdown).await
        }
        Command::Status { state_dir, json } => {
            let state = read_dir_state(&state_dir)
                .context("no updater state here yet; has `drover-updater run` started with this --state-dir?")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&state)?);
            } else {
                print!(
                    "{}",
                    drover_updater::state::describe(&state, Clock::default().now_ms())
                );
            }
            Ok(())
        }
        Command::Simulate(args) => main_simulate::run(*args, shutdown).await,
    }
}

/// Runs an updater with `installer` and `health` and the rest of `args`.
async fn run(
    args: RunArgs,
    installer: Backend,
    health: Option<HealthConfig>,
    directive_mirror: Option<DirectiveMirror>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let hostname = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let who = RunIdentity::resolve(
        &args.state_dir,
        &args.coordinator,
        args.ca_file.as_deref(),
        args.agent_id.clone(),
        args.group.clone(),
    )?;
    let samples = sample_config(&args, health.as_ref());
    let release = match &args.release_root {
        Some(path) => Some(drover_updater::shared::ReleaseTrust {
            pinned_root: Arc::new(read_release_root(path)?),
            datastore: args.state_dir.join("release-metadata"),
        }),
        None => None,
    };
    let config = UpdaterConfig {
        release,
        installer,
        samples,
        health,
        coordinator_ca: who.ca,
        identity: who.identity,
        coordinator: args.coordinator,
        hostname,
        group: who.group,
        channel: args.channel,
        labels: drover_updater::host_labels::merged(
            drover_updater::host_labels::this_host(),
            args.labels,
        ),
        initial_agent_version: args.agent_version,
        recheck_interval: args.recheck_secs.map(Duration::from_secs),
        backoff: Backoff::default(),
        initial_health: Health::Unknown,
        health_grace: Duration::from_secs(args.health_grace_secs),
        clock: Clock {
            offset_ms: args.clock_offset_ms,
        },
        directive_mirror,
    };
    let store = StateStore::Dir {
        path: args.state_dir,
        agent_id: who.agent_id,
    };
    drover_updater::run(config, store, shutdown).await
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut terminate) = signal(SignalKind::terminate()) else {
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = terminate.recv() => {},
    }
    shutdown.cancel();
}

/// The pinned TUF root, refused at start when it is not one (a wrong path would otherwise
/// surface only as refused installs).
fn read_release_root(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the release root {}", path.display()))?;
    let kind = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|root| root["signed"]["_type"].as_str().map(str::to_string));
    anyhow::ensure!(
        kind.as_deref() == Some("root"),
        "{} is not a TUF root.json; give --release-root the release team's \
         metadata/1.root.json (`droverctl releases init` writes it)",
        path.display()
    );
    Ok(bytes)
}
