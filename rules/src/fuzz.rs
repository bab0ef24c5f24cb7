//! Generated-input fuzzing of the parsers admins and updaters feed (versions, weekdays,
//! times, durations): nothing panics, and what is accepted reads back the same. `scripts/fuzz`
//! runs these with many more cases.

use proptest::prelude::*;

use crate::{
    Weekdays,
    schedule::{parse_duration_minutes, parse_start},
    version::parse_version,
};

fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "[0-9a-z.:+-]{0,24}",
        "v?[0-9]{1,25}\\.[0-9]{1,25}\\.[0-9]{1,25}(-[a-z0-9.]{0,8})?(\\+[a-z0-9.]{0,8})?",
        "[0-9]{0,12}h?[0-9]{0,12}m?",
        "(mon|tue|wed|thu|fri|sat|sun|daily|,|-){0,8}",
    ]
}

proptest! {
    #[test]
    fn fuzz_versions_parse_or_refuse_and_read_back(text in hostile()) {
        if let Ok(version) = parse_version(&text) {
            prop_assert_eq!(parse_version(&version.to_string()), Ok(version));
        }
    }

    #[test]
    fn fuzz_weekdays_parse_or_refuse_and_read_back(text in hostile()) {
        if let Ok(days) = Weekdays::parse(&text) {
            prop_assert!(!days.is_empty());
            prop_assert_eq!(Weekdays::parse(&days.to_string()), Ok(days));
        }
    }

    #[test]
    fn fuzz_times_and_durations_stay_in_range(text in hostile()) {
        if let Ok(minute) = parse_start(&text) {
            prop_assert!(minute < 24 * 60);
        }
        if let Ok(minutes) = parse_duration_minutes(&text) {
            prop_assert!(minutes > 0);
        }
    }
}
