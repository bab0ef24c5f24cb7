//! `droverctl channels list|set`.

use clap::Subcommand;
use drover_api as api;
use drover_proto::v1 as pb;

use super::{Client, effect_text, status_text};
use crate::{
    names::{or_dash, yes_no},
    render::{Reply, Table, Text},
};

#[derive(Subcommand, Debug)]
pub enum ChannelsCommand {
    /// Every channel with its version, critical flag and agent count.
    List,
    /// Set a channel's version and/or critical flag; connected updaters get it at once.
    ///
    /// The version must respect the control plane: never above it, never more than one
    /// major below. `default` and `stable/rolling` follow the control plane instead.
    Set {
        /// The channel, e.g. `stable/cloud`; created if it does not exist.
        name: String,
        /// The version the channel serves from now on.
        version: Option<String>,
        /// Mark updates on this channel critical: they install outside maintenance windows.
        #[arg(long)]
        critical: Option<bool>,
        /// Check the change and show how many agents would get a new directive; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(client: &mut Client, command: ChannelsCommand) -> Result<Reply, String> {
    let channel = match command {
        ChannelsCommand::List => {
            let channels = client
                .list_channels(pb::ListChannelsRequest {})
                .await
                .map_err(status_text)?
                .into_inner()
                .channels;
            let data: Vec<_> = channels.iter().map(api::Channel::from).collect();
            return Ok(Reply::new(data, table(&channels)));
        }
        ChannelsCommand::Set {
            name,
            version,
            critical,
            dry_run,
        } => set(client, name, version, critical, dry_run).await?,
    };
    let text = match effect_text(channel.effect.as_ref()) {
        Some(line) => Text::new()
            .line(line)
            .line("")
            .table(table(std::slice::from_ref(&channel))),
        None => Text::from(table(std::slice::from_ref(&channel))),
    };
    Ok(Reply::new(api::Channel::from(&channel), text))
}

async fn set(
    client: &mut Client,
    name: String,
    version: Option<String>,
    critical: Option<bool>,
    dry_run: bool,
) -> Result<pb::Channel, String> {
    if dry_run && version.is_some() && critical.is_some() {
        // The second change's dry run would not see the first: ask for one at a time.
        return Err("--dry-run checks one change at a time: give a VERSION or --critical".into());
    }
    let mut channel = None;
    if let Some(version) = version {
        let request = pb::SetChannelVersionRequest {
            name: name.clone(),
            version,
            dry_run,
        };
        let reply = client.set_channel_version(request).await;
        channel = Some(reply.map_err(status_text)?.into_inner());
    }
    if let Some(critical) = critical {
        let request = pb::SetChannelCriticalRequest {
            name,
            critical,
            dry_run,
        };
        let reply = client.set_channel_critical(request).await;
        channel = Some(reply.map_err(status_text)?.into_inner());
    }
    channel.ok_or_else(|| "give a VERSION, --critical true|false, or both".to_string())
}

fn table(channels: &[pb::Channel]) -> Table {
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
            yes_no(c.critical),
            yes_no(c.follows_control_plane),
            c.agent_count.to_string(),
        ]);
    }
    table
}
