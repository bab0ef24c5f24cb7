//! Issue #25 item 2: a release whose postinst fails, and whose revert (apt installing 1.0.0
//! again) fails too. The revert looped without end; now it is one failed report, the
//! decision `revert_failed`, and a retry only after a backoff (or at once on a restart).

use std::time::Duration;

use drover_tests::eventually_explained;

use crate::setup::{REVERT_BLOCKER, REVERT_FAILS, setup};

/// Far below the 15.6 MB the loop once wrote in 30 s.
const STATE_LIMIT: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revert_that_fails_is_retried_with_backoff_not_in_a_loop() {
    let Some(host) = setup("").await else { return };
    let m = &host.machine;
    host.wait_connected_on("1.0.0").await;
    host.ctl(&["channels", "set", "beta", REVERT_FAILS]).await;

    let agent = host.report_for(REVERT_FAILS).await;
    let report = agent["last_report"].clone();
    let error = report["error"].as_str().unwrap_or_default();
    eprintln!("host: the report for {REVERT_FAILS}: {error}");
    assert_eq!(report["outcome"], "failed", "{agent:#}\n{}", host.explain());
    assert!(
        error.contains("the revert failed too") && error.contains("cannot configure"),
        "{error:?}\n{}",
        host.explain()
    );
    let state = host.decision("revert_failed").await;
    assert_eq!(state["revert_failure"]["attempts"], 1, "{state:#}");
    assert_eq!(state["revert_failure"]["back_to"], "1.0.0", "{state:#}");

    // Listed on the version dpkg has (the revert unpacked 1.0.0, whose configure failed).
    let (status, dpkg_version) = host.dpkg_status().await;
    eprintln!("host: dpkg after the failed revert: {status} {dpkg_version}");
    eventually_explained(
        &format!("the coordinator to list the agent on dpkg's {dpkg_version}"),
        Duration::from_secs(30),
        async || (host.agent().await["agent_version"] == dpkg_version.as_str()).then_some(()),
        || host.explain(),
    )
    .await;

    // Four heartbeats (every 2 s) in the same session with no new report and no new revert:
    // the first retry is 30 s away.
    let reverts = |journal: &str| {
        journal
            .matches("the revert failed; it is retried with backoff")
            .count()
    };
    host.stays_connected(4, "the failed revert", |now| {
        assert_eq!(
            now["last_report"]["attempt_id"],
            report["attempt_id"],
            "another report within the backoff: {now:#}\n{}",
            host.explain()
        );
    })
    .await;
    let journal = m.journal("drover-updater");
    assert_eq!(reverts(&journal), 1, "{journal}");
    let state = host.updater_state().await;
    assert_eq!(
        state["last_decision"]["reason"], "revert_failed",
        "{state:#}"
    );
    assert_eq!(state["revert_failure"]["attempts"], 1, "{state:#}");
    let size: u64 = m
        .sh("stat -c %s /var/lib/drover-updater/state.json")
        .await
        .trim()
        .parse()
        .unwrap();
    eprintln!("host: state.json is {size} bytes after the failed revert");
    assert!(size < STATE_LIMIT, "state.json grew to {size} bytes");

    // The operator repairs the host and restarts the updater: the revert is tried at once.
    m.sh(&format!(
        "rm {REVERT_BLOCKER} && systemctl restart drover-updater"
    ))
    .await;
    let agent = eventually_explained(
        "the revert retried after the restart to succeed",
        crate::setup::WAIT,
        async || {
            let agent = host.agent().await;
            (agent["last_report"]["outcome"] == "reverted").then_some(agent)
        },
        || host.explain(),
    )
    .await;
    assert_eq!(
        agent["last_report"]["to_version"], REVERT_FAILS,
        "{agent:#}"
    );
    let (status, version) = host.dpkg_status().await;
    assert_eq!(
        (status.as_str(), version.as_str()),
        ("hold ok installed", "1.0.0"),
        "{}",
        host.explain()
    );
    host.wait_connected_on("1.0.0").await;
    let state = host.updater_state().await;
    assert!(state["revert_failure"].is_null(), "{state:#}");
    assert_ne!(
        state["last_decision"]["reason"], "revert_failed",
        "{state:#}"
    );
    host.done("a_revert_that_fails_is_retried_with_backoff_not_in_a_loop");
}
