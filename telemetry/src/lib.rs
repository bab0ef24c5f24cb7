//! Drover's logs and traces, set up once per process by [`init`].
//!
//! - Logs go to stderr as text (coloured only on a terminal, never with `NO_COLOR`) or as
//!   JSON lines carrying `trace_id`/`span_id`; `RUST_LOG` filters them (default `info`).
//!   When stderr is the systemd journal (`JOURNAL_STREAM`), each line starts with its
//!   level's sd-daemon priority (`<3>` error … `<7>` debug), so journald files warnings
//!   and errors at their priority ([`journal`]).
//! - Spans (info and above, whatever `RUST_LOG` says) become OpenTelemetry spans when
//!   something listens: an exporter, or JSON log lines (which carry their ids); with
//!   neither, no span is made beyond what `RUST_LOG` asks for. They leave the process only
//!   when the standard variables ask for it
//!   (`OTEL_EXPORTER_OTLP_ENDPOINT` or `..._TRACES_ENDPOINT`, `OTEL_TRACES_EXPORTER` not
//!   `none`, `OTEL_SDK_DISABLED` not `true`; `OTEL_EXPORTER_OTLP_PROTOCOL` `grpc` or
//!   `http/protobuf`; `OTEL_BSP_*` tune the queue); the SDK reads
//!   `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_TRACES_SAMPLER[_ARG]`.
//! - Export runs on a thread of its own behind a bounded queue: a missing or slow collector
//!   loses spans (counted by [`Telemetry::dropped_spans`]) and never slows the program.
#![forbid(unsafe_code)]

mod export;
mod held;
pub mod ids;
pub mod journal;
pub mod json;
mod queue;
pub mod sampling;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use opentelemetry::{
    global,
    propagation::TextMapPropagator as _,
    trace::{Status, TracerProvider as _},
};
use opentelemetry_sdk::{
    propagation::TraceContextPropagator,
    trace::{SdkTracerProvider, Tracer},
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{
    EnvFilter, Layer as _, filter::LevelFilter, fmt::MakeWriter, layer::SubscriberExt as _,
    registry::LookupSpan, util::SubscriberInitExt as _,
};

pub use json::JsonLines;

/// How long [`Telemetry::shutdown`] may wait for the last spans to leave.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The shape of log lines on stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format '{other}'; use text or json")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An OTEL_* variable asks for something not built in.
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Exporter(String),
    #[error(
        "a tracing subscriber is already installed ({0}); call drover_telemetry::init once, first"
    )]
    Subscriber(String),
}

/// The process's telemetry; flushes and shuts the span export down (bounded) when dropped.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    dropped: Arc<AtomicU64>,
    exporting: bool,
    down: AtomicBool,
}

impl Telemetry {
    /// Spans that never reached the collector: the queue was full, the export failed or
    /// timed out, or they ended after shutdown.
    pub fn dropped_spans(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Whether spans are exported at all (the OTEL_* variables asked for it).
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// Sends what is queued and stops exporting, waiting at most [`SHUTDOWN_TIMEOUT`].
    /// Blocks the calling thread: call it after the runtime's work is done.
    pub fn shutdown(&self) {
        if self.down.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Err(err) = self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::warn!(error = %err, dropped_spans = self.dropped_spans(), "span export did not finish cleanly");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The counter of the process's [`Telemetry`], for metrics endpoints that cannot hold it.
static DROPPED: std::sync::OnceLock<Arc<AtomicU64>> = std::sync::OnceLock::new();

/// Spans the process dropped so far (see [`Telemetry::dropped_spans`]); 0 before [`init`].
pub fn dropped_spans_total() -> u64 {
    DROPPED
        .get()
        .map_or(0, |dropped| dropped.load(Ordering::Relaxed))
}

/// Spans whose target ends with this are context for log lines only, never OpenTelemetry
/// spans: a simulated updater's span around its whole life, which would end only at
/// shutdown. A suffix, so `RUST_LOG` still selects them by their module.
pub const LOG_ONLY: &str = "::log_only";

/// Spans dropped since the last call (in this process, whoever called): what an updater
/// tells its coordinator, so that a process running many agents counts each span once.
pub fn dropped_spans_to_report() -> u64 {
    static REPORTED: AtomicU64 = AtomicU64::new(0);
    let total = dropped_spans_total();
    total.saturating_sub(REPORTED.fetch_max(total, Ordering::Relaxed))
}

/// Installs the global subscriber, tracer provider and W3C TraceContext propagator.
/// Call once, at the start of `main`. `instance_id` names this process among others of
/// its service (`service.instance.id`; a random UUID when `None`).
pub fn init(
    default_service_name: &str,
    instance_id: Option<&str>,
    format: LogFormat,
) -> Result<Telemetry, Error> {
    let env = |name: &str| std::env::var(name).ok();
    let transport = export::plan(env)?;
    let dropped = DROPPED.get_or_init(|| Arc::new(AtomicU64::new(0))).clone();
    let (root_sampler, sampler_warning) = sampling::root_sampler(env);
    sampling::install(transport.is_some().then(|| root_sampler.clone()));
    let mut builder = SdkTracerProvider::builder()
        .with_resource(export::resource(default_service_name, instance_id))
        .with_sampler(sampling::provider_sampler(root_sampler))
        // Random ids, except where a caller presets them (`ids::with_span_ids`).
        .with_id_generator(ids::PresetIdGenerator::default());
    if let Some(transport) = transport {
        let config = queue::QueueConfig::from_env(|name| std::env::var(name).ok());
        let processor = queue::QueueProcessor::start(config, dropped.clone(), move || {
            export::exporter(transport, None)
        })
        .map_err(Error::Exporter)?;
        builder = builder.with_span_processor(processor);
    }
    let provider = builder.build();
    // The SDK's own info lines (provider set, …) are noise; its warnings are not.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,opentelemetry=warn,opentelemetry_sdk=warn"));
    // Colours only on a terminal, never with NO_COLOR: log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    // Spans are made only for someone: the exporter, or JSON lines that carry their ids.
    // Otherwise every span the code opens would be built and closed for nothing (15 % of
    // the coordinator's CPU on the heartbeat path, measured in #23).
    let tracer =
        (transport.is_some() || format == LogFormat::Json).then(|| provider.tracer("drover"));
    let writer = journal::JournalPriority::new(std::io::stderr, journal::stderr_is_journal());
    subscriber(format, filter, ansi, tracer, writer)
        .try_init()
        .map_err(|err| Error::Subscriber(err.to_string()))?;
    global::set_text_map_propagator(TraceContextPropagator::new());
    global::set_tracer_provider(provider.clone());
    if let Some(warning) = sampler_warning {
        tracing::warn!("{warning}");
    }
    Ok(Telemetry {
        provider,
        dropped,
        exporting: transport.is_some(),
        down: AtomicBool::new(false),
    })
}

/// The subscriber [`init`] installs, for tests that set it locally
/// (`tracing::subscriber::with_default`) with a tracer of their own. Without a `tracer`
/// no OpenTelemetry span is made.
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    ansi: bool,
    tracer: Option<Tracer>,
    writer: W,
) -> impl tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // A line that cannot be written (stderr closed) is dropped, never a panic.
    let lines = JsonLines::default();
    // Not optional: `Option<Layer>` does not pass the dispatch on. Filtered off, so that it
    // enables no span or event by itself (an unfiltered layer enables every callsite,
    // hyper's and h2's trace spans included); the filter still passes the dispatch on.
    let capture = lines.dispatch_capture().with_filter(LevelFilter::OFF);
    let (text, json) = match format {
        LogFormat::Text => {
            let text = tracing_subscriber::fmt::layer()
                .log_internal_errors(false)
                .with_writer(writer)
                .with_ansi(ansi)
                .with_filter(filter);
            (Some(text), None)
        }
        LogFormat::Json => {
            let json = tracing_subscriber::fmt::layer()
                .log_internal_errors(false)
                .with_writer(writer)
                .with_ansi(false)
                .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .event_format(lines)
                .with_filter(filter);
            (None, Some(json))
        }
    };
    // Info and above, never the log-only spans (decided once per callsite).
    let traced = tracing_subscriber::filter::filter_fn(|metadata| {
        *metadata.level() <= tracing::Level::INFO && !metadata.target().ends_with(LOG_ONLY)
    })
    .with_max_level_hint(LevelFilter::INFO);
    tracing_subscriber::registry()
        .with(tracer.map(|tracer| {
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                // Only what a trace reader needs: no busy/idle times, thread or source
                // location attributes on every span.
                .with_tracked_inactivity(false)
                .with_threads(false)
                .with_location(false)
                .with_target(false)
                .with_filter(traced)
        }))
        .with(text)
        .with(json)
        .with(capture)
}

/// The context a W3C `traceparent` (and `tracestate`) map carries; an empty or malformed
/// map gives a context without a span (a new trace starts).
pub fn context_from_w3c(map: &HashMap<String, String>) -> opentelemetry::Context {
    // Not `extract`: it starts from the current context, whose span would leak in.
    TraceContextPropagator::new().extract_with_context(&opentelemetry::Context::new(), map)
}

/// The W3C `traceparent`/`tracestate` of `cx`; empty when `cx` has no valid span.
pub fn w3c_from_context(cx: &opentelemetry::Context) -> HashMap<String, String> {
    let mut map = HashMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut map);
    map
}

/// Marks `span` failed: status ERROR with `message`, an `exception` event of `kind`
/// (semantic conventions 1.34, `exception.type` and `exception.message`), and the
/// `otel.status_code` and `otel.status_message` fields (declare them `Empty` on the span)
/// for the logs.
pub fn mark_error(span: &tracing::Span, kind: &str, message: &str) {
    span.record("otel.status_code", "ERROR");
    span.record("otel.status_message", message);
    span.add_event("exception", exception(kind, message));
    span.set_status(Status::error(message.to_string()));
}

/// The attributes of an `exception` event.
pub fn exception(kind: &str, message: &str) -> Vec<opentelemetry::KeyValue> {
    vec![
        opentelemetry::KeyValue::new("exception.type", kind.to_string()),
        opentelemetry::KeyValue::new("exception.message", message.to_string()),
    ]
}

/// An environment of `vars` only, for the functions that read one variable at a time.
#[cfg(test)]
pub(crate) fn env_of<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        vars.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.to_string())
    }
}

#[cfg(test)]
mod tests;
