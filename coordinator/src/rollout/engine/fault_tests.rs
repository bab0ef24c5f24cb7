//! The engine under faults, as the coordinator runs it: a leader that reconciles and commits,
//! a follower deciding from the committed state it last loaded, restarts that forget every
//! decision, cut connections that fail commits and reports, updaters that reconnect to
//! either replica mid-install. Random interleavings, over 100,000 steps in all, check that
//! no directive ever names a version other than the target (a hold names none), that no
//! more agents of a group install at once than its cap, and that once the faults stop the
//! rollout finishes.

use std::collections::HashMap;

use proptest::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::tests::MONDAY;
use super::*;
use crate::rollout::{GroupSpec, Strategy};
use drover_rules::Weekdays;

const STEPS: usize = 400;
const CASES: u32 = 256;

struct Agent {
    version: Version,
    /// The version being installed and the steps left.
    installing: Option<(Version, u32)>,
    /// A finished install not yet acknowledged (the updater resends it).
    unreported: bool,
    /// The replica its session is on.
    home: usize,
}

struct Replica {
    /// `None` after a restart, until its first pass: it answers "hold what you have".
    decisions: Option<HashMap<String, AgentDecision>>,
    /// The agents' versions as this replica knows them.
    known: Vec<Version>,
    /// The committed rollout state this replica last loaded (the follower's may be old).
    state: RolloutState,
}

struct World {
    spec: RolloutSpec,
    committed: RolloutState,
    /// The agents' versions as the store has them.
    stored: Vec<Version>,
    agents: Vec<Agent>,
    replicas: [Replica; 2],
    now: i64,
}

const LEADER: usize = 0;
const FOLLOWER: usize = 1;

fn id(i: usize) -> String {
    format!("agent-{i}")
}

impl World {
    fn new(rng: &mut StdRng) -> Self {
        let max_in_flight = rng.random_range(1..4);
        let groups = (0..rng.random_range(1..=2))
            .map(|i| GroupSpec {
                name: ["a", "b"][i].into(),
                days: Weekdays(127),
                start_hour: 0,
                window_hours: 24,
                wait_hours: 0,
                canary_count: rng.random_range(0..=max_in_flight),
            })
            .collect();
        let spec = RolloutSpec {
            rollout_id: format!("r-{}", rng.random::<u32>()),
            channel: "c".into(),
            start_version: Version::new(1, 0, 0),
            target_version: Version::new(1, 1, 0),
            strategy: Strategy::HaltOnError,
            groups,
            done_threshold_pct: rng.random_range(50..=100),
            failure_threshold: 1,
            max_in_flight,
            immediate: true,
            verdict: crate::rollout::verdict::VerdictSpec::off(),
            strata: crate::rollout::strata::StrataSpec::off(),
            canary_seed: String::new(),
        };
        let count = rng.random_range(3..20);
        let state = RolloutState::new(&spec);
        let replica = |_| Replica {
            decisions: None,
            known: vec![spec.start_version.clone(); count],
            state: state.clone(),
        };
        let replicas = [replica(0), replica(1)];
        Self {
            committed: state,
            stored: vec![spec.start_version.clone(); count],
            agents: (0..count)
                .map(|_| Agent {
                    version: spec.start_version.clone(),
                    installing: None,
                    unreported: false,
                    home: rng.random_range(0..2),
                })
                .collect(),
            replicas,
            spec,
            now: MONDAY,
        }
    }

    fn group_name(&self, i: usize) -> &'static str {
        ["a", "b"][i % 2]
    }

    fn snapshot(&self, replica: usize) -> Vec<AgentSnapshot> {
        (0..self.agents.len())
            .map(|i| AgentSnapshot {
                agent_id: id(i),
                group: self.group_name(i).into(),
                version: Some(self.replicas[replica].known[i].clone()),
                health: Health::Healthy,
                connected: true,
                pinned: false,
                failed_at_ms: None,
                joined_ms: 0,
                updated_at_ms: None,
                track: None,
                stratum: String::new(),
            })
            .collect()
    }

    /// The leader's pass: its decisions count only once their state is committed (a cut
    /// connection fails the commit, and the pass changes nothing).
    fn leader_pass(&mut self, cut: bool) {
        // Before a pass the leader merges what other replicas stored of their agents.
        self.merge_stored(LEADER);
        let cp = self.spec.target_version.clone();
        let snapshot = self.snapshot(LEADER);
        let leader = &self.replicas[LEADER];
        let out = reconcile(self.now, &self.spec, &leader.state, &snapshot, Some(&cp));
        if out.state != leader.state {
            // Compare-and-set on the state it read: a stale leader reloads instead.
            if cut || leader.state != self.committed {
                self.replicas[LEADER].state = self.committed.clone();
                return;
            }
            self.committed = out.state.clone();
        }
        let leader = &mut self.replicas[LEADER];
        leader.state = out.state;
        leader.decisions = Some(out.decisions);
    }

    fn follower_pass(&mut self) {
        let cp = self.spec.target_version.clone();
        let snapshot = self.snapshot(FOLLOWER);
        let follower = &mut self.replicas[FOLLOWER];
        let decided = decisions(self.now, &self.spec, &follower.state, &snapshot, Some(&cp));
        follower.decisions = Some(decided);
    }

    /// The change feed: the follower loads the committed state and the agents' stored facts
    /// for the sessions it does not hold.
    fn feed(&mut self, replica: usize) {
        self.replicas[replica].state = self.committed.clone();
        self.merge_stored(replica);
    }

    fn merge_stored(&mut self, replica: usize) {
        for i in 0..self.agents.len() {
            if self.agents[i].home != replica {
                self.replicas[replica].known[i] = self.stored[i].clone();
            }
        }
    }

    fn restart(&mut self, replica: usize) {
        let r = &mut self.replicas[replica];
        r.decisions = None;
        r.known = self.stored.clone();
        r.state = self.committed.clone();
    }

    /// Agent `i` hears its directive from its replica and acts on it.
    fn direct(&mut self, i: usize, rng: &mut StdRng) -> Result<(), TestCaseError> {
        let home = self.agents[i].home;
        let target = match &self.replicas[home].decisions {
            None => None, // not loaded yet: hold what you have
            Some(decided) => decided.get(&id(i)).and_then(|d| d.target.clone()),
        };
        let Some(target) = target else {
            return Ok(());
        };
        prop_assert_eq!(&target, &self.spec.target_version, "agent-{} sent back", i);
        let agent = &mut self.agents[i];
        if agent.version != target && agent.installing.is_none() {
            agent.installing = Some((target, rng.random_range(1..4)));
        }
        Ok(())
    }

    fn progress(&mut self, i: usize) {
        let agent = &mut self.agents[i];
        if let Some((version, left)) = agent.installing.take() {
            if left > 1 {
                agent.installing = Some((version, left - 1));
            } else {
                agent.version = version;
                agent.unreported = true;
            }
        }
    }

    /// Agent `i`'s report reaches its replica; committed unless the connection is cut.
    fn report(&mut self, i: usize, cut: bool) {
        let agent = &mut self.agents[i];
        if !agent.unreported || cut {
            return;
        }
        agent.unreported = false;
        self.stored[i] = agent.version.clone();
        self.replicas[agent.home].known[i] = agent.version.clone();
    }

    /// Agent `i` reconnects to `replica`; its hello commits the version it runs.
    fn reconnect(&mut self, i: usize, replica: usize, cut: bool) {
        let agent = &mut self.agents[i];
        if cut {
            return;
        }
        agent.home = replica;
        self.stored[i] = agent.version.clone();
        self.replicas[replica].known[i] = agent.version.clone();
    }

    /// While the rollout runs (once it has finished, the channel serves every straggler).
    fn check_in_flight(&self) -> Result<(), TestCaseError> {
        if self.committed.finished() {
            return Ok(());
        }
        for group in 0..self.spec.groups.len() {
            let installing = (0..self.agents.len())
                .filter(|i| {
                    self.spec.group_of(self.group_name(*i)) == group
                        && self.agents[*i].installing.is_some()
                })
                .count();
            prop_assert!(
                installing <= self.spec.max_in_flight as usize,
                "{installing} installing at once in group {group} (cap {})",
                self.spec.max_in_flight
            );
        }
        Ok(())
    }

    fn done(&self) -> bool {
        self.agents
            .iter()
            .all(|a| a.version == self.spec.target_version && a.installing.is_none())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn faults_never_send_an_agent_back_nor_exceed_the_cap_and_the_rollout_finishes(
        seed in any::<u64>()
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut world = World::new(&mut rng);
        let agents = world.agents.len();
        for _ in 0..STEPS {
            let cut = rng.random_bool(0.1);
            let i = rng.random_range(0..agents);
            match rng.random_range(0..100) {
                0..15 => world.leader_pass(cut),
                15..25 => world.follower_pass(),
                25..30 => world.feed(rng.random_range(0..2)),
                30..33 => world.restart(rng.random_range(0..2)),
                33..60 => world.direct(i, &mut rng)?,
                60..80 => world.progress(i),
                80..92 => world.report(i, cut),
                _ => world.reconnect(i, rng.random_range(0..2), cut),
            }
            world.now += 60_000;
            world.check_in_flight()?;
        }
        // The faults stop: every replica catches up, every agent acts and reports.
        for _ in 0..200 {
            if world.done() {
                break;
            }
            world.leader_pass(false);
            world.feed(FOLLOWER);
            world.follower_pass();
            for i in 0..agents {
                world.direct(i, &mut rng)?;
                world.progress(i);
                world.report(i, false);
                world.check_in_flight()?;
            }
            world.now += 60_000;
        }
        prop_assert!(world.done(), "the rollout did not finish: {:?}", world.committed);
    }
}
