//! Whether and how spans leave the process, from the standard OTEL_* variables only.

use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;

use crate::Error;

/// OTLP's two transports here (http/json is not built in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Grpc,
    HttpProtobuf,
}

/// What the environment asks for: `None` exports nothing. `env` reads one variable.
pub(crate) fn plan(env: impl Fn(&str) -> Option<String>) -> Result<Option<Transport>, Error> {
    let var = |name: &str| {
        env(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    match var("OTEL_TRACES_EXPORTER").as_deref() {
        None | Some("otlp") => {}
        Some("none") => return Ok(None),
        Some(other) => {
            return Err(Error::Config(format!(
                "OTEL_TRACES_EXPORTER={other} is not supported here; use otlp or none"
            )));
        }
    }
    if var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
        && var("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
    {
        return Ok(None);
    }
    let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "grpc".into());
    match protocol.as_str() {
        "grpc" => Ok(Some(Transport::Grpc)),
        "http/protobuf" => Ok(Some(Transport::HttpProtobuf)),
        other => Err(Error::Config(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={other} is not supported here; use grpc or http/protobuf"
        ))),
    }
}

/// The OTLP exporter; endpoint, headers and timeout come from the OTEL_* variables.
/// `endpoint` overrides the variables (tests only).
pub(crate) fn exporter(
    transport: Transport,
    endpoint: Option<String>,
) -> Result<opentelemetry_otlp::SpanExporter, String> {
    // The process's provider if one is installed (Drover's binaries install ring), else ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let built = match transport {
        Transport::Grpc => {
            let builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_protocol(Protocol::Grpc);
            match endpoint {
                Some(endpoint) => builder.with_endpoint(endpoint).build(),
                None => builder.build(),
            }
        }
        Transport::HttpProtobuf => {
            let builder = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary);
            match endpoint {
                Some(endpoint) => builder.with_endpoint(endpoint).build(),
                None => builder.build(),
            }
        }
    };
    built.map_err(|err| {
        format!("cannot set up OTLP export ({err}); check OTEL_EXPORTER_OTLP_ENDPOINT")
    })
}

/// What tells this process apart from others in a collector: the service's name, this
/// binary's version (`service.version`, never the version being deployed), an instance id
/// (`instance_id`, else a random UUID), the host's name and the process id. The standard
/// variables win: `OTEL_RESOURCE_ATTRIBUTES` over all of these, `OTEL_SERVICE_NAME` over
/// the name. Semantic conventions 1.34: `service.*`, `host.name`, `process.pid`.
pub(crate) fn resource(default_service_name: &str, instance_id: Option<&str>) -> Resource {
    use opentelemetry_sdk::resource::{EnvResourceDetector, TelemetryResourceDetector};
    let instance = instance_id
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut ours = vec![
        KeyValue::new("service.name", default_service_name.to_string()),
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new("service.instance.id", instance),
        KeyValue::new("process.pid", i64::from(std::process::id())),
    ];
    if let Some(host) = hostname::get().ok().and_then(|h| h.into_string().ok()) {
        ours.push(KeyValue::new("host.name", host));
    }
    let mut builder = Resource::builder_empty()
        .with_attributes(ours)
        .with_detectors(&[
            Box::new(TelemetryResourceDetector),
            Box::new(EnvResourceDetector::new()),
        ]);
    let named = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty());
    if let Some(name) = named {
        builder = builder.with_attribute(KeyValue::new("service.name", name));
    }
    builder.build()
}

#[cfg(test)]
mod receiver;

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(vars: &[(&str, &str)]) -> Result<Option<Transport>, Error> {
        plan(crate::env_of(vars))
    }

    #[test]
    fn nothing_is_exported_unless_an_endpoint_is_set() {
        assert_eq!(plan_of(&[]).unwrap(), None);
        assert_eq!(
            plan_of(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap(),
            None
        );
        assert_eq!(
            plan_of(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]).unwrap(),
            None
        );
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317");
        assert_eq!(plan_of(&[endpoint]).unwrap(), Some(Transport::Grpc));
        assert_eq!(
            plan_of(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]).unwrap(),
            None
        );
        assert_eq!(
            plan_of(&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")]).unwrap(),
            None
        );
    }

    #[test]
    fn the_protocol_comes_from_the_traces_variable_first() {
        let endpoint = (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4318/v1/traces",
        );
        let http = ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
        assert_eq!(
            plan_of(&[endpoint, http]).unwrap(),
            Some(Transport::HttpProtobuf)
        );
        let grpc = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc");
        assert_eq!(
            plan_of(&[endpoint, http, grpc]).unwrap(),
            Some(Transport::Grpc)
        );
        let json = ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json");
        let err = plan_of(&[endpoint, json]).unwrap_err().to_string();
        assert!(err.contains("use grpc or http/protobuf"), "{err}");
        let zipkin = ("OTEL_TRACES_EXPORTER", "zipkin");
        assert!(plan_of(&[endpoint, zipkin]).is_err());
    }
}
