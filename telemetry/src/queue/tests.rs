use std::time::Instant;

use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;

use super::*;

/// An exporter whose collector never answers.
#[derive(Debug)]
struct Stuck;

impl SpanExporter for Stuck {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        std::future::pending().await
    }
}

/// An exporter that keeps what it is given.
#[derive(Debug, Clone, Default)]
struct Keep(Arc<parking_lot::Mutex<Vec<String>>>);

impl SpanExporter for Keep {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0
            .lock()
            .extend(batch.into_iter().map(|s| s.name.into_owned()));
        Ok(())
    }
}

fn provider<E: SpanExporter + 'static>(
    exporter: E,
    config: QueueConfig,
) -> (SdkTracerProvider, Arc<AtomicU64>) {
    let dropped = Arc::new(AtomicU64::new(0));
    let processor = QueueProcessor::start(config, dropped.clone(), move || Ok(exporter)).unwrap();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .build();
    (provider, dropped)
}

fn end_spans(provider: &SdkTracerProvider, count: usize) {
    let tracer = provider.tracer("test");
    for i in 0..count {
        tracer.start(format!("span-{i}")).end();
    }
}

#[test]
fn a_stuck_collector_never_slows_the_program_and_every_lost_span_is_counted() {
    let config = QueueConfig {
        max_queue: 4,
        max_batch: 2,
        delay: Duration::from_millis(10),
        export_timeout: Duration::from_millis(100),
    };
    let (provider, dropped) = provider(Stuck, config);
    let started = Instant::now();
    end_spans(&provider, 500);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "ending spans took {:?}",
        started.elapsed()
    );
    assert!(
        dropped.load(Ordering::Relaxed) > 400,
        "queue full drops are counted"
    );

    let started = Instant::now();
    provider
        .shutdown_with_timeout(Duration::from_secs(3))
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    // Queued spans whose export timed out count too: nothing reached the collector.
    assert_eq!(dropped.load(Ordering::Relaxed), 500);
}

#[test]
fn a_bounded_shutdown_returns_even_when_the_export_outlives_it() {
    let config = QueueConfig {
        export_timeout: Duration::from_secs(30),
        ..QueueConfig::default()
    };
    let (provider, _dropped) = provider(Stuck, config);
    end_spans(&provider, 3);
    let started = Instant::now();
    assert!(
        provider
            .shutdown_with_timeout(Duration::from_millis(200))
            .is_err()
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_working_collector_gets_every_span_and_nothing_counts_as_dropped() {
    let keep = Keep::default();
    let (provider, dropped) = provider(keep.clone(), QueueConfig::default());
    end_spans(&provider, 50);
    provider.force_flush().unwrap();
    assert_eq!(keep.0.lock().len(), 50);
    end_spans(&provider, 5);
    provider.shutdown().unwrap();
    assert_eq!(keep.0.lock().len(), 55);
    assert_eq!(dropped.load(Ordering::Relaxed), 0);
}

#[test]
fn an_exporter_that_cannot_be_built_is_an_error() {
    let err = QueueProcessor::start::<Keep, _>(QueueConfig::default(), Arc::default(), || {
        Err("no endpoint".into())
    })
    .unwrap_err();
    assert_eq!(err, "no endpoint");
}

/// The real OTLP exporters, built in the export thread's runtime, against a collector
/// that is not there: ending spans stays instant and a flush ends within its bound.
#[test]
fn the_otlp_exporters_start_without_a_collector() {
    for transport in [
        crate::export::Transport::Grpc,
        crate::export::Transport::HttpProtobuf,
    ] {
        let dropped = Arc::new(AtomicU64::new(0));
        let config = QueueConfig {
            export_timeout: Duration::from_secs(2),
            ..QueueConfig::default()
        };
        let processor = QueueProcessor::start(config, dropped.clone(), move || {
            crate::export::exporter(transport, None)
        })
        .unwrap();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .build();
        let started = Instant::now();
        end_spans(&provider, 10);
        assert!(started.elapsed() < Duration::from_millis(500));
        let _ = provider.force_flush();
        provider
            .shutdown_with_timeout(Duration::from_secs(5))
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(6));
        // Nothing listens on the default endpoint here, so all ten are counted as lost
        // (zero only if a collector happens to run on this machine).
        assert!(
            matches!(dropped.load(Ordering::Relaxed), 0 | 10),
            "{transport:?}"
        );
    }
}

#[test]
fn the_standard_batch_variables_tune_the_queue() {
    let vars = [
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "64"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1000"),
        ("OTEL_BSP_EXPORT_TIMEOUT", "nonsense"),
    ];
    let config = QueueConfig::from_env(crate::env_of(&vars));
    assert_eq!(config.delay, Duration::from_millis(100));
    assert_eq!(config.max_queue, 64);
    assert_eq!(config.max_batch, 64, "never more than the queue holds");
    assert_eq!(config.export_timeout, QueueConfig::default().export_timeout);
}

#[test]
fn lost_spans_are_told_once_a_minute_at_most() {
    let mut warning = DropWarning::default();
    let start = std::time::Instant::now();
    assert!(!warning.warn_if_new(0, start), "nothing lost, nothing said");
    assert!(warning.warn_if_new(3, start));
    assert!(!warning.warn_if_new(9, start + Duration::from_secs(10)));
    assert!(warning.warn_if_new(9, start + Duration::from_secs(61)));
    assert!(!warning.warn_if_new(9, start + Duration::from_secs(200)));
}
