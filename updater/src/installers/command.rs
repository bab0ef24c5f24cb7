//! An operator's install command: `sh -c COMMAND` with DROVER_TARGET_VERSION,
//! DROVER_CURRENT_VERSION and DROVER_AGENT_ID in its environment; exit status 0 means
//! installed. A revert runs it with the previous version as the target.

use std::time::Duration;

use super::{InstallContext, InstallError, Installer, InstallerKind};
use crate::{
    shell::run_shell,
    trace::{step_span, traced},
};

#[derive(Debug, Clone)]
pub struct CommandInstaller {
    pub command: String,
    pub timeout: Duration,
}

impl Installer for CommandInstaller {
    fn kind(&self) -> InstallerKind {
        InstallerKind::Command
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

    async fn install(&self, ctx: &InstallContext<'_>, version: &str) -> Result<(), InstallError> {
        let env = [
            ("DROVER_TARGET_VERSION", version),
            ("DROVER_CURRENT_VERSION", ctx.current.unwrap_or("")),
            ("DROVER_AGENT_ID", ctx.agent_id),
        ];
        let step = step_span!("install", drover.installer = "command", drover.version = %version);
        let run = async {
            run_shell(&self.command, self.timeout, &env)
                .await
                .map_err(|err| InstallError::Failed(format!("the install command failed: {err}")))
        };
        traced(step, run).await
    }

    async fn revert(&self, ctx: &InstallContext<'_>, previous: &str) -> Result<(), InstallError> {
        self.install(ctx, previous).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn command_sees_the_versions_and_its_failure_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("installed");
        let ok = CommandInstaller {
            command: format!(
                "echo \"$DROVER_CURRENT_VERSION->$DROVER_TARGET_VERSION\" > {}",
                out.display()
            ),
            timeout: Duration::from_secs(5),
        };
        let ctx = InstallContext {
            agent_id: "a",
            current: Some("1.0.0"),
        };
        ok.install(&ctx, "1.1.0").await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap().trim(),
            "1.0.0->1.1.0"
        );

        let bad = CommandInstaller {
            command: "echo disk full >&2; exit 3".into(),
            timeout: Duration::from_secs(5),
        };
        let ctx = InstallContext {
            agent_id: "a",
            current: None,
        };
        let err = bad.install(&ctx, "1.1.0").await.unwrap_err();
        assert!(matches!(err, InstallError::Failed(_)), "{err:?}");
        assert!(
            err.message().contains("disk full") && err.message().contains("3"),
            "{err}"
        );
    }
}
