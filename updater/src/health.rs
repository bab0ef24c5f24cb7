//! Health probes for the agent: an HTTP GET answered 2xx within a timeout, a command's exit
//! status, or a systemd unit's active state. Consecutive-result thresholds keep one blip
//! from flipping the health that heartbeats carry and the policy acts on.

use std::time::Duration;

/// What the updater reports about its agent in every heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Unhealthy,
    /// No probe is configured, or it has not run yet.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Http {
        url: String,
    },
    Command {
        command: String,
    },
    SystemdUnit {
        unit: String,
    },
    /// A Kubernetes workload: rolled out, every replica ready on its current image.
    Workload {
        api: crate::kube::KubeApi,
        workload: crate::kube::WorkloadRef,
    },
}

#[derive(Debug, Clone)]
pub struct HealthConfig {
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failures before the agent counts as unhealthy.
    pub failure_threshold: u32,
    /// Consecutive successes before it counts as healthy again.
    pub success_threshold: u32,
    /// After a new version first proves healthy, how long it must stay so (no failed probes
    /// past the threshold, no restart of `agent_unit`) before the install counts.
    pub stable_for: Duration,
    /// The agent's systemd unit, watched for restarts while a new version proves itself.
    pub agent_unit: Option<String>,
}

impl Probe {
    /// One probe run; the error says what was seen.
    pub async fn check(&self, timeout: Duration) -> Result<(), String> {
        let run = async {
            match self {
                Self::Http { url } => http_get(url).await,
                Self::Command { command } => run_ok("sh", &["-c", command]).await,
                Self::SystemdUnit { unit } => run_ok("systemctl", &["is-active", "--quiet", unit])
                    .await
                    .map_err(|err| format!("unit {unit} is not active ({err})")),
                Self::Workload { api, workload } => workload_ready(api, workload).await,
            }
        };
        tokio::time::timeout(timeout, run)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} ms", timeout.as_millis())))
    }
}

async fn workload_ready(
    api: &crate::kube::KubeApi,
    workload: &crate::kube::WorkloadRef,
) -> Result<(), String> {
    let current = api.workload(workload).await?;
    let pods = api
        .pods(&workload.namespace, &current.label_selector())
        .await?;
    crate::kube::rollout_progress(&current, &pods, &workload.container)
}

async fn http_get(url: &str) -> Result<(), String> {
    let client = crate::http::client()?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|err| format!("GET {url} failed: {err}"))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("GET {url} answered {status}"))
    }
}

async fn run_ok(program: &str, args: &[&str]) -> Result<(), String> {
    let status = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|err| format!("cannot run {program}: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} exited with {status}"))
    }
}

/// Consecutive-result counting, pure: feed results, read the health.
#[derive(Debug, Clone)]
pub struct Thresholds {
    failures: u32,
    successes: u32,
    failure_threshold: u32,
    success_threshold: u32,
    health: Health,
}

impl Thresholds {
    pub fn new(failure_threshold: u32, success_threshold: u32) -> Self {
        Self {
            failures: 0,
            successes: 0,
            failure_threshold: failure_threshold.max(1),
            success_threshold: success_threshold.max(1),
            health: Health::Unknown,
        }
    }

    pub fn record(&mut self, ok: bool) -> Health {
        if ok {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= self.success_threshold {
                self.health = Health::Healthy;
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= self.failure_threshold {
                self.health = Health::Unhealthy;
            }
        }
        self.health
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_blip_does_not_flip_health() {
        let mut t = Thresholds::new(3, 2);
        assert_eq!(t.record(true), Health::Unknown);
        assert_eq!(t.record(true), Health::Healthy);
        assert_eq!(t.record(false), Health::Healthy);
        assert_eq!(t.record(false), Health::Healthy);
        assert_eq!(t.record(true), Health::Healthy);
        for _ in 0..3 {
            t.record(false);
        }
        assert_eq!(t.record(false), Health::Unhealthy);
    }

    proptest! {
        /// Health only becomes unhealthy after `f` failures in a row and healthy after `s`
        /// successes in a row.
        #[test]
        fn thresholds_need_consecutive_results(f in 1u32..5, s in 1u32..5, results in proptest::collection::vec(any::<bool>(), 0..60)) {
            let mut t = Thresholds::new(f, s);
            let mut previous = Health::Unknown;
            for (i, ok) in results.iter().enumerate() {
                let health = t.record(*ok);
                if health != previous {
                    let run = results[..=i].iter().rev().take_while(|r| **r == *ok).count() as u32;
                    let needed = if *ok { s } else { f };
                    prop_assert!(run >= needed);
                }
                previous = health;
            }
        }
    }

    #[tokio::test]
    async fn command_probes_report_their_result() {
        let ok = Probe::Command {
            command: "true".into(),
        };
        let bad = Probe::Command {
            command: "exit 4".into(),
        };
        assert!(ok.check(Duration::from_secs(5)).await.is_ok());
        assert!(
            bad.check(Duration::from_secs(5))
                .await
                .unwrap_err()
                .contains("exit status: 4")
        );
        let slow = Probe::Command {
            command: "sleep 5".into(),
        };
        assert!(
            slow.check(Duration::from_millis(100))
                .await
                .unwrap_err()
                .contains("no answer")
        );
    }
}
