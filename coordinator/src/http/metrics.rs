//! `GET /metrics` (Prometheus; a viewer token, like `/api/v1`) and the middleware that times
//! every HTTP request by its matched route.
//!
//! Fleet facts are computed here, at scrape time, from memory: the inventory the engine
//! reads, live sessions and active rollouts; never a store scan. Free labels (version,
//! group, channel) are capped at `LABEL_CAP` values each; the rest are summed as `other`.

use std::{sync::Arc, sync::atomic::Ordering, time::Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use drover_rules::{AckState, GroupPhase, RolloutStatus};
use prometheus_client::{
    encoding::{EncodeLabelSet, text},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{
    fleet::Fleet,
    metrics::{HttpLabels, LABEL_CAP, OTHER, cap_labels, to_classic_text},
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabels {
    version: String,
    group: String,
    channel: String,
    health: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupAgentLabels {
    channel: String,
    group: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StopAckLabels {
    channel: String,
    state: &'static str,
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics for clients that ask for it (Prometheus does), else the classic text format
/// (promtool, curl).
pub async fn scrape(State(fleet): State<Arc<Fleet>>, headers: HeaderMap) -> Response {
    let facts = fleet_facts(&fleet);
    let mut body = String::new();
    let encoded = text::encode_registry(&mut body, fleet.metrics().registry())
        .and_then(|()| text::encode_registry(&mut body, &facts))
        .and_then(|()| text::encode_eof(&mut body));
    if let Err(err) = encoded {
        tracing::error!(error = %err, "cannot encode /metrics");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let wants_openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    if wants_openmetrics {
        ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response()
    } else {
        ([(header::CONTENT_TYPE, CLASSIC)], to_classic_text(&body)).into_response()
    }
}

/// A registry built for this scrape from the fleet's memory.
fn fleet_facts(fleet: &Fleet) -> Registry {
    let mut registry = Registry::default();
    let connected = Gauge::<i64>::default();
    connected.set(fleet.sessions.len() as i64);
    registry.register(
        "drover_updaters_connected",
        "Updaters with an open stream to this coordinator",
        connected,
    );
    registry.register(
        "drover_agents",
        format!(
            "Known agents by version, group, channel and health (from memory). Each of version, group and channel keeps its {LABEL_CAP} most common values; the rest are summed under '{OTHER}'"
        ),
        agents(fleet),
    );
    rollouts(fleet, &mut registry);
    stop_acks(fleet, &mut registry);
    let alarms = Family::<ReasonLabels, Gauge>::default();
    for (code, n) in fleet.release_alarms() {
        let labels = ReasonLabels {
            reason: code.as_str(),
        };
        alarms
            .get_or_create(&labels)
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    registry.register(
        "drover_release_alarms",
        "Connected agents whose updater refused the signed release metadata or an install by it, or holds expired metadata (release_metadata_expired: a freeze), by reason",
        alarms,
    );
    let counters = &fleet.counters;
    for (name, help, value) in [
        (
            "drover_heartbeats",
            "Heartbeats received from updaters",
            counters.heartbeats.load(Ordering::Relaxed),
        ),
        (
            "drover_directives_pushed",
            "Directives pushed to connected updaters",
            counters.directives_pushed.load(Ordering::Relaxed),
        ),
        (
            "drover_stop_acks",
            "Stop epochs acknowledged by updaters (each agent's first per epoch)",
            counters.stop_acks.load(Ordering::Relaxed),
        ),
        (
            "drover_store_write_statements",
            "Write statements the store executed (inserts, updates, deletes)",
            fleet.store().write_statements(),
        ),
        (
            "drover_trace_spans_dropped",
            "Trace spans dropped instead of exported (queue full, or the OTLP collector down or slow)",
            drover_telemetry::dropped_spans_total(),
        ),
        (
            "drover_updater_trace_spans_dropped",
            "Trace spans updaters connected here said they dropped (their OTLP collector down or slow)",
            counters.updater_spans_dropped.load(Ordering::Relaxed),
        ),
    ] {
        let counter = Counter::<u64>::default();
        counter.inc_by(value);
        registry.register(name, help, counter);
    }
    registry
}

fn agents(fleet: &Fleet) -> Family<AgentLabels, Gauge> {
    let tally = fleet.agent_tally();
    let kept = |pick: fn(&(String, String, String, _)) -> &String| {
        cap_labels(tally.iter().map(|(k, n)| (pick(k).as_str(), *n)), LABEL_CAP)
    };
    let (versions, groups, channels) = (kept(|k| &k.0), kept(|k| &k.1), kept(|k| &k.2));
    let label = |value: &String, kept: &std::collections::HashSet<&str>| match kept
        .contains(value.as_str())
    {
        true => value.clone(),
        false => OTHER.to_string(),
    };
    let family = Family::<AgentLabels, Gauge>::default();
    for ((version, group, channel, health), n) in &tally {
        let labels = AgentLabels {
            version: label(version, &versions),
            group: label(group, &groups),
            channel: label(channel, &channels),
            health: health.as_str(),
        };
        family.get_or_create(&labels).inc_by(*n as i64);
    }
    family
}

/// Active rollouts by shown status, their groups by phase, and each group's agents by
/// state: series bounded by the active rollouts (one per channel) and their groups.
fn rollouts(fleet: &Fleet, registry: &mut Registry) {
    let (by_status, by_phase) = (
        Family::<StatusLabels, Gauge>::default(),
        Family::<PhaseLabels, Gauge>::default(),
    );
    let governing = [
        RolloutStatus::Active,
        RolloutStatus::Halted,
        RolloutStatus::RollingBack,
    ];
    for status in governing {
        by_status
            .get_or_create(&StatusLabels {
                status: status.as_str(),
            })
            .set(0);
    }
    for phase in GroupPhase::ALL {
        by_phase
            .get_or_create(&PhaseLabels {
                phase: phase.as_str(),
            })
            .set(0);
    }
    let group_agents = Family::<GroupAgentLabels, Gauge>::default();
    for rollout in fleet.rollouts() {
        by_status
            .get_or_create(&StatusLabels {
                status: rollout.shown_status().as_str(),
            })
            .inc();
        for ((spec, state), counts) in rollout
            .spec
            .groups
            .iter()
            .zip(&rollout.state.groups)
            .zip(&rollout.counts)
        {
            by_phase
                .get_or_create(&PhaseLabels {
                    phase: state.phase.as_str(),
                })
                .inc();
            let busy = counts.on_target + counts.in_flight + counts.failed;
            for (state, n) in [
                ("up_to_date", counts.on_target),
                ("in_flight", counts.in_flight),
                ("failed", counts.failed),
                ("waiting", counts.present.saturating_sub(busy)),
            ] {
                let labels = GroupAgentLabels {
                    channel: rollout.spec.channel.clone(),
                    group: spec.name.clone(),
                    state,
                };
                group_agents.get_or_create(&labels).set(n as i64);
            }
        }
    }
    registry.register(
        "drover_rollouts",
        "Rollouts governing a channel now, by status (at most one per channel)",
        by_status,
    );
    registry.register(
        "drover_rollout_groups",
        "Groups of the active rollouts, by phase",
        by_phase,
    );
    registry.register(
        "drover_rollout_group_agents",
        "Agents of each active rollout's groups by state: up_to_date (on the target), in_flight (sent it, not there yet), failed, waiting",
        group_agents,
    );
}

/// Each active rollout's stop epoch, and its agents by whether they have heard it: series
/// bounded by the active rollouts (one per channel) and three states.
fn stop_acks(fleet: &Fleet, registry: &mut Registry) {
    let (epochs, acks) = (
        Family::<ChannelLabels, Gauge>::default(),
        Family::<StopAckLabels, Gauge>::default(),
    );
    for rollout in fleet.rollouts() {
        let Some(tally) = fleet.stop_acks(&rollout) else {
            continue;
        };
        let channel = rollout.spec.channel.clone();
        epochs
            .get_or_create(&ChannelLabels {
                channel: channel.clone(),
            })
            .set(i64::try_from(tally.epoch).unwrap_or(i64::MAX));
        for (state, n) in [
            (AckState::Acknowledged, tally.acknowledged),
            (AckState::NotYet, tally.not_yet),
            (AckState::Unreachable, tally.unreachable),
        ] {
            let labels = StopAckLabels {
                channel: channel.clone(),
                state: state.as_str(),
            };
            acks.get_or_create(&labels).set(n as i64);
        }
    }
    registry.register(
        "drover_rollout_stop_epoch",
        "The latest stop epoch (halt, pause, rollback, held stratum) of each active rollout that has stopped",
        epochs,
    );
    registry.register(
        "drover_rollout_stop_acks",
        "Agents of each stopped active rollout by whether their updater acknowledged its latest stop: acknowledged, not_yet (connected), unreachable",
        acks,
    );
}

/// Times every routed request by its route template and status class (never the raw
/// path, so agent ids in paths make no series). Added with `route_layer`, so unmatched
/// paths (404s) are not timed.
pub async fn time_requests(
    State(fleet): State<Arc<Fleet>>,
    route: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    let route = route.map_or_else(|| "unmatched".to_string(), |r| r.as_str().to_string());
    let status = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    fleet
        .metrics()
        .http(HttpLabels { route, status }, started.elapsed());
    response
}
