//! The spans an update attempt makes, read back from a local tracer provider.

use std::{collections::BTreeMap, sync::Arc};

use opentelemetry::trace::{SpanId, Status, TraceId, TracerProvider as _};
use opentelemetry_sdk::{
    error::OTelSdkResult,
    trace::{SdkTracerProvider, SimpleSpanProcessor, SpanData, SpanExporter},
};
use tracing_subscriber::EnvFilter;

use crate::{
    attempt,
    installers::backend::Backend,
    shared::{Shared, test_config},
    state::{DirectiveRecord, DirectiveSource, StateStore},
};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

#[derive(Debug, Clone, Default)]
struct Keep(Arc<parking_lot::Mutex<Vec<SpanData>>>);

impl SpanExporter for Keep {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().extend(batch);
        Ok(())
    }
}

/// Spans ended on this thread while it lives (tests run on a current-thread runtime).
struct Capture {
    keep: Keep,
    _provider: SdkTracerProvider,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Capture {
    fn start() -> Self {
        let keep = Keep::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(SimpleSpanProcessor::new(keep.clone()))
            .build();
        let subscriber = drover_telemetry::subscriber(
            drover_telemetry::LogFormat::Text,
            EnvFilter::new("off"),
            false,
            Some(provider.tracer("test")),
            std::io::sink,
        );
        let guard = tracing::subscriber::set_default(subscriber);
        Self {
            keep,
            _provider: provider,
            _guard: guard,
        }
    }

    fn named(&self, name: &str) -> Vec<SpanData> {
        let spans = self.keep.0.lock();
        spans.iter().filter(|s| s.name == name).cloned().collect()
    }
}

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

fn traced_directive(target: &str) -> DirectiveRecord {
    DirectiveRecord {
        directive_id: "d-1".into(),
        target_version: Some(target.into()),
        critical: false,
        reason: "group_active".into(),
        reason_detail: String::new(),
        control_plane_version: None,
        received_ms: 0,
        source: DirectiveSource::Push,
        schedule: None,
        attempt_id: String::new(),
        rollout_id: "r-1".into(),
        rollout_epoch: 0,
        trace_context: BTreeMap::from([(
            "traceparent".to_string(),
            format!("00-{TRACE}-{PARENT}-01"),
        )]),
    }
}

async fn shared(installer: Option<Backend>, target: &str) -> Shared {
    let store = StateStore::Memory {
        agent_id: "a-1".into(),
    };
    let mut state = store.load(Some("1.0.0".into())).await.unwrap();
    state.directive = Some(traced_directive(target));
    let mut config = test_config("http://127.0.0.1:1", &["1.2.0"]);
    if let Some(installer) = installer {
        config.installer = installer;
    }
    Shared::new(config, store, state)
}

fn children_of<'a>(spans: &'a [SpanData], parent: &SpanData) -> Vec<&'a str> {
    spans
        .iter()
        .filter(|s| s.parent_span_id == parent.span_context.span_id())
        .map(|s| s.name.as_ref())
        .collect()
}

#[tokio::test]
async fn a_successful_attempt_continues_the_directive_trace() {
    let capture = Capture::start();
    let shared = shared(None, "1.1.0").await;
    attempt::install(&shared, "1.1.0").await;

    let attempts = capture.named("update_attempt");
    assert_eq!(attempts.len(), 1);
    let attempt = &attempts[0];
    assert_eq!(
        attempt.span_context.trace_id(),
        TraceId::from_hex(TRACE).unwrap()
    );
    assert_eq!(attempt.parent_span_id, SpanId::from_hex(PARENT).unwrap());
    for (key, value) in [
        ("drover.agent_id", "a-1"),
        ("drover.from", "1.0.0"),
        ("drover.to", "1.1.0"),
        ("drover.reason", "group_active"),
        ("drover.outcome", "succeeded"),
    ] {
        assert_eq!(attr(attempt, key).as_deref(), Some(value), "{key}");
    }
    assert_eq!(attempt.status, Status::Unset);
    let all = capture.keep.0.lock().clone();
    assert_eq!(children_of(&all, attempt), ["install", "health_gate"]);
    assert!(all.iter().all(|s| s.status == Status::Unset));
}

#[tokio::test]
async fn a_reverted_attempt_is_an_error_with_the_failing_step_marked() {
    let capture = Capture::start();
    let shared = shared(None, "1.2.0").await; // broken in test_config
    attempt::install(&shared, "1.2.0").await;

    let attempt = &capture.named("update_attempt")[0];
    assert_eq!(attr(attempt, "drover.outcome").as_deref(), Some("reverted"));
    assert!(
        matches!(&attempt.status, Status::Error { description } if description.contains("reverted to 1.0.0"))
    );
    let all = capture.keep.0.lock().clone();
    assert_eq!(
        children_of(&all, attempt),
        ["install", "health_gate", "revert"]
    );
    let gate = &capture.named("health_gate")[0];
    assert!(
        matches!(&gate.status, Status::Error { description } if description.contains("unhealthy"))
    );
    // The revert's own install is its child.
    let revert = &capture.named("revert")[0];
    assert_eq!(children_of(&all, revert), ["install"]);
}

#[tokio::test]
async fn a_failed_download_marks_the_download_step() {
    let capture = Capture::start();
    let root = tempfile::tempdir().unwrap();
    let tarball = Backend::Tarball(crate::installers::tarball::TarballInstaller {
        root: root.path().into(),
        // Nothing listens here: the download fails at once.
        release_url: "http://127.0.0.1:1/releases".into(),
        public_key: String::new(),
        restart_command: None,
        timeout: std::time::Duration::from_secs(5),
        download: crate::installers::download::DownloadLimits {
            max_bytes: 1024,
            timeout: std::time::Duration::from_secs(5),
        },
    });
    let shared = shared(Some(tarball), "1.1.0").await;
    attempt::install(&shared, "1.1.0").await;

    let attempt = &capture.named("update_attempt")[0];
    assert_eq!(attr(attempt, "drover.outcome").as_deref(), Some("failed"));
    assert!(matches!(attempt.status, Status::Error { .. }));
    let download = &capture.named("download")[0];
    assert!(matches!(download.status, Status::Error { .. }));
    assert!(
        attr(download, "url.full")
            .unwrap()
            .ends_with("/1.1.0/manifest.json")
    );
    assert!(capture.named("verify").is_empty(), "nothing to verify");
}

#[tokio::test]
async fn without_a_trace_context_the_attempt_starts_its_own_trace() {
    let capture = Capture::start();
    let shared = shared(None, "1.1.0").await;
    shared
        .state
        .lock()
        .await
        .directive
        .as_mut()
        .unwrap()
        .trace_context
        .clear();
    let outer = tracing::info_span!("sim");
    let _entered = outer.enter();
    attempt::install(&shared, "1.1.0").await;
    let attempt = &capture.named("update_attempt")[0];
    assert_eq!(
        attempt.parent_span_id,
        SpanId::INVALID,
        "a root, not a child of `sim`"
    );
}

#[tokio::test]
async fn a_resumed_attempt_continues_the_same_trace() {
    let capture = Capture::start();
    let shared = shared(None, "1.1.0").await;
    let directive = traced_directive("1.1.0");
    let in_flight = crate::state::InFlight {
        attempt_id: "at-1".into(),
        directive_id: "d-1".into(),
        rollout_id: "r-1".into(),
        directive_attempt_id: String::new(),
        from: Some("1.0.0".into()),
        to: "1.1.0".into(),
        phase: crate::state::Phase::Verifying,
        started_ms: 1,
        failure: String::new(),
        host_failure: None,
        reason: directive.reason,
        trace_context: directive.trace_context,
    };
    attempt::resume(&shared, in_flight).await;
    let attempt = &capture.named("update_attempt")[0];
    assert_eq!(
        attempt.span_context.trace_id(),
        TraceId::from_hex(TRACE).unwrap()
    );
    assert_eq!(attr(attempt, "drover.attempt_id").as_deref(), Some("at-1"));
    assert!(
        attempt
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == "drover.resumed" && kv.value == true.into())
    );
}
