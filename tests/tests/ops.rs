//! Operating the coordinator when things go wrong: a store that refuses writes, a database
//! outage, a supervised task that panics. Real processes; every wait has a deadline.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use drover_proto::v1::{self as pb, admin_service_client::AdminServiceClient};
use drover_tests::{
    ChaosProxy, CoordinatorBuilder, CoordinatorProcess, PrivatePostgres, TestPostgres, droverctl,
    droverctl_json, eventually,
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// Driver or SQL text that must never reach a client.
const LEAKS: &[&str] = &[
    "sqlx",
    "SQLSTATE",
    "pool timed out",
    "error returned from database",
    "Connection refused",
    "os error",
    "INSERT",
    "UPDATE",
    "SELECT",
];

fn assert_clean(what: &str, message: &str) {
    for leak in LEAKS {
        assert!(
            !message.contains(leak),
            "{what} leaks '{leak}' to the client: {message}"
        );
    }
    assert!(
        message.contains("error id e-"),
        "{what} names no error id: {message}"
    );
}

async fn readyz(coordinator: &CoordinatorProcess) -> (u16, String) {
    drover_tests::http(coordinator.addresses.http, "GET", "/readyz").await
}

async fn grpc_health(coordinator: &CoordinatorProcess) -> ServingStatus {
    let Ok(channel) = drover_tests::grpc_channel(&coordinator.grpc_url()).await else {
        return ServingStatus::Unknown;
    };
    let mut client = HealthClient::new(channel);
    client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|response| response.into_inner().status())
        .unwrap_or(ServingStatus::Unknown)
}

/// Waits until `/readyz` and the gRPC health service agree on `ready`; returns the body.
async fn wait_readiness(coordinator: &CoordinatorProcess, ready: bool, within: Duration) -> String {
    let (want_status, want_health) = if ready {
        (200, ServingStatus::Serving)
    } else {
        (503, ServingStatus::NotServing)
    };
    eventually(
        &format!("/readyz {want_status} and gRPC health {want_health:?}"),
        within,
        async || {
            let (status, body) = readyz(coordinator).await;
            (status == want_status && grpc_health(coordinator).await == want_health).then_some(body)
        },
    )
    .await
}

// ---- a store that refuses writes ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_postgres_turns_readiness_off_and_back_on() {
    let db = TestPostgres::create().await;
    let root = tempfile::tempdir().unwrap();
    let coordinator = CoordinatorBuilder::with_database(root.path(), &db.url)
        .start()
        .await;
    wait_readiness(&coordinator, true, Duration::from_secs(10)).await;

    // New sessions start read-only; ending the current ones makes the pool reconnect.
    let name = db.name().to_string();
    let terminate = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    );
    db.admin(&format!(
        "ALTER DATABASE {name} SET default_transaction_read_only = on"
    ))
    .await;
    db.admin(&terminate).await;
    let started = Instant::now();
    let body = wait_readiness(&coordinator, false, Duration::from_secs(10)).await;
    eprintln!(
        "not ready {:?} after the store turned read-only: {body}",
        started.elapsed()
    );
    assert!(
        body.contains("store write") && body.contains("read-only"),
        "{body}"
    );
    assert_clean("/readyz", &body);

    let url = coordinator.grpc_url();
    let (ok, _, stderr) = droverctl(&url, &["control-plane", "set", "2.0.0"]).await;
    assert!(!ok && stderr.contains("read-only"), "{stderr}");
    assert_clean("droverctl control-plane set", &stderr);

    db.admin(&format!(
        "ALTER DATABASE {name} SET default_transaction_read_only = off"
    ))
    .await;
    db.admin(&terminate).await;
    let started = Instant::now();
    wait_readiness(&coordinator, true, Duration::from_secs(10)).await;
    eprintln!(
        "ready again {:?} after the store turned writable",
        started.elapsed()
    );
    droverctl_json(&url, &["control-plane", "set", "2.0.0"]).await;
    drop(coordinator);
    db.drop_database().await;
}

/// Makes files immutable (`chattr +i`) for as long as it lives, even if the test fails.
struct Immutable(Vec<std::path::PathBuf>);

impl Immutable {
    fn set(files: &[std::path::PathBuf]) -> Self {
        let output = std::process::Command::new("chattr")
            .arg("+i")
            .args(files)
            .output()
            .expect("run chattr");
        assert!(
            output.status.success(),
            "chattr +i failed (this test needs root and a file system with attributes): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self(files.to_vec())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .args(&self.0)
            .status();
    }
}

/// As root, file modes do not stop writes; `chattr +i` does (EPERM on write and on
/// open-for-write). Only the database and its WAL are made immutable: SQLite maps the
/// `-shm` file into memory, and an immutable mapping would kill the process (SIGBUS),
/// which is a different failure from a store that refuses writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_sqlite_file_turns_readiness_off_and_back_on() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = CoordinatorBuilder::sqlite(root.path()).start().await;
    wait_readiness(&coordinator, true, Duration::from_secs(10)).await;

    let db = root.path().join("drover.db");
    let files = [
        db.clone(),
        Path::new(&format!("{}-wal", db.display())).to_path_buf(),
    ];
    let immutable = Immutable::set(&files);
    let started = Instant::now();
    let body = wait_readiness(&coordinator, false, Duration::from_secs(10)).await;
    eprintln!("not ready {:?} after chattr +i: {body}", started.elapsed());
    assert!(body.contains("store write"), "{body}");
    assert_clean("/readyz", &body);
    let url = coordinator.grpc_url();
    let (ok, _, stderr) = droverctl(&url, &["control-plane", "set", "2.0.0"]).await;
    assert!(!ok && stderr.contains("nothing was changed"), "{stderr}");
    assert_clean("droverctl control-plane set", &stderr);

    drop(immutable);
    let started = Instant::now();
    wait_readiness(&coordinator, true, Duration::from_secs(10)).await;
    eprintln!("ready again {:?} after chattr -i", started.elapsed());
    droverctl_json(&url, &["control-plane", "set", "2.0.0"]).await;
}

// ---- a database outage --------------------------------------------------------------

/// Fails within `limit`, returning the time it took.
async fn timed<T>(limit: Duration, call: impl AsyncFnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let result = call().await;
    let took = started.elapsed();
    assert!(took <= limit, "took {took:?}, more than {limit:?}");
    (result, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_fails_calls_fast_and_clean_and_heals_by_itself() {
    let db = TestPostgres::create().await;
    // The proxy stands in for a stopped PostgreSQL: stopping the shared server would break
    // every other test using it.
    let proxy = ChaosProxy::start(db.server_addr()).await;
    let root = tempfile::tempdir().unwrap();
    let coordinator = CoordinatorBuilder::with_database(root.path(), &db.url_via(proxy.addr))
        .start()
        .await;
    let url = coordinator.grpc_url();
    droverctl_json(&url, &["control-plane", "set", "2.0.0"]).await;
    wait_readiness(&coordinator, true, Duration::from_secs(10)).await;

    proxy.cut().await;
    // Each call fails on its own within a second (the pool's acquire timeout is 0.8 s), with
    // UNAVAILABLE / 503 and a message naming an error id and no driver text.
    let limit = Duration::from_secs(1);
    let mut client = AdminServiceClient::new(drover_tests::grpc_channel(&url).await.unwrap());
    let (status, took) = timed(limit, async || {
        client
            .set_control_plane_version(drover_tests::admin_request(
                &url,
                pb::SetControlPlaneVersionRequest {
                    version: "2.1.0".into(),
                    ..Default::default()
                },
            ))
            .await
            .expect_err("no store, no change")
    })
    .await;
    eprintln!(
        "SetControlPlaneVersion failed in {took:?}: {}",
        status.message()
    );
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("unreachable"), "{status:?}");
    assert_clean("SetControlPlaneVersion", status.message());

    let ((code, body), took) = timed(limit, async || {
        drover_tests::http(coordinator.addresses.http, "GET", "/api/v1/agents").await
    })
    .await;
    eprintln!("GET /api/v1/agents failed in {took:?}: {body}");
    assert_eq!(code, 503, "{body}");
    assert_clean("GET /api/v1/agents", &body);

    // droverctl adds its own process start to the call.
    for args in [
        &["channels", "set", "beta", "1.5.0"][..],
        &["control-plane", "set", "2.1.0"][..],
    ] {
        let ((ok, _, stderr), took) =
            timed(Duration::from_secs(3), async || droverctl(&url, args).await).await;
        eprintln!("droverctl {args:?} failed in {took:?}: {stderr}");
        assert!(!ok && stderr.contains("Unavailable"), "{stderr}");
        assert_clean("droverctl", &stderr);
    }
    let body = wait_readiness(&coordinator, false, Duration::from_secs(10)).await;
    assert_clean("/readyz", &body);

    proxy.restore().await;
    let started = Instant::now();
    eventually(
        "droverctl channels set succeeds again",
        Duration::from_secs(10),
        async || {
            droverctl(&url, &["channels", "set", "beta", "1.5.0"])
                .await
                .0
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "writes succeed again {:?} after the restore",
        started.elapsed()
    );
    let channels = droverctl_json(&url, &["channels", "list"]).await;
    assert!(channels.to_string().contains("1.5.0"), "{channels}");
    let (code, body) =
        drover_tests::http(coordinator.addresses.http, "GET", "/api/v1/agents").await;
    assert_eq!(code, 200, "{body}");
    wait_readiness(&coordinator, true, Duration::from_secs(10)).await;
    drop(coordinator);
    drop(proxy);
    db.drop_database().await;
}

/// What the readiness contract promises (README, Operations): not ready within this of a
/// database outage, ready again within this of its return.
const READINESS_REACTS: Duration = Duration::from_secs(3);

/// Samples `/readyz` every 200 ms until `stop`; returns when each status was first seen
/// after `since` (the instant of the outage or the recovery).
async fn first_status(c: &CoordinatorProcess, want: u16, since: Instant) -> Duration {
    eventually(
        &format!("/readyz {want}"),
        Duration::from_secs(30),
        async || {
            let (status, _) = readyz(c).await;
            (status == want).then(|| since.elapsed())
        },
    )
    .await
}

/// A real PostgreSQL (the test's own server) stopped and started again: `/readyz` turns 503
/// within three seconds of the stop and 200 within three seconds of the start, and writes
/// succeed again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_postgres_turns_readiness_off_and_its_return_on_within_three_seconds() {
    let server = tokio::task::spawn_blocking(PrivatePostgres::start)
        .await
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let coordinator = CoordinatorBuilder::with_database(root.path(), &server.url())
        .control_plane("2.0.0")
        .start()
        .await;
    let url = coordinator.grpc_url();
    wait_readiness(&coordinator, true, Duration::from_secs(10)).await;

    let server = std::sync::Arc::new(server);
    let stopping = server.clone();
    tokio::task::spawn_blocking(move || stopping.stop())
        .await
        .unwrap();
    let stopped = Instant::now();
    let off = first_status(&coordinator, 503, stopped).await;
    let body = wait_readiness(&coordinator, false, Duration::from_secs(10)).await;
    eprintln!("not ready {off:?} after PostgreSQL stopped: {body}");
    assert!(body.contains("store write"), "{body}");
    assert_clean("/readyz", &body);
    let (ok, _, stderr) = droverctl(&url, &["channels", "set", "beta", "1.5.0"]).await;
    eprintln!("droverctl channels set during the outage: {stderr}");
    assert!(!ok && stderr.contains("unreachable"), "{stderr}");

    let starting = server.clone();
    tokio::task::spawn_blocking(move || starting.start_again())
        .await
        .unwrap();
    let started = Instant::now();
    let on = first_status(&coordinator, 200, started).await;
    eprintln!("ready again {on:?} after PostgreSQL started");
    droverctl_json(&url, &["channels", "set", "beta", "1.5.0"]).await;
    assert!(off <= READINESS_REACTS, "not ready only after {off:?}");
    assert!(on <= READINESS_REACTS, "ready again only after {on:?}");
    drop(coordinator);
}

// ---- supervised tasks ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_task_is_logged_by_name_fails_readiness_and_is_restarted() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = CoordinatorBuilder::sqlite(root.path())
        .testing()
        .arg("--test-panic-task")
        .arg("reconciler")
        .start()
        .await;
    // Not ready from the start ("starting"); then because the reconciler is down.
    let body = eventually(
        "/readyz to name the reconciler",
        Duration::from_secs(10),
        async || {
            let (status, body) = readyz(&coordinator).await;
            (status == 503 && body.contains("task reconciler")).then_some(body)
        },
    )
    .await;
    assert_eq!(
        grpc_health(&coordinator).await,
        ServingStatus::NotServing,
        "{body}"
    );
    // Policy: restart with backoff. A second failure in the log proves the restart.
    eventually(
        "the log to show the reconciler failing twice",
        Duration::from_secs(10),
        async || {
            let log = coordinator.log();
            (log.contains("task=\"reconciler\"")
                && log.contains("panicked: injected by --test-panic-task")
                && log.contains("failures=2"))
            .then_some(())
        },
    )
    .await;
    // The rest of the coordinator keeps serving.
    droverctl_json(&coordinator.grpc_url(), &["control-plane", "set", "2.0.0"]).await;
    assert_eq!(coordinator.terminate().await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_readiness_task_stops_the_coordinator_with_a_failure() {
    let root = tempfile::tempdir().unwrap();
    // Spawned by hand: the process may stop before it would write its ready file.
    let child = tokio::process::Command::new(drover_tests::testing_bin())
        .arg("--database")
        .arg(format!(
            "sqlite://{}",
            root.path().join("drover.db").display()
        ))
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args(["--test-panic-task", "readiness"])
        .env("RUST_LOG", "info")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(20), child)
        .await
        .expect("the coordinator stops within 20 s")
        .expect("run drover-coordinator");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "exit status {:?}\n{log}",
        output.status
    );
    assert!(
        log.contains("task=\"readiness\"") && log.contains("shutting down"),
        "{log}"
    );
    assert!(
        log.contains("the supervised task readiness failed"),
        "{log}"
    );
}
