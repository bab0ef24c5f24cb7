//! Proto ↔ domain conversions. Everything arriving is validated here, at the edge.

use drover_proto::v1 as pb;
use drover_rules::{MaintenanceSchedule, Weekdays};

use crate::{
    domain::{
        AgentIdentity, Channel, Health, InstallerKind, SummaryRow, UpdateOutcome, UpdateReport,
        UpdaterState, directive::Directive, validate, version::parse_version,
    },
    error::{DroverError, Result},
    fleet::{AgentView, FleetSummary},
    rollout::verdict::HealthSample,
};

pub fn timestamp(ms: i64) -> Option<prost_types::Timestamp> {
    (ms > 0).then(|| prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

/// Milliseconds since 1970, saturating (out-of-range values are refused by validation).
fn millis(ts: Option<&prost_types::Timestamp>) -> i64 {
    ts.map(|t| {
        t.seconds
            .saturating_mul(1000)
            .saturating_add(i64::from(t.nanos.clamp(0, 999_999_999)) / 1_000_000)
    })
    .unwrap_or_default()
}

pub fn health_from_proto(value: i32) -> Health {
    match pb::AgentHealth::try_from(value) {
        Ok(pb::AgentHealth::Healthy) => Health::Healthy,
        Ok(pb::AgentHealth::Unhealthy) => Health::Unhealthy,
        _ => Health::Unknown,
    }
}

pub fn health_to_proto(health: Health) -> pb::AgentHealth {
    match health {
        Health::Healthy => pb::AgentHealth::Healthy,
        Health::Unhealthy => pb::AgentHealth::Unhealthy,
        Health::Unknown => pb::AgentHealth::Unknown,
    }
}

fn updater_state_from_proto(value: i32) -> UpdaterState {
    use pb::UpdaterState as P;
    match P::try_from(value) {
        Ok(P::Waiting) => UpdaterState::Waiting,
        Ok(P::Downloading) => UpdaterState::Downloading,
        Ok(P::Installing) => UpdaterState::Installing,
        Ok(P::Verifying) => UpdaterState::Verifying,
        Ok(P::Reverting) => UpdaterState::Reverting,
        _ => UpdaterState::Idle,
    }
}

fn updater_state_to_proto(state: UpdaterState) -> pb::UpdaterState {
    use pb::UpdaterState as P;
    match state {
        UpdaterState::Idle => P::Idle,
        UpdaterState::Waiting => P::Waiting,
        UpdaterState::Downloading => P::Downloading,
        UpdaterState::Installing => P::Installing,
        UpdaterState::Verifying => P::Verifying,
        UpdaterState::Reverting => P::Reverting,
    }
}

fn installer_from_proto(value: i32) -> InstallerKind {
    use pb::InstallerKind as P;
    match P::try_from(value) {
        Ok(P::Command) => InstallerKind::Command,
        Ok(P::Tarball) => InstallerKind::Tarball,
        Ok(P::Apt) => InstallerKind::Apt,
        Ok(P::Dnf) => InstallerKind::Dnf,
        Ok(P::Zypper) => InstallerKind::Zypper,
        Ok(P::Kubernetes) => InstallerKind::Kubernetes,
        Ok(P::Simulated) => InstallerKind::Simulated,
        _ => InstallerKind::Unspecified,
    }
}

fn installer_to_proto(kind: InstallerKind) -> pb::InstallerKind {
    use pb::InstallerKind as P;
    match kind {
        InstallerKind::Unspecified => P::Unspecified,
        InstallerKind::Command => P::Command,
        InstallerKind::Tarball => P::Tarball,
        InstallerKind::Apt => P::Apt,
        InstallerKind::Dnf => P::Dnf,
        InstallerKind::Zypper => P::Zypper,
        InstallerKind::Kubernetes => P::Kubernetes,
        InstallerKind::Simulated => P::Simulated,
    }
}

/// An empty version means "unknown"; anything else must be a valid semantic version.
fn optional_version(field: &str, text: &str) -> Result<Option<semver::Version>> {
    if text.is_empty() {
        return Ok(None);
    }
    validate::bounded_text(field, text, validate::MAX_VERSION_LEN)?;
    parse_version(text)
        .map(Some)
        .map_err(|err| DroverError::invalid(format!("{field}: {err}")))
}

pub fn identity_from_hello(hello: pb::Hello) -> Result<AgentIdentity> {
    validate::identifier("agent_id", &hello.agent_id)?;
    validate::bounded_text("hostname", &hello.hostname, validate::MAX_HOSTNAME_LEN)?;
    let group = if hello.group.is_empty() {
        "default".to_string()
    } else {
        hello.group
    };
    let channel = if hello.channel.is_empty() {
        "default".to_string()
    } else {
        hello.channel
    };
    validate::name("group", &group)?;
    validate::name("channel", &channel)?;
    validate::bounded_text(
        "updater_version",
        &hello.updater_version,
        validate::MAX_VERSION_LEN,
    )?;
    let labels = hello.labels.into_iter().collect();
    validate::labels(&labels)?;
    Ok(AgentIdentity {
        agent_version: optional_version("agent_version", &hello.agent_version)?,
        agent_id: hello.agent_id,
        hostname: hello.hostname,
        group,
        channel,
        installer: installer_from_proto(hello.installer),
        updater_version: hello.updater_version,
        labels,
        health: health_from_proto(hello.health),
    })
}

/// (health, updater state, agent version) from a heartbeat.
pub fn status_from_heartbeat(
    heartbeat: &pb::Heartbeat,
) -> Result<(Health, UpdaterState, Option<String>)> {
    let version = optional_version("agent_version", &heartbeat.agent_version)?;
    Ok((
        health_from_proto(heartbeat.health),
        updater_state_from_proto(heartbeat.state),
        version.map(|v| v.to_string()),
    ))
}

/// A heartbeat's health sample, if it has one that is in bounds. A sample out of bounds (a
/// day-long span, a petabyte of memory) is dropped, never the heartbeat or the session.
pub fn sample_from_heartbeat(heartbeat: &pb::Heartbeat) -> Option<HealthSample> {
    let s = heartbeat.sample.as_ref()?;
    let in_range = |v: f64, max: f64| v.is_finite() && (0.0..=max).contains(&v);
    let sane = s.span_ms <= 24 * 3_600_000
        && s.rss_kib.is_none_or(|k| k <= 1 << 40)
        && s.cpu_percent.is_none_or(|c| in_range(c, 100_000.0))
        && s.probe_latency_ms.is_none_or(|l| in_range(l, 3_600_000.0))
        && s.probes_ok.saturating_add(s.probes_failed) <= 1_000_000
        && s.restarts <= 100_000;
    sane.then_some(HealthSample {
        span_ms: s.span_ms,
        rss_kib: s.rss_kib,
        cpu_pct: s.cpu_percent,
        probe_latency_ms: s.probe_latency_ms,
        probes_ok: s.probes_ok,
        probes_failed: s.probes_failed,
        restarts: s.restarts,
    })
}

pub fn report_from_proto(report: pb::UpdateReport) -> Result<UpdateReport> {
    validate::identifier("attempt_id", &report.attempt_id)?;
    let outcome = match pb::UpdateOutcome::try_from(report.outcome) {
        Ok(pb::UpdateOutcome::Succeeded) => UpdateOutcome::Succeeded,
        Ok(pb::UpdateOutcome::Failed) => UpdateOutcome::Failed,
        Ok(pb::UpdateOutcome::Reverted) => UpdateOutcome::Reverted,
        Ok(pb::UpdateOutcome::Refused) => UpdateOutcome::Refused,
        _ => {
            return Err(DroverError::invalid(format!(
                "report {} has no outcome; set succeeded, failed, reverted or refused",
                report.attempt_id
            )));
        }
    };
    let to_version = parse_version(&report.to_version)
        .map_err(|err| DroverError::invalid(format!("to_version: {err}")))?;
    let from_version = optional_version("from_version", &report.from_version)?;
    validate::bounded_text("error", &report.error, validate::MAX_ERROR_TEXT_LEN)?;
    validate::bounded_text("directive_id", &report.directive_id, validate::MAX_ID_LEN)?;
    validate::bounded_text("rollout_id", &report.rollout_id, validate::MAX_ID_LEN)?;
    let started_ms = millis(report.started_at.as_ref());
    let finished_ms = millis(report.finished_at.as_ref());
    validate::report_times(started_ms, finished_ms, crate::domain::now_ms())?;
    Ok(UpdateReport {
        attempt_id: report.attempt_id,
        from_version: from_version.map(|v| v.to_string()).unwrap_or_default(),
        to_version: to_version.to_string(),
        outcome,
        error: report.error,
        started_ms,
        finished_ms,
        directive_id: report.directive_id,
        rollout_id: report.rollout_id,
    })
}

pub fn report_to_proto(report: &UpdateReport) -> pb::UpdateReport {
    let outcome = match report.outcome {
        UpdateOutcome::Succeeded => pb::UpdateOutcome::Succeeded,
        UpdateOutcome::Failed => pb::UpdateOutcome::Failed,
        UpdateOutcome::Reverted => pb::UpdateOutcome::Reverted,
        UpdateOutcome::Refused => pb::UpdateOutcome::Refused,
    };
    pb::UpdateReport {
        attempt_id: report.attempt_id.clone(),
        from_version: report.from_version.clone(),
        to_version: report.to_version.clone(),
        outcome: outcome as i32,
        error: report.error.clone(),
        started_at: timestamp(report.started_ms),
        finished_at: timestamp(report.finished_ms),
        directive_id: report.directive_id.clone(),
        rollout_id: report.rollout_id.clone(),
    }
}

pub fn schedule_to_proto(
    schedule: &MaintenanceSchedule,
    valid_until_ms: i64,
) -> pb::MaintenanceSchedule {
    pb::MaintenanceSchedule {
        days: schedule.days.days().map(|d| d as i32 + 1).collect(),
        start_minute_utc: schedule.start_minute_utc,
        duration: Some(prost_types::Duration {
            seconds: i64::from(schedule.duration_minutes) * 60,
            nanos: 0,
        }),
        valid_until: timestamp(valid_until_ms),
    }
}

/// Proto weekdays (1 = Monday … 7 = Sunday) as day numbers from 0; anything else refused.
pub fn weekdays_from_proto(days: &[i32]) -> Result<Vec<u32>> {
    days.iter()
        .map(|day| match pb::Weekday::try_from(*day) {
            Ok(pb::Weekday::Unspecified) | Err(_) => Err(DroverError::invalid(format!(
                "{day} is not a weekday (1 = Monday … 7 = Sunday)"
            ))),
            Ok(day) => Ok(day as u32 - 1),
        })
        .collect()
}

pub fn schedule_from_request(request: &pb::SetScheduleRequest) -> Result<MaintenanceSchedule> {
    let days = weekdays_from_proto(&request.days)?;
    let seconds = request
        .duration
        .as_ref()
        .map(|d| d.seconds)
        .unwrap_or_default();
    if seconds <= 0 || seconds % 60 != 0 {
        return Err(DroverError::invalid(
            "the window's duration must be a positive number of whole minutes",
        ));
    }
    let schedule = MaintenanceSchedule {
        days: Weekdays::from_days(days),
        start_minute_utc: request.start_minute_utc,
        duration_minutes: u32::try_from(seconds / 60).unwrap_or(u32::MAX),
    };
    schedule.validate().map_err(DroverError::InvalidArgument)?;
    Ok(schedule)
}

/// `valid_until_ms` bounds how long the updater may trust the schedule without hearing from us.
pub fn directive_to_proto(directive: &Directive, valid_until_ms: i64) -> pb::Directive {
    pb::Directive {
        directive_id: directive.directive_id.clone(),
        target_version: directive
            .target_version
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        critical: directive.critical,
        schedule: directive
            .schedule
            .as_ref()
            .map(|s| schedule_to_proto(s, valid_until_ms)),
        rollout_id: directive.rollout_id.clone(),
        rollout_epoch: directive.rollout_epoch,
        attempt_id: directive.rollout_id.clone(),
        reason: directive.reason.to_string(),
        reason_detail: directive.reason_detail.clone(),
        artifacts: Vec::new(),
        trace_context: Default::default(),
        control_plane_version: directive
            .control_plane_version
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    }
}

pub fn agent_to_proto(agent: AgentView, now_ms: i64) -> pb::Agent {
    let record = agent.record;
    let window = agent.directive.schedule.and_then(|s| s.next_window(now_ms));
    pb::Agent {
        agent_id: record.agent_id,
        hostname: record.hostname,
        group: record.group,
        channel: record.channel,
        installer: installer_to_proto(record.installer) as i32,
        agent_version: record.agent_version.unwrap_or_default(),
        updater_version: record.updater_version,
        labels: record.labels.into_iter().collect(),
        health: health_to_proto(record.health) as i32,
        updater_state: updater_state_to_proto(record.updater_state) as i32,
        connected: agent.connected,
        first_seen: timestamp(record.first_seen_ms),
        last_seen: timestamp(record.last_seen_ms),
        directive: Some(directive_to_proto(&agent.directive, 0)),
        last_report: record.last_report.as_ref().map(report_to_proto),
        next_window_start: window.and_then(|(start, _)| timestamp(start)),
        next_window_end: window.and_then(|(_, end)| timestamp(end)),
        pinned: agent.pinned,
        updater_decision: agent
            .updater_decision
            .clone()
            .map(|d| d.0)
            .unwrap_or_default(),
        updater_decision_detail: agent.updater_decision.map(|d| d.1).unwrap_or_default(),
        effect: None,
    }
}

pub fn channel_to_proto(channel: Channel, agent_count: u64) -> pb::Channel {
    pb::Channel {
        name: channel.name,
        version: channel.version.map(|v| v.to_string()).unwrap_or_default(),
        critical: channel.critical,
        follows_control_plane: channel.follows_control_plane,
        updated_at: timestamp(channel.updated_at_ms),
        agent_count,
        effect: None,
    }
}

pub fn summary_to_proto(summary: FleetSummary) -> pb::FleetSummary {
    pb::FleetSummary {
        rows: summary.rows.into_iter().map(summary_row_to_proto).collect(),
        total_agents: summary.total_agents,
        connected_agents: summary.connected_agents,
        out_of_compliance: summary.out_of_compliance,
        conditions: summary.conditions.into_iter().collect(),
        control_plane_version: summary
            .control_plane_version
            .map(|v| v.to_string())
            .unwrap_or_default(),
    }
}

fn summary_row_to_proto(row: SummaryRow) -> pb::FleetSummaryRow {
    pb::FleetSummaryRow {
        agent_version: row.agent_version,
        group: row.group,
        health: health_to_proto(row.health) as i32,
        count: row.count,
    }
}
