//! The packages on a booted Debian 12 (the host test bed, `drover_tests::hostbed`): the
//! .debs `scripts/package` builds are installed with apt, the coordinator and updater run as
//! their packaged units, the updater is enrolled with a join token and the CA pin, and it
//! installs the agent with the real apt from a signed repository whose maintainer scripts
//! print progress with `\r` (as dpkg and progress bars do), create a user with a home, and
//! (re)start the agent's own unit — in one release, a unit that crash-loops. The journal is
//! the real journald's: warnings reach it at warning priority.

mod disk;
mod expiry;
mod revert;
mod setup;

use drover_tests::eventually_explained;
use setup::{CRASH_LOOPING, Host, PACKAGE, UNIT, WAIT, setup};

/// The updater's health gate on the agent's unit: healthy within 20 s, then 8 s without a
/// failed probe or a restart of the unit.
const HEALTH_ARGS: &str = "--health-systemd-unit demo-agent.service --health-stable-secs 8 \
                           --health-grace-secs 20 --health-interval-ms 500";
/// What systemd logs in a unit's journal each time `Restart=` brings it back.
const AUTO_RESTART: &str = "Scheduled restart job";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_install_and_run_under_systemd() {
    let Some(host) = setup("").await else { return };
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
    let Some(host) = setup("").await else { return };
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

    // Connected through two heartbeats after the report.
    host.stays_connected(2, "the report", |_| {}).await;
    assert_eq!(
        host.agent().await["last_report"],
        *report,
        "the report stays recorded once"
    );
    host.done("a_failed_install_with_carriage_returns_keeps_the_agent_connected");
}

/// Issue #25 item 3: a release that exits a second after each start, under a unit that
/// brings it back a second later, is "active" to half of all probes; one good probe passed
/// it as installed and healthy. Now it must stay up and unrestarted for the stability
/// period, and the updater's watch on the unit (NRestarts, main PID, activation time) sees
/// it go down and reverts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_release_is_reverted_by_the_stability_watch() {
    let Some(host) = Host::boot().await else {
        return;
    };
    let m = &host.machine;
    host.start_coordinator().await;
    // The scenario is real: installed by hand, before any updater runs, the release's unit
    // is restarted by systemd again and again, and after a restart it is "active" — what
    // the old gate's single good probe took for healthy.
    host.install_agent(CRASH_LOOPING).await;
    let mut active_after_restart = false;
    eventually_explained(
        &format!("{UNIT} under {CRASH_LOOPING}: restarted twice, active after a restart"),
        WAIT,
        async || {
            let restarts: u64 = m.unit_property(UNIT, "NRestarts").await.parse().ok()?;
            let active = m.exec(&["systemctl", "is-active", "--quiet", UNIT]).await;
            active_after_restart |= active.success && restarts >= 1;
            (active_after_restart && restarts >= 2).then_some(())
        },
        || host.explain(),
    )
    .await;

    host.install_agent("1.0.0").await;
    host.start_updater(HEALTH_ARGS).await;
    host.wait_connected_on("1.0.0").await;
    assert_eq!(
        m.unit_property(UNIT, "ActiveState").await,
        "active",
        "{}",
        host.explain()
    );
    let earlier = m.journal(UNIT).lines().count();

    host.ctl(&["channels", "set", "beta", CRASH_LOOPING]).await;
    let agent = host.report_for(CRASH_LOOPING).await;
    let report = &agent["last_report"];
    assert_eq!(
        report["outcome"],
        "reverted",
        "{agent:#}\n{}",
        host.explain()
    );
    let error = report["error"].as_str().unwrap_or_default();
    eprintln!("host: the report for {CRASH_LOOPING}: {error}");
    let restart_words = [
        "restarted",
        "exited",
        "main process changed",
        "activated again",
    ];
    assert!(
        error.contains(&format!("{CRASH_LOOPING} is not stable"))
            && error.contains(&format!("({UNIT})"))
            && restart_words.iter().any(|w| error.contains(w))
            && error.contains("reverted to 1.0.0"),
        "not reverted for the unit's restart: {error:?}\n{}",
        host.explain()
    );
    // And under the updater the release really ran and crashed before it was reverted.
    let journal = m.journal(UNIT);
    let attempt: Vec<&str> = journal.lines().skip(earlier).collect();
    assert!(
        attempt
            .iter()
            .any(|l| l.contains(&format!("demo-agent {CRASH_LOOPING} started")))
            && attempt
                .iter()
                .any(|l| l.contains("Main process exited, code=exited, status=1/FAILURE")),
        "{CRASH_LOOPING} did not run and crash in the attempt:\n{}",
        attempt.join("\n")
    );
    let restarts = attempt.iter().filter(|l| l.contains(AUTO_RESTART)).count();
    eprintln!("host: automatic restarts of {UNIT} during the attempt: {restarts}");

    let (status, version) = host.dpkg_status().await;
    assert_eq!(
        (status.as_str(), version.as_str()),
        ("hold ok installed", "1.0.0")
    );
    // 1.0.0's unit is back, running its own command, and stays up.
    let pid = eventually_explained(
        &format!("{UNIT} running 1.0.0's command again"),
        WAIT,
        async || {
            let command = m.unit_property(UNIT, "ExecStart").await;
            let sub_state = m.unit_property(UNIT, "SubState").await;
            let pid = m.unit_property(UNIT, "MainPID").await;
            (command.contains("argv[]=/bin/sleep infinity")
                && m.unit_property(UNIT, "ActiveState").await == "active"
                && sub_state == "running")
                .then_some(pid)
        },
        || host.explain(),
    )
    .await;
    host.wait_connected_on("1.0.0").await;
    assert_eq!(
        m.unit_property(UNIT, "MainPID").await,
        pid,
        "{UNIT} restarted after the revert:\n{}",
        host.explain()
    );
    let version = m.sh(&format!("cat /opt/{PACKAGE}/VERSION")).await;
    assert_eq!(version, "1.0.0");
    host.done("a_crash_looping_release_is_reverted_by_the_stability_watch");
}

/// Issue #25 "done when": journald files a line at info unless it starts with an sd-daemon
/// priority prefix, so without them `journalctl -p warning` showed none of Drover's
/// warnings. A plaintext client on the coordinator's TLS port makes it warn (the first failed
/// handshake in 10 s is a warning); the real journald must file that line as a warning, and
/// the start-up line at info, out of `-p warning`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinators_warnings_reach_the_journal_at_warning_priority() {
    let Some(host) = Host::boot().await else {
        return;
    };
    host.start_coordinator().await;
    let m = &host.machine;
    const WARNING: &str = "TLS handshake failed";
    const INFO: &str = "coordinator serving";
    let plaintext = "exec 3<>/dev/tcp/127.0.0.1/7400 && \
                     printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3 >/dev/null";
    let journal = async |priority: &[&str]| {
        let mut argv = vec!["journalctl", "-u", "drover-coordinator", "-o", "cat"];
        argv.push("--no-pager");
        argv.extend(priority);
        m.exec(&argv).await.stdout
    };
    let warnings = eventually_explained(
        &format!("`journalctl -p warning -u drover-coordinator` to show {WARNING:?}"),
        WAIT,
        async || {
            let warnings = journal(&["-p", "warning"]).await;
            if warnings.contains(WARNING) {
                return Some(warnings);
            }
            // Refused or reset, all the same: only the coordinator's log counts.
            m.exec(&["timeout", "10", "bash", "-c", plaintext]).await;
            None
        },
        || host.explain(),
    )
    .await;
    let all = journal(&[]).await;
    assert!(all.contains(INFO), "no {INFO:?} line at all:\n{all}");
    assert!(
        !warnings.contains(INFO),
        "an info line in `journalctl -p warning`:\n{warnings}"
    );
    // journald took the priority prefix off the line.
    let line = warnings.lines().find(|l| l.contains(WARNING)).unwrap();
    assert!(!line.starts_with('<'), "{line}");
    assert!(all.contains(line), "{line}\n{all}");
    host.done("the_coordinators_warnings_reach_the_journal_at_warning_priority");
}
