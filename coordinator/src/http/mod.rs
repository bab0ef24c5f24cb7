//! The HTTP edge: the dashboard (embedded), liveness and readiness, the JSON admin API
//! (`api`, described by `openapi`) and the Teleport-compatible version server. Errors become
//! responses in `crate::edge`. Everything under `/api/v1` except `openapi.json` needs an
//! admin token (`auth`), and so does `/metrics` (Prometheus, `metrics`); the dashboard page,
//! health and the Teleport routes are public. Every routed request is timed.

mod actions;
mod agents;
mod api;
mod auth;
mod metrics;
mod openapi;
mod query;
pub mod serve;
mod stream;

use std::sync::{Arc, atomic::Ordering};

use axum::{
    Json, Router,
    extract::{Path, State},
    response::Html,
    routing::get,
};
use drover_rules::AdminRole;
use tokio::sync::watch;

use crate::{
    fleet::Fleet,
    grpc::AdminApi,
    listener::{ConnectionStats, Connections},
    live::LiveFeed,
    readiness::Verdict,
};

const DASHBOARD_HTML: &str = include_str!("../../../dashboard/index.html");
const DASHBOARD_JS: &str = include_str!("../../../dashboard/app.js");
const DASHBOARD_CSS: &str = include_str!("../../../dashboard/app.css");
const CHART_JS: &str = include_str!("../../../dashboard/vendor/chart.umd.js");
const CHART_LICENSE: &str = include_str!("../../../dashboard/vendor/chart.js.LICENSE.md");

/// A static asset of the dashboard, embedded in the binary (no files read at run time).
fn asset(content_type: &'static str, body: &'static str) -> axum::response::Response {
    use axum::{http::header, response::IntoResponse};
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `readiness` is the readiness task's verdict; `/readyz` only reads it.
/// `connections` are both listeners' counts, shown in `/api/v1/stats`; `live` is what the
/// dashboard's stream forwards.
pub fn router(
    fleet: Arc<Fleet>,
    readiness: watch::Receiver<Verdict>,
    connections: Arc<Connections>,
    live: LiveFeed,
) -> Router {
    let admin = Arc::new(AdminApi::new(fleet.clone()));
    let router = Router::new()
        .route("/", get(|| async { Html(DASHBOARD_HTML) }))
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", DASHBOARD_JS) }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset("text/css; charset=utf-8", DASHBOARD_CSS) }),
        )
        .route(
            "/assets/chart.umd.js",
            get(|| async { asset("text/javascript; charset=utf-8", CHART_JS) }),
        )
        .route(
            "/assets/chart.js.LICENSE.md",
            get(|| async { asset("text/plain; charset=utf-8", CHART_LICENSE) }),
        )
        // Liveness: the process answers. No I/O, so a slow store never gets us restarted.
        .route("/livez", get(|| async { "ok" }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(move || readyz(readiness.clone())))
        .route("/api/v1/openapi.json", get(openapi::document))
        // Teleport-compatible version server: Teleport's own updaters can poll Drover.
        .route(
            "/v1/webapi/automaticupgrades/channel/{*path}",
            get(teleport_channel),
        )
        .with_state(fleet.clone())
        .merge(
            Router::new()
                .route(
                    "/api/v1/stats",
                    get(move |fleet: State<Arc<Fleet>>| stats(fleet, connections.clone())),
                )
                // Outside /api/v1 and its OpenAPI document: a Prometheus endpoint, not part of
                // the JSON contract droverctl shares. Scrapers send a viewer token.
                .route("/metrics", get(metrics::scrape))
                .with_state(fleet.clone())
                .merge(api::router(admin.clone()))
                .merge(actions::router(admin))
                .merge(stream::router(fleet.clone(), live))
                .route_layer(auth::require(fleet.clone(), AdminRole::Viewer)),
        );
    // Test-only routes exist only in a `testing` build: a normal build answers 404.
    #[cfg(feature = "testing")]
    let router = router.merge(
        Router::new()
            .route(
                "/api/v1/testing/clock/advance",
                axum::routing::post(advance_clock),
            )
            .with_state(fleet.clone())
            .route_layer(auth::require(fleet.clone(), AdminRole::Operator)),
    );
    router
        .route_layer(axum::middleware::from_fn_with_state(
            fleet,
            metrics::time_requests,
        ))
        .layer(axum::middleware::from_fn(security_headers))
}

/// What every answer says about how a browser may use it: only our own scripts, styles and
/// connections (the dashboard has no inline code), never inside a frame (its confirm-and-act
/// buttons must not be clickjacked), no MIME sniffing, no referrer, HTTPS remembered.
const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    // Ignored by browsers over plain HTTP (--insecure), so always sent.
    ("strict-transport-security", "max-age=31536000"),
];

async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, axum::http::HeaderValue::from_static(value));
    }
    response
}

/// 200 "ready", or 503 with `{"ready": false, "failed": [...]}` naming each failed check.
async fn readyz(readiness: watch::Receiver<Verdict>) -> axum::response::Response {
    use axum::{http::StatusCode, response::IntoResponse};
    let verdict = readiness.borrow().clone();
    if verdict.ready {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(verdict)).into_response()
    }
}

#[derive(serde::Serialize)]
struct Stats {
    backend: &'static str,
    connected_updaters: usize,
    heartbeats: u64,
    reports: u64,
    directives_pushed: u64,
    store_write_statements: u64,
    /// Admin requests refused for want of a valid token (not audited one by one).
    unauthenticated_admin_requests: u64,
    /// Open connections on both listeners, the cap, and those refused or closed.
    connections: ConnectionStats,
}

async fn stats(State(fleet): State<Arc<Fleet>>, connections: Arc<Connections>) -> Json<Stats> {
    let counters = &fleet.counters;
    Json(Stats {
        backend: fleet.store().backend_name(),
        connected_updaters: fleet.sessions.len(),
        heartbeats: counters.heartbeats.load(Ordering::Relaxed),
        reports: counters.reports.load(Ordering::Relaxed),
        directives_pushed: counters.directives_pushed.load(Ordering::Relaxed),
        store_write_statements: fleet.store().write_statements(),
        unauthenticated_admin_requests: fleet.admins().unauthenticated_count(),
        connections: connections.stats(),
    })
}

#[cfg(feature = "testing")]
#[derive(serde::Deserialize)]
struct AdvanceQuery {
    ms: i64,
}

/// Moves a manual rollout clock (`testing` builds only; refused on the wall clock).
#[cfg(feature = "testing")]
async fn advance_clock(
    State(fleet): State<Arc<Fleet>>,
    axum::extract::Query(query): axum::extract::Query<AdvanceQuery>,
) -> crate::error::Result<String> {
    let now = fleet.clock.advance(query.ms)?;
    fleet.reconcile_rollouts().await?;
    Ok(now.to_string())
}

/// `GET /v1/webapi/automaticupgrades/channel/<channel>/version` → `v<semver>` or `none`;
/// `…/critical` → `yes` or `no`. Channel names may contain `/`. Unknown channel → 404.
async fn teleport_channel(
    State(fleet): State<Arc<Fleet>>,
    Path(path): Path<String>,
) -> axum::response::Response {
    use axum::{http::StatusCode, response::IntoResponse};
    let Some((channel, what)) = path.rsplit_once('/') else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let view = fleet.view();
    let Some(found) = view.channels.get(channel) else {
        return (
            StatusCode::NOT_FOUND,
            format!("channel '{channel}' does not exist\n"),
        )
            .into_response();
    };
    match what {
        "version" => match &found.version {
            Some(version) => format!("v{version}").into_response(),
            None => "none".into_response(),
        },
        "critical" => (if found.critical { "yes" } else { "no" }).into_response(),
        _ => (StatusCode::NOT_FOUND, "ask for …/version or …/critical\n").into_response(),
    }
}
