//! `droverctl fleet summary`.

use clap::Subcommand;
use drover_api as api;
use drover_proto::v1 as pb;

use super::{Client, status_text};
use crate::{
    names::{health_name, or_dash},
    render::{Reply, Table, Text},
};

#[derive(Subcommand, Debug)]
pub enum FleetCommand {
    /// Agents counted by version × group × health.
    Summary,
}

pub async fn run(client: &mut Client, command: FleetCommand) -> Result<Reply, String> {
    match command {
        FleetCommand::Summary => {
            let summary = client
                .get_fleet_summary(pb::GetFleetSummaryRequest {})
                .await
                .map_err(status_text)?
                .into_inner();
            Ok(Reply::new(
                api::FleetSummary::from(&summary),
                summary_text(&summary),
            ))
        }
    }
}

fn summary_text(s: &pb::FleetSummary) -> Text {
    let mut table = Table::new(&["version", "group", "health", "agents"]);
    for r in &s.rows {
        table.row(vec![
            r.agent_version.clone(),
            r.group.clone(),
            health_name(r.health).into(),
            r.count.to_string(),
        ]);
    }
    Text::new()
        .line(format!(
            "control plane: {}   agents: {}   connected: {}",
            or_dash(&s.control_plane_version),
            s.total_agents,
            s.connected_agents,
        ))
        .line(conditions_line(s))
        .line("")
        .table(table)
}

/// `failing: 3   reverted: 0   behind_target: 12   stuck: 1`, in the rules' order.
fn conditions_line(s: &pb::FleetSummary) -> String {
    drover_rules::AgentCondition::ALL
        .iter()
        .map(|c| {
            let n = s.conditions.get(c.as_str()).copied().unwrap_or(0);
            format!("{c}: {n}")
        })
        .collect::<Vec<_>>()
        .join("   ")
}
