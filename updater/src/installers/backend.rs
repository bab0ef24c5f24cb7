//! The one place that names every backend. An enum rather than `Box<dyn Installer>`: the
//! set is closed (one per installer flag), and the trait's `impl Future` methods are not
//! object-safe, so dispatch by `match` costs no boxing and no extra crate.

use super::{
    InstallContext, InstallError, Installer, InstallerKind, apt::AptInstaller,
    command::CommandInstaller, dnf::DnfInstaller, kube::KubeInstaller,
    simulated::SimulatedInstaller, tarball::TarballInstaller, zypper::ZypperInstaller,
};

#[derive(Debug, Clone)]
pub enum Backend {
    Command(CommandInstaller),
    Tarball(TarballInstaller),
    Simulated(SimulatedInstaller),
    Kube(Box<KubeInstaller>),
    Apt(AptInstaller),
    Dnf(DnfInstaller),
    Zypper(ZypperInstaller),
}

/// Runs `$call` on whichever backend `$self` holds.
macro_rules! each {
    ($self:ident, $b:ident => $call:expr) => {
        match $self {
            Backend::Command($b) => $call,
            Backend::Tarball($b) => $call,
            Backend::Simulated($b) => $call,
            Backend::Kube($b) => $call,
            Backend::Apt($b) => $call,
            Backend::Dnf($b) => $call,
            Backend::Zypper($b) => $call,
        }
    };
}

impl Installer for Backend {
    fn kind(&self) -> InstallerKind {
        each!(self, b => b.kind())
    }

    async fn installed_version(&self) -> Result<Option<String>, InstallError> {
        each!(self, b => b.installed_version().await)
    }

    async fn prepare(
        &self,
        version: &str,
        signed: &[drover_release::ArtifactTarget],
    ) -> Result<(), InstallError> {
        each!(self, b => b.prepare(version, signed).await)
    }

    async fn install(&self, ctx: &InstallContext<'_>, version: &str) -> Result<(), InstallError> {
        each!(self, b => b.install(ctx, version).await)
    }

    async fn revert(&self, ctx: &InstallContext<'_>, previous: &str) -> Result<(), InstallError> {
        each!(self, b => b.revert(ctx, previous).await)
    }

    fn own_health(&self, version: &str) -> Option<bool> {
        each!(self, b => b.own_health(version))
    }
}
