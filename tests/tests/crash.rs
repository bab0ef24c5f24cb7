//! Deterministic crash tests: a real coordinator built with crash points dies at a named
//! point between two durable steps (or suffers a transient store error there), restarts on
//! the same store — SQLite and PostgreSQL — and the fleet must come out right: nobody told to
//! run a version it should not, exactly one event per transition, no lost or doubled report,
//! and the rollout finishes.

use std::{collections::HashMap, time::Duration};

use drover_tests::{
    CoordinatorBuilder, CoordinatorProcess, TestPostgres, create_rollout, droverctl,
    droverctl_json, eventually, simulate, utc_hour_now, wait_connected,
};
use serde_json::Value;

const FLEET: usize = 12;
const WAIT: Duration = Duration::from_secs(60);

enum Db {
    Sqlite,
    Postgres,
}

/// A store, a coordinator with `failpoints` armed, and a simulated fleet of 12 updaters on
/// channel `edge` at 1.0.0 in groups dev and prod.
struct Scenario {
    coordinator: CoordinatorProcess,
    _fleet: tokio::process::Child,
    _postgres: Option<TestPostgres>,
    _root: tempfile::TempDir,
}

impl Scenario {
    async fn start(db: Db, failpoints: &str) -> Self {
        let root = tempfile::tempdir().unwrap();
        let postgres = match db {
            Db::Sqlite => None,
            Db::Postgres => Some(TestPostgres::create().await),
        };
        let builder = match &postgres {
            Some(pg) => CoordinatorBuilder::with_database(root.path(), &pg.url),
            None => CoordinatorBuilder::sqlite(root.path()),
        };
        let coordinator = builder
            .failpoints(failpoints)
            .control_plane("2.0.0")
            .arg("--reconcile-ms")
            .arg("100")
            .arg("--heartbeat-secs")
            .arg("1")
            .start()
            .await;
        let url = coordinator.grpc_url();
        droverctl_json(&url, &["channels", "set", "edge", "1.0.0"]).await;
        let count = FLEET.to_string();
        let fleet = simulate(
            &url,
            root.path(),
            &[
                "--count",
                &count,
                "--groups",
                "dev,prod",
                "--channel",
                "edge",
                "--versions",
                "1.0.0",
                "--unhealthy-fraction",
                "0",
                "--ramp-up-secs",
                "0",
                "--recheck-secs",
                "3600",
            ],
        );
        wait_connected(&url, FLEET as u64).await;
        Self {
            coordinator,
            _fleet: fleet,
            _postgres: postgres,
            _root: root,
        }
    }

    fn url(&self) -> String {
        self.coordinator.grpc_url()
    }

    /// Sends `rollout create`; the coordinator may die while answering.
    async fn create_rollout(&self) {
        create_rollout(
            &self.url(),
            "edge",
            &["dev:canaries=1", "prod:canaries=1"],
            &["--immediate"],
        )
        .await;
    }

    /// Dies at the armed point, then comes back without crash points on the same store.
    async fn crash_and_restart(&mut self, point: &str) {
        let log = self.coordinator.wait_crash(WAIT).await;
        assert!(
            log.contains(&format!("failpoint {point}: crashing here")),
            "crashed elsewhere than at {point}:\n{log}"
        );
        self.coordinator.restart_disarmed().await;
    }

    /// The rollout finished, the channel serves the target, and every agent runs it and has
    /// reported it.
    async fn wait_finished(&self) {
        let url = self.url();
        eventually("the rollout is done on the target", WAIT, async || {
            let status = droverctl_json(&url, &["rollout", "status", "--channel", "edge"]).await;
            let channels = droverctl_json(&url, &["channels", "list"]).await;
            let edge = channels
                .as_array()?
                .iter()
                .find(|c| c["name"] == "edge")?
                .clone();
            let summary = droverctl_json(&url, &["fleet", "summary"]).await;
            // A heartbeat can show an agent's new version a moment before its report (the
            // next group commit for that agent) is stored: wait for every agent's report too.
            let events = droverctl_json(&url, &["events", "--limit", "1000"]).await;
            let reporters: std::collections::HashSet<&str> = events
                .as_array()?
                .iter()
                .filter(|e| e["kind"] == "update")
                .filter_map(|e| e["agent_id"].as_str())
                .collect();
            (status["status"] == "done"
                && edge["version"] == "1.1.0"
                && summary["by_version"]["1.1.0"] == FLEET as u64
                && reporters.len() == FLEET)
                .then_some(())
        })
        .await;
    }

    async fn events(&self) -> Vec<Value> {
        droverctl_json(&self.url(), &["events", "--limit", "1000"])
            .await
            .as_array()
            .unwrap()
            .clone()
    }

    /// The invariants every crash must keep.
    async fn check_history(&self) {
        let events = self.events().await;
        let texts: Vec<&str> = events.iter().filter_map(|e| e["text"].as_str()).collect();
        // Nobody was sent back: no update ever went to the start version.
        let downgrades: Vec<&&str> = texts.iter().filter(|t| t.contains("→ 1.0.0")).collect();
        assert!(
            downgrades.is_empty(),
            "agents were downgraded: {downgrades:?}"
        );
        // Exactly one event per transition.
        let mut transitions: HashMap<&str, usize> = HashMap::new();
        for event in events.iter().filter(|e| e["kind"] == "rollout") {
            *transitions
                .entry(event["text"].as_str().unwrap())
                .or_default() += 1;
        }
        for (text, count) in &transitions {
            assert_eq!(*count, 1, "transition logged {count} times: {text}");
        }
        assert_eq!(transitions.get("rollout done"), Some(&1), "{transitions:?}");
        // Nothing lost either: each group's events chain unstarted → … → done, every step's
        // "from" being the previous step's "to" (a transition saved without its event breaks it).
        for group in ["dev", "prod"] {
            let prefix = format!("group {group}: ");
            let steps: Vec<(&str, &str)> = events
                .iter()
                .filter(|e| e["kind"] == "rollout")
                .filter_map(|e| e["text"].as_str()?.strip_prefix(prefix.as_str()))
                .map(|t| {
                    let (from, rest) = t.split_once(" → ").expect("a transition");
                    (from, rest.split(' ').next().unwrap_or(rest))
                })
                .collect();
            let mut state = "unstarted";
            for (from, to) in &steps {
                assert_eq!(
                    *from, state,
                    "group {group}'s events skip a step: {steps:?}"
                );
                state = to;
            }
            assert_eq!(state, "done", "group {group} ends done: {steps:?}");
        }
        // Exactly one report per agent: none lost, none doubled.
        let mut reports: HashMap<&str, usize> = HashMap::new();
        for event in events.iter().filter(|e| e["kind"] == "update") {
            assert!(
                event["text"]
                    .as_str()
                    .unwrap()
                    .contains("1.0.0 → 1.1.0: succeeded"),
                "{event}"
            );
            *reports
                .entry(event["agent_id"].as_str().unwrap())
                .or_default() += 1;
        }
        assert_eq!(reports.len(), FLEET, "every agent's report: {reports:?}");
        assert!(reports.values().all(|n| *n == 1), "doubled: {reports:?}");
    }
}

/// Creates a rollout with `point` armed to crash, restarts, and checks the outcome.
async fn crash_during_rollout(db: Db, point: &str) {
    let mut scenario = Scenario::start(db, &format!("{point}=crash")).await;
    scenario.create_rollout().await;
    scenario.crash_and_restart(point).await;
    scenario.wait_finished().await;
    scenario.check_history().await;
}

macro_rules! crash_tests {
    ($($name:ident: $point:literal,)*) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crash_during_rollout(Db::Sqlite, $point).await;
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crash_during_rollout(Db::Postgres, $point).await;
                }
            )*
        }
    };
}

crash_tests! {
    creation_committed_before_the_first_pass: "create_rollout.after_commit",
    transition_written_but_not_its_events: "rollout.commit.before_events",
    transition_committed_not_yet_applied: "rollout.commit.after",
    rollout_done_but_channel_not_switched: "rollout.finish.before_channel_switch",
    rollout_finished_not_yet_handed_over: "rollout.finish.after_commit",
    report_stored_but_not_its_event: "report.before_event",
    report_committed_but_not_acknowledged: "report.before_ack",
}

/// A transient store error at the final commit (three times) is retried by the loop and
/// writes "rollout done" exactly once — it used to be written on every retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_store_errors_at_the_final_commit_write_each_event_once() {
    for db in [Db::Sqlite, Db::Postgres] {
        let scenario = Scenario::start(db, "rollout.finish.before_channel_switch=error*3").await;
        scenario.create_rollout().await;
        scenario.wait_finished().await;
        scenario.check_history().await;
    }
}

/// An admin change that committed survives a crash before it was pushed: after the
/// restart the channel has it (once, with one event) and the fleet gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_admin_change_survives_a_crash_before_its_push() {
    for db in [Db::Sqlite, Db::Postgres] {
        // The scenario's own `channels set` is the first hit; the test's is the second.
        let mut scenario = Scenario::start(db, "admin.after_commit=crash@2").await;
        droverctl(&scenario.url(), &["channels", "set", "edge", "1.1.0"]).await;
        scenario.crash_and_restart("admin.after_commit").await;
        let url = scenario.url();
        eventually("the fleet runs the committed version", WAIT, async || {
            let s = droverctl_json(&url, &["fleet", "summary"]).await;
            (s["by_version"]["1.1.0"] == FLEET as u64).then_some(())
        })
        .await;
        let events = scenario.events().await;
        let set = events
            .iter()
            .filter(|e| e["text"] == "channel edge set to 1.1.0")
            .count();
        assert_eq!(set, 1, "{events:?}");
        // Setting it again is a no-op: no second event.
        droverctl_json(&url, &["channels", "set", "edge", "1.1.0"]).await;
        let again = scenario
            .events()
            .await
            .iter()
            .filter(|e| e["text"] == "channel edge set to 1.1.0")
            .count();
        assert_eq!(again, 1);
    }
}

/// A pause that committed survives a crash before the pass that applies it: after the
/// restart the rollout is paused (one event) and moves nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_pause_survives_a_crash_before_it_was_applied() {
    for db in [Db::Sqlite, Db::Postgres] {
        let mut scenario = Scenario::start(db, "steer.after_commit=crash").await;
        let url = scenario.url();
        // A window that is never open now (an hour that just passed), so nobody moves yet.
        let hour = (utc_hour_now() + 23) % 24;
        let group = format!("dev:canaries=1,start={hour},window=1");
        assert!(
            create_rollout(&url, "edge", &[&group], &[]).await.0,
            "rollout create failed"
        );
        droverctl(&url, &["rollout", "pause", "--channel", "edge"]).await;
        scenario.crash_and_restart("steer.after_commit").await;
        let url = scenario.url();
        let status = droverctl_json(&url, &["rollout", "status", "--channel", "edge"]).await;
        assert_eq!(status["paused"], true, "{status}");
        let paused = scenario
            .events()
            .await
            .iter()
            .filter(|e| e["text"] == "rollout paused")
            .count();
        assert_eq!(paused, 1);
        let summary = droverctl_json(&url, &["fleet", "summary"]).await;
        assert_eq!(summary["by_version"]["1.0.0"], FLEET as u64, "{summary}");
    }
}
