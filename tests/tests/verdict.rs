//! The health verdict end to end: real updaters installing a signed release of a real agent
//! that passes its install health gate and then leaks memory. The updaters sample the agent
//! process (/proc, through its pid file); the coordinator's verdict halts the group, naming
//! RSS, after every install had been reported a success.

use std::time::Duration;

use drover_tests::{
    AgentHost, CoordinatorBuilder, ReleaseRepo, UpdaterBuilder, UpdaterProcess, droverctl,
    droverctl_json, eventually_explained, health_samples_on,
};

const AGENTS: usize = 4;
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaking_release_that_passed_its_install_gate_is_halted_by_the_verdict() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = CoordinatorBuilder::sqlite(root.path())
        .control_plane("2.0.0")
        .arg("--heartbeat-secs")
        .arg("1")
        .start()
        .await;
    let url = coordinator.grpc_url();
    let repo = ReleaseRepo::create(root.path()).await;
    repo.publish("1.0.0", false);
    // Healthy to every probe, 8 MiB more resident every second.
    repo.publish_with("1.1.0", false, Some(8));
    droverctl_json(&url, &["channels", "set", "beta", "1.0.0"]).await;

    let mut hosts = Vec::new();
    let mut updaters: Vec<UpdaterProcess> = Vec::new();
    for i in 0..AGENTS {
        let dir = root.path().join(format!("host-{i}"));
        let host = AgentHost::bootstrap(&dir, &repo, "1.0.0");
        let updater = UpdaterBuilder::new(&url, &dir.join("updater"), &format!("agent-{i}"))
            .arg("--group", "prod")
            .arg("--channel", "beta")
            .arg("--tarball-root", host.root.display().to_string())
            .arg("--release-url", repo.url.clone())
            .arg(
                "--release-public-key",
                repo.key.public.display().to_string(),
            )
            .arg(
                "--restart-command",
                format!("sh {}", host.restart_script.display()),
            )
            .arg("--health-http", host.health_url())
            .arg("--health-interval-ms", "200")
            .arg("--health-grace-secs", "10")
            .arg("--health-stable-secs", "2")
            .arg("--agent-pid-file", host.pid_file().display().to_string())
            .arg("--sample-secs", "1")
            .arg("--recheck-secs", "3600")
            .start();
        hosts.push(host);
        updaters.push(updater);
    }
    // Every agent has a baseline: samples of 1.0.0 with its RSS.
    for (i, updater) in updaters.iter().enumerate() {
        let agent = format!("agent-{i}");
        eventually_explained(
            &format!("{agent} has a baseline of health samples"),
            WAIT,
            async || {
                let samples = health_samples_on(&url, &agent, "1.0.0").await?;
                (samples >= 5).then_some(())
            },
            || updater.log(),
        )
        .await;
    }

    let (ok, out, err) = droverctl(
        &url,
        &[
            "rollout",
            "create",
            "--channel",
            "beta",
            "--from",
            "1.0.0",
            "--to",
            "1.1.0",
            "--group",
            "prod",
            "--immediate",
            "--bake",
            "10m",
            "--verdict",
            "min-agents=4,samples=3",
        ],
    )
    .await;
    assert!(ok, "{out}{err}");

    let rollout = eventually_explained(
        "the verdict halts the group",
        WAIT,
        async || {
            let status = droverctl_json(&url, &["rollout", "status", "--channel", "beta"]).await;
            (status["groups"][0]["state"] == "halted").then_some(status)
        },
        || updaters[0].log(),
    )
    .await;
    let group = &rollout["groups"][0];
    let note = group["note"].as_str().unwrap();
    assert!(note.starts_with("health verdict failed: rss +"), "{note}");
    assert_eq!(group["verdict"]["outcome"], "fail", "{group}");
    let rss = group["verdict"]["signals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["signal"] == "rss")
        .unwrap();
    assert_eq!(rss["outcome"], "fail");
    assert!(rss["low"].as_f64().unwrap() > 10.0, "{rss}");

    // The install gate had passed: each agent reported a success to 1.1.0 and runs it.
    for (i, host) in hosts.iter().enumerate() {
        let agent = droverctl_json(&url, &["agents", "show", &format!("agent-{i}")]).await;
        let report = &agent["last_report"];
        assert_eq!(report["outcome"], "succeeded", "{agent}");
        assert_eq!(report["to_version"], "1.1.0", "{agent}");
        assert_eq!(host.running_version().await.as_deref(), Some("1.1.0"));
        assert!(host.healthy().await, "the leaking agent answers its probe");
    }
    // Shown to an operator: the halt event names the signal, `rollout show` the evidence and
    // `agents why` the agent's own change.
    let events = droverctl_json(&url, &["events", "--limit", "50"]).await;
    let halt = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["text"].as_str().unwrap_or_default().contains("→ halted"))
        .unwrap_or_else(|| panic!("no halt event: {events}"));
    assert!(halt["text"].as_str().unwrap().contains("rss"), "{halt}");
    let (_, shown, _) = droverctl(&url, &["rollout", "status", "--channel", "beta"]).await;
    assert!(shown.contains("health verdict for prod: fail"), "{shown}");
    println!("{shown}");
    let why = droverctl_json(&url, &["agents", "why", "agent-0"]).await;
    let text = why["explanation"].as_str().unwrap();
    assert!(
        text.contains("Health since its install of 1.1.0") && text.contains("RSS +"),
        "{text}"
    );
}
