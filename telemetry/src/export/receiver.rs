//! Spans over real OTLP/gRPC to an in-process receiver (the official protobuf service).

use std::sync::{Arc, atomic::AtomicU64};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value,
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;

use super::*;
use crate::queue::{QueueConfig, QueueProcessor};

/// Service name, span name, span id, parent span id, the span's attribute keys and the
/// resource's.
type Received = (String, String, Vec<u8>, Vec<u8>, Vec<String>, Vec<String>);

/// Keeps every span it is sent.
#[derive(Clone, Default)]
struct Receiver(Arc<parking_lot::Mutex<Vec<Received>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref()?.value.clone());
            let service = match service {
                Some(Value::StringValue(name)) => name,
                _ => String::new(),
            };
            let resource: Vec<String> = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .map(|a| a.key.clone())
                .collect();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                self.0.lock().push((
                    service.clone(),
                    span.name,
                    span.span_id,
                    span.parent_span_id,
                    span.attributes.into_iter().map(|a| a.key).collect(),
                    resource.clone(),
                ));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_grpc_receiver_with_their_service_and_parents() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let receiver = Receiver::default();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let dropped = Arc::new(AtomicU64::new(0));
    let processor = QueueProcessor::start(QueueConfig::default(), dropped.clone(), move || {
        exporter(Transport::Grpc, Some(endpoint))
    })
    .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_resource(resource("drover-test", Some("instance-7")))
        .with_span_processor(processor)
        .build();
    let subscriber = crate::subscriber(
        crate::LogFormat::Text,
        EnvFilter::new("off"),
        false,
        Some(provider.tracer("test")),
        std::io::sink,
    );
    tracing::subscriber::with_default(subscriber, || {
        let log_only = tracing::info_span!(target: "drover::simulate::log_only", "log_only");
        log_only.in_scope(|| {
            tracing::info_span!("outer").in_scope(|| drop(tracing::info_span!("inner").entered()))
        });
    });
    let flushed = tokio::task::spawn_blocking(move || {
        provider.force_flush().unwrap();
        provider.shutdown().unwrap();
    });
    flushed.await.unwrap();

    let spans = receiver.0.lock().clone();
    assert_eq!(spans.len(), 2, "{spans:?}");
    let outer = spans.iter().find(|s| s.1 == "outer").unwrap();
    let inner = spans.iter().find(|s| s.1 == "inner").unwrap();
    assert!(spans.iter().all(|s| s.0 == "drover-test"));
    assert_eq!(inner.3, outer.2, "inner is outer's child");
    assert!(
        outer.3.is_empty(),
        "the log-only span is no parent: {outer:?}"
    );
    for span in &spans {
        assert!(
            span.4.is_empty(),
            "no busy/idle, thread or code attributes: {span:?}"
        );
        for key in ["service.version", "service.instance.id", "host.name"] {
            assert!(span.5.iter().any(|k| k == key), "{key} in {span:?}");
        }
    }
    assert_eq!(dropped.load(std::sync::atomic::Ordering::Relaxed), 0);
}
