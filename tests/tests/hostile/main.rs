//! A coordinator in an attacker's hands (#28). The attacker holds its database (written
//! behind its back) and its admin API; the release team signs release metadata offline
//! with two of three keys (`droverctl releases`). Real updaters, one installing signed
//! tarballs, one installing with apt from a gpg-signed repository into an isolated root,
//! pin the team's root. Every attack the issue names ends with nothing installed, refused
//! with its own reason code, which the updater's state, its log and the coordinator's
//! agent view all show; a freeze is seen when the metadata expires (within one re-check).

use std::{cell::Cell, time::Duration};

use drover_tests::{
    AgentHost, CoordinatorBuilder, CoordinatorProcess, ReleaseRepo, UpdaterBuilder, UpdaterProcess,
    droverctl, droverctl_json, eventually, eventually_explained, http, metric_value,
    repos::{Flaw, PackageFormat, PackageRepos},
    roots::{Manager, PackageHost},
};
use serde_json::Value;

mod attacker;
mod team;

use attacker::Attacker;
use team::ReleaseTeam;

const WAIT: Duration = Duration::from_secs(120);
/// The updaters' re-check: the freeze must be seen within the expiry plus this.
const RECHECK_SECS: u64 = 3;
const VERSIONS: [&str; 4] = ["1.0.0", "1.1.0", "1.2.0", "1.3.0"];

/// Fields drop in this order: processes before the directory they live in.
struct Setup {
    tar: UpdaterProcess,
    apt: UpdaterProcess,
    tar_host: AgentHost,
    apt_host: PackageHost,
    _apt_repos: PackageRepos,
    _tar_repo: ReleaseRepo,
    coordinator: CoordinatorProcess,
    team: ReleaseTeam,
    attacker: Attacker,
    critical: Cell<bool>,
    _work: tempfile::TempDir,
}

/// Both release servers have 1.0.0–1.3.0, signed by their own means (minisign, gpg); the
/// release team signs 1.0.0–1.2.0 (v1), then sets the floor at 1.1.0 (v2). The tarball
/// agent runs 1.1.0; the apt root starts empty.
async fn setup() -> Setup {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let coordinator = CoordinatorBuilder::sqlite(dir)
        .control_plane("2.0.0")
        .arg("--heartbeat-secs")
        .arg("1")
        .arg("--view-refresh-secs")
        .arg("1")
        .start()
        .await;
    let tar_repo = ReleaseRepo::create(&dir.join("tar")).await;
    for version in VERSIONS {
        tar_repo.publish(version, false);
    }
    let tar_host = AgentHost::bootstrap(&dir.join("tar"), &tar_repo, "1.1.0");
    let apt_repos = PackageRepos::build(&dir.join("apt"), PackageFormat::Deb, &VERSIONS).await;
    apt_repos.serve(Flaw::None);
    let apt_host = PackageHost::create(Manager::Apt, &dir.join("apt"), &apt_repos);

    let team = ReleaseTeam::create(dir);
    for (version, deb) in VERSIONS.iter().zip(&apt_repos.packages).take(3) {
        team.add("tarball", version, &tar_repo.artifact(version));
        team.add("apt", version, deb);
    }
    team.sign("1h");
    publish(&coordinator, &team).await;
    team.floor("1.1.0");
    team.sign("1h");
    publish(&coordinator, &team).await;

    for channel in ["tar", "deb"] {
        droverctl_json(
            &coordinator.grpc_url(),
            &["channels", "set", channel, "1.2.0"],
        )
        .await;
    }
    let updater = |agent: &str, channel: &str| {
        UpdaterBuilder::new(&coordinator.grpc_url(), &dir.join(agent), agent)
            .arg("--group", "prod")
            .arg("--channel", channel)
            .arg("--recheck-secs", RECHECK_SECS.to_string())
            .arg("--install-timeout-secs", "60")
            .arg("--release-root", team.pinned_root().display().to_string())
    };
    let tar = updater("tar-1", "tar")
        .arg("--tarball-root", tar_host.root.display().to_string())
        .arg("--release-url", tar_repo.url.clone())
        .arg(
            "--release-public-key",
            tar_repo.key.public.display().to_string(),
        )
        .arg(
            "--restart-command",
            format!("sh {}", tar_host.restart_script.display()),
        )
        .arg("--health-http", tar_host.health_url())
        .arg("--health-grace-secs", "10")
        .start();
    let mut apt = updater("apt-1", "deb");
    for (flag, value) in apt_host.updater_args() {
        apt = apt.arg(&flag, value);
    }
    for (key, value) in apt_host.env() {
        apt = apt.env(key, value.clone());
    }
    Setup {
        tar,
        apt: apt.start(),
        tar_host,
        apt_host,
        _apt_repos: apt_repos,
        _tar_repo: tar_repo,
        attacker: Attacker::of(&dir.join("drover.db")),
        coordinator,
        team,
        critical: Cell::new(false),
        _work: work,
    }
}

async fn publish(coordinator: &CoordinatorProcess, team: &ReleaseTeam) {
    let dir = team.dir.display().to_string();
    droverctl_json(
        &coordinator.grpc_url(),
        &["releases", "publish", "--dir", &dir],
    )
    .await;
}

impl Setup {
    fn agents(&self) -> [(&'static str, &UpdaterProcess); 2] {
        [("tar-1", &self.tar), ("apt-1", &self.apt)]
    }

    /// What each host has installed: the tarball root's versions and active one, apt's.
    fn installed(&self) -> (Vec<String>, Option<String>, Option<String>) {
        (
            self.tar_host.installed_versions(),
            self.tar_host.active_version(),
            self.apt_host.installed(),
        )
    }

    async fn agent(&self, agent: &str) -> Value {
        let url = self.coordinator.grpc_url();
        let (ok, stdout, _) = droverctl(&url, &["agents", "show", agent, "-o", "json"]).await;
        if ok {
            serde_json::from_str(&stdout).unwrap()
        } else {
            Value::Null
        }
    }

    /// Both channels to `version`, as a new directive each time (the critical flag flips).
    async fn direct(&self, version: &str) {
        self.critical.set(!self.critical.get());
        let critical = self.critical.get().to_string();
        for channel in ["tar", "deb"] {
            droverctl_json(
                &self.coordinator.grpc_url(),
                &["channels", "set", channel, version, "--critical", &critical],
            )
            .await;
        }
    }

    /// Each updater decides `code`, and the coordinator's agent view shows it.
    async fn both_show(&self, code: &str, what: &str) {
        for (agent, updater) in self.agents() {
            eventually_explained(
                &format!("{what}: {agent} decides {code}"),
                WAIT,
                async || (updater.state()["last_decision"]["reason"] == code).then_some(()),
                || format!("{}\n{}", updater.state()["last_decision"], tail(updater)),
            )
            .await;
            eventually(
                &format!("{what}: the coordinator shows {agent}'s {code}"),
                WAIT,
                async || (self.agent(agent).await["updater_decision"] == code).then_some(()),
            )
            .await;
        }
    }

    /// The attacker directs `version`; both updaters refuse it with `code` (state, report,
    /// coordinator) and nothing on either host changes.
    async fn attack(&self, what: &str, version: &str, code: &str) {
        let before = self.installed();
        self.direct(version).await;
        self.both_show(code, what).await;
        for (agent, updater) in self.agents() {
            let report = &updater.state()["last_report"];
            assert_eq!(report["to_version"], version, "{what}: {agent}: {report}");
            assert_eq!(report["outcome"], "refused", "{what}: {agent}: {report}");
            let error = report["error"].as_str().unwrap_or_default();
            assert!(
                error.starts_with(code),
                "{what}: {agent}: the report names {code}: {error}"
            );
            let shown = self.agent(agent).await;
            assert_eq!(
                shown["last_report"]["error"], error,
                "{what}: {agent}: the coordinator has the report"
            );
        }
        assert_eq!(
            self.installed(),
            before,
            "{what}: nothing was installed or unpacked"
        );
    }
}

fn tail(updater: &UpdaterProcess) -> String {
    let log = updater.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_coordinator_installs_nothing_unsigned_old_or_mixed_and_cannot_freeze_unseen() {
    let s = setup().await;

    // The honest path goes through the same gate: 1.2.0 is signed, above the floor.
    for (agent, updater) in s.agents() {
        eventually_explained(
            &format!("{agent} installs the signed 1.2.0"),
            WAIT,
            async || {
                (updater.state()["agent_version"] == "1.2.0"
                    && updater.state()["last_decision"]["reason"] == "up_to_date")
                    .then_some(())
            },
            || tail(updater),
        )
        .await;
    }
    assert_eq!(s.installed().1.as_deref(), Some("1.2.0"));
    assert_eq!(s.installed().2.as_deref(), Some("1.2.0"));

    // An artifact the release team never signed (both release servers have it, signed
    // with their own keys: a build the attacker got signed, or an old test release).
    s.attack("unsigned release", "1.3.0", "release_not_listed")
        .await;
    // A signed, listed release below the floor (the team raised the floor over a flaw).
    s.attack("below the floor", "1.0.0", "release_below_floor")
        .await;
    // Replayed metadata: v1, validly signed and unexpired, from before the floor.
    s.attacker.serve_bundle(&s.team.signed_copy(1), 100).await;
    s.attack("replayed metadata", "1.0.0", "release_metadata_rollback")
        .await;
    // Mixed metadata: v2's timestamp over v1's snapshot and targets (where 1.0.0 had no floor).
    let mut mixed = s.team.signed_copy(1);
    mixed.insert(
        "timestamp.json".into(),
        s.team.signed_copy(2)["timestamp.json"].clone(),
    );
    s.attacker.serve_bundle(&mixed, 101).await;
    s.attack("mixed metadata", "1.0.0", "release_metadata_inconsistent")
        .await;
    // Endless data: a targets.json of megabytes.
    let mut endless = s.team.signed_copy(2);
    endless.insert(
        "targets.json".into(),
        format!("{{\"pad\":\"{}\"}}", "x".repeat(3 << 20)),
    );
    s.attacker.serve_bundle(&endless, 102).await;
    s.attack("endless metadata", "1.0.0", "release_metadata_too_large")
        .await;

    // Back to the honest bundle (and its honest version): the agents hold 1.2.0.
    s.attacker.serve_bundle(&s.team.signed_copy(2), 2).await;
    s.direct("1.2.0").await;
    s.both_show("up_to_date", "honest again").await;

    // The freeze: the team signs v3 expiring soon; once both updaters hold it, the
    // attacker serves nothing newer, ever. Each updater must raise the alarm within the
    // expiry plus one re-check, by its own clock.
    s.team.sign("25s");
    publish(&s.coordinator, &s.team).await;
    for (agent, updater) in s.agents() {
        eventually(&format!("{agent} holds v3"), WAIT, async || {
            (updater.state()["release"]["version"] == 3).then_some(())
        })
        .await;
    }
    let before = s.installed();
    s.both_show("release_metadata_expired", "freeze").await;
    // One number to alert on across the fleet (if the coordinator is honest about it).
    let expired = "drover_release_alarms{reason=\"release_metadata_expired\"}";
    eventually("/metrics counts both frozen agents", WAIT, async || {
        let (_, body) = http(s.coordinator.addresses.http, "GET", "/metrics").await;
        (metric_value(&body, expired) == 2).then_some(())
    })
    .await;
    for (agent, updater) in s.agents() {
        let state = updater.state();
        let expires_ms = state["release"]["expires_ms"].as_i64().unwrap();
        let seen_ms = state["last_decision"]["at_ms"].as_i64().unwrap();
        assert!(
            seen_ms >= expires_ms && seen_ms <= expires_ms + (RECHECK_SECS as i64) * 1000,
            "{agent}: the freeze was seen at {seen_ms}, the metadata expired at {expires_ms}"
        );
        assert!(
            updater.log().contains("release metadata expired"),
            "{agent}: the updater's own log says so at error level\n{}",
            tail(updater)
        );
    }
    assert_eq!(s.installed(), before, "the freeze installed nothing");
}
