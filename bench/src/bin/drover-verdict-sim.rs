//! The health verdict in simulated time (`rollout::verdict::simulation`): how soon each
//! injected regression halts a 10,000-agent group, and how often a clean release does.
//! Prints one JSON line per scenario. See BENCHMARKS.md ("Health verdicts").
#![forbid(unsafe_code)]

use clap::Parser;
use std::time::Instant;

use drover_coordinator::rollout::verdict::{
    HealthSample, Observed, Track, VerdictSpec, judge,
    simulation::{Injection, Scenario, run},
};
use drover_rules::{HealthSignal, VerdictOutcome};

#[derive(Parser)]
#[command(about = "Detection times and the false-halt rate of the health verdict (simulated).")]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    agents: usize,
    /// Agents installing per second (the group's pace).
    #[arg(long, default_value_t = 2.0)]
    installs_per_sec: f64,
    #[arg(long, default_value_t = 10)]
    sample_secs: u32,
    /// Seeded runs per injected regression.
    #[arg(long, default_value_t = 20)]
    detection_runs: u64,
    /// Seeded clean runs (each to the whole group installed plus `--bake-secs`).
    #[arg(long, default_value_t = 1_000)]
    clean_runs: u64,
    #[arg(long, default_value_t = 600)]
    bake_secs: u32,
    #[arg(long, default_value_t = 2)]
    threads: u64,
}

fn main() {
    let args = Args::parse();
    judge_cost(args.agents);
    let base = Scenario {
        agents: args.agents,
        installs_per_sec: args.installs_per_sec,
        sample_secs: args.sample_secs,
        horizon_secs: 4 * 3_600,
        seed: 0,
        injection: Injection::None,
        spec: VerdictSpec::default(),
    };
    let injections = [
        (
            "rss +25 % at install",
            Injection::RssStep { pct: 25.0 },
            HealthSignal::Rss,
        ),
        (
            "rss leak to +25 % over 10 min",
            Injection::RssLeak {
                pct: 25.0,
                secs: 600.0,
            },
            HealthSignal::Rss,
        ),
        (
            "probe latency +200 ms",
            Injection::ProbeLatency { ms: 200.0 },
            HealthSignal::ProbeLatency,
        ),
        (
            "crashes 0.1 % → 1 % per hour",
            Injection::CrashRate { per_hour: 0.01 },
            HealthSignal::Restarts,
        ),
    ];
    for (name, injection, signal) in injections {
        let scenarios: Vec<Scenario> = (0..args.detection_runs)
            .map(|seed| Scenario {
                seed,
                injection,
                ..base.clone()
            })
            .collect();
        let outcomes = in_parallel(&scenarios, args.threads);
        let mut after_30th: Vec<f64> = outcomes
            .iter()
            .map(|o| {
                o.halted_at_secs
                    .map_or(f64::INFINITY, |h| h - o.thirtieth_report_secs)
            })
            .collect();
        after_30th.sort_by(f64::total_cmp);
        let named = outcomes.iter().filter(|o| o.signal == Some(signal)).count();
        println!(
            "{{\"injection\":\"{name}\",\"runs\":{},\"halted\":{},\"named_right\":{named},\"secs_after_30th_report\":{{\"min\":{:.0},\"p50\":{:.0},\"max\":{:.0}}}}}",
            outcomes.len(),
            outcomes
                .iter()
                .filter(|o| o.halted_at_secs.is_some())
                .count(),
            after_30th[0],
            after_30th[after_30th.len() / 2],
            after_30th[after_30th.len() - 1],
        );
    }
    let clean_horizon = (args.agents as f64 / args.installs_per_sec) as u32 + args.bake_secs;
    let scenarios: Vec<Scenario> = (0..args.clean_runs)
        .map(|seed| Scenario {
            seed: 1_000_000 + seed,
            horizon_secs: clean_horizon,
            ..base.clone()
        })
        .collect();
    if scenarios.is_empty() {
        return;
    }
    let outcomes = in_parallel(&scenarios, args.threads);
    let halted = outcomes
        .iter()
        .filter(|o| o.halted_at_secs.is_some())
        .count();
    let passed = outcomes
        .iter()
        .filter(|o| o.last.outcome == VerdictOutcome::Pass)
        .count();
    println!(
        "{{\"clean_runs\":{},\"agents\":{},\"horizon_secs\":{clean_horizon},\"false_halts\":{halted},\"false_halt_rate\":{:.4},\"passed_at_end\":{passed}}}",
        outcomes.len(),
        args.agents,
        halted as f64 / outcomes.len() as f64,
    );
}

/// What one verdict costs a reconcile pass at `agents` (half updated, each with 30 samples
/// before and 10 after), next to copying every track (what the pass's snapshot does anyway).
fn judge_cost(agents: usize) {
    let sample = |kib: u64| HealthSample {
        span_ms: 30_000,
        rss_kib: Some(kib),
        cpu_pct: Some(2.0),
        probe_latency_ms: Some(5.0 + (kib % 7) as f64),
        probes_ok: 30,
        ..HealthSample::default()
    };
    let tracks: Vec<(String, bool, Track)> = (0..agents)
        .map(|i| {
            let mut track = Track::default();
            let updated = i % 2 == 0;
            for t in 1..=40_i64 {
                let version = if updated && t > 30 { "1.1.0" } else { "1.0.0" };
                let reference = (!updated && t > 30).then_some(1_000_000_000 + 30 * 30_000);
                let kib = 50_000 + (i as u64 * 37 + t as u64 * 11) % 900;
                track.record(
                    1_000_000_000 + t * 30_000,
                    version,
                    &sample(kib),
                    reference,
                    3,
                );
            }
            (format!("agent-{i:06}"), updated, track)
        })
        .collect();
    let spec = VerdictSpec::default();
    let rounds = 20;
    let started = Instant::now();
    for _ in 0..rounds {
        let observed: Vec<Observed> = tracks
            .iter()
            .map(|(id, updated, track)| Observed {
                agent_id: id,
                updated: *updated,
                track,
            })
            .collect();
        std::hint::black_box(judge(&spec, &observed));
    }
    let judge_ms = started.elapsed().as_secs_f64() * 1_000.0 / f64::from(rounds);
    let started = Instant::now();
    for _ in 0..rounds {
        let copies: Vec<Track> = tracks.iter().map(|(_, _, t)| t.clone()).collect();
        std::hint::black_box(copies);
    }
    let copy_ms = started.elapsed().as_secs_f64() * 1_000.0 / f64::from(rounds);
    println!(
        "{{\"agents\":{agents},\"judge_ms\":{judge_ms:.2},\"copy_tracks_ms\":{copy_ms:.2},\"ratio\":{:.2}}}",
        judge_ms / copy_ms
    );
}

fn in_parallel(
    scenarios: &[Scenario],
    threads: u64,
) -> Vec<drover_coordinator::rollout::verdict::simulation::Outcome> {
    let chunk = scenarios.len().div_ceil(threads.max(1) as usize).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = scenarios
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(run).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}
