//! `droverctl agents history ID`: an agent's update attempts and the events about it, newest
//! first, from the coordinator's store.

use drover_proto::v1 as pb;

use super::{Client, events::events_table, status_text};
use crate::{
    names::{or_dash, outcome_name, time_or_dash},
    render::{Reply, Table, Text},
};

pub async fn run(client: &mut Client, agent_id: String, limit: u32) -> Result<Reply, String> {
    let history = client
        .get_agent_history(pb::GetAgentHistoryRequest { agent_id, limit })
        .await
        .map_err(status_text)?
        .into_inner();
    let mut attempts = Table::new(&["finished", "from → to", "outcome", "reason", "rollout"]);
    for r in &history.reports {
        let cells = vec![
            time_or_dash(r.finished_at.as_ref()),
            format!("{} → {}", or_dash(&r.from_version), r.to_version),
            outcome(r.outcome),
            or_dash(&r.error),
            or_dash(&r.rollout_id),
        ];
        if failed(r.outcome) {
            attempts.alert_row(cells);
        } else {
            attempts.row(cells);
        }
    }
    let mut text = Text::new().line(format!(
        "agent {} runs {} (group {}, channel {})",
        history.agent_id,
        or_dash(&history.agent_version),
        or_dash(&history.group),
        or_dash(&history.channel)
    ));
    text = text.line("").line("update attempts, newest first");
    text = if history.reports.is_empty() {
        text.line("  none yet")
    } else {
        text.table(attempts)
    };
    text = text.line("").line("events, newest first");
    text = if history.events.is_empty() {
        text.line("  none yet")
    } else {
        text.table(events_table(&history.events))
    };
    Ok(Reply::new(drover_api::AgentHistory::from(&history), text))
}

/// The outcome's stable text, as the store and the HTTP API spell it.
fn outcome(value: i32) -> String {
    outcome_name(value).to_lowercase()
}

fn failed(value: i32) -> bool {
    matches!(
        pb::UpdateOutcome::try_from(value),
        Ok(pb::UpdateOutcome::Failed | pb::UpdateOutcome::Reverted | pb::UpdateOutcome::Refused)
    )
}
