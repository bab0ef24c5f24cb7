//! `droverctl rollout list --all` and `droverctl rollout show ID`: rollouts from the
//! coordinator's store, whether active or finished.

use drover_proto::v1 as pb;

use super::{is_alert, status_text_into};
use crate::{
    commands::{Client, events::events_table, status_text},
    names::time_or_dash,
    render::{Reply, Table, Text},
};

pub async fn list_all(client: &mut Client, limit: u32, after: String) -> Result<Reply, String> {
    let page = client
        .list_rollouts(pb::ListRolloutsRequest {
            all: true,
            limit,
            page_token: after,
        })
        .await
        .map_err(status_text)?
        .into_inner();
    let mut table = Table::new(&["rollout", "status", "channel", "from → to", "created"]);
    for r in &page.rollouts {
        let cells = vec![
            r.rollout_id.clone(),
            r.status.clone(),
            r.channel.clone(),
            format!("{} → {}", r.start_version, r.target_version),
            time_or_dash(r.created_at.as_ref()),
        ];
        if is_alert(&r.status) {
            table.alert_row(cells);
        } else {
            table.row(cells);
        }
    }
    let mut text = Text::new().table(table);
    if page.rollouts.is_empty() {
        text = text.line("no rollouts yet");
    }
    if !page.next_page_token.is_empty() {
        text = text.line(format!(
            "more: droverctl rollout list --all --after {}",
            page.next_page_token
        ));
    }
    Ok(Reply::new(drover_api::RolloutPage::from(&page), text))
}

pub async fn show(client: &mut Client, rollout_id: String, limit: u32) -> Result<Reply, String> {
    let detail = client
        .get_rollout(pb::GetRolloutRequest { rollout_id, limit })
        .await
        .map_err(status_text)?
        .into_inner();
    let mut text = match &detail.rollout {
        Some(rollout) => {
            let trace = if rollout.trace_id.is_empty() {
                "none (made before tracing)".to_string()
            } else if rollout.trace_sampled {
                rollout.trace_id.clone()
            } else {
                format!(
                    "{} (not sampled: nothing of it was exported)",
                    rollout.trace_id
                )
            };
            status_text_into(Text::new(), rollout)
                .line(format!(
                    "created {}",
                    time_or_dash(rollout.created_at.as_ref())
                ))
                .line(format!("trace id {trace}"))
        }
        None => Text::new(),
    };
    for timeline in &detail.timelines {
        let title = if timeline.group.is_empty() {
            "timeline: the rollout".to_string()
        } else {
            format!("timeline: group {}", timeline.group)
        };
        text = text.line("").line(title);
        text = if timeline.events.is_empty() {
            text.line("  nothing yet")
        } else {
            text.table(events_table(&timeline.events))
        };
    }
    if detail.truncated {
        text = text
            .line("")
            .line("older entries left out; ask for more with --limit (at most 1000)");
    }
    Ok(Reply::new(drover_api::RolloutDetail::from(&detail), text))
}
