//! A real `drover-updater` with an enrolled identity: it connects with its certificate,
//! renews it before expiry without anyone acting, and is cut off at once when revoked.

use std::time::Duration;

use drover_tests::{
    CoordinatorBuilder, UpdaterBuilder, droverctl_json, eventually, wait_connected,
};
use serde_json::Value;

fn identity_record(state_dir: &std::path::Path) -> Value {
    let bytes = std::fs::read(state_dir.join("identity/identity.json")).expect("identity.json");
    serde_json::from_slice(&bytes).expect("identity.json is JSON")
}

#[tokio::test]
async fn an_updater_renews_its_certificate_before_expiry_and_stays_connected() {
    let root = tempfile::tempdir().unwrap();
    // Fifteen-second certificates: renewed after ten, well before they expire.
    let c = CoordinatorBuilder::sqlite(root.path())
        .control_plane("1.0.0")
        .arg("--agent-cert-validity-secs")
        .arg("15")
        .start()
        .await;
    let url = c.grpc_url();
    let state = root.path().join("u");
    let updater = UpdaterBuilder::new(&url, &state, "renew-1")
        .arg("--group", "prod")
        .arg("--agent-version", "1.0.0")
        .arg("--install-command", "true")
        .start();
    wait_connected(&url, 1).await;
    let first = identity_record(&state);
    let first_expiry = first["not_after_ms"].as_i64().unwrap();
    let renewed = eventually(
        "the certificate is renewed",
        Duration::from_secs(40),
        async || {
            let record = identity_record(&state);
            (record["not_after_ms"].as_i64().unwrap() > first_expiry).then_some(record)
        },
    )
    .await;
    assert_eq!(renewed["agent_id"], "renew-1");
    // Past the first certificate's expiry, the updater still holds a session (reconnecting
    // if it must with the renewed certificate) and the coordinator records the new one.
    eventually(
        "the first certificate has expired",
        Duration::from_secs(30),
        async || {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            (now > first_expiry + 1000).then_some(())
        },
    )
    .await;
    wait_connected(&url, 1).await;
    let identities = droverctl_json(&url, &["agents", "identities"]).await;
    assert_eq!(identities[0]["agent_id"], "renew-1", "{identities}");
    assert!(identities[0]["revoked_at"].is_null());
    assert!(
        updater.log().contains("renewed"),
        "the updater logs the renewal: {}",
        updater.log()
    );
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// #21 item 5: the certificate expires while the coordinator is down. Within the grace
/// period it renews itself when the coordinator is back (audited), and the agent reconnects
/// without an operator; an expired certificate opens no session.
#[tokio::test]
async fn a_certificate_that_expired_while_the_coordinator_was_down_renews_within_the_grace() {
    let root = tempfile::tempdir().unwrap();
    let mut c = CoordinatorBuilder::sqlite(root.path())
        .control_plane("1.0.0")
        .arg("--agent-cert-validity-secs")
        .arg("10")
        .start()
        .await;
    let url = c.grpc_url();
    let state = root.path().join("u");
    let _updater = UpdaterBuilder::new(&url, &state, "late-1")
        .arg("--group", "prod")
        .arg("--agent-version", "1.0.0")
        .arg("--install-command", "true")
        .start();
    wait_connected(&url, 1).await;
    let first_expiry = identity_record(&state)["not_after_ms"].as_i64().unwrap();
    c.kill9().await;
    eventually(
        "the certificate expired while the coordinator was down",
        Duration::from_secs(30),
        async || (now_ms() > first_expiry + 1000).then_some(()),
    )
    .await;
    c.restart().await;
    let renewed = eventually(
        "the expired certificate is renewed",
        Duration::from_secs(60),
        async || {
            let record = identity_record(&state);
            (record["not_after_ms"].as_i64().unwrap() > first_expiry).then_some(record)
        },
    )
    .await;
    assert_eq!(renewed["agent_id"], "late-1");
    wait_connected(&url, 1).await;
    let audit = droverctl_json(&url, &["audit", "--since", "1h"]).await;
    assert!(
        audit
            .to_string()
            .contains("renewed a certificate that had expired"),
        "{audit}"
    );
}

#[tokio::test]
async fn revoking_a_connected_updater_cuts_it_off_and_it_cannot_come_back() {
    let root = tempfile::tempdir().unwrap();
    let c = CoordinatorBuilder::sqlite(root.path())
        .control_plane("1.0.0")
        .start()
        .await;
    let url = c.grpc_url();
    let updater = UpdaterBuilder::new(&url, &root.path().join("u"), "cut-1")
        .arg("--group", "prod")
        .arg("--agent-version", "1.0.0")
        .arg("--install-command", "true")
        .start();
    wait_connected(&url, 1).await;
    droverctl_json(&url, &["agents", "revoke", "cut-1"]).await;
    wait_connected(&url, 0).await;
    // It keeps trying (with backoff) and is refused each time, saying why.
    eventually(
        "the updater is told it was revoked",
        Duration::from_secs(30),
        async || updater.log().contains("revoked").then_some(()),
    )
    .await;
    let summary = droverctl_json(&url, &["fleet", "summary"]).await;
    assert_eq!(summary["connected_agents"], 0, "{summary}");
}
