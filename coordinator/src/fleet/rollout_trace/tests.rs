use super::*;

#[test]
fn ids_round_trip_and_derive_stably() {
    let trace = RolloutTrace {
        trace_id: TraceId::from(77u128),
        span_id: SpanId::from(9u64),
        sampled: true,
        agent_ppm: 2500,
    };
    assert_eq!(RolloutTrace::parse(&trace.to_text()), Some(trace));
    let unsampled = RolloutTrace {
        sampled: false,
        ..trace
    };
    assert_eq!(RolloutTrace::parse(&unsampled.to_text()), Some(unsampled));
    assert_eq!(RolloutTrace::parse("junk"), None);
    assert_eq!(
        RolloutTrace::parse(&format!("{}-{}", TraceId::INVALID, SpanId::from(1u64))),
        None
    );
    assert_eq!(trace.group_span("dev", 1), trace.group_span("dev", 1));
    assert_ne!(trace.group_span("dev", 1), trace.group_span("dev", 2));
    assert_ne!(trace.group_span("dev", 1), trace.group_span("prod", 1));
    // "ab"+"c" and "a"+"bc" must not collide.
    assert_ne!(trace.derived(&["ab", "c"]), trace.derived(&["a", "bc"]));
}

#[test]
fn rollouts_stored_before_sampling_trace_every_agent() {
    let old = format!("{}-{}", TraceId::from(5u128), SpanId::from(6u64));
    let trace = RolloutTrace::parse(&old).unwrap();
    assert!(trace.sampled);
    assert_eq!(trace.agent_ppm, EVERY_AGENT);
    assert!(trace.traces_agent("any", false));
}

#[test]
fn the_directive_says_whether_the_agent_is_traced() {
    let trace = RolloutTrace {
        trace_id: TraceId::from(77u128),
        span_id: SpanId::from(9u64),
        sampled: true,
        agent_ppm: 0,
    };
    let span = trace.attempt_span("web-1", "d-1");
    let canary = trace.directive_context("web-1", "d-1", true);
    assert_eq!(
        canary["traceparent"],
        format!("00-{}-{span}-01", trace.trace_id)
    );
    assert!(!canary.contains_key("tracestate"));
    let other = trace.directive_context("web-1", "d-1", false);
    assert!(other["traceparent"].ends_with("-00"), "{other:?}");
    assert_eq!(
        other["tracestate"],
        format!("drover=err-{span}"),
        "kept if it fails"
    );
    let off = RolloutTrace {
        sampled: false,
        agent_ppm: EVERY_AGENT,
        ..trace
    };
    let canary = off.directive_context("web-1", "d-1", true);
    assert!(
        canary["traceparent"].ends_with("-00"),
        "an unsampled rollout traces nobody"
    );
    assert!(!canary.contains_key("tracestate"), "not even failures");
}

#[test]
fn about_the_budget_of_agents_is_traced() {
    assert_eq!(agent_share(100, 400), EVERY_AGENT);
    assert_eq!(agent_share(0, 0), EVERY_AGENT);
    let ppm = agent_share(100_000, 400);
    assert_eq!(ppm, 4000);
    let trace = RolloutTrace {
        trace_id: TraceId::from(1u128),
        span_id: SpanId::from(2u64),
        sampled: true,
        agent_ppm: ppm,
    };
    let traced = (0..100_000)
        .filter(|i| trace.agent_in_share(&format!("agent-{i:06}")))
        .count();
    assert!(
        (300..=500).contains(&traced),
        "{traced} of 100,000 for a budget of 400"
    );
}
