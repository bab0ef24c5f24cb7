//! `GET /api/v1/openapi.json`: the JSON API described from the very types and handlers that
//! serve it (utoipa), so the document cannot drift from the code; a black-box test checks
//! real responses against it.

use axum::Json;
use utoipa::OpenApi;

use super::api;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Drover admin API",
        description = "Read-only JSON view of a Drover coordinator. droverctl -o json prints the same objects."
    ),
    paths(
        api::fleet_summary,
        api::list_agents,
        api::get_agent,
        api::explain_agent,
        api::list_channels,
        api::control_plane,
        api::list_schedules,
        api::list_rollouts,
        api::get_rollout,
        api::rollout_history,
        api::agent_history,
        api::list_events,
        api::list_audit,
    )
)]
struct ApiDoc;

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
