//! Readable names for proto enums and timestamps, shared by every command.

use drover_proto::v1 as pb;

pub fn health_name(value: i32) -> &'static str {
    drover_api::Health::from_proto(value).as_str()
}

pub fn state_name(value: i32) -> &'static str {
    pb::UpdaterState::try_from(value)
        .map(|s| s.as_str_name().trim_start_matches("UPDATER_STATE_"))
        .unwrap_or("UNSPECIFIED")
}

pub fn outcome_name(value: i32) -> &'static str {
    pb::UpdateOutcome::try_from(value)
        .map(|s| s.as_str_name().trim_start_matches("UPDATE_OUTCOME_"))
        .unwrap_or("UNSPECIFIED")
}

/// RFC 3339 in UTC, second precision: the API's own format.
pub use drover_api::time_text;

/// [`time_text`], or `-` for no time.
pub fn time_or_dash(ts: Option<&prost_types::Timestamp>) -> String {
    ts.map(time_text).unwrap_or_else(|| "-".into())
}

pub fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text.to_string()
    }
}

pub fn yes_no(value: bool) -> String {
    String::from(if value { "yes" } else { "no" })
}
