//! A report counts only for a target the coordinator could have sent that agent: the
//! target (or, rolling back, the start) of the rollout it names, once the agent's group has
//! started in it; without a rollout, its channel's target or the directive its session
//! holds. Anything else is a *claim*: kept as an audited event (visible in `agents why`
//! and `events`), refused to the updater so it stops resending, and it moves no version,
//! gate or counter. An honest updater only reports what it was sent.

use drover_rules::AuditResult;

use super::{Fleet, caller::updater_audit, registry::Session};
use crate::{domain::UpdateReport, error::Result, store::NewEvent};

/// How a claim's event starts, so `agents why` can find it.
pub const CLAIM_PREFIX: &str = "claim not believed: ";

impl Fleet {
    /// Why `report` is not for a target this coordinator issued to the session's agent.
    pub(super) fn unissued(&self, session: &Session, report: &UpdateReport) -> Option<String> {
        let to = report.to_version.as_str();
        if report.rollout_id.is_empty() {
            // Usually the directive the session holds; the channel's only if not.
            if session
                .current_target()
                .is_some_and(|v| v.to_string() == to)
            {
                return None;
            }
            let channel = self
                .view()
                .directive_for(&session.channel, &session.group)
                .target_version
                .map(|v| v.to_string());
            if channel.as_deref() == Some(to) {
                return None;
            }
            return Some(format!(
                "channel {} targets {}, and no rollout sent {to}",
                session.channel,
                channel.as_deref().unwrap_or("no version")
            ));
        }
        let named = |rollout: &std::sync::Arc<super::ActiveRollout>| {
            rollout.spec.rollout_id == report.rollout_id
        };
        let rollout = self
            .rollout_for(&session.channel)
            .filter(named)
            .or_else(|| {
                let finished = self.finished_rollouts.read();
                finished.get(&session.channel).filter(|r| named(r)).cloned()
            });
        let Some(rollout) = rollout else {
            return Some(format!(
                "rollout {} does not govern channel {}",
                report.rollout_id, session.channel
            ));
        };
        let (start, target) = (
            rollout.spec.start_version.to_string(),
            rollout.spec.target_version.to_string(),
        );
        if to == start {
            return None;
        }
        if to != target {
            return Some(format!(
                "rollout {} moves channel {} from {start} to {target}, never to {to}",
                report.rollout_id, session.channel
            ));
        }
        let index = rollout.spec.group_of(&session.group);
        let started = rollout
            .state
            .groups
            .get(index)
            .is_some_and(|group| group.started_ms.is_some());
        (!started).then(|| {
            format!(
                "group {} has not started in rollout {}, so its agents were never sent {target}",
                rollout.spec.groups[index].name, report.rollout_id
            )
        })
    }

    /// Keeps a report that is not believed as an audited event and tells the updater.
    pub(super) async fn record_claim(
        &self,
        session: &Session,
        report: &UpdateReport,
        why: String,
    ) -> Result<()> {
        let text = format!(
            "{CLAIM_PREFIX}{} ({}): {why}",
            report.transition(),
            report.attempt_id
        );
        let audit = updater_audit(
            &format!("agent {}", session.agent_id),
            "ReportUpdate",
            &session.agent_id,
            AuditResult::Refused,
            &text,
        );
        let event = NewEvent {
            audit: Some(Box::new(audit)),
            ..self.update_event(session, report, text)
        };
        self.store().record_events(&[event]).await?;
        self.metrics.report("claim", !report.rollout_id.is_empty());
        tracing::warn!(agent_id = %session.agent_id, attempt_id = %report.attempt_id, %why, "update report kept as a claim");
        session.ack(super::registry::Ack::ReportRefused {
            attempt_id: report.attempt_id.clone(),
            why: format!("kept as a claim, not believed: {why}"),
        });
        Ok(())
    }
}
