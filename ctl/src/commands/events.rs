//! `droverctl events`.

use clap::Args;
use drover_api as api;
use drover_proto::v1 as pb;

use super::{Client, status_text};
use crate::{
    names::{or_dash, time_or_dash},
    render::{Reply, Table},
};

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// At most this many events, the newest ones.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Only this agent's events.
    #[arg(long)]
    agent: Option<String>,
}

pub async fn run(client: &mut Client, args: EventsArgs) -> Result<Reply, String> {
    let request = pb::ListEventsRequest {
        limit: args.limit,
        agent_id: args.agent.unwrap_or_default(),
    };
    let events = client
        .list_events(request)
        .await
        .map_err(status_text)?
        .into_inner()
        .events;
    let data: Vec<_> = events.iter().map(api::Event::from).collect();
    Ok(Reply::new(data, events_table(&events)))
}

/// Events as a table, in the order given.
pub fn events_table(events: &[pb::Event]) -> Table {
    let mut table = Table::new(&["time", "kind", "actor", "group", "agent", "what"]);
    for e in events {
        table.row(vec![
            time_or_dash(e.at.as_ref()),
            e.kind.clone(),
            e.actor.clone(),
            or_dash(&e.group),
            or_dash(&e.agent_id),
            e.text.clone(),
        ]);
    }
    table
}
