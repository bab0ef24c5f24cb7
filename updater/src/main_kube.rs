//! The binary's `kube` subcommand: its flags, and the installer and health probe they make.
//! (Part of `main.rs`'s binary, not of the library.)

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use drover_updater::{
    health::{HealthConfig, Probe},
    installers::{
        backend::Backend,
        cosign::PublicKey,
        kube::KubeInstaller,
        oci::{Registry, Repository},
    },
    kube::{KubeApi, WorkloadKind, WorkloadRef},
    mirror::DirectiveMirror,
};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    Deployment,
    Statefulset,
}

/// What `kube` adds to `run`'s flags: the workload, the image repository and the key.
#[derive(Parser, Debug)]
pub struct KubeArgs {
    #[command(flatten)]
    pub run: crate::RunArgs,
    /// The kind of workload the agent runs as.
    #[arg(long, value_enum, default_value = "deployment")]
    pub kind: KindArg,
    #[arg(long, env = "DROVER_KUBE_NAMESPACE")]
    pub namespace: String,
    /// The Deployment's or StatefulSet's name.
    #[arg(long, env = "DROVER_KUBE_WORKLOAD")]
    pub workload: String,
    /// The container whose image is the agent's version.
    #[arg(long, env = "DROVER_KUBE_CONTAINER")]
    pub container: String,
    /// HOST[:PORT]/PATH: versions are tags of this repository, run by digest.
    #[arg(long, env = "DROVER_IMAGE_REPOSITORY")]
    pub image_repository: String,
    /// The cosign public key (PEM) every image must be signed with.
    #[arg(long, env = "DROVER_COSIGN_PUBLIC_KEY")]
    pub cosign_public_key: PathBuf,
    /// Seconds one signature verification (every registry request in it) may take.
    #[arg(long, default_value_t = 60)]
    pub registry_timeout_secs: u64,
    /// The API server; default: the in-cluster address, with the service account's CA and token.
    #[arg(long, env = "DROVER_KUBE_API_SERVER")]
    pub api_server: Option<String>,
    #[arg(long, env = "DROVER_KUBE_CA_FILE")]
    pub api_ca_file: Option<PathBuf>,
    #[arg(long, env = "DROVER_KUBE_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// The ConfigMap (in --namespace) the directive and its maintenance schedule are
    /// mirrored to, and restored from when the state dir is empty; default WORKLOAD-drover.
    #[arg(long, env = "DROVER_KUBE_SCHEDULE_CONFIG_MAP")]
    pub schedule_config_map: Option<String>,
}

/// The Kubernetes installer, the workload health probe and the ConfigMap mirror of the
/// directive the flags describe.
pub fn kube_backend(args: &KubeArgs) -> anyhow::Result<(Backend, HealthConfig, DirectiveMirror)> {
    let run = &args.run;
    anyhow::ensure!(
        run.install_command.is_none() && run.tarball_root.is_none(),
        "kube installs by patching the workload: drop --install-command and --tarball-root"
    );
    anyhow::ensure!(
        run.health_http.is_none()
            && run.health_command.is_none()
            && run.health_systemd_unit.is_none(),
        "kube judges health from the workload's pods: drop the --health-* probe flags"
    );
    let pem = std::fs::read_to_string(&args.cosign_public_key).with_context(|| {
        format!(
            "cannot read the cosign public key {}",
            args.cosign_public_key.display()
        )
    })?;
    let key = PublicKey::from_pem(&pem)
        .map_err(|err| anyhow::anyhow!("{}: {err}", args.cosign_public_key.display()))?;
    let repository = Repository::parse(&args.image_repository).map_err(anyhow::Error::msg)?;
    let registry = Registry {
        plain_http: repository.is_loopback(),
        repository,
        timeout: Duration::from_secs(args.registry_timeout_secs.max(1)),
    };
    let api = KubeApi::new(
        args.api_server.clone(),
        args.api_ca_file.clone(),
        args.api_token_file.clone(),
        Duration::from_millis(run.health_timeout_ms.max(1000)),
    )
    .map_err(anyhow::Error::msg)?;
    let workload = WorkloadRef {
        kind: match args.kind {
            KindArg::Deployment => WorkloadKind::Deployment,
            KindArg::Statefulset => WorkloadKind::StatefulSet,
        },
        namespace: args.namespace.clone(),
        name: args.workload.clone(),
        container: args.container.clone(),
    };
    let health = HealthConfig {
        probe: Probe::Workload {
            api: api.clone(),
            workload: workload.clone(),
        },
        interval: Duration::from_millis(run.health_interval_ms.max(50)),
        timeout: Duration::from_millis(run.health_timeout_ms.max(10)),
        failure_threshold: run.health_failure_threshold,
        success_threshold: run.health_success_threshold,
        stable_for: Duration::from_secs(run.health_stable_secs),
        // Pods restart under the workload's own controller; its readiness is the probe.
        agent_unit: None,
    };
    let mirror = DirectiveMirror {
        api: api.clone(),
        namespace: args.namespace.clone(),
        name: args
            .schedule_config_map
            .clone()
            .unwrap_or_else(|| format!("{}-drover", args.workload)),
    };
    let installer = KubeInstaller {
        api,
        workload,
        registry,
        key,
        rollout_timeout: Duration::from_secs(run.health_grace_secs.max(1)),
    };
    Ok((Backend::Kube(Box::new(installer)), health, mirror))
}
