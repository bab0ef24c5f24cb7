//! A rollout's specification from the command line (`rollout create` and `rollout plan`),
//! and the plan's output.

use clap::{Args, ValueEnum};
use drover_proto::v1 as pb;

use crate::{
    names::time_or_dash,
    render::{Reply, Table, Text},
};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StrategyArg {
    /// A group starts only when the previous one is done and its wait has passed.
    HaltOnError,
    /// Each group starts in its own window, its wait counted from the previous group's start.
    TimeBased,
}

#[derive(Args, Debug)]
pub struct SpecArgs {
    /// The channel to move.
    #[arg(long)]
    channel: String,
    /// The version the channel serves now.
    #[arg(long)]
    from: String,
    /// The version to move the channel to.
    #[arg(long)]
    to: String,
    /// When each group may start.
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
    /// After a group reaches its done threshold, watch it this long (e.g. 15m, 2h) before it
    /// is done: the health verdict may still halt it.
    #[arg(long, value_name = "DURATION")]
    bake: Option<String>,
    /// How long an updated agent must run the target before it counts toward done.
    #[arg(long, value_name = "DURATION")]
    observe: Option<String>,
    /// The health verdict's settings, KEY=VALUE,...: error-rate-ppm (1000), min-agents (10),
    /// samples (3), rss (% growth tolerated, 10), cpu (points, 20), latency-ms (50),
    /// probe-failures (points, 5), restart-ratio (2).
    #[arg(long, value_name = "SETTINGS")]
    verdict: Option<String>,
    /// No health verdict: groups are done by the install gate alone.
    #[arg(long, conflicts_with_all = ["verdict", "bake", "observe"])]
    no_verdict: bool,
    /// The labels whose values make strata, comma-separated (`installer`: the installer
    /// kind); every stratum big enough gets a canary. Default: os,os_version,arch,installer;
    /// `none`: no strata.
    #[arg(long, value_name = "LABELS")]
    strata: Option<String>,
    /// Agents a stratum needs in a group for a canary of its own (default 20).
    #[arg(long, value_name = "K")]
    stratum_min_agents: Option<u32>,
    /// What a failure stops: the whole rollout (default) or only its stratum.
    #[arg(long, value_enum, default_value_t = HaltScopeArg::Rollout)]
    halt_scope: HaltScopeArg,
    /// Orders agents for canaries (default: made from the channel and the versions, so
    /// `rollout plan` and `rollout create` pick the same canaries).
    #[arg(long, value_name = "SEED")]
    canary_seed: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum HaltScopeArg {
    /// A failure halts every unfinished group.
    Rollout,
    /// A failure confined to one stratum holds that stratum; the others go on.
    Stratum,
}

fn seconds(flag: &str, text: &Option<String>) -> Result<u32, String> {
    let Some(text) = text else {
        return Ok(0);
    };
    let ms =
        drover_rules::time::parse_duration_ms(text).map_err(|err| format!("--{flag}: {err}"))?;
    u32::try_from(ms / 1_000).map_err(|_| format!("--{flag} {text} is too long"))
}

fn verdict_settings(args: &SpecArgs) -> Result<pb::VerdictSettings, String> {
    let mut settings = pb::VerdictSettings {
        disabled: args.no_verdict,
        bake_seconds: seconds("bake", &args.bake)?,
        observe_seconds: seconds("observe", &args.observe)?,
        ..Default::default()
    };
    let text = args.verdict.as_deref().unwrap_or("");
    for option in text.split(',').filter(|o| !o.is_empty()) {
        let (key, value) = option
            .split_once('=')
            .ok_or_else(|| format!("'{option}' in --verdict is not KEY=VALUE"))?;
        let number: u32 = value
            .parse()
            .map_err(|_| format!("{key}={value} in --verdict is not a whole number"))?;
        match key {
            "error-rate-ppm" => settings.error_rate_ppm = number,
            "min-agents" => settings.min_agents = number,
            "samples" => settings.samples_per_agent = number,
            "rss" => settings.rss_percent = number,
            "cpu" => settings.cpu_percent = number,
            "latency-ms" => settings.latency_ms = number,
            "probe-failures" => settings.probe_failure_percent = number,
            "restart-ratio" => settings.restart_ratio = number,
            other => {
                return Err(format!(
                    "unknown --verdict setting '{other}'; use error-rate-ppm, min-agents, \
                     samples, rss, cpu, latency-ms, probe-failures, restart-ratio"
                ));
            }
        }
    }
    Ok(settings)
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

pub fn request(args: SpecArgs) -> Result<pb::CreateRolloutRequest, String> {
    let verdict = Some(verdict_settings(&args)?);
    Ok(pb::CreateRolloutRequest {
        verdict,
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
        dry_run: false,
        strata: args.strata.unwrap_or_default(),
        stratum_min_agents: args.stratum_min_agents.unwrap_or_default(),
        halt_scope: match args.halt_scope {
            HaltScopeArg::Rollout => "rollout",
            HaltScopeArg::Stratum => "stratum",
        }
        .into(),
        canary_seed: args.canary_seed.unwrap_or_default(),
    })
}

pub fn plan_reply(plan: &pb::RolloutPlan) -> Reply {
    let text =
        plan_text(Text::new(), plan).line("(assuming every update succeeds; nothing was changed)");
    Reply::new(drover_api::RolloutPlan::from(plan), text)
}

/// When each group would start and be done, with its canaries; then the strata coverage
/// matrix, if the fleet has more than one stratum.
pub fn plan_text(text: Text, plan: &pb::RolloutPlan) -> Text {
    let mut table = Table::new(&[
        "group",
        "agents",
        "would start",
        "would be done",
        "canaries",
    ]);
    for g in &plan.groups {
        table.row(vec![
            g.name.clone(),
            g.agents.to_string(),
            time_or_dash(g.starts_at.as_ref()),
            time_or_dash(g.done_at.as_ref()),
            if g.canaries.is_empty() {
                "-".into()
            } else {
                g.canaries.join(", ")
            },
        ]);
    }
    let text = text.table(table);
    match super::strata::coverage_table(plan) {
        Some(matrix) => text.line("").line("strata coverage:").table(matrix),
        None => text,
    }
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
