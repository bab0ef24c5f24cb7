//! `init` for real, in a process of its own (the global subscriber is set once).

use std::time::{Duration, Instant};

use drover_telemetry::{LogFormat, init};

#[test]
fn init_without_otel_variables_exports_nothing_and_stops_at_once() {
    if std::env::vars().any(|(name, _)| name.starts_with("OTEL_")) {
        eprintln!("skipped: OTEL_* variables are set in this environment");
        return;
    }
    let telemetry = init("drover-test", None, LogFormat::Json).unwrap();
    assert!(!telemetry.exporting());
    tracing::info_span!("work").in_scope(|| tracing::info!("inside"));
    assert_eq!(telemetry.dropped_spans(), 0);
    let started = Instant::now();
    telemetry.shutdown();
    drop(telemetry);
    assert!(started.elapsed() < Duration::from_secs(1));

    let again = init("drover-test", None, LogFormat::Text)
        .unwrap_err()
        .to_string();
    assert!(
        again.contains("call drover_telemetry::init once"),
        "{again}"
    );
}
