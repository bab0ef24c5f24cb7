//! The processes and the checks the trace tests share.

use std::{collections::HashSet, path::Path, time::Duration};

use drover_tests::{
    CoordinatorBuilder, CoordinatorProcess, UpdaterBuilder, UpdaterProcess, create_rollout,
    droverctl_json, eventually,
    otlp::{OtlpReceiver, ReceivedSpan, event_attribute},
    wait_connected,
};

pub const WAIT: Duration = Duration::from_secs(60);
pub const KIND_INTERNAL: i32 = 1;
pub const KIND_SERVER: i32 = 2;
pub const KIND_CLIENT: i32 = 3;
pub const STATUS_ERROR: i32 = 2;

/// Exports quickly (the batch processor's delay), to `endpoint`.
fn otel(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_string()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
    ]
}

/// A coordinator logging JSON, exporting to `endpoint` (if any), channel `edge` on 1.0.0.
pub async fn coordinator(
    root: &Path,
    endpoint: Option<&str>,
    args: &[&str],
    env: &[(&str, &str)],
) -> CoordinatorProcess {
    let mut builder = CoordinatorBuilder::sqlite(root)
        .control_plane("2.0.0")
        .arg("--reconcile-ms")
        .arg("100")
        .arg("--heartbeat-secs")
        .arg("1")
        .env("DROVER_LOG_FORMAT", "json");
    for arg in args {
        builder = builder.arg(*arg);
    }
    for (key, value) in endpoint.map(otel).unwrap_or_default() {
        builder = builder.env(key, value);
    }
    for (key, value) in env {
        builder = builder.env(key, *value);
    }
    let c = builder.start().await;
    droverctl_json(&c.grpc_url(), &["channels", "set", "edge", "1.0.0"]).await;
    c
}

/// Two real updaters per group (dev, prod); each installs with a command that fails for
/// `broken` (if any), so a canary can fail for real.
pub fn updaters(
    c: &CoordinatorProcess,
    root: &Path,
    endpoint: Option<&str>,
    broken: Option<&str>,
    env: &[(&str, &str)],
) -> Vec<UpdaterProcess> {
    let install = match broken {
        Some(version) => format!("test \"$DROVER_TARGET_VERSION\" != {version}"),
        None => "true".to_string(),
    };
    let mut started = Vec::new();
    for (i, group) in ["dev", "dev", "prod", "prod"].iter().enumerate() {
        let id = format!("{group}-{i}");
        let mut builder = UpdaterBuilder::new(&c.grpc_url(), &root.join(&id), &id)
            .arg("--group", *group)
            .arg("--channel", "edge")
            .arg("--agent-version", "1.0.0")
            .arg("--install-command", install.clone())
            .arg("--health-command", "true")
            .arg("--health-interval-ms", "200")
            .arg("--health-grace-secs", "5")
            .arg("--health-stable-secs", "1");
        for (key, value) in endpoint.map(otel).unwrap_or_default() {
            builder = builder.env(key, value);
        }
        for (key, value) in env {
            builder = builder.env(key, *value);
        }
        if endpoint.is_some() {
            builder = builder.env("DROVER_LOG_FORMAT", "json");
        }
        started.push(builder.start());
    }
    started
}

/// What differs between the trace tests' set-ups.
#[derive(Default)]
pub struct Setup<'a> {
    pub coordinator_args: &'a [&'a str],
    pub coordinator_env: &'a [(&'a str, &'a str)],
    /// The version every updater's install fails on.
    pub broken: Option<&'a str>,
    pub updater_env: &'a [(&'a str, &'a str)],
}

/// A coordinator and four updaters exporting to one receiver, all connected.
/// Bind every field (`c: _c`, not `..`): a field left out is dropped, and its processes
/// stopped, at once.
pub struct Traced {
    pub receiver: OtlpReceiver,
    pub c: CoordinatorProcess,
    pub url: String,
    pub updaters: Vec<UpdaterProcess>,
    /// Last: the processes stop before their directory goes.
    pub _root: tempfile::TempDir,
}

pub async fn traced(setup: Setup<'_>) -> Traced {
    let root = tempfile::tempdir().unwrap();
    let receiver = OtlpReceiver::start().await;
    let endpoint = receiver.endpoint();
    let c = coordinator(
        root.path(),
        Some(&endpoint),
        setup.coordinator_args,
        setup.coordinator_env,
    )
    .await;
    let url = c.grpc_url();
    let updaters = updaters(
        &c,
        root.path(),
        Some(&endpoint),
        setup.broken,
        setup.updater_env,
    );
    wait_connected(&url, 4).await;
    Traced {
        receiver,
        c,
        url,
        updaters,
        _root: root,
    }
}

/// Rolls `edge` from 1.0.0 to 1.1.0 over dev then prod, one canary each, windows ignored.
pub async fn create(url: &str) {
    let groups = ["dev:canaries=1", "prod:canaries=1"];
    assert!(
        create_rollout(url, "edge", &groups, &["--immediate"])
            .await
            .0,
        "rollout create failed"
    );
}

pub async fn wait_status(url: &str, status: &str) {
    eventually(&format!("the rollout is {status}"), WAIT, async || {
        let s = droverctl_json(url, &["rollout", "status", "--channel", "edge"]).await;
        (s["status"] == status).then_some(())
    })
    .await;
}

/// The rollout's trace id, as `rollout show` prints it, and whether it is sampled.
pub async fn rollout_trace(url: &str) -> (String, bool) {
    let status = droverctl_json(url, &["rollout", "status", "--channel", "edge"]).await;
    let id = status["rollout_id"].as_str().unwrap().to_string();
    let shown = droverctl_json(url, &["rollout", "show", &id]).await;
    let trace = shown["rollout"]["trace_id"].as_str().unwrap().to_string();
    assert_eq!(trace.len(), 32, "{shown}");
    let sampled = shown["rollout"]["trace_sampled"].as_bool();
    (trace, sampled.expect("trace_sampled beside trace_id"))
}

/// The id of a sampled rollout's trace.
pub async fn rollout_trace_id(url: &str) -> String {
    let (trace, sampled) = rollout_trace(url).await;
    assert!(sampled, "the rollout's trace {trace} is sampled");
    trace
}

pub fn in_trace(receiver: &OtlpReceiver, trace: &str) -> Vec<ReceivedSpan> {
    receiver
        .spans()
        .into_iter()
        .filter(|s| s.trace_id == trace)
        .collect()
}

pub fn children<'a>(spans: &'a [ReceivedSpan], name: &str, parent: &str) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.name == name && s.parent_span_id == parent)
        .collect()
}

/// The one span `name` under `parent`.
pub fn one<'a>(spans: &'a [ReceivedSpan], name: &str, parent: &str) -> &'a ReceivedSpan {
    let found = children(spans, name, parent);
    assert_eq!(found.len(), 1, "one {name} under '{parent}': {found:#?}");
    found[0]
}

/// A span's `drover.phase.changed` events, as (from, to).
pub fn phase_changes(span: &ReceivedSpan) -> Vec<(String, String)> {
    span.events_named("drover.phase.changed")
        .iter()
        .map(|e| {
            let get = |key| event_attribute(e, key).unwrap_or_default().to_string();
            (get("drover.phase.from"), get("drover.phase.to"))
        })
        .collect()
}

/// What a trace reader needs of any trace: each span id once, every parent present, one
/// root, and none of the tracing library's per-span noise.
pub fn assert_sound(spans: &[ReceivedSpan]) {
    let mut seen = HashSet::new();
    for span in spans {
        assert!(
            seen.insert(span.span_id.as_str()),
            "span {} exported twice: {span:?}",
            span.span_id
        );
    }
    let roots: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.parent_span_id.is_empty())
        .collect();
    assert_eq!(roots.len(), 1, "one root: {roots:#?}");
    for span in spans {
        assert!(
            span.parent_span_id.is_empty() || seen.contains(span.parent_span_id.as_str()),
            "the parent of {} ({}) never arrived",
            span.name,
            span.parent_span_id
        );
        for (key, _) in &span.attributes {
            let noise = ["busy_ns", "idle_ns", "target"].contains(&key.as_str())
                || key.starts_with("thread.")
                || key.starts_with("code.");
            assert!(!noise, "{key} on {}", span.name);
        }
    }
}
