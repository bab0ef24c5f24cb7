//! drover-coordinator: serves target versions to updaters and records the fleet.
#![forbid(unsafe_code)]

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use drover_coordinator::{
    fleet::{FleetConfig, replicas::LeaseConfig},
    listener::ListenerLimits,
    retention::RetentionConfig,
    server::{CoordinatorConfig, run},
    tls::TlsSettings,
};
use tokio_util::sync::CancellationToken;

/// The longest timeout a flag may set.
const DAY_SECS: u64 = 86_400;

#[derive(Parser, Debug)]
#[command(
    name = "drover-coordinator",
    version,
    about = "Serve target versions to Drover updaters and record the fleet."
)]
struct Args {
    /// `sqlite://PATH` (default, embedded) or `postgres://USER@HOST/DB` for several replicas.
    #[arg(long, env = "DROVER_DATABASE", default_value = "sqlite://drover.db")]
    database: String,
    /// Address for the updater and admin gRPC APIs.
    #[arg(long, env = "DROVER_GRPC_LISTEN", default_value = "127.0.0.1:7400")]
    grpc_listen: SocketAddr,
    /// Address for the dashboard, JSON API and health endpoints.
    #[arg(long, env = "DROVER_HTTP_LISTEN", default_value = "127.0.0.1:7401")]
    http_listen: SocketAddr,
    /// Record this control-plane version at start-up.
    #[arg(long, env = "DROVER_CONTROL_PLANE_VERSION")]
    control_plane_version: Option<String>,
    /// Seconds between updater heartbeats.
    #[arg(long, default_value_t = 10)]
    heartbeat_secs: u64,
    /// Seconds between an updater's periodic target re-checks (jittered by the updater).
    #[arg(long, default_value_t = 600)]
    recheck_secs: u64,
    /// Seconds between batched last-seen writes.
    #[arg(long, default_value_t = 15)]
    liveness_flush_secs: u64,
    /// Seconds between full re-reads of channels, schedules and credentials from the store:
    /// the safety net behind the change feed between replicas on PostgreSQL.
    #[arg(long, default_value_t = 5)]
    view_refresh_secs: u64,
    /// Replicas on PostgreSQL: seconds the reconciler's lease lasts (renewed every third).
    /// If its holder dies, another replica moves rollouts within this time. 2 to 300.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=300))]
    reconciler_lease_secs: u64,
    /// Write the bound addresses as JSON to this file once serving.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// HTTP/2 streams allowed per connection.
    #[arg(long, default_value_t = 128)]
    max_concurrent_streams: u32,
    /// Open connections allowed on the gRPC and HTTP listeners together (default: the
    /// open-file limit minus 256, kept for the store and logs). At the cap, the oldest
    /// connection that has made no request yet is closed for a new one; connections without
    /// credentials may hold at most three quarters of it.
    #[arg(long, env = "DROVER_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Seconds a new connection has to finish its TLS handshake and make its first request
    /// (an updater: its Hello) before it is closed, whatever it sends meanwhile; also the
    /// time the headers of each HTTP/1.1 request may take.
    #[arg(long, default_value_t = 10)]
    handshake_timeout_secs: u64,
    /// Seconds a connection may send nothing before it is closed (the gRPC server pings
    /// every 30 s, so live gRPC clients always answer sooner).
    #[arg(long, default_value_t = 300)]
    idle_timeout_secs: u64,
    /// Seconds of silence before TCP keepalive probes a connection's peer.
    #[arg(long, default_value_t = 60)]
    tcp_keepalive_secs: u64,
    /// Milliseconds between rollout engine passes (it also runs after every admin verb).
    #[arg(long, default_value_t = 2000)]
    reconcile_ms: u64,
    /// About how many agents of a rollout its trace follows besides the canaries and every
    /// failure (those always): the rest are sampled to this many, so a large rollout's
    /// trace stays small (about 5 KB per traced agent). 0: only canaries and failures.
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    trace_agent_budget: u64,
    /// Run rollouts on a manual clock starting here (Unix ms), moved with
    /// POST /api/v1/testing/clock/advance?ms=N. Tests only: refused unless built with the
    /// `testing` feature.
    #[arg(long, hide = true)]
    manual_clock_start_ms: Option<i64>,
    /// Delete events older than this many days (0: no age limit).
    #[arg(long, default_value_t = 30)]
    retain_events_days: u64,
    /// Keep at most this many events, the newest (0: no count limit).
    #[arg(long, default_value_t = 1_000_000)]
    retain_events_max: u64,
    /// Delete update reports older than this many days; an agent's newest report is always
    /// kept (0: no age limit).
    #[arg(long, default_value_t = 90)]
    retain_reports_days: u64,
    /// Keep at most this many update reports, the newest, plus each agent's newest
    /// (0: no count limit).
    #[arg(long, default_value_t = 1_000_000)]
    retain_reports_max: u64,
    /// Delete audit records older than this many days (0: no age limit).
    #[arg(long, default_value_t = 365)]
    retain_audit_days: u64,
    /// Keep at most this many audit records of requests that changed nothing (refusals, dry
    /// runs), the newest; records of changes go by age only (0: no count limit).
    #[arg(long, default_value_t = 1_000_000)]
    retain_audit_max: u64,
    /// Seconds between retention passes (each deletes in batches of 1,000 rows).
    #[arg(long, default_value_t = 600)]
    retention_interval_secs: u64,
    /// Milliseconds between readiness samples (each a one-row write to the store).
    #[arg(long, default_value_t = 500)]
    readiness_interval_ms: u64,
    /// Seconds between samples of agents by version for the dashboard's timeline (each a
    /// few rows; samples older than 31 days are deleted).
    #[arg(long, default_value_t = 60)]
    version_sample_secs: u64,
    /// For tests only: the named supervised task panics each time it starts.
    #[arg(long, hide = true)]
    test_panic_task: Option<String>,
    /// Log as `text` or `json` lines (json lines inside a traced span carry its trace_id
    /// and span_id). Traces go to OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    #[arg(long, env = "DROVER_LOG_FORMAT", default_value = "text")]
    log_format: drover_telemetry::LogFormat,
    /// Same as `--log-format json` (kept for older scripts).
    #[arg(long, hide = true)]
    log_json: bool,
    /// Where the coordinator keeps its CA, server certificate and the admin profile
    /// (default: `drover-data` beside the SQLite file, else `./drover-data`).
    #[arg(long, env = "DROVER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The server certificate chain (PEM) to serve instead of the generated one; needs
    /// --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The CA certificate (PEM) clients should trust with --tls-cert (default: the last
    /// certificate in --tls-cert).
    #[arg(long, requires = "tls_cert")]
    tls_ca: Option<PathBuf>,
    /// Another name (DNS or IP) for the generated server certificate, e.g. the host's
    /// public name when listening on 0.0.0.0. Repeatable.
    #[arg(long = "tls-san", value_name = "NAME")]
    tls_sans: Vec<String>,
    /// Serve plaintext instead of TLS: only on loopback addresses (refused otherwise).
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key", "tls_ca", "tls_sans"])]
    insecure: bool,
    /// How long an agent's client certificate is valid, in seconds (at least 10, at most a
    /// year); updaters renew theirs after two thirds of it.
    #[arg(long, default_value_t = 30 * 24 * 3600)]
    agent_cert_validity_secs: u64,
    /// How long after its expiry an unrevoked agent certificate may still renew itself
    /// (audited), e.g. when it expired while the coordinator was down; later, the agent
    /// enrols again. 0 turns this off.
    #[arg(long, default_value_t = 7 * 24 * 3600)]
    expired_cert_renewal_grace_secs: u64,
    /// Post a JSON alert here when a rollout starts, halts, finishes or rolls back (http or
    /// https; repeatable). Delivery is retried in the background and never slows a rollout.
    #[arg(long = "webhook", value_name = "URL")]
    webhooks: Vec<String>,
    /// Also trust these CA certificates (PEM) for https webhooks, beside the system roots.
    #[arg(long, value_name = "PEM")]
    webhook_ca_file: Option<PathBuf>,
}

/// `drover-data` beside a SQLite file; `./drover-data` for PostgreSQL or in-memory SQLite.
fn default_data_dir(database: &str) -> PathBuf {
    let file = database
        .strip_prefix("sqlite://")
        .or_else(|| database.strip_prefix("sqlite:"))
        .map(|rest| rest.split('?').next().unwrap_or(rest))
        .filter(|file| !file.is_empty() && !file.contains(":memory:"));
    match file
        .map(std::path::Path::new)
        .and_then(std::path::Path::parent)
    {
        Some(parent) => parent.join("drover-data"),
        None => PathBuf::from("drover-data"),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let format = if args.log_json {
        drover_telemetry::LogFormat::Json
    } else {
        args.log_format
    };
    let telemetry = match drover_telemetry::init("drover-coordinator", None, format) {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("drover-coordinator: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // One crypto provider for every rustls user in the process (see DEPENDENCIES.md).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = (!args.insecure).then(|| TlsSettings {
        data_dir: args
            .data_dir
            .clone()
            .unwrap_or_else(|| default_data_dir(&args.database)),
        extra_sans: args.tls_sans.clone(),
        cert: args.tls_cert.clone(),
        key: args.tls_key.clone(),
        ca: args.tls_ca.clone(),
        agent_cert_validity: Duration::from_secs(
            args.agent_cert_validity_secs.clamp(10, 365 * 24 * 3600),
        ),
        expired_renewal_grace: Duration::from_secs(
            args.expired_cert_renewal_grace_secs.min(365 * 24 * 3600),
        ),
    });
    let config = CoordinatorConfig {
        database: args.database,
        grpc_listen: args.grpc_listen,
        http_listen: args.http_listen,
        control_plane_version: args.control_plane_version,
        fleet: FleetConfig {
            heartbeat_interval: Duration::from_secs(args.heartbeat_secs.max(1)),
            recheck_interval: Duration::from_secs(args.recheck_secs.max(1)),
            liveness_flush_interval: Duration::from_secs(args.liveness_flush_secs.max(1)),
            view_refresh_interval: Duration::from_secs(args.view_refresh_secs.max(1)),
            reconcile_interval: Duration::from_millis(args.reconcile_ms.max(50)),
            manual_clock_start_ms: args.manual_clock_start_ms,
            lease: LeaseConfig {
                ttl: Duration::from_secs(args.reconciler_lease_secs),
            },
            trace_agent_budget: args.trace_agent_budget,
            ..FleetConfig::default()
        },
        ready_file: args.ready_file,
        max_concurrent_streams: args.max_concurrent_streams,
        listener: ListenerLimits {
            max_connections: args.max_connections,
            // Clamped: an instant plus a huge timeout would overflow.
            handshake_timeout: Duration::from_secs(args.handshake_timeout_secs.clamp(1, DAY_SECS)),
            // Above the gRPC server's 30 s ping, so live clients are never cut.
            idle_timeout: Duration::from_secs(args.idle_timeout_secs.clamp(45, DAY_SECS)),
            tcp_keepalive: Duration::from_secs(args.tcp_keepalive_secs.clamp(1, DAY_SECS)),
        },
        retention: RetentionConfig {
            events_max_age: days(args.retain_events_days),
            events_max_rows: count(args.retain_events_max),
            reports_max_age: days(args.retain_reports_days),
            reports_max_rows: count(args.retain_reports_max),
            audit_max_age: days(args.retain_audit_days),
            audit_max_rows: count(args.retain_audit_max),
            interval: Duration::from_secs(args.retention_interval_secs.max(1)),
            ..RetentionConfig::default()
        },
        readiness_interval: Duration::from_millis(args.readiness_interval_ms.clamp(100, 60_000)),
        version_sample_interval: Duration::from_secs(args.version_sample_secs.clamp(1, 3600)),
        test_panic_task: args.test_panic_task,
        tls,
        webhooks: args.webhooks,
        webhook_ca_file: args.webhook_ca_file,
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let outcome = run(config, shutdown).await;
    // Spans not yet exported get a bounded time to leave, off the async threads.
    let dropped = telemetry.dropped_spans();
    if dropped > 0 {
        tracing::warn!(dropped, "spans dropped (collector down or slow)");
    }
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("drover-coordinator: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Retention limits: 0 means no limit.
fn days(days: u64) -> Duration {
    match days {
        0 => Duration::MAX,
        days => Duration::from_secs(days.saturating_mul(24 * 3600)),
    }
}

fn count(rows: u64) -> u64 {
    if rows == 0 { u64::MAX } else { rows }
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = terminate.recv() => {},
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_dir_sits_beside_the_sqlite_file() {
        assert_eq!(
            default_data_dir("sqlite://drover.db"),
            PathBuf::from("drover-data")
        );
        assert_eq!(
            default_data_dir("sqlite:///var/lib/drover/drover.db?mode=rwc"),
            PathBuf::from("/var/lib/drover/drover-data")
        );
        assert_eq!(
            default_data_dir("postgres://u@h/db"),
            PathBuf::from("drover-data")
        );
    }
}
