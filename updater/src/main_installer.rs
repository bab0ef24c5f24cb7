//! `run`'s installer from its flags: a package manager, a command, or signed tarballs.

use std::time::Duration;

use anyhow::Context;
use drover_updater::installers::{
    apt::AptInstaller, backend::Backend, command::CommandInstaller, dnf::DnfInstaller,
    download::DownloadLimits, package::PackageConfig, tarball::TarballInstaller,
    zypper::ZypperInstaller,
};

use crate::RunArgs;

/// The package managers `--installer` can drive.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum PackageManager {
    Apt,
    Dnf,
    Zypper,
}

pub(crate) fn installer(args: &RunArgs) -> anyhow::Result<Backend> {
    let timeout = Duration::from_secs(args.install_timeout_secs);
    if let Some(manager) = args.installer {
        let config = PackageConfig {
            package: args.package.clone().context("--package is required")?,
            root: args.package_root.clone(),
            options: args.package_options.clone(),
            timeout,
        };
        config.validate().map_err(anyhow::Error::msg)?;
        return Ok(match manager {
            PackageManager::Apt => Backend::Apt(AptInstaller { config }),
            PackageManager::Dnf => Backend::Dnf(DnfInstaller { config }),
            PackageManager::Zypper => Backend::Zypper(ZypperInstaller { config }),
        });
    }
    if let Some(command) = &args.install_command {
        return Ok(Backend::Command(CommandInstaller {
            command: command.clone(),
            timeout,
        }));
    }
    let Some(root) = &args.tarball_root else {
        anyhow::bail!(
            "say how to install: --install-command CMD, --tarball-root DIR with --release-url and --release-public-key, or --installer apt|dnf|zypper with --package NAME"
        );
    };
    let key_path = args
        .release_public_key
        .as_ref()
        .context("--release-public-key is required")?;
    let public_key = std::fs::read_to_string(key_path)
        .with_context(|| format!("cannot read the release public key {}", key_path.display()))?;
    minisign_verify::PublicKey::decode(&public_key).map_err(|err| {
        anyhow::anyhow!(
            "{} is not a minisign public key ({err})",
            key_path.display()
        )
    })?;
    Ok(Backend::Tarball(TarballInstaller {
        root: root.clone(),
        release_url: args
            .release_url
            .clone()
            .context("--release-url is required")?,
        public_key,
        restart_command: args.restart_command.clone(),
        timeout,
        download: DownloadLimits {
            max_bytes: args.max_download_bytes,
            timeout: Duration::from_secs(args.download_timeout_secs.max(1)),
        },
    }))
}
