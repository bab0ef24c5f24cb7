//! One API contract: every route of the JSON API answers what `/api/v1/openapi.json` says it
//! answers, and `droverctl -o json` prints the same objects as the HTTP API.

use std::{collections::BTreeSet, time::Duration};

use drover_tests::{
    CoordinatorBuilder, CoordinatorProcess, create_rollout, droverctl, droverctl_json, eventually,
    http, http_body_as, http_json, simulate_fleet, utc_hour_now, wait_connected,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// A coordinator with six agents on channel `edge`, a maintenance window on `prod`, and a
/// rollout whose first group is done and second waits: every kind of object exists.
async fn populated(root: &std::path::Path) -> (CoordinatorProcess, tokio::process::Child) {
    let coordinator = CoordinatorBuilder::sqlite(root)
        .control_plane("2.0.0")
        .arg("--reconcile-ms")
        .arg("100")
        .arg("--version-sample-secs")
        .arg("1")
        .start()
        .await;
    let url = coordinator.grpc_url();
    droverctl_json(&url, &["channels", "set", "edge", "1.0.0"]).await;
    let fleet = simulate_fleet(&url, root, 6, "dev,prod", "edge");
    wait_connected(&url, 6).await;
    let later = ((utc_hour_now() + 12) % 24).to_string();
    let (ok, _, err) = droverctl(
        &url,
        &[
            "schedule",
            "set",
            "--group",
            "prod",
            "--days",
            "mon-fri",
            "--start",
            &format!("{later}:00"),
            "--duration",
            "1h",
        ],
    )
    .await;
    assert!(ok, "schedule set: {err}");
    let dev = format!("dev:canaries=1,start={},window=2", utc_hour_now());
    let prod = format!("prod:canaries=1,start={later},window=1");
    assert!(create_rollout(&url, "edge", &[&dev, &prod], &[]).await.0);
    eventually("dev done", WAIT, async || {
        let status = droverctl_json(&url, &["rollout", "status", "--channel", "edge"]).await;
        (status["groups"][0]["state"] == "done").then_some(())
    })
    .await;
    (coordinator, fleet)
}

async fn get(coordinator: &CoordinatorProcess, path: &str) -> (u16, Value) {
    let (status, body) = http(coordinator.addresses.http, "GET", path).await;
    let value = serde_json::from_str(&body)
        .unwrap_or_else(|err| panic!("GET {path} answered {status} with non-JSON ({err}): {body}"));
    (status, value)
}

async fn post(coordinator: &CoordinatorProcess, path: &str, body: &Value) -> (u16, Value) {
    let (status, text) = http_json(coordinator.addresses.http, path, body).await;
    let value = serde_json::from_str(&text).unwrap_or_else(|err| {
        panic!("POST {path} answered {status} with non-JSON ({err}): {text}")
    });
    (status, value)
}

/// Checks `body` against the schema the document gives for `route`'s `status` answer.
fn check_against_document(document: &Value, route: &str, status: u16, body: &Value) {
    check_method(document, "get", route, status, body);
}

fn check_method(document: &Value, method: &str, route: &str, status: u16, body: &Value) {
    let schema = &document["paths"][route][method]["responses"][status.to_string()]["content"]["application/json"]
        ["schema"];
    assert!(
        !schema.is_null(),
        "the document has no {status} answer for {method} {route}"
    );
    // The components ride along so the schema's `#/components/schemas/...` refs resolve.
    let root = json!({ "allOf": [schema], "components": document["components"] });
    let validator = jsonschema::draft202012::new(&root).expect("the document's schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {route} ({status}) breaks its schema: {errors:#?}\n{body:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_what_the_openapi_document_says() {
    let root = tempfile::tempdir().unwrap();
    let (coordinator, _fleet) = populated(root.path()).await;
    let (status, document) = get(&coordinator, "/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1"),
        "{document}"
    );

    // (route as documented, a real request to it, the status it must answer)
    let requests = [
        ("/api/v1/fleet/summary", "/api/v1/fleet/summary", 200),
        ("/api/v1/agents", "/api/v1/agents?limit=4", 200),
        (
            "/api/v1/agents",
            "/api/v1/agents?group=prod&health=healthy",
            200,
        ),
        ("/api/v1/agents", "/api/v1/agents?health=sideways", 400),
        ("/api/v1/agents", "/api/v1/agents?colour=blue", 400),
        ("/api/v1/agents/{agent_id}", "/api/v1/agents/sim-00001", 200),
        ("/api/v1/agents/{agent_id}", "/api/v1/agents/sim-0001", 404),
        (
            "/api/v1/agents/{agent_id}/explanation",
            "/api/v1/agents/sim-00004/explanation",
            200,
        ),
        (
            "/api/v1/agents/{agent_id}/explanation",
            "/api/v1/agents/nobody/explanation",
            404,
        ),
        ("/api/v1/channels", "/api/v1/channels", 200),
        ("/api/v1/control-plane", "/api/v1/control-plane", 200),
        ("/api/v1/schedules", "/api/v1/schedules", 200),
        ("/api/v1/rollouts", "/api/v1/rollouts", 200),
        ("/api/v1/rollouts", "/api/v1/rollouts?channel=edge", 200),
        ("/api/v1/rollouts", "/api/v1/rollouts?channel=nope", 404),
        ("/api/v1/events", "/api/v1/events?limit=100", 200),
        (
            "/api/v1/history/rollouts",
            "/api/v1/history/rollouts?limit=10",
            200,
        ),
        ("/api/v1/audit", "/api/v1/audit?limit=50", 200),
        ("/api/v1/audit", "/api/v1/audit?since=soon", 400),
        (
            "/api/v1/rollouts/{rollout_id}",
            "/api/v1/rollouts/r-000000000000",
            404,
        ),
        (
            "/api/v1/agents/{agent_id}/history",
            "/api/v1/agents/sim-00001/history",
            200,
        ),
        (
            "/api/v1/agents/{agent_id}/history",
            "/api/v1/agents/nobody/history",
            404,
        ),
        (
            "/api/v1/agents",
            "/api/v1/agents?q=SIM-0000&sort=version&order=desc&limit=2",
            200,
        ),
        (
            "/api/v1/agents",
            "/api/v1/agents?reason=group_unstarted&sort=last_seen&offset=1",
            200,
        ),
        ("/api/v1/agents", "/api/v1/agents?reason=bogus", 400),
        ("/api/v1/agents", "/api/v1/agents?sort=colour", 400),
        ("/api/v1/whoami", "/api/v1/whoami", 200),
        ("/api/v1/codes", "/api/v1/codes", 200),
        (
            "/api/v1/agents",
            "/api/v1/agents?condition=behind_target&limit=5",
            200,
        ),
        ("/api/v1/agents", "/api/v1/agents?condition=sad", 400),
        (
            "/api/v1/fleet/versions/timeline",
            "/api/v1/fleet/versions/timeline?hours=1",
            200,
        ),
        (
            "/api/v1/fleet/versions/timeline",
            "/api/v1/fleet/versions/timeline?hours=721",
            400,
        ),
    ];
    let (_, active) = get(&coordinator, "/api/v1/rollouts").await;
    let rollout = format!(
        "/api/v1/rollouts/{}",
        active[0]["rollout_id"].as_str().unwrap()
    );
    let (status, body) = get(&coordinator, &rollout).await;
    assert_eq!(status, 200, "GET {rollout}: {body}");
    check_against_document(&document, "/api/v1/rollouts/{rollout_id}", 200, &body);
    let eta = format!("{rollout}/eta");
    let (status, body) = get(&coordinator, &eta).await;
    assert_eq!(status, 200, "GET {eta}: {body}");
    check_against_document(&document, "/api/v1/rollouts/{rollout_id}/eta", 200, &body);
    assert!(!body["groups"].as_array().unwrap().is_empty(), "{body}");
    let (status, body) = get(&coordinator, "/api/v1/rollouts/r-000000000000/eta").await;
    assert_eq!(status, 404, "{body}");
    check_against_document(&document, "/api/v1/rollouts/{rollout_id}/eta", 404, &body);
    let mut exercised = BTreeSet::new();
    exercised.insert("/api/v1/rollouts/{rollout_id}/eta".to_string());
    for (route, path, expected) in requests {
        let (status, body) = get(&coordinator, path).await;
        assert_eq!(status, expected, "GET {path}: {body}");
        check_against_document(&document, route, status, &body);
        exercised.insert(route.to_string());
    }
    // The actions, dry runs first (each must change nothing), then a real pause and resume.
    let edge = |extra: Value| {
        let mut body = json!({ "channel": "edge", "dry_run": true });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let actions = [
        ("/api/v1/rollouts/pause", edge(json!({})), 200),
        ("/api/v1/rollouts/pause", edge(json!({"colour": 1})), 400),
        ("/api/v1/rollouts/pause", json!({"channel": "nope"}), 404),
        ("/api/v1/rollouts/resume", edge(json!({})), 200),
        (
            "/api/v1/rollouts/rollback",
            edge(json!({"group": "prod"})),
            200,
        ),
        (
            "/api/v1/rollouts/start-group",
            edge(json!({"group": "prod"})),
            200,
        ),
        (
            "/api/v1/rollouts/start-group",
            edge(json!({"group": "qa"})),
            404,
        ),
        (
            "/api/v1/rollouts/mark-done",
            edge(json!({"group": "prod"})),
            200,
        ),
        (
            "/api/v1/channels/version",
            json!({"name": "canary", "version": "2.0.0", "dry_run": true}),
            200,
        ),
        (
            "/api/v1/channels/version",
            json!({"name": "canary", "version": "9.0.0", "dry_run": true}),
            409,
        ),
        (
            "/api/v1/rollouts/pause",
            edge(json!({"dry_run": false})),
            200,
        ),
        (
            "/api/v1/rollouts/resume",
            edge(json!({"dry_run": false})),
            200,
        ),
    ];
    for (route, body, expected) in actions {
        let (status, answer) = post(&coordinator, route, &body).await;
        assert_eq!(status, expected, "POST {route} {body}: {answer}");
        check_method(&document, "post", route, status, &answer);
        if status == 200 {
            let dry_run = body["dry_run"].as_bool().unwrap_or(false);
            assert_eq!(answer["effect"]["dry_run"], dry_run, "{answer}");
        }
        exercised.insert(route.to_string());
    }
    // A viewer reaches the action and is refused (403), as over gRPC.
    let viewer = droverctl_json(
        &coordinator.grpc_url(),
        &["admins", "create", "--name", "v", "--role", "viewer"],
    )
    .await;
    let token = viewer["token"].as_str().unwrap();
    let (status, text) = http_body_as(
        coordinator.addresses.http,
        "POST",
        "/api/v1/rollouts/pause",
        Some(token),
        &json!({"channel": "edge"}).to_string(),
    )
    .await;
    assert_eq!(status, 403, "{text}");
    let refused: Value = serde_json::from_str(&text).unwrap();
    check_method(&document, "post", "/api/v1/rollouts/pause", 403, &refused);
    let documented: BTreeSet<String> = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(documented, exercised, "every documented route is checked");

    // The checks can fail: a response with a field the schema does not know is refused.
    let (_, mut channels) = get(&coordinator, "/api/v1/channels").await;
    channels[0]["colour"] = json!("blue");
    let schema = &document["paths"]["/api/v1/channels"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"];
    let root = json!({ "allOf": [schema], "components": document["components"] });
    assert!(
        !jsonschema::draft202012::new(&root)
            .unwrap()
            .is_valid(&channels)
    );
}

/// A droverctl command, the HTTP path that must print the same, and what of the HTTP answer
/// to compare.
type Pair = (&'static [&'static str], &'static str, fn(Value) -> Value);

/// droverctl talks gRPC; the HTTP API answers JSON. Both print the same objects. The fleet is
/// live (heartbeats move `last_seen`), so each pair is fetched back to back until it agrees:
/// a difference in shape never would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn droverctl_json_and_the_http_api_print_the_same_objects() {
    let root = tempfile::tempdir().unwrap();
    let (coordinator, _fleet) = populated(root.path()).await;
    let url = coordinator.grpc_url();
    let pairs: [Pair; 12] = [
        (
            &["agents", "list", "--limit", "4"],
            "/api/v1/agents?limit=4",
            |v| v,
        ),
        (
            &["agents", "list", "--group", "prod"],
            "/api/v1/agents?group=prod",
            |v| v,
        ),
        (
            &["agents", "show", "sim-00001"],
            "/api/v1/agents/sim-00001",
            |v| v,
        ),
        (
            &["agents", "why", "sim-00004"],
            "/api/v1/agents/sim-00004/explanation",
            |v| v,
        ),
        (&["rollout", "list"], "/api/v1/rollouts", |v| v),
        // One channel's rollout: droverctl prints the object, HTTP a list of one.
        (
            &["rollout", "status", "--channel", "edge"],
            "/api/v1/rollouts?channel=edge",
            |v| v[0].clone(),
        ),
        (&["channels", "list"], "/api/v1/channels", |v| v),
        (
            &["events", "--limit", "100"],
            "/api/v1/events?limit=100",
            |v| v,
        ),
        (&["fleet", "summary"], "/api/v1/fleet/summary", |v| v),
        (&["schedule", "list"], "/api/v1/schedules", |v| v),
        (&["audit"], "/api/v1/audit", |v| v),
        (
            &["agents", "list", "--group", "dev", "--limit", "2"],
            "/api/v1/agents?group=dev&limit=2",
            |v| v,
        ),
    ];
    for (args, path, pick) in pairs {
        let what = format!("droverctl {} and GET {path} to agree", args.join(" "));
        eventually(&what, WAIT, async || {
            let from_ctl = droverctl_json(&url, args).await;
            let (status, from_http) = get(&coordinator, path).await;
            assert_eq!(status, 200, "GET {path}: {from_http}");
            let from_http = pick(from_http);
            if from_ctl != from_http {
                eprintln!("{what}: not yet\n droverctl: {from_ctl}\n http:      {from_http}");
                return None;
            }
            Some(())
        })
        .await;
    }
    // An action answers what its droverctl verb prints (a dry run changes nothing, so the
    // two agree whenever the fleet is still).
    let actions: [(&[&str], &str, Value); 3] = [
        (
            &["rollout", "pause", "--channel", "edge", "--dry-run"],
            "/api/v1/rollouts/pause",
            json!({"channel": "edge", "dry_run": true}),
        ),
        (
            &[
                "rollout",
                "rollback",
                "--channel",
                "edge",
                "--group",
                "prod",
                "--dry-run",
            ],
            "/api/v1/rollouts/rollback",
            json!({"channel": "edge", "group": "prod", "dry_run": true}),
        ),
        (
            &["channels", "set", "canary", "2.0.0", "--dry-run"],
            "/api/v1/channels/version",
            json!({"name": "canary", "version": "2.0.0", "dry_run": true}),
        ),
    ];
    for (args, path, body) in actions {
        let what = format!("droverctl {} and POST {path} to agree", args.join(" "));
        eventually(&what, WAIT, async || {
            let from_ctl = droverctl_json(&url, args).await;
            let (status, from_http) = post(&coordinator, path, &body).await;
            assert_eq!(status, 200, "POST {path}: {from_http}");
            if from_ctl != from_http {
                eprintln!("{what}: not yet\n droverctl: {from_ctl}\n http:      {from_http}");
                return None;
            }
            Some(())
        })
        .await;
    }
    let control_plane = droverctl_json(&url, &["control-plane", "get"]).await;
    assert_eq!(
        get(&coordinator, "/api/v1/control-plane").await.1,
        control_plane
    );

    // Reason codes and states come with their explanations, in both.
    let why = droverctl_json(&url, &["agents", "why", "sim-00004"]).await;
    assert!(
        !why["reason_explanation"].as_str().unwrap().is_empty(),
        "{why}"
    );
    let rollout = droverctl_json(&url, &["rollout", "status", "--channel", "edge"]).await;
    assert!(
        !rollout["groups"][0]["state_explanation"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    let schedules = droverctl_json(&url, &["schedule", "list"]).await;
    assert_eq!(
        schedules[0]["window"]["days"],
        json!(["monday", "tuesday", "wednesday", "thursday", "friday"]),
        "{schedules}"
    );
}
