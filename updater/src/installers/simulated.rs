//! A stand-in for an agent in simulated fleets: an install takes a random moment, and
//! versions listed as broken come up unhealthy.

use std::time::Duration;

use rand::Rng;

use super::{InstallContext, InstallError, Installer, InstallerKind};
use crate::trace::{step_span, traced};

#[derive(Debug, Clone, Default)]
pub struct SimulatedInstaller {
    pub broken_versions: Vec<String>,
    /// How long an install takes; `None`: a random 50–400 ms.
    pub install_time: Option<Duration>,
}

impl Installer for SimulatedInstaller {
    fn kind(&self) -> InstallerKind {
        InstallerKind::Simulated
    }

    async fn installed_version(&self) -> Result<Option<String>, InstallError> {
        Ok(None)
    }

    async fn prepare(
        &self,
        _version: &str,
        _signed: &[drover_release::ArtifactTarget],
    ) -> Result<(), InstallError> {
        Ok(())
    }

    async fn install(&self, _ctx: &InstallContext<'_>, version: &str) -> Result<(), InstallError> {
        // A span like a real install's, so load tests can trace.
        let step = step_span!("install", drover.installer = "simulated", drover.version = %version);
        let run = async {
            let took = self
                .install_time
                .unwrap_or_else(|| Duration::from_millis(rand::rng().random_range(50..400)));
            tokio::time::sleep(took).await;
            Ok(())
        };
        traced(step, run).await
    }

    async fn revert(&self, ctx: &InstallContext<'_>, previous: &str) -> Result<(), InstallError> {
        self.install(ctx, previous).await
    }

    fn own_health(&self, version: &str) -> Option<bool> {
        Some(!self.broken_versions.iter().any(|v| v == version))
    }
}
