use std::io::Write;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry_sdk::{
    error::OTelSdkResult,
    trace::{SimpleSpanProcessor, SpanData, SpanExporter},
};
use serde_json::Value;

use super::*;

/// Log lines written to memory.
#[derive(Clone, Default)]
struct Lines(Arc<parking_lot::Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Lines;
    fn make_writer(&'a self) -> Lines {
        self.clone()
    }
}

impl Lines {
    fn json(&self) -> Vec<Value> {
        String::from_utf8(self.0.lock().clone())
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

/// Keeps ended spans.
#[derive(Debug, Clone, Default)]
struct Keep(Arc<parking_lot::Mutex<Vec<SpanData>>>);

impl SpanExporter for Keep {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().extend(batch);
        Ok(())
    }
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn remote_parent() -> HashMap<String, String> {
    HashMap::from([
        ("traceparent".to_string(), TRACEPARENT.to_string()),
        ("tracestate".to_string(), "drover=1".to_string()),
    ])
}

#[test]
fn json_lines_carry_trace_ids_inside_a_span_and_not_outside() {
    let lines = Lines::default();
    let provider = SdkTracerProvider::builder().build();
    let subscriber = subscriber(
        LogFormat::Json,
        EnvFilter::new("info"),
        false,
        Some(provider.tracer("test")),
        lines.clone(),
    );
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(answer = 42, "outside");
        let work = tracing::info_span!("work");
        work.in_scope(|| tracing::warn!(answer = 43, flag = true, "inside"));
        let attempt = tracing::info_span!("update_attempt", drover.agent_id = "a-1");
        attempt
            .set_parent(context_from_w3c(&remote_parent()))
            .unwrap();
        attempt.in_scope(|| tracing::info!("continues the remote trace"));
    });
    let lines = lines.json();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let (outside, inside, remote) = (&lines[0], &lines[1], &lines[2]);
    assert_eq!(outside["message"], "outside");
    assert_eq!(outside["answer"], 42);
    assert_eq!(outside["level"], "INFO");
    assert!(outside["timestamp"].as_str().unwrap().contains('T'));
    assert!(outside.get("trace_id").is_none() && outside.get("span_id").is_none());

    assert_eq!(inside["message"], "inside");
    assert_eq!(
        (inside["answer"].clone(), inside["flag"].clone()),
        (43.into(), true.into())
    );
    assert_eq!(inside["level"], "WARN");
    assert_eq!(inside["span"], "work");
    assert_eq!(inside["spans"][0]["name"], "work");
    assert_eq!(
        remote["spans"][0]["drover.agent_id"], "a-1",
        "span fields: {remote}"
    );
    let hex = |v: &Value, len| {
        let text = v.as_str().unwrap_or_default();
        text.len() == len && text.chars().all(|c| c.is_ascii_hexdigit())
    };
    assert!(
        hex(&inside["trace_id"], 32) && hex(&inside["span_id"], 16),
        "{inside}"
    );

    assert_eq!(remote["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(
        remote["span_id"], "00f067aa0ba902b7",
        "a child of the remote span"
    );
}

#[test]
fn text_lines_are_written_too() {
    let lines = Lines::default();
    let provider = SdkTracerProvider::builder().build();
    let subscriber = subscriber(
        LogFormat::Text,
        EnvFilter::new("info"),
        false,
        Some(provider.tracer("test")),
        lines.clone(),
    );
    tracing::subscriber::with_default(subscriber, || tracing::info!(n = 1, "hello"));
    let text = String::from_utf8(lines.0.lock().clone()).unwrap();
    assert!(
        text.contains("hello") && text.contains("n=1") && !text.contains('\u{1b}'),
        "{text}"
    );
}

#[test]
fn w3c_helpers_round_trip() {
    let cx = context_from_w3c(&remote_parent());
    let span = cx.span();
    let ids = span.span_context();
    assert!(ids.is_valid() && ids.is_remote() && ids.is_sampled());
    assert_eq!(
        ids.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(w3c_from_context(&cx), remote_parent());

    let made = SpanContext::new(
        TraceId::from(7u128),
        SpanId::from(9u64),
        TraceFlags::NOT_SAMPLED,
        false,
        TraceState::default(),
    );
    let map =
        w3c_from_context(&opentelemetry::Context::new().with_remote_span_context(made.clone()));
    assert_eq!(
        map["traceparent"],
        "00-00000000000000000000000000000007-0000000000000009-00"
    );
    let back = context_from_w3c(&map);
    assert_eq!(back.span().span_context().trace_id(), made.trace_id());
    assert_eq!(back.span().span_context().span_id(), made.span_id());

    assert!(w3c_from_context(&opentelemetry::Context::new()).is_empty());
    let garbage = HashMap::from([("traceparent".to_string(), "not-a-parent".to_string())]);
    assert!(!context_from_w3c(&garbage).span().span_context().is_valid());
    // Never the caller's current span, whatever is active.
    let _active = opentelemetry::Context::new()
        .with_remote_span_context(made)
        .attach();
    assert!(!context_from_w3c(&garbage).span().span_context().is_valid());
    assert!(
        !context_from_w3c(&HashMap::new())
            .span()
            .span_context()
            .is_valid()
    );
}

#[test]
fn mark_error_sets_the_status_and_the_fields() {
    let keep = Keep::default();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(SimpleSpanProcessor::new(keep.clone()))
        .build();
    let lines = Lines::default();
    let subscriber = subscriber(
        LogFormat::Json,
        EnvFilter::new("info"),
        false,
        Some(provider.tracer("test")),
        lines,
    );
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!(
            "install",
            otel.status_code = tracing::field::Empty,
            otel.status_message = tracing::field::Empty
        );
        mark_error(&span, "std::io::Error", "disk full");
    });
    let spans = keep.0.lock();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].status, Status::error("disk full"));
    let event = spans[0].events.iter().next().expect("an exception event");
    assert_eq!(event.name, "exception");
    let attribute = |key: &str| {
        event
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(
        attribute("exception.type").as_deref(),
        Some("std::io::Error")
    );
    assert_eq!(attribute("exception.message").as_deref(), Some("disk full"));
}

#[test]
fn log_formats_parse() {
    assert_eq!("JSON".parse::<LogFormat>(), Ok(LogFormat::Json));
    assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
    assert!(
        "xml"
            .parse::<LogFormat>()
            .unwrap_err()
            .contains("use text or json")
    );
}

#[test]
fn journal_lines_start_with_their_levels_priority() {
    let lines = Lines::default();
    let provider = SdkTracerProvider::builder().build();
    for (format, on) in [
        (LogFormat::Text, true),
        (LogFormat::Json, true),
        (LogFormat::Text, false),
    ] {
        lines.0.lock().clear();
        let subscriber = subscriber(
            format,
            EnvFilter::new("debug"),
            false,
            Some(provider.tracer("test")),
            journal::JournalPriority::new(lines.clone(), on),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!("broke");
            tracing::warn!("careful");
            tracing::info!("fine\nsecond line");
            tracing::debug!("detail");
        });
        let text = String::from_utf8(lines.0.lock().clone()).unwrap();
        let got: Vec<&str> = text.lines().collect();
        if !on {
            assert!(got.iter().all(|line| !line.starts_with('<')), "{text}");
            continue;
        }
        let expect = [
            ("<3>", "broke"),
            ("<4>", "careful"),
            ("<6>", "fine"),
            ("<7>", "detail"),
        ];
        let firsts: Vec<&str> = got
            .iter()
            .copied()
            .filter(|line| !line.contains("second line") || format == LogFormat::Json)
            .collect();
        assert_eq!(firsts.len(), 4, "{format}: {text}");
        for (line, (prefix, word)) in firsts.iter().zip(expect) {
            assert!(
                line.starts_with(prefix) && line.contains(word),
                "{format}: {line}"
            );
        }
        if format == LogFormat::Json {
            // The prefix comes off before the JSON: what follows it parses.
            for line in &got {
                serde_json::from_str::<Value>(&line[3..]).unwrap();
            }
        } else {
            // A line break inside a message: its later line keeps the event's priority.
            assert!(got.contains(&"<6>second line"), "{text}");
        }
    }
}

#[test]
fn journal_stream_must_name_stderr_exactly() {
    assert!(journal::names_stream("29:4711", 29, 4711));
    assert!(journal::names_stream("29:4711\n", 29, 4711));
    assert!(!journal::names_stream("29:4712", 29, 4711));
    assert!(!journal::names_stream("28:4711", 29, 4711));
    assert!(!journal::names_stream("", 29, 4711));
    assert!(!journal::names_stream("29", 29, 4711));
    assert!(!journal::names_stream("x:4711", 29, 4711));
}

/// #23: with nothing listening, no span is made: neither the capture layer (which only
/// needs the dispatch) nor an absent tracer may enable what `RUST_LOG` filters out.
#[test]
fn spans_are_made_only_when_something_listens() {
    let quiet = subscriber(
        LogFormat::Text,
        EnvFilter::new("warn"),
        false,
        None,
        Lines::default(),
    );
    tracing::subscriber::with_default(quiet, || {
        assert!(!tracing::span_enabled!(tracing::Level::INFO));
        assert!(!tracing::span_enabled!(tracing::Level::TRACE));
        assert!(tracing::event_enabled!(tracing::Level::WARN));
    });
    // With a tracer, info spans are made for it; trace-level ones still are not.
    let provider = SdkTracerProvider::builder().build();
    let exporting = subscriber(
        LogFormat::Text,
        EnvFilter::new("warn"),
        false,
        Some(provider.tracer("test")),
        Lines::default(),
    );
    tracing::subscriber::with_default(exporting, || {
        assert!(tracing::span_enabled!(tracing::Level::INFO));
        assert!(!tracing::span_enabled!(tracing::Level::TRACE));
    });
}
