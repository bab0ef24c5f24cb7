//! The SQLite store's disk fills up for real (a small tmpfs) in the middle of a rollout
//! (#24 items 2 and 3): every write is refused with "disk is full" while it lasts, and no
//! call, report or verb answers success for a change that is not stored; `/readyz` says
//! not ready; once space returns, writes succeed within five seconds, the updaters'
//! refused reports arrive, and after a SIGKILL and restart everything acknowledged is there.

use std::time::{Duration, Instant};

use drover_tests::{
    CoordinatorBuilder, Tmpfs, create_rollout, droverctl, droverctl_json, eventually, http,
    simulate, wait_connected,
};

const AGENTS: u64 = 10;
const WAIT: Duration = Duration::from_secs(60);
/// Writes succeed again within this of space returning (the target).
const RECOVERS: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_acknowledges_nothing_unstored_and_recovers() {
    let disk = Tmpfs::mount(16);
    let root = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", disk.path().join("drover.db").display());
    let mut c = CoordinatorBuilder::with_database(root.path(), &database)
        .control_plane("2.0.0")
        .arg("--reconcile-ms")
        .arg("200")
        .start()
        .await;
    let url = c.grpc_url();
    droverctl_json(&url, &["channels", "set", "edge", "1.0.0"]).await;
    let count = AGENTS.to_string();
    let _fleet = simulate(
        &url,
        root.path(),
        &[
            "--count",
            &count,
            "--groups",
            "dev",
            "--channel",
            "edge",
            "--versions",
            "1.0.0",
            "--unhealthy-fraction",
            "0",
            "--ramp-up-secs",
            "0",
            "--recheck-secs",
            "3600",
            "--install-ms",
            "1000",
        ],
    );
    wait_connected(&url, AGENTS).await;
    let (ok, _, err) = create_rollout(&url, "edge", &["dev"], &["--immediate"]).await;
    assert!(ok, "{err}");

    // Full while the agents install: their reports arrive on a full disk.
    let filler = disk.fill();
    let body = eventually("/readyz 503 naming the full disk", WAIT, async || {
        let (status, body) = http(c.addresses.http, "GET", "/readyz").await;
        (status == 503 && body.contains("disk is full")).then_some(body)
    })
    .await;
    eprintln!("while full: {body}");
    // Updaters hit it too: their reports and hellos are refused and their sessions end.
    let log = root.path().join("simulate.log");
    eventually("updaters refused on the full disk", WAIT, async || {
        let log = std::fs::read_to_string(&log).ok()?;
        let batches = c.log().matches("agent write batch failed").count();
        (log.matches("session ended").count() >= 3 && batches >= 5).then_some(())
    })
    .await;
    for args in [
        &["channels", "set", "lost", "1.0.0"][..],
        &["agents", "pin", "sim-00000", "--note", "lost"][..],
    ] {
        let (ok, stdout, stderr) = droverctl(&url, args).await;
        eprintln!("droverctl {args:?} while full: {stderr}");
        assert!(!ok, "succeeded on a full disk: {stdout}");
        assert!(stderr.contains("disk is full"), "{stderr}");
    }

    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    eventually("a write succeeds after space returned", WAIT, async || {
        droverctl(&url, &["channels", "set", "kept", "1.0.0"])
            .await
            .0
            .then_some(())
    })
    .await;
    let recovered = freed.elapsed();
    eprintln!("writes succeed {recovered:?} after space returned");
    assert!(recovered <= RECOVERS, "writes failed for {recovered:?}");
    eventually("every agent reported 1.1.0", WAIT, async || {
        let agents = droverctl_json(&url, &["agents", "list", "--limit", "100"]).await;
        let agents = agents["agents"].as_array()?;
        (agents.len() as u64 == AGENTS
            && agents
                .iter()
                .all(|a| a["last_report"]["to_version"] == "1.1.0"))
        .then_some(())
    })
    .await;

    // What was acknowledged is stored: it survives a SIGKILL; what was refused is not there.
    c.kill9().await;
    c.restart().await;
    let channels = droverctl_json(&url, &["channels", "list"])
        .await
        .to_string();
    assert!(channels.contains("\"kept\""), "{channels}");
    assert!(!channels.contains("\"lost\""), "{channels}");
    let pinned = droverctl_json(&url, &["agents", "show", "sim-00000"]).await;
    assert_ne!(pinned["pinned"], true, "{pinned}");
    let agents = droverctl_json(&url, &["agents", "list", "--limit", "100"]).await;
    for agent in agents["agents"].as_array().unwrap() {
        assert_eq!(agent["last_report"]["outcome"], "succeeded", "{agent}");
        assert_eq!(agent["last_report"]["to_version"], "1.1.0", "{agent}");
    }
}
