//! `droverctl rollout watch` follows a real rollout to its end and exits with its outcome:
//! 0 done, 1 halted, 2 rolled back — so a script or CI job can wait on a rollout.

use std::{process::Stdio, time::Duration};

use drover_tests::{
    CoordinatorBuilder, CoordinatorProcess, bin, create_rollout, droverctl_json, eventually,
    profile_for, simulate, simulate_fleet, utc_hour_now, wait_connected,
};

const WAIT: Duration = Duration::from_secs(90);

async fn start(root: &std::path::Path) -> CoordinatorProcess {
    let c = CoordinatorBuilder::sqlite(root)
        .control_plane("2.0.0")
        .arg("--reconcile-ms")
        .arg("100")
        .start()
        .await;
    droverctl_json(&c.grpc_url(), &["channels", "set", "edge", "1.0.0"]).await;
    c
}

/// Starts `droverctl rollout watch --channel edge` (stdout a pipe, so plain lines).
fn watch(url: &str) -> tokio::process::Child {
    let mut command = tokio::process::Command::new(bin("droverctl"));
    if let Some(profile) = profile_for(url) {
        command.arg("--profile").arg(profile);
    }
    command
        .args([
            "--coordinator",
            url,
            "rollout",
            "watch",
            "--channel",
            "edge",
        ])
        .args(["--interval-secs", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start droverctl rollout watch")
}

/// Waits for the watcher to exit; its exit code and output.
async fn outcome(child: tokio::process::Child) -> (Option<i32>, String) {
    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("rollout watch exits when the rollout ends")
        .expect("droverctl ran");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_exits_0_when_the_rollout_is_done() {
    let root = tempfile::tempdir().unwrap();
    let c = start(root.path()).await;
    let url = c.grpc_url();
    let _fleet = simulate_fleet(&url, root.path(), 6, "dev,prod", "edge");
    wait_connected(&url, 6).await;
    let groups = ["dev:canaries=1", "prod:canaries=1"];
    assert!(
        create_rollout(&url, "edge", &groups, &["--immediate"])
            .await
            .0
    );
    let (code, text) = outcome(watch(&url)).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("→ 1.1.0") && text.contains("done"), "{text}");
    // One line per change: each group shows up with its bar, ending full.
    assert!(
        text.contains("prod") && text.contains("[####################]"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_exits_1_when_the_rollout_halts() {
    let root = tempfile::tempdir().unwrap();
    let c = start(root.path()).await;
    let url = c.grpc_url();
    let args = [
        "--count",
        "6",
        "--groups",
        "dev,prod",
        "--channel",
        "edge",
        "--versions",
        "1.0.0",
        "--broken-versions",
        "1.1.0",
        "--id-prefix",
        "sim",
        "--ramp-up-secs",
        "0",
        "--unhealthy-fraction",
        "0",
        "--recheck-secs",
        "3600",
    ];
    let _fleet = simulate(&url, root.path(), &args);
    wait_connected(&url, 6).await;
    let groups = ["dev:canaries=1", "prod:canaries=1"];
    assert!(
        create_rollout(&url, "edge", &groups, &["--immediate"])
            .await
            .0
    );
    let (code, text) = outcome(watch(&url)).await;
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("halted"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_exits_2_when_the_rollout_is_rolled_back() {
    let root = tempfile::tempdir().unwrap();
    let c = start(root.path()).await;
    let url = c.grpc_url();
    let _fleet = simulate_fleet(&url, root.path(), 6, "dev,prod", "edge");
    wait_connected(&url, 6).await;
    // dev's window is open now; prod's is twelve hours away, so the rollout stays active.
    let hour = utc_hour_now();
    let dev = format!("dev:canaries=1,start={hour},window=2");
    let prod = format!("prod:canaries=1,start={},window=1", (hour + 12) % 24);
    assert!(create_rollout(&url, "edge", &[&dev, &prod], &[]).await.0);
    let watcher = watch(&url);
    eventually("dev done", WAIT, async || {
        let s = droverctl_json(&url, &["rollout", "status", "--channel", "edge"]).await;
        (s["groups"][0]["state"] == "done").then_some(())
    })
    .await;
    droverctl_json(&url, &["rollout", "rollback", "--channel", "edge"]).await;
    let (code, text) = outcome(watcher).await;
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("rolledback"), "{text}");
}

#[tokio::test]
async fn watching_an_unknown_rollout_exits_3_and_says_why() {
    let root = tempfile::tempdir().unwrap();
    let c = start(root.path()).await;
    let mut command = tokio::process::Command::new(bin("droverctl"));
    command
        .arg("--profile")
        .arg(profile_for(&c.grpc_url()).unwrap())
        .args(["rollout", "watch", "no-such-rollout"]);
    let output = command.output().await.unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no-such-rollout") || stderr.contains("not found"),
        "{stderr}"
    );
}
