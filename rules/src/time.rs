//! Time as people read it: Unix milliseconds to RFC 3339 in UTC (second precision).

/// `1_795_392_000_000` → `2026-11-23T00:00:00Z`.
pub fn rfc3339(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `2026-11-23T00:00:00Z` (any RFC 3339 time) → Unix milliseconds; the error says the form.
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let err = || format!("'{text}' is not an RFC 3339 time; write e.g. 2026-11-26T10:00:00Z");
    let at = humantime::parse_rfc3339_weak(text.trim()).map_err(|_| err())?;
    let since_epoch = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| err())?;
    i64::try_from(since_epoch.as_millis()).map_err(|_| err())
}

/// `90m`, `1h30m`, `2d` → milliseconds; the error says the form.
pub fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let err = || format!("'{text}' is not a duration; write e.g. 90m, 1h30m or 2d");
    let duration = humantime::parse_duration(text.trim()).map_err(|_| err())?;
    i64::try_from(duration.as_millis()).map_err(|_| err())
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_392_000_000), "2026-11-23T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000_999), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn parses_what_it_formats_and_says_the_form_otherwise() {
        for ms in [0, 951_782_400_000, 1_795_392_000_000] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Ok(ms));
        }
        assert!(parse_rfc3339("yesterday").unwrap_err().contains("RFC 3339"));
        assert_eq!(parse_duration_ms("1h30m"), Ok(90 * 60_000));
        assert!(parse_duration_ms("soon").unwrap_err().contains("duration"));
    }
}
