//! The seed's update rules end to end: a real coordinator, a real updater process installing
//! signed tarballs of a real (tiny) agent served over HTTP, health-checked over HTTP.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use drover_tests::{
    AgentHost, CoordinatorBuilder, CoordinatorProcess, ReleaseRepo, Tmpfs, UpdaterBuilder,
    UpdaterProcess, droverctl_json, eventually,
};
use serde_json::Value;
use tempfile::TempDir;

mod host_faults;

const WAIT: Duration = Duration::from_secs(30);

/// Fields drop in this order: the agent and the coordinator before their directory.
struct Setup {
    host: AgentHost,
    coordinator: CoordinatorProcess,
    repo: ReleaseRepo,
    root: TempDir,
}

/// A coordinator (control plane 2.0.0, channel `beta` at 1.0.0), signed releases of the demo
/// agent (1.0.0, 1.1.0 good; 1.2.0 broken; plus `extra`), and an agent host running 1.0.0.
async fn setup(extra: &[&str]) -> Setup {
    setup_with_host_in(extra, None).await
}

/// As `setup`, with the agent host's files in `host_dir` (a small file system, say).
async fn setup_with_host_in(extra: &[&str], host_dir: Option<&std::path::Path>) -> Setup {
    let root = tempfile::tempdir().unwrap();
    let coordinator = CoordinatorBuilder::sqlite(root.path())
        .control_plane("2.0.0")
        // Heartbeats every second: "nothing happened for a while" is counted in them.
        .arg("--heartbeat-secs")
        .arg("1")
        .start()
        .await;
    let repo = ReleaseRepo::create(root.path()).await;
    repo.publish("1.0.0", false);
    repo.publish("1.1.0", false);
    repo.publish("1.2.0", true);
    for version in extra {
        repo.publish(version, false);
    }
    let host = AgentHost::bootstrap(host_dir.unwrap_or(root.path()), &repo, "1.0.0");
    droverctl_json(
        &coordinator.grpc_url(),
        &["channels", "set", "beta", "1.0.0"],
    )
    .await;
    eventually("the bootstrapped agent answers", WAIT, async || {
        host.healthy().await.then_some(())
    })
    .await;
    Setup {
        root,
        coordinator,
        repo,
        host,
    }
}

impl Setup {
    fn url(&self) -> String {
        self.coordinator.grpc_url()
    }

    fn updater(&self) -> UpdaterBuilder {
        self.updater_restarting_with(format!("sh {}", self.host.restart_script.display()))
    }

    fn updater_restarting_with(&self, restart_command: String) -> UpdaterBuilder {
        self.updater_with(restart_command, ("--health-http", self.host.health_url()))
    }

    /// The agent restarted by `restart_command`, its health probed by `probe` (flag, value).
    fn updater_with(&self, restart_command: String, probe: (&str, String)) -> UpdaterBuilder {
        UpdaterBuilder::new(&self.url(), &self.root.path().join("updater"), "agent-1")
            .arg("--group", "prod")
            .arg("--channel", "beta")
            .arg("--tarball-root", self.host.root.display().to_string())
            .arg("--release-url", self.repo.url.clone())
            .arg(
                "--release-public-key",
                self.repo.key.public.display().to_string(),
            )
            .arg("--restart-command", restart_command)
            .arg(probe.0, probe.1)
            .arg("--health-interval-ms", "200")
            .arg("--health-failure-threshold", "2")
            .arg("--health-grace-secs", "5")
            .arg("--health-stable-secs", "2")
            .arg("--recheck-secs", "3600")
    }

    async fn set_channel(&self, args: &[&str]) {
        let mut all = vec!["channels", "set", "beta"];
        all.extend_from_slice(args);
        droverctl_json(&self.url(), &all).await;
    }

    async fn schedule(&self, start_minute: u32, duration: &str) {
        let start = format!("{:02}:{:02}", start_minute / 60, start_minute % 60);
        droverctl_json(
            &self.url(),
            &[
                "schedule",
                "set",
                "--group",
                "prod",
                "--days",
                "daily",
                "--start",
                &start,
                "--duration",
                duration,
            ],
        )
        .await;
    }

    async fn agent(&self) -> Value {
        droverctl_json(&self.url(), &["agents", "show", "agent-1"]).await
    }

    /// Waits until the agent runs `version`, healthy, and the coordinator knows it.
    async fn expect_running(&self, version: &str) {
        eventually(
            &format!("the agent runs {version}, healthy"),
            WAIT,
            async || {
                (self.host.running_version().await.as_deref() == Some(version)
                    && self.host.healthy().await)
                    .then_some(())
            },
        )
        .await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let agent = self.agent().await;
            if agent["agent_version"] == version {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the coordinator never showed {version}: {agent}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(self.host.active_version().as_deref(), Some(version));
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn minute_of_day(ms: i64) -> u32 {
    (ms.rem_euclid(86_400_000) / 60_000) as u32
}

async fn decision(updater: &UpdaterProcess, reason: &str) -> Value {
    eventually(
        &format!("the updater decides '{reason}'"),
        WAIT,
        async || {
            let state = updater.state();
            (state["last_decision"]["reason"] == reason).then_some(state)
        },
    )
    .await
}

fn updater_log_mentions(updater: &UpdaterProcess, text: &str) -> bool {
    updater.log().contains(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_schedule_an_update_installs_at_once() {
    let s = setup(&[]).await;
    let updater = s.updater().start();
    decision(&updater, "up_to_date").await;
    s.set_channel(&["1.1.0"]).await;
    s.expect_running("1.1.0").await;
    assert!(
        updater_log_mentions(&updater, "no_schedule"),
        "the install was decided for want of a schedule"
    );
    // The version can arrive by heartbeat a moment before the report: wait for the report.
    let agent = eventually(
        "the success report reaches the coordinator",
        WAIT,
        async || {
            let agent = s.agent().await;
            (agent["last_report"]["outcome"] == "succeeded").then_some(agent)
        },
    )
    .await;
    assert_eq!(agent["health"], "healthy");
    assert_eq!(
        s.host.installed_versions(),
        ["1.0.0", "1.1.0"],
        "the previous version is kept for a revert"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_the_window_an_update_installs() {
    let s = setup(&[]).await;
    s.schedule((minute_of_day(now_ms()) + 1439) % 1440, "15m")
        .await;
    let updater = s.updater().start();
    decision(&updater, "up_to_date").await;
    s.set_channel(&["1.1.0"]).await;
    s.expect_running("1.1.0").await;
    assert!(updater_log_mentions(&updater, "in_window"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_window_it_waits_and_installs_when_the_window_opens() {
    let s = setup(&[]).await;
    // Put the updater's clock 8 s before the next minute boundary, and the window there.
    let real = now_ms();
    let boundary = (real / 60_000 + 2) * 60_000;
    let offset = boundary - 8_000 - real;
    s.schedule(minute_of_day(boundary), "5m").await;
    let updater = s
        .updater()
        .arg("--clock-offset-ms", offset.to_string())
        .start();
    decision(&updater, "up_to_date").await;

    s.set_channel(&["1.1.0"]).await;
    let waiting = decision(&updater, "outside_window").await;
    assert_eq!(waiting["agent_version"], "1.0.0");
    let agent = eventually(
        "the coordinator sees the updater waiting",
        WAIT,
        async || {
            let agent = s.agent().await;
            (agent["updater_state"] == "waiting").then_some(agent)
        },
    )
    .await;
    assert!(
        agent["next_window_start"].is_string(),
        "agents show names the next window: {agent}"
    );
    let status = tokio::process::Command::new(drover_tests::bin("drover-updater"))
        .args(["status", "--state-dir"])
        .arg(&updater.state_dir)
        .output()
        .await
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("wait (outside_window)") && status.contains("next window:"),
        "{status}"
    );
    assert_eq!(
        s.host.running_version().await.as_deref(),
        Some("1.0.0"),
        "nothing installed outside the window"
    );

    s.expect_running("1.1.0").await;
    assert!(updater_log_mentions(&updater, "in_window"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_agent_is_updated_at_once_outside_its_window() {
    let s = setup(&[]).await;
    s.schedule((minute_of_day(now_ms()) + 360) % 1440, "1h")
        .await;
    let updater = s.updater().start();
    decision(&updater, "up_to_date").await;
    s.set_channel(&["1.1.0"]).await;
    decision(&updater, "outside_window").await;

    s.host.kill_agent();
    s.expect_running("1.1.0").await;
    assert!(updater_log_mentions(&updater, "agent_unhealthy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_update_installs_at_once_outside_the_window() {
    let s = setup(&[]).await;
    s.schedule((minute_of_day(now_ms()) + 360) % 1440, "1h")
        .await;
    let updater = s.updater().start();
    decision(&updater, "up_to_date").await;
    s.set_channel(&["1.1.0", "--critical", "true"]).await;
    s.expect_running("1.1.0").await;
    assert!(updater_log_mentions(&updater, "critical"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_oversized_unsigned_or_foreign_signed_releases_install_nothing_and_say_why() {
    let s = setup(&["1.1.1", "1.1.2", "1.1.3", "1.1.4"]).await;
    s.repo.tamper_artifact("1.1.1");
    s.repo.oversize_artifact("1.1.4");
    s.repo.remove_signature("1.1.2");
    s.repo
        .sign_with_another_key("1.1.3", &s.root.path().join("intruder"));
    let updater = s.updater().start();
    decision(&updater, "up_to_date").await;

    let cases = [
        ("1.1.1", "sha256"),
        ("1.1.2", "is not signed"),
        ("1.1.3", "does not verify with the pinned public key"),
        ("1.1.4", "sends more than the"),
    ];
    for (version, why) in cases {
        s.set_channel(&[version]).await;
        let agent = eventually(
            &format!("the refusal of {version} reaches the coordinator"),
            WAIT,
            async || {
                let agent = s.agent().await;
                (agent["last_report"]["to_version"] == version).then_some(agent)
            },
        )
        .await;
        assert_eq!(agent["last_report"]["outcome"], "refused", "{agent}");
        let error = agent["last_report"]["error"].as_str().unwrap();
        assert!(
            error.contains(why),
            "{version}: expected {why:?} in {error:?}"
        );
        assert_eq!(
            s.host.installed_versions(),
            ["1.0.0"],
            "{version} left nothing behind"
        );
        assert_eq!(s.host.active_version().as_deref(), Some("1.0.0"));
        assert!(s.host.healthy().await);
        decision(&updater, "install_refused").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_release_is_reverted_and_not_retried() {
    let s = setup(&[]).await;
    let updater = s.updater().start();
    decision(&updater, "up_to_date").await;
    s.set_channel(&["1.2.0"]).await;

    let agent = eventually("the revert reaches the coordinator", WAIT, async || {
        let agent = s.agent().await;
        (agent["last_report"]["outcome"] == "reverted").then_some(agent)
    })
    .await;
    let error = agent["last_report"]["error"].as_str().unwrap();
    assert!(
        error.contains("did not become healthy") && error.contains("reverted to 1.0.0"),
        "{error}"
    );
    s.expect_running("1.0.0").await;
    let state = decision(&updater, "version_broken").await;
    assert!(state["broken_versions"]["1.2.0"].is_object());

    // It stays put: no second attempt.
    let attempt = state["last_report"]["attempt_id"].clone();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(updater.state()["last_report"]["attempt_id"], attempt);
    assert_eq!(s.host.running_version().await.as_deref(), Some("1.0.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_during_an_install_leaves_a_consistent_install_and_the_next_run_finishes() {
    let s = setup(&[]).await;
    let mut updater = s.updater().start();
    decision(&updater, "up_to_date").await;
    s.host.set_slow_restart(true);
    s.set_channel(&["1.1.0"]).await;
    eventually("the updater is switching to 1.1.0", WAIT, async || {
        (updater.state()["in_flight"]["phase"] == "activating").then_some(())
    })
    .await;
    updater.kill9().await;

    // Killed mid-step: the install is whole, and `current` names one complete version.
    let active = s.host.active_version().unwrap();
    assert!(active == "1.0.0" || active == "1.1.0", "{active}");
    assert!(
        s.host
            .root
            .join("versions/1.1.0/bin/drover-demo-agent")
            .exists()
    );
    assert!(
        s.host
            .installed_versions()
            .iter()
            .all(|v| !v.starts_with('.')),
        "no staging leftovers"
    );

    s.host.set_slow_restart(false);
    let updater = s.updater().start();
    s.expect_running("1.1.0").await;
    eventually("the interrupted attempt is finished", WAIT, async || {
        let state = updater.state();
        (state["in_flight"].is_null() && state["last_report"]["outcome"] == "succeeded")
            .then_some(())
    })
    .await;
    assert!(updater_log_mentions(
        &updater,
        "resuming an interrupted update"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_coordinator_down_the_cached_rules_still_apply() {
    let mut s = setup(&[]).await;
    s.schedule((minute_of_day(now_ms()) + 360) % 1440, "1h")
        .await;
    let updater = s.updater().start();
    decision(&updater, "up_to_date").await;
    s.set_channel(&["1.1.0"]).await;
    decision(&updater, "outside_window").await;

    s.coordinator.kill9().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        updater.state()["last_decision"]["reason"],
        "outside_window",
        "healthy: still waits for the window"
    );
    assert_eq!(s.host.running_version().await.as_deref(), Some("1.0.0"));

    s.host.kill_agent();
    eventually(
        "the unhealthy agent is updated from the cached directive",
        WAIT,
        async || {
            (s.host.running_version().await.as_deref() == Some("1.1.0") && s.host.healthy().await)
                .then_some(())
        },
    )
    .await;
    // The agent answers before the updater's health gate has finished; then the report waits.
    eventually("the report waits for the coordinator", WAIT, async || {
        let state = updater.state();
        let pending = state["pending_reports"].as_array().map(Vec::len);
        (pending == Some(1) && state["last_report"]["outcome"] == "succeeded").then_some(())
    })
    .await;

    s.coordinator.restart().await;
    eventually(
        "the report arrives once the coordinator is back",
        Duration::from_secs(60),
        async || {
            let agent = s.agent().await;
            (agent["last_report"]["outcome"] == "succeeded" && agent["agent_version"] == "1.1.0")
                .then_some(())
        },
    )
    .await;
}
