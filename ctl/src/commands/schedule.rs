//! `droverctl schedule list|set|clear`.

use clap::Subcommand;
use drover_api as api;
use drover_proto::v1 as pb;
use serde_json::json;

use super::{Client, effect_text, status_text};
use crate::{
    names::time_or_dash,
    render::{Reply, Table, Text},
};

#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Every group's window and when it next opens.
    List,
    /// Set a group's window, e.g. `--days mon-fri --start 02:00 --duration 1h`.
    Set {
        /// The group whose agents this window applies to.
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
        /// Check the window and show how many agents would get a new directive; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove a group's window: its agents then install as soon as a target arrives.
    Clear {
        /// The group whose window to remove.
        #[arg(long)]
        group: String,
        /// Check the removal and show how many agents would get a new directive; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(client: &mut Client, command: ScheduleCommand) -> Result<Reply, String> {
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
            dry_run,
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
                dry_run,
            };
            let reply = client.set_schedule(request).await;
            vec![reply.map_err(status_text)?.into_inner()]
        }
        ScheduleCommand::Clear { group, dry_run } => {
            let reply = client
                .clear_schedule(pb::ClearScheduleRequest {
                    group: group.clone(),
                    dry_run,
                })
                .await
                .map_err(status_text)?
                .into_inner();
            let effect = reply.effect.as_ref();
            let text = effect_text(effect)
                .unwrap_or_else(|| format!("schedule of group '{group}' cleared"));
            return Ok(Reply::new(
                json!({
                    "group": group,
                    "cleared": !dry_run,
                    "effect": effect.map(api::Effect::from),
                }),
                text,
            ));
        }
    };
    let effect = schedules.first().and_then(|s| s.effect.as_ref());
    if let Some(effect) = effect {
        // `schedule set`: the one schedule, with what the change does.
        let data = api::GroupSchedule::from(&schedules[0]);
        let text = Text::new()
            .line(effect_text(Some(effect)).unwrap_or_default())
            .line("")
            .table(schedule_table(&schedules));
        return Ok(Reply::new(data, text));
    }
    let data: Vec<_> = schedules.iter().map(api::GroupSchedule::from).collect();
    Ok(Reply::new(data, schedule_table(&schedules)))
}

fn schedule_table(schedules: &[pb::GroupSchedule]) -> Table {
    let mut table = Table::new(&["group", "window", "next opens", "closes"]);
    for s in schedules {
        table.row(vec![
            s.group.clone(),
            window_text(s.schedule.as_ref()),
            time_or_dash(s.next_window_start.as_ref()),
            time_or_dash(s.next_window_end.as_ref()),
        ]);
    }
    table
}

fn window_text(schedule: Option<&pb::MaintenanceSchedule>) -> String {
    let Some(s) = schedule else { return "-".into() };
    let days =
        drover_rules::Weekdays::from_days(s.days.iter().map(|d| (*d as u32).saturating_sub(1)));
    let minutes = s
        .duration
        .as_ref()
        .map(|d| (d.seconds / 60) as u32)
        .unwrap_or_default();
    drover_rules::MaintenanceSchedule {
        days,
        start_minute_utc: s.start_minute_utc,
        duration_minutes: minutes,
    }
    .to_string()
}
