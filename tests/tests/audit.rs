//! The audit log records every admin request: each change in the change's own transaction,
//! each refusal and each dry run; `droverctl audit` and `GET /api/v1/audit` show it alike.

use drover_tests::{CoordinatorBuilder, droverctl, droverctl_json, http};
use serde_json::Value;

fn records<'a>(audit: &'a Value, action: &str, result: &str) -> Vec<&'a Value> {
    audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == action && r["result"] == result)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_refusal_and_dry_run_is_audited_and_refusals_change_nothing() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = CoordinatorBuilder::sqlite(root.path())
        .control_plane("2.0.0")
        .start()
        .await;
    let url = coordinator.grpc_url();

    droverctl_json(&url, &["channels", "set", "edge", "1.0.0"]).await;
    let (ok, _, stderr) = droverctl(&url, &["channels", "set", "edge", "one.two"]).await;
    assert!(!ok && stderr.contains("not a semantic version"), "{stderr}");
    let (ok, _, _) = droverctl(&url, &["channels", "set", "edge", "1.1.0", "--dry-run"]).await;
    assert!(ok);
    let (ok, _, stderr) = droverctl(
        &url,
        &[
            "rollout",
            "create",
            "--channel",
            "egde",
            "--from",
            "1.0.0",
            "--to",
            "1.1.0",
            "--group",
            "dev",
        ],
    )
    .await;
    assert!(!ok, "{stderr}");
    let channels = droverctl_json(&url, &["channels", "list"]).await;
    let edge = channels
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "edge")
        .unwrap();
    assert_eq!(
        edge["version"], "1.0.0",
        "neither the refusal nor the dry run changed it"
    );

    let audit = droverctl_json(&url, &["audit", "--since", "1h"]).await;
    let set = records(&audit, "SetChannelVersion", "ok");
    assert_eq!(set.len(), 1, "{audit:#}");
    assert_eq!(
        (&set[0]["actor"], &set[0]["role"], &set[0]["target"]),
        (
            // The harness calls with the bootstrap credential's token (role admin).
            &Value::from("bootstrap"),
            &Value::from("admin"),
            &Value::from("edge")
        )
    );
    let refused = records(&audit, "SetChannelVersion", "refused");
    assert_eq!(refused.len(), 1, "{audit:#}");
    assert!(
        refused[0]["detail"]
            .as_str()
            .unwrap()
            .contains("not a semantic version"),
        "{audit:#}"
    );
    assert_eq!(
        records(&audit, "SetChannelVersion", "dry_run").len(),
        1,
        "{audit:#}"
    );
    let create = records(&audit, "CreateRollout", "refused");
    assert_eq!(create.len(), 1, "{audit:#}");
    assert_eq!(create[0]["target"], "egde");
    assert_eq!(
        records(&audit, "SetControlPlaneVersion", "ok")[0]["actor"],
        "startup flag"
    );

    // Every admin event has its audit record (written in the same transaction).
    let events = droverctl_json(&url, &["events", "--limit", "1000"]).await;
    let admin_events = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "admin")
        .count();
    let changes = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["result"] == "ok")
        .count();
    assert_eq!(admin_events, changes, "{events:#}\n{audit:#}");

    // `--since` filters; HTTP answers the same records.
    let later = droverctl_json(&url, &["audit", "--since", "2099-01-01T00:00:00Z"]).await;
    assert_eq!(later, Value::Array(vec![]));
    let (status, body) = http(coordinator.addresses.http, "GET", "/api/v1/audit?limit=100").await;
    assert_eq!(status, 200, "{body}");
    let over_http: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(over_http, droverctl_json(&url, &["audit"]).await);
    let (status, body) = http(
        coordinator.addresses.http,
        "GET",
        "/api/v1/audit?since=yesterday",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (ok, _, stderr) = droverctl(&url, &["audit", "--since", "last week"]).await;
    assert!(!ok && stderr.contains("RFC 3339"), "{stderr}");
}
