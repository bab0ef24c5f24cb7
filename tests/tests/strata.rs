//! Strata with real processes, in the default mode: the plan, the dry run and the create
//! pick the same canaries, one in every stratum big enough; a release that fails on one
//! kind of host only is caught by that stratum's canary, which holds that stratum alone
//! (halt scope `stratum`) while the others finish, and every surface names the stratum.

use std::time::Duration;

use drover_tests::{
    CoordinatorBuilder, droverctl, droverctl_json, eventually, simulate_fleet_with, wait_connected,
};
use serde_json::Value;

const FLEET: u64 = 60;
const WAIT: Duration = Duration::from_secs(60);
const SPEC: [&str; 16] = [
    "--channel",
    "stable",
    "--from",
    "1.0.0",
    "--to",
    "1.1.0",
    "--group",
    "prod:canaries=1",
    "--immediate",
    "--strata",
    "os",
    "--stratum-min-agents",
    "3",
    "--halt-scope",
    "stratum",
    "--done-threshold=90",
];

fn strings(value: &Value) -> Vec<String> {
    let mut list: Vec<String> = value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    list.sort();
    list
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_cover_every_stratum_and_a_stratum_bug_holds_only_its_stratum() {
    let root = tempfile::tempdir().unwrap();
    let c = CoordinatorBuilder::sqlite(root.path())
        .control_plane("2.0.0")
        .arg("--reconcile-ms")
        .arg("200")
        .start()
        .await;
    let url = c.grpc_url();
    droverctl_json(&url, &["channels", "set", "stable", "1.0.0"]).await;
    let extra = [
        "--unhealthy-fraction",
        "0",
        "--install-ms",
        "50",
        "--broken-versions",
        "1.1.0",
        "--broken-on",
        "os=rocky",
    ];
    let _fleet = simulate_fleet_with(
        &url,
        root.path(),
        FLEET as u32,
        "prod",
        "stable",
        "sim",
        &extra,
    );
    wait_connected(&url, FLEET).await;

    // The plan: a canary from every stratum of at least 3 agents, in a coverage matrix.
    let mut plan = vec!["rollout", "plan"];
    plan.extend(SPEC);
    let planned = droverctl_json(&url, &plan).await;
    let group = &planned["groups"][0];
    let planned_canaries = strings(&group["canaries"]);
    let rows = group["strata"].as_array().expect("a coverage matrix");
    let strata: Vec<&str> = rows
        .iter()
        .map(|r| r["stratum"].as_str().unwrap())
        .collect();
    assert!(
        strata.contains(&"os=rocky") && strata.len() >= 3,
        "the simulated fleet has several kinds of host: {strata:?}"
    );
    for row in rows {
        assert_eq!(
            row["needs_canary"],
            row["agents"].as_u64().unwrap() >= 3,
            "{row}"
        );
        if row["needs_canary"] == true {
            let canary = row["canary"]
                .as_str()
                .expect("a stratum that needs one has a canary");
            assert!(planned_canaries.iter().any(|c| c == canary), "{row}");
        }
    }
    let (ok, text, _) = droverctl(&url, &plan).await;
    assert!(
        ok && text.contains("strata coverage:") && text.contains("os=rocky"),
        "{text}"
    );

    // The dry run and the real create pick exactly those canaries.
    let mut create = vec!["rollout", "create"];
    create.extend(SPEC);
    let mut dry_run = create.clone();
    dry_run.push("--dry-run");
    let would = droverctl_json(&url, &dry_run).await;
    assert_eq!(
        strings(&would["plan"]["groups"][0]["canaries"]),
        planned_canaries
    );
    let created = droverctl_json(&url, &create).await;
    let rollout_id = created["rollout_id"].as_str().unwrap().to_string();
    let status = eventually("the group picks its canaries", WAIT, async || {
        let status = droverctl_json(&url, &["rollout", "status", "--channel", "stable"]).await;
        (status["groups"][0]["state"] != "unstarted").then_some(status)
    })
    .await;
    assert_eq!(strings(&status["groups"][0]["canaries"]), planned_canaries);
    assert_eq!(status["strata"]["halt_scope"], "stratum");

    // Rocky's canary fails: rocky is held, named; the others finish the group.
    let status = eventually("rocky is held and the group is done", WAIT, async || {
        let status = droverctl_json(&url, &["rollout", "status", "--channel", "stable"]).await;
        let held = status["held_strata"]
            .as_array()
            .is_some_and(|h| !h.is_empty());
        (held && status["groups"][0]["state"] == "done").then_some(status)
    })
    .await;
    let held = &status["held_strata"][0];
    assert_eq!(held["stratum"], "os=rocky", "{status}");
    assert!(
        held["note"].as_str().unwrap().contains("failed to update"),
        "{held}"
    );
    assert_eq!(
        status["status"], "active",
        "a held stratum keeps the rollout governing"
    );

    let fleet = droverctl_json(&url, &["agents", "list", "--limit", "100"]).await;
    let agents = fleet["agents"].as_array().expect("agents");
    let rocky: Vec<&Value> = agents
        .iter()
        .filter(|a| a["labels"]["os"] == "rocky")
        .collect();
    assert!(!rocky.is_empty());
    for agent in &rocky {
        let id = agent["agent_id"].as_str().unwrap();
        let why = droverctl_json(&url, &["agents", "why", id]).await;
        assert_eq!(why["reason"], "stratum_held", "{why}");
        assert!(
            why["explanation"].as_str().unwrap().contains("os=rocky"),
            "{why}"
        );
        assert_eq!(agent["agent_version"], "1.0.0", "{agent}");
    }
    let others_moved = agents
        .iter()
        .filter(|a| a["labels"]["os"] != "rocky" && a["agent_version"] == "1.1.0")
        .count();
    assert!(others_moved * 10 >= (agents.len() - rocky.len()) * 9);

    // The timeline says it, and the operator can release it.
    let detail = droverctl_json(&url, &["rollout", "show", &rollout_id]).await;
    assert!(
        detail
            .to_string()
            .contains("stratum os=rocky held in group prod"),
        "{detail}"
    );
    let release = [
        "rollout",
        "release-stratum",
        "--channel",
        "stable",
        "os=rocky",
        "--dry-run",
    ];
    droverctl_json(&url, &release).await;
    // Released for real, rocky's agents are sent the target again; the release still fails
    // there, so a new failure holds it again: a second stop.
    droverctl_json(&url, &release[..5]).await;
    eventually(
        "rocky is held again after a new failure",
        WAIT,
        async || {
            let status = droverctl_json(&url, &["rollout", "status", "--channel", "stable"]).await;
            let held = status["held_strata"][0]["stratum"] == "os=rocky";
            (held && status["stop_acks"]["epoch"] == 2).then_some(())
        },
    )
    .await;
    let (ok, _, err) = droverctl(
        &url,
        &[
            "rollout",
            "release-stratum",
            "--channel",
            "stable",
            "os=debian",
        ],
    )
    .await;
    assert!(!ok && err.contains("not held"), "{err}");
}
