//! `drover.v1.AdminService`: what droverctl talks to.

use std::sync::Arc;

use drover_proto::v1::{self as pb, admin_service_server::AdminService};
use tonic::{Request, Response, Status};

use super::{admin_reads::group_schedule_to_proto, convert, rollout_convert};
use crate::{
    domain::now_ms,
    fleet::{Effect, Fleet, RolloutVerb},
};

/// Who admin actions are logged as; admin tokens with names are open work.
const ACTOR: &str = "admin";

pub struct AdminApi {
    pub(super) fleet: Arc<Fleet>,
}

impl AdminApi {
    pub fn new(fleet: Arc<Fleet>) -> Self {
        Self { fleet }
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        Ok(Response::new(self.agents_page(request.into_inner()).await?))
    }

    async fn get_agent(
        &self,
        request: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        Ok(Response::new(
            self.agent(&request.into_inner().agent_id).await?,
        ))
    }

    async fn get_fleet_summary(
        &self,
        _request: Request<pb::GetFleetSummaryRequest>,
    ) -> Result<Response<pb::FleetSummary>, Status> {
        Ok(Response::new(self.fleet_summary().await?))
    }

    async fn list_channels(
        &self,
        _request: Request<pb::ListChannelsRequest>,
    ) -> Result<Response<pb::ListChannelsResponse>, Status> {
        Ok(Response::new(self.channels().await?))
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
        Ok(Response::new(self.control_plane()))
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
        Ok(Response::new(self.schedules().await?))
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
        Ok(Response::new(
            self.rollout_status(&request.into_inner().channel)?,
        ))
    }

    async fn list_rollouts(
        &self,
        request: Request<pb::ListRolloutsRequest>,
    ) -> Result<Response<pb::ListRolloutsResponse>, Status> {
        Ok(Response::new(self.rollouts(request.into_inner()).await?))
    }

    async fn get_rollout(
        &self,
        request: Request<pb::GetRolloutRequest>,
    ) -> Result<Response<pb::RolloutDetail>, Status> {
        let r = request.into_inner();
        Ok(Response::new(
            self.rollout_detail(&r.rollout_id, r.limit).await?,
        ))
    }

    async fn get_agent_history(
        &self,
        request: Request<pb::GetAgentHistoryRequest>,
    ) -> Result<Response<pb::AgentHistory>, Status> {
        let r = request.into_inner();
        Ok(Response::new(
            self.agent_history(&r.agent_id, r.limit).await?,
        ))
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
        Ok(Response::new(
            self.explanation(&request.into_inner().agent_id).await?,
        ))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        Ok(Response::new(self.events(request.into_inner()).await?))
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

fn effect_to_proto(effect: &Effect) -> pb::Effect {
    pb::Effect {
        dry_run: effect.dry_run,
        summary: effect.summary.clone(),
        agents_affected: effect.agents_affected,
    }
}
