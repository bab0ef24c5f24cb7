//! A seeded simulation of one group's rollout under the verdict, in simulated time: agents
//! with their own levels and noise, a fleet-wide drift, installs at a steady rate, a sample
//! from every agent every `sample_secs`, the verdict after each round. It answers "how soon
//! is a regression caught" and "how often does a clean release halt", without a clock.

use drover_rules::{HealthSignal, VerdictOutcome};
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::{GroupVerdict, HealthSample, Observed, Track, VerdictSpec, judge};

/// What the release does to the agents it is installed on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Injection {
    None,
    /// RSS this much higher than before, from the install on.
    RssStep {
        pct: f64,
    },
    /// RSS growing linearly to this much higher over `secs`.
    RssLeak {
        pct: f64,
        secs: f64,
    },
    /// Crashes (restarts) per agent-hour, against 0.1 % before.
    CrashRate {
        per_hour: f64,
    },
    /// Probe latency this much slower.
    ProbeLatency {
        ms: f64,
    },
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub agents: usize,
    pub installs_per_sec: f64,
    pub sample_secs: u32,
    /// Simulated time after the group starts; the run stops at a halt or here.
    pub horizon_secs: u32,
    pub seed: u64,
    pub injection: Injection,
    pub spec: VerdictSpec,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    /// When the verdict failed, seconds after the group started, and on what.
    pub halted_at_secs: Option<f64>,
    pub signal: Option<HealthSignal>,
    pub thirtieth_report_secs: f64,
    pub last: GroupVerdict,
}

/// Crashes per agent-hour before the release.
const BASE_CRASH_RATE: f64 = 0.001;
const BASELINE_SAMPLES: u32 = 30;
/// The clock's zero: tracks treat mark 0 as "none".
const EPOCH_MS: i64 = 1_000_000_000;

struct SimAgent {
    id: String,
    rss_ln: f64,
    latency_ms: f64,
    cpu_pct: f64,
    install_secs: f64,
    track: Track,
}

fn normal(rng: &mut StdRng) -> f64 {
    // Box–Muller: the crate set has no normal distribution and this needs no more.
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn poisson(rng: &mut StdRng, mean: f64) -> u32 {
    // Inversion: means here are far below 1.
    let mut p = (-mean).exp();
    let mut cumulative = p;
    let u: f64 = rng.random();
    let mut k = 0;
    while u > cumulative && k < 100 {
        k += 1;
        p *= mean / f64::from(k);
        cumulative += p;
    }
    k
}

fn sample(
    rng: &mut StdRng,
    agent: &SimAgent,
    injection: Injection,
    now_secs: f64,
    span_secs: f64,
) -> HealthSample {
    let age = now_secs - agent.install_secs;
    let updated = age >= 0.0;
    let effect = |active: bool, value: f64| if updated && active { value } else { 0.0 };
    let rss_growth = match injection {
        Injection::RssStep { pct } => effect(true, pct),
        Injection::RssLeak { pct, secs } => effect(true, pct * (age / secs).min(1.0)),
        _ => 0.0,
    };
    let crash_rate = match injection {
        Injection::CrashRate { per_hour } if updated => per_hour,
        _ => BASE_CRASH_RATE,
    };
    let slower = match injection {
        Injection::ProbeLatency { ms } => effect(true, ms),
        _ => 0.0,
    };
    // A fleet-wide swing (load over the day) that the comparison cohort cancels.
    let drift = 8.0 * (std::f64::consts::TAU * now_secs / 3_600.0).sin();
    let rss_ln = agent.rss_ln + (1.0 + rss_growth / 100.0).ln() + 0.02 * normal(rng);
    let probes = 10;
    let failed = (0..probes).filter(|_| rng.random::<f64>() < 0.001).count() as u32;
    HealthSample {
        span_ms: (span_secs * 1_000.0) as u32,
        rss_kib: Some(rss_ln.exp() as u64),
        cpu_pct: Some((agent.cpu_pct + normal(rng)).max(0.0)),
        probe_latency_ms: Some((agent.latency_ms + drift + slower + 3.0 * normal(rng)).max(0.1)),
        probes_ok: probes - failed,
        probes_failed: failed,
        restarts: poisson(rng, crash_rate * span_secs / 3_600.0),
    }
}

pub fn run(scenario: &Scenario) -> Outcome {
    let mut rng = StdRng::seed_from_u64(scenario.seed);
    let k = scenario.spec.samples_per_agent;
    let step = f64::from(scenario.sample_secs);
    let mut agents: Vec<SimAgent> = (0..scenario.agents)
        .map(|i| SimAgent {
            id: format!("sim-{i:05}"),
            rss_ln: (50_000.0f64).ln() + 0.3 * normal(&mut rng),
            latency_ms: 20.0 + 5.0 * normal(&mut rng).abs(),
            cpu_pct: (5.0 + 1.5 * normal(&mut rng)).max(0.1),
            install_secs: (i + 1) as f64 / scenario.installs_per_sec,
            track: Track::default(),
        })
        .collect();
    let ms = |secs: f64| EPOCH_MS + (secs * 1_000.0) as i64;
    // Before the group starts: a first sample standing for the day the coordinator has
    // watched the agent (its restarts), then a few minutes of samples.
    for round in 0..BASELINE_SAMPLES {
        let now = -step * f64::from(BASELINE_SAMPLES - round);
        let span = if round == 0 { 24.0 * 3_600.0 } else { step };
        for agent in &mut agents {
            let sample = sample(&mut rng, agent, Injection::None, now, span);
            agent.track.record(ms(now), "1.0.0", &sample, None, k);
        }
    }
    let mut last = judge(&scenario.spec, &[]);
    let mut now = 0.0;
    while now < f64::from(scenario.horizon_secs) {
        now += step;
        for agent in &mut agents {
            let sample = sample(&mut rng, agent, scenario.injection, now, step);
            let on_target = now >= agent.install_secs;
            let (version, reference) = if on_target {
                ("1.1.0", None)
            } else {
                ("1.0.0", Some(ms(0.0)))
            };
            agent.track.record(ms(now), version, &sample, reference, k);
        }
        let observed: Vec<Observed> = agents
            .iter()
            .map(|a| Observed {
                agent_id: &a.id,
                updated: now >= a.install_secs,
                track: &a.track,
            })
            .collect();
        last = judge(&scenario.spec, &observed);
        if last.outcome == VerdictOutcome::Fail {
            let signal = last
                .signals
                .iter()
                .find(|s| s.outcome == VerdictOutcome::Fail)
                .map(|s| s.signal);
            return Outcome {
                halted_at_secs: Some(now),
                signal,
                thirtieth_report_secs: 30.0 / scenario.installs_per_sec,
                last,
            };
        }
    }
    Outcome {
        halted_at_secs: None,
        signal: None,
        thirtieth_report_secs: 30.0 / scenario.installs_per_sec,
        last,
    }
}
