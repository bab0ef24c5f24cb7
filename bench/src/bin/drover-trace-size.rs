//! drover-trace-size: how big one rollout's trace is, in the default mode (TLS, every
//! simulated updater enrolled), received by an OTLP receiver built from the official
//! protobuf definitions. `--agents` simulated updaters (`drover-updater simulate`, each
//! exporting its own spans as a real updater does) roll from 1.0.0 to 1.1.0, which fails on
//! every `--broken-on` host; the failure threshold is set high so the rollout completes
//! with the failures in it. Prints the trace's size and spans, and whether every failed
//! agent is in it, with the coordinator's `--trace-agent-budget` as given and, in the same
//! process as the baseline, with every agent traced. Not a test: it asserts nothing.
#![forbid(unsafe_code)]

use std::{
    collections::{BTreeMap, HashSet},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use drover_tests::{
    CoordinatorBuilder, create_rollout, droverctl_json, eventually, http, metric_value,
    otlp::{OtlpReceiver, ReceivedSpan},
    simulate_with_env, terminate, use_bin_dir,
};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(
    name = "drover-trace-size",
    about = "Measure one rollout's trace (see BENCHMARKS.md)."
)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    agents: usize,
    /// The coordinator's --trace-agent-budget (its default: 400).
    #[arg(long, default_value_t = 400)]
    budget: u64,
    /// The release fails on hosts with this label.
    #[arg(long, default_value = "arch=aarch64")]
    broken_on: String,
    /// Skip the baseline run with every agent traced.
    #[arg(long)]
    no_baseline: bool,
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
}

/// One rollout's trace, as received.
#[derive(Debug)]
struct Measured {
    budget: u64,
    rollout_secs: f64,
    spans: usize,
    bytes: usize,
    by_name: BTreeMap<String, usize>,
    failed_agents: u64,
    failed_in_trace: usize,
    dropped_coordinator: u64,
    dropped_updaters: u64,
}

const WAIT: Duration = Duration::from_secs(900);

async fn measure(args: &Args, budget: u64) -> anyhow::Result<Measured> {
    let work = tempfile::tempdir()?;
    let receiver = OtlpReceiver::start().await;
    let endpoint = receiver.endpoint();
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "500"),
    ];
    let mut builder = CoordinatorBuilder::sqlite(work.path())
        .control_plane("2.0.0")
        .arg("--heartbeat-secs")
        .arg("30")
        .arg("--reconcile-ms")
        .arg("500")
        .arg("--trace-agent-budget")
        .arg(budget.to_string())
        .env("RUST_LOG", "warn");
    for (key, value) in otel {
        builder = builder.env(key, value);
    }
    let c = builder.start().await;
    let url = c.grpc_url();
    droverctl_json(&url, &["channels", "set", "edge", "1.0.0"]).await;
    let count = args.agents.to_string();
    let sim_args = [
        "--count",
        &count,
        "--groups",
        "dev,prod",
        "--channel",
        "edge",
        "--versions",
        "1.0.0",
        "--id-prefix",
        "sim",
        "--ramp-up-secs",
        "5",
        "--recheck-secs",
        "3600",
        "--unhealthy-fraction",
        "0",
        "--install-ms",
        "50",
        "--broken-versions",
        "1.1.0",
        "--broken-on",
        &args.broken_on,
    ];
    let mut fleet = simulate_with_env(&url, work.path(), &sim_args, "warn", &otel);
    eventually("every simulated updater connected", WAIT, async || {
        let (_, body) = http(c.addresses.http, "GET", "/metrics").await;
        (metric_value(&body, "drover_updaters_connected") >= args.agents as u64).then_some(())
    })
    .await;
    println!("budget {budget}: {} updaters connected", args.agents);
    let started = Instant::now();
    // No canaries: a failed canary halts its group whatever the threshold (the canaries'
    // place in the trace is checked by the trace tests).
    let groups = ["dev", "prod"];
    let extra = [
        "--immediate",
        "--failure-threshold",
        "100000",
        "--done-threshold",
        "80",
        "--strata",
        "none",
    ];
    let (ok, _, stderr) = create_rollout(&url, "edge", &groups, &extra).await;
    if !ok {
        bail!("rollout create failed: {stderr}");
    }
    let id = eventually("the rollout is done", WAIT, async || {
        let s = droverctl_json(&url, &["rollout", "status", "--channel", "edge"]).await;
        if s["status"] == "halted" {
            return Some(Err(anyhow::anyhow!("the rollout halted: {s}")));
        }
        let id = s["rollout_id"].as_str().map(str::to_string);
        (s["status"] == "done").then_some(id.context("a rollout id"))
    })
    .await?;
    let rollout_secs = started.elapsed().as_secs_f64();
    // The agents left when the rollout was done update from the channel, outside it: the
    // rollout's failures are the reports that name it.
    let failed_agents = eventually("every agent reported", WAIT, async || {
        let list = droverctl_json(&url, &["agents", "list", "--all"]).await;
        let agents = list["agents"].as_array()?;
        let reported = agents
            .iter()
            .filter(|a| a["last_report"].is_object())
            .count();
        let failed = agents
            .iter()
            .filter(|a| a["last_report"]["rollout_id"] == id.as_str())
            .filter(|a| a["last_report"]["outcome"] != "succeeded")
            .count();
        (reported >= args.agents).then_some(failed as u64)
    })
    .await;
    let shown = droverctl_json(&url, &["rollout", "show", &id]).await;
    let trace = shown["rollout"]["trace_id"]
        .as_str()
        .context("a trace id")?
        .to_string();
    // The simulated updaters send what they queued as they stop.
    terminate(&mut fleet, "the simulated fleet").await;
    let (_, body) = http(c.addresses.http, "GET", "/metrics").await;
    let dropped_coordinator = metric_value(&body, "drover_trace_spans_dropped_total");
    let dropped_updaters = metric_value(&body, "drover_updater_trace_spans_dropped_total");
    // Settled: the same count twice, a second apart.
    let mut last = usize::MAX;
    let spans: Vec<ReceivedSpan> = eventually("the trace settles", WAIT, async || {
        let spans: Vec<ReceivedSpan> = receiver
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == trace)
            .collect();
        let settled = spans.len() == last;
        last = spans.len();
        tokio::time::sleep(Duration::from_millis(500)).await;
        settled.then_some(spans)
    })
    .await;
    let mut by_name = BTreeMap::new();
    for span in &spans {
        *by_name.entry(span.name.clone()).or_insert(0) += 1;
    }
    let failed_in_trace: HashSet<&str> = spans
        .iter()
        .filter(|s| s.name == "agent_update" && s.status_code == 2)
        .filter_map(|s| s.attribute("drover.agent_id"))
        .collect();
    Ok(Measured {
        budget,
        rollout_secs,
        spans: spans.len(),
        bytes: spans.iter().map(|s| s.encoded_len).sum(),
        by_name,
        failed_agents,
        failed_in_trace: failed_in_trace.len(),
        dropped_coordinator,
        dropped_updaters,
    })
}

fn print(m: &Measured, agents: usize) {
    println!(
        "budget {}: rollout of {agents} agents in {:.1} s; trace {} spans, {:.2} MB ({:.0} B per agent); failed agents {} of which in the trace {}; spans dropped: coordinator {}, updaters {}",
        m.budget,
        m.rollout_secs,
        m.spans,
        m.bytes as f64 / 1e6,
        m.bytes as f64 / agents as f64,
        m.failed_agents,
        m.failed_in_trace,
        m.dropped_coordinator,
        m.dropped_updaters,
    );
    println!("  spans by name: {:?}", m.by_name);
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // One rustls provider (ring) for the process: the build has two (see use_ring_crypto).
    drover_updater::connection::use_ring_crypto();
    let args = Args::parse();
    use_bin_dir(&args.bin_dir);
    let bounded = measure(&args, args.budget).await?;
    print(&bounded, args.agents);
    let baseline = if args.no_baseline {
        None
    } else {
        let every = measure(&args, 1_000_000).await?;
        print(&every, args.agents);
        Some(every)
    };
    let ratio = baseline
        .as_ref()
        .map(|b| bounded.bytes as f64 / b.bytes.max(1) as f64);
    if let Some(ratio) = ratio {
        println!("bounded / every agent traced: {ratio:.3}");
    }
    println!(
        "{}",
        json!({
            "agents": args.agents,
            "budget": bounded.budget,
            "bytes": bounded.bytes,
            "spans": bounded.spans,
            "failed_agents": bounded.failed_agents,
            "failed_in_trace": bounded.failed_in_trace,
            "baseline_bytes": baseline.as_ref().map(|b| b.bytes),
            "baseline_spans": baseline.as_ref().map(|b| b.spans),
            "ratio": ratio,
        })
    );
    Ok(())
}
