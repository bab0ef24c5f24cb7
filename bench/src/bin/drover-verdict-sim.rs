//! The health verdict in simulated time (`rollout::verdict::simulation`): how soon each
//! injected regression halts a 10,000-agent group, and how often a clean release does.
//! Prints one JSON line per scenario. See BENCHMARKS.md ("Health verdicts").
#![forbid(unsafe_code)]

use clap::Parser;
use drover_coordinator::rollout::verdict::{
    VerdictSpec,
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
