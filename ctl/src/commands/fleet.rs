//! `droverctl fleet summary`.

use clap::Subcommand;
use drover_proto::v1 as pb;
use serde_json::{Value, json};

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
            Ok(Reply::new(summary_json(&summary), summary_text(&summary)))
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
        .line("")
        .table(table)
}

fn summary_json(s: &pb::FleetSummary) -> Value {
    let mut by_version = serde_json::Map::new();
    let mut by_group = serde_json::Map::new();
    for row in &s.rows {
        for (map, key) in [
            (&mut by_version, &row.agent_version),
            (&mut by_group, &row.group),
        ] {
            let entry = map.entry(key.clone()).or_insert(json!(0));
            *entry = json!(entry.as_u64().unwrap_or(0).saturating_add(row.count));
        }
    }
    json!({
        "control_plane_version": s.control_plane_version,
        "total_agents": s.total_agents,
        "connected_agents": s.connected_agents,
        "out_of_compliance": s.out_of_compliance,
        "by_version": by_version,
        "by_group": by_group,
        "rows": s.rows.iter().map(|r| json!({
            "agent_version": r.agent_version,
            "group": r.group,
            "health": health_name(r.health),
            "count": r.count,
        })).collect::<Vec<_>>(),
    })
}
