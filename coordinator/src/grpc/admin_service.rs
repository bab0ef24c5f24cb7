//! `drover.v1.AdminService`: what droverctl talks to.

use std::{num::NonZeroU32, sync::Arc};

use drover_proto::v1::{self as pb, admin_service_server::AdminService};
use drover_rules::AdminRole;
use governor::{Quota, RateLimiter, clock::DefaultClock, state::InMemoryState, state::NotKeyed};
use tonic::{Request, Response, Status};

use super::{
    admin_reads::group_schedule_to_proto, admin_steps::effect_to_proto, convert, rollout_convert,
};
use crate::{
    domain::now_ms,
    fleet::{Fleet, RolloutVerb},
};

/// Records of requests that changed nothing (refusals, dry runs), per second sustained and at
/// once: a flood of refused requests cannot grow the audit log without bound.
const UNCHANGED_RECORDS_PER_SECOND: u32 = 50;
const UNCHANGED_RECORDS_BURST: u32 = 500;

pub struct AdminApi {
    pub(super) fleet: Arc<Fleet>,
    pub(super) refusals: RateLimiter<NotKeyed, InMemoryState, DefaultClock>,
}

impl AdminApi {
    pub fn new(fleet: Arc<Fleet>) -> Self {
        let per_second = NonZeroU32::new(UNCHANGED_RECORDS_PER_SECOND).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(UNCHANGED_RECORDS_BURST).unwrap_or(NonZeroU32::MIN);
        Self {
            fleet,
            refusals: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
        }
    }

    /// The fleet behind the service, for the HTTP reads no RPC has (the dashboard's).
    pub fn fleet(&self) -> &Arc<Fleet> {
        &self.fleet
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
        let caller = self
            .authorize(
                &request,
                AdminRole::Operator,
                "SetChannelVersion",
                &request.get_ref().name,
            )
            .await?;
        let request = request.into_inner();
        let outcome = self
            .fleet
            .set_channel_version(&request.name, &request.version, &caller, request.dry_run)
            .await;
        let (channel, effect) = self.audited(&caller, request.dry_run, outcome).await?;
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
        let caller = self
            .authorize(
                &request,
                AdminRole::Operator,
                "SetChannelCritical",
                &request.get_ref().name,
            )
            .await?;
        let request = request.into_inner();
        let outcome = self
            .fleet
            .set_channel_critical(&request.name, request.critical, &caller, request.dry_run)
            .await;
        let (channel, effect) = self.audited(&caller, request.dry_run, outcome).await?;
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
        let caller = self
            .authorize(
                &request,
                AdminRole::Admin,
                "SetControlPlaneVersion",
                "control plane",
            )
            .await?;
        let request = request.into_inner();
        let outcome = self
            .fleet
            .set_control_plane_version(&request.version, &caller, request.dry_run)
            .await;
        let (version, at, effect) = self.audited(&caller, request.dry_run, outcome).await?;
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
        let caller = self
            .authorize(
                &request,
                AdminRole::Operator,
                "SetSchedule",
                &request.get_ref().group,
            )
            .await?;
        let request = request.into_inner();
        let outcome = match convert::schedule_from_request(&request) {
            Ok(schedule) => self
                .fleet
                .set_schedule(&request.group, schedule, &caller, request.dry_run)
                .await
                .map(|effect| (schedule, effect)),
            Err(err) => Err(err),
        };
        let (schedule, effect) = self.audited(&caller, request.dry_run, outcome).await?;
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
        let caller = self
            .authorize(
                &request,
                AdminRole::Operator,
                "ClearSchedule",
                &request.get_ref().group,
            )
            .await?;
        let request = request.into_inner();
        let group = request.group;
        let outcome = self
            .fleet
            .clear_schedule(&group, &caller, request.dry_run)
            .await;
        let effect = self.audited(&caller, request.dry_run, outcome).await?;
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
        let caller = self
            .authorize(
                &request,
                AdminRole::Operator,
                "CreateRollout",
                &request.get_ref().channel,
            )
            .await?;
        let request = request.into_inner();
        let dry_run = request.dry_run;
        let outcome = match rollout_convert::spec_from_proto(request) {
            Ok(spec) => self.fleet.create_rollout(spec, &caller, dry_run).await,
            Err(err) => Err(err),
        };
        let (rollout, effect) = self.audited(&caller, dry_run, outcome).await?;
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
        self.steer_request(request, "PauseRollout", |_| RolloutVerb::Pause)
            .await
    }

    async fn resume_rollout(
        &self,
        request: Request<pb::SteerRolloutRequest>,
    ) -> Result<Response<pb::RolloutStatus>, Status> {
        self.steer_request(request, "ResumeRollout", |_| RolloutVerb::Resume)
            .await
    }

    async fn start_group(
        &self,
        request: Request<pb::StartGroupRequest>,
    ) -> Result<Response<pb::RolloutStatus>, Status> {
        self.steer_request(request, "StartGroup", |r| RolloutVerb::StartGroup {
            group: r.group,
            skip_canaries: r.skip_canaries,
        })
        .await
    }

    async fn mark_group_done(
        &self,
        request: Request<pb::MarkGroupDoneRequest>,
    ) -> Result<Response<pb::RolloutStatus>, Status> {
        self.steer_request(request, "MarkGroupDone", |r| RolloutVerb::MarkDone {
            group: r.group,
            start_next_now: r.now,
        })
        .await
    }

    async fn release_stratum(
        &self,
        request: Request<pb::ReleaseStratumRequest>,
    ) -> Result<Response<pb::RolloutStatus>, Status> {
        self.steer_request(request, "ReleaseStratum", |r| RolloutVerb::ReleaseStratum {
            stratum: r.stratum,
        })
        .await
    }

    async fn rollback(
        &self,
        request: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::RolloutStatus>, Status> {
        self.steer_request(request, "Rollback", |r| RolloutVerb::Rollback {
            group: (!r.group.is_empty()).then_some(r.group),
            respect_windows: r.respect_windows,
        })
        .await
    }

    async fn pin_agent(
        &self,
        request: Request<pb::PinAgentRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let caller = self
            .authorize(
                &request,
                AdminRole::Operator,
                "PinAgent",
                &request.get_ref().agent_id,
            )
            .await?;
        let r = request.into_inner();
        let outcome = self
            .fleet
            .pin(&r.agent_id, &r.note, &caller, true, r.dry_run)
            .await;
        let effect = self.audited(&caller, r.dry_run, outcome).await?;
        self.pinned_agent(&r.agent_id, true, effect).await
    }

    async fn unpin_agent(
        &self,
        request: Request<pb::UnpinAgentRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let caller = self
            .authorize(
                &request,
                AdminRole::Operator,
                "UnpinAgent",
                &request.get_ref().agent_id,
            )
            .await?;
        let r = request.into_inner();
        let outcome = self
            .fleet
            .pin(&r.agent_id, "", &caller, false, r.dry_run)
            .await;
        let effect = self.audited(&caller, r.dry_run, outcome).await?;
        self.pinned_agent(&r.agent_id, false, effect).await
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

    async fn list_audit(
        &self,
        request: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        Ok(Response::new(self.audit(request.into_inner()).await?))
    }

    async fn create_admin_credential(
        &self,
        request: Request<pb::CreateAdminCredentialRequest>,
    ) -> Result<Response<pb::AdminCredentialCreated>, Status> {
        let action = "CreateAdminCredential";
        let caller = self
            .authorize(&request, AdminRole::Admin, action, &request.get_ref().name)
            .await?;
        Ok(Response::new(
            self.create_credential(caller, request.into_inner()).await?,
        ))
    }

    async fn list_admin_credentials(
        &self,
        request: Request<pb::ListAdminCredentialsRequest>,
    ) -> Result<Response<pb::ListAdminCredentialsResponse>, Status> {
        self.authorize(&request, AdminRole::Admin, "ListAdminCredentials", "")
            .await?;
        Ok(Response::new(self.list_credentials().await?))
    }

    async fn revoke_admin_credential(
        &self,
        request: Request<pb::RevokeAdminCredentialRequest>,
    ) -> Result<Response<pb::AdminCredential>, Status> {
        let action = "RevokeAdminCredential";
        let caller = self
            .authorize(&request, AdminRole::Admin, action, &request.get_ref().name)
            .await?;
        Ok(Response::new(
            self.revoke_credential(caller, request.into_inner()).await?,
        ))
    }

    // Enrolment: bodies in admin_enrolment.rs.
    async fn create_join_token(
        &self,
        request: Request<pb::CreateJoinTokenRequest>,
    ) -> Result<Response<pb::JoinTokenCreated>, Status> {
        Ok(Response::new(self.create_join_token_rpc(request).await?))
    }
    async fn list_join_tokens(
        &self,
        request: Request<pb::ListJoinTokensRequest>,
    ) -> Result<Response<pb::ListJoinTokensResponse>, Status> {
        Ok(Response::new(self.list_join_tokens_rpc(request).await?))
    }
    async fn revoke_join_token(
        &self,
        request: Request<pb::RevokeJoinTokenRequest>,
    ) -> Result<Response<pb::JoinToken>, Status> {
        Ok(Response::new(self.revoke_join_token_rpc(request).await?))
    }
    async fn list_agent_identities(
        &self,
        request: Request<pb::ListAgentIdentitiesRequest>,
    ) -> Result<Response<pb::ListAgentIdentitiesResponse>, Status> {
        Ok(Response::new(
            self.list_agent_identities_rpc(request).await?,
        ))
    }
    async fn revoke_agent(
        &self,
        request: Request<pb::RevokeAgentRequest>,
    ) -> Result<Response<pb::AgentIdentity>, Status> {
        Ok(Response::new(self.revoke_agent_rpc(request).await?))
    }
    // Release metadata: bodies in admin_releases.rs.
    async fn publish_release_metadata(
        &self,
        request: Request<pb::ReleaseMetadata>,
    ) -> Result<Response<pb::ReleaseMetadataStatus>, Status> {
        Ok(Response::new(
            self.publish_release_metadata_rpc(request).await?,
        ))
    }
    async fn get_release_metadata_status(
        &self,
        request: Request<pb::GetReleaseMetadataStatusRequest>,
    ) -> Result<Response<pb::ReleaseMetadataStatus>, Status> {
        Ok(Response::new(
            self.release_metadata_status_rpc(request).await?,
        ))
    }
}
