//! The binary's `simulate` subcommand: many updaters in one process, for demos and load.
//! (Part of `main.rs`'s binary, not of the library.)

use std::{path::PathBuf, time::Duration};

use clap::Parser;
use drover_updater::{
    address::Coordinators,
    pin::CaPin,
    simulate::{SimulationConfig, run_enrolled as simulate, simulation_tls},
};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
pub struct SimulateArgs {
    /// The coordinator's gRPC address: https:// (with --token and --ca-pin or --ca-file:
    /// each simulated agent enrols itself), or http:// for a coordinator started with
    /// --insecure. Several replicas: comma-separated; agents enrol through the first and
    /// fail over between all of them.
    #[arg(
        long,
        env = "DROVER_COORDINATOR",
        default_value = "https://127.0.0.1:7400",
        value_parser = crate::parse_coordinators,
        value_name = "URL[,URL…]"
    )]
    coordinator: Coordinators,
    /// The CA certificate (PEM) to trust for an https:// coordinator: its data directory's
    /// tls/ca.pem, or the CA its operator gave it.
    #[arg(
        long,
        env = "DROVER_CA_FILE",
        value_name = "PATH",
        conflicts_with = "ca_pin"
    )]
    ca_file: Option<PathBuf>,
    /// Instead of --ca-file: the coordinator's CA pin, sha256:HEX, as the coordinator
    /// prints it; the CA is fetched and trusted only if its SHA-256 matches.
    #[arg(long, env = "DROVER_CA_PIN", value_name = "sha256:HEX")]
    ca_pin: Option<CaPin>,
    /// The join token every simulated agent enrols with (required for https://). The
    /// agents' keys and certificates stay in memory unless --identity-dir is given.
    #[arg(long, env = "DROVER_JOIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Keep each simulated agent's certificate and key here (ID.pem, mode 0600), so a
    /// restarted simulation is the same fleet: an agent id is enrolled only once.
    #[arg(long, value_name = "DIR")]
    identity_dir: Option<PathBuf>,
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
    /// The broken versions fail only on agents with this label (e.g. os=rocky): a bug
    /// confined to one kind of host.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_label)]
    broken_on: Option<(String, String)>,
    /// How long each simulated install takes, in milliseconds (default: a random 50–400).
    #[arg(long, value_name = "MS")]
    install_ms: Option<u64>,
    #[arg(long, default_value = "sim")]
    id_prefix: String,
    #[arg(long, default_value_t = 2)]
    ramp_up_secs: u64,
    #[arg(long)]
    recheck_secs: Option<u64>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Send simulated health samples this often (0: none), for the coordinator's verdict.
    #[arg(long, default_value_t = 0)]
    sample_secs: u64,
    /// Versions on which simulated agents use half as much memory again: a release the
    /// health verdict should halt.
    #[arg(long, value_delimiter = ',')]
    leaky_versions: Vec<String>,
}

/// Runs the simulated fleet until `shutdown`.
pub async fn run(args: SimulateArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (coordinator_ca, mut enrolment) = simulation_tls(
        &args.coordinator,
        args.ca_file.as_deref(),
        args.ca_pin,
        args.token.clone(),
    )
    .await?;
    if let Some(enrolment) = &mut enrolment {
        enrolment.keep_in = args.identity_dir.clone();
    }
    let config = SimulationConfig {
        coordinator_ca,
        coordinator: args.coordinator,
        count: args.count,
        groups: args.groups,
        channel: args.channel,
        versions: args.versions,
        unhealthy_fraction: args.unhealthy_fraction,
        broken_versions: args.broken_versions,
        broken_on: args.broken_on,
        install_time: args.install_ms.map(Duration::from_millis),
        id_prefix: args.id_prefix,
        ramp_up: Duration::from_secs(args.ramp_up_secs),
        recheck_interval: args.recheck_secs.map(Duration::from_secs),
        seed: args.seed,
        sample_interval: (args.sample_secs > 0).then(|| Duration::from_secs(args.sample_secs)),
        leaky_versions: args.leaky_versions,
    };
    tracing::info!(count = config.count, "starting a simulated fleet");
    simulate(config, enrolment, shutdown).await;
    Ok(())
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("'{text}' must look like KEY=VALUE"))
}
