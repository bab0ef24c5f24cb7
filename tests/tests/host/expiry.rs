//! Issue #25 item 5: an agent certificate that expires while the coordinator is down
//! renews itself (audited) when the coordinator is back, within the renewal grace period;
//! it needed `enroll --force` before.

use std::time::Duration;

use drover_tests::eventually_explained;
use serde_json::Value;

use crate::setup::{AGENT, Host};

const IDENTITY: &str = "/var/lib/drover-updater/identity/identity.json";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_expired_while_the_coordinator_was_down_renews_on_its_own() {
    let Some(host) = Host::boot().await else {
        return;
    };
    let m = &host.machine;
    host.start_coordinator_with("--agent-cert-validity-secs 10")
        .await;
    host.install_agent("1.0.0").await;
    host.start_updater("").await;
    host.wait_connected_on("1.0.0").await;
    let identity = async || -> Value {
        serde_json::from_str(&m.sh(&format!("cat {IDENTITY}")).await).unwrap()
    };
    let now_ms = async || -> i64 { m.sh("date +%s%3N").await.trim().parse().unwrap() };

    m.sh("systemctl stop drover-coordinator").await;
    let record = identity().await;
    assert_eq!(record["agent_id"], AGENT, "{record:#}");
    let expiry = record["not_after_ms"].as_i64().expect("not_after_ms");
    eventually_explained(
        "the agent's certificate to expire while the coordinator is down",
        Duration::from_secs(30),
        async || (now_ms().await > expiry + 1000).then_some(()),
        || host.explain(),
    )
    .await;
    // Still the expired one: nothing renewed it in the meantime.
    assert_eq!(identity().await["not_after_ms"], expiry);

    m.sh("systemctl start drover-coordinator").await;
    let renewed = eventually_explained(
        "the expired certificate to be renewed",
        crate::setup::WAIT,
        async || {
            let record = identity().await;
            (record["not_after_ms"].as_i64()? > expiry).then_some(record)
        },
        || host.explain(),
    )
    .await;
    assert_eq!(renewed["agent_id"], AGENT, "{renewed:#}");
    host.wait_connected_on("1.0.0").await;
    let audit = host.ctl(&["audit", "--since", "1h"]).await;
    assert!(
        audit
            .to_string()
            .contains("renewed a certificate that had expired"),
        "{audit:#}"
    );
    host.done("a_certificate_that_expired_while_the_coordinator_was_down_renews_on_its_own");
}
