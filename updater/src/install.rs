//! Install backends behind one type. `command` runs an operator-given command, `tarball`
//! installs signed tarballs (see `tarball.rs`), `simulated` stands in for an agent in
//! simulated fleets. Package managers and Kubernetes are their own work.

use std::time::Duration;

use rand::Rng;

pub use crate::install_error::InstallError;
pub use crate::shell::run_shell;
use crate::tarball::TarballInstaller;
use crate::trace::{step_span, traced};

#[derive(Debug, Clone)]
pub enum Installer {
    /// `sh -c COMMAND` with DROVER_TARGET_VERSION, DROVER_CURRENT_VERSION and DROVER_AGENT_ID
    /// in its environment; exit status 0 means installed. A revert runs it with the previous
    /// version as the target.
    Command {
        command: String,
        timeout: Duration,
    },
    Tarball(TarballInstaller),
    /// Takes a random moment; versions listed as broken come up unhealthy.
    Simulated {
        broken_versions: Vec<String>,
    },
}

impl Installer {
    pub fn kind(&self) -> drover_proto::v1::InstallerKind {
        use drover_proto::v1::InstallerKind;
        match self {
            Self::Command { .. } => InstallerKind::Command,
            Self::Tarball(_) => InstallerKind::Tarball,
            Self::Simulated { .. } => InstallerKind::Simulated,
        }
    }

    /// What is installed and active, when the backend can tell (the files are the truth).
    pub async fn active_version(&self) -> anyhow::Result<Option<String>> {
        match self {
            Self::Tarball(tarball) => Ok(tarball.active_version()?),
            _ => Ok(None),
        }
    }

    /// Everything that can be done and checked before the agent is touched.
    pub async fn prepare(&self, target: &str) -> Result<(), InstallError> {
        match self {
            Self::Tarball(tarball) => tarball.prepare(target).await,
            Self::Command { .. } | Self::Simulated { .. } => Ok(()),
        }
    }

    /// Makes `target` the running version (a revert is activating the previous version),
    /// in `install` (and `restart`) spans.
    pub async fn activate(
        &self,
        agent_id: &str,
        current: Option<&str>,
        target: &str,
    ) -> Result<(), String> {
        match self {
            Self::Command { command, timeout } => {
                let env = [
                    ("DROVER_TARGET_VERSION", target),
                    ("DROVER_CURRENT_VERSION", current.unwrap_or("")),
                    ("DROVER_AGENT_ID", agent_id),
                ];
                let step =
                    step_span!("install", drover.installer = "command", drover.version = %target);
                let run = async {
                    run_shell(command, *timeout, &env)
                        .await
                        .map_err(|err| format!("the install command failed: {err}"))
                };
                traced(step, run).await
            }
            Self::Tarball(tarball) => {
                let step = step_span!("install", drover.installer = "tarball", drover.step = "switch", drover.version = %target);
                traced(step, tarball.switch_to(target)).await?;
                let step = step_span!("restart", drover.version = %target);
                traced(step, tarball.restart(target)).await
            }
            Self::Simulated { .. } => {
                // A span like a real install's, so load tests can trace.
                let step =
                    step_span!("install", drover.installer = "simulated", drover.version = %target);
                let run = async {
                    let millis = rand::rng().random_range(50..400);
                    tokio::time::sleep(Duration::from_millis(millis)).await;
                    Ok::<(), String>(())
                };
                traced(step, run).await
            }
        }
    }

    /// Whether `version` can be re-activated without fetching it again.
    pub fn can_activate_offline(&self, version: &str) -> bool {
        match self {
            Self::Tarball(tarball) => tarball.is_installed(version),
            Self::Command { .. } | Self::Simulated { .. } => true,
        }
    }

    /// Simulated agents have no probe: their health follows the broken list.
    pub fn simulated_health(&self, version: &str) -> Option<bool> {
        match self {
            Self::Simulated { broken_versions } => {
                Some(!broken_versions.iter().any(|v| v == version))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn command_sees_the_versions_and_its_failure_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("installed");
        let ok = Installer::Command {
            command: format!(
                "echo \"$DROVER_CURRENT_VERSION->$DROVER_TARGET_VERSION\" > {}",
                out.display()
            ),
            timeout: Duration::from_secs(5),
        };
        ok.activate("a", Some("1.0.0"), "1.1.0").await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap().trim(),
            "1.0.0->1.1.0"
        );

        let bad = Installer::Command {
            command: "echo disk full >&2; exit 3".into(),
            timeout: Duration::from_secs(5),
        };
        let err = bad.activate("a", None, "1.1.0").await.unwrap_err();
        assert!(err.contains("disk full") && err.contains("3"), "{err}");
    }
}
