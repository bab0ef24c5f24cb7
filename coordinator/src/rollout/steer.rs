//! Admin verbs on a rollout's state: pure, so the real call and its dry run compute the same
//! state, refuse the same requests, and the property tests can drive them with a fake clock.

use super::{Phase, RolloutSpec, RolloutState};
use crate::error::DroverError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutVerb {
    Pause,
    Resume,
    StartGroup {
        group: String,
        skip_canaries: bool,
    },
    /// Counts the group as done. The next group then starts by the strategy's rules (its
    /// turn and its window); `start_next_now` starts it at once instead, window or not.
    MarkDone {
        group: String,
        start_next_now: bool,
    },
    /// Lets a held stratum's agents update again (its failure was understood and fixed).
    ReleaseStratum {
        stratum: String,
    },
    /// `respect_windows: false` (the default) rolls back at once, like a critical update.
    Rollback {
        group: Option<String>,
        respect_windows: bool,
    },
}

/// A verb applied: the new state, the group it names (or empty) and the event text.
#[derive(Debug, Clone, PartialEq)]
pub struct Steered {
    pub state: RolloutState,
    pub group: String,
    pub text: String,
}

pub fn group_index(spec: &RolloutSpec, name: &str) -> Result<usize, DroverError> {
    spec.groups
        .iter()
        .position(|g| g.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = spec.groups.iter().map(|g| g.name.as_str()).collect();
            DroverError::NotFound(format!(
                "the rollout has no group '{name}'; its groups are {}",
                names.join(", ")
            ))
        })
}

/// Applies `verb` at `now_ms`, or refuses it (then nothing may change).
pub fn steer(
    now_ms: i64,
    spec: &RolloutSpec,
    state: &RolloutState,
    verb: &RolloutVerb,
) -> Result<Steered, DroverError> {
    let before = state;
    let mut state = state.clone();
    let (group, text) = match verb {
        RolloutVerb::Pause => {
            state.paused = true;
            (String::new(), "rollout paused".to_string())
        }
        RolloutVerb::Resume => {
            state.paused = false;
            (String::new(), "rollout resumed".to_string())
        }
        RolloutVerb::StartGroup {
            group,
            skip_canaries,
        } => {
            let g = &mut state.groups[group_index(spec, group)?];
            if !matches!(g.phase, Phase::Unstarted | Phase::Halted) {
                return Err(DroverError::FailedPrecondition(format!(
                    "group {group} is {}; only an unstarted or halted group can be started",
                    g.phase.as_str()
                )));
            }
            g.phase = Phase::Unstarted;
            g.force_start = true;
            // "Start it now" means its agents move now, not at its next window.
            g.ignore_window = true;
            g.skip_canaries = *skip_canaries;
            let how = if *skip_canaries {
                " without canaries"
            } else {
                ""
            };
            (group.clone(), format!("group {group} started by hand{how}"))
        }
        RolloutVerb::MarkDone {
            group,
            start_next_now,
        } => mark_done(now_ms, spec, &mut state, group, *start_next_now)?,
        RolloutVerb::ReleaseStratum { stratum } => {
            let Some(at) = state.held_strata.iter().position(|h| h.stratum == *stratum) else {
                let held: Vec<&str> = state
                    .held_strata
                    .iter()
                    .map(|h| h.stratum.as_str())
                    .collect();
                return Err(DroverError::FailedPrecondition(format!(
                    "stratum '{}' is not held; held: {}",
                    crate::domain::validate::truncate_for_message(stratum),
                    if held.is_empty() {
                        "none".to_string()
                    } else {
                        held.join("; ")
                    }
                )));
            };
            let mut released = state.held_strata.remove(at);
            released.since_ms = now_ms;
            released.note = "released by an admin".into();
            state.released_strata.retain(|r| r.stratum != *stratum);
            state.released_strata.push(released);
            (
                String::new(),
                format!("stratum {stratum} released: its agents update again"),
            )
        }
        RolloutVerb::Rollback {
            group,
            respect_windows,
        } => {
            let indexes: Vec<usize> = match group {
                Some(name) => vec![group_index(spec, name)?],
                None => (0..spec.groups.len()).collect(),
            };
            for index in indexes {
                let g = &mut state.groups[index];
                g.phase = Phase::Rolledback;
                g.rollback_urgent = !respect_windows;
                g.note = format!("rolled back to {}", spec.start_version);
            }
            let what = group
                .as_deref()
                .map(|g| format!("group {g}"))
                .unwrap_or_else(|| "every group".into());
            let when = if *respect_windows {
                "in the agents' maintenance windows"
            } else {
                "at once"
            };
            (
                group.clone().unwrap_or_default(),
                format!("{what} rolled back to {} {when}", spec.start_version),
            )
        }
    };
    state.stamp_changes(before, now_ms);
    Ok(Steered { state, group, text })
}

fn mark_done(
    now_ms: i64,
    spec: &RolloutSpec,
    state: &mut RolloutState,
    group: &str,
    start_next_now: bool,
) -> Result<(String, String), DroverError> {
    let index = group_index(spec, group)?;
    let phase = state.groups[index].phase;
    if matches!(phase, Phase::Done | Phase::Rolledback) {
        return Err(DroverError::FailedPrecondition(format!(
            "group {group} is {}; only a group that has not finished can be marked done",
            phase.as_str()
        )));
    }
    // Checked before anything changes: a refused `--now` must leave the group as it was.
    let next = if start_next_now {
        let Some(next) = spec.groups.get(index + 1) else {
            return Err(DroverError::FailedPrecondition(format!(
                "group {group} is the last group; --now has no next group to start"
            )));
        };
        let next_phase = state.groups[index + 1].phase;
        if next_phase != Phase::Unstarted {
            return Err(DroverError::FailedPrecondition(format!(
                "the next group, {}, is {}; --now starts only an unstarted group",
                next.name,
                next_phase.as_str()
            )));
        }
        Some(next.name.clone())
    } else {
        None
    };
    let g = &mut state.groups[index];
    g.phase = Phase::Done;
    g.done_ms = Some(now_ms);
    // A time-based successor counts from its predecessor's start: a group marked done
    // before it started counts as started now, or the next one would wait forever.
    g.started_ms = g.started_ms.or(Some(now_ms));
    g.force_start = false;
    g.note = "marked done by hand".into();
    let text = match next {
        Some(next) => {
            let n = &mut state.groups[index + 1];
            n.force_start = true;
            n.ignore_window = true;
            n.note = format!("started by hand when group {group} was marked done");
            format!("group {group} marked done; group {next} started by hand (--now)")
        }
        None => format!(
            "group {group} marked done; the next group starts by the {} rules",
            match spec.strategy {
                super::Strategy::HaltOnError => "halt-on-error",
                super::Strategy::TimeBased => "time-based",
            }
        ),
    };
    Ok((group.to_string(), text))
}

#[cfg(test)]
mod tests;
