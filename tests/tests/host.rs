//! The packages on a booted Debian 12 (the host test bed, `drover_tests::hostbed`): the
//! .debs `scripts/package` builds are installed with apt, the coordinator and updater run as
//! their packaged units, the updater is enrolled with a join token and the CA pin, and it
//! installs the agent with the real apt from a signed repository whose maintainer scripts
//! print progress with `\r` (as dpkg and progress bars do) and create a user with a home.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use drover_tests::{bin, eventually_explained, hostbed::Machine};
use serde_json::Value;

const AGENT: &str = "host-agent";
const PACKAGE: &str = "demo-agent";
const PROFILE: &str = "DROVER_PROFILE=/var/lib/drover/data/admin-profile.json";
/// Installs run apt and dpkg on a busy two-core machine: generous, but a deadline.
const WAIT: Duration = Duration::from_secs(120);

/// Progress the way terminals draw it: each step overwrites the line with `\r`.
const PROGRESS: &str = "printf 'Configuring demo-agent 10%%\\rConfiguring demo-agent 100%%\\n'";

/// The agent's maintainer scripts: 1.1.0 brings a service user with a home directory; 1.2.0's
/// postinst fails, its last words after `\r` progress. (apt runs dpkg on a pty, so every
/// line of its output also ends in `\r\n`.)
fn scripts(version: &str) -> Vec<(&'static str, String)> {
    let preinst = format!("#!/bin/sh\nset -e\n{PROGRESS}\n");
    let postinst = match version {
        "1.0.0" => format!("#!/bin/sh\nset -e\n{PROGRESS}\n"),
        "1.1.0" => format!(
            "#!/bin/sh\nset -e\n{PROGRESS}\n\
             getent passwd demoagent >/dev/null || useradd --create-home demoagent\n"
        ),
        _ => format!(
            "#!/bin/sh\n{PROGRESS}\n\
             printf 'Migrating 10%%\\rMigrating 50%%\\rmigration failed at 50%%\\n' >&2\nexit 1\n"
        ),
    };
    vec![("preinst", preinst), ("postinst", postinst)]
}

struct Host {
    machine: Machine,
    _dir: tempfile::TempDir,
    started: Instant,
}

/// A booted machine with both packages installed, the coordinator running, demo-agent 1.0.0
/// installed by hand, and the updater enrolled and running; `None` when the bed cannot run.
async fn setup() -> Option<Host> {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    // Mounted at /hostbed: apt reads the repository as its sandbox user `_apt`.
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::set_permissions(&share, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // Booted first: a host that cannot run the bed skips before any work. The bind shows
    // what is added to `share` later.
    let machine = Machine::boot(&[(&share, "/hostbed")], dir.path()).await?;
    package_drover(&share.join("debs"));
    let build = dir.path().join("agent-build");
    std::fs::create_dir_all(&build).unwrap();
    let debs: Vec<_> = ["1.0.0", "1.1.0", "1.2.0"]
        .iter()
        .map(|v| drover_tests::hostbed::deb(&build, PACKAGE, v, &scripts(v)))
        .collect();
    drover_tests::hostbed::signed_apt_repo(&share, &debs);
    let host = Host {
        machine,
        _dir: dir,
        started,
    };
    let m = &host.machine;
    m.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
          /hostbed/debs/drover-coordinator_*.deb /hostbed/debs/drover-updater_*.deb")
        .await;
    // Fast heartbeats and last-seen writes, so "two heartbeats" is seconds.
    m.sh("printf '%s\\n' DROVER_CONTROL_PLANE_VERSION=2.0.0 \
          'DROVER_COORDINATOR_ARGS=--heartbeat-secs 2 --liveness-flush-secs 1' \
          >> /etc/drover/coordinator.env && systemctl enable --now drover-coordinator")
        .await;
    host.ctl(&["channels", "set", "beta", "1.0.0"]).await;

    m.sh(
        "install -D -m 0644 /hostbed/repo.asc /etc/apt/keyrings/demo.asc && \
          echo 'deb [signed-by=/etc/apt/keyrings/demo.asc] file:/hostbed/repo stable main' \
          > /etc/apt/sources.list.d/demo.list && apt-get update -q && \
          DEBIAN_FRONTEND=noninteractive apt-get install -y -q demo-agent=1.0.0",
    )
    .await;

    let token = host
        .ctl(&[
            "tokens", "create", "--group", "prod", "--uses", "1", "--ttl", "1h",
        ])
        .await;
    let token = token["secret"].as_str().expect("a join token");
    let profile: Value =
        serde_json::from_str(&m.sh("cat /var/lib/drover/data/admin-profile.json").await).unwrap();
    let pin = profile["ca_pin"]
        .as_str()
        .expect("the CA pin in the profile");
    m.sh(&format!(
        "drover-updater enroll --coordinator https://127.0.0.1:7400 --token {token} \
         --ca-pin {pin} --agent-id {AGENT} --group prod"
    ))
    .await;
    m.write(
        "/etc/drover/updater.env",
        "DROVER_COORDINATOR=https://127.0.0.1:7400\nDROVER_STATE_DIR=/var/lib/drover-updater\n\
         DROVER_CHANNEL=beta\nDROVER_INSTALLER=apt\nDROVER_PACKAGE=demo-agent\n\
         DROVER_UPDATER_ARGS=--recheck-secs 3600 --install-timeout-secs 120\n",
        "0600",
    )
    .await;
    m.sh("systemctl enable --now drover-updater").await;
    eprintln!("host: set up in {:.1?}", started.elapsed());
    Some(host)
}

/// `scripts/package` from the debug binaries, as tests/tests/deploy does.
fn package_drover(out: &Path) {
    let bin_dir = bin("drover-coordinator").parent().unwrap().to_path_buf();
    bin("droverctl");
    bin("drover-updater");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/package");
    let output = Command::new(script)
        .arg("--fast")
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run scripts/package");
    assert!(
        output.status.success(),
        "scripts/package failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Host {
    /// `droverctl ARGS -o json` inside the machine with the coordinator's admin profile.
    async fn ctl(&self, args: &[&str]) -> Value {
        let mut argv = vec!["env", PROFILE, "droverctl"];
        argv.extend(args);
        argv.extend(["-o", "json"]);
        let out = self.machine.exec(&argv).await;
        assert!(out.success, "droverctl {args:?} failed: {}", out.stderr);
        serde_json::from_str(&out.stdout).unwrap_or_else(|err| {
            panic!("droverctl {args:?} printed no JSON ({err}): {}", out.stdout)
        })
    }

    async fn agent(&self) -> Value {
        self.ctl(&["agents", "show", AGENT]).await
    }

    /// What a failure message needs: both units' recent journal.
    fn explain(&self) -> String {
        format!(
            "--- drover-updater journal:\n{}\n--- drover-coordinator journal:\n{}",
            self.machine.journal_tail("drover-updater", 40),
            self.machine.journal_tail("drover-coordinator", 15)
        )
    }

    /// `agents list` shows the agent connected and running `version`.
    async fn wait_connected_on(&self, version: &str) {
        eventually_explained(
            &format!("{AGENT} connected on {version} (droverctl agents list)"),
            WAIT,
            async || {
                let list = self.ctl(&["agents", "list"]).await;
                list["agents"]
                    .as_array()?
                    .iter()
                    .any(|a| {
                        a["agent_id"] == AGENT
                            && a["connected"] == true
                            && a["agent_version"] == version
                    })
                    .then_some(())
            },
            || self.explain(),
        )
        .await;
    }

    /// The agent once the coordinator has recorded a report of an update to `version`.
    async fn report_for(&self, version: &str) -> Value {
        eventually_explained(
            &format!("the coordinator to record {AGENT}'s report for {version}"),
            WAIT,
            async || {
                let agent = self.agent().await;
                (agent["last_report"]["to_version"] == version).then_some(agent)
            },
            || self.explain(),
        )
        .await
    }

    /// `dpkg -s demo-agent`'s status and version.
    async fn dpkg_status(&self) -> (String, String) {
        let out = self.machine.exec(&["dpkg", "-s", PACKAGE]).await;
        let field = |name: &str| {
            out.stdout
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        (field("Status:"), field("Version:"))
    }

    fn done(&self, test: &str) {
        eprintln!("host: {test} took {:.1?}", self.started.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_install_and_run_under_systemd() {
    let Some(host) = setup().await else { return };
    let m = &host.machine;
    for unit in ["drover-coordinator", "drover-updater"] {
        assert_eq!(
            m.unit_property(unit, "ActiveState").await,
            "active",
            "{unit}"
        );
    }
    assert_eq!(
        m.unit_property("drover-coordinator", "User").await,
        "drover"
    );
    host.wait_connected_on("1.0.0").await;
    let user = m.exec(&["getent", "passwd", "demoagent"]).await;
    assert!(!user.success, "1.0.0 creates no user: {}", user.stdout);

    host.ctl(&["channels", "set", "beta", "1.1.0"]).await;
    let agent = host.report_for("1.1.0").await;
    assert_eq!(
        agent["last_report"]["outcome"],
        "succeeded",
        "{agent:#}\n{}",
        host.explain()
    );
    host.wait_connected_on("1.1.0").await;
    let (status, version) = host.dpkg_status().await;
    // Installed, and held (`apt-mark hold`) against unattended upgrades.
    assert_eq!(
        (status.as_str(), version.as_str()),
        ("hold ok installed", "1.1.0")
    );
    let held = m.sh("apt-mark showhold").await;
    assert!(held.lines().any(|l| l == PACKAGE), "held: {held}");
    // Made by 1.1.0's postinst, run by apt under drover-updater.service.
    let user = m.sh("getent passwd demoagent | cut -d: -f6").await;
    assert_eq!(user.trim(), "/home/demoagent");
    let owner = m.sh("stat -c %U /home/demoagent").await;
    assert_eq!(owner.trim(), "demoagent");
    host.done("packages_install_and_run_under_systemd");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_install_with_carriage_returns_keeps_the_agent_connected() {
    let Some(host) = setup().await else { return };
    host.wait_connected_on("1.0.0").await;
    host.ctl(&["channels", "set", "beta", "1.2.0"]).await;
    let agent = host.report_for("1.2.0").await;
    let report = &agent["last_report"];
    let outcome = report["outcome"].as_str().unwrap_or_default();
    assert!(
        outcome == "failed" || outcome == "reverted",
        "{agent:#}\n{}",
        host.explain()
    );
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        !error.contains('\r'),
        "a carriage return was recorded: {error:?}"
    );
    // The postinst's own words made it (cleaned, not dropped).
    assert!(
        error.contains("migration failed"),
        "{error:?}\n{}",
        host.explain()
    );
    if outcome == "reverted" {
        let (status, version) = host.dpkg_status().await;
        assert_eq!(
            (status.as_str(), version.as_str()),
            ("hold ok installed", "1.0.0")
        );
    }

    // Connected through two heartbeats after the report: last-seen moves on twice, and no
    // look in between finds the agent disconnected.
    let mut seen = agent["last_seen"].clone();
    for beat in 1..=2 {
        seen = eventually_explained(
            &format!("heartbeat {beat} after the report"),
            Duration::from_secs(30),
            async || {
                let now = host.agent().await;
                assert_eq!(
                    now["connected"],
                    true,
                    "disconnected after the report: {now:#}\n{}",
                    host.explain()
                );
                (now["last_seen"] != seen).then(|| now["last_seen"].clone())
            },
            || host.explain(),
        )
        .await;
    }
    assert_eq!(
        host.agent().await["last_report"],
        *report,
        "the report stays recorded once"
    );
    host.done("a_failed_install_with_carriage_returns_keeps_the_agent_connected");
}
