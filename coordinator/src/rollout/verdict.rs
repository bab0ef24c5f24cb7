//! The health verdict: pure. Given the spec and each agent's [`Track`] of a group, it says
//! whether the release hurts the agents it was installed on — the quiet failures an install
//! gate misses (a leak, slower probes, more crashes) — with the evidence.
//!
//! Each updated agent is compared with its own level before the install; the updated cohort
//! with the group's agents not updated yet (their change since the group started, so a
//! fleet-wide drift is not blamed on the release). Bounds are anytime-valid (`bounds.rs`):
//! the verdict is recomputed on every pass and the chance of a false halt stays at the
//! spec's error rate.

mod bounds;
mod track;

use drover_rules::{HealthSignal, VerdictOutcome};
use serde::{Deserialize, Serialize};

use bounds::{mean_half_width, rate_bounds};
use track::LEVEL_SIGNALS;
pub use track::{HealthSample, Track};

/// The verdict's part of a rollout spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VerdictSpec {
    pub enabled: bool,
    /// The chance of a false halt of one group, ever, in parts per million.
    pub alpha_ppm: u32,
    /// After a group reaches its done threshold, how long it is watched before it is done.
    pub bake_secs: u64,
    /// How long an updated agent runs the target before it counts toward done.
    pub observe_secs: u64,
    /// Samples after its install that make an agent's change count (then fixed).
    pub samples_per_agent: u32,
    /// Updated agents a signal needs before it can pass (fewer if the group has fewer).
    pub min_agents: u32,
    /// Tolerated growth before a signal fails: RSS in %, CPU in points of one core, probe
    /// latency in ms, failed probes in points, restarts as a rate ratio.
    pub rss_pct: u32,
    pub cpu_pct: u32,
    pub latency_ms: u32,
    pub probe_failure_pct: u32,
    pub restart_ratio: u32,
}

impl Default for VerdictSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            alpha_ppm: 1_000,
            bake_secs: 0,
            observe_secs: 0,
            samples_per_agent: 3,
            min_agents: 10,
            rss_pct: 10,
            cpu_pct: 20,
            latency_ms: 50,
            probe_failure_pct: 5,
            restart_ratio: 2,
        }
    }
}

impl VerdictSpec {
    /// The spec as it was before verdicts existed: nothing judged, no bake.
    pub fn off() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.alpha_ppm == 0 || self.alpha_ppm >= 500_000 {
            return Err("the verdict's error rate must be above 0 and below 50 %".into());
        }
        if self.samples_per_agent == 0 || self.samples_per_agent > 1_000 {
            return Err("samples per agent must be 1–1000".into());
        }
        if self.restart_ratio < 1 {
            return Err("the restart ratio must be at least 1".into());
        }
        const WEEK: u64 = 7 * 24 * 3_600;
        if self.bake_secs > WEEK || self.observe_secs > WEEK {
            return Err("bake and observation times are at most a week".into());
        }
        Ok(())
    }

    fn alpha(&self) -> f64 {
        f64::from(self.alpha_ppm) / 1e6
    }
}

/// One agent as the verdict sees it.
pub struct Observed<'a> {
    pub agent_id: &'a str,
    /// Runs the target.
    pub updated: bool,
    pub track: &'a Track,
}

/// One signal's judgement, in the signal's own unit (RSS and failed probes in %, the
/// restart rate as a ratio).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalVerdict {
    pub signal: HealthSignal,
    pub outcome: VerdictOutcome,
    /// `None` where there is nothing to compare with yet (no bound: unbounded).
    pub effect: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub tolerance: f64,
    /// Updated agents counted, and agents not updated counted as the comparison.
    pub updated: u32,
    pub compared: u32,
    /// The updated agents that moved the most, with their own change.
    pub worst: Vec<(String, f64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupVerdict {
    pub outcome: VerdictOutcome,
    pub signals: Vec<SignalVerdict>,
}

/// Agents a comparison cohort needs before it is used (below it, drift is taken as none).
const MIN_COMPARED: usize = 10;
/// The number of agents the bounds are tightest for: the verdict aims to decide by then.
const TUNED_FOR_AGENTS: f64 = 30.0;
const WORST_SHOWN: usize = 3;

/// Judges a group's agents against `spec`.
pub fn judge(spec: &VerdictSpec, agents: &[Observed]) -> GroupVerdict {
    let alpha = spec.alpha() / (LEVEL_SIGNALS.len() + 1) as f64;
    let mut signals: Vec<SignalVerdict> = LEVEL_SIGNALS
        .iter()
        .filter_map(|signal| judge_level(spec, *signal, alpha, agents))
        .collect();
    signals.extend(judge_restarts(spec, alpha, agents));
    let outcome = if signals.is_empty() {
        VerdictOutcome::NotJudged
    } else if signals.iter().any(|s| s.outcome == VerdictOutcome::Fail) {
        VerdictOutcome::Fail
    } else if signals.iter().all(|s| s.outcome == VerdictOutcome::Pass) {
        VerdictOutcome::Pass
    } else {
        VerdictOutcome::Pending
    };
    GroupVerdict { outcome, signals }
}

/// How many updated agents a signal needs to pass: `min_agents`, or all of them if fewer
/// report it, and never fewer than 2 (a spread needs two).
fn needed(spec: &VerdictSpec, reporting: usize) -> usize {
    (spec.min_agents as usize).min(reporting).max(2)
}

/// Its scale's smallest spread: a signal that never moves (a constant in a simulation, a
/// rounded probe time) must not make the tiniest change look certain.
fn spread_floor(signal: HealthSignal) -> f64 {
    match signal {
        HealthSignal::Rss => 0.01,
        HealthSignal::Cpu => 0.5,
        HealthSignal::ProbeLatency => 2.0,
        HealthSignal::ProbeFailures | HealthSignal::Restarts => 0.01,
    }
}

fn judge_level(
    spec: &VerdictSpec,
    signal: HealthSignal,
    alpha: f64,
    agents: &[Observed],
) -> Option<SignalVerdict> {
    let k = spec.samples_per_agent;
    let change = |a: &Observed| -> Option<f64> {
        let track = a.track;
        if !track.matured(k) {
            return None;
        }
        Some(track.after.level(signal)? - track.before.level(signal)?)
    };
    let mut updated: Vec<(&str, f64)> = Vec::new();
    let mut compared: Vec<f64> = Vec::new();
    let mut reporting = 0;
    for agent in agents {
        let reports = agent.track.reports(signal);
        if agent.updated {
            // Judged once its track saw the install; until then it only counts as missing.
            reporting += usize::from(reports);
            if let Some(value) = change(agent).filter(|_| agent.track.installed) {
                updated.push((agent.agent_id, value));
            }
        } else if !agent.updated
            && !agent.track.installed
            && let Some(value) = change(agent)
        {
            compared.push(value);
        }
    }
    if reporting == 0 && compared.is_empty() {
        return None;
    }
    let values: Vec<f64> = updated.iter().map(|(_, v)| *v).collect();
    let (mean_u, sd_u) = bounds::mean_sd(&values);
    let floor = spread_floor(signal);
    let (effect, half) = if compared.len() >= MIN_COMPARED {
        let (mean_c, sd_c) = bounds::mean_sd(&compared);
        let half_u = mean_half_width(values.len(), sd_u.max(floor), alpha / 2.0, TUNED_FOR_AGENTS);
        let half_c = mean_half_width(
            compared.len(),
            sd_c.max(floor),
            alpha / 2.0,
            TUNED_FOR_AGENTS,
        );
        (mean_u - mean_c, half_u + half_c)
    } else {
        let half = mean_half_width(values.len(), sd_u.max(floor), alpha, TUNED_FOR_AGENTS);
        (mean_u, half)
    };
    let tolerance = tolerance_of(spec, signal);
    let outcome = if values.len() >= 2 && effect - half > tolerance {
        VerdictOutcome::Fail
    } else if values.len() >= needed(spec, reporting) {
        VerdictOutcome::Pass
    } else {
        VerdictOutcome::Pending
    };
    keep_worst(&mut updated);
    let shown = |x: f64| in_unit(signal, x);
    Some(SignalVerdict {
        signal,
        outcome,
        effect: finite(shown(effect)).filter(|_| !values.is_empty()),
        low: finite(shown(effect - half)),
        high: finite(shown(effect + half)),
        tolerance: shown(tolerance),
        updated: values.len() as u32,
        compared: if compared.len() >= MIN_COMPARED {
            compared.len() as u32
        } else {
            0
        },
        worst: updated
            .iter()
            .take(WORST_SHOWN)
            .map(|(id, v)| (id.to_string(), shown(*v)))
            .collect(),
    })
}

/// The `WORST_SHOWN` largest changes, largest first, in linear time (a pass at 100k agents
/// must not sort them all).
fn keep_worst(changes: &mut Vec<(&str, f64)>) {
    let by_size = |a: &(&str, f64), b: &(&str, f64)| b.1.total_cmp(&a.1);
    if changes.len() > WORST_SHOWN {
        changes.select_nth_unstable_by(WORST_SHOWN - 1, by_size);
        changes.truncate(WORST_SHOWN);
    }
    changes.sort_by(by_size);
}

fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

/// The tolerance on the judged scale.
fn tolerance_of(spec: &VerdictSpec, signal: HealthSignal) -> f64 {
    match signal {
        HealthSignal::Rss => (1.0 + f64::from(spec.rss_pct) / 100.0).ln(),
        HealthSignal::Cpu => f64::from(spec.cpu_pct),
        HealthSignal::ProbeLatency => f64::from(spec.latency_ms),
        HealthSignal::ProbeFailures => f64::from(spec.probe_failure_pct) / 100.0,
        HealthSignal::Restarts => f64::from(spec.restart_ratio),
    }
}

/// From the judged scale to the unit people read.
fn in_unit(signal: HealthSignal, value: f64) -> f64 {
    match signal {
        HealthSignal::Rss => (value.exp() - 1.0) * 100.0,
        HealthSignal::ProbeFailures => value * 100.0,
        _ => value,
    }
}

/// Restarts as a rate: the updated agents' restarts per agent-hour since their install
/// against the rate before (theirs before the install, and the not-updated agents').
fn judge_restarts(spec: &VerdictSpec, alpha: f64, agents: &[Observed]) -> Option<SignalVerdict> {
    let (mut events_u, mut hours_u, mut events_c, mut hours_c) = (0.0, 0.0, 0.0, 0.0);
    let mut updated: Vec<(&str, f64)> = Vec::new();
    let (mut compared, mut reporting) = (0u32, 0usize);
    for agent in agents {
        let track = agent.track;
        if agent.updated && !track.installed {
            // On the target, but no sample since its install yet: missing, not compared.
            reporting += 1;
            continue;
        }
        if track.mark_ms == 0 {
            continue;
        }
        events_c += track.before.restarts;
        hours_c += track.before.exposure_hours;
        if agent.updated {
            reporting += 1;
            events_u += track.since.restarts;
            hours_u += track.since.exposure_hours;
            if track.since.samples >= spec.samples_per_agent {
                updated.push((agent.agent_id, track.since.restarts));
            }
        } else if !agent.updated && !track.installed {
            events_c += track.since.restarts;
            hours_c += track.since.exposure_hours;
            compared += 1;
        }
    }
    if hours_u <= 0.0 {
        return None;
    }
    let (low_u, high_u) = rate_bounds(events_u, hours_u, alpha / 2.0);
    let (low_c, high_c) = rate_bounds(events_c, hours_c, alpha / 2.0);
    let tolerance = f64::from(spec.restart_ratio);
    let before_rate = if hours_c > 0.0 {
        events_c.max(0.5) / hours_c
    } else {
        f64::NAN
    };
    let outcome = if low_u > tolerance * high_c {
        VerdictOutcome::Fail
    } else if updated.len() >= needed(spec, reporting) {
        VerdictOutcome::Pass
    } else {
        VerdictOutcome::Pending
    };
    keep_worst(&mut updated);
    Some(SignalVerdict {
        signal: HealthSignal::Restarts,
        outcome,
        effect: finite((events_u / hours_u) / before_rate),
        low: finite(low_u / high_c),
        high: finite(high_u / low_c),
        tolerance,
        updated: updated.len() as u32,
        compared,
        worst: updated
            .iter()
            .take(WORST_SHOWN)
            .filter(|(_, restarts)| *restarts > 0.0)
            .map(|(id, restarts)| (id.to_string(), *restarts))
            .collect(),
    })
}

impl SignalVerdict {
    /// One line for people: "rss +27.1 % (+21.0 … +33.5) over 214 updated agents …".
    pub fn describe(&self) -> String {
        let unit = match self.signal {
            HealthSignal::Rss | HealthSignal::ProbeFailures => " %",
            HealthSignal::Cpu => " points",
            HealthSignal::ProbeLatency => " ms",
            HealthSignal::Restarts => "×",
        };
        let number = |x: Option<f64>| match x {
            None => "?".to_string(),
            Some(x) if self.signal == HealthSignal::Restarts => format!("{x:.2}"),
            Some(x) => format!("{x:+.1}"),
        };
        let compared = if self.compared > 0 {
            format!(" vs {} not updated", self.compared)
        } else {
            String::new()
        };
        if self.signal == HealthSignal::Restarts {
            return self.describe_rate(&number);
        }
        let worst = if self.worst.is_empty() {
            String::new()
        } else {
            let names: Vec<String> = self
                .worst
                .iter()
                .map(|(id, v)| format!("{id} {}{unit}", number(Some(*v))))
                .collect();
            format!("; most: {}", names.join(", "))
        };
        format!(
            "{} {}{unit} (anytime bounds {} … {}, tolerance {}{unit}) over {} updated agent(s){compared}{worst}",
            self.signal,
            number(self.effect),
            number(self.low),
            number(self.high),
            number(Some(self.tolerance)),
            self.updated,
        )
    }
}

impl SignalVerdict {
    fn describe_rate(&self, number: &dyn Fn(Option<f64>) -> String) -> String {
        let most = if self.worst.is_empty() {
            String::new()
        } else {
            let names: Vec<String> = self
                .worst
                .iter()
                .map(|(id, restarts)| format!("{id} {restarts:.0}"))
                .collect();
            format!("; most: {}", names.join(", "))
        };
        let bounds = match (self.low, self.high) {
            (Some(_), Some(_)) => format!(
                "anytime bounds {} … {}",
                number(self.low),
                number(self.high)
            ),
            (Some(_), None) => format!("at least {}", number(self.low)),
            _ => "no bound yet".to_string(),
        };
        format!(
            "restarts at {}× the rate before ({bounds}, tolerance {}×) over {} updated agent(s){most}",
            number(self.effect),
            number(Some(self.tolerance)),
            self.updated,
        )
    }
}

impl GroupVerdict {
    /// What failed, or what is missing, in words.
    pub fn describe(&self) -> String {
        let failing: Vec<String> = self
            .signals
            .iter()
            .filter(|s| s.outcome == VerdictOutcome::Fail)
            .map(SignalVerdict::describe)
            .collect();
        if !failing.is_empty() {
            return failing.join("; ");
        }
        let missing: Vec<String> = self
            .signals
            .iter()
            .filter(|s| s.outcome == VerdictOutcome::Pending)
            .map(|s| format!("{} has {} updated agent(s) watched", s.signal, s.updated))
            .collect();
        if !missing.is_empty() {
            return missing.join("; ");
        }
        match self.outcome {
            VerdictOutcome::NotJudged => {
                "no agent has health samples from both before and after its install".into()
            }
            _ => "every signal within its tolerance".into(),
        }
    }
}

pub mod simulation;
#[cfg(test)]
mod tests;
