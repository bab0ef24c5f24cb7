//! Generated-input fuzzing of everything an updater or admin sends, on stable Rust
//! (proptest): arbitrary bytes through protobuf decoding and the edge conversions, and
//! hostile field values through validation. Nothing may panic; what is refused is refused
//! as invalid input; what is accepted keeps the documented bounds. `scripts/fuzz` runs these
//! with many more cases (PROPTEST_CASES) for a bounded time.

use drover_proto::v1::{self as pb, updater_message::Kind as Up};
use proptest::prelude::*;
use prost::Message;

use super::{convert, rollout_convert};
use crate::{
    domain::validate,
    error::{DroverError, ErrorCode},
};

fn refused_as_invalid(result: Result<(), DroverError>) -> Result<(), TestCaseError> {
    if let Err(err) = result {
        prop_assert_eq!(
            err.code(),
            ErrorCode::InvalidArgument,
            "{}",
            err.client_message()
        );
    }
    Ok(())
}

/// Strings an attacker would try: control characters, bidi overrides, separators, long.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,80}",
        "[a-z0-9./:_ -]{0,70}",
        "[\\x00-\\x1f\\x7f/.\\u{202e}a]{0,20}",
        (0..400usize).prop_map(|n| "a".repeat(n)),
        Just("..".to_string()),
        Just("a//b".to_string()),
        Just("1.2.3+build".to_string()),
    ]
}

fn check_hello(hello: pb::Hello) -> Result<(), TestCaseError> {
    match convert::identity_from_hello(hello) {
        Ok(identity) => {
            prop_assert!(validate::identifier("agent_id", &identity.agent_id).is_ok());
            prop_assert!(validate::name("group", &identity.group).is_ok());
            prop_assert!(validate::name("channel", &identity.channel).is_ok());
            prop_assert!(identity.hostname.len() <= validate::MAX_HOSTNAME_LEN);
            prop_assert!(identity.labels.len() <= validate::MAX_LABELS);
            Ok(())
        }
        Err(err) => refused_as_invalid(Err(err)),
    }
}

fn check_message(message: pb::UpdaterMessage) -> Result<(), TestCaseError> {
    match message.kind {
        Some(Up::Hello(hello)) => check_hello(hello),
        Some(Up::Report(report)) => {
            refused_as_invalid(convert::report_from_proto(report).map(drop))
        }
        Some(Up::Heartbeat(heartbeat)) => {
            refused_as_invalid(convert::status_from_heartbeat(&heartbeat).map(drop))
        }
        // Decodes or not; what it says counts only if it names the directive the session
        // holds and an epoch its rollout issued (`acknowledge_stop`).
        Some(Up::DirectiveAck(_)) | None => Ok(()),
    }
}

proptest! {
    #[test]
    fn fuzz_updater_messages_from_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(message) = pb::UpdaterMessage::decode(bytes.as_slice()) {
            check_message(message)?;
        }
    }

    #[test]
    fn fuzz_hellos_with_hostile_fields(
        agent_id in hostile(), hostname in hostile(), group in hostile(), channel in hostile(),
        agent_version in hostile(),
        labels in prop::collection::btree_map(hostile(), hostile(), 0..40),
    ) {
        check_hello(pb::Hello {
            agent_id, hostname, group, channel, agent_version,
            labels: labels.into_iter().collect(),
            ..Default::default()
        })?;
    }

    #[test]
    fn fuzz_reports_with_hostile_fields(
        attempt_id in hostile(), from in hostile(), to in hostile(), error in hostile(),
        outcome in -2i32..8, started in any::<i64>(), finished in any::<i64>(),
    ) {
        let at = |seconds: i64| Some(prost_types::Timestamp { seconds, nanos: 0 });
        let report = pb::UpdateReport {
            attempt_id, from_version: from, to_version: to, error, outcome,
            started_at: at(started), finished_at: at(finished),
            ..Default::default()
        };
        refused_as_invalid(convert::report_from_proto(report).map(drop))?;
    }

    #[test]
    fn fuzz_rollout_requests_from_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(request) = pb::CreateRolloutRequest::decode(bytes.as_slice()) {
            match rollout_convert::spec_from_proto(request) {
                Ok(spec) => prop_assert!(spec.validate().is_ok()),
                Err(err) => refused_as_invalid(Err(err))?,
            }
        }
    }

    #[test]
    fn fuzz_schedule_requests_from_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(request) = pb::SetScheduleRequest::decode(bytes.as_slice()) {
            refused_as_invalid(convert::schedule_from_request(&request).map(drop))?;
        }
    }
}
