//! What the coordinator does with an update report: committed with its event and then
//! acknowledged, refused by its ack when it can never be stored, or kept as a claim when it
//! is for a target this coordinator never sent the agent (`claims.rs`).

use std::sync::atomic::Ordering;

use drover_rules::EventKind;

use super::{Fleet, registry, registry::Session};
use crate::{
    domain::{UpdateReport, now_ms, validate},
    error::Result,
    failpoint::crash_point,
    store::{AgentWrite, NewEvent},
};

impl Fleet {
    /// The event of an update report from `session`'s agent, saying `text`.
    pub(super) fn update_event(
        &self,
        session: &Session,
        report: &UpdateReport,
        text: String,
    ) -> NewEvent {
        NewEvent {
            at_ms: self.clock.now_ms(),
            kind: EventKind::Update,
            rollout_id: report.rollout_id.clone(),
            group: session.group.clone(),
            agent_id: session.agent_id.clone(),
            actor: "updater".into(),
            audit: None,
            text,
        }
    }

    /// Tells the updater a report will never be stored, so it stops resending it. Nothing is
    /// written: the report's text is what could not be accepted.
    pub fn refuse_report(&self, session: &Session, attempt_id: String, why: String) {
        let why =
            drover_rules::text::clean_text(&why, drover_rules::text::MAX_REPORT_TEXT).into_owned();
        tracing::warn!(agent_id = %session.agent_id, %why, "report refused");
        self.metrics.report("invalid", false);
        // An id that is not one (too long, control characters) is echoed only in part.
        let attempt_id =
            drover_rules::text::clean_text(&attempt_id, validate::MAX_ID_LEN).into_owned();
        session.ack(registry::Ack::ReportRefused { attempt_id, why });
    }

    /// Commits the report with its event, then acknowledges it; a resent report is
    /// acknowledged again and writes nothing. A stale report never moves the agent back, and
    /// one for a target this coordinator never sent the agent is only a claim (`claims`).
    pub async fn report(&self, session: &Session, report: UpdateReport) -> Result<()> {
        self.counters.reports.fetch_add(1, Ordering::Relaxed);
        if let Some(why) = self.unissued(session, &report) {
            return self.record_claim(session, &report, why).await;
        }
        let error = if report.error.is_empty() {
            String::new()
        } else {
            format!(": {}", report.error)
        };
        let event = self.update_event(session, &report, format!("{}{error}", report.transition()));
        let recorded = self
            .writer
            .write(AgentWrite::Report {
                agent_id: session.agent_id.clone(),
                report: Box::new(report.clone()),
                received_ms: now_ms(),
                event,
            })
            .await?
            .unwrap_or_default();
        crash_point!("report.before_ack");
        self.metrics
            .report(report.outcome.as_str(), !report.rollout_id.is_empty());
        if recorded.version_moved {
            session.live.lock().agent_version = Some(report.to_version.clone());
        }
        // Also for a resend: its first delivery may have committed while its caller saw an
        // error, and the engine must still see the report (recording it twice is harmless).
        self.inventory.record_report(
            &session.agent_id,
            &report,
            recorded.version_moved,
            self.clock.now_ms(),
        );
        if recorded.new && self.rollout_for(&session.channel).is_some() {
            self.reconcile_now.notify_one();
        }
        if recorded.new {
            self.trace_report(session, &report);
        }
        session.ack(registry::Ack::Report(report.attempt_id));
        Ok(())
    }
}
