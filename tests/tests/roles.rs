//! Admin identities and roles: every admin call (gRPC and the JSON API) needs a token; a
//! viewer reads, an operator also changes the fleet, an admin also the control plane and
//! the credentials. Refusals change nothing and a wrong role is audited; revoking is
//! immediate; secrets are never shown twice nor logged.

use std::{os::unix::fs::PermissionsExt, path::Path, time::Duration};

use drover_tests::{
    CoordinatorBuilder, CoordinatorProcess, bin, droverctl, droverctl_json, http, http_as,
    simulate, token_for, wait_connected,
};
use serde_json::Value;

/// Runs droverctl against `c` with `token` (`None`: no token at all) instead of the
/// bootstrap admin's: a profile of our own with the coordinator's CA. (success, out, err)
async fn ctl_as(
    c: &CoordinatorProcess,
    dir: &Path,
    token: Option<&str>,
    args: &[&str],
) -> (bool, String, String) {
    let tls = c.tls.as_ref().expect("a TLS coordinator");
    let mut profile = serde_json::json!({
        "coordinator": c.grpc_url(),
        "ca_file": tls.ca_file,
    });
    if let Some(token) = token {
        profile["credentials"] = serde_json::json!({ "token": token });
    }
    let path = dir.join(format!("profile-{}.json", rand_suffix()));
    std::fs::write(&path, serde_json::to_vec(&profile).unwrap()).unwrap();
    let output = tokio::process::Command::new(bin("droverctl"))
        .arg("--profile")
        .arg(&path)
        .args(args)
        .env_remove("DROVER_TOKEN")
        .output()
        .await
        .expect("run droverctl");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

async fn start(root: &Path) -> CoordinatorProcess {
    let c = CoordinatorBuilder::sqlite(root)
        .control_plane("2.0.0")
        .start()
        .await;
    droverctl_json(&c.grpc_url(), &["channels", "set", "edge", "1.0.0"]).await;
    c
}

/// Creates a credential as the bootstrap admin; returns its token.
async fn create(c: &CoordinatorProcess, name: &str, role: &str) -> String {
    let created = droverctl_json(
        &c.grpc_url(),
        &["admins", "create", "--name", name, "--role", role],
    )
    .await;
    assert_eq!(created["credential"]["role"], role, "{created}");
    let token = created["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("drover_"), "{created}");
    token
}

async fn edge_version(c: &CoordinatorProcess) -> Value {
    let channels = droverctl_json(&c.grpc_url(), &["channels", "list"]).await;
    channels
        .as_array()
        .unwrap()
        .iter()
        .find(|ch| ch["name"] == "edge")
        .unwrap()["version"]
        .clone()
}

fn records<'a>(audit: &'a Value, action: &str, result: &str) -> Vec<&'a Value> {
    audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == action && r["result"] == result)
        .collect()
}

#[tokio::test]
async fn without_a_valid_token_grpc_and_http_refuse_and_nothing_changes() {
    let root = tempfile::tempdir().unwrap();
    let c = start(root.path()).await;
    let dir = root.path();

    for token in [None, Some("drover_0000"), Some("not-a-token")] {
        let (ok, _, stderr) = ctl_as(&c, dir, token, &["channels", "set", "edge", "1.1.0"]).await;
        assert!(!ok, "{token:?}");
        assert!(
            stderr.contains("Unauthenticated") && stderr.contains("DROVER_PROFILE"),
            "{stderr}"
        );
        let (ok, _, stderr) = ctl_as(&c, dir, token, &["fleet", "summary"]).await;
        assert!(!ok && stderr.contains("Unauthenticated"), "{stderr}");
        let (status, body) = http_as(c.addresses.http, "GET", "/api/v1/channels", token).await;
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("DROVER_PROFILE"), "{body}");
    }
    let (status, _) = http_as(c.addresses.http, "GET", "/api/v1/stats", None).await;
    assert_eq!(status, 401);
    // Counted instead: 3 tokens × (2 droverctl calls + 1 HTTP) and the stats call.
    let (_, stats) = http(c.addresses.http, "GET", "/api/v1/stats").await;
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["unauthenticated_admin_requests"], 10, "{stats}");
    // Health, the API's description and the Teleport-compatible routes stay public.
    for path in [
        "/livez",
        "/healthz",
        "/readyz",
        "/api/v1/openapi.json",
        "/v1/webapi/automaticupgrades/channel/edge/version",
    ] {
        let (status, body) = http_as(c.addresses.http, "GET", path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }

    // The API's description says so: a bearer scheme on every route, and its 401.
    let (_, document) = http_as(c.addresses.http, "GET", "/api/v1/openapi.json", None).await;
    let document: Value = serde_json::from_str(&document).unwrap();
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer",
        "{document:#}"
    );
    let routes = document["paths"].as_object().unwrap();
    for (route, item) in routes {
        let operations: Vec<&Value> = ["get", "post"]
            .iter()
            .filter_map(|method| item.get(*method))
            .collect();
        assert!(!operations.is_empty(), "{route} has no operation");
        for operation in operations {
            assert!(
                operation["responses"]["401"].is_object(),
                "{route} documents no 401"
            );
        }
    }
    // The dashboard's actions too refuse a caller without a token, before anything runs.
    let (status, body) = drover_tests::http_body_as(
        c.addresses.http,
        "POST",
        "/api/v1/channels/version",
        None,
        r#"{"name": "edge", "version": "1.1.0"}"#,
    )
    .await;
    assert_eq!(status, 401, "{body}");

    assert_eq!(edge_version(&c).await, "1.0.0", "nothing changed");
    let audit = droverctl_json(&c.grpc_url(), &["audit"]).await;
    assert_eq!(
        records(&audit, "SetChannelVersion", "refused").len(),
        0,
        "unauthenticated requests are not audited one by one: {audit:#}"
    );
}

#[tokio::test]
async fn a_viewer_reads_but_its_change_is_refused_and_audited() {
    let root = tempfile::tempdir().unwrap();
    let c = start(root.path()).await;
    let dir = root.path();
    let viewer = create(&c, "vera", "viewer").await;

    let (ok, out, stderr) = ctl_as(&c, dir, Some(&viewer), &["channels", "list"]).await;
    assert!(ok && out.contains("edge"), "{stderr}");
    let (ok, _, stderr) = ctl_as(&c, dir, Some(&viewer), &["audit"]).await;
    assert!(ok, "{stderr}");
    let (status, body) = http_as(c.addresses.http, "GET", "/api/v1/channels", Some(&viewer)).await;
    assert_eq!(status, 200, "{body}");

    for extra in [&[][..], &["--dry-run"][..]] {
        let mut args = vec!["channels", "set", "edge", "1.1.0"];
        args.extend(extra);
        let (ok, _, stderr) = ctl_as(&c, dir, Some(&viewer), &args).await;
        assert!(!ok, "{args:?}");
        assert!(
            stderr.contains("PermissionDenied") && stderr.contains("needs the operator role"),
            "{stderr}"
        );
    }
    let (ok, _, stderr) = ctl_as(&c, dir, Some(&viewer), &["admins", "list"]).await;
    assert!(!ok && stderr.contains("needs the admin role"), "{stderr}");
    assert_eq!(edge_version(&c).await, "1.0.0", "nothing changed");

    let audit = droverctl_json(&c.grpc_url(), &["audit"]).await;
    let refused = records(&audit, "SetChannelVersion", "refused");
    assert_eq!(refused.len(), 2, "{audit:#}");
    for record in refused {
        assert_eq!(
            (&record["actor"], &record["role"], &record["target"]),
            (
                &Value::from("vera"),
                &Value::from("viewer"),
                &Value::from("edge")
            ),
            "{audit:#}"
        );
    }
    // Creating the credential is a change, audited with its event.
    let created = records(&audit, "CreateAdminCredential", "ok");
    assert_eq!(created.len(), 1, "{audit:#}");
    assert_eq!(created[0]["actor"], "bootstrap");
}

#[tokio::test]
async fn an_operator_creates_a_rollout_but_not_the_control_plane() {
    let root = tempfile::tempdir().unwrap();
    let c = start(root.path()).await;
    let dir = root.path();
    let operator = create(&c, "olga", "operator").await;
    let _fleet = simulate(
        &c.grpc_url(),
        dir,
        &[
            "--count",
            "1",
            "--groups",
            "dev",
            "--channel",
            "edge",
            "--versions",
            "1.0.0",
            "--id-prefix",
            "sim",
        ],
    );
    wait_connected(&c.grpc_url(), 1).await;

    let args = [
        "rollout",
        "create",
        "--channel",
        "edge",
        "--from",
        "1.0.0",
        "--to",
        "1.1.0",
        "--group",
        "dev",
    ];
    let (ok, _, stderr) = ctl_as(&c, dir, Some(&operator), &args).await;
    assert!(ok, "{stderr}");
    let (ok, _, stderr) =
        ctl_as(&c, dir, Some(&operator), &["control-plane", "set", "2.1.0"]).await;
    assert!(
        !ok && stderr.contains("PermissionDenied") && stderr.contains("needs the admin role"),
        "{stderr}"
    );
    let (ok, _, stderr) = ctl_as(
        &c,
        dir,
        Some(&operator),
        &["admins", "create", "--name", "x", "--role", "admin"],
    )
    .await;
    assert!(!ok && stderr.contains("needs the admin role"), "{stderr}");
    let cp = droverctl_json(&c.grpc_url(), &["control-plane", "get"]).await;
    assert_eq!(cp["version"], "2.0.0");
    let audit = droverctl_json(&c.grpc_url(), &["audit"]).await;
    assert_eq!(records(&audit, "CreateRollout", "ok")[0]["actor"], "olga");
    let refused = records(&audit, "SetControlPlaneVersion", "refused");
    assert_eq!(refused.len(), 1, "{audit:#}");
    assert_eq!(refused[0]["role"], "operator");
}

#[tokio::test]
async fn a_revoked_token_is_refused_at_once_and_no_secret_is_listed() {
    let root = tempfile::tempdir().unwrap();
    let c = start(root.path()).await;
    let dir = root.path();
    let token = create(&c, "temp", "operator").await;
    let (ok, _, stderr) = ctl_as(&c, dir, Some(&token), &["channels", "list"]).await;
    assert!(ok, "{stderr}");
    // A second live credential of the same name is refused.
    let (ok, _, stderr) = droverctl(
        &c.grpc_url(),
        &["admins", "create", "--name", "temp", "--role", "viewer"],
    )
    .await;
    assert!(!ok && stderr.contains("revoke it first"), "{stderr}");

    let revoked = droverctl_json(&c.grpc_url(), &["admins", "revoke", "temp"]).await;
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let (ok, _, stderr) = ctl_as(&c, dir, Some(&token), &["channels", "list"]).await;
    assert!(!ok && stderr.contains("Unauthenticated"), "{stderr}");
    let (status, _) = http_as(c.addresses.http, "GET", "/api/v1/channels", Some(&token)).await;
    assert_eq!(status, 401);

    // The last live admin cannot be revoked: nobody could manage credentials after it.
    let (ok, _, stderr) = droverctl(&c.grpc_url(), &["admins", "revoke", "bootstrap"]).await;
    assert!(!ok && stderr.contains("last live admin"), "{stderr}");

    let list = droverctl_json(&c.grpc_url(), &["admins", "list"]).await;
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bootstrap", "temp"], "{list:#}");
    let text = list.to_string();
    let bootstrap = token_for(&c.grpc_url()).unwrap();
    assert!(
        !text.contains(&token) && !text.contains(&bootstrap) && !text.contains("drover_"),
        "{text}"
    );
    let (ok, table, _) = droverctl(&c.grpc_url(), &["admins", "list"]).await;
    assert!(ok && !table.contains("drover_"), "{table}");
    let audit = droverctl_json(&c.grpc_url(), &["audit"]).await;
    assert_eq!(records(&audit, "RevokeAdminCredential", "ok").len(), 1);
}

#[tokio::test]
async fn the_profile_is_private_its_token_kept_and_never_logged() {
    let root = tempfile::tempdir().unwrap();
    let mut c = start(root.path()).await;
    let profile = c.tls.as_ref().unwrap().admin_profile.clone();
    let mode = std::fs::metadata(&profile).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", profile.display());
    let token = token_for(&c.grpc_url()).unwrap();
    let other = create(&c, "ci", "viewer").await;
    let (status, _) = http(c.addresses.http, "GET", "/api/v1/fleet/summary").await;
    assert_eq!(status, 200);

    c.kill9().await;
    c.restart().await;
    assert_eq!(
        token_for(&c.grpc_url()).unwrap(),
        token,
        "a later start keeps the token"
    );
    droverctl_json(&c.grpc_url(), &["fleet", "summary"]).await;
    let log = c.log();
    assert!(log.contains("admin credential created"), "{log}");
    assert!(
        !log.contains(&token) && !log.contains(&other),
        "a token was logged"
    );
    assert!(!log.contains(&token[7..]), "a token's secret was logged");
}

/// Two coordinators on one PostgreSQL: only the first start makes a bootstrap token; a
/// credential made or revoked on one is honoured by the other within its settings refresh.
#[tokio::test]
async fn replicas_share_credentials_through_the_store() {
    let root = tempfile::tempdir().unwrap();
    let db = drover_tests::TestPostgres::create().await;
    let (dir_a, dir_b) = (root.path().join("a"), root.path().join("b"));
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let a = CoordinatorBuilder::with_database(&dir_a, &db.url)
        .start()
        .await;
    let b = CoordinatorBuilder::with_database(&dir_b, &db.url)
        .start()
        .await;
    assert!(token_for(&a.grpc_url()).is_some());
    assert!(
        token_for(&b.grpc_url()).is_none(),
        "the second replica makes no bootstrap credential"
    );
    let bootstrap = token_for(&a.grpc_url()).unwrap();
    let (ok, _, stderr) = ctl_as(&b, root.path(), Some(&bootstrap), &["admins", "list"]).await;
    assert!(ok, "{stderr}");

    let token = create(&a, "shared", "viewer").await;
    drover_tests::eventually(
        "the other replica accepts a new token",
        Duration::from_secs(15),
        async || {
            ctl_as(&b, root.path(), Some(&token), &["channels", "list"])
                .await
                .0
                .then_some(())
        },
    )
    .await;
    droverctl_json(&a.grpc_url(), &["admins", "revoke", "shared"]).await;
    drover_tests::eventually(
        "the other replica refuses a revoked token",
        Duration::from_secs(15),
        async || {
            (!ctl_as(&b, root.path(), Some(&token), &["channels", "list"])
                .await
                .0)
                .then_some(())
        },
    )
    .await;
    drop((a, b));
    db.drop_database().await;
}
