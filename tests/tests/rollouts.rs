//! Rollouts end to end: a coordinator on a manual rollout clock (hours pass in milliseconds),
//! 200 simulated updaters in 3 groups over real gRPC, and droverctl.

use std::time::Duration;

use drover_tests::{
    CoordinatorBuilder, CoordinatorProcess, droverctl, droverctl_json, eventually, http, simulate,
};
use serde_json::Value;

const HOUR: i64 = 3_600_000;
/// Monday 2026-11-23 01:00 UTC: an hour before the groups' 02:00 windows.
const START: i64 = 1_795_392_000_000 + HOUR;
const FLEET: usize = 200;
const WAIT: Duration = Duration::from_secs(60);

async fn coordinator(root: &std::path::Path) -> CoordinatorProcess {
    CoordinatorBuilder::sqlite(root)
        .testing()
        .control_plane("2.0.0")
        .arg("--manual-clock-start-ms")
        .arg(START.to_string())
        .arg("--reconcile-ms")
        .arg("200")
        .arg("--heartbeat-secs")
        .arg("2")
        .start()
        .await
}

async fn start_fleet(c: &CoordinatorProcess, root: &std::path::Path) -> tokio::process::Child {
    droverctl_json(&c.grpc_url(), &["channels", "set", "stable", "1.0.0"]).await;
    let fleet = simulate(
        &c.grpc_url(),
        root,
        &[
            "--count",
            "200",
            "--groups",
            "dev,staging,prod",
            "--channel",
            "stable",
            "--versions",
            "1.0.0",
            "--broken-versions",
            "1.2.0",
            "--unhealthy-fraction",
            "0",
            "--ramp-up-secs",
            "1",
            "--recheck-secs",
            "3600",
        ],
    );
    eventually("200 simulated updaters connected", WAIT, async || {
        let s = droverctl_json(&c.grpc_url(), &["fleet", "summary"]).await;
        (s["connected_agents"] == FLEET as u64 && s["by_version"]["1.0.0"] == FLEET as u64)
            .then_some(())
    })
    .await;
    fleet
}

async fn advance(c: &CoordinatorProcess, hours: i64) {
    let (status, body) = http(
        c.addresses.http,
        "POST",
        &format!("/api/v1/testing/clock/advance?ms={}", hours * HOUR),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn status(c: &CoordinatorProcess) -> Value {
    droverctl_json(&c.grpc_url(), &["rollout", "status", "--channel", "stable"]).await
}

fn group<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
        .unwrap()
}

async fn group_state(c: &CoordinatorProcess, name: &str, state: &str) -> Value {
    eventually(&format!("group {name} is {state}"), WAIT, async || {
        let s = status(c).await;
        (group(&s, name)["state"] == state).then_some(s)
    })
    .await
}

async fn all_agents(c: &CoordinatorProcess) -> Vec<Value> {
    let list = droverctl_json(
        &c.grpc_url(),
        &["agents", "list", "--all", "--limit", "1000"],
    )
    .await;
    list["agents"].as_array().unwrap().clone()
}

const GROUPS: [&str; 6] = [
    "--group",
    "dev:canaries=2,start=2,window=4",
    "--group",
    "staging:canaries=2,start=2,window=4,wait=24",
    "--group",
    "prod:canaries=2,start=2,window=4,wait=24",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_release_halts_after_the_canaries_and_rollback_restores_the_start_version() {
    let root = tempfile::tempdir().unwrap();
    let c = coordinator(root.path()).await;
    let _fleet = start_fleet(&c, root.path()).await;
    let mut create = vec![
        "rollout",
        "create",
        "--channel",
        "stable",
        "--from",
        "1.0.0",
        "--to",
        "1.2.0",
    ];
    create.extend(GROUPS);
    droverctl_json(&c.grpc_url(), &create).await;

    let why = droverctl_json(&c.grpc_url(), &["agents", "why", "sim-00000"]).await;
    assert_eq!(why["reason"], "group_unstarted", "{why}");
    advance(&c, 1).await; // 02:00: dev's window opens.

    let halted = group_state(&c, "dev", "halted").await;
    let dev = group(&halted, "dev");
    assert!(dev["note"].as_str().unwrap().contains("canary"), "{dev}");
    let canaries: Vec<String> = dev["canaries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().into())
        .collect();
    assert_eq!(canaries.len(), 2);
    for later in ["staging", "prod"] {
        assert_eq!(group(&halted, later)["state"], "unstarted");
    }

    // Only the canaries were ever asked to install 1.2.0, and they put themselves back.
    let agents = eventually("the canaries reverted", WAIT, async || {
        let agents = all_agents(&c).await;
        agents
            .iter()
            .all(|a| a["agent_version"] == "1.0.0")
            .then_some(agents)
    })
    .await;
    let touched: Vec<&str> = agents
        .iter()
        .filter(|a| a["last_report"]["to_version"] == "1.2.0")
        .map(|a| a["agent_id"].as_str().unwrap())
        .collect();
    assert!(
        touched.len() <= 2,
        "more agents touched than canaries: {touched:?}"
    );
    assert!(
        touched.iter().all(|t| canaries.iter().any(|c| c == t)),
        "{touched:?} vs {canaries:?}"
    );
    assert!(
        agents
            .iter()
            .filter(|a| a["last_report"]["to_version"] == "1.2.0")
            .all(|a| a["last_report"]["outcome"] == "reverted")
    );
    // Each report names the rollout and the directive that caused it.
    assert!(!touched.is_empty(), "no canary reported");
    for agent in agents
        .iter()
        .filter(|a| a["last_report"]["to_version"] == "1.2.0")
    {
        let report = &agent["last_report"];
        assert_eq!(report["rollout_id"], halted["rollout_id"], "{agent}");
        assert!(
            !report["directive_id"].as_str().unwrap().is_empty(),
            "{agent}"
        );
    }

    advance(&c, 48).await; // Time passing does not restart a halted rollout.
    assert_eq!(group(&status(&c).await, "staging")["state"], "unstarted");

    let rolled = droverctl_json(
        &c.grpc_url(),
        &["rollout", "rollback", "--channel", "stable"],
    )
    .await;
    assert_eq!(rolled["status"], "rolledback", "{rolled}");
    let summary = droverctl_json(&c.grpc_url(), &["fleet", "summary"]).await;
    assert_eq!(summary["by_version"]["1.0.0"], FLEET as u64, "{summary}");
    let events = droverctl_json(&c.grpc_url(), &["events", "--limit", "200"]).await;
    let texts: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("group dev: canary → halted")),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("every group rolled back")),
        "{texts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_release_completes_group_by_group_honouring_windows_and_waits() {
    let root = tempfile::tempdir().unwrap();
    let c = coordinator(root.path()).await;
    let _fleet = start_fleet(&c, root.path()).await;
    let url = c.grpc_url();

    // Plan first: nothing changes, and the plan follows windows and waits.
    let mut plan = vec![
        "rollout",
        "plan",
        "--channel",
        "stable",
        "--from",
        "1.0.0",
        "--to",
        "1.1.0",
    ];
    plan.extend(GROUPS);
    let planned = droverctl_json(&url, &plan).await;
    let starts: Vec<&str> = planned["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["starts_at"].as_str().unwrap())
        .collect();
    assert_eq!(
        starts,
        [
            "2026-11-23T02:00:00Z",
            "2026-11-24T02:00:00Z",
            "2026-11-25T02:00:00Z"
        ],
        "{planned}"
    );
    let planned_agents: u64 = planned["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["agents"].as_u64().unwrap())
        .sum();
    assert_eq!(planned_agents, FLEET as u64);
    let (ok, _, stderr) = droverctl(&url, &["rollout", "status", "--channel", "stable"]).await;
    assert!(
        !ok && stderr.contains("has no rollout"),
        "plan created nothing: {stderr}"
    );

    droverctl_json(
        &url,
        &["agents", "pin", "sim-00002", "--note", "legal hold"],
    )
    .await; // a prod agent
    let mut create = vec![
        "rollout",
        "create",
        "--channel",
        "stable",
        "--from",
        "1.0.0",
        "--to",
        "1.1.0",
    ];
    create.extend(GROUPS);
    droverctl_json(&url, &create).await;
    let (ok, _, stderr) = droverctl(&url, &["channels", "set", "stable", "1.1.0"]).await;
    assert!(!ok && stderr.contains("being rolled out"), "{stderr}");

    advance(&c, 1).await; // Mon 02:00
    let dev_done = group_state(&c, "dev", "done").await;
    assert_eq!(group(&dev_done, "staging")["state"], "unstarted");
    let why = droverctl_json(&url, &["agents", "why", "sim-00001"]).await; // staging
    assert_eq!(why["reason"], "group_unstarted");
    assert!(
        why["explanation"]
            .as_str()
            .unwrap()
            .contains("waits for the group before it"),
        "{why}"
    );

    advance(&c, 23).await; // Tue 01:00: the 24 h wait is not over.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(group(&status(&c).await, "staging")["state"], "unstarted");
    advance(&c, 1).await; // Tue 02:00: wait over, window open.
    group_state(&c, "staging", "done").await;
    advance(&c, 24).await; // Wed 02:00
    let done = eventually("the rollout finished", WAIT, async || {
        let s = status(&c).await;
        (s["status"] == "done").then_some(s)
    })
    .await;
    let prod = group(&done, "prod");
    assert_eq!(
        (prod["state"].as_str(), prod["failed"].as_u64()),
        (Some("done"), Some(0))
    );
    // Each group started exactly when the plan said it would.
    let started: Vec<&str> = done["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["started_at"].as_str().unwrap())
        .collect();
    assert_eq!(started, starts, "planned {planned}\nhappened {done}");

    let deadline = std::time::Instant::now() + WAIT;
    let summary = loop {
        let s = droverctl_json(&url, &["fleet", "summary"]).await;
        if s["by_version"]["1.1.0"] == FLEET as u64 - 1 {
            break s;
        }
        if std::time::Instant::now() >= deadline {
            let why = droverctl_json(&url, &["agents", "why", "sim-00002"]).await;
            let events = droverctl_json(&url, &["events", "--agent", "sim-00002"]).await;
            panic!("not every unpinned agent runs 1.1.0: {s}\nsim-00002: {why}\n{events}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        summary["by_version"]["1.0.0"], 1,
        "the pinned agent stayed: {summary}"
    );
    let channels = droverctl_json(&url, &["channels", "list"]).await;
    let stable = channels
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "stable")
        .unwrap();
    assert_eq!(
        stable["version"], "1.1.0",
        "a finished rollout leaves the channel on the target"
    );

    let events = droverctl_json(&url, &["events", "--limit", "1000"]).await;
    let texts: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    let position = |needle: &str| {
        texts
            .iter()
            .position(|t| t.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {texts:?}"))
    };
    assert!(position("group dev: active → done") < position("group staging: unstarted →"));
    assert!(position("group staging: active → done") < position("group prod: unstarted →"));
    assert!(texts.iter().any(|t| t.contains("agent pinned: legal hold")));
}

#[tokio::test]
async fn teleport_compatible_version_endpoints_answer_in_teleports_formats() {
    let root = tempfile::tempdir().unwrap();
    let c = CoordinatorBuilder::sqlite(root.path()).start().await;
    // Over HTTPS, as Teleport's updaters would ask, trusting the coordinator's CA.
    let ca = c.tls.as_ref().expect("TLS").ca_file.clone();
    let curl = |path: &str| {
        let url = c.http_url(&format!("/v1/webapi/automaticupgrades/channel/{path}"));
        let ca = ca.clone();
        async move {
            let out = tokio::process::Command::new("curl")
                .args(["-s", "-w", "\n%{http_code}", "--cacert"])
                .arg(&ca)
                .arg(&url)
                .output()
                .await
                .expect("curl is installed (see .ci/run)");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let (body, code) = text.rsplit_once('\n').unwrap();
            (code.to_string(), body.to_string())
        }
    };
    assert_eq!(
        curl("stable/rolling/version").await,
        ("200".into(), "none".into()),
        "no control plane yet"
    );
    droverctl_json(&c.grpc_url(), &["control-plane", "set", "15.2.0"]).await;
    droverctl_json(
        &c.grpc_url(),
        &["channels", "set", "stable/cloud", "15.1.3"],
    )
    .await;
    droverctl_json(
        &c.grpc_url(),
        &["channels", "set", "stable/cloud", "--critical", "true"],
    )
    .await;
    assert_eq!(
        curl("stable/rolling/version").await,
        ("200".into(), "v15.2.0".into())
    );
    assert_eq!(
        curl("stable/rolling/critical").await,
        ("200".into(), "no".into())
    );
    assert_eq!(
        curl("default/version").await,
        ("200".into(), "v15.2.0".into())
    );
    assert_eq!(
        curl("stable/cloud/version").await,
        ("200".into(), "v15.1.3".into())
    );
    assert_eq!(
        curl("stable/cloud/critical").await,
        ("200".into(), "yes".into())
    );
    assert_eq!(curl("no/such/channel/version").await.0, "404");
}
