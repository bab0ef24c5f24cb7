//! The machine the host tests start from: booted, the Drover .debs built from the debug
//! binaries, and a signed apt repository of the demo agent; then, as a test needs them, the
//! coordinator service and an enrolled updater service managing the agent.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use drover_tests::{bin, eventually_explained, hostbed::Machine};
use serde_json::Value;

pub const AGENT: &str = "host-agent";
pub const PACKAGE: &str = "demo-agent";
/// The agent's systemd unit, shipped by every version of the package.
pub const UNIT: &str = "demo-agent.service";
const PROFILE: &str = "DROVER_PROFILE=/var/lib/drover/data/admin-profile.json";
/// Installs run apt and dpkg on a busy two-core machine: generous, but a deadline.
pub const WAIT: Duration = Duration::from_secs(120);

/// The agent's versions in the repository (see [`scripts`] and [`unit`]).
const VERSIONS: &[&str] = &["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"];
/// The release whose agent exits a second after every start (and systemd restarts it).
pub const CRASH_LOOPING: &str = "1.3.0";
/// The release whose postinst leaves [`REVERT_BLOCKER`] behind and fails, so that going
/// back to 1.0.0 (whose postinst fails while the file exists) fails too.
pub const REVERT_FAILS: &str = "1.4.0";
/// While this file exists, 1.0.0's postinst fails.
pub const REVERT_BLOCKER: &str = "/var/lib/demo-agent-blocks-1.0.0";

/// Progress the way terminals draw it: each step overwrites the line with `\r`.
const PROGRESS: &str = "printf 'Configuring demo-agent 10%%\\rConfiguring demo-agent 100%%\\n'";
/// What a package's postinst does with the unit it ships (debhelper's snippets, in short).
const START_UNIT: &str = "systemctl daemon-reload\nsystemctl enable demo-agent.service\n\
                          systemctl restart demo-agent.service\n";

/// The agent's maintainer scripts: each version's postinst (re)starts its unit; 1.1.0 brings
/// a service user with a home directory; 1.2.0's postinst fails, its last words after `\r`
/// progress. (apt runs dpkg on a pty, so every line of its output also ends in `\r\n`.)
fn scripts(version: &str) -> Vec<(&'static str, String)> {
    let preinst = format!("#!/bin/sh\nset -e\n{PROGRESS}\n");
    let postinst = match version {
        "1.1.0" => format!(
            "#!/bin/sh\nset -e\n{PROGRESS}\n\
             getent passwd demoagent >/dev/null || useradd --create-home demoagent\n{START_UNIT}"
        ),
        "1.2.0" => format!(
            "#!/bin/sh\n{PROGRESS}\n\
             printf 'Migrating 10%%\\rMigrating 50%%\\rmigration failed at 50%%\\n' >&2\nexit 1\n"
        ),
        "1.0.0" => format!(
            "#!/bin/sh\nset -e\n{PROGRESS}\n\
             if [ -e {REVERT_BLOCKER} ]; then echo 'demo-agent 1.0.0 cannot configure: \
             {REVERT_BLOCKER} exists' >&2; exit 1; fi\n{START_UNIT}"
        ),
        REVERT_FAILS => format!(
            "#!/bin/sh\n{PROGRESS}\ntouch {REVERT_BLOCKER}\n\
             echo 'demo-agent {REVERT_FAILS} postinst failed' >&2\nexit 1\n"
        ),
        _ => format!("#!/bin/sh\nset -e\n{PROGRESS}\n{START_UNIT}"),
    };
    vec![("preinst", preinst), ("postinst", postinst)]
}

/// `demo-agent.service` as `version` ships it: a process that stays up, except in
/// [`CRASH_LOOPING`], whose process exits after a second and is restarted a second later
/// (without a start limit, so it loops for as long as it is installed) — up, so "active",
/// for half of the time.
fn unit(version: &str) -> String {
    let service = if version == CRASH_LOOPING {
        format!(
            "StartLimitIntervalSec=0\n\n[Service]\n\
             ExecStart=/bin/sh -c 'echo \"demo-agent {version} started\"; sleep 1; exit 1'\n\
             Restart=always\nRestartSec=1\n"
        )
    } else {
        "\n[Service]\nExecStart=/bin/sleep infinity\n".to_string()
    };
    format!(
        "[Unit]\nDescription=Drover's demo agent {version}\n{service}\n\
         [Install]\nWantedBy=multi-user.target\n"
    )
}

pub struct Host {
    pub machine: Machine,
    _dir: tempfile::TempDir,
    started: Instant,
}

impl Host {
    /// A booted machine with the Drover .debs and the demo agent's signed apt repository
    /// at /hostbed (nothing installed yet); `None` when the bed cannot run.
    pub async fn boot() -> Option<Host> {
        let started = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        // Mounted at /hostbed: apt reads the repository as its sandbox user `_apt`.
        let share = dir.path().join("share");
        std::fs::create_dir_all(&share).unwrap();
        std::fs::set_permissions(&share, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        // Booted first: a host that cannot run the bed skips before any work. The bind shows
        // what is added to `share` later.
        let machine = Machine::boot(&[(&share, "/hostbed")], dir.path()).await?;
        package_drover(&share.join("debs"));
        let build = dir.path().join("agent-build");
        std::fs::create_dir_all(&build).unwrap();
        let debs: Vec<_> = VERSIONS
            .iter()
            .map(|v| {
                let files = [("/lib/systemd/system/demo-agent.service", unit(v))];
                drover_tests::hostbed::deb(&build, PACKAGE, v, &scripts(v), &files)
            })
            .collect();
        drover_tests::hostbed::signed_apt_repo(&share, &debs);
        Some(Host {
            machine,
            _dir: dir,
            started,
        })
    }

    /// Installs both Drover packages and starts the coordinator's service.
    pub async fn start_coordinator(&self) {
        self.start_coordinator_with("").await;
    }

    /// [`Host::start_coordinator`] with `coordinator_args` added to its usual ones.
    pub async fn start_coordinator_with(&self, coordinator_args: &str) {
        let m = &self.machine;
        m.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
              /hostbed/debs/drover-coordinator_*.deb /hostbed/debs/drover-updater_*.deb")
            .await;
        // Fast heartbeats and last-seen writes, so "two heartbeats" is seconds.
        m.sh(&format!(
            "printf '%s\\n' DROVER_CONTROL_PLANE_VERSION=2.0.0 \
              'DROVER_COORDINATOR_ARGS=--heartbeat-secs 2 --liveness-flush-secs 1 {coordinator_args}' \
              >> /etc/drover/coordinator.env && systemctl enable --now drover-coordinator"
        ))
        .await;
    }

    /// Installs demo-agent `version` by hand with apt (as an operator would before the
    /// updater runs), from the test's repository, added on first use.
    pub async fn install_agent(&self, version: &str) {
        self.machine
            .sh(&format!(
                "if ! test -e /etc/apt/sources.list.d/demo.list; then \
                   install -D -m 0644 /hostbed/repo.asc /etc/apt/keyrings/demo.asc && \
                   echo 'deb [signed-by=/etc/apt/keyrings/demo.asc] file:/hostbed/repo stable \
                   main' > /etc/apt/sources.list.d/demo.list && apt-get update -q; fi && \
                 DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades \
                   demo-agent={version}"
            ))
            .await;
    }

    /// Channel `beta` on 1.0.0 and the updater enrolled and running with `updater_args`
    /// added to its usual ones (the agent installed first: [`Host::install_agent`]).
    pub async fn start_updater(&self, updater_args: &str) {
        let m = &self.machine;
        self.ctl(&["channels", "set", "beta", "1.0.0"]).await;
        let token = self
            .ctl(&[
                "tokens", "create", "--group", "prod", "--uses", "1", "--ttl", "1h",
            ])
            .await;
        let token = token["secret"].as_str().expect("a join token");
        let profile: Value =
            serde_json::from_str(&m.sh("cat /var/lib/drover/data/admin-profile.json").await)
                .unwrap();
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
            &format!(
                "DROVER_COORDINATOR=https://127.0.0.1:7400\n\
                 DROVER_STATE_DIR=/var/lib/drover-updater\n\
                 DROVER_CHANNEL=beta\nDROVER_INSTALLER=apt\nDROVER_PACKAGE=demo-agent\n\
                 DROVER_UPDATER_ARGS=--recheck-secs 3600 --install-timeout-secs 120 \
                 {updater_args}\n"
            ),
            "0600",
        )
        .await;
        m.sh("systemctl enable --now drover-updater").await;
        eprintln!("host: set up in {:.1?}", self.started.elapsed());
    }

    /// `droverctl ARGS -o json` inside the machine with the coordinator's admin profile.
    pub async fn ctl(&self, args: &[&str]) -> Value {
        let mut argv = vec!["env", PROFILE, "droverctl"];
        argv.extend(args);
        argv.extend(["-o", "json"]);
        let out = self.machine.exec(&argv).await;
        assert!(out.success, "droverctl {args:?} failed: {}", out.stderr);
        serde_json::from_str(&out.stdout).unwrap_or_else(|err| {
            panic!("droverctl {args:?} printed no JSON ({err}): {}", out.stdout)
        })
    }

    /// The updater's own state (`drover-updater status --json`).
    pub async fn updater_state(&self) -> Value {
        let out = self
            .machine
            .exec(&["drover-updater", "status", "--json"])
            .await;
        assert!(out.success, "drover-updater status failed: {}", out.stderr);
        serde_json::from_str(&out.stdout).unwrap_or_else(|err| {
            panic!(
                "drover-updater status printed no JSON ({err}): {}",
                out.stdout
            )
        })
    }

    /// The updater's state once its last decision's reason is `reason`.
    pub async fn decision(&self, reason: &str) -> Value {
        eventually_explained(
            &format!("the updater's decision {reason}"),
            WAIT,
            async || {
                let state = self.updater_state().await;
                (state["last_decision"]["reason"] == reason).then_some(state)
            },
            || self.explain(),
        )
        .await
    }

    /// Waits for `beats` more heartbeats (last-seen moving on each time); every look in
    /// between must find the agent connected and pass `check`.
    pub async fn stays_connected(&self, beats: usize, after: &str, check: impl Fn(&Value)) {
        let mut seen = self.agent().await["last_seen"].clone();
        for beat in 1..=beats {
            seen = eventually_explained(
                &format!("heartbeat {beat} after {after}"),
                std::time::Duration::from_secs(30),
                async || {
                    let now = self.agent().await;
                    assert_eq!(
                        now["connected"],
                        true,
                        "disconnected after {after}: {now:#}\n{}",
                        self.explain()
                    );
                    check(&now);
                    (now["last_seen"] != seen).then(|| now["last_seen"].clone())
                },
                || self.explain(),
            )
            .await;
        }
    }

    pub async fn agent(&self) -> Value {
        self.ctl(&["agents", "show", AGENT]).await
    }

    /// What a failure message needs: the units' recent journal.
    pub fn explain(&self) -> String {
        format!(
            "--- drover-updater journal:\n{}\n--- drover-coordinator journal:\n{}\n\
             --- {UNIT} journal:\n{}",
            self.machine.journal_tail("drover-updater", 40),
            self.machine.journal_tail("drover-coordinator", 15),
            self.machine.journal_tail(UNIT, 15)
        )
    }

    /// `agents list` shows the agent connected and running `version`.
    pub async fn wait_connected_on(&self, version: &str) {
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
    pub async fn report_for(&self, version: &str) -> Value {
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
    pub async fn dpkg_status(&self) -> (String, String) {
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

    pub fn done(&self, test: &str) {
        eprintln!("host: {test} took {:.1?}", self.started.elapsed());
    }
}

/// The machine with the coordinator running, demo-agent 1.0.0 installed by hand, and the
/// updater enrolled and running (with `updater_args` added); `None` when the bed cannot run.
pub async fn setup(updater_args: &str) -> Option<Host> {
    let host = Host::boot().await?;
    host.start_coordinator().await;
    host.install_agent("1.0.0").await;
    host.start_updater(updater_args).await;
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
