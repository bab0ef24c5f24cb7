//! Test harness for black-box tests: start the real binaries on loopback, drive them with
//! droverctl and gRPC, and give each test its own SQLite file or PostgreSQL database.
#![forbid(unsafe_code)]

mod browser;
mod chaos;
pub mod cosign_key;
mod directives;
pub mod enrol;
pub mod hostbed;
mod json_patch;
pub mod kube_api;
pub mod otlp;
mod postgres;
mod private_postgres;
mod process;
mod receiver;
pub mod registry;
mod release;
mod replicas;
pub mod repos;
pub mod roots;
mod tmpfs;
mod trust;
mod updater_process;

pub use browser::dashboard_script;
pub use chaos::ChaosProxy;
pub use directives::{Fencing, directives_by_agent, fencing};
pub use postgres::TestPostgres;
pub use private_postgres::PrivatePostgres;
pub use process::{
    CoordinatorBuilder, CoordinatorProcess, ProcessGroup, bin, droverctl, droverctl_json,
    terminate, testing_bin, use_bin_dir,
};
pub use receiver::{Behaviour, Receiver, https_receiver};
pub use release::{AgentHost, ReleaseRepo, SigningKey};
pub use tmpfs::Tmpfs;
pub use trust::{
    admin_request, ca_file_for, grpc_channel, lookup as trust_for, profile_for, tls_connector,
    token_for,
};
pub use updater_process::{UpdaterBuilder, UpdaterProcess};

use std::time::{Duration, Instant};

/// Polls `check` until it returns `Some`, or fails with `what` after `timeout`.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    check: impl AsyncFnMut() -> Option<T>,
) -> T {
    eventually_explained(what, timeout, check, String::new).await
}

/// [`eventually`], whose failure also shows `explain()` (the state it saw, a log tail).
pub async fn eventually_explained<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
    explain: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}\n{}",
            explain()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How long to wait for `count` updaters to connect: half a minute plus 50 ms for each
/// (TLS enrolment is rate-limited, and a busy machine is slow), never a fixed guess.
pub fn fleet_deadline(count: u64) -> Duration {
    Duration::from_secs(30) + Duration::from_millis(50) * count as u32
}

/// Waits (see [`fleet_deadline`]) until the coordinator at `url` counts `count` connected
/// updaters; a timeout names how many it saw.
pub async fn wait_connected(url: &str, count: u64) {
    let seen = std::sync::atomic::AtomicU64::new(0);
    eventually_explained(
        &format!("{count} updaters connected"),
        fleet_deadline(count),
        async || {
            let summary = droverctl_json(url, &["fleet", "summary"]).await;
            let connected = summary["connected_agents"].as_u64().unwrap_or_default();
            seen.store(connected, std::sync::atomic::Ordering::Relaxed);
            (connected == count).then_some(())
        },
        || {
            format!(
                "{} were connected",
                seen.load(std::sync::atomic::Ordering::Relaxed)
            )
        },
    )
    .await;
}

/// How many health samples the coordinator holds of `agent` on `version` before any mark
/// (what `agents why` says: "N sample(s) on VERSION so far"); `None` when it says nothing.
pub async fn health_samples_on(url: &str, agent: &str, version: &str) -> Option<u32> {
    let why = droverctl_json(url, &["agents", "why", agent]).await;
    let text = why["explanation"].as_str()?;
    let end = text.find(&format!(" sample(s) on {version} so far"))?;
    text[..end].rsplit(' ').next()?.parse().ok()
}

/// `droverctl rollout create` moving `channel` from 1.0.0 to 1.1.0 through `groups` (each a
/// `--group` spec), plus `extra` flags. Returns (succeeded, stdout, stderr).
pub async fn create_rollout(
    url: &str,
    channel: &str,
    groups: &[&str],
    extra: &[&str],
) -> (bool, String, String) {
    let mut args = vec![
        "rollout",
        "create",
        "--channel",
        channel,
        "--from",
        "1.0.0",
        "--to",
        "1.1.0",
    ];
    for group in groups {
        args.extend(["--group", group]);
    }
    args.extend(extra);
    droverctl(url, &args).await
}

/// The current UTC hour (0–23), for rollouts whose windows must be open or closed now.
pub fn utc_hour_now() -> u64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs();
    (secs / 3600) % 24
}

/// A minimal HTTP/1.1 request on loopback, so the tests need no HTTP client crate: over
/// The value of the unlabelled sample `name` in a `/metrics` body (0 when absent).
pub fn metric_value(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// TLS trusting the coordinator's CA when the harness started that coordinator with TLS,
/// else plaintext; with that coordinator's admin token (`authorization: Bearer`). Returns
/// (status, body).
pub async fn http(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    let token = token_for(&addr.to_string());
    http_as(addr, method, path, token.as_deref()).await
}

/// [`http`] with `token` instead of the coordinator's admin token (`None`: no token).
pub async fn http_as(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    http_body_as(addr, method, path, token, "").await
}

/// [`http`] sending `body` as JSON (a POST's), with the coordinator's admin token.
pub async fn http_json(
    addr: std::net::SocketAddr,
    path: &str,
    body: &serde_json::Value,
) -> (u16, String) {
    let token = token_for(&addr.to_string());
    http_body_as(addr, "POST", path, token.as_deref(), &body.to_string()).await
}

/// [`http_as`] with a JSON `body` ("" for none).
pub async fn http_body_as(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let (status, _, body) = http_exchange(addr, method, path, token, body).await;
    (status, body)
}

/// A GET of `path` with the coordinator's admin token: (status, headers with lower-case
/// names).
pub async fn http_headers(addr: std::net::SocketAddr, path: &str) -> (u16, Vec<(String, String)>) {
    let token = token_for(&addr.to_string());
    let (status, head, _) = http_exchange(addr, "GET", path, token.as_deref(), "").await;
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    (status, headers)
}

async fn http_exchange(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String, String) {
    try_http_exchange(addr, method, path, token, body)
        .await
        .unwrap_or_else(|err| panic!("{err}"))
}

/// [`http`] that returns `None` when the coordinator refuses or resets the connection
/// (at its connection cap, say) instead of failing the test.
pub async fn try_http(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    let token = token_for(&addr.to_string());
    let (status, _, body) = try_http_exchange(addr, "GET", path, token.as_deref(), "")
        .await
        .ok()?;
    (status != 0).then_some((status, body))
}

async fn try_http_exchange(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Result<(u16, String, String), String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|err| format!("connect to {addr}: {err}"))?;
    Ok(match trust::lookup(&addr.to_string()) {
        Some(tls) => {
            let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
            let stream = tls_connector(&tls.ca_file)
                .connect(name, stream)
                .await
                .map_err(|err| format!("TLS handshake with the coordinator: {err}"))?;
            http_on(stream, method, path, token, body).await
        }
        None => http_on(stream, method, path, token, body).await,
    })
}

/// [`http`] in plaintext whatever the coordinator serves (0: no HTTP answer came).
pub async fn http_plaintext(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (status, _, body) = http_on(stream, "GET", path, None, "").await;
    (status, body)
}

async fn http_on(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{authorization}{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if let Err(err) = stream.write_all(request.as_bytes()).await {
        return (
            0,
            format!("sending the request failed: {err}"),
            String::new(),
        );
    }
    let mut bytes = Vec::new();
    // A peer that closes without close_notify (or refuses TLS) ends the read with an error.
    let _ = stream.read_to_end(&mut bytes).await;
    let response = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .filter(|_| head.starts_with("HTTP/"))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// The value after `name` in `args`.
fn flag<'a>(args: &[&'a str], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|arg| *arg == name)
        .and_then(|at| args.get(at + 1))
        .copied()
}

/// The simulated fleet most tests use: `count` agents `sim-00000…` on `channel`, spread over
/// `groups` (comma-separated), all running 1.0.0, connected at once, never re-checking.
pub fn simulate_fleet(
    coordinator: &str,
    log_dir: &std::path::Path,
    count: u32,
    groups: &str,
    channel: &str,
) -> tokio::process::Child {
    simulate_fleet_with(coordinator, log_dir, count, groups, channel, "sim", &[])
}

/// `simulate_fleet` with agents `prefix-00000…` and more flags (`extra`: any but those it
/// sets itself).
pub fn simulate_fleet_with(
    coordinator: &str,
    log_dir: &std::path::Path,
    count: u32,
    groups: &str,
    channel: &str,
    prefix: &str,
    extra: &[&str],
) -> tokio::process::Child {
    let count = count.to_string();
    let mut args = vec![
        "--count",
        &count,
        "--groups",
        groups,
        "--channel",
        channel,
        "--versions",
        "1.0.0",
        "--id-prefix",
        prefix,
        "--ramp-up-secs",
        "0",
        "--recheck-secs",
        "3600",
    ];
    args.extend_from_slice(extra);
    simulate(coordinator, log_dir, &args)
}

/// `drover-updater simulate …`: N simulated updaters in one process, each its own connection.
pub fn simulate(
    coordinator: &str,
    log_dir: &std::path::Path,
    args: &[&str],
) -> tokio::process::Child {
    simulate_logging(coordinator, log_dir, args, "warn")
}

/// `simulate` with `RUST_LOG=rust_log`; its log is `log_dir/simulate.log`, each line naming
/// its agent (`sim{agent=…}`), e.g. every directive an agent accepts with
/// `warn,drover_updater::manager=info,drover_updater::simulate=info` (the
/// span is the simulate module's: without it, the lines do not name their agent).
pub fn simulate_logging(
    coordinator: &str,
    log_dir: &std::path::Path,
    args: &[&str],
    rust_log: &str,
) -> tokio::process::Child {
    simulate_with_env(coordinator, log_dir, args, rust_log, &[])
}

/// `simulate_logging` with more environment (e.g. OTEL_* variables).
pub fn simulate_with_env(
    coordinator: &str,
    log_dir: &std::path::Path,
    args: &[&str],
    rust_log: &str,
    env: &[(&str, &str)],
) -> tokio::process::Child {
    let log = std::fs::File::create(log_dir.join("simulate.log")).expect("log file");
    let mut command = tokio::process::Command::new(bin("drover-updater"));
    command
        .arg("simulate")
        .arg("--coordinator")
        .arg(coordinator);
    if let Some(ca) = ca_file_for(coordinator) {
        // Each simulated agent enrols with one token for the fleet's groups.
        let count = flag(args, "--count").map_or(300, |n| n.parse().expect("--count N"));
        let groups = flag(args, "--groups").unwrap_or("dev,staging,prod");
        let groups: Vec<&str> = groups.split(',').collect();
        let token = enrol::join_token(coordinator, &groups, count).expect("a TLS coordinator");
        // Identities are kept beside the log, so a restarted fleet is the same fleet.
        command
            .arg("--ca-file")
            .arg(ca)
            .arg("--identity-dir")
            .arg(log_dir.join("sim-identities"))
            .env("DROVER_JOIN_TOKEN", token);
    }
    command
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", rust_log)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("start drover-updater simulate")
}
