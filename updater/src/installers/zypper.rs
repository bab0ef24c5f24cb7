//! zypper: installs exactly `PACKAGE=VERSION` from the configured repositories, whose
//! signatures zypper checks against the keys trusted in the rpm database (keys are never
//! auto-imported here), and keeps the package locked (`zypper addlock`) so automatic updates
//! never move it; the lock is lifted only for the install itself. With a root, zypper works
//! on `--root ROOT`.

use super::{
    InstallContext, InstallError, Installer, InstallerKind,
    package::{self, PackageConfig, args, checked_version, expect_version, rpm_version},
};
use crate::trace::{step_span, traced};

#[derive(Debug, Clone)]
pub struct ZypperInstaller {
    pub config: PackageConfig,
}

impl ZypperInstaller {
    fn options(&self) -> Vec<String> {
        let mut options = vec!["--non-interactive".to_string()];
        if let Some(root) = &self.config.root {
            options.extend(["--root".to_string(), root.display().to_string()]);
        }
        options.extend(self.config.options.iter().cloned());
        options
    }

    async fn zypper<const N: usize>(&self, tail: [&str; N]) -> Result<(), InstallError> {
        let name = format!("zypper {}", tail[0]);
        package::step(
            &name,
            "zypper",
            &args(&self.options(), tail),
            &[],
            self.config.timeout,
        )
        .await
        .map(drop)
    }

    /// zypper's refresh and download may exit 0 after a refusal: their text decides too.
    async fn zypper_strict<const N: usize>(&self, tail: [&str; N]) -> Result<(), InstallError> {
        let name = format!("zypper {}", tail[0]);
        package::strict_step(
            &name,
            "zypper",
            &args(&self.options(), tail),
            &[],
            self.config.timeout,
        )
        .await
        .map(drop)
    }

    async fn install_locked(&self, version: &str) -> Result<(), InstallError> {
        let version = checked_version(version)?;
        let spec = format!("{}={version}", self.config.package);
        let package = self.config.package.as_str();
        // No lock yet (a first install) is fine; a busy database is not.
        if let Err(err @ (InstallError::Busy(_) | InstallError::TimedOut(_))) =
            self.zypper(["removelock", package]).await
        {
            return Err(err);
        }
        let installed = self
            .zypper(["install", "--oldpackage", "--no-recommends", &spec])
            .await;
        // Locked again whatever happened: an update never leaves the package free to drift.
        let locked = self.zypper(["addlock", package]).await;
        installed?;
        locked?;
        expect_version("zypper", self.installed_version().await?, version)
    }
}

impl Installer for ZypperInstaller {
    fn kind(&self) -> InstallerKind {
        InstallerKind::Zypper
    }

    async fn installed_version(&self) -> Result<Option<String>, InstallError> {
        rpm_version(&self.config).await
    }

    /// Refreshes the (signed) metadata and downloads the package, checking its signature;
    /// the agent is untouched (a download ignores the lock).
    async fn prepare(
        &self,
        version: &str,
        _signed: &[drover_release::ArtifactTarget],
    ) -> Result<(), InstallError> {
        let version = checked_version(version)?;
        let spec = format!("{}={version}", self.config.package);
        let step = step_span!("prepare", drover.installer = "zypper", drover.version = %version);
        let run = async {
            self.zypper_strict(["refresh"]).await?;
            self.zypper_strict(["download", &spec]).await
        };
        traced(step, run).await
    }

    async fn install(&self, _ctx: &InstallContext<'_>, version: &str) -> Result<(), InstallError> {
        let step = step_span!("install", drover.installer = "zypper", drover.version = %version);
        traced(step, self.install_locked(version)).await
    }

    async fn revert(&self, ctx: &InstallContext<'_>, previous: &str) -> Result<(), InstallError> {
        self.install(ctx, previous).await
    }
}
