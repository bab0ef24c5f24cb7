//! The health verdict's part in a group's transitions: who counts as updated, whether an
//! updated agent has been watched long enough, and what the bake decides.

use super::{AgentSnapshot, RolloutSpec, on_target};
use crate::rollout::verdict::{GroupVerdict, Observed, judge};

/// After its bake, how long a group whose verdict still lacks samples waits for them before
/// the verdict is inconclusive (and the rollout pauses).
pub(super) const EVIDENCE_GRACE_MS: i64 = 10 * 60_000;

/// The verdict over the agents of a group that send health samples: updated are those on
/// the target (judged once their track saw the install); the rest are the comparison.
pub(super) fn group_verdict(
    spec: &RolloutSpec,
    members: &[&AgentSnapshot],
    started_ms: Option<i64>,
) -> Option<GroupVerdict> {
    if !spec.verdict.enabled {
        return None;
    }
    started_ms?;
    let target = spec.target_version.to_string();
    let observed: Vec<Observed> = members
        .iter()
        .filter(|a| !a.pinned)
        .filter_map(|a| {
            let track = a.track.as_ref()?;
            // First sampled on the target already: it has no level before the install, so
            // it can never be judged; waiting for it would wait forever.
            if !track.installed && track.version == target {
                return None;
            }
            Some(Observed {
                agent_id: &a.agent_id,
                updated: on_target(spec, a),
                track,
            })
        })
        .collect();
    Some(judge(&spec.verdict, &observed))
}

/// Whether an agent on the target has run it for the spec's observation time (an agent
/// whose install time is unknown counts at once: it was there before anything was watched).
pub(super) fn watched_long_enough(now_ms: i64, spec: &RolloutSpec, agent: &AgentSnapshot) -> bool {
    let observe_ms = i64::try_from(spec.verdict.observe_secs)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000);
    !spec.verdict.enabled
        || observe_ms == 0
        || agent
            .updated_at_ms
            .is_none_or(|at| now_ms.saturating_sub(at) >= observe_ms)
}

/// When the bake of a group that reached its threshold at `threshold_ms` ends.
pub(super) fn bake_ends(spec: &RolloutSpec, threshold_ms: i64) -> i64 {
    let bake_ms = i64::try_from(spec.verdict.bake_secs)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000);
    if spec.verdict.enabled {
        threshold_ms.saturating_add(bake_ms)
    } else {
        threshold_ms
    }
}
