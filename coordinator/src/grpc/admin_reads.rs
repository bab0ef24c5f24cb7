//! The admin API's reads, once for both transports: the gRPC `AdminService` answers with
//! these messages, and the HTTP JSON API turns the same messages into `drover-api` types, so
//! droverctl and HTTP clients see one contract.

use drover_proto::v1 as pb;

use super::{AdminApi, convert, rollout_convert};
use crate::{
    domain::{AgentFilter, now_ms, validate},
    error::DroverError,
};

const DEFAULT_PAGE_SIZE: u32 = 100;
const MAX_PAGE_SIZE: u32 = 1000;
const DEFAULT_EVENTS: u32 = 50;
const DEFAULT_AUDIT: u32 = 100;

type Result<T> = std::result::Result<T, DroverError>;

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

fn filter_from_proto(filter: Option<pb::AgentFilter>) -> Result<AgentFilter> {
    let Some(filter) = filter else {
        return Ok(AgentFilter::default());
    };
    let health = match pb::AgentHealth::try_from(filter.health) {
        Ok(pb::AgentHealth::Unspecified) | Err(_) => None,
        Ok(_) => Some(convert::health_from_proto(filter.health)),
    };
    let filter = AgentFilter {
        group: non_empty(filter.group),
        agent_version: non_empty(filter.agent_version),
        health,
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

impl AdminApi {
    pub async fn agents_page(
        &self,
        request: pb::ListAgentsRequest,
    ) -> Result<pb::ListAgentsResponse> {
        let only_out_of_compliance = request.filter.as_ref().is_some_and(|f| f.out_of_compliance);
        let filter = filter_from_proto(request.filter)?;
        let page_size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        if !request.page_token.is_empty() {
            validate::identifier("page_token", &request.page_token)?;
        }
        // The page token is the last id of the previous page (keyset pagination: stable and
        // cheap however deep the page).
        let (agents, total, next) = self
            .fleet
            .agents(
                &filter,
                &request.page_token,
                page_size,
                only_out_of_compliance,
            )
            .await?;
        let now = now_ms();
        Ok(pb::ListAgentsResponse {
            agents: agents
                .into_iter()
                .map(|a| convert::agent_to_proto(a, now))
                .collect(),
            next_page_token: next.unwrap_or_default(),
            total_matching: total,
        })
    }

    pub async fn agent(&self, agent_id: &str) -> Result<pb::Agent> {
        let agent = self.fleet.agent(agent_id).await?;
        Ok(convert::agent_to_proto(agent, now_ms()))
    }

    pub async fn fleet_summary(&self) -> Result<pb::FleetSummary> {
        Ok(convert::summary_to_proto(self.fleet.summary().await?))
    }

    pub async fn channels(&self) -> Result<pb::ListChannelsResponse> {
        let counts = self.fleet.agents_per_channel().await?;
        let channels = self
            .fleet
            .channels()
            .into_iter()
            .map(|c| {
                let count = counts.get(&c.name).copied().unwrap_or_default();
                convert::channel_to_proto(c, count)
            })
            .collect();
        Ok(pb::ListChannelsResponse { channels })
    }

    pub fn control_plane(&self) -> pb::ControlPlaneVersion {
        let view = self.fleet.view();
        pb::ControlPlaneVersion {
            version: view
                .control_plane
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            updated_at: convert::timestamp(view.control_plane_updated_ms),
            effect: None,
        }
    }

    pub async fn schedules(&self) -> Result<pb::ListSchedulesResponse> {
        let now = now_ms();
        let schedules = self
            .fleet
            .schedules()
            .await?
            .into_iter()
            .map(|s| group_schedule_to_proto(&s.group, &s.schedule, s.updated_at_ms, now))
            .collect();
        Ok(pb::ListSchedulesResponse { schedules })
    }

    pub fn rollout_status(&self, channel: &str) -> Result<pb::RolloutStatus> {
        let rollout = self.fleet.rollout_status(channel)?;
        Ok(self.with_stop_acks(rollout_convert::status_to_proto(&rollout), &rollout))
    }

    /// `status` with who has heard `rollout`'s latest stop (from memory: no store read).
    pub(super) fn with_stop_acks(
        &self,
        mut status: pb::RolloutStatus,
        rollout: &crate::fleet::ActiveRollout,
    ) -> pb::RolloutStatus {
        status.stop_acks = self
            .fleet
            .stop_acks(rollout)
            .as_ref()
            .map(super::strata_convert::stop_acks_to_proto);
        status
    }

    /// Active rollouts, or with `all` every rollout ever started, a page at a time.
    pub async fn rollouts(
        &self,
        request: pb::ListRolloutsRequest,
    ) -> Result<pb::ListRolloutsResponse> {
        let (rollouts, next_page_token) = if request.all {
            let page = self
                .fleet
                .rollout_history(&request.page_token, request.limit)
                .await?;
            (page.rollouts, page.next_page_token.unwrap_or_default())
        } else {
            let active = self.fleet.rollouts();
            let rollouts = active
                .iter()
                .map(|r| self.with_stop_acks(rollout_convert::status_to_proto(r), r))
                .collect();
            return Ok(pb::ListRolloutsResponse {
                rollouts,
                next_page_token: String::new(),
            });
        };
        let rollouts = rollouts
            .iter()
            .map(|r| rollout_convert::status_to_proto(r))
            .collect();
        Ok(pb::ListRolloutsResponse {
            rollouts,
            next_page_token,
        })
    }

    /// An active rollout's ETA: when each group would start and finish from now.
    pub fn rollout_eta(&self, rollout_id: &str) -> Result<pb::RolloutPlan> {
        crate::domain::validate::identifier("rollout_id", rollout_id)?;
        let plans = self.fleet.rollout_eta(rollout_id)?;
        Ok(rollout_convert::plan_to_proto(plans))
    }

    pub async fn rollout_detail(&self, rollout_id: &str, limit: u32) -> Result<pb::RolloutDetail> {
        let detail = self.fleet.rollout_detail(rollout_id, limit).await?;
        let rollout = detail.rollout.clone();
        let mut proto = rollout_convert::detail_to_proto(detail);
        if let Some(status) = proto.rollout.take() {
            proto.rollout = Some(self.with_stop_acks(status, &rollout));
        }
        Ok(proto)
    }

    pub async fn agent_history(&self, agent_id: &str, limit: u32) -> Result<pb::AgentHistory> {
        let history = self.fleet.agent_history(agent_id, limit).await?;
        Ok(rollout_convert::agent_history_to_proto(history))
    }

    pub async fn explanation(&self, agent_id: &str) -> Result<pb::AgentExplanation> {
        let explanation = self.fleet.explain(agent_id).await?;
        Ok(rollout_convert::explanation_to_proto(explanation))
    }

    pub async fn events(&self, request: pb::ListEventsRequest) -> Result<pb::ListEventsResponse> {
        let limit = if request.limit == 0 {
            DEFAULT_EVENTS
        } else {
            request.limit
        };
        let events = self.fleet.events(&request.agent_id, limit).await?;
        Ok(pb::ListEventsResponse {
            events: events
                .into_iter()
                .map(rollout_convert::event_to_proto)
                .collect(),
        })
    }
}

impl AdminApi {
    /// The audit log, newest first: at most `limit` (0: 100; at most 1000) records at or
    /// after `since`.
    pub async fn audit(&self, request: pb::ListAuditRequest) -> Result<pb::ListAuditResponse> {
        let since_ms = request
            .since
            .map(|t| t.seconds.saturating_mul(1000))
            .unwrap_or(0);
        let limit = match request.limit {
            0 => DEFAULT_AUDIT,
            n => n.min(MAX_PAGE_SIZE),
        };
        let entries = self
            .fleet
            .store()
            .audit_since(since_ms, limit)
            .await?
            .into_iter()
            .map(|entry| pb::AuditEntry {
                audit_id: entry.audit_id,
                at: convert::timestamp(entry.record.at_ms),
                actor: entry.record.actor,
                role: entry.record.role.as_str().into(),
                action: entry.record.action,
                target: entry.record.target,
                result: entry.record.result.as_str().into(),
                detail: entry.record.detail,
            })
            .collect();
        Ok(pb::ListAuditResponse { entries })
    }
}

pub(super) fn group_schedule_to_proto(
    group: &str,
    schedule: &drover_rules::MaintenanceSchedule,
    updated_at_ms: i64,
    now_ms: i64,
) -> pb::GroupSchedule {
    let window = schedule.next_window(now_ms);
    pb::GroupSchedule {
        group: group.to_string(),
        schedule: Some(convert::schedule_to_proto(schedule, 0)),
        updated_at: convert::timestamp(updated_at_ms),
        next_window_start: window.and_then(|(start, _)| convert::timestamp(start)),
        next_window_end: window.and_then(|(_, end)| convert::timestamp(end)),
        effect: None,
    }
}
