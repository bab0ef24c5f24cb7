//! `droverctl rollout watch [ID] [--channel C]`: follow a rollout until it is done, halted
//! or rolled back, and exit so scripts and CI can wait on it: 0 done, 1 halted, 2 rolled
//! back, 3 it could not be watched (unknown rollout, coordinator gone for longer than
//! `--give-up-secs`).
//!
//! On a terminal: a block of per-group progress bars, redrawn in place. Otherwise: one
//! plain line whenever the rollout or a group changes, so a CI log reads as a history.
//! Polls the coordinator (`GetRollout`) every `--interval-secs`; a failed poll is retried
//! until the coordinator has been unreachable for `--give-up-secs`.

use std::{
    io::IsTerminal,
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::Args;
use drover_api as api;
use drover_proto::v1 as pb;

use super::super::{Client, status_text};
use crate::{
    output,
    render::{Format, clean},
};

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// The rollout's id (as `rollout list --all` shows it); or give --channel.
    #[arg(required_unless_present = "channel", conflicts_with = "channel")]
    pub rollout_id: Option<String>,
    /// Watch the rollout of this channel (the active one, else the last to finish).
    #[arg(long)]
    pub channel: Option<String>,
    /// Seconds between polls.
    #[arg(long, default_value_t = 2)]
    pub interval_secs: u64,
    /// Give up (exit 3) when the coordinator has not answered for this many seconds.
    #[arg(long, default_value_t = 120)]
    pub give_up_secs: u64,
}

/// How a watched rollout ended, as an exit code.
fn verdict(status: &str) -> Option<u8> {
    match status {
        "done" => Some(0),
        "halted" => Some(1),
        "rolledback" => Some(2),
        _ => None,
    }
}

/// One group as a line: name, a bar of agents on target out of the group, counts, state.
fn group_line(g: &pb::RolloutGroupStatus, width: usize) -> String {
    let total = g.initial.max(g.present).max(1);
    let done = (g.on_target.min(total) as usize * width) / total as usize;
    let failed = ((g.failed.min(total - g.on_target.min(total))) as usize * width) / total as usize;
    let bar = format!(
        "{}{}{}",
        "#".repeat(done),
        "x".repeat(failed),
        ".".repeat(width.saturating_sub(done + failed))
    );
    let note = if g.note.is_empty() {
        String::new()
    } else {
        format!("  {}", g.note)
    };
    clean(&format!(
        "  {:<16} [{bar}] {:>5}/{:<5} failed {:<4} {}{note}",
        g.name, g.on_target, total, g.failed, g.state
    ))
}

fn header(r: &pb::RolloutStatus) -> String {
    let paused = if r.paused { " (paused)" } else { "" };
    clean(&format!(
        "rollout {} on {}: {} → {}  {}{paused}",
        r.rollout_id, r.channel, r.start_version, r.target_version, r.status
    ))
}

/// What changed since `before`, as plain lines (all of it the first time).
fn changes(before: Option<&pb::RolloutStatus>, now: &pb::RolloutStatus) -> Vec<String> {
    let mut lines = Vec::new();
    if before.is_none_or(|b| b.status != now.status || b.paused != now.paused) {
        lines.push(header(now));
    }
    for g in &now.groups {
        let old = before.and_then(|b| b.groups.iter().find(|o| o.name == g.name));
        let moved = old.is_none_or(|o| {
            (
                o.state.as_str(),
                o.on_target,
                o.failed,
                o.present,
                o.note.as_str(),
            ) != (
                g.state.as_str(),
                g.on_target,
                g.failed,
                g.present,
                g.note.as_str(),
            )
        });
        if moved {
            lines.push(group_line(g, 20));
        }
    }
    lines
}

async fn poll(client: &mut Client, rollout_id: &str) -> Result<pb::RolloutStatus, tonic::Status> {
    let detail = client
        .get_rollout(pb::GetRolloutRequest {
            rollout_id: rollout_id.to_string(),
            limit: 1,
        })
        .await?
        .into_inner();
    detail
        .rollout
        .ok_or_else(|| tonic::Status::not_found("the coordinator returned no rollout"))
}

pub async fn run(mut client: Client, args: WatchArgs, format: Format) -> ExitCode {
    let failed = |message: String| {
        output::error(&message);
        ExitCode::from(3)
    };
    let rollout_id = match (&args.rollout_id, &args.channel) {
        (Some(id), _) => id.clone(),
        (None, Some(channel)) => {
            let request = pb::RolloutRef {
                channel: channel.clone(),
            };
            match client.get_rollout_status(request).await {
                Ok(status) => status.into_inner().rollout_id,
                Err(status) => return failed(status_text(status)),
            }
        }
        (None, None) => return failed("give a rollout id or --channel".into()),
    };
    let terminal = std::io::stdout().is_terminal() && format == Format::Table;
    let interval = Duration::from_secs(args.interval_secs.clamp(1, 3600));
    let give_up = Duration::from_secs(args.give_up_secs.max(1));
    let mut last: Option<pb::RolloutStatus> = None;
    let mut drawn = 0usize;
    let mut last_answer = Instant::now();
    loop {
        match poll(&mut client, &rollout_id).await {
            Ok(now) => {
                last_answer = Instant::now();
                if format == Format::Table {
                    if terminal {
                        drawn = redraw(&now, drawn);
                    } else {
                        for line in changes(last.as_ref(), &now) {
                            let _ = output::print(&line);
                        }
                    }
                }
                if let Some(code) = verdict(&now.status) {
                    if format != Format::Table {
                        let reply = crate::render::Reply::new(api::Rollout::from(&now), "");
                        match reply.render(format, false) {
                            Ok(text) => {
                                let _ = output::print(&text);
                            }
                            Err(message) => return failed(message),
                        }
                    }
                    return ExitCode::from(code);
                }
                last = Some(now);
            }
            Err(status) if status.code() == tonic::Code::NotFound => {
                return failed(status_text(status));
            }
            Err(status) if last_answer.elapsed() >= give_up => {
                return failed(format!(
                    "gave up after {} s without an answer: {}",
                    give_up.as_secs(),
                    status_text(status)
                ));
            }
            Err(_) => {} // the coordinator may be restarting: keep polling
        }
        tokio::time::sleep(interval).await;
    }
}

/// Redraws the block in place (cursor up over the previous one); returns its height.
fn redraw(now: &pb::RolloutStatus, previous: usize) -> usize {
    let mut text = String::new();
    if previous > 0 {
        text.push_str(&format!("\x1b[{previous}A"));
    }
    let mut lines = vec![header(now)];
    lines.extend(now.groups.iter().map(|g| group_line(g, 30)));
    for line in &lines {
        text.push_str("\x1b[2K");
        text.push_str(line);
        text.push('\n');
    }
    let _ = output::print(text.trim_end_matches('\n'));
    lines.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, on_target: u64, failed: u64, state: &str) -> pb::RolloutGroupStatus {
        pb::RolloutGroupStatus {
            name: name.into(),
            state: state.into(),
            initial: 10,
            present: 10,
            on_target,
            failed,
            ..Default::default()
        }
    }

    #[test]
    fn exit_codes_follow_the_end_state() {
        assert_eq!(verdict("done"), Some(0));
        assert_eq!(verdict("halted"), Some(1));
        assert_eq!(verdict("rolledback"), Some(2));
        assert_eq!(verdict("active"), None);
        assert_eq!(verdict("rolling_back"), None, "still on its way back");
    }

    #[test]
    fn bars_fill_with_agents_on_target_and_failures() {
        let line = group_line(&group("prod", 5, 2, "active"), 10);
        assert!(line.contains("[#####xx...]"), "{line}");
        assert!(line.contains("5/10"), "{line}");
        let full = group_line(&group("prod", 10, 0, "done"), 10);
        assert!(full.contains("[##########]"), "{full}");
    }

    #[test]
    fn plain_output_prints_only_what_changed() {
        let mut r = pb::RolloutStatus {
            rollout_id: "r1".into(),
            status: "active".into(),
            groups: vec![
                group("dev", 0, 0, "canary"),
                group("prod", 0, 0, "unstarted"),
            ],
            ..Default::default()
        };
        assert_eq!(changes(None, &r).len(), 3, "everything the first time");
        let before = r.clone();
        r.groups[0].on_target = 3;
        let lines = changes(Some(&before), &r);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("dev"));
        let before = r.clone();
        r.status = "done".into();
        assert!(changes(Some(&before), &r)[0].contains("done"));
    }
}
