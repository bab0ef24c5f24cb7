//! Prometheus metrics: one registry per coordinator (no global), families resolved once.
//!
//! Two kinds, as crates.io splits them. Instance metrics (latencies, counts of what this
//! process did) are recorded as things happen, through [`Metrics`]: the fleet, the store and
//! the edges call its few methods and never touch `prometheus_client` themselves. Fleet
//! facts (connected updaters, agents by version, rollout progress) are computed at scrape
//! time from the fleet's in-memory inventory and rollouts (`http/metrics.rs`), never from a
//! store scan, so a scrape costs memory reads only.
//!
//! Labels are fixed sets (enums as `&'static str`) or capped (`cap_labels`): no series per
//! agent or rollout id, ever.

use std::time::Duration;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

/// Distinct values of a free label (version, group, channel) kept before the rest are
/// summed under `other`.
pub const LABEL_CAP: usize = 50;
pub const OTHER: &str = "other";

/// Store operations timed by `drover_store_calls_seconds` (a fixed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreOp {
    /// The group commit of updaters' writes.
    AgentBatch,
    LivenessFlush,
    RolloutCreate,
    RolloutCommit,
    ReadinessProbe,
    Prune,
}

impl StoreOp {
    fn as_str(self) -> &'static str {
        match self {
            Self::AgentBatch => "agent_batch",
            Self::LivenessFlush => "liveness_flush",
            Self::RolloutCreate => "rollout_create",
            Self::RolloutCommit => "rollout_commit",
            Self::ReadinessProbe => "readiness_probe",
            Self::Prune => "prune",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReportLabels {
    outcome: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcLabels {
    pub method: &'static str,
    pub code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The matched route template (`/api/v1/agents/{agent_id}`), never the raw path.
    pub route: String,
    pub status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The instance metrics and the registry they live in.
pub struct Metrics {
    registry: Registry,
    reports: Family<ReportLabels, Counter>,
    reconcile_pass: Histogram,
    store_calls: Family<OpLabels, Histogram>,
    store_errors: Family<OpLabels, Counter>,
    grpc: Family<GrpcLabels, Histogram>,
    http: Family<HttpLabels, Histogram>,
    webhook_deliveries: Family<ResultLabels, Counter>,
    webhook_dropped: Counter,
    enrolments_during_rollout: Counter,
    reconciler_leader: prometheus_client::metrics::gauge::Gauge,
}

/// Latency buckets, 1 ms to ~8 s: each bucket is one more series per label set, so few.
fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.001, 4.0, 8)
}

fn histograms<S: Clone + std::hash::Hash + Eq>() -> Family<S, Histogram> {
    Family::new_with_constructor(|| Histogram::new(latency_buckets()))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Self {
            reports: Family::default(),
            reconcile_pass: Histogram::new(latency_buckets()),
            store_calls: histograms(),
            store_errors: Family::default(),
            grpc: histograms(),
            http: histograms(),
            webhook_deliveries: Family::default(),
            webhook_dropped: Counter::default(),
            enrolments_during_rollout: Counter::default(),
            reconciler_leader: Default::default(),
            registry: Registry::default(),
        };
        registry.register(
            "drover_update_reports",
            "Update reports received from updaters, by outcome and reason (rollout: the report names a rollout; channel: it does not). Resends count again",
            m.reports.clone(),
        );
        registry.register(
            "drover_reconcile_pass_seconds",
            "Duration of one reconcile pass over every active rollout, with its commits",
            m.reconcile_pass.clone(),
        );
        registry.register(
            "drover_store_calls_seconds",
            "Duration of store calls, by operation (a fixed set: agent_batch, liveness_flush, rollout_create, rollout_commit, readiness_probe, prune)",
            m.store_calls.clone(),
        );
        registry.register(
            "drover_store_errors",
            "Store calls that failed, by operation",
            m.store_errors.clone(),
        );
        registry.register(
            "drover_grpc_request_seconds",
            "gRPC calls by method (fixed set of RPC names, else other) and code: time to the response headers (for streams, to the stream's opening)",
            m.grpc.clone(),
        );
        registry.register(
            "drover_http_request_seconds",
            "HTTP requests by matched route template and status class (2xx, 4xx, ...)",
            m.http.clone(),
        );
        registry.register(
            "drover_webhook_deliveries",
            "Webhook alert posts by result: delivered, retried (an attempt failed; another follows) or failed (attempts exhausted)",
            m.webhook_deliveries.clone(),
        );
        registry.register(
            "drover_webhook_dropped",
            "Webhook alerts dropped unsent because the queue was full (the oldest goes first)",
            m.webhook_dropped.clone(),
        );
        registry.register(
            "drover_enrolments_during_rollout",
            "Agents that enrolled into a group while a rollout was updating it (held until the group is done; a burst can mean a leaked join token)",
            m.enrolments_during_rollout.clone(),
        );
        registry.register(
            "drover_reconciler_leader",
            "1 while this replica runs the rollout engine's transitions (it holds the reconciler lease, or it is the only replica), else 0",
            m.reconciler_leader.clone(),
        );
        Self { registry, ..m }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn report(&self, outcome: &'static str, names_rollout: bool) {
        let reason = if names_rollout { "rollout" } else { "channel" };
        self.reports
            .get_or_create(&ReportLabels { outcome, reason })
            .inc();
    }

    pub fn reconciler_leader(&self, leader: bool) {
        self.reconciler_leader.set(i64::from(leader));
    }

    pub fn reconcile_pass(&self, took: Duration) {
        self.reconcile_pass.observe(took.as_secs_f64());
    }

    pub fn store_call(&self, op: StoreOp, took: Duration, ok: bool) {
        let labels = OpLabels { op: op.as_str() };
        self.store_calls
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if !ok {
            self.store_errors.get_or_create(&labels).inc();
        }
    }

    pub fn grpc(&self, labels: GrpcLabels, took: Duration) {
        self.grpc.get_or_create(&labels).observe(took.as_secs_f64());
    }

    pub fn http(&self, labels: HttpLabels, took: Duration) {
        self.http.get_or_create(&labels).observe(took.as_secs_f64());
    }

    pub fn webhook_delivery(&self, result: &'static str) {
        self.webhook_deliveries
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn webhook_dropped(&self) {
        self.webhook_dropped.inc();
    }

    pub fn enrolment_during_rollout(&self) {
        self.enrolments_during_rollout.inc();
    }
}

/// Keeps the `cap` values with the highest counts (ties by name, so scrapes agree) and maps
/// the rest to `other`: the label's cardinality is bounded whatever the fleet does.
pub fn cap_labels<'a>(
    counts: impl IntoIterator<Item = (&'a str, u64)>,
    cap: usize,
) -> std::collections::HashSet<&'a str> {
    let mut totals: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for (value, count) in counts {
        *totals.entry(value).or_default() += count;
    }
    let mut ranked: Vec<(&str, u64)> = totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    ranked.into_iter().take(cap).map(|(v, _)| v).collect()
}

/// OpenMetrics (what `prometheus_client` writes) → the classic text format 0.0.4, for
/// clients that do not ask for OpenMetrics (promtool, curl): a counter family is named with
/// its `_total` suffix, `# UNIT` and `# EOF` lines go.
pub fn to_classic_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line.starts_with("# HELP ") {
            help = Some(line);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let name = if kind == "counter" && !name.ends_with("_total") {
                format!("{name}_total")
            } else {
                name.to_string()
            };
            if let Some(help) = help.take() {
                let text = help
                    .strip_prefix("# HELP ")
                    .and_then(|h| h.split_once(' '))
                    .map_or("", |(_, text)| text);
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_keep_the_biggest_values() {
        let kept = cap_labels([("a", 5), ("b", 1), ("c", 9), ("a", 5)], 2);
        assert_eq!(kept, ["a", "c"].into_iter().collect());
    }

    #[test]
    fn classic_text_names_counters_with_total() {
        let om = "# HELP x_y Things.\n# TYPE x_y counter\nx_y_total 3\n# UNIT a_seconds seconds\n# EOF\n";
        assert_eq!(
            to_classic_text(om),
            "# HELP x_y_total Things.\n# TYPE x_y_total counter\nx_y_total 3\n"
        );
    }
}
