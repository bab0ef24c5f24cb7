//! `GET /api/v1/openapi.json`: the JSON API described from the very types and handlers that
//! serve it (utoipa), so the document cannot drift from the code; a black-box test checks
//! real responses against it.

use axum::Json;
use utoipa::{Modify, OpenApi};

use super::{actions, agents, api, stream};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Drover admin API",
        description = "JSON view of a Drover coordinator, and the dashboard's actions. droverctl -o json \
            prints the same objects. Every route needs an admin token (`authorization: Bearer TOKEN`; \
            any role reads; each POST needs the role of its droverctl verb, and a refusal is audited). \
            `GET /api/v1/stream` (server-sent events `summary`, `rollouts`, `event`) is not JSON and not listed."
    ),
    modifiers(&BearerAuth),
    paths(
        api::fleet_summary,
        agents::list_agents,
        api::get_agent,
        api::explain_agent,
        api::list_channels,
        api::control_plane,
        api::list_schedules,
        api::list_rollouts,
        api::get_rollout,
        api::rollout_eta,
        api::rollout_history,
        api::agent_history,
        api::list_events,
        api::list_audit,
        actions::whoami,
        actions::codes,
        stream::timeline,
        actions::pause,
        actions::resume,
        actions::rollback,
        actions::start_group,
        actions::mark_done,
        actions::set_channel_version,
    )
)]
struct ApiDoc;

/// The bearer scheme, required by every route, and the 401 each route may answer.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{
            Ref, RefOr, ResponseBuilder,
            content::ContentBuilder,
            security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
        };
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "An admin token: the profile's credentials.token, or one from \
                 `droverctl admins create`",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
        openapi.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
        let unauthenticated = ResponseBuilder::new()
            .description("no admin token, or an unknown or revoked one")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for operation in [item.get.as_mut(), item.post.as_mut()]
                .into_iter()
                .flatten()
            {
                operation
                    .responses
                    .responses
                    .insert("401".into(), RefOr::T(unauthenticated.clone()));
            }
        }
    }
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
