//! `droverctl rollout create|plan|status|list|show|watch|pause|resume|start-group|mark-done|rollback|release-stratum`.

mod history;
pub mod spec;
mod strata;
pub mod watch;

use clap::Subcommand;
use drover_api as api;
use drover_proto::v1 as pb;

use super::{Client, effect_text, status_text};
use crate::render::{Reply, Table, Text};
use spec::SpecArgs;

#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Start a rollout of a channel from its current version to a new one, group by group.
    Create {
        #[command(flatten)]
        spec: SpecArgs,
        /// Check the rollout like the real create and show its plan and the agents it would
        /// move first; create nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show when each group would start and finish for today's inventory; changes nothing.
    Plan(SpecArgs),
    /// Each group's state and counts (initial, present, on target, healthy, failed).
    Status {
        /// The channel whose rollout to show.
        #[arg(long)]
        channel: String,
    },
    /// Active rollouts; with --all every rollout ever started (active, done, halted,
    /// rolled back), newest first, a page at a time.
    List {
        /// Every rollout ever started, not only the active ones.
        #[arg(long)]
        all: bool,
        /// With --all: rollouts per page (at most 1000).
        #[arg(long, default_value_t = 50, requires = "all")]
        limit: u32,
        /// With --all: continue after this rollout id (the last of the previous page).
        #[arg(long, requires = "all")]
        after: Option<String>,
    },
    /// One rollout by id, active or finished: its groups and each group's timeline (what
    /// happened, when, and who did it).
    Show {
        /// The rollout's id, as `rollout list --all` shows it.
        rollout_id: String,
        /// At most this many timeline entries, the newest (at most 1000).
        #[arg(long, default_value_t = 200)]
        limit: u32,
    },
    /// Follow a rollout live until it is done, halted or rolled back: progress bars on a
    /// terminal, one line per change otherwise. Exit status: 0 done, 1 halted, 2 rolled
    /// back, 3 it could not be watched.
    Watch(watch::WatchArgs),
    /// Stop moving anyone until resumed.
    Pause {
        /// The channel whose rollout to pause.
        #[arg(long)]
        channel: String,
        /// Check the request and show what would change (the agents affected per group); change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Let a paused rollout move agents again.
    Resume {
        /// The channel whose rollout to resume.
        #[arg(long)]
        channel: String,
        /// Check the request and show what would change (the agents affected per group); change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Start a group now, whatever its order and window say (also restarts a halted group).
    StartGroup {
        /// The channel whose rollout to steer.
        #[arg(long)]
        channel: String,
        /// The group to start.
        #[arg(long)]
        group: String,
        /// Move the whole group at once instead of its canaries first.
        #[arg(long)]
        skip_canaries: bool,
        /// Check the request and show what would change (the agents affected per group); change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Count a group as done; the next group then starts by the strategy's rules (its turn
    /// and its maintenance window), or at once with --now.
    MarkDone {
        /// The channel whose rollout to steer.
        #[arg(long)]
        channel: String,
        /// The group to count as done.
        #[arg(long)]
        group: String,
        /// Start the next group at once, even outside its window.
        #[arg(long)]
        now: bool,
        /// Check the request and show what would change (the agents affected per group); change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Let a stratum held after a failure confined to it update again.
    ReleaseStratum {
        /// The channel whose rollout holds it.
        #[arg(long)]
        channel: String,
        /// The stratum, as `rollout status` names it (e.g. os=rocky,arch=x86_64).
        stratum: String,
        /// Check the request and show what would change (the agents affected per group); change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Send a group (or, without --group, every group) back to the start version.
    Rollback {
        /// The channel whose rollout to roll back.
        #[arg(long)]
        channel: String,
        /// Only this group; without it, every group.
        #[arg(long)]
        group: Option<String>,
        /// Wait for each agent's maintenance window (by default the rollback goes out at
        /// once, like a critical update).
        #[arg(long)]
        respect_windows: bool,
        /// Check the request and show what would change (the agents affected per group); change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(client: &mut Client, command: RolloutCommand) -> Result<Reply, String> {
    use RolloutCommand as C;
    let status = match command {
        C::Plan(args) => {
            let plan = client
                .plan_rollout(spec::request(args)?)
                .await
                .map_err(status_text)?
                .into_inner();
            return Ok(spec::plan_reply(&plan));
        }
        C::List {
            all: true,
            limit,
            after,
        } => return history::list_all(client, limit, after.unwrap_or_default()).await,
        C::Show { rollout_id, limit } => return history::show(client, rollout_id, limit).await,
        // main runs `watch` itself (it streams and has its own exit codes).
        C::Watch(_) => return Err("rollout watch runs on its own; this is a bug".into()),
        C::List { all: false, .. } => {
            let list = client
                .list_rollouts(pb::ListRolloutsRequest::default())
                .await
                .map_err(status_text)?
                .into_inner();
            let data: Vec<_> = list.rollouts.iter().map(api::Rollout::from).collect();
            let mut text = Text::new();
            for (i, rollout) in list.rollouts.iter().enumerate() {
                if i > 0 {
                    text = text.line("");
                }
                text = status_text_into(text, rollout);
            }
            if list.rollouts.is_empty() {
                text = text.line("no active rollouts");
            }
            return Ok(Reply::new(data, text));
        }
        C::Create { spec, dry_run } => {
            let request = pb::CreateRolloutRequest {
                dry_run,
                ..spec::request(spec)?
            };
            client.create_rollout(request).await
        }
        C::Status { channel } => client.get_rollout_status(pb::RolloutRef { channel }).await,
        C::Pause { channel, dry_run } => {
            let request = pb::SteerRolloutRequest { channel, dry_run };
            client.pause_rollout(request).await
        }
        C::Resume { channel, dry_run } => {
            let request = pb::SteerRolloutRequest { channel, dry_run };
            client.resume_rollout(request).await
        }
        C::StartGroup {
            channel,
            group,
            skip_canaries,
            dry_run,
        } => {
            let request = pb::StartGroupRequest {
                channel,
                group,
                skip_canaries,
                dry_run,
            };
            client.start_group(request).await
        }
        C::MarkDone {
            channel,
            group,
            now,
            dry_run,
        } => {
            let request = pb::MarkGroupDoneRequest {
                channel,
                group,
                now,
                dry_run,
            };
            client.mark_group_done(request).await
        }
        C::ReleaseStratum {
            channel,
            stratum,
            dry_run,
        } => {
            let request = pb::ReleaseStratumRequest {
                channel,
                stratum,
                dry_run,
            };
            client.release_stratum(request).await
        }
        C::Rollback {
            channel,
            group,
            respect_windows,
            dry_run,
        } => {
            let request = pb::RollbackRequest {
                channel,
                group: group.unwrap_or_default(),
                respect_windows,
                dry_run,
            };
            client.rollback(request).await
        }
    }
    .map_err(status_text)?
    .into_inner();
    Ok(Reply::new(
        api::Rollout::from(&status),
        status_text_into(Text::new(), &status),
    ))
}

/// The rollout's verdict settings in one line: what halts a group, and how long it bakes.
fn verdict_settings_line(v: &pb::VerdictSettings) -> String {
    format!(
        "health verdict: bake {}s, observe {}s; halts on RSS +{} %, CPU +{} points, probe \
         latency +{} ms, failed probes +{} points or restarts {}×, at a false-halt rate of {} ppm",
        v.bake_seconds,
        v.observe_seconds,
        v.rss_percent,
        v.cpu_percent,
        v.latency_ms,
        v.probe_failure_percent,
        v.restart_ratio,
        v.error_rate_ppm
    )
}

/// A group's health verdict: its outcome, then one line per signal judged.
fn verdict_lines(text: Text, g: &pb::RolloutGroupStatus) -> Text {
    let Some(verdict) = &g.verdict else {
        return text;
    };
    let headline = format!("health verdict for {}: {}", g.name, verdict.outcome);
    let mut text = if verdict.outcome == "fail" {
        text.line("").alert(headline)
    } else {
        text.line("").line(headline)
    };
    for signal in &verdict.signals {
        text = text.line(format!("  {}: {}", signal.outcome, signal.text));
    }
    text
}

/// States shown in red on a terminal: something stopped and wants an admin.
pub(crate) fn is_alert(state: &str) -> bool {
    matches!(state, "halted" | "rolledback")
}

pub(crate) fn status_text_into(text: Text, s: &pb::RolloutStatus) -> Text {
    let mut header = vec![
        "group",
        "state",
        "initial",
        "present",
        "on target",
        "healthy",
        "failed",
        "note",
    ];
    if s.effect.is_some() {
        header.push("new directive");
    }
    let mut table = Table::new(&header);
    for g in &s.groups {
        let mut cells = vec![
            g.name.clone(),
            g.state.clone(),
            g.initial.to_string(),
            g.present.to_string(),
            g.on_target.to_string(),
            g.healthy.to_string(),
            g.failed.to_string(),
            g.note.clone(),
        ];
        if s.effect.is_some() {
            cells.push(g.agents_affected.to_string());
        }
        if is_alert(&g.state) {
            table.alert_row(cells);
        } else {
            table.row(cells);
        }
    }
    let paused = if s.paused { " (paused)" } else { "" };
    let headline = format!(
        "rollout {} on channel {}: {} → {}, {}{paused}",
        s.rollout_id, s.channel, s.start_version, s.target_version, s.status
    );
    let text = match effect_text(s.effect.as_ref()) {
        Some(line) => text.line(line),
        None => text,
    };
    let text = if is_alert(&s.status) {
        text.alert(headline)
    } else {
        text.line(headline)
    };
    let text = match &s.verdict {
        Some(v) => text.line(verdict_settings_line(v)),
        None => text,
    };
    let text = match &s.strata {
        Some(strata) => text.line(strata::settings_line(strata)),
        None => text,
    };
    let text = strata::held_lines(text, s);
    let text = strata::stop_lines(text, s);
    let mut text = text.line("").table(table);
    for g in &s.groups {
        text = verdict_lines(text, g);
    }
    match &s.plan {
        Some(plan) => spec::plan_text(text.line(""), plan),
        None => text,
    }
}
