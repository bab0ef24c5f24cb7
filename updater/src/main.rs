//! drover-updater: keeps one agent on its target version. See `drover-updater --help`.
#![forbid(unsafe_code)]

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use drover_updater::{
    Health, StateStore, UpdaterConfig,
    backoff::Backoff,
    install::Installer,
    simulate::{SimulationConfig, run as simulate},
    state::read_dir_state,
};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "drover-updater",
    version,
    about = "Keep one agent on the version its Drover coordinator asks for."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the updater next to one agent.
    Run(RunArgs),
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
    /// Simulate a fleet of updaters (one real gRPC connection each) for demos and load.
    Simulate(SimulateArgs),
}

#[derive(Parser, Debug)]
struct RunArgs {
    #[arg(
        long,
        env = "DROVER_COORDINATOR",
        default_value = "http://127.0.0.1:7400"
    )]
    coordinator: String,
    /// Keeps the agent id, the last directive and unacknowledged reports across restarts.
    #[arg(
        long,
        env = "DROVER_STATE_DIR",
        default_value = "/var/lib/drover-updater"
    )]
    state_dir: PathBuf,
    /// The agent's id; generated and saved in the state dir when not given.
    #[arg(long, env = "DROVER_AGENT_ID")]
    agent_id: Option<String>,
    #[arg(long, env = "DROVER_GROUP", default_value = "default")]
    group: String,
    #[arg(long, env = "DROVER_CHANNEL", default_value = "default")]
    channel: String,
    /// The agent's version on first start (later the state dir knows).
    #[arg(long, env = "DROVER_AGENT_VERSION")]
    agent_version: Option<String>,
    /// `sh -c` command that installs $DROVER_TARGET_VERSION; exit 0 means installed.
    #[arg(long, env = "DROVER_INSTALL_COMMAND")]
    install_command: String,
    #[arg(long, default_value_t = 600)]
    install_timeout_secs: u64,
    /// KEY=VALUE, repeatable.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Override the coordinator's re-check interval (seconds).
    #[arg(long)]
    recheck_secs: Option<u64>,
}

#[derive(Parser, Debug)]
struct SimulateArgs {
    #[arg(
        long,
        env = "DROVER_COORDINATOR",
        default_value = "http://127.0.0.1:7400"
    )]
    coordinator: String,
    #[arg(long, default_value_t = 300)]
    count: usize,
    #[arg(long, value_delimiter = ',', default_value = "dev,staging,prod")]
    groups: Vec<String>,
    #[arg(long, default_value = "stable/rolling")]
    channel: String,
    #[arg(long, value_delimiter = ',', default_value = "1.0.0")]
    versions: Vec<String>,
    #[arg(long, default_value_t = 0.05)]
    unhealthy_fraction: f64,
    #[arg(long, value_delimiter = ',')]
    broken_versions: Vec<String>,
    #[arg(long, default_value = "sim")]
    id_prefix: String,
    #[arg(long, default_value_t = 2)]
    ramp_up_secs: u64,
    #[arg(long)]
    recheck_secs: Option<u64>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("label '{text}' must look like KEY=VALUE"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match dispatch(cli.command).await {
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
        Command::Run(args) => {
            let hostname = hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default();
            let config = UpdaterConfig {
                coordinator: args.coordinator,
                hostname,
                group: args.group,
                channel: args.channel,
                labels: args.labels,
                installer: Installer::Command {
                    command: args.install_command,
                    timeout: Duration::from_secs(args.install_timeout_secs),
                },
                initial_agent_version: args.agent_version,
                recheck_interval: args.recheck_secs.map(Duration::from_secs),
                backoff: Backoff::default(),
                initial_health: Health::Unknown,
            };
            let store = StateStore::Dir {
                path: args.state_dir,
                agent_id: args.agent_id,
            };
            drover_updater::run(config, store, shutdown).await
        }
        Command::Status { state_dir, json } => {
            let state = read_dir_state(&state_dir)
                .context("no updater state here yet; has `drover-updater run` started with this --state-dir?")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&state)?);
            } else {
                print!("{}", drover_updater::state::describe(&state));
            }
            Ok(())
        }
        Command::Simulate(args) => {
            let config = SimulationConfig {
                coordinator: args.coordinator,
                count: args.count,
                groups: args.groups,
                channel: args.channel,
                versions: args.versions,
                unhealthy_fraction: args.unhealthy_fraction,
                broken_versions: args.broken_versions,
                id_prefix: args.id_prefix,
                ramp_up: Duration::from_secs(args.ramp_up_secs),
                recheck_interval: args.recheck_secs.map(Duration::from_secs),
                seed: args.seed,
            };
            tracing::info!(count = config.count, "starting a simulated fleet");
            simulate(config, shutdown).await;
            Ok(())
        }
    }
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
