//! #23: a coordinator whose store is busy says so, and says when to come back. Another
//! process holds the SQLite database's write lock (as a backup tool or a stray `sqlite3`
//! would): writes fail as UNAVAILABLE "the store is busy … retry in 2 s" with the gRPC
//! pushback, never "unreachable"; an updater whose Hello is refused waits at least that
//! long between attempts, and gets in once the lock is gone.

use std::{str::FromStr, time::Duration};

use drover_tests::{
    CoordinatorBuilder, UpdaterBuilder, droverctl, droverctl_json, enrol, eventually,
    eventually_explained,
};
use sqlx::{
    ConnectOptions, Connection,
    sqlite::{SqliteConnectOptions, SqliteConnection},
};

/// Seconds since midnight of a log line's RFC 3339 timestamp (`…THH:MM:SS.ffffffZ …`).
fn seconds_of_day(line: &str) -> Option<f64> {
    let time = line.split_whitespace().next()?.split_once('T')?.1;
    let time = time.trim_end_matches('Z');
    let mut parts = time.split(':');
    let (h, m, s): (f64, f64, f64) = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    Some(h * 3600.0 + m * 60.0 + s)
}

/// When the updater logged each refused session, in seconds from the first.
fn refusals(log: &str) -> Vec<f64> {
    let times: Vec<f64> = log
        .lines()
        .filter(|line| line.contains("coordinator session ended"))
        .filter_map(seconds_of_day)
        .collect();
    let first = times.first().copied().unwrap_or_default();
    // A run across midnight wraps.
    times
        .iter()
        .map(|t| if *t < first { t + 86_400.0 } else { *t } - first)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_store_is_said_as_busy_and_updaters_come_back_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let c = CoordinatorBuilder::sqlite(dir.path())
        .control_plane("2.0.0")
        .start()
        .await;
    let url = c.grpc_url();
    let state = dir.path().join("updater");
    if let Some((enrolled, stderr)) = enrol::enrol(&url, &state, "busy-1", "default") {
        assert!(enrolled, "{stderr}");
    }

    // Another process takes the database's write lock and keeps it.
    let options = SqliteConnectOptions::from_str(&format!(
        "sqlite://{}",
        dir.path().join("drover.db").display()
    ))
    .unwrap()
    .busy_timeout(Duration::from_secs(10));
    let mut holder: SqliteConnection = options.connect().await.expect("open the database");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut holder)
        .await
        .expect("take the write lock");

    // An admin's write is refused as busy, with when to retry.
    let (ok, _, stderr) = droverctl(&url, &["channels", "set", "beta", "1.5.0"]).await;
    eprintln!("droverctl channels set while locked: {stderr}");
    assert!(
        !ok,
        "a write cannot commit while another process holds the lock"
    );
    assert!(
        stderr.contains("busy") && stderr.contains("retry in 2 s"),
        "{stderr}"
    );
    assert!(!stderr.contains("unreachable"), "{stderr}");

    // An updater's Hello is refused the same way; it waits as asked between attempts.
    let updater = UpdaterBuilder::new(&url, &state, "busy-1")
        .arg("--agent-version", "1.0.0")
        .arg("--install-command", "true")
        .start();
    let seen = eventually_explained(
        "three refused sessions",
        Duration::from_secs(60),
        async || {
            let log = updater.log();
            (refusals(&log).len() >= 3).then_some(log)
        },
        || {
            format!(
                "the updater's log:\n{}\nthe coordinator's:\n{}",
                updater.log(),
                c.log()
            )
        },
    )
    .await;
    let refused: Vec<&str> = seen
        .lines()
        .filter(|line| line.contains("coordinator session ended"))
        .collect();
    eprintln!("{}", refused.join("\n"));
    assert!(
        refused.iter().all(|line| line.contains("retry in 2 s")),
        "every refusal says busy and when to retry"
    );
    let times = refusals(&seen);
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= drover_rules::retry::BUSY_RETRY_AFTER.as_secs_f64(),
            "the updater came back {:.2} s after a refusal that asked for 2 s: {times:?}",
            pair[1] - pair[0]
        );
    }

    // The lock goes; the updater gets in and the admin's write goes through.
    sqlx::query("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("release the lock");
    holder.close().await.unwrap();
    eventually(
        "the updater connects",
        Duration::from_secs(30),
        async || {
            let summary = droverctl_json(&url, &["fleet", "summary"]).await;
            (summary["connected_agents"] == 1).then_some(())
        },
    )
    .await;
    let (ok, _, stderr) = droverctl(&url, &["channels", "set", "beta", "1.5.0"]).await;
    assert!(ok, "{stderr}");
}
