//! Maintenance windows: recurring, in UTC, on chosen weekdays, starting at a minute of the
//! day and lasting up to a day (so a window may run past midnight).

use serde::{Deserialize, Serialize};

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A set of weekdays, Monday = bit 0 … Sunday = bit 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Weekdays(pub u8);

impl Weekdays {
    pub const ALL: Self = Self(0x7f);

    pub fn contains(self, monday_based_day: u32) -> bool {
        monday_based_day < 7 && self.0 & (1 << monday_based_day) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 & 0x7f == 0
    }

    /// Days, Monday-based (0..7).
    pub fn days(self) -> impl Iterator<Item = u32> {
        (0..7).filter(move |d| self.contains(*d))
    }

    pub fn from_days(days: impl IntoIterator<Item = u32>) -> Self {
        Self(
            days.into_iter()
                .filter(|d| *d < 7)
                .fold(0, |acc, d| acc | (1 << d)),
        )
    }

    /// `mon-fri`, `sat,sun`, `mon,wed-fri`, `daily`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim().to_ascii_lowercase();
        if text == "daily" || text == "all" || text == "*" {
            return Ok(Self::ALL);
        }
        let day = |name: &str| {
            DAY_NAMES.iter().position(|d| name.starts_with(d) && name.len() >= 3).map(|p| p as u32).ok_or_else(|| {
                format!("'{name}' is not a weekday; use mon, tue, wed, thu, fri, sat, sun, ranges like mon-fri, or daily")
            })
        };
        let mut set = 0u8;
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('-') {
                Some((from, to)) => {
                    let (from, to) = (day(from.trim())?, day(to.trim())?);
                    // Ranges may wrap: fri-mon is fri, sat, sun, mon.
                    let mut d = from;
                    loop {
                        set |= 1 << d;
                        if d == to {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => set |= 1 << day(part)?,
            }
        }
        if set == 0 {
            return Err("no weekdays given; use e.g. mon-fri or daily".into());
        }
        Ok(Self(set))
    }
}

impl std::fmt::Display for Weekdays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == Self::ALL {
            return f.write_str("daily");
        }
        let names: Vec<&str> = self.days().map(|d| DAY_NAMES[d as usize]).collect();
        f.write_str(&names.join(","))
    }
}

/// The weekday (Monday = 0) of a Unix day number; day 0, 1970-01-01, was a Thursday.
fn weekday_of(unix_day: i64) -> u32 {
    (unix_day + 3).rem_euclid(7) as u32
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MaintenanceSchedule {
    pub days: Weekdays,
    pub start_minute_utc: u32,
    pub duration_minutes: u32,
}

impl MaintenanceSchedule {
    pub fn validate(&self) -> Result<(), String> {
        if self.days.is_empty() {
            return Err("a maintenance schedule needs at least one weekday".into());
        }
        if self.start_minute_utc >= 24 * 60 {
            return Err(format!(
                "start minute {} is past the end of the day; use 00:00 to 23:59",
                self.start_minute_utc
            ));
        }
        if self.duration_minutes == 0 || self.duration_minutes > 24 * 60 {
            return Err(format!(
                "a window of {} minutes is not allowed; use 1 minute to 24 hours",
                self.duration_minutes
            ));
        }
        Ok(())
    }

    /// The window `[start, end)` in Unix ms that contains `now_ms`, if any.
    pub fn window_containing(&self, now_ms: i64) -> Option<(i64, i64)> {
        let today = now_ms.div_euclid(DAY_MS);
        // A window is at most a day long, so only yesterday's and today's can cover now.
        (today - 1..=today)
            .filter_map(|day| self.window_on(day))
            .find(|(start, end)| *start <= now_ms && now_ms < *end)
    }

    /// The window containing `now_ms`, or else the first one to open after it.
    pub fn next_window(&self, now_ms: i64) -> Option<(i64, i64)> {
        let today = now_ms.div_euclid(DAY_MS);
        (today - 1..=today + 7)
            .filter_map(|day| self.window_on(day))
            .find(|(_, end)| *end > now_ms)
    }

    fn window_on(&self, unix_day: i64) -> Option<(i64, i64)> {
        if !self.days.contains(weekday_of(unix_day)) {
            return None;
        }
        let start = unix_day * DAY_MS + i64::from(self.start_minute_utc) * MINUTE_MS;
        Some((start, start + i64::from(self.duration_minutes) * MINUTE_MS))
    }
}

impl std::fmt::Display for MaintenanceSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (h, m) = (self.start_minute_utc / 60, self.start_minute_utc % 60);
        write!(
            f,
            "{} {h:02}:{m:02} UTC for {}",
            self.days,
            format_minutes(self.duration_minutes)
        )
    }
}

/// `02:00` → 120.
pub fn parse_start(text: &str) -> Result<u32, String> {
    let err = || format!("'{text}' is not a time of day; write HH:MM in UTC, e.g. 02:30");
    let (h, m) = text.trim().split_once(':').ok_or_else(err)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| err())?, m.parse().map_err(|_| err())?);
    if h > 23 || m > 59 {
        return Err(err());
    }
    Ok(h * 60 + m)
}

/// `90m`, `1h`, `1h30m` → minutes.
pub fn parse_duration_minutes(text: &str) -> Result<u32, String> {
    let err = || format!("'{text}' is not a duration; write e.g. 45m, 1h or 1h30m");
    let text = text.trim().to_ascii_lowercase();
    let (hours, rest) = match text.split_once('h') {
        Some((h, rest)) => (h.parse::<u32>().map_err(|_| err())?, rest),
        None => (0, text.as_str()),
    };
    let minutes = match rest.strip_suffix('m') {
        Some(m) => m.parse::<u32>().map_err(|_| err())?,
        None if rest.is_empty() => 0,
        None => return Err(err()),
    };
    let total = hours
        .checked_mul(60)
        .and_then(|h| h.checked_add(minutes))
        .ok_or_else(err)?;
    if total == 0 {
        return Err(err());
    }
    Ok(total)
}

pub fn format_minutes(minutes: u32) -> String {
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h{m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // 2026-11-23 is a Monday.
    const MONDAY_MIDNIGHT: i64 = 1_795_392_000_000;

    fn schedule(days: &str, start: &str, duration: &str) -> MaintenanceSchedule {
        MaintenanceSchedule {
            days: Weekdays::parse(days).unwrap(),
            start_minute_utc: parse_start(start).unwrap(),
            duration_minutes: parse_duration_minutes(duration).unwrap(),
        }
    }

    #[test]
    fn the_reference_monday_is_a_monday() {
        assert_eq!(weekday_of(MONDAY_MIDNIGHT / DAY_MS), 0);
    }

    #[test]
    fn parses_days_times_and_durations() {
        assert_eq!(
            Weekdays::parse("mon-fri").unwrap().to_string(),
            "mon,tue,wed,thu,fri"
        );
        assert_eq!(
            Weekdays::parse("fri-mon").unwrap().to_string(),
            "mon,fri,sat,sun"
        );
        assert_eq!(Weekdays::parse("daily").unwrap(), Weekdays::ALL);
        assert!(
            Weekdays::parse("funday")
                .unwrap_err()
                .contains("not a weekday")
        );
        assert_eq!(parse_start("02:30").unwrap(), 150);
        assert!(parse_start("24:00").is_err());
        assert_eq!(parse_duration_minutes("1h30m").unwrap(), 90);
        assert_eq!(parse_duration_minutes("45m").unwrap(), 45);
        assert!(parse_duration_minutes("soon").is_err());
    }

    #[test]
    fn windows_on_chosen_days_only_and_across_midnight() {
        let s = schedule("mon", "23:30", "1h");
        let monday_2345 = MONDAY_MIDNIGHT + (23 * 60 + 45) * MINUTE_MS;
        let tuesday_0015 = MONDAY_MIDNIGHT + DAY_MS + 15 * MINUTE_MS;
        let tuesday_0045 = MONDAY_MIDNIGHT + DAY_MS + 45 * MINUTE_MS;
        assert!(s.window_containing(monday_2345).is_some());
        assert!(
            s.window_containing(tuesday_0015).is_some(),
            "runs past midnight"
        );
        assert!(s.window_containing(tuesday_0045).is_none());
        let (next, _) = s.next_window(tuesday_0045).unwrap();
        assert_eq!(
            next,
            MONDAY_MIDNIGHT + 7 * DAY_MS + (23 * 60 + 30) * MINUTE_MS
        );
    }

    fn any_schedule() -> impl Strategy<Value = MaintenanceSchedule> {
        (1u8..128, 0u32..1440, 1u32..=1440).prop_map(|(days, start, duration)| {
            MaintenanceSchedule {
                days: Weekdays(days),
                start_minute_utc: start,
                duration_minutes: duration,
            }
        })
    }

    proptest! {
        #[test]
        fn a_containing_window_really_contains_now_and_starts_on_a_chosen_day(
            s in any_schedule(), offset in 0i64..(30 * DAY_MS)
        ) {
            let now = MONDAY_MIDNIGHT + offset;
            if let Some((start, end)) = s.window_containing(now) {
                prop_assert!(start <= now && now < end);
                prop_assert!(s.days.contains(weekday_of(start.div_euclid(DAY_MS))));
            }
        }

        #[test]
        fn the_next_window_is_the_first_and_nothing_opens_before_it(
            s in any_schedule(), offset in 0i64..(30 * DAY_MS), probe in 0.0f64..1.0
        ) {
            let now = MONDAY_MIDNIGHT + offset;
            let (start, end) = s.next_window(now).expect("a schedule with days always has a next window");
            prop_assert!(end > now);
            match s.window_containing(now) {
                Some(current) => prop_assert_eq!(current, (start, end)),
                None => {
                    prop_assert!(start > now);
                    // Any instant before the next start is outside every window.
                    let t = now + ((start - now) as f64 * probe) as i64;
                    prop_assert!(t >= start || s.window_containing(t).is_none());
                }
            }
        }
    }
}
