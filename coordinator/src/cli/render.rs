//! Plain-text tables for droverctl.

use drover_proto::v1 as pb;

pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| h.to_uppercase()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(String::len).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<width$}", width = widths[i]))
                .collect();
            padded.join("  ").trim_end().to_string()
        };
        let mut out = vec![line(&self.header)];
        out.extend(self.rows.iter().map(|r| line(r)));
        out.join("\n")
    }
}

pub fn health_name(value: i32) -> &'static str {
    match pb::AgentHealth::try_from(value) {
        Ok(pb::AgentHealth::Healthy) => "healthy",
        Ok(pb::AgentHealth::Unhealthy) => "unhealthy",
        _ => "unknown",
    }
}

pub fn state_name(value: i32) -> &'static str {
    pb::UpdaterState::try_from(value)
        .map(|s| s.as_str_name().trim_start_matches("UPDATER_STATE_"))
        .unwrap_or("UNSPECIFIED")
}

pub fn outcome_name(value: i32) -> &'static str {
    pb::UpdateOutcome::try_from(value)
        .map(|s| s.as_str_name().trim_start_matches("UPDATE_OUTCOME_"))
        .unwrap_or("UNSPECIFIED")
}

/// RFC 3339 in UTC, second precision.
pub fn millis_text(ts: &prost_types::Timestamp) -> String {
    drover_rules::time::rfc3339(ts.seconds.saturating_mul(1000))
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text.to_string()
    }
}

pub fn agents(agents: &[pb::Agent], total: u64) -> String {
    let mut table = Table::new(&[
        "agent",
        "group",
        "channel",
        "version",
        "target",
        "health",
        "state",
        "connected",
    ]);
    for a in agents {
        let target = a
            .directive
            .as_ref()
            .map(|d| d.target_version.as_str())
            .unwrap_or("");
        table.row(vec![
            a.agent_id.clone(),
            a.group.clone(),
            a.channel.clone(),
            or_dash(&a.agent_version),
            or_dash(target),
            health_name(a.health).into(),
            state_name(a.updater_state).to_lowercase(),
            if a.connected {
                "yes".into()
            } else {
                "no".into()
            },
        ]);
    }
    format!(
        "{}\n({} shown of {total} matching)",
        table.render(),
        agents.len()
    )
}

pub fn agent_details(a: &pb::Agent) -> String {
    let mut lines = vec![
        format!("agent:           {}", a.agent_id),
        format!("hostname:        {}", or_dash(&a.hostname)),
        format!("group:           {}", a.group),
        format!("channel:         {}", a.channel),
        format!("version:         {}", or_dash(&a.agent_version)),
        format!("health:          {}", health_name(a.health)),
        format!(
            "updater state:   {}",
            state_name(a.updater_state).to_lowercase()
        ),
        format!("updater version: {}", or_dash(&a.updater_version)),
        format!(
            "connected:       {}",
            if a.connected { "yes" } else { "no" }
        ),
        format!(
            "first seen:      {}",
            a.first_seen.as_ref().map(millis_text).unwrap_or_default()
        ),
        format!(
            "last seen:       {}",
            a.last_seen.as_ref().map(millis_text).unwrap_or_default()
        ),
    ];
    if !a.labels.is_empty() {
        let mut labels: Vec<_> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        lines.push(format!("labels:          {}", labels.join(", ")));
    }
    lines.push(format!(
        "next window:     {}",
        window_text(a.next_window_start.as_ref(), a.next_window_end.as_ref())
    ));
    if a.pinned {
        lines.push("pinned:          yes (rollouts pass it by)".into());
    }
    if !a.updater_decision.is_empty() {
        lines.push(format!(
            "updater says:    {} — {}",
            a.updater_decision, a.updater_decision_detail
        ));
    }
    if let Some(d) = &a.directive {
        lines.push(format!(
            "target:          {}{}",
            or_dash(&d.target_version),
            if d.critical { " (critical)" } else { "" }
        ));
        lines.push(format!(
            "why:             {} — {}",
            d.reason, d.reason_detail
        ));
    }
    if let Some(r) = &a.last_report {
        lines.push(format!(
            "last update:     {} → {}: {}{}",
            or_dash(&r.from_version),
            r.to_version,
            outcome_name(r.outcome).to_lowercase(),
            if r.error.is_empty() {
                String::new()
            } else {
                format!(" ({})", r.error)
            }
        ));
    }
    lines.join("\n")
}

pub fn summary(s: &pb::FleetSummary) -> String {
    let mut table = Table::new(&["version", "group", "health", "agents"]);
    for r in &s.rows {
        table.row(vec![
            r.agent_version.clone(),
            r.group.clone(),
            health_name(r.health).into(),
            r.count.to_string(),
        ]);
    }
    format!(
        "control plane: {}   agents: {}   connected: {}\n\n{}",
        or_dash(&s.control_plane_version),
        s.total_agents,
        s.connected_agents,
        table.render()
    )
}

pub fn channels(channels: &[pb::Channel]) -> String {
    let mut table = Table::new(&[
        "channel",
        "version",
        "critical",
        "follows control plane",
        "agents",
    ]);
    for c in channels {
        table.row(vec![
            c.name.clone(),
            or_dash(&c.version),
            if c.critical {
                "yes".into()
            } else {
                "no".into()
            },
            if c.follows_control_plane {
                "yes".into()
            } else {
                "no".into()
            },
            c.agent_count.to_string(),
        ]);
    }
    table.render()
}

fn window_text(
    start: Option<&prost_types::Timestamp>,
    end: Option<&prost_types::Timestamp>,
) -> String {
    match (start, end) {
        (Some(start), Some(end)) => format!("{} – {}", millis_text(start), millis_text(end)),
        _ => "none: updates install as soon as they arrive".into(),
    }
}

fn schedule_text(schedule: Option<&pb::MaintenanceSchedule>) -> String {
    let Some(s) = schedule else { return "-".into() };
    let days =
        drover_rules::Weekdays::from_days(s.days.iter().map(|d| (*d as u32).saturating_sub(1)));
    let minutes = s
        .duration
        .as_ref()
        .map(|d| (d.seconds / 60) as u32)
        .unwrap_or_default();
    drover_rules::MaintenanceSchedule {
        days,
        start_minute_utc: s.start_minute_utc,
        duration_minutes: minutes,
    }
    .to_string()
}

pub fn schedules(schedules: &[pb::GroupSchedule]) -> String {
    let mut table = Table::new(&["group", "window", "next opens", "closes"]);
    for s in schedules {
        table.row(vec![
            s.group.clone(),
            schedule_text(s.schedule.as_ref()),
            s.next_window_start
                .as_ref()
                .map(millis_text)
                .unwrap_or_else(|| "-".into()),
            s.next_window_end
                .as_ref()
                .map(millis_text)
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    table.render()
}

pub fn schedule_json(s: &pb::GroupSchedule) -> serde_json::Value {
    serde_json::json!({
        "group": s.group,
        "window": schedule_text(s.schedule.as_ref()),
        "next_window_start": s.next_window_start.as_ref().map(millis_text),
        "next_window_end": s.next_window_end.as_ref().map(millis_text),
    })
}
