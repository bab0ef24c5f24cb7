//! The JSON admin API: the same reads as gRPC's `AdminService` (`grpc::AdminApi`), answered
//! as `drover-api` types, so `droverctl -o json` and these routes print the same objects.
//! Every route is listed in `super::openapi`.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State},
    routing::get,
};
use drover_api as api;
use drover_proto::v1 as pb;
use serde::Deserialize;
use utoipa::IntoParams;

use super::query::ApiQuery;
use crate::{
    error::{DroverError, Result},
    grpc::AdminApi,
};

type Admin = State<Arc<AdminApi>>;

pub fn router(admin: Arc<AdminApi>) -> Router {
    Router::new()
        .route("/api/v1/fleet/summary", get(fleet_summary))
        .route("/api/v1/agents", get(super::agents::list_agents))
        .route("/api/v1/agents/{agent_id}", get(get_agent))
        .route("/api/v1/agents/{agent_id}/explanation", get(explain_agent))
        .route("/api/v1/channels", get(list_channels))
        .route("/api/v1/control-plane", get(control_plane))
        .route("/api/v1/schedules", get(list_schedules))
        .route("/api/v1/rollouts", get(list_rollouts))
        .route("/api/v1/rollouts/{rollout_id}", get(get_rollout))
        .route("/api/v1/rollouts/{rollout_id}/eta", get(rollout_eta))
        .route("/api/v1/history/rollouts", get(rollout_history))
        .route("/api/v1/agents/{agent_id}/history", get(agent_history))
        .route("/api/v1/events", get(list_events))
        .route("/api/v1/audit", get(list_audit))
        .with_state(admin)
}

/// Agents by version, group and health.
#[utoipa::path(get, path = "/api/v1/fleet/summary", responses(
    (status = 200, body = api::FleetSummary),
    (status = 503, body = api::ErrorBody, description = "the store is unavailable"),
))]
pub async fn fleet_summary(State(admin): Admin) -> Result<Json<api::FleetSummary>> {
    Ok(Json(api::FleetSummary::from(&admin.fleet_summary().await?)))
}

/// Everything known about one agent.
#[utoipa::path(get, path = "/api/v1/agents/{agent_id}", params(("agent_id" = String, Path)),
    responses(
        (status = 200, body = api::Agent),
        (status = 404, body = api::ErrorBody, description = "no such agent; close matches named"),
))]
pub async fn get_agent(
    State(admin): Admin,
    Path(agent_id): Path<String>,
) -> Result<Json<api::Agent>> {
    Ok(Json(api::Agent::from(&admin.agent(&agent_id).await?)))
}

/// Why an agent runs what it runs, or why it has not updated.
#[utoipa::path(get, path = "/api/v1/agents/{agent_id}/explanation",
    params(("agent_id" = String, Path)), responses(
        (status = 200, body = api::AgentExplanation),
        (status = 404, body = api::ErrorBody, description = "no such agent; close matches named"),
))]
pub async fn explain_agent(
    State(admin): Admin,
    Path(agent_id): Path<String>,
) -> Result<Json<api::AgentExplanation>> {
    Ok(Json(api::AgentExplanation::from(
        &admin.explanation(&agent_id).await?,
    )))
}

/// Every channel with its version and agent count.
#[utoipa::path(get, path = "/api/v1/channels", responses((status = 200, body = Vec<api::Channel>)))]
pub async fn list_channels(State(admin): Admin) -> Result<Json<Vec<api::Channel>>> {
    let channels = admin.channels().await?.channels;
    Ok(Json(channels.iter().map(api::Channel::from).collect()))
}

/// The control plane's version.
#[utoipa::path(get, path = "/api/v1/control-plane", responses((status = 200, body = api::ControlPlane)))]
pub async fn control_plane(State(admin): Admin) -> Json<api::ControlPlane> {
    Json(api::ControlPlane::from(&admin.control_plane()))
}

/// Every group's maintenance window.
#[utoipa::path(get, path = "/api/v1/schedules", responses((status = 200, body = Vec<api::GroupSchedule>)))]
pub async fn list_schedules(State(admin): Admin) -> Result<Json<Vec<api::GroupSchedule>>> {
    let schedules = admin.schedules().await?.schedules;
    Ok(Json(
        schedules.iter().map(api::GroupSchedule::from).collect(),
    ))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RolloutQuery {
    /// Only this channel's rollout (the one `droverctl rollout status --channel` shows).
    channel: Option<String>,
}

/// Active rollouts, or one channel's (the one `droverctl rollout status` shows).
#[utoipa::path(get, path = "/api/v1/rollouts", params(RolloutQuery), responses(
    (status = 200, body = Vec<api::Rollout>),
    (status = 404, body = api::ErrorBody, description = "the channel has no rollout"),
))]
pub async fn list_rollouts(
    State(admin): Admin,
    ApiQuery(query): ApiQuery<RolloutQuery>,
) -> Result<Json<Vec<api::Rollout>>> {
    let rollouts = match query.channel {
        Some(channel) => vec![admin.rollout_status(&channel)?],
        None => {
            let active = pb::ListRolloutsRequest::default();
            admin.rollouts(active).await?.rollouts
        }
    };
    Ok(Json(rollouts.iter().map(api::Rollout::from).collect()))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// The previous page's `next_after`.
    after: Option<String>,
    /// At most this many: 1 to 1000, 50 by default.
    limit: Option<u32>,
}

/// Every rollout ever started, newest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/history/rollouts", params(PageQuery), responses(
    (status = 200, body = api::RolloutPage),
    (status = 400, body = api::ErrorBody, description = "a malformed page token"),
))]
pub async fn rollout_history(
    State(admin): Admin,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<api::RolloutPage>> {
    let request = pb::ListRolloutsRequest {
        all: true,
        limit: query.limit.unwrap_or(0),
        page_token: query.after.unwrap_or_default(),
    };
    Ok(Json(api::RolloutPage::from(
        &admin.rollouts(request).await?,
    )))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LimitQuery {
    /// At most this many entries (each list), the newest.
    limit: Option<u32>,
}

/// One rollout, active or finished, with its per-group timelines.
#[utoipa::path(get, path = "/api/v1/rollouts/{rollout_id}",
    params(("rollout_id" = String, Path), LimitQuery), responses(
        (status = 200, body = api::RolloutDetail),
        (status = 404, body = api::ErrorBody, description = "no such rollout"),
))]
pub async fn get_rollout(
    State(admin): Admin,
    Path(rollout_id): Path<String>,
    ApiQuery(query): ApiQuery<LimitQuery>,
) -> Result<Json<api::RolloutDetail>> {
    let detail = admin
        .rollout_detail(&rollout_id, query.limit.unwrap_or(0))
        .await?;
    Ok(Json(api::RolloutDetail::from(&detail)))
}

/// An active rollout's ETA: when each group would start and finish from its current state
/// and today's inventory (the engine run forward; nothing changes).
#[utoipa::path(get, path = "/api/v1/rollouts/{rollout_id}/eta",
    params(("rollout_id" = String, Path)), responses(
        (status = 200, body = api::RolloutPlan),
        (status = 404, body = api::ErrorBody, description = "no such active rollout"),
))]
pub async fn rollout_eta(
    State(admin): Admin,
    Path(rollout_id): Path<String>,
) -> Result<Json<api::RolloutPlan>> {
    let plan = admin.rollout_eta(&rollout_id)?;
    Ok(Json(api::RolloutPlan::from(&plan)))
}

/// One agent's update attempts and the decisions about it, newest first.
#[utoipa::path(get, path = "/api/v1/agents/{agent_id}/history",
    params(("agent_id" = String, Path), LimitQuery), responses(
        (status = 200, body = api::AgentHistory),
        (status = 404, body = api::ErrorBody, description = "no such agent; close matches named"),
))]
pub async fn agent_history(
    State(admin): Admin,
    Path(agent_id): Path<String>,
    ApiQuery(query): ApiQuery<LimitQuery>,
) -> Result<Json<api::AgentHistory>> {
    let history = admin
        .agent_history(&agent_id, query.limit.unwrap_or(0))
        .await?;
    Ok(Json(api::AgentHistory::from(&history)))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Only this agent's events.
    agent: Option<String>,
    /// At most this many, the newest: 1 to 1000, 50 by default.
    limit: Option<u32>,
}

/// The newest events, newest first.
#[utoipa::path(get, path = "/api/v1/events", params(EventQuery), responses((status = 200, body = Vec<api::Event>)))]
pub async fn list_events(
    State(admin): Admin,
    ApiQuery(query): ApiQuery<EventQuery>,
) -> Result<Json<Vec<api::Event>>> {
    let request = pb::ListEventsRequest {
        limit: query.limit.unwrap_or(0),
        agent_id: query.agent.unwrap_or_default(),
    };
    let events = admin.events(request).await?.events;
    Ok(Json(events.iter().map(api::Event::from).collect()))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only records at or after this instant, RFC 3339 (e.g. 2026-11-26T10:00:00Z).
    since: Option<String>,
    /// At most this many, the newest: 1 to 1000, 100 by default.
    limit: Option<u32>,
}

/// The audit log, newest first: every change an admin made, every refused request and every
/// dry run.
#[utoipa::path(get, path = "/api/v1/audit", params(AuditQuery), responses(
    (status = 200, body = Vec<api::AuditEntry>),
    (status = 400, body = api::ErrorBody, description = "`since` is not an RFC 3339 time"),
))]
pub async fn list_audit(
    State(admin): Admin,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<Vec<api::AuditEntry>>> {
    let since = match query.since.as_deref() {
        None | Some("") => None,
        Some(text) => Some(drover_rules::time::parse_rfc3339(text).map_err(DroverError::invalid)?),
    };
    let request = pb::ListAuditRequest {
        since: since.map(|ms: i64| prost_types::Timestamp {
            seconds: ms.div_euclid(1000),
            nanos: 0,
        }),
        limit: query.limit.unwrap_or(0),
    };
    let entries = admin.audit(request).await?.entries;
    Ok(Json(entries.iter().map(api::AuditEntry::from).collect()))
}
