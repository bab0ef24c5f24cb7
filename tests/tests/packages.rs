//! The package installers end to end: a real coordinator sets a channel's version, a real
//! `drover-updater --installer apt|dnf|zypper` installs the demo agent's package from a real
//! gpg-signed repository (built in the test, served on loopback) into an isolated root with
//! the real package manager; up, back down, held in between, and every flawed repository
//! (tampered package, unknown key, unsigned) refused with nothing installed. 1.2.0 is the
//! version the flawed variants offer (tampered: its package's bytes changed after signing).

use std::time::Duration;

use drover_tests::{
    CoordinatorBuilder, CoordinatorProcess, UpdaterBuilder, UpdaterProcess, droverctl,
    droverctl_json, eventually, eventually_explained,
    repos::{Flaw, PackageRepos},
    roots::{Manager, PackageHost},
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

struct Setup {
    _dir: tempfile::TempDir,
    coordinator: CoordinatorProcess,
    repos: PackageRepos,
    host: PackageHost,
    updater: UpdaterProcess,
}

async fn setup(manager: Manager) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = CoordinatorBuilder::sqlite(dir.path())
        .control_plane("2.0.0")
        .start()
        .await;
    let repos =
        PackageRepos::build(dir.path(), manager.format(), &["1.0.0", "1.1.0", "1.2.0"]).await;
    let host = PackageHost::create(manager, dir.path(), &repos);
    droverctl_json(
        &coordinator.grpc_url(),
        &["channels", "set", "beta", "1.0.0"],
    )
    .await;
    let mut updater = UpdaterBuilder::new(
        &coordinator.grpc_url(),
        &dir.path().join("updater"),
        "agent-1",
    )
    .arg("--group", "prod")
    .arg("--channel", "beta")
    .arg("--recheck-secs", "3600")
    .arg("--install-timeout-secs", "60");
    for (flag, value) in host.updater_args() {
        updater = updater.arg(&flag, value);
    }
    for (key, value) in host.env() {
        updater = updater.env(key, value.clone());
    }
    Setup {
        _dir: dir,
        coordinator,
        repos,
        host,
        updater: updater.start(),
    }
}

impl Setup {
    async fn set_channel(&self, args: &[&str]) {
        let mut all = vec!["channels", "set", "beta"];
        all.extend_from_slice(args);
        droverctl_json(&self.coordinator.grpc_url(), &all).await;
    }

    /// The coordinator's view of the agent (`Null` until the updater first connects).
    async fn agent(&self) -> Value {
        let url = self.coordinator.grpc_url();
        let (ok, stdout, _) = droverctl(&url, &["agents", "show", "agent-1", "-o", "json"]).await;
        if ok {
            serde_json::from_str(&stdout).unwrap()
        } else {
            Value::Null
        }
    }

    /// The updater's last decision has `reason`, and the coordinator shows it too.
    async fn decision(&self, reason: &str) {
        eventually_explained(
            &format!("the updater decides {reason}"),
            WAIT,
            async || (self.updater.state()["last_decision"]["reason"] == reason).then_some(()),
            || {
                format!(
                    "its last decision: {}\n{}",
                    self.updater.state()["last_decision"],
                    self.log_tail()
                )
            },
        )
        .await;
        eventually(
            &format!("the coordinator shows {reason}"),
            WAIT,
            async || {
                let agent = self.agent().await;
                agent.to_string().contains(reason).then_some(())
            },
        )
        .await;
    }

    fn log_tail(&self) -> String {
        let log = self.updater.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The root runs exactly `version`, held, and the coordinator knows it.
    async fn expect_installed(&self, version: &str) {
        eventually(
            &format!("{} installs {version}", self.host.manager.name()),
            WAIT,
            async || {
                let agent = self.agent().await;
                (agent["agent_version"] == version
                    && self.updater.state()["last_decision"]["reason"] == "up_to_date")
                    .then_some(())
            },
        )
        .await;
        assert_eq!(
            self.host.installed().as_deref(),
            Some(version),
            "{}",
            self.updater.log()
        );
        assert_eq!(self.host.installed_file_version().as_deref(), Some(version));
        assert!(self.host.held(), "{version} is held after the install");
    }

    /// Serves the flawed repository, asks for 1.2.0 (each time a new directive: the critical
    /// flag changes) and expects a refusal with 1.0.0 still installed and held. 1.2.0 was
    /// never downloaded before: apt would rightly install a cached, verified copy instead of
    /// a tampered one.
    async fn expect_refused(&self, flaw: Flaw, critical: &str) {
        let before = self.agent().await["last_report"].clone();
        self.repos.serve(flaw);
        self.set_channel(&["1.2.0", "--critical", critical]).await;
        let agent = eventually(
            &format!("the refusal ({flaw:?}) reaches the coordinator"),
            WAIT,
            async || {
                let agent = self.agent().await;
                let report = &agent["last_report"];
                (*report != before && report["to_version"] == "1.2.0").then_some(agent)
            },
        )
        .await;
        assert_eq!(
            agent["last_report"]["outcome"], "refused",
            "{flaw:?}: {agent}"
        );
        self.decision("install_refused").await;
        assert_eq!(self.host.installed().as_deref(), Some("1.0.0"), "{flaw:?}");
        assert_eq!(self.host.installed_file_version().as_deref(), Some("1.0.0"));
        assert!(self.host.held(), "{flaw:?}: still held");
    }
}

/// Up, down, held against upgrades, flawed repositories refused, a missing version said.
async fn full_cycle(manager: Manager) {
    let s = setup(manager).await;
    s.expect_installed("1.0.0").await;
    s.set_channel(&["1.1.0"]).await;
    s.expect_installed("1.1.0").await;
    s.set_channel(&["1.0.0"]).await;
    s.expect_installed("1.0.0").await;

    // What an unattended upgrade would do moves nothing: the hold is the package manager's.
    s.host.upgrade_everything();
    assert_eq!(s.host.installed().as_deref(), Some("1.0.0"));

    s.expect_refused(Flaw::Tampered, "true").await;
    s.expect_refused(Flaw::UnknownKey, "false").await;
    s.expect_refused(Flaw::Unsigned, "true").await;

    s.repos.serve(Flaw::None);
    s.set_channel(&["1.5.0", "--critical", "false"]).await;
    s.decision("version_not_found").await;
    assert_eq!(s.host.installed().as_deref(), Some("1.0.0"));
    // The host's own package database never saw the agent.
    let host_db = std::process::Command::new("dpkg-query")
        .args(["-W", "drover-demo-agent"])
        .output()
        .unwrap();
    assert!(
        !host_db.status.success(),
        "the host's dpkg database is untouched"
    );
    let host_rpm = std::process::Command::new("rpm")
        .args(["-q", "drover-demo-agent"])
        .output()
        .unwrap();
    assert!(
        !host_rpm.status.success(),
        "the host's rpm database is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apt_updates_up_and_down_holds_and_refuses_bad_repositories() {
    full_cycle(Manager::Apt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dnf_updates_up_and_down_locks_and_refuses_bad_repositories() {
    full_cycle(Manager::Dnf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zypper_updates_up_and_down_locks_and_refuses_bad_repositories() {
    full_cycle(Manager::Zypper).await;
}
