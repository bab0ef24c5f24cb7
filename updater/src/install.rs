//! Installers: how a version gets onto the agent. Real backends (tarball, apt, dnf, zypper,
//! Kubernetes) are their own work; `command` runs an operator-given command and `simulated`
//! stands in for an agent in simulated fleets.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub enum Installer {
    /// `sh -c COMMAND` with DROVER_TARGET_VERSION, DROVER_CURRENT_VERSION and DROVER_AGENT_ID
    /// in its environment; exit status 0 means installed.
    Command { command: String, timeout: Duration },
    /// Takes a random moment; fails for versions listed as broken.
    Simulated { broken_versions: Vec<String> },
}

impl Installer {
    pub fn kind(&self) -> drover_proto::v1::InstallerKind {
        match self {
            Self::Command { .. } => drover_proto::v1::InstallerKind::Command,
            Self::Simulated { .. } => drover_proto::v1::InstallerKind::Simulated,
        }
    }

    /// Installs `target`. The error text goes into the report, so it says what failed.
    pub async fn install(
        &self,
        agent_id: &str,
        current: Option<&str>,
        target: &str,
    ) -> Result<(), String> {
        match self {
            Self::Command { command, timeout } => {
                run_command(command, *timeout, agent_id, current, target).await
            }
            Self::Simulated { broken_versions } => {
                let millis = rand::rng().random_range(50..400);
                tokio::time::sleep(Duration::from_millis(millis)).await;
                if broken_versions.iter().any(|v| v == target) {
                    Err(format!(
                        "simulated install of {target} failed (listed as broken)"
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }
}

async fn run_command(
    command: &str,
    timeout: Duration,
    agent_id: &str,
    current: Option<&str>,
    target: &str,
) -> Result<(), String> {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("DROVER_TARGET_VERSION", target)
        .env("DROVER_CURRENT_VERSION", current.unwrap_or(""))
        .env("DROVER_AGENT_ID", agent_id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| format!("cannot start the install command ({err})"))?;
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| {
            format!(
                "the install command did not finish within {} s",
                timeout.as_secs()
            )
        })?
        .map_err(|err| format!("the install command failed to run ({err})"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: String = stderr
        .trim()
        .chars()
        .rev()
        .take(500)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(format!(
        "the install command exited with {}: {tail}",
        output.status
    ))
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
        ok.install("a", Some("1.0.0"), "1.1.0").await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap().trim(),
            "1.0.0->1.1.0"
        );

        let bad = Installer::Command {
            command: "echo disk full >&2; exit 3".into(),
            timeout: Duration::from_secs(5),
        };
        let err = bad.install("a", None, "1.1.0").await.unwrap_err();
        assert!(err.contains("disk full") && err.contains("3"), "{err}");
    }
}
