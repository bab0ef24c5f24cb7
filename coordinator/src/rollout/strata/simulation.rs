//! A seeded simulation of a group's canary stage over a stratified fleet: a release that
//! fails on one small stratum only. It runs the real engine (`reconcile`) from the group's
//! start until its canaries settle, and says whether the canary stage caught the bug. It
//! answers "how often do canaries miss a bug confined to one kind of host", for stratified
//! canaries and for the random canaries peers use.

use std::collections::HashSet;

use drover_rules::{HaltScope, Weekdays};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use semver::Version;

use super::StrataSpec;
use crate::{
    domain::Health,
    rollout::{
        AgentSnapshot, GroupSpec, Phase, RolloutSpec, RolloutState, Strategy, reconcile,
        verdict::VerdictSpec,
    },
};

#[derive(Debug, Clone)]
pub struct Scenario {
    pub agents: usize,
    /// Kinds of host besides the buggy one; their sizes are random.
    pub strata: usize,
    /// The buggy stratum's share of the fleet, in parts per thousand (5: 0.5 %).
    pub buggy_per_mille: usize,
    /// The group's own canary count.
    pub canaries: u32,
    /// Stratify (the default) or pick canaries at random, as peers do.
    pub stratified: bool,
    pub min_agents: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The canary stage halted the group, naming the buggy stratum.
    pub caught: bool,
    pub canaries: usize,
    pub buggy_stratum: String,
    pub buggy_agents: usize,
    pub note: String,
}

const LABELS: [&str; 3] = ["os", "arch", "installer"];
const OSES: [&str; 6] = ["debian", "ubuntu", "rhel", "rocky", "sles", "alpine"];
const ARCHES: [&str; 2] = ["x86_64", "aarch64"];
const INSTALLERS: [&str; 4] = ["apt", "dnf", "zypper", "tarball"];

fn stratum_names() -> Vec<String> {
    let mut names = Vec::new();
    for os in OSES {
        for arch in ARCHES {
            for installer in INSTALLERS {
                names.push(format!("os={os},arch={arch},installer={installer}"));
            }
        }
    }
    names
}

/// One run with `seed`: a fresh random fleet, a random buggy stratum, a fresh rollout id.
pub fn run(scenario: &Scenario, seed: u64) -> Outcome {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut names = stratum_names();
    names.shuffle(&mut rng);
    let strata = scenario.strata.min(names.len() - 1);
    let buggy_stratum = names[strata].clone();
    let buggy_agents = scenario.agents * scenario.buggy_per_mille / 1000;
    // The rest split at random: each stratum gets a random weight.
    let weights: Vec<f64> = (0..strata).map(|_| rng.random_range(0.05..1.0)).collect();
    let total: f64 = weights.iter().sum();
    let mut fleet: Vec<AgentSnapshot> = Vec::with_capacity(scenario.agents);
    let mut push = |fleet: &mut Vec<AgentSnapshot>, stratum: &str| {
        let id = format!("a{:05}-{:x}", fleet.len(), rng.random::<u32>());
        fleet.push(agent(id, stratum));
    };
    for _ in 0..buggy_agents {
        push(&mut fleet, &buggy_stratum);
    }
    let rest = scenario.agents - buggy_agents;
    let mut placed = 0;
    for (index, weight) in weights.iter().enumerate() {
        let n = if index + 1 == strata {
            rest - placed
        } else {
            ((weight / total) * rest as f64) as usize
        };
        placed += n;
        for _ in 0..n {
            push(&mut fleet, &names[index]);
        }
    }
    let spec = spec(scenario, seed);
    let buggy: HashSet<String> = fleet
        .iter()
        .filter(|a| a.stratum == buggy_stratum)
        .map(|a| a.agent_id.clone())
        .collect();
    let now = 1_795_392_000_000;
    let control_plane = Version::new(2, 0, 0);
    let mut state = RolloutState::new(&spec);
    // Start the group (canaries picked), let them install, then judge them.
    for step in 0..4 {
        let out = reconcile(now + step, &spec, &state, &fleet, Some(&control_plane));
        state = out.state;
        for agent in &mut fleet {
            let served = out.decisions[&agent.agent_id].target.as_ref();
            if served == Some(&spec.target_version) && agent.version.as_ref() != served {
                if buggy.contains(&agent.agent_id) {
                    agent.failed_at_ms = Some(now + step);
                } else {
                    agent.version = served.cloned();
                }
            }
        }
        if state.groups[0].phase != Phase::Canary {
            break;
        }
    }
    let group = &state.groups[0];
    Outcome {
        caught: group.phase == Phase::Halted && group.note.contains(&buggy_stratum),
        canaries: group.canaries.len(),
        buggy_stratum,
        buggy_agents,
        note: group.note.clone(),
    }
}

fn agent(agent_id: String, stratum: &str) -> AgentSnapshot {
    AgentSnapshot {
        agent_id,
        group: "prod".into(),
        version: Some(Version::new(1, 0, 0)),
        health: Health::Healthy,
        connected: true,
        pinned: false,
        failed_at_ms: None,
        joined_ms: 0,
        updated_at_ms: None,
        track: None,
        stratum: stratum.into(),
    }
}

fn spec(scenario: &Scenario, seed: u64) -> RolloutSpec {
    let strata = if scenario.stratified {
        StrataSpec {
            labels: LABELS.iter().map(|l| l.to_string()).collect(),
            min_agents: scenario.min_agents,
            halt_scope: HaltScope::Rollout,
        }
    } else {
        StrataSpec::off()
    };
    RolloutSpec {
        rollout_id: format!("r-{seed:012x}"),
        channel: "prod".into(),
        start_version: Version::new(1, 0, 0),
        target_version: Version::new(1, 1, 0),
        strategy: Strategy::HaltOnError,
        groups: vec![GroupSpec {
            name: "prod".into(),
            days: Weekdays::ALL,
            start_hour: 0,
            window_hours: 24,
            wait_hours: 0,
            canary_count: scenario.canaries,
        }],
        done_threshold_pct: 90,
        failure_threshold: 1,
        max_in_flight: 0,
        immediate: true,
        verdict: VerdictSpec::off(),
        strata,
        canary_seed: String::new(),
    }
}

/// `runs` seeded runs from `first_seed`: (caught, runs, the outcomes that missed).
pub fn catch_rate(scenario: &Scenario, first_seed: u64, runs: u64) -> (u64, u64, Vec<Outcome>) {
    let mut caught = 0;
    let mut missed = Vec::new();
    for seed in first_seed..first_seed + runs {
        let outcome = run(scenario, seed);
        if outcome.caught {
            caught += 1;
        } else {
            missed.push(outcome);
        }
    }
    (caught, runs, missed)
}
