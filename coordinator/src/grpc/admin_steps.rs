//! The admin service's shared steps: steering a rollout, auditing a request that changed
//! nothing (bounded by a rate limit), the agent after a pin, and an effect on the wire.

use drover_proto::v1 as pb;
use drover_rules::{AdminRole, AuditResult};
use tonic::{Request, Response, Status};

use super::{AdminApi, convert, rollout_convert};
use crate::{
    domain::now_ms,
    error::{DroverError, ErrorCode},
    fleet::{Caller, Effect, RolloutVerb},
};

/// A request that steers a rollout: the channel it names, and whether it is a dry run.
pub(super) trait Steering {
    fn channel(&self) -> &str;
    fn dry_run(&self) -> bool;
}

macro_rules! steering {
    ($($request:ty),+) => {$(
        impl Steering for $request {
            fn channel(&self) -> &str {
                &self.channel
            }
            fn dry_run(&self) -> bool {
                self.dry_run
            }
        }
    )+};
}

steering!(
    pb::SteerRolloutRequest,
    pb::StartGroupRequest,
    pb::MarkGroupDoneRequest,
    pb::ReleaseStratumRequest,
    pb::RollbackRequest
);

impl AdminApi {
    /// Every steering verb the same way: an operator's, on the channel it names, audited.
    pub(super) async fn steer_request<T: Steering>(
        &self,
        request: Request<T>,
        action: &'static str,
        verb: impl FnOnce(T) -> RolloutVerb,
    ) -> Result<Response<pb::RolloutStatus>, Status> {
        let caller = self
            .authorize(
                &request,
                AdminRole::Operator,
                action,
                request.get_ref().channel(),
            )
            .await?;
        let request = request.into_inner();
        let dry_run = request.dry_run();
        self.steer(caller, verb(request), dry_run).await
    }

    pub(super) async fn steer(
        &self,
        caller: Caller,
        verb: RolloutVerb,
        dry_run: bool,
    ) -> Result<Response<pb::RolloutStatus>, Status> {
        let outcome = self
            .fleet
            .steer_rollout(&caller.target, verb, &caller, dry_run)
            .await;
        let (rollout, effect) = self.audited(&caller, dry_run, outcome).await?;
        let status = rollout_convert::steered_to_proto(&rollout, &effect);
        Ok(Response::new(self.with_stop_acks(status, &rollout)))
    }

    /// Records a request that changed nothing (refused, or a dry run) in the audit log; a
    /// change was recorded in its own transaction. The outcome passes through unchanged: a
    /// failure to write the record is logged, never turned into the call's answer.
    pub(super) async fn audited<T>(
        &self,
        caller: &Caller,
        dry_run: bool,
        outcome: Result<T, DroverError>,
    ) -> Result<T, DroverError> {
        let record = match &outcome {
            // The store failed, not the request: it could not take the record either (and
            // trying again would double the caller's wait). The log has it, with its id.
            Err(err) if matches!(err.code(), ErrorCode::Unavailable | ErrorCode::Internal) => {
                tracing::warn!(action = caller.action, target = %caller.target, error = %err, "admin request failed on the store; not audited");
                return outcome;
            }
            Err(err) => caller.audit(now_ms(), AuditResult::Refused, err.client_message()),
            Ok(_) if dry_run => {
                caller.audit(now_ms(), AuditResult::DryRun, "checked; nothing changed")
            }
            Ok(_) => return outcome,
        };
        if self.refusals.check().is_err() {
            tracing::warn!(action = caller.action, result = %record.result, "audit record dropped: over the budget for records of unchanged requests");
        } else if let Err(err) = self.fleet.store().record_audit(&record).await {
            tracing::warn!(action = caller.action, error = %err, "could not write the audit record");
        }
        outcome
    }

    /// The agent after a pin or unpin; for a dry run, as the pin would leave it.
    pub(super) async fn pinned_agent(
        &self,
        agent_id: &str,
        pinned: bool,
        effect: Effect,
    ) -> Result<Response<pb::Agent>, Status> {
        let mut agent = match self.fleet.agent(agent_id).await {
            Ok(view) => convert::agent_to_proto(view, now_ms()),
            // The pin is committed (or, for a dry run, checked): a failed read afterwards
            // must not turn the answer into a failure. Answer what is known.
            Err(err) => {
                tracing::warn!(%agent_id, error = %err, "pin committed; the agent could not be read back");
                pb::Agent {
                    agent_id: agent_id.to_string(),
                    ..pb::Agent::default()
                }
            }
        };
        agent.pinned = pinned;
        agent.effect = Some(effect_to_proto(&effect));
        Ok(Response::new(agent))
    }
}

pub(super) fn effect_to_proto(effect: &Effect) -> pb::Effect {
    pb::Effect {
        dry_run: effect.dry_run,
        summary: effect.summary.clone(),
        agents_affected: effect.agents_affected,
    }
}
