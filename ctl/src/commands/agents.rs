//! `droverctl agents list|show|why|pin|unpin`.

use clap::{Args, Subcommand, ValueEnum};
use drover_api as api;
use drover_proto::v1 as pb;

use super::{Client, effect_text, status_text};
use crate::{
    names::{health_name, or_dash, outcome_name, state_name, time_text, yes_no},
    render::{Reply, Table, Text},
};

#[derive(Subcommand, Debug)]
pub enum AgentsCommand {
    /// List agents, optionally filtered. Pages through everything with --all.
    List(ListArgs),
    /// Everything known about one agent, including what it should run and why.
    Show {
        /// The agent's id, as `agents list` shows it.
        agent_id: String,
    },
    /// Why an agent runs what it runs, or why it has not updated, in plain words.
    Why {
        /// The agent's id, as `agents list` shows it.
        agent_id: String,
    },
    /// Keep an agent on its version: rollouts pass it by.
    Pin {
        /// The agent's id, as `agents list` shows it.
        agent_id: String,
        /// Why it is pinned, for whoever looks next (shown with the agent and in events).
        #[arg(long, default_value = "")]
        note: String,
        /// Check the pin and show whether the agent's target would change; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Release a pinned agent: it follows its channel and rollouts again.
    Unpin {
        /// The agent's id, as `agents list` shows it.
        agent_id: String,
        /// Check the unpin and show whether the agent's target would change; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Enrolled agents' identities: group, join token, certificate expiry, revocation.
    Identities {
        /// Only agents whose id sorts after this (for paging).
        #[arg(long, default_value = "")]
        after: String,
        /// At most this many (at most 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Revoke an agent's identity (admin role): its certificate is refused from now on, its
    /// open stream is cut, and its id is never given out again.
    Revoke {
        /// The agent's id, as `agents list` shows it.
        agent_id: String,
        /// Check the request and say what it would do; revoke nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// An agent's update attempts (from, to, outcome, reason, times) and the decisions and
    /// changes about it (events), newest first.
    History {
        /// The agent's id, as `agents list` shows it.
        agent_id: String,
        /// At most this many attempts, and this many events (at most 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only agents in this group.
    #[arg(long)]
    pub group: Option<String>,
    /// Only agents running exactly this version.
    #[arg(long)]
    pub version: Option<String>,
    /// Only agents of this health.
    #[arg(long, value_enum)]
    pub health: Option<HealthArg>,
    /// Only agents on this channel.
    #[arg(long)]
    pub channel: Option<String>,
    /// Agents per page, at most 1000 (default 100; with --all, 1000: ten round trips for a
    /// 10k fleet instead of a hundred).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Fetch every page, not just the first.
    #[arg(long)]
    pub all: bool,
    /// Only agents whose version breaks the control-plane constraints.
    #[arg(long)]
    pub out_of_compliance: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum HealthArg {
    /// The agent's health checks pass.
    Healthy,
    /// The agent's health checks fail.
    Unhealthy,
    /// No health reported yet.
    Unknown,
}

pub async fn run(client: &mut Client, command: AgentsCommand) -> Result<Reply, String> {
    match command {
        AgentsCommand::List(args) => list(client, args).await,
        AgentsCommand::Identities { after, limit } => {
            super::tokens::identities(client, after, limit).await
        }
        AgentsCommand::Revoke { agent_id, dry_run } => {
            super::tokens::revoke_agent(client, agent_id, dry_run).await
        }
        AgentsCommand::History { agent_id, limit } => {
            super::agent_history::run(client, agent_id, limit).await
        }
        AgentsCommand::Show { agent_id } => {
            let agent = client
                .get_agent(pb::GetAgentRequest { agent_id })
                .await
                .map_err(status_text)?
                .into_inner();
            Ok(Reply::new(api::Agent::from(&agent), details(&agent)))
        }
        AgentsCommand::Why { agent_id } => {
            let e = client
                .explain_agent(pb::GetAgentRequest { agent_id })
                .await
                .map_err(status_text)?
                .into_inner();
            let data = api::AgentExplanation::from(&e);
            let mut text = Text::new().line(e.explanation.clone());
            if !data.reason_explanation.is_empty() {
                text = text.line(format!("({}: {})", data.reason, data.reason_explanation));
            }
            Ok(Reply::new(data, text))
        }
        AgentsCommand::Pin {
            agent_id,
            note,
            dry_run,
        } => {
            let request = pb::PinAgentRequest {
                agent_id,
                note,
                dry_run,
            };
            let agent = client
                .pin_agent(request)
                .await
                .map_err(status_text)?
                .into_inner();
            let text = effect_text(agent.effect.as_ref())
                .filter(|_| dry_run)
                .unwrap_or_else(|| format!("{} pinned at {}", agent.agent_id, agent.agent_version));
            Ok(Reply::new(api::Agent::from(&agent), text))
        }
        AgentsCommand::Unpin { agent_id, dry_run } => {
            let agent = client
                .unpin_agent(pb::UnpinAgentRequest { agent_id, dry_run })
                .await
                .map_err(status_text)?
                .into_inner();
            let text = effect_text(agent.effect.as_ref())
                .filter(|_| dry_run)
                .unwrap_or_else(|| format!("{} unpinned", agent.agent_id));
            Ok(Reply::new(api::Agent::from(&agent), text))
        }
    }
}

async fn list(client: &mut Client, args: ListArgs) -> Result<Reply, String> {
    let health = match args.health {
        None => pb::AgentHealth::Unspecified,
        Some(HealthArg::Healthy) => pb::AgentHealth::Healthy,
        Some(HealthArg::Unhealthy) => pb::AgentHealth::Unhealthy,
        Some(HealthArg::Unknown) => pb::AgentHealth::Unknown,
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
    let (total, next_after) = loop {
        let page = client
            .list_agents(pb::ListAgentsRequest {
                filter: Some(filter.clone()),
                page_size: args.limit.unwrap_or(if args.all { 1000 } else { 100 }),
                page_token: page_token.clone(),
            })
            .await
            .map_err(status_text)?
            .into_inner();
        agents.extend(page.agents);
        if !args.all || page.next_page_token.is_empty() {
            let next = (!page.next_page_token.is_empty()).then_some(page.next_page_token);
            break (page.total_matching, next);
        }
        page_token = page.next_page_token;
    };
    let data = api::AgentPage {
        agents: agents.iter().map(api::Agent::from).collect(),
        total_matching: total,
        next_after,
        next_offset: None,
    };
    Ok(Reply::new(data, table(&agents, total)))
}

fn table(agents: &[pb::Agent], total: u64) -> Text {
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
        let target = a.directive.as_ref().map(|d| d.target_version.as_str());
        table.row(vec![
            a.agent_id.clone(),
            a.group.clone(),
            a.channel.clone(),
            or_dash(&a.agent_version),
            or_dash(target.unwrap_or_default()),
            health_name(a.health).into(),
            state_name(a.updater_state).to_lowercase(),
            yes_no(a.connected),
        ]);
    }
    Text::from(table).line(format!("({} shown of {total} matching)", agents.len()))
}

fn details(a: &pb::Agent) -> Text {
    let time = |t: Option<&prost_types::Timestamp>| t.map(time_text).unwrap_or_default();
    let mut text = Text::new()
        .line(format!("agent:           {}", a.agent_id))
        .line(format!("hostname:        {}", or_dash(&a.hostname)))
        .line(format!("group:           {}", a.group))
        .line(format!("channel:         {}", a.channel))
        .line(format!("version:         {}", or_dash(&a.agent_version)))
        .line(format!("health:          {}", health_name(a.health)))
        .line(format!(
            "updater state:   {}",
            state_name(a.updater_state).to_lowercase()
        ))
        .line(format!("updater version: {}", or_dash(&a.updater_version)))
        .line(format!("connected:       {}", yes_no(a.connected)))
        .line(format!("first seen:      {}", time(a.first_seen.as_ref())))
        .line(format!("last seen:       {}", time(a.last_seen.as_ref())));
    if !a.labels.is_empty() {
        let mut labels: Vec<_> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        text = text.line(format!("labels:          {}", labels.join(", ")));
    }
    let window = match (&a.next_window_start, &a.next_window_end) {
        (Some(start), Some(end)) => format!("{} – {}", time_text(start), time_text(end)),
        _ => "none: updates install as soon as they arrive".into(),
    };
    text = text.line(format!("next window:     {window}"));
    if a.pinned {
        text = text.line("pinned:          yes (rollouts pass it by)");
    }
    if !a.updater_decision.is_empty() {
        text = text.line(format!(
            "updater says:    {} — {}",
            a.updater_decision, a.updater_decision_detail
        ));
    }
    if let Some(d) = &a.directive {
        let critical = if d.critical { " (critical)" } else { "" };
        text = text
            .line(format!(
                "target:          {}{critical}",
                or_dash(&d.target_version)
            ))
            .line(format!(
                "why:             {} — {}",
                d.reason, d.reason_detail
            ));
    }
    if let Some(r) = &a.last_report {
        let error = if r.error.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.error)
        };
        let line = format!(
            "last update:     {} → {}: {}{error}",
            or_dash(&r.from_version),
            r.to_version,
            outcome_name(r.outcome).to_lowercase(),
        );
        let failed = matches!(
            pb::UpdateOutcome::try_from(r.outcome),
            Ok(pb::UpdateOutcome::Failed | pb::UpdateOutcome::Reverted)
        );
        text = if failed {
            text.alert(line)
        } else {
            text.line(line)
        };
    }
    text
}
