//! droverctl as a user meets it: a reader that closes the pipe early, hostile server text,
//! exit codes, shell completions.

use std::{process::Stdio, time::Duration};

use drover_tests::{CoordinatorBuilder, bin, droverctl, droverctl_json, eventually, simulate};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

const WAIT: Duration = Duration::from_secs(60);
/// Enough agents, with long ids and group names, that one page of `agents list` is several
/// times a pipe's 64 KiB buffer: droverctl is still writing when the reader goes away.
const AGENTS: u64 = 800;

/// `droverctl agents list | head -1`: the reader takes one line and closes the pipe; droverctl
/// must not panic on the failed write and must exit 0.
#[tokio::test]
async fn closed_pipe_is_success() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = CoordinatorBuilder::sqlite(root.path())
        .control_plane("2.0.0")
        .start()
        .await;
    let url = coordinator.grpc_url();
    let group = "g".repeat(60);
    let prefix = "a".repeat(100);
    let count = AGENTS.to_string();
    let _fleet = simulate(
        &url,
        root.path(),
        &[
            "--count",
            &count,
            "--groups",
            &group,
            "--id-prefix",
            &prefix,
            "--versions",
            "2.0.0",
            "--ramp-up-secs",
            "1",
        ],
    );
    let list = ["agents", "list", "--limit", "1000"];
    eventually("every simulated agent registered", WAIT, async || {
        let page = droverctl_json(&url, &list).await;
        (page["total_matching"] == AGENTS).then_some(())
    })
    .await;
    let (ok, table, _) = droverctl(&url, &list).await;
    assert!(ok && table.len() > 2 * 65_536, "{} bytes", table.len());

    let profile = coordinator.tls.as_ref().expect("TLS").admin_profile.clone();
    let mut child = Command::new(bin("droverctl"))
        .args(["--coordinator", &url])
        .arg("--profile")
        .arg(profile)
        .args(list)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start droverctl");
    let mut reader = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut first = String::new();
    reader.read_line(&mut first).await.expect("first line");
    assert!(first.starts_with("AGENT"), "{first:?}");
    drop(reader);

    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("droverctl ends once its reader is gone")
        .expect("droverctl's status");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}: {stderr}",
        output.status
    );
    assert!(stderr.is_empty(), "nothing to report: {stderr}");
}

/// The coordinator quotes a refused name back; droverctl prints that quote without the
/// escape sequences it held, so a crafted name cannot drive the admin's terminal.
#[tokio::test]
async fn server_text_reaches_stderr_without_control_characters() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = CoordinatorBuilder::sqlite(root.path())
        .control_plane("2.0.0")
        .start()
        .await;
    let hostile = "evil\x1b]0;owned\x07\x1b[2J\u{9b}31m";
    let (ok, stdout, stderr) = droverctl(
        &coordinator.grpc_url(),
        &["channels", "set", hostile, "2.0.0"],
    )
    .await;
    assert!(!ok && stdout.is_empty());
    assert!(
        stderr.contains("'evil]0;owned[2J31m' is invalid"),
        "{stderr:?}"
    );
    assert!(
        stderr
            .trim_end_matches('\n')
            .chars()
            .all(|c| !c.is_control()),
        "{stderr:?}"
    );
}

/// 0 success, 1 the request failed, 2 the command line is wrong; no colour off a terminal.
#[tokio::test]
async fn exit_codes_say_what_went_wrong() {
    // A port nobody listens on: the connection is refused at once. The socket stays bound
    // (never listening) for the whole test, so no other test's server can take the port.
    let reserved = tokio::net::TcpSocket::new_v4().unwrap();
    reserved.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = reserved.local_addr().unwrap().port();
    let run = |args: &[&str]| {
        Command::new(bin("droverctl"))
            .args(["--coordinator", &format!("http://127.0.0.1:{port}")])
            .args(args)
            .stdin(Stdio::null())
            .output()
    };
    let down = run(&["fleet", "summary"]).await.unwrap();
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert_eq!(down.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("droverctl: cannot reach"), "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "stderr is no terminal: {stderr:?}"
    );

    let typo = run(&["agents", "list", "--health", "sick"]).await.unwrap();
    assert_eq!(typo.status.code(), Some(2));

    let help = run(&["rollout", "--help"]).await.unwrap();
    assert_eq!(help.status.code(), Some(0));
}

#[tokio::test]
async fn completion_scripts_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let output = Command::new(bin("droverctl"))
            .args(["completion", shell])
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{shell}: {:?}", output.status);
        assert!(
            script.contains("droverctl") && script.contains("control-plane"),
            "{shell}: {script}"
        );
    }
}
