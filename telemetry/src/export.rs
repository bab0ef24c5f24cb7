//! Whether and how spans leave the process, from the standard OTEL_* variables only.

use opentelemetry::{Key, KeyValue};
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

/// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (read by the SDK's builder), with
/// `default_service_name` when neither names the service.
pub(crate) fn resource(default_service_name: &str) -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&Key::new("service.name"))
        .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
    if named {
        return detected;
    }
    Resource::builder()
        .with_attribute(KeyValue::new(
            "service.name",
            default_service_name.to_string(),
        ))
        .build()
}

#[cfg(test)]
mod receiver;

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(vars: &[(&str, &str)]) -> Result<Option<Transport>, Error> {
        plan(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
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
