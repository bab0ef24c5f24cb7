//! Bounds on everything an updater or admin sends. Bad input changes nothing and the error
//! says which field is wrong and what is allowed.

use std::collections::BTreeMap;

use crate::error::{DroverError, Result};

pub const MAX_ID_LEN: usize = 128;
pub const MAX_HOSTNAME_LEN: usize = 253;
pub const MAX_NAME_LEN: usize = 64;
pub const MAX_LABELS: usize = 32;
pub const MAX_LABEL_KEY_LEN: usize = 63;
pub const MAX_LABEL_VALUE_LEN: usize = 256;
pub const MAX_VERSION_LEN: usize = 64;
pub const MAX_ERROR_TEXT_LEN: usize = drover_rules::text::MAX_REPORT_TEXT;

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')
}

/// Agent ids, attempt ids: ASCII letters, digits and `-_.:`.
pub fn identifier(field: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > MAX_ID_LEN || !value.chars().all(is_token_char) {
        return Err(DroverError::invalid(format!(
            "{field} '{}' is invalid: use 1 to {MAX_ID_LEN} characters from A-Z a-z 0-9 - _ . :",
            truncate_for_message(value)
        )));
    }
    Ok(())
}

/// Group and channel names: 1 to 64 characters from `A-Z a-z 0-9 - _ . :`, in segments
/// separated by single `/` (channels such as `stable/rolling`); no empty, `.` or `..`
/// segment, so a name never looks like a path that climbs or repeats.
pub fn name(field: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= MAX_NAME_LEN
        && value.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment.chars().all(is_token_char)
        });
    if !ok {
        return Err(DroverError::invalid(format!(
            "{field} '{}' is invalid: use 1 to {MAX_NAME_LEN} characters from A-Z a-z 0-9 - _ . :, \
             in segments separated by single '/' (none empty, '.' or '..')",
            truncate_for_message(value)
        )));
    }
    Ok(())
}

/// Up to three of `known` that look like `name` (a typo's likely intent), closest first.
pub fn close_matches<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut scored: Vec<(f64, &str)> = known
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(name, candidate), candidate))
        .filter(|(score, _)| *score >= 0.8)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().take(3).map(|(_, c)| c).collect()
}

/// Free text: at most `max` bytes and no control characters but newline and tab (a NUL
/// cannot be stored, and terminal escapes have no business in a fleet's records).
pub fn bounded_text(field: &str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(DroverError::invalid(format!(
            "{field} is {} bytes long; at most {max} are allowed",
            value.len()
        )));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !drover_rules::text::allowed_char(*c))
    {
        return Err(DroverError::invalid(format!(
            "{field} contains the control character U+{:04X}; send plain text",
            u32::from(c)
        )));
    }
    Ok(())
}

pub fn labels(labels: &BTreeMap<String, String>) -> Result<()> {
    if labels.len() > MAX_LABELS {
        return Err(DroverError::invalid(format!(
            "{} labels sent; at most {MAX_LABELS} are allowed",
            labels.len()
        )));
    }
    for (key, value) in labels {
        if key.is_empty() || key.len() > MAX_LABEL_KEY_LEN || !key.chars().all(is_token_char) {
            return Err(DroverError::invalid(format!(
                "label key '{}' is invalid: use 1 to {MAX_LABEL_KEY_LEN} characters from \
                 A-Z a-z 0-9 - _ . :",
                truncate_for_message(key)
            )));
        }
        bounded_text(&format!("label '{key}'"), value, MAX_LABEL_VALUE_LEN)?;
    }
    Ok(())
}

pub fn truncate_for_message(value: &str) -> String {
    value.chars().take(40).collect()
}

/// Earliest time a report may name: 2000-01-01T00:00:00Z.
pub const EARLIEST_REPORT_MS: i64 = 946_684_800_000;
/// How far ahead of our clock an updater's clock may run before its report is refused.
pub const MAX_CLOCK_AHEAD_MS: i64 = 24 * 3_600_000;

/// A report's start and finish times: set, after 2000, at most a day ahead of `now_ms`,
/// and the start not after the finish.
pub fn report_times(started_ms: i64, finished_ms: i64, now_ms: i64) -> Result<()> {
    let latest = now_ms.saturating_add(MAX_CLOCK_AHEAD_MS);
    for (field, value) in [("started_at", started_ms), ("finished_at", finished_ms)] {
        if !(EARLIEST_REPORT_MS..=latest).contains(&value) {
            return Err(DroverError::invalid(format!(
                "{field} is {value} ms since 1970, outside 2000-01-01 .. a day from now; \
                 set it from a synchronised clock"
            )));
        }
    }
    if started_ms > finished_ms {
        return Err(DroverError::invalid(
            "started_at is after finished_at; a report must finish after it starts",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(identifier("agent_id", "web-01.prod:a").is_ok());
        assert!(identifier("agent_id", "").is_err());
        assert!(identifier("agent_id", "has space").is_err());
        assert!(identifier("agent_id", &"x".repeat(129)).is_err());
    }

    #[test]
    fn channel_names_allow_inner_slashes() {
        assert!(name("channel", "stable/rolling").is_ok());
        assert!(name("channel", "/stable").is_err());
        assert!(name("channel", "a b").is_err());
    }

    #[test]
    fn names_are_segments_without_dots_or_gaps() {
        for good in ["prod", "stable/rolling", "a.b/c-d_e:f"] {
            assert!(name("channel", good).is_ok(), "{good}");
        }
        for bad in [
            "", "..", "a/../b", "a//b", "/a", "a/", "./a", "a b", "a\u{1b}b",
        ] {
            assert!(name("channel", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn close_matches_find_typos_only() {
        assert_eq!(close_matches("prdo", ["prod", "dev", "staging"]), ["prod"]);
        assert!(close_matches("zzz", ["prod", "dev"]).is_empty());
    }

    #[test]
    fn text_refuses_control_characters_but_newlines_and_tabs() {
        assert!(bounded_text("error", "line 1\n\tline 2", 100).is_ok());
        assert!(bounded_text("error", "nul\0here", 100).is_err());
        assert!(bounded_text("error", "\u{1b}[2J", 100).is_err());
    }

    #[test]
    fn report_times_are_bounded() {
        let now = 1_800_000_000_000;
        assert!(report_times(now - 10, now, now).is_ok());
        assert!(report_times(0, now, now).is_err(), "unset start");
        assert!(report_times(-5, now, now).is_err(), "negative");
        assert!(
            report_times(now, now + 2 * MAX_CLOCK_AHEAD_MS, now).is_err(),
            "far future"
        );
        assert!(report_times(now, i64::MAX, now).is_err(), "overflowing");
        assert!(
            report_times(now, now - 1, now).is_err(),
            "start after finish"
        );
    }
}
