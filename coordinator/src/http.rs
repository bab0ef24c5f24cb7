//! The HTTP edge: the dashboard (embedded), liveness and readiness, and a small JSON API.
//! Errors become responses in `crate::edge`.

use std::sync::{Arc, atomic::Ordering};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    response::Html,
    routing::get,
};
use serde::Deserialize;
use tokio::sync::watch;

use crate::{
    domain::{AgentFilter, Health},
    error::{DroverError, Result},
    fleet::{AgentView, Fleet, FleetSummary},
    grpc::{json, rollout_convert},
    readiness::Verdict,
};

const DASHBOARD_HTML: &str = include_str!("../../dashboard/index.html");

/// `readiness` is the readiness task's verdict; `/readyz` only reads it.
pub fn router(fleet: Arc<Fleet>, readiness: watch::Receiver<Verdict>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(DASHBOARD_HTML) }))
        // Liveness: the process answers. No I/O, so a slow store never gets us restarted.
        .route("/livez", get(|| async { "ok" }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(move || readyz(readiness.clone())))
        .route("/api/v1/fleet/summary", get(summary))
        .route("/api/v1/agents", get(list_agents))
        .route("/api/v1/agents/{agent_id}", get(get_agent))
        .route("/api/v1/agents/{agent_id}/history", get(agent_history))
        .route("/api/v1/rollouts", get(list_rollouts))
        .route("/api/v1/rollouts/{rollout_id}", get(get_rollout))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/events", get(events))
        .route(
            "/api/v1/testing/clock/advance",
            axum::routing::post(advance_clock),
        )
        // Teleport-compatible version server: Teleport's own updaters can poll Drover.
        .route(
            "/v1/webapi/automaticupgrades/channel/{*path}",
            get(teleport_channel),
        )
        .with_state(fleet)
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

async fn summary(State(fleet): State<Arc<Fleet>>) -> Result<Json<FleetSummary>> {
    Ok(Json(fleet.summary().await?))
}

#[derive(Deserialize)]
struct ListQuery {
    group: Option<String>,
    version: Option<String>,
    health: Option<String>,
    channel: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
    out_of_compliance: Option<bool>,
}

#[derive(serde::Serialize)]
struct AgentPage {
    agents: Vec<AgentView>,
    total_matching: u64,
}

async fn list_agents(
    State(fleet): State<Arc<Fleet>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<AgentPage>> {
    let health = match query.health.as_deref() {
        None | Some("") => None,
        Some(text) => Some(Health::parse(text).ok_or_else(|| {
            DroverError::invalid(format!(
                "health '{text}' is not one of healthy, unhealthy, unknown"
            ))
        })?),
    };
    let filter = AgentFilter {
        group: query.group,
        agent_version: query.version,
        health,
        channel: query.channel,
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let (agents, total_matching, _) = fleet
        .agents(
            &filter,
            query.after.as_deref().unwrap_or(""),
            limit,
            query.out_of_compliance.unwrap_or(false),
        )
        .await?;
    Ok(Json(AgentPage {
        agents,
        total_matching,
    }))
}

async fn get_agent(
    State(fleet): State<Arc<Fleet>>,
    Path(agent_id): Path<String>,
) -> Result<Json<AgentView>> {
    Ok(Json(fleet.agent(&agent_id).await?))
}

#[derive(Deserialize)]
struct RolloutsQuery {
    all: Option<bool>,
    limit: Option<u32>,
    after: Option<String>,
}

/// Active rollouts (an array), or with `all=true` one page of every rollout ever started,
/// newest first: the JSON of `droverctl rollout list [--all] -o json`.
async fn list_rollouts(
    State(fleet): State<Arc<Fleet>>,
    Query(query): Query<RolloutsQuery>,
) -> Result<Json<serde_json::Value>> {
    if !query.all.unwrap_or(false) {
        let active: Vec<_> = fleet
            .rollouts()
            .iter()
            .map(|r| json::status_json(&rollout_convert::status_to_proto(r)))
            .collect();
        return Ok(Json(serde_json::Value::Array(active)));
    }
    let page = fleet
        .rollout_history(
            query.after.as_deref().unwrap_or(""),
            query.limit.unwrap_or(0),
        )
        .await?;
    let page = drover_proto::v1::ListRolloutsResponse {
        rollouts: page
            .rollouts
            .iter()
            .map(|r| rollout_convert::status_to_proto(r))
            .collect(),
        next_page_token: page.next_page_token.unwrap_or_default(),
    };
    Ok(Json(json::rollout_page_json(&page)))
}

#[derive(Deserialize)]
struct LimitQuery {
    limit: Option<u32>,
}

/// One rollout with its timelines: the JSON of `droverctl rollout show ID -o json`.
async fn get_rollout(
    State(fleet): State<Arc<Fleet>>,
    Path(rollout_id): Path<String>,
    Query(query): Query<LimitQuery>,
) -> Result<Json<serde_json::Value>> {
    let detail = fleet
        .rollout_detail(&rollout_id, query.limit.unwrap_or(0))
        .await?;
    Ok(Json(json::rollout_detail_json(
        &rollout_convert::detail_to_proto(detail),
    )))
}

/// The JSON of `droverctl agents history ID -o json`.
async fn agent_history(
    State(fleet): State<Arc<Fleet>>,
    Path(agent_id): Path<String>,
    Query(query): Query<LimitQuery>,
) -> Result<Json<serde_json::Value>> {
    let history = fleet
        .agent_history(&agent_id, query.limit.unwrap_or(0))
        .await?;
    Ok(Json(json::agent_history_json(
        &rollout_convert::agent_history_to_proto(history),
    )))
}

#[derive(serde::Serialize)]
struct Stats {
    backend: &'static str,
    connected_updaters: usize,
    heartbeats: u64,
    reports: u64,
    directives_pushed: u64,
    store_write_statements: u64,
}

async fn stats(State(fleet): State<Arc<Fleet>>) -> Json<Stats> {
    let counters = &fleet.counters;
    Json(Stats {
        backend: fleet.store().backend_name(),
        connected_updaters: fleet.sessions.len(),
        heartbeats: counters.heartbeats.load(Ordering::Relaxed),
        reports: counters.reports.load(Ordering::Relaxed),
        directives_pushed: counters.directives_pushed.load(Ordering::Relaxed),
        store_write_statements: fleet.store().write_statements(),
    })
}

#[derive(Deserialize)]
struct EventsQuery {
    agent: Option<String>,
    limit: Option<u32>,
}

async fn events(
    State(fleet): State<Arc<Fleet>>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<Vec<crate::store::Event>>> {
    Ok(Json(
        fleet
            .events(
                query.agent.as_deref().unwrap_or(""),
                query.limit.unwrap_or(50),
            )
            .await?,
    ))
}

#[derive(Deserialize)]
struct AdvanceQuery {
    ms: i64,
}

/// Moves a manual rollout clock (tests and demos only; refused on the wall clock).
async fn advance_clock(
    State(fleet): State<Arc<Fleet>>,
    Query(query): Query<AdvanceQuery>,
) -> Result<String> {
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
