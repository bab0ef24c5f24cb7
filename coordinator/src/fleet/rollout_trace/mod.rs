//! Each rollout is one OpenTelemetry trace, whose ids and sampling decision are made when
//! the rollout is created and stored with it (`rollouts.trace_parent`), so the trace
//! survives restarts and every replica continues it alike.
//!
//! A span is exported once, when it ends, and a rollout lasts days, longer than a
//! coordinator process may. So no span stays open: the trace is a skeleton of short spans
//! exported as soon as what they stand for begins, with the long stretches as leaf spans
//! exported when they end ([`spans`]):
//!
//! - `rollout` (the root, the stored span id), exported when the rollout is created;
//! - `rollout.group`, exported when the group starts; its agents' attempts hang under it;
//! - `rollout.group.phase`, one per phase a group went through (canary, active, halted…),
//!   exported when the phase ends, with the change as a `drover.phase.changed` event;
//! - `rollout.change` for a change that moves no group (a pause, a resume, a held stratum);
//! - `rollout.end` when the rollout is done or rolled back (`deployment.status`);
//! - `agent_update` (CLIENT), one agent's attempt from its report; the directive carries it
//!   as W3C `traceparent`, so the updater's `update_attempt` (SERVER) and its steps are
//!   its children.
//!
//! So while a rollout runs, every span's parent is already in the collector. Ids come from
//! the stored ones (`drover_telemetry::ids`) and from what each span stands for, so a span
//! is exported once, by the replica that committed its change.
//!
//! **Sampling** is decided once, at creation (`OTEL_TRACES_SAMPLER`, never sampled when the
//! coordinator exports nothing). **The agent bound**: of a sampled rollout's agents, the
//! canaries and every failure are always traced; of the rest, a share chosen so that about
//! `--trace-agent-budget` agents are (by a hash of the agent id, the same on every
//! replica). The directive's `traceparent` says which: its sampled flag is set only for
//! those the trace keeps from the start, and updaters follow it; the others' directives
//! carry `tracestate: drover=err-SPANID`, so their updaters hold their spans and send them
//! only if the attempt fails (`drover_telemetry::sampling`).

mod spans;

use std::collections::HashMap;

use opentelemetry::trace::{SpanId, TraceId};
use sha2::{Digest, Sha256};

pub use spans::{record_attempt, record_change, record_created};

/// All of a million: every agent is traced.
const EVERY_AGENT: u32 = 1_000_000;

/// A rollout's trace: its ids, whether it is sampled, and which share of its agents is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutTrace {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// Decided once, at creation: nothing of an unsampled rollout is exported, here or by
    /// its updaters.
    pub sampled: bool,
    /// Of agents neither canary nor failed, how many in a million are traced.
    pub agent_ppm: u32,
}

impl RolloutTrace {
    /// New random ids, sampled as this process's sampler says, tracing about `budget` of
    /// `agents` agents besides canaries and failures.
    pub fn generate(agents: u64, budget: u64) -> Self {
        let trace_id = TraceId::from(rand::random::<u128>().max(1));
        Self {
            trace_id,
            span_id: SpanId::from(rand::random::<u64>().max(1)),
            sampled: drover_telemetry::sampling::sample_new_trace(trace_id),
            agent_ppm: agent_share(agents, budget),
        }
    }

    /// As stored: `TRACEID-SPANID-FLAGS-PPM` in lower-case hex and decimal.
    pub fn to_text(&self) -> String {
        let flags = if self.sampled { "01" } else { "00" };
        format!(
            "{}-{}-{flags}-{}",
            self.trace_id, self.span_id, self.agent_ppm
        )
    }

    /// Also reads rollouts stored before sampling (`TRACEID-SPANID`): sampled, every agent.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('-');
        let trace_id = TraceId::from_hex(parts.next()?).ok()?;
        let span_id = SpanId::from_hex(parts.next()?).ok()?;
        let (sampled, agent_ppm) = match (parts.next(), parts.next(), parts.next()) {
            (None, None, None) => (true, EVERY_AGENT),
            (Some(flags), Some(ppm), None) => (
                u8::from_str_radix(flags, 16).ok()? & 1 == 1,
                ppm.parse::<u32>().ok()?.min(EVERY_AGENT),
            ),
            _ => return None,
        };
        (trace_id != TraceId::INVALID && span_id != SpanId::INVALID).then_some(Self {
            trace_id,
            span_id,
            sampled,
            agent_ppm,
        })
    }

    /// A child span's id, derived from this rollout's and `parts`: the same on every
    /// replica and after every restart.
    fn derived(&self, parts: &[&str]) -> SpanId {
        SpanId::from(self.hash(parts).max(1))
    }

    fn hash(&self, parts: &[&str]) -> u64 {
        let mut hash = Sha256::new();
        hash.update(self.span_id.to_bytes());
        for part in parts {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        let bytes: [u8; 8] = hash.finalize()[..8].try_into().expect("8 of 32 bytes");
        u64::from_be_bytes(bytes)
    }

    fn group_span(&self, group: &str, started_ms: i64) -> SpanId {
        self.derived(&["group", group, &started_ms.to_string()])
    }

    fn attempt_span(&self, agent_id: &str, directive_id: &str) -> SpanId {
        self.derived(&["agent", agent_id, directive_id])
    }

    /// Whether `agent_id` is among the share of agents traced whatever happens to them.
    pub fn agent_in_share(&self, agent_id: &str) -> bool {
        (self.hash(&["share", agent_id]) % u64::from(EVERY_AGENT)) < u64::from(self.agent_ppm)
    }

    /// Whether `agent_id`'s attempt is traced from its start (its directive says so).
    pub fn traces_agent(&self, agent_id: &str, canary: bool) -> bool {
        self.sampled && (canary || self.agent_in_share(agent_id))
    }

    /// The W3C trace context a directive carries to the agent: its attempt's span, sampled
    /// when the trace keeps this agent from the start; else, in a sampled rollout, with a
    /// `tracestate` asking the updater to send its steps only if the attempt fails.
    pub fn directive_context(
        &self,
        agent_id: &str,
        directive_id: &str,
        canary: bool,
    ) -> HashMap<String, String> {
        let span = self.attempt_span(agent_id, directive_id);
        let traced = self.traces_agent(agent_id, canary);
        let flags = if traced { "01" } else { "00" };
        let mut context = HashMap::from([(
            "traceparent".to_string(),
            format!("00-{}-{span}-{flags}", self.trace_id),
        )]);
        if self.sampled && !traced {
            context.insert(
                "tracestate".to_string(),
                drover_telemetry::sampling::keep_on_error(span),
            );
        }
        context
    }
}

/// The share (per million) of `agents` to trace so that about `budget` are.
fn agent_share(agents: u64, budget: u64) -> u32 {
    if agents <= budget {
        return EVERY_AGENT;
    }
    ((u128::from(budget) * u128::from(EVERY_AGENT)) / u128::from(agents)) as u32
}

impl super::Fleet {
    /// The span of a newly recorded report that names a traced rollout of its channel.
    pub(super) fn trace_report(
        &self,
        session: &super::registry::Session,
        report: &crate::domain::UpdateReport,
    ) {
        let Some(rollout) = self
            .rollout_status(&session.channel)
            .ok()
            .filter(|r| r.spec.rollout_id == report.rollout_id)
        else {
            return;
        };
        let Some(trace) = &rollout.trace else {
            return;
        };
        let group = rollout
            .spec
            .groups
            .iter()
            .position(|g| g.name == session.group)
            .or_else(|| rollout.spec.groups.len().checked_sub(1));
        let group = group.and_then(|i| {
            let started = rollout.state.groups.get(i)?.started_ms?;
            Some((rollout.spec.groups[i].name.as_str(), started))
        });
        let canary = is_canary(&rollout.state, &session.agent_id);
        record_attempt(
            trace,
            &rollout.spec,
            group,
            (&session.agent_id, canary),
            report,
        );
    }

    /// The W3C trace context for `agent_id`'s directive, if it comes from a traced rollout.
    pub fn directive_trace_context(
        &self,
        agent_id: &str,
        channel: &str,
        rollout_id: &str,
        directive_id: &str,
    ) -> HashMap<String, String> {
        if rollout_id.is_empty() {
            return HashMap::new();
        }
        let Some(rollout) = self
            .rollout_status(channel)
            .ok()
            .filter(|r| r.spec.rollout_id == rollout_id)
        else {
            return HashMap::new();
        };
        let canary = is_canary(&rollout.state, agent_id);
        rollout
            .trace
            .map(|trace| trace.directive_context(agent_id, directive_id, canary))
            .unwrap_or_default()
    }
}

fn is_canary(state: &crate::rollout::RolloutState, agent_id: &str) -> bool {
    state
        .groups
        .iter()
        .any(|g| g.canaries.iter().any(|c| c == agent_id))
}

#[cfg(test)]
mod tests;
