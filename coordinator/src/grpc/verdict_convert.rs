//! The health verdict's settings and judgements to and from the admin API.

use drover_proto::v1 as pb;

use crate::rollout::verdict::{GroupVerdict, SignalVerdict, VerdictSpec};

/// The settings a create request asks for; zero fields take their defaults.
pub fn spec_from_proto(settings: Option<pb::VerdictSettings>) -> VerdictSpec {
    let defaults = VerdictSpec::default();
    let Some(s) = settings else {
        return defaults;
    };
    let or = |value: u32, default: u32| if value == 0 { default } else { value };
    VerdictSpec {
        enabled: !s.disabled,
        alpha_ppm: or(s.error_rate_ppm, defaults.alpha_ppm),
        bake_secs: u64::from(s.bake_seconds),
        observe_secs: u64::from(s.observe_seconds),
        samples_per_agent: or(s.samples_per_agent, defaults.samples_per_agent),
        min_agents: or(s.min_agents, defaults.min_agents),
        rss_pct: or(s.rss_percent, defaults.rss_pct),
        cpu_pct: or(s.cpu_percent, defaults.cpu_pct),
        latency_ms: or(s.latency_ms, defaults.latency_ms),
        probe_failure_pct: or(s.probe_failure_percent, defaults.probe_failure_pct),
        restart_ratio: or(s.restart_ratio, defaults.restart_ratio),
    }
}

pub fn settings_to_proto(spec: &VerdictSpec) -> pb::VerdictSettings {
    let seconds = |s: u64| u32::try_from(s).unwrap_or(u32::MAX);
    pb::VerdictSettings {
        disabled: !spec.enabled,
        error_rate_ppm: spec.alpha_ppm,
        bake_seconds: seconds(spec.bake_secs),
        observe_seconds: seconds(spec.observe_secs),
        samples_per_agent: spec.samples_per_agent,
        min_agents: spec.min_agents,
        rss_percent: spec.rss_pct,
        cpu_percent: spec.cpu_pct,
        latency_ms: spec.latency_ms,
        probe_failure_percent: spec.probe_failure_pct,
        restart_ratio: spec.restart_ratio,
    }
}

pub fn group_verdict_to_proto(verdict: &GroupVerdict) -> pb::GroupVerdict {
    pb::GroupVerdict {
        outcome: verdict.outcome.as_str().to_string(),
        text: verdict.describe(),
        signals: verdict.signals.iter().map(signal_to_proto).collect(),
    }
}

/// Three decimals are all anyone reads (and no `10.000000000000009`).
fn rounded(value: f64) -> f64 {
    (value * 1_000.0).round() / 1_000.0
}

fn signal_to_proto(signal: &SignalVerdict) -> pb::SignalVerdict {
    pb::SignalVerdict {
        signal: signal.signal.as_str().to_string(),
        outcome: signal.outcome.as_str().to_string(),
        effect: signal.effect.map(rounded),
        low: signal.low.map(rounded),
        high: signal.high.map(rounded),
        tolerance: rounded(signal.tolerance),
        updated: signal.updated,
        compared: signal.compared,
        worst: signal
            .worst
            .iter()
            .map(|(id, value)| format!("{id} {value:.1}"))
            .collect(),
        text: signal.describe(),
    }
}
