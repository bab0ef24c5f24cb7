//! An OTLP trace receiver for tests: a tonic server built from the official OTLP protobuf
//! definitions (opentelemetry-proto), standing in for a collector (none runs here). It keeps
//! every span it is sent, flattened with its service's name.

use std::{net::SocketAddr, sync::Arc};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value::Value},
};
use parking_lot::Mutex;
use prost::Message as _;
use tokio_util::sync::CancellationToken;

/// One received span, flattened.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub attributes: Vec<(String, String)>,
    /// 0 unset, 1 ok, 2 error (OTLP's status codes).
    pub status_code: i32,
    pub status_message: String,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// OTLP's kinds: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    pub kind: i32,
    /// Each event's name and attributes.
    pub events: Vec<(String, Vec<(String, String)>)>,
    pub links: usize,
    /// The span's W3C flags (bit 0: sampled).
    pub flags: u32,
    /// Its process's resource attributes.
    pub resource: Arc<Vec<(String, String)>>,
    /// Its size as sent, in bytes (protobuf).
    pub encoded_len: usize,
}

fn find<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        find(&self.attributes, key)
    }

    pub fn resource_attribute(&self, key: &str) -> Option<&str> {
        find(&self.resource, key)
    }

    /// The attributes of its events named `name`.
    pub fn events_named(&self, name: &str) -> Vec<&[(String, String)]> {
        self.events
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, attributes)| attributes.as_slice())
            .collect()
    }
}

/// `key`'s value among an event's attributes.
pub fn event_attribute<'a>(attributes: &'a [(String, String)], key: &str) -> Option<&'a str> {
    find(attributes, key)
}

fn pairs(attributes: &[KeyValue]) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(|a| (a.key.clone(), text(a.value.as_ref())))
        .collect()
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let resource = Arc::new(
                resource_spans
                    .resource
                    .as_ref()
                    .map(|r| pairs(&r.attributes))
                    .unwrap_or_default(),
            );
            let service = find(&resource, "service.name")
                .unwrap_or_default()
                .to_string();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    let status = span.status.clone().unwrap_or_default();
                    let encoded_len = span.encoded_len();
                    received.push(ReceivedSpan {
                        kind: span.kind,
                        events: span
                            .events
                            .iter()
                            .map(|e| (e.name.clone(), pairs(&e.attributes)))
                            .collect(),
                        links: span.links.len(),
                        flags: span.flags,
                        resource: resource.clone(),
                        encoded_len,
                        service: service.clone(),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        attributes: pairs(&span.attributes),
                        status_code: status.code,
                        status_message: status.message,
                        start_unix_nano: span.start_time_unix_nano,
                        end_unix_nano: span.end_time_unix_nano,
                    });
                }
            }
        }
        self.spans.lock().extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A running receiver; stops when dropped.
pub struct OtlpReceiver {
    pub addr: SocketAddr,
    collector: Collector,
    _stop: tokio_util::sync::DropGuard,
}

impl OtlpReceiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let collector = Collector::default();
        let stop = CancellationToken::new();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                stop.clone().cancelled_owned(),
            );
        tokio::spawn(server);
        Self {
            addr,
            collector,
            _stop: stop.drop_guard(),
        }
    }

    /// `http://ADDR`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.collector.spans.lock().clone()
    }
}
