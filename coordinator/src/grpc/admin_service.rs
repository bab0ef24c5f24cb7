//! `drover.v1.AdminService`: what droverctl talks to.

use std::sync::Arc;

use drover_proto::v1::{self as pb, admin_service_server::AdminService};
use tonic::{Request, Response, Status};

use super::{convert, rollout_convert};
use crate::{
    domain::{AgentFilter, now_ms, validate},
    error::DroverError,
    fleet::{Effect, Fleet, RolloutVerb},
};

const DEFAULT_PAGE_SIZE: u32 = 100;
/// Who admin actions are logged as; admin tokens with names are open work.
const ACTOR: &str = "admin";
const MAX_PAGE_SIZE: u32 = 1000;

pub struct AdminApi {
    fleet: Arc<Fleet>,
}

impl AdminApi {
    pub fn new(fleet: Arc<Fleet>) -> Self {
        Self { fleet }
    }
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

fn filter_from_proto(filter: Option<pb::AgentFilter>) -> Result<AgentFilter, DroverError> {
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

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let request = request.into_inner();
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
        let next_page_token = next.unwrap_or_default();
        Ok(Response::new(pb::ListAgentsResponse {
            agents: agents
                .into_iter()
                .map(|a| convert::agent_to_proto(a, now_ms()))
                .collect(),
            next_page_token,
            total_matching: total,
        }))
    }

    async fn get_agent(
        &self,
        request: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let agent = self.fleet.agent(&request.into_inner().agent_id).await?;
        Ok(Response::new(convert::agent_to_proto(agent, now_ms())))
    }

    async fn get_fleet_summary(
        &self,
        _request: Request<pb::GetFleetSummaryRequest>,
    ) -> Result<Response<pb::FleetSummary>, Status> {
        let summary = self.fleet.summary().await?;
        Ok(Response::new(convert::summary_to_proto(summary)))
    }

    async fn list_channels(
        &self,
        _request: Request<pb::ListChannelsRequest>,
    ) -> Result<Response<pb::ListChannelsResponse>, Status> {
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
        Ok(Response::new(pb::ListChannelsResponse { channels }))
    }

    async fn set_channel_version(
        &self,
        request: Request<pb::SetChannelVersionRequest>,
    ) -> Result<Response<pb::Channel>, Status> {
        let request = request.into_inner();
        let (channel, effect) = self
            .fleet
            .set_channel_version(&request.name, &request.version, ACTOR, request.dry_run)
            .await?;
        if !effect.dry_run {
            tracing::info!(channel = %channel.name, version = ?channel.version.as_ref().map(ToString::to_string), "channel version set");
        }
        let agents = self.fleet.channel_agent_count(&channel.name);
        Ok(Response::new(pb::Channel {
            effect: Some(effect_to_proto(&effect)),
            ..convert::channel_to_proto(channel, agents)
        }))
    }

    async fn set_channel_critical(
        &self,
        request: Request<pb::SetChannelCriticalRequest>,
    ) -> Result<Response<pb::Channel>, Status> {
        let request = request.into_inner();
        let (channel, effect) = self
            .fleet
            .set_channel_critical(&request.name, request.critical, ACTOR, request.dry_run)
            .await?;
        if !effect.dry_run {
            tracing::info!(channel = %channel.name, critical = channel.critical, "channel critical flag set");
        }
        let agents = self.fleet.channel_agent_count(&channel.name);
        Ok(Response::new(pb::Channel {
            effect: Some(effect_to_proto(&effect)),
            ..convert::channel_to_proto(channel, agents)
        }))
    }

    async fn get_control_plane_version(
        &self,
        _request: Request<pb::GetControlPlaneVersionRequest>,
    ) -> Result<Response<pb::ControlPlaneVersion>, Status> {
        let view = self.fleet.view();
        Ok(Response::new(pb::ControlPlaneVersion {
            version: view
                .control_plane
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            updated_at: convert::timestamp(view.control_plane_updated_ms),
            effect: None,
        }))
    }

    async fn set_control_plane_version(
        &self,
        request: Request<pb::SetControlPlaneVersionRequest>,
    ) -> Result<Response<pb::ControlPlaneVersion>, Status> {
        let request = request.into_inner();
        let (version, at, effect) = self
            .fleet
            .set_control_plane_version(&request.version, ACTOR, request.dry_run)
            .await?;
        if !effect.dry_run {
            tracing::info!(%version, "control-plane version set");
        }
        Ok(Response::new(pb::ControlPlaneVersion {
            version: version.to_string(),
            updated_at: convert::timestamp(at),
            effect: Some(effect_to_proto(&effect)),
        }))
    }

    async fn list_schedules(
        &self,
        _request: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<pb::ListSchedulesResponse>, Status> {
        let now = now_ms();
        let schedules = self
            .fleet
            .schedules()
            .await?
            .into_iter()
            .map(|s| group_schedule_to_proto(&s.group, &s.schedule, s.updated_at_ms, now))
            .collect();
        Ok(Response::new(pb::ListSchedulesResponse { schedules }))
    }

    async fn set_schedule(
        &self,
        request: Request<pb::SetScheduleRequest>,
    ) -> Result<Response<pb::GroupSchedule>, Status> {
        let request = request.into_inner();
        let schedule = convert::schedule_from_request(&request)?;
        let effect = self
            .fleet
            .set_schedule(&request.group, schedule, ACTOR, request.dry_run)
            .await?;
        if !effect.dry_run {
            tracing::info!(group = %request.group, %schedule, "maintenance schedule set");
        }
        let now = now_ms();
        Ok(Response::new(pb::GroupSchedule {
            effect: Some(effect_to_proto(&effect)),
            ..group_schedule_to_proto(&request.group, &schedule, now, now)
        }))
    }

    async fn clear_schedule(
        &self,
        request: Request<pb::ClearScheduleRequest>,
    ) -> Result<Response<pb::ClearScheduleResponse>, Status> {
        let request = request.into_inner();
        let group = request.group;
        let effect = self
            .fleet
            .clear_schedule(&group, ACTOR, request.dry_run)
            .await?;
        if !effect.dry_run {
            tracing::info!(%group, "maintenance schedule cleared");
        }
        Ok(Response::new(pb::ClearScheduleResponse {
            effect: Some(effect_to_proto(&effect)),
        }))
    }

    async fn create_rollout(
        &self,
        request: Request<pb::CreateRolloutRequest>,
    ) -> Result<Response<pb::RolloutStatus>, Status> {
        let request = request.into_inner();
        let dry_run = request.dry_run;
        let spec = rollout_convert::spec_from_proto(request)?;
        let (rollout, effect) = self.fleet.create_rollout(spec, ACTOR, dry_run).await?;
        if !dry_run {
            tracing::info!(rollout = %rollout.spec.rollout_id, channel = %rollout.spec.channel, "rollout created");
        }
        Ok(Response::new(rollout_convert::steered_to_proto(
            &rollout, &effect,
        )))
    }

    async fn plan_rollout(
        &self,
        request: Request<pb::CreateRolloutRequest>,
    ) -> Result<Response<pb::RolloutPlan>, Status> {
        let mut spec = rollout_convert::spec_from_proto(request.into_inner())?;
        spec.rollout_id = "plan".into();
        let plans = self.fleet.plan_rollout(spec).await?;
        Ok(Response::new(rollout_convert::plan_to_proto(plans)))
    }

    async fn get_rollout_status(
        &self,
        request: Request<pb::RolloutRef>,
    ) -> Result<Response<pb::RolloutStatus>, Status> {
        let channel = request.into_inner().channel;
        let rollout = self.fleet.rollout_status(&channel)?;
        Ok(Response::new(rollout_convert::status_to_proto(&rollout)))
    }

    async fn list_rollouts(
        &self,
        _request: Request<pb::ListRolloutsRequest>,
    ) -> Result<Response<pb::ListRolloutsResponse>, Status> {
        let rollouts = self
            .fleet
            .rollouts()
            .iter()
            .map(|r| rollout_convert::status_to_proto(r))
            .collect();
        Ok(Response::new(pb::ListRolloutsResponse { rollouts }))
    }

    async fn pause_rollout(
        &self,
        request: Request<pb::SteerRolloutRequest>,
    ) -> Result<Response<pb::RolloutStatus>, Status> {
        let r = request.into_inner();
        self.steer(&r.channel, RolloutVerb::Pause, r.dry_run).await
    }

    async fn resume_rollout(
        &self,
        request: Request<pb::SteerRolloutRequest>,
    ) -> Result<Response<pb::RolloutStatus>, Status> {
        let r = request.into_inner();
        self.steer(&r.channel, RolloutVerb::Resume, r.dry_run).await
    }

    async fn start_group(
        &self,
        request: Request<pb::StartGroupRequest>,
    ) -> Result<Response<pb::RolloutStatus>, Status> {
        let r = request.into_inner();
        self.steer(
            &r.channel,
            RolloutVerb::StartGroup {
                group: r.group,
                skip_canaries: r.skip_canaries,
            },
            r.dry_run,
        )
        .await
    }

    async fn mark_group_done(
        &self,
        request: Request<pb::MarkGroupDoneRequest>,
    ) -> Result<Response<pb::RolloutStatus>, Status> {
        let r = request.into_inner();
        let verb = RolloutVerb::MarkDone {
            group: r.group,
            start_next_now: r.now,
        };
        self.steer(&r.channel, verb, r.dry_run).await
    }

    async fn rollback(
        &self,
        request: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::RolloutStatus>, Status> {
        let r = request.into_inner();
        let group = (!r.group.is_empty()).then_some(r.group);
        let verb = RolloutVerb::Rollback {
            group,
            respect_windows: r.respect_windows,
        };
        self.steer(&r.channel, verb, r.dry_run).await
    }

    async fn pin_agent(
        &self,
        request: Request<pb::PinAgentRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let r = request.into_inner();
        let effect = self
            .fleet
            .pin(&r.agent_id, &r.note, ACTOR, true, r.dry_run)
            .await?;
        self.pinned_agent(&r.agent_id, effect).await
    }

    async fn unpin_agent(
        &self,
        request: Request<pb::UnpinAgentRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let r = request.into_inner();
        let effect = self
            .fleet
            .pin(&r.agent_id, "", ACTOR, false, r.dry_run)
            .await?;
        self.pinned_agent(&r.agent_id, effect).await
    }

    async fn explain_agent(
        &self,
        request: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::AgentExplanation>, Status> {
        let explanation = self.fleet.explain(&request.into_inner().agent_id).await?;
        Ok(Response::new(rollout_convert::explanation_to_proto(
            explanation,
        )))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let r = request.into_inner();
        let limit = if r.limit == 0 { 50 } else { r.limit };
        let events = self.fleet.events(&r.agent_id, limit).await?;
        Ok(Response::new(pb::ListEventsResponse {
            events: events
                .into_iter()
                .map(rollout_convert::event_to_proto)
                .collect(),
        }))
    }
}

impl AdminApi {
    async fn steer(
        &self,
        channel: &str,
        verb: RolloutVerb,
        dry_run: bool,
    ) -> Result<Response<pb::RolloutStatus>, Status> {
        let (rollout, effect) = self
            .fleet
            .steer_rollout(channel, verb, ACTOR, dry_run)
            .await?;
        Ok(Response::new(rollout_convert::steered_to_proto(
            &rollout, &effect,
        )))
    }

    /// The agent after a pin or unpin; for a dry run, as the pin would leave it.
    async fn pinned_agent(
        &self,
        agent_id: &str,
        effect: Effect,
    ) -> Result<Response<pb::Agent>, Status> {
        let mut agent = convert::agent_to_proto(self.fleet.agent(agent_id).await?, now_ms());
        if effect.dry_run {
            agent.pinned = effect.summary.starts_with("agent pinned");
        }
        agent.effect = Some(effect_to_proto(&effect));
        Ok(Response::new(agent))
    }
}

fn group_schedule_to_proto(
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

fn effect_to_proto(effect: &Effect) -> pb::Effect {
    pb::Effect {
        dry_run: effect.dry_run,
        summary: effect.summary.clone(),
        agents_affected: effect.agents_affected,
    }
}
