//! `GET /api/v1/agents`: the list droverctl pages with `after`, and the dashboard's table
//! (`q`, `reason`, `sort`, `order`, `offset`), which pages by offset over one store query.

use axum::{Json, extract::State};
use drover_api as api;
use drover_proto::v1 as pb;
use drover_rules::{AgentCondition, ReasonCode};
use serde::Deserialize;
use utoipa::IntoParams;

use super::query::ApiQuery;
use crate::{
    domain::{AgentFilter, now_ms, validate},
    error::{DroverError, Result},
    fleet::DecidedFilter,
    grpc::{AdminApi, convert},
    store::{AgentSearch, AgentSort},
};

type Admin = State<std::sync::Arc<AdminApi>>;

const MAX_PAGE: u32 = 1000;
const DEFAULT_PAGE: u32 = 100;
/// Longest search text: an agent id or hostname is never longer.
const MAX_SEARCH_LEN: usize = 128;
/// Deepest offset: ten pages of the largest size past a 100k fleet is never useful.
const MAX_OFFSET: u64 = 1_000_000;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AgentQuery {
    /// Only agents in this group.
    group: Option<String>,
    /// Only agents running exactly this version.
    version: Option<String>,
    /// Only agents of this health: healthy, unhealthy or unknown.
    health: Option<String>,
    /// Only agents on this channel.
    channel: Option<String>,
    /// Only agents whose version breaks the control-plane constraints.
    out_of_compliance: Option<bool>,
    /// The previous page's `next_after`.
    after: Option<String>,
    /// Agents per page: 1 to 1000, 100 by default.
    limit: Option<u32>,
    /// Agents whose id or hostname contains this text (any case; at most 128 characters).
    q: Option<String>,
    /// Only agents whose current decision has this reason code (see `ReasonCode`).
    reason: Option<String>,
    /// Only agents in this condition: failing, reverted, behind_target or stuck (see
    /// `AgentCondition`).
    condition: Option<String>,
    /// Order by agent_id (default), version, last_seen or group.
    sort: Option<String>,
    /// asc (default) or desc.
    order: Option<String>,
    /// With q, reason or sort: skip this many (the previous page's `next_offset`).
    offset: Option<u64>,
}

fn health_filter(text: Option<&str>) -> Result<pb::AgentHealth> {
    Ok(match text {
        None | Some("") => pb::AgentHealth::Unspecified,
        Some("healthy") => pb::AgentHealth::Healthy,
        Some("unhealthy") => pb::AgentHealth::Unhealthy,
        Some("unknown") => pb::AgentHealth::Unknown,
        Some(other) => {
            return Err(DroverError::invalid(format!(
                "health '{other}' is not one of healthy, unhealthy, unknown"
            )));
        }
    })
}

/// One page of agents, filtered: keyset paging with `after`, or with `q`, `reason`, `sort`
/// or `offset` the dashboard's search, paged by `offset`.
#[utoipa::path(get, path = "/api/v1/agents", params(AgentQuery), responses(
    (status = 200, body = api::AgentPage),
    (status = 400, body = api::ErrorBody, description = "a filter is malformed or unknown"),
))]
pub async fn list_agents(
    State(admin): Admin,
    ApiQuery(query): ApiQuery<AgentQuery>,
) -> Result<Json<api::AgentPage>> {
    let health = health_filter(query.health.as_deref())?;
    let searching = query.q.is_some()
        || query.reason.is_some()
        || query.condition.is_some()
        || query.sort.is_some()
        || query.order.is_some()
        || query.offset.is_some();
    let filter = pb::AgentFilter {
        group: query.group.unwrap_or_default(),
        agent_version: query.version.unwrap_or_default(),
        health: health as i32,
        channel: query.channel.unwrap_or_default(),
        out_of_compliance: query.out_of_compliance.unwrap_or(false),
    };
    if !searching {
        let request = pb::ListAgentsRequest {
            filter: Some(filter),
            // 0 asks for the default page size, as over gRPC.
            page_size: query.limit.unwrap_or(0).min(MAX_PAGE),
            page_token: query.after.unwrap_or_default(),
        };
        return Ok(Json(api::AgentPage::from(
            &admin.agents_page(request).await?,
        )));
    }
    if query.after.is_some() || filter.out_of_compliance {
        return Err(DroverError::invalid(
            "after and out_of_compliance page by id; use offset with q, reason, condition or sort",
        ));
    }
    let text = query.q.unwrap_or_default();
    if text.chars().count() > MAX_SEARCH_LEN {
        return Err(DroverError::invalid(format!(
            "q is at most {MAX_SEARCH_LEN} characters; search for part of the id or hostname"
        )));
    }
    let reason = optional(query.reason.as_deref(), ReasonCode::parse, |code| {
        format!("reason '{code}' is not a reason code; `droverctl agents why AGENT` shows them")
    })?;
    let condition = optional(query.condition.as_deref(), AgentCondition::parse, |text| {
        let known: Vec<_> = AgentCondition::ALL.iter().map(|c| c.as_str()).collect();
        format!("condition '{text}' is not one of {}", known.join(", "))
    })?;
    let sort = optional(query.sort.as_deref(), AgentSort::parse, |text| {
        format!("sort '{text}' is not one of agent_id, version, last_seen, group")
    })?
    .unwrap_or_default();
    let descending = match query.order.as_deref() {
        None | Some("") | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(DroverError::invalid(format!(
                "order '{other}' is not asc or desc"
            )));
        }
    };
    let offset = query.offset.unwrap_or(0);
    if offset > MAX_OFFSET {
        return Err(DroverError::invalid(format!(
            "offset is at most {MAX_OFFSET}; narrow the search instead"
        )));
    }
    let limit = match query.limit.unwrap_or(0) {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    let search = AgentSearch {
        filter: domain_filter(filter, health)?,
        text,
        sort,
        descending,
    };
    let (views, total) = admin
        .fleet()
        .search_agents(&search, DecidedFilter { reason, condition }, offset, limit)
        .await?;
    let now = now_ms();
    let next = offset + views.len() as u64;
    Ok(Json(api::AgentPage {
        agents: views
            .into_iter()
            .map(|view| api::Agent::from(&convert::agent_to_proto(view, now)))
            .collect(),
        total_matching: total,
        next_after: None,
        next_offset: (next < total).then_some(next),
    }))
}

/// A query parameter parsed by `parse`; absent or empty is `None`, anything `parse` does
/// not know is a 400 saying `unknown(text)`.
fn optional<T>(
    text: Option<&str>,
    parse: impl Fn(&str) -> Option<T>,
    unknown: impl Fn(&str) -> String,
) -> Result<Option<T>> {
    match text {
        None | Some("") => Ok(None),
        Some(text) => parse(text)
            .map(Some)
            .ok_or_else(|| DroverError::invalid(unknown(text))),
    }
}

fn domain_filter(filter: pb::AgentFilter, health: pb::AgentHealth) -> Result<AgentFilter> {
    let non_empty = |text: String| (!text.is_empty()).then_some(text);
    let filter = AgentFilter {
        group: non_empty(filter.group),
        agent_version: non_empty(filter.agent_version),
        health: (health != pb::AgentHealth::Unspecified)
            .then(|| convert::health_from_proto(health as i32)),
        channel: non_empty(filter.channel),
    };
    for (field, value) in [("group", &filter.group), ("channel", &filter.channel)] {
        if let Some(value) = value {
            validate::name(field, value)?;
        }
    }
    if let Some(version) = &filter.agent_version {
        validate::bounded_text("agent_version", version, validate::MAX_VERSION_LEN)?;
    }
    Ok(filter)
}
