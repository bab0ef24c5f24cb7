//! What real hosts do to an install (#21): a restart command that always fails, a release
//! that fails soon after it looked healthy, a disk that fills while unpacking.

use super::*;

/// #21 items 1 and 2: a restart command that fails for every version, printing a progress
/// bar (`\r`) first. The install is reverted, the revert fails too, and then the updater
/// waits with backoff (it looped 544 times in 20 s); its report arrives clean (a `\r` used to
/// cost the session for good), the agent stays connected, and the version it is listed on
/// is the one its files hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revert_that_fails_waits_with_backoff_and_the_agent_stays_connected() {
    let s = setup(&[]).await;
    let failing = "printf 'restarting 5%%\rrestarting 100%%\n' >&2; exit 3".to_string();
    let updater = s.updater_restarting_with(failing).start();
    decision(&updater, "up_to_date").await;
    s.set_channel(&["1.1.0"]).await;

    let agent = eventually(
        "the failed revert reaches the coordinator",
        WAIT,
        async || {
            let agent = s.agent().await;
            (agent["last_report"]["outcome"] == "failed").then_some(agent)
        },
    )
    .await;
    let error = agent["last_report"]["error"].as_str().unwrap();
    assert!(
        error.contains("the revert failed too") && error.contains("restarting 100%"),
        "{error}"
    );
    assert!(!error.contains('\r') && !error.contains("5%"), "{error:?}");
    let state = decision(&updater, "revert_failed").await;
    assert_eq!(state["revert_failure"]["attempts"], 1, "{state}");
    // Listed on what the files hold (the revert switched back before its restart failed).
    let active = s.host.active_version().expect("an active version");
    assert_eq!(state["agent_version"], active.as_str(), "{state}");
    eventually(
        "the coordinator lists the installed version",
        WAIT,
        async || (s.agent().await["agent_version"] == active.as_str()).then_some(()),
    )
    .await;

    // Three more heartbeats (one a second; this is the only updater) with no new attempt,
    // in the same session.
    let beats = async || {
        let (_, body) =
            drover_tests::http(s.coordinator.addresses.http, "GET", "/api/v1/stats").await;
        serde_json::from_str::<Value>(&body).unwrap()["heartbeats"]
            .as_u64()
            .unwrap()
    };
    let before = beats().await;
    eventually("three more heartbeats", WAIT, async || {
        (beats().await >= before + 3).then_some(())
    })
    .await;
    assert_eq!(s.agent().await["connected"], true);
    let history = droverctl_json(&s.url(), &["agents", "history", "agent-1"]).await;
    let reports = history["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 1, "one attempt, no loop: {history}");
    assert_eq!(updater.state()["revert_failure"]["attempts"], 1);
    assert!(
        updater.state()["pending_reports"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// #21 item 3: a release that passes its first probes and fails soon after (as one that
/// crash-loops under a unit with `RestartSec=1` looks to a single probe) is reverted: the
/// gate watches it for a stability period, not once. (The restart counters of a real unit
/// are proven under systemd in host/.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_fails_soon_after_install_is_reverted() {
    let s = setup(&[]).await;
    let probe = s.root.path().join("probe.sh");
    // 1.1.0 answers its first two probes and then fails; other versions are fine.
    let script = format!(
        "#!/bin/sh\n\
         grep -qx 1.1.0 {root}/current/VERSION || exit 0\n\
         n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}\n\
         [ $n -le 2 ] || {{ echo 'crashed: exit status 1, restarting' >&2; exit 1; }}\n",
        root = s.host.root.display(),
        count = s.root.path().join("probe.count").display(),
    );
    std::fs::write(&probe, script).unwrap();
    let updater = s
        .updater_with(
            format!("sh {}", s.host.restart_script.display()),
            ("--health-command", format!("sh {}", probe.display())),
        )
        .start();
    decision(&updater, "up_to_date").await;
    s.set_channel(&["1.1.0"]).await;
    let agent = eventually("the revert reaches the coordinator", WAIT, async || {
        let agent = s.agent().await;
        (agent["last_report"]["outcome"] == "reverted").then_some(agent)
    })
    .await;
    let error = agent["last_report"]["error"].as_str().unwrap();
    assert!(
        error.contains("became unhealthy") && error.contains("after the install"),
        "{error}"
    );
    s.expect_running("1.0.0").await;
    decision(&updater, "version_broken").await;
}

/// #21 item 4: the disk fills while a release unpacks (the download fits, the unpacked files
/// do not). It was reported as a bad artifact, never retried, and a staging directory stayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_while_unpacking_is_disk_full_cleaned_up_and_retried() {
    let disk = Tmpfs::mount(64);
    let s = setup_with_host_in(&[], Some(disk.path())).await;
    let updater = s.updater().start();
    decision(&updater, "up_to_date").await;
    // Leave room for the download and a little more, not for what it unpacks to.
    let filler = disk.fill();
    let artifact = std::fs::metadata(s.repo.artifact("1.1.0")).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap();
    let full = file.metadata().unwrap().len();
    file.set_len(full.saturating_sub(artifact + 256 * 1024))
        .unwrap();
    drop(file);
    s.set_channel(&["1.1.0"]).await;

    let state = decision(&updater, "disk_full").await;
    assert_eq!(state["agent_version"], "1.0.0", "{state}");
    let report = &state["last_report"];
    assert_eq!(report["outcome"], "failed", "{state}");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("disk is full") && error.contains("unpacking"),
        "{error}"
    );
    assert!(state["broken_versions"]["1.1.0"].is_null(), "{state}");
    let leftovers: Vec<String> = std::fs::read_dir(s.host.root.join("versions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "half-made files left: {leftovers:?}");
    s.expect_running("1.0.0").await;

    // Space returns: the retry (30 s after the first failure) installs it.
    std::fs::remove_file(&filler).unwrap();
    eventually(
        "the retry installs 1.1.0",
        Duration::from_secs(90),
        async || (s.host.active_version().as_deref() == Some("1.1.0")).then_some(()),
    )
    .await;
    s.expect_running("1.1.0").await;
}
