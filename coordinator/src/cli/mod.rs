//! droverctl: the admin CLI. Talks to the coordinator's AdminService over gRPC.

mod render;
mod rollout;

use clap::{Args, Parser, Subcommand, ValueEnum};
use drover_proto::v1::{self as pb, admin_service_client::AdminServiceClient};
use serde_json::{Value, json};
use tonic::transport::Channel;

use render::{health_name, millis_text, state_name};

#[derive(Parser, Debug)]
#[command(
    name = "droverctl",
    version,
    about = "Steer and inspect a Drover fleet.",
    long_about = "Steer and inspect a Drover fleet.\n\n\
        droverctl talks to a coordinator's admin gRPC API (--coordinator or DROVER_COORDINATOR).\n\
        Output is a readable table; add `-o json` for scripts.",
    after_help = "Examples:\n  \
        droverctl fleet summary\n  \
        droverctl agents list --group prod --health unhealthy\n  \
        droverctl agents show web-01\n  \
        droverctl control-plane set 15.2.0\n  \
        droverctl channels set stable/cloud 15.1.3\n  \
        droverctl channels set stable/cloud --critical true\n  \
        droverctl rollout create --channel stable/cloud --from 15.1.3 --to 15.2.0 \\\n      \
          --group dev:canaries=1 --group prod:canaries=2,wait=24,start=2,window=4\n  \
        droverctl agents why web-01"
)]
pub struct Cli {
    /// The coordinator's gRPC address.
    #[arg(
        long,
        global = true,
        env = "DROVER_COORDINATOR",
        default_value = "http://127.0.0.1:7400"
    )]
    pub coordinator: String,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List and inspect agents.
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Counts of agents by version, group and health.
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Release channels: the version each channel serves and its critical flag.
    #[command(subcommand)]
    Channels(ChannelsCommand),
    /// The control plane's version: the ceiling for every agent (and what `default` and
    /// `stable/rolling` serve).
    #[command(subcommand, name = "control-plane")]
    ControlPlane(ControlPlaneCommand),
    /// Maintenance windows per group (UTC): when healthy agents may install non-critical updates.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Move a channel to a new version group by group, with canaries and automatic halts.
    #[command(subcommand)]
    Rollout(rollout::RolloutCommand),
    /// The event log: rollout transitions, admin actions and update outcomes, newest last.
    Events {
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only this agent's events.
        #[arg(long)]
        agent: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Every group's window and when it next opens.
    List,
    /// Set a group's window, e.g. `--days mon-fri --start 02:00 --duration 1h`.
    Set {
        #[arg(long)]
        group: String,
        /// Weekdays: `mon-fri`, `sat,sun`, `daily`.
        #[arg(long)]
        days: String,
        /// Start time, HH:MM in UTC.
        #[arg(long)]
        start: String,
        /// Window length: `45m`, `1h`, `1h30m` (at most 24h).
        #[arg(long)]
        duration: String,
    },
    /// Remove a group's window: its agents then install as soon as a target arrives.
    Clear {
        #[arg(long)]
        group: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AgentsCommand {
    /// List agents, optionally filtered. Pages through everything with --all.
    List(ListArgs),
    /// Everything known about one agent, including what it should run and why.
    Show {
        agent_id: String,
    },
    /// Why an agent runs what it runs, or why it has not updated, in plain words.
    Why {
        agent_id: String,
    },
    /// Keep an agent on its version: rollouts pass it by.
    Pin {
        agent_id: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    Unpin {
        agent_id: String,
    },
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[arg(long)]
    pub group: Option<String>,
    /// Only agents running exactly this version.
    #[arg(long)]
    pub version: Option<String>,
    /// healthy, unhealthy or unknown.
    #[arg(long)]
    pub health: Option<String>,
    #[arg(long)]
    pub channel: Option<String>,
    /// Agents per page (at most 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Fetch every page, not just the first.
    #[arg(long)]
    pub all: bool,
    /// Only agents whose version breaks the control-plane constraints.
    #[arg(long)]
    pub out_of_compliance: bool,
}

#[derive(Subcommand, Debug)]
pub enum FleetCommand {
    /// Agents counted by version × group × health.
    Summary,
}

#[derive(Subcommand, Debug)]
pub enum ChannelsCommand {
    /// Every channel with its version, critical flag and agent count.
    List,
    /// Set a channel's version and/or critical flag; connected updaters get it at once.
    ///
    /// The version must respect the control plane: never above it, never more than one
    /// major below. `default` and `stable/rolling` follow the control plane instead.
    Set {
        name: String,
        version: Option<String>,
        /// Mark updates on this channel critical: they install outside maintenance windows.
        #[arg(long)]
        critical: Option<bool>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ControlPlaneCommand {
    Get,
    /// Record the control plane's version; following channels move with it.
    Set {
        version: String,
    },
}

/// Runs the CLI; returns the text to print or an error message for stderr.
pub async fn run(cli: Cli) -> Result<String, String> {
    let mut client = connect(&cli.coordinator).await?;
    let value_and_table = match cli.command {
        Command::Agents(AgentsCommand::List(args)) => list_agents(&mut client, args).await?,
        Command::Agents(AgentsCommand::Show { agent_id }) => {
            let agent = client
                .get_agent(pb::GetAgentRequest { agent_id })
                .await
                .map_err(status_text)?
                .into_inner();
            (agent_json(&agent), render::agent_details(&agent))
        }
        Command::Fleet(FleetCommand::Summary) => {
            let summary = client
                .get_fleet_summary(pb::GetFleetSummaryRequest {})
                .await
                .map_err(status_text)?
                .into_inner();
            (summary_json(&summary), render::summary(&summary))
        }
        Command::Channels(ChannelsCommand::List) => {
            let channels = client
                .list_channels(pb::ListChannelsRequest {})
                .await
                .map_err(status_text)?
                .into_inner()
                .channels;
            let json = Value::Array(channels.iter().map(channel_json).collect());
            (json, render::channels(&channels))
        }
        Command::Channels(ChannelsCommand::Set {
            name,
            version,
            critical,
        }) => {
            if version.is_none() && critical.is_none() {
                return Err("give a VERSION, --critical true|false, or both".into());
            }
            let mut channel = None;
            if let Some(version) = version {
                let request = pb::SetChannelVersionRequest {
                    name: name.clone(),
                    version,
                };
                channel = Some(
                    client
                        .set_channel_version(request)
                        .await
                        .map_err(status_text)?
                        .into_inner(),
                );
            }
            if let Some(critical) = critical {
                let request = pb::SetChannelCriticalRequest { name, critical };
                channel = Some(
                    client
                        .set_channel_critical(request)
                        .await
                        .map_err(status_text)?
                        .into_inner(),
                );
            }
            let channel = channel.expect("one of the two requests ran");
            (
                channel_json(&channel),
                render::channels(std::slice::from_ref(&channel)),
            )
        }
        Command::Schedule(command) => schedule(&mut client, command).await?,
        Command::Rollout(command) => rollout::run(&mut client, command).await?,
        Command::Events { limit, agent } => {
            let request = pb::ListEventsRequest {
                limit,
                agent_id: agent.unwrap_or_default(),
            };
            let events = client
                .list_events(request)
                .await
                .map_err(status_text)?
                .into_inner()
                .events;
            rollout::events_output(&events)
        }
        Command::Agents(AgentsCommand::Why { agent_id }) => {
            let e = client
                .explain_agent(pb::GetAgentRequest { agent_id })
                .await
                .map_err(status_text)?
                .into_inner();
            rollout::explanation_output(&e)
        }
        Command::Agents(AgentsCommand::Pin { agent_id, note }) => {
            let agent = client
                .pin_agent(pb::PinAgentRequest { agent_id, note })
                .await
                .map_err(status_text)?
                .into_inner();
            (
                agent_json(&agent),
                format!("{} pinned at {}", agent.agent_id, agent.agent_version),
            )
        }
        Command::Agents(AgentsCommand::Unpin { agent_id }) => {
            let agent = client
                .unpin_agent(pb::GetAgentRequest { agent_id })
                .await
                .map_err(status_text)?
                .into_inner();
            (agent_json(&agent), format!("{} unpinned", agent.agent_id))
        }
        Command::ControlPlane(ControlPlaneCommand::Get) => {
            let cp = client
                .get_control_plane_version(pb::GetControlPlaneVersionRequest {})
                .await
                .map_err(status_text)?
                .into_inner();
            control_plane_output(&cp)
        }
        Command::ControlPlane(ControlPlaneCommand::Set { version }) => {
            let cp = client
                .set_control_plane_version(pb::SetControlPlaneVersionRequest { version })
                .await
                .map_err(status_text)?
                .into_inner();
            control_plane_output(&cp)
        }
    };
    let (json, table) = value_and_table;
    Ok(match cli.output {
        Output::Json => serde_json::to_string_pretty(&json).unwrap_or_default(),
        Output::Table => table,
    })
}

async fn connect(address: &str) -> Result<AdminServiceClient<Channel>, String> {
    let endpoint = Channel::from_shared(address.to_string())
        .map_err(|err| format!("'{address}' is not a valid coordinator address ({err}); use e.g. http://127.0.0.1:7400"))?
        .connect_timeout(std::time::Duration::from_secs(5));
    let channel = endpoint.connect().await.map_err(|err| {
        format!(
            "cannot reach the coordinator at {address} ({err}); is it running? \
             Point droverctl at it with --coordinator or DROVER_COORDINATOR"
        )
    })?;
    Ok(AdminServiceClient::new(channel))
}

fn status_text(status: tonic::Status) -> String {
    format!("{} ({:?})", status.message(), status.code())
}

async fn list_agents(
    client: &mut AdminServiceClient<Channel>,
    args: ListArgs,
) -> Result<(Value, String), String> {
    let health = match args.health.as_deref() {
        None => pb::AgentHealth::Unspecified,
        Some("healthy") => pb::AgentHealth::Healthy,
        Some("unhealthy") => pb::AgentHealth::Unhealthy,
        Some("unknown") => pb::AgentHealth::Unknown,
        Some(other) => {
            return Err(format!(
                "--health '{other}' is not one of healthy, unhealthy, unknown"
            ));
        }
    };
    let filter = pb::AgentFilter {
        group: args.group.unwrap_or_default(),
        agent_version: args.version.unwrap_or_default(),
        health: health as i32,
        channel: args.channel.unwrap_or_default(),
        out_of_compliance: args.out_of_compliance,
    };
    let mut agents = Vec::new();
    let mut page_token = String::new();
    let total = loop {
        let page = client
            .list_agents(pb::ListAgentsRequest {
                filter: Some(filter.clone()),
                page_size: args.limit,
                page_token: page_token.clone(),
            })
            .await
            .map_err(status_text)?
            .into_inner();
        agents.extend(page.agents);
        if !args.all || page.next_page_token.is_empty() {
            break page.total_matching;
        }
        page_token = page.next_page_token;
    };
    let json = json!({
        "total_matching": total,
        "agents": agents.iter().map(agent_json).collect::<Vec<_>>(),
    });
    Ok((json, render::agents(&agents, total)))
}

async fn schedule(
    client: &mut AdminServiceClient<Channel>,
    command: ScheduleCommand,
) -> Result<(Value, String), String> {
    let schedules = match command {
        ScheduleCommand::List => {
            client
                .list_schedules(pb::ListSchedulesRequest {})
                .await
                .map_err(status_text)?
                .into_inner()
                .schedules
        }
        ScheduleCommand::Set {
            group,
            days,
            start,
            duration,
        } => {
            let days = drover_rules::Weekdays::parse(&days)?;
            let start_minute_utc = drover_rules::schedule::parse_start(&start)?;
            let minutes = drover_rules::schedule::parse_duration_minutes(&duration)?;
            let request = pb::SetScheduleRequest {
                group,
                days: days.days().map(|d| d as i32 + 1).collect(),
                start_minute_utc,
                duration: Some(prost_types::Duration {
                    seconds: i64::from(minutes) * 60,
                    nanos: 0,
                }),
            };
            vec![
                client
                    .set_schedule(request)
                    .await
                    .map_err(status_text)?
                    .into_inner(),
            ]
        }
        ScheduleCommand::Clear { group } => {
            client
                .clear_schedule(pb::ClearScheduleRequest {
                    group: group.clone(),
                })
                .await
                .map_err(status_text)?;
            return Ok((
                json!({ "group": group, "cleared": true }),
                format!("schedule of group '{group}' cleared"),
            ));
        }
    };
    let json = Value::Array(schedules.iter().map(render::schedule_json).collect());
    Ok((json, render::schedules(&schedules)))
}

fn control_plane_output(cp: &pb::ControlPlaneVersion) -> (Value, String) {
    let updated = cp.updated_at.as_ref().map(millis_text).unwrap_or_default();
    let json = json!({ "version": cp.version, "updated_at": updated });
    let text = if cp.version.is_empty() {
        "control plane version: not set (droverctl control-plane set VERSION)".to_string()
    } else {
        format!("control plane version: {} (set {updated})", cp.version)
    };
    (json, text)
}

fn directive_json(d: &pb::Directive) -> Value {
    json!({
        "directive_id": d.directive_id,
        "target_version": d.target_version,
        "critical": d.critical,
        "reason": d.reason,
        "reason_detail": d.reason_detail,
        "control_plane_version": d.control_plane_version,
        "rollout_id": d.rollout_id,
    })
}

fn agent_json(a: &pb::Agent) -> Value {
    json!({
        "agent_id": a.agent_id,
        "hostname": a.hostname,
        "group": a.group,
        "channel": a.channel,
        "agent_version": a.agent_version,
        "updater_version": a.updater_version,
        "health": health_name(a.health),
        "updater_state": state_name(a.updater_state),
        "connected": a.connected,
        "pinned": a.pinned,
        "updater_decision": a.updater_decision,
        "updater_decision_detail": a.updater_decision_detail,
        "labels": a.labels,
        "first_seen": a.first_seen.as_ref().map(millis_text),
        "last_seen": a.last_seen.as_ref().map(millis_text),
        "directive": a.directive.as_ref().map(directive_json),
        "next_window_start": a.next_window_start.as_ref().map(millis_text),
        "next_window_end": a.next_window_end.as_ref().map(millis_text),
        "last_report": a.last_report.as_ref().map(|r| json!({
            "attempt_id": r.attempt_id,
            "from_version": r.from_version,
            "to_version": r.to_version,
            "outcome": render::outcome_name(r.outcome),
            "error": r.error,
            "directive_id": r.directive_id,
            "rollout_id": r.rollout_id,
        })),
    })
}

fn channel_json(c: &pb::Channel) -> Value {
    json!({
        "name": c.name,
        "version": c.version,
        "critical": c.critical,
        "follows_control_plane": c.follows_control_plane,
        "agent_count": c.agent_count,
        "updated_at": c.updated_at.as_ref().map(millis_text),
    })
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
            *entry = json!(entry.as_u64().unwrap_or(0) + row.count);
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
