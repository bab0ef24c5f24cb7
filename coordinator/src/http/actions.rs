//! The dashboard's actions as JSON POST routes: each calls the very `AdminService` method
//! droverctl calls (with the caller's identity in the request, as the gRPC interceptor
//! leaves it), so the role check, the audit record of a refusal or dry run, and the answer
//! are the gRPC call's; the answer is the `drover-api` type `droverctl -o json` prints.

use std::sync::Arc;

use axum::{
    Extension, Json, Router,
    extract::{FromRequest, Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use drover_api as api;
use drover_proto::v1::{self as pb, admin_service_server::AdminService};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::{error::DroverError, fleet::Identity, grpc::AdminApi};

type Admin = State<Arc<AdminApi>>;
type Caller = Extension<Arc<Identity>>;

pub fn router(admin: Arc<AdminApi>) -> Router {
    Router::new()
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/codes", get(codes))
        .route("/api/v1/rollouts/pause", post(pause))
        .route("/api/v1/rollouts/resume", post(resume))
        .route("/api/v1/rollouts/rollback", post(rollback))
        .route("/api/v1/rollouts/start-group", post(start_group))
        .route("/api/v1/rollouts/mark-done", post(mark_done))
        .route("/api/v1/channels/version", post(set_channel_version))
        .with_state(admin)
}

/// `Json`, but a malformed body is an `{"error": ...}` 400 like every other refusal.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = DroverError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(request, state)
            .await
            .map(|Json(value)| ApiJson(value))
            .map_err(|rejection| DroverError::invalid(rejection.body_text()))
    }
}

/// The gRPC method's request, as its interceptor would have left it.
fn as_grpc<T>(identity: Arc<Identity>, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.extensions_mut().insert(identity);
    request
}

/// A gRPC refusal as the HTTP API answers every refusal: its status and `{"error": ...}`.
fn refusal(status: &tonic::Status) -> Response {
    use tonic::Code;
    let http = match status.code() {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::FailedPrecondition | Code::Aborted | Code::AlreadyExists => StatusCode::CONFLICT,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unavailable | Code::ResourceExhausted => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut response = (
        http,
        Json(api::ErrorBody {
            error: status.message().to_string(),
        }),
    )
        .into_response();
    let pushback = status
        .metadata()
        .get(drover_rules::retry::PUSHBACK_METADATA)
        .and_then(|value| value.to_str().ok())
        .and_then(drover_rules::retry::parse_pushback);
    if let Some(after) = pushback {
        let secs = axum::http::HeaderValue::from(after.as_secs().max(1));
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, secs);
    }
    response
}

/// The reply as its `drover-api` type `A`, or the refusal.
fn answer<M, A>(outcome: Result<tonic::Response<M>, tonic::Status>) -> Response
where
    A: for<'a> From<&'a M> + serde::Serialize,
{
    match outcome {
        Ok(reply) => Json(A::from(reply.get_ref())).into_response(),
        Err(status) => refusal(&status),
    }
}

/// The caller's name and role, so the dashboard shows only the actions it may take.
#[utoipa::path(get, path = "/api/v1/whoami", responses((status = 200, body = api::WhoAmI)))]
pub async fn whoami(Extension(identity): Caller) -> Json<api::WhoAmI> {
    Json(api::WhoAmI {
        name: identity.name.clone(),
        role: identity.role.as_str().to_string(),
    })
}

/// Every code with its explanation: reasons, conditions, group phases, rollout statuses.
#[utoipa::path(get, path = "/api/v1/codes", responses((status = 200, body = api::Codes)))]
pub async fn codes() -> Json<api::Codes> {
    use drover_rules::{
        AckState, AgentCondition, GroupPhase, HaltScope, HealthSignal, ReasonCode, RolloutStatus,
        VerdictOutcome,
    };
    fn words<C: Copy + std::fmt::Display>(
        all: &[C],
        explain: fn(C) -> &'static str,
    ) -> std::collections::BTreeMap<String, String> {
        all.iter()
            .map(|&c| (c.to_string(), explain(c).to_string()))
            .collect()
    }
    Json(api::Codes {
        reasons: words(ReasonCode::ALL, ReasonCode::explain),
        conditions: words(AgentCondition::ALL, AgentCondition::explain),
        group_phases: words(GroupPhase::ALL, GroupPhase::explain),
        rollout_statuses: words(RolloutStatus::ALL, RolloutStatus::explain),
        verdict_outcomes: words(VerdictOutcome::ALL, VerdictOutcome::explain),
        health_signals: words(HealthSignal::ALL, HealthSignal::explain),
        halt_scopes: words(HaltScope::ALL, HaltScope::explain),
        ack_states: words(AckState::ALL, AckState::explain),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SteerBody {
    /// The channel whose rollout to steer.
    channel: String,
    /// Check and say what would change (the effect); change nothing.
    #[serde(default)]
    dry_run: bool,
}

/// Stop moving anyone until resumed (operator). Same as `droverctl rollout pause`.
#[utoipa::path(post, path = "/api/v1/rollouts/pause", request_body = SteerBody, responses(
    (status = 200, body = api::Rollout),
    (status = 400, body = api::ErrorBody, description = "a malformed body"),
    (status = 403, body = api::ErrorBody, description = "the caller's role is below operator; audited"),
    (status = 404, body = api::ErrorBody, description = "the channel has no active rollout"),
))]
pub async fn pause(
    State(admin): Admin,
    Extension(who): Caller,
    ApiJson(body): ApiJson<SteerBody>,
) -> Response {
    let request = pb::SteerRolloutRequest {
        channel: body.channel,
        dry_run: body.dry_run,
    };
    answer::<_, api::Rollout>(admin.pause_rollout(as_grpc(who, request)).await)
}

/// Let a paused rollout move agents again (operator). Same as `droverctl rollout resume`.
#[utoipa::path(post, path = "/api/v1/rollouts/resume", request_body = SteerBody, responses(
    (status = 200, body = api::Rollout),
    (status = 400, body = api::ErrorBody, description = "a malformed body"),
    (status = 403, body = api::ErrorBody, description = "the caller's role is below operator; audited"),
    (status = 404, body = api::ErrorBody, description = "the channel has no active rollout"),
))]
pub async fn resume(
    State(admin): Admin,
    Extension(who): Caller,
    ApiJson(body): ApiJson<SteerBody>,
) -> Response {
    let request = pb::SteerRolloutRequest {
        channel: body.channel,
        dry_run: body.dry_run,
    };
    answer::<_, api::Rollout>(admin.resume_rollout(as_grpc(who, request)).await)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    channel: String,
    /// Only this group; without it, every group.
    #[serde(default)]
    group: Option<String>,
    /// Wait for each agent's maintenance window (by default the rollback goes out at once).
    #[serde(default)]
    respect_windows: bool,
    #[serde(default)]
    dry_run: bool,
}

/// Send a group, or every group, back to the start version (operator). Same as
/// `droverctl rollout rollback`.
#[utoipa::path(post, path = "/api/v1/rollouts/rollback", request_body = RollbackBody, responses(
    (status = 200, body = api::Rollout),
    (status = 400, body = api::ErrorBody, description = "a malformed body"),
    (status = 403, body = api::ErrorBody, description = "the caller's role is below operator; audited"),
    (status = 404, body = api::ErrorBody, description = "the channel has no active rollout"),
))]
pub async fn rollback(
    State(admin): Admin,
    Extension(who): Caller,
    ApiJson(body): ApiJson<RollbackBody>,
) -> Response {
    let request = pb::RollbackRequest {
        channel: body.channel,
        group: body.group.unwrap_or_default(),
        respect_windows: body.respect_windows,
        dry_run: body.dry_run,
    };
    answer::<_, api::Rollout>(admin.rollback(as_grpc(who, request)).await)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartGroupBody {
    channel: String,
    group: String,
    /// Move the whole group at once instead of its canaries first.
    #[serde(default)]
    skip_canaries: bool,
    #[serde(default)]
    dry_run: bool,
}

/// Start a group now, whatever its order and window say (operator). Same as
/// `droverctl rollout start-group`.
#[utoipa::path(post, path = "/api/v1/rollouts/start-group", request_body = StartGroupBody, responses(
    (status = 200, body = api::Rollout),
    (status = 400, body = api::ErrorBody, description = "a malformed body"),
    (status = 404, body = api::ErrorBody, description = "no active rollout on the channel, or no such group in it"),
    (status = 403, body = api::ErrorBody, description = "the caller's role is below operator; audited"),
))]
pub async fn start_group(
    State(admin): Admin,
    Extension(who): Caller,
    ApiJson(body): ApiJson<StartGroupBody>,
) -> Response {
    let request = pb::StartGroupRequest {
        channel: body.channel,
        group: body.group,
        skip_canaries: body.skip_canaries,
        dry_run: body.dry_run,
    };
    answer::<_, api::Rollout>(admin.start_group(as_grpc(who, request)).await)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkDoneBody {
    channel: String,
    group: String,
    /// Start the next group at once, even outside its window.
    #[serde(default)]
    now: bool,
    #[serde(default)]
    dry_run: bool,
}

/// Count a group as done (operator). Same as `droverctl rollout mark-done`.
#[utoipa::path(post, path = "/api/v1/rollouts/mark-done", request_body = MarkDoneBody, responses(
    (status = 200, body = api::Rollout),
    (status = 400, body = api::ErrorBody, description = "a malformed body"),
    (status = 404, body = api::ErrorBody, description = "no active rollout on the channel, or no such group in it"),
    (status = 403, body = api::ErrorBody, description = "the caller's role is below operator; audited"),
))]
pub async fn mark_done(
    State(admin): Admin,
    Extension(who): Caller,
    ApiJson(body): ApiJson<MarkDoneBody>,
) -> Response {
    let request = pb::MarkGroupDoneRequest {
        channel: body.channel,
        group: body.group,
        now: body.now,
        dry_run: body.dry_run,
    };
    answer::<_, api::Rollout>(admin.mark_group_done(as_grpc(who, request)).await)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelVersionBody {
    /// The channel (names may contain `/`, so it is not in the path).
    name: String,
    version: String,
    #[serde(default)]
    dry_run: bool,
}

/// Set a channel's version (operator). Same as `droverctl channels set NAME VERSION`.
#[utoipa::path(post, path = "/api/v1/channels/version", request_body = ChannelVersionBody, responses(
    (status = 200, body = api::Channel),
    (status = 400, body = api::ErrorBody, description = "a malformed body or version"),
    (status = 409, body = api::ErrorBody, description = "the version breaks the control-plane constraints"),
    (status = 403, body = api::ErrorBody, description = "the caller's role is below operator; audited"),
))]
pub async fn set_channel_version(
    State(admin): Admin,
    Extension(who): Caller,
    ApiJson(body): ApiJson<ChannelVersionBody>,
) -> Response {
    let request = pb::SetChannelVersionRequest {
        name: body.name,
        version: body.version,
        dry_run: body.dry_run,
    };
    answer::<_, api::Channel>(admin.set_channel_version(as_grpc(who, request)).await)
}
