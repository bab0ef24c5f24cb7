//! Strata on the command line: the create flags' settings line, held strata, and a plan's
//! coverage matrix.

use drover_proto::v1 as pb;

use crate::render::{Table, Text};

/// One line: which labels stratify, the k that earns a canary, what a failure stops.
pub fn settings_line(s: &pb::StrataSettings) -> String {
    if s.labels.is_empty() {
        return "strata: none (canaries in the rollout's order)".into();
    }
    format!(
        "strata by {}: a canary in every stratum of at least {} agents of a group; a failure \
         halts the {}",
        s.labels.join(", "),
        s.min_agents,
        if s.halt_scope == "stratum" {
            "failing stratum only"
        } else {
            "whole rollout"
        }
    )
}

/// Who has heard the latest stop: counts, then the stragglers by name.
pub fn stop_lines(mut text: Text, status: &pb::RolloutStatus) -> Text {
    let Some(acks) = &status.stop_acks else {
        return text;
    };
    let at = crate::names::time_or_dash(acks.stopped_at.as_ref());
    let line = format!(
        "stop epoch {} ({at}): {} acknowledged, {} not yet, {} unreachable",
        acks.epoch, acks.acknowledged, acks.not_yet, acks.unreachable
    );
    text = if acks.not_yet + acks.unreachable > 0 {
        text.alert(line)
    } else {
        text.line(line)
    };
    if !acks.stragglers.is_empty() {
        let names: Vec<String> = acks
            .stragglers
            .iter()
            .map(|s| format!("{} ({})", s.agent_id, s.state.replace('_', " ")))
            .collect();
        let more = (acks.not_yet + acks.unreachable).saturating_sub(names.len() as u64);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        text = text.line(format!("  stragglers: {}{more}", names.join(", ")));
    }
    text
}

/// The held strata, one alert line each.
pub fn held_lines(mut text: Text, status: &pb::RolloutStatus) -> Text {
    for held in &status.held_strata {
        text = text.alert(format!("stratum {} held: {}", held.stratum, held.note));
    }
    text
}

/// Per group and stratum: agents to update, whether it needs a canary, which one covers it.
pub fn coverage_table(plan: &pb::RolloutPlan) -> Option<Table> {
    if plan.groups.iter().all(|g| g.strata.len() <= 1) {
        return None;
    }
    let mut table = Table::new(&["group", "stratum", "agents", "needs a canary", "canary"]);
    for group in &plan.groups {
        for row in &group.strata {
            let needs = if row.held {
                "held"
            } else if row.needs_canary {
                "yes"
            } else {
                "no (too few)"
            };
            table.row(vec![
                group.name.clone(),
                row.stratum.clone(),
                row.agents.to_string(),
                needs.into(),
                if row.canary.is_empty() {
                    "-".into()
                } else {
                    row.canary.clone()
                },
            ]);
        }
    }
    Some(table)
}
