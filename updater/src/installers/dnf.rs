//! dnf (and yum's successor): installs exactly `PACKAGE-VERSION` from the configured
//! repositories with their gpg checks as configured (nothing here weakens them), and keeps
//! the package version-locked (the versionlock plugin of dnf-plugins-core) so automatic
//! updates never move it; the lock is lifted only for the install itself. With a root,
//! dnf works on `--installroot ROOT`.

use super::{
    InstallContext, InstallError, Installer, InstallerKind,
    package::{self, PackageConfig, args, checked_version, expect_version, rpm_version},
};
use crate::trace::{step_span, traced};

#[derive(Debug, Clone)]
pub struct DnfInstaller {
    pub config: PackageConfig,
}

impl DnfInstaller {
    fn options(&self) -> Vec<String> {
        let mut options = vec!["-y".to_string()];
        if let Some(root) = &self.config.root {
            options.extend(["--installroot".to_string(), root.display().to_string()]);
        }
        options.extend(self.config.options.iter().cloned());
        options
    }

    async fn dnf<const N: usize>(&self, tail: [&str; N]) -> Result<(), InstallError> {
        let name = format!("dnf {}", tail.join(" "));
        package::step(
            &name,
            "dnf",
            &args(&self.options(), tail),
            &[],
            self.config.timeout,
        )
        .await
        .map(drop)
    }

    async fn install_locked(&self, version: &str) -> Result<(), InstallError> {
        let version = checked_version(version)?;
        let spec = format!("{}-{version}", self.config.package);
        let package = self.config.package.as_str();
        // No lock yet (a first install) is fine; a busy database is not.
        if let Err(err @ (InstallError::Busy(_) | InstallError::TimedOut(_))) =
            self.dnf(["versionlock", "delete", package]).await
        {
            return Err(err);
        }
        let installed = self.dnf(["install", &spec]).await;
        // Locked again whatever happened: an update never leaves the package free to drift.
        let locked = self.dnf(["versionlock", "add", package]).await;
        installed?;
        locked?;
        expect_version("dnf", self.installed_version().await?, version)
    }
}

impl Installer for DnfInstaller {
    fn kind(&self) -> InstallerKind {
        InstallerKind::Dnf
    }

    async fn installed_version(&self) -> Result<Option<String>, InstallError> {
        rpm_version(&self.config).await
    }

    /// Refreshes the (signed) metadata and downloads the package, checking its signature;
    /// the agent is untouched. The lock is bypassed for the download alone.
    async fn prepare(
        &self,
        version: &str,
        _signed: &[drover_release::ArtifactTarget],
    ) -> Result<(), InstallError> {
        let version = checked_version(version)?;
        let spec = format!("{}-{version}", self.config.package);
        let step = step_span!("prepare", drover.installer = "dnf", drover.version = %version);
        let run = self.dnf([
            "--refresh",
            "--disableplugin=versionlock",
            "install",
            "--downloadonly",
            &spec,
        ]);
        traced(step, run).await
    }

    async fn install(&self, _ctx: &InstallContext<'_>, version: &str) -> Result<(), InstallError> {
        let step = step_span!("install", drover.installer = "dnf", drover.version = %version);
        traced(step, self.install_locked(version)).await
    }

    async fn revert(&self, ctx: &InstallContext<'_>, previous: &str) -> Result<(), InstallError> {
        self.install(ctx, previous).await
    }
}
