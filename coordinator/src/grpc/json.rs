//! JSON of the admin messages the HTTP API serves (`/api/v1/rollouts…`,
//! `/api/v1/agents/{id}/history`): the same shapes as `droverctl -o json` prints for the
//! same objects (ctl/src/commands/rollout/history.rs, agent_history.rs, events.rs). One
//! function per message over the proto type, like droverctl's, so both copies can move into
//! one shared API crate; `tests/tests/history.rs` checks the two agree.

use drover_proto::v1 as pb;
use serde_json::{Value, json};

fn time_text(ts: &prost_types::Timestamp) -> String {
    drover_rules::time::rfc3339(ts.seconds.saturating_mul(1000))
}

/// The outcome's stable text (`succeeded`, `failed`, `reverted`, `refused`).
fn outcome(value: i32) -> String {
    pb::UpdateOutcome::try_from(value)
        .map(|s| s.as_str_name().trim_start_matches("UPDATE_OUTCOME_"))
        .unwrap_or("UNSPECIFIED")
        .to_lowercase()
}

pub fn status_json(s: &pb::RolloutStatus) -> Value {
    json!({
        "rollout_id": s.rollout_id,
        "channel": s.channel,
        "start_version": s.start_version,
        "target_version": s.target_version,
        "status": s.status,
        "paused": s.paused,
        "created_at": s.created_at.as_ref().map(time_text),
        "groups": s.groups.iter().map(|g| json!({
            "name": g.name, "state": g.state, "note": g.note, "canaries": g.canaries,
            "initial": g.initial, "present": g.present, "on_target": g.on_target,
            "healthy": g.healthy, "failed": g.failed,
            "started_at": g.started_at.as_ref().map(time_text),
            "done_at": g.done_at.as_ref().map(time_text),
        })).collect::<Vec<_>>(),
    })
}

pub fn rollout_page_json(page: &pb::ListRolloutsResponse) -> Value {
    json!({
        "rollouts": page.rollouts.iter().map(status_json).collect::<Vec<_>>(),
        "next_page_token": (!page.next_page_token.is_empty()).then_some(&page.next_page_token),
    })
}

pub fn rollout_detail_json(d: &pb::RolloutDetail) -> Value {
    json!({
        "rollout": d.rollout.as_ref().map(status_json),
        "timelines": d.timelines.iter().map(timeline_json).collect::<Vec<_>>(),
        "truncated": d.truncated,
    })
}

fn timeline_json(t: &pb::RolloutTimeline) -> Value {
    json!({
        "group": t.group,
        "events": t.events.iter().map(event_json).collect::<Vec<_>>(),
    })
}

pub fn event_json(e: &pb::Event) -> Value {
    json!({
        "event_id": e.event_id, "at": e.at.as_ref().map(time_text), "kind": e.kind,
        "rollout_id": e.rollout_id, "group": e.group, "agent_id": e.agent_id,
        "actor": e.actor, "text": e.text,
    })
}

pub fn agent_history_json(h: &pb::AgentHistory) -> Value {
    json!({
        "agent_id": h.agent_id,
        "agent_version": h.agent_version,
        "group": h.group,
        "channel": h.channel,
        "reports": h.reports.iter().map(report_json).collect::<Vec<_>>(),
        "events": h.events.iter().map(event_json).collect::<Vec<_>>(),
    })
}

fn report_json(r: &pb::UpdateReport) -> Value {
    json!({
        "attempt_id": r.attempt_id,
        "from_version": r.from_version,
        "to_version": r.to_version,
        "outcome": outcome(r.outcome),
        "error": r.error,
        "started_at": r.started_at.as_ref().map(time_text),
        "finished_at": r.finished_at.as_ref().map(time_text),
        "directive_id": r.directive_id,
        "rollout_id": r.rollout_id,
    })
}
