//! Stratified against random canaries (`rollout::strata::simulation`): in seeded fleets
//! where a release fails only on one small stratum, how often the canary stage catches it.
//! Each run is the real engine over a fresh random fleet. Prints one JSON line per mode.
//! See BENCHMARKS.md ("Stratified canaries").
#![forbid(unsafe_code)]

use std::time::Instant;

use clap::Parser;
use drover_coordinator::rollout::strata::simulation::{Scenario, catch_rate};

#[derive(Parser)]
#[command(about = "How often canaries catch a bug confined to one small stratum (simulated).")]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    agents: usize,
    /// Strata besides the buggy one (random sizes).
    #[arg(long, default_value_t = 12)]
    strata: usize,
    /// The buggy stratum's share, per mille (5: 0.5 %).
    #[arg(long, default_value_t = 5)]
    buggy_per_mille: usize,
    /// The group's own canary count.
    #[arg(long, default_value_t = 5)]
    canaries: u32,
    /// Agents a stratum needs for a canary of its own (k).
    #[arg(long, default_value_t = 20)]
    min_agents: u32,
    #[arg(long, default_value_t = 1_000)]
    runs: u64,
}

fn main() {
    let args = Args::parse();
    for stratified in [true, false] {
        let scenario = Scenario {
            agents: args.agents,
            strata: args.strata,
            buggy_per_mille: args.buggy_per_mille,
            canaries: args.canaries,
            stratified,
            min_agents: args.min_agents,
        };
        let started = Instant::now();
        let (caught, runs, missed) = catch_rate(&scenario, 1, args.runs);
        let canaries: Vec<usize> = (1..=runs.min(50))
            .map(|seed| {
                drover_coordinator::rollout::strata::simulation::run(&scenario, seed).canaries
            })
            .collect();
        let mode = if stratified { "stratified" } else { "random" };
        println!(
            "{}",
            serde_json::json!({
                "mode": mode,
                "agents": args.agents,
                "strata": args.strata + 1,
                "buggy_share_pct": args.buggy_per_mille as f64 / 10.0,
                "group_canaries": args.canaries,
                "min_agents": args.min_agents,
                "runs": runs,
                "caught_at_canary_stage": caught,
                "caught_pct": caught as f64 * 100.0 / runs as f64,
                "canaries_picked_min": canaries.iter().min(),
                "canaries_picked_max": canaries.iter().max(),
                "first_missed": missed.first().map(|m| m.buggy_stratum.clone()),
                "seconds": started.elapsed().as_secs_f64(),
            })
        );
    }
}
