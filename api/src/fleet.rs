//! The fleet as a whole: summary, channels, the control plane, maintenance windows.

use std::collections::BTreeMap;

use drover_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Health, time, time_text};

/// How many agents run each version in each group, by health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetSummary {
    pub control_plane_version: String,
    pub total_agents: u64,
    pub connected_agents: u64,
    /// Agents above the control plane or more than one major below it.
    pub out_of_compliance: u64,
    /// Agents by condition: failing, reverted, behind_target, stuck (see `AgentCondition`).
    pub conditions: BTreeMap<String, u64>,
    pub by_version: BTreeMap<String, u64>,
    pub by_group: BTreeMap<String, u64>,
    pub rows: Vec<FleetSummaryRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetSummaryRow {
    pub agent_version: String,
    pub group: String,
    pub health: Health,
    pub count: u64,
}

impl From<&pb::FleetSummary> for FleetSummary {
    fn from(s: &pb::FleetSummary) -> Self {
        let mut by_version = BTreeMap::<String, u64>::new();
        let mut by_group = BTreeMap::<String, u64>::new();
        for row in &s.rows {
            for (map, key) in [
                (&mut by_version, &row.agent_version),
                (&mut by_group, &row.group),
            ] {
                let count = map.entry(key.clone()).or_default();
                *count = count.saturating_add(row.count);
            }
        }
        Self {
            control_plane_version: s.control_plane_version.clone(),
            total_agents: s.total_agents,
            connected_agents: s.connected_agents,
            out_of_compliance: s.out_of_compliance,
            conditions: s.conditions.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            by_version,
            by_group,
            rows: s
                .rows
                .iter()
                .map(|r| FleetSummaryRow {
                    agent_version: r.agent_version.clone(),
                    group: r.group.clone(),
                    health: Health::from_proto(r.health),
                    count: r.count,
                })
                .collect(),
        }
    }
}

/// A channel: the version it serves its agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    pub name: String,
    /// Empty when the channel has no version yet.
    pub version: String,
    /// Critical updates do not wait for maintenance windows.
    pub critical: bool,
    /// True for `default` and `stable/rolling`: the version is the control plane's.
    pub follows_control_plane: bool,
    pub agent_count: u64,
    pub updated_at: Option<String>,
    /// Set on the answer of a changing call (or its dry run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<crate::Effect>,
}

impl From<&pb::Channel> for Channel {
    fn from(c: &pb::Channel) -> Self {
        Self {
            name: c.name.clone(),
            version: c.version.clone(),
            critical: c.critical,
            follows_control_plane: c.follows_control_plane,
            agent_count: c.agent_count,
            updated_at: time(c.updated_at.as_ref()),
            effect: c.effect.as_ref().map(crate::Effect::from),
        }
    }
}

/// The control plane's version: no agent runs above it or more than one major below it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ControlPlane {
    /// Empty when not set.
    pub version: String,
    pub updated_at: Option<String>,
    /// Set on the answer of a changing call (or its dry run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<crate::Effect>,
}

impl From<&pb::ControlPlaneVersion> for ControlPlane {
    fn from(cp: &pb::ControlPlaneVersion) -> Self {
        Self {
            version: cp.version.clone(),
            updated_at: time(cp.updated_at.as_ref()),
            effect: cp.effect.as_ref().map(crate::Effect::from),
        }
    }
}

/// A recurring maintenance window, in UTC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Lower-case English weekday names, Monday first.
    pub days: Vec<String>,
    /// `HH:MM`, UTC.
    pub start_utc: String,
    pub duration_minutes: u32,
    /// The same window as droverctl reads it, e.g. `mon-fri 02:00+1h`.
    pub text: String,
}

const DAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

impl From<&pb::MaintenanceSchedule> for Window {
    fn from(s: &pb::MaintenanceSchedule) -> Self {
        // Proto weekdays are Monday = 1; the rules crate counts Monday = 0.
        let days = drover_rules::Weekdays::from_days(
            s.days
                .iter()
                .filter_map(|d| u32::try_from(*d).ok()?.checked_sub(1)),
        );
        let duration_minutes = s
            .duration
            .as_ref()
            .and_then(|d| u32::try_from(d.seconds / 60).ok())
            .unwrap_or_default();
        let rules = drover_rules::MaintenanceSchedule {
            days,
            start_minute_utc: s.start_minute_utc,
            duration_minutes,
        };
        Self {
            days: days
                .days()
                .filter_map(|d| DAY_NAMES.get(d as usize).map(|n| n.to_string()))
                .collect(),
            start_utc: format!(
                "{:02}:{:02}",
                s.start_minute_utc / 60,
                s.start_minute_utc % 60
            ),
            duration_minutes,
            text: rules.to_string(),
        }
    }
}

/// A group's maintenance window and when it next opens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupSchedule {
    pub group: String,
    pub window: Option<Window>,
    pub next_window_start: Option<String>,
    pub next_window_end: Option<String>,
    /// Set on the answer of a changing call (or its dry run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<crate::Effect>,
}

impl From<&pb::GroupSchedule> for GroupSchedule {
    fn from(s: &pb::GroupSchedule) -> Self {
        Self {
            group: s.group.clone(),
            window: s.schedule.as_ref().map(Window::from),
            next_window_start: s.next_window_start.as_ref().map(time_text),
            next_window_end: s.next_window_end.as_ref().map(time_text),
            effect: s.effect.as_ref().map(crate::Effect::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_names_its_days_monday_first_and_reads_as_droverctl_writes_it() {
        let schedule = pb::MaintenanceSchedule {
            days: vec![
                pb::Weekday::Sunday as i32,
                pb::Weekday::Monday as i32,
                pb::Weekday::Tuesday as i32,
                pb::Weekday::Wednesday as i32,
                pb::Weekday::Thursday as i32,
                pb::Weekday::Friday as i32,
            ],
            start_minute_utc: 22 * 60 + 30,
            duration: Some(prost_types::Duration {
                seconds: 3 * 3600,
                nanos: 0,
            }),
            valid_until: None,
        };
        let window = Window::from(&schedule);
        assert_eq!(
            window.days,
            [
                "monday",
                "tuesday",
                "wednesday",
                "thursday",
                "friday",
                "sunday"
            ]
        );
        assert_eq!(window.start_utc, "22:30");
        assert_eq!(window.duration_minutes, 180);
        assert!(window.text.contains("22:30"), "{}", window.text);
    }
}
