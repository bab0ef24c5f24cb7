//! droverctl rollout …, agents why/pin/unpin, events.

use clap::{Args, Subcommand, ValueEnum};
use drover_proto::v1::{self as pb, admin_service_client::AdminServiceClient};
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::{
    render::{Table, millis_text},
    status_text,
};

#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Start a rollout of a channel from its current version to a new one, group by group.
    Create(SpecArgs),
    /// Show when each group would start and finish for today's inventory; changes nothing.
    Plan(SpecArgs),
    /// Each group's state and counts (initial, present, on target, healthy, failed).
    Status {
        #[arg(long)]
        channel: String,
    },
    /// Active rollouts.
    List,
    /// Stop moving anyone until resumed.
    Pause {
        #[arg(long)]
        channel: String,
    },
    Resume {
        #[arg(long)]
        channel: String,
    },
    /// Start a group now, whatever its order and window say (also restarts a halted group).
    StartGroup {
        #[arg(long)]
        channel: String,
        #[arg(long)]
        group: String,
        #[arg(long)]
        skip_canaries: bool,
    },
    /// Count a group as done, so the next one may start.
    MarkDone {
        #[arg(long)]
        channel: String,
        #[arg(long)]
        group: String,
    },
    /// Send a group (or, without --group, every group) back to the start version.
    Rollback {
        #[arg(long)]
        channel: String,
        #[arg(long)]
        group: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StrategyArg {
    HaltOnError,
    TimeBased,
}

#[derive(Args, Debug)]
pub struct SpecArgs {
    #[arg(long)]
    channel: String,
    /// The version the channel serves now.
    #[arg(long)]
    from: String,
    #[arg(long)]
    to: String,
    #[arg(long, value_enum, default_value_t = StrategyArg::HaltOnError)]
    strategy: StrategyArg,
    /// In order: NAME[:canaries=N,wait=HOURS,start=HOUR,window=HOURS,days=mon-fri].
    /// Defaults: no canaries, no wait, daily, window all day. Unlisted groups join the last.
    #[arg(long = "group", required = true)]
    groups: Vec<String>,
    /// Percent of a group on the target and healthy for it to be done.
    #[arg(long, default_value_t = 90)]
    done_threshold: u32,
    /// Failed agents that halt a group.
    #[arg(long, default_value_t = 1)]
    failure_threshold: u32,
    /// Agents of a group updating at once (0: no cap).
    #[arg(long, default_value_t = 0)]
    max_in_flight: u32,
    /// Ignore windows: each group starts as soon as its turn comes.
    #[arg(long)]
    immediate: bool,
}

fn parse_group(text: &str) -> Result<pb::RolloutGroupSpec, String> {
    let (name, options) = text.split_once(':').unwrap_or((text, ""));
    let mut group = pb::RolloutGroupSpec {
        name: name.to_string(),
        window_hours: 24,
        ..Default::default()
    };
    for option in options.split(',').filter(|o| !o.is_empty()) {
        let (key, value) = option
            .split_once('=')
            .ok_or_else(|| format!("'{option}' in --group {text} is not KEY=VALUE"))?;
        let number = || {
            value
                .parse::<u32>()
                .map_err(|_| format!("{key}={value} in --group {text} is not a number"))
        };
        match key {
            "canaries" => group.canary_count = number()?,
            "wait" => group.wait_hours = number()?,
            "start" => group.start_hour_utc = number()?,
            "window" => group.window_hours = number()?,
            "days" => {
                group.days = drover_rules::Weekdays::parse(value)?
                    .days()
                    .map(|d| d as i32 + 1)
                    .collect()
            }
            other => {
                return Err(format!(
                    "unknown --group option '{other}'; use canaries, wait, start, window, days"
                ));
            }
        }
    }
    Ok(group)
}

fn request(args: SpecArgs) -> Result<pb::CreateRolloutRequest, String> {
    Ok(pb::CreateRolloutRequest {
        channel: args.channel,
        start_version: args.from,
        target_version: args.to,
        strategy: match args.strategy {
            StrategyArg::HaltOnError => pb::RolloutStrategy::HaltOnError,
            StrategyArg::TimeBased => pb::RolloutStrategy::TimeBased,
        } as i32,
        groups: args
            .groups
            .iter()
            .map(|g| parse_group(g))
            .collect::<Result<_, _>>()?,
        done_threshold_percent: args.done_threshold,
        failure_threshold: args.failure_threshold,
        max_in_flight: args.max_in_flight,
        immediate: args.immediate,
    })
}

pub async fn run(
    client: &mut AdminServiceClient<Channel>,
    command: RolloutCommand,
) -> Result<(Value, String), String> {
    use RolloutCommand as C;
    let status = match command {
        C::Plan(args) => {
            let plan = client
                .plan_rollout(request(args)?)
                .await
                .map_err(status_text)?
                .into_inner();
            return Ok(plan_output(&plan));
        }
        C::List => {
            let list = client
                .list_rollouts(pb::ListRolloutsRequest {})
                .await
                .map_err(status_text)?
                .into_inner();
            let json = Value::Array(list.rollouts.iter().map(status_json).collect());
            let text = list
                .rollouts
                .iter()
                .map(status_text_table)
                .collect::<Vec<_>>()
                .join("\n\n");
            return Ok((
                json,
                if text.is_empty() {
                    "no active rollouts".into()
                } else {
                    text
                },
            ));
        }
        C::Create(args) => client.create_rollout(request(args)?).await,
        C::Status { channel } => client.get_rollout_status(pb::RolloutRef { channel }).await,
        C::Pause { channel } => client.pause_rollout(pb::RolloutRef { channel }).await,
        C::Resume { channel } => client.resume_rollout(pb::RolloutRef { channel }).await,
        C::StartGroup {
            channel,
            group,
            skip_canaries,
        } => {
            client
                .start_group(pb::StartGroupRequest {
                    channel,
                    group,
                    skip_canaries,
                })
                .await
        }
        C::MarkDone { channel, group } => {
            client
                .mark_group_done(pb::GroupRef { channel, group })
                .await
        }
        C::Rollback { channel, group } => {
            client
                .rollback(pb::GroupRef {
                    channel,
                    group: group.unwrap_or_default(),
                })
                .await
        }
    }
    .map_err(status_text)?
    .into_inner();
    Ok((status_json(&status), status_text_table(&status)))
}

fn ts(t: Option<&prost_types::Timestamp>) -> String {
    t.map(millis_text).unwrap_or_else(|| "-".into())
}

fn status_json(s: &pb::RolloutStatus) -> Value {
    json!({
        "rollout_id": s.rollout_id,
        "channel": s.channel,
        "start_version": s.start_version,
        "target_version": s.target_version,
        "status": s.status,
        "paused": s.paused,
        "groups": s.groups.iter().map(|g| json!({
            "name": g.name, "state": g.state, "note": g.note, "canaries": g.canaries,
            "initial": g.initial, "present": g.present, "on_target": g.on_target,
            "healthy": g.healthy, "failed": g.failed,
            "started_at": g.started_at.as_ref().map(millis_text),
            "done_at": g.done_at.as_ref().map(millis_text),
        })).collect::<Vec<_>>(),
    })
}

fn status_text_table(s: &pb::RolloutStatus) -> String {
    let mut table = Table::new(&[
        "group",
        "state",
        "initial",
        "present",
        "on target",
        "healthy",
        "failed",
        "note",
    ]);
    for g in &s.groups {
        table.row(vec![
            g.name.clone(),
            g.state.clone(),
            g.initial.to_string(),
            g.present.to_string(),
            g.on_target.to_string(),
            g.healthy.to_string(),
            g.failed.to_string(),
            g.note.clone(),
        ]);
    }
    let paused = if s.paused { " (paused)" } else { "" };
    format!(
        "rollout {} on channel {}: {} → {}, {}{paused}\n\n{}",
        s.rollout_id,
        s.channel,
        s.start_version,
        s.target_version,
        s.status,
        table.render()
    )
}

fn plan_output(plan: &pb::RolloutPlan) -> (Value, String) {
    let json = Value::Array(
        plan.groups
            .iter()
            .map(|g| {
                json!({
                    "group": g.name, "agents": g.agents,
                    "starts_at": g.starts_at.as_ref().map(millis_text),
                    "done_at": g.done_at.as_ref().map(millis_text),
                })
            })
            .collect(),
    );
    let mut table = Table::new(&["group", "agents", "would start", "would be done"]);
    for g in &plan.groups {
        table.row(vec![
            g.name.clone(),
            g.agents.to_string(),
            ts(g.starts_at.as_ref()),
            ts(g.done_at.as_ref()),
        ]);
    }
    (
        json,
        format!(
            "{}\n(assuming every update succeeds; nothing was changed)",
            table.render()
        ),
    )
}

pub fn explanation_output(e: &pb::AgentExplanation) -> (Value, String) {
    let json = json!({
        "agent_id": e.agent_id, "current_version": e.current_version,
        "target_version": e.target_version, "reason": e.reason, "explanation": e.explanation,
    });
    (json, e.explanation.clone())
}

pub fn events_output(events: &[pb::Event]) -> (Value, String) {
    let json = Value::Array(
        events
            .iter()
            .map(|e| {
                json!({
                    "event_id": e.event_id, "at": e.at.as_ref().map(millis_text), "kind": e.kind,
                    "rollout_id": e.rollout_id, "group": e.group, "agent_id": e.agent_id,
                    "actor": e.actor, "text": e.text,
                })
            })
            .collect(),
    );
    let mut table = Table::new(&["time", "kind", "actor", "group", "agent", "what"]);
    for e in events {
        let dash = |s: &str| {
            if s.is_empty() {
                "-".to_string()
            } else {
                s.to_string()
            }
        };
        table.row(vec![
            ts(e.at.as_ref()),
            e.kind.clone(),
            e.actor.clone(),
            dash(&e.group),
            dash(&e.agent_id),
            e.text.clone(),
        ]);
    }
    (json, table.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_specs_parse_with_defaults_and_clear_errors() {
        let g = parse_group("prod:canaries=2,wait=24,start=2,window=4,days=mon-fri").unwrap();
        assert_eq!(
            (
                g.canary_count,
                g.wait_hours,
                g.start_hour_utc,
                g.window_hours,
                g.days.len()
            ),
            (2, 24, 2, 4, 5)
        );
        let g = parse_group("dev").unwrap();
        assert_eq!(
            (g.name.as_str(), g.window_hours, g.canary_count),
            ("dev", 24, 0)
        );
        assert!(
            parse_group("dev:color=red")
                .unwrap_err()
                .contains("unknown --group option")
        );
        assert!(
            parse_group("dev:wait=soon")
                .unwrap_err()
                .contains("not a number")
        );
    }
}
