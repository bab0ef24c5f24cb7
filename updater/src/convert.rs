//! Proto ↔ local types, at the edge.

use drover_proto::v1 as pb;

use crate::{
    health::Health,
    installers::InstallerKind,
    shared::{Activity, now_ms},
    state::{DirectiveRecord, DirectiveSource, Outcome, ReportRecord, SavedSchedule},
};

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

pub fn installer_kind_to_proto(kind: InstallerKind) -> pb::InstallerKind {
    match kind {
        InstallerKind::Command => pb::InstallerKind::Command,
        InstallerKind::Tarball => pb::InstallerKind::Tarball,
        InstallerKind::Simulated => pb::InstallerKind::Simulated,
        InstallerKind::Kubernetes => pb::InstallerKind::Kubernetes,
        InstallerKind::Apt => pb::InstallerKind::Apt,
        InstallerKind::Dnf => pb::InstallerKind::Dnf,
        InstallerKind::Zypper => pb::InstallerKind::Zypper,
    }
}

pub fn directive_record(directive: pb::Directive, source: DirectiveSource) -> DirectiveRecord {
    DirectiveRecord {
        directive_id: directive.directive_id,
        target_version: non_empty(directive.target_version),
        critical: directive.critical,
        reason: directive.reason,
        reason_detail: directive.reason_detail,
        control_plane_version: non_empty(directive.control_plane_version),
        received_ms: now_ms(),
        source,
        schedule: directive.schedule.and_then(schedule_record),
        attempt_id: directive.attempt_id,
        rollout_id: directive.rollout_id,
        rollout_epoch: directive.rollout_epoch,
        trace_context: trace_context(directive.trace_context),
    }
}

/// The W3C keys only, each bounded (tracestate's limit is 512 characters); anything else
/// is dropped, so a hostile map never grows the state file.
fn trace_context(
    map: std::collections::HashMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    map.into_iter()
        .filter(|(key, value)| match key.as_str() {
            "traceparent" => value.len() <= 55,
            "tracestate" => value.len() <= 512,
            _ => false,
        })
        .collect()
}

fn timestamp(ms: i64) -> Option<prost_types::Timestamp> {
    (ms > 0).then(|| prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

pub fn report_to_proto(report: &ReportRecord) -> pb::UpdateReport {
    let outcome = match report.outcome {
        Outcome::Succeeded => pb::UpdateOutcome::Succeeded,
        Outcome::Failed => pb::UpdateOutcome::Failed,
        Outcome::Reverted => pb::UpdateOutcome::Reverted,
        Outcome::Refused => pb::UpdateOutcome::Refused,
    };
    pb::UpdateReport {
        attempt_id: report.attempt_id.clone(),
        from_version: report.from_version.clone().unwrap_or_default(),
        to_version: report.to_version.clone(),
        outcome: outcome as i32,
        // Already clean when made; a state file from an older updater may not be.
        error: drover_rules::text::clean_text(&report.error, drover_rules::text::MAX_REPORT_TEXT)
            .into_owned(),
        started_at: timestamp(report.started_ms),
        finished_at: timestamp(report.finished_ms),
        directive_id: report.directive_id.clone(),
        rollout_id: report.rollout_id.clone(),
    }
}

pub fn health_to_proto(health: Health) -> pb::AgentHealth {
    match health {
        Health::Healthy => pb::AgentHealth::Healthy,
        Health::Unhealthy => pb::AgentHealth::Unhealthy,
        Health::Unknown => pb::AgentHealth::Unknown,
    }
}

pub fn activity_to_proto(activity: Activity) -> pb::UpdaterState {
    match activity {
        Activity::Idle => pb::UpdaterState::Idle,
        Activity::Waiting => pb::UpdaterState::Waiting,
        Activity::Downloading => pb::UpdaterState::Downloading,
        Activity::Installing => pb::UpdaterState::Installing,
        Activity::Verifying => pb::UpdaterState::Verifying,
        Activity::Reverting => pb::UpdaterState::Reverting,
    }
}

fn schedule_record(schedule: pb::MaintenanceSchedule) -> Option<SavedSchedule> {
    let window = drover_rules::MaintenanceSchedule {
        days: drover_rules::Weekdays::from_days(
            schedule.days.iter().map(|d| (*d as u32).saturating_sub(1)),
        ),
        start_minute_utc: schedule.start_minute_utc,
        duration_minutes: schedule
            .duration
            .map(|d| (d.seconds / 60) as u32)
            .unwrap_or_default(),
    };
    // An unusable schedule counts as no schedule (rule 4), never as "never install".
    window.validate().ok()?;
    let valid_until_ms = schedule
        .valid_until
        .map(|t| t.seconds.saturating_mul(1000) + i64::from(t.nanos) / 1_000_000)
        .unwrap_or_default();
    Some(SavedSchedule {
        window,
        valid_until_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directive_keeps_only_its_bounded_w3c_trace_context_and_saves_it() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let directive = pb::Directive {
            directive_id: "d-1".into(),
            trace_context: [
                ("traceparent".to_string(), parent.to_string()),
                ("tracestate".to_string(), "drover=1".to_string()),
                ("baggage".to_string(), "secret=1".to_string()),
            ]
            .into(),
            ..Default::default()
        };
        let record = directive_record(directive, DirectiveSource::Push);
        assert_eq!(
            record.trace_context.keys().collect::<Vec<_>>(),
            ["traceparent", "tracestate"]
        );
        let saved: DirectiveRecord =
            serde_json::from_str(&serde_json::to_string(&record).unwrap()).unwrap();
        assert_eq!(saved, record);

        let hostile = pb::Directive {
            trace_context: [("tracestate".to_string(), "x".repeat(513))].into(),
            ..Default::default()
        };
        assert!(
            directive_record(hostile, DirectiveSource::Poll)
                .trace_context
                .is_empty()
        );
    }
}
