//! One agent's health samples, folded as they arrive into a few sums (no history is kept,
//! nothing is written): its level before a mark, its recent level after it, and its
//! restarts and exposure since. The mark is its install (the version changed), or for an
//! agent not updated yet, the start of its group, so both cohorts measure change over the
//! same kind of span.

use drover_rules::HealthSignal;

/// What an updater saw over `span_ms` before it sent the sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HealthSample {
    pub span_ms: u32,
    pub rss_kib: Option<u64>,
    /// Percent of one core over the span.
    pub cpu_pct: Option<f64>,
    pub probe_latency_ms: Option<f64>,
    pub probes_ok: u32,
    pub probes_failed: u32,
    pub restarts: u32,
}

/// The signals judged as levels (restarts are judged as a rate).
pub const LEVEL_SIGNALS: [HealthSignal; 4] = [
    HealthSignal::Rss,
    HealthSignal::Cpu,
    HealthSignal::ProbeLatency,
    HealthSignal::ProbeFailures,
];

impl HealthSample {
    /// The sample's value for a level signal, on the scale it is judged on (RSS as ln KiB,
    /// so differences are relative changes).
    pub fn level(&self, signal: HealthSignal) -> Option<f64> {
        match signal {
            HealthSignal::Rss => self.rss_kib.filter(|&k| k > 0).map(|k| (k as f64).ln()),
            HealthSignal::Cpu => self.cpu_pct,
            HealthSignal::ProbeLatency => self.probe_latency_ms,
            HealthSignal::ProbeFailures => {
                let probes = self.probes_ok + self.probes_failed;
                (probes > 0).then(|| f64::from(self.probes_failed) / f64::from(probes))
            }
            HealthSignal::Restarts => None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Mean {
    pub n: f64,
    pub sum: f64,
}

impl Mean {
    pub fn get(&self) -> Option<f64> {
        (self.n > 0.0).then(|| self.sum / self.n)
    }
}

/// Sums over a span of samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    pub levels: [Mean; 4],
    pub restarts: f64,
    pub exposure_hours: f64,
    pub samples: u32,
}

/// A baseline keeps about this many samples' weight: older ones fade (halved as it fills),
/// so "before" means the agent's recent level, not its level of a month ago.
const BASELINE_WEIGHT: u32 = 120;
/// A baseline's restart rate keeps about this much exposure (hours), fading past twice it.
const RATE_HOURS: f64 = 24.0;

impl Window {
    fn add(&mut self, sample: &HealthSample) {
        for (mean, signal) in self.levels.iter_mut().zip(LEVEL_SIGNALS) {
            if let Some(value) = sample.level(signal) {
                mean.n += 1.0;
                mean.sum += value;
            }
        }
        self.restarts += f64::from(sample.restarts);
        self.exposure_hours += f64::from(sample.span_ms) / 3_600_000.0;
        self.samples += 1;
    }

    /// Adds a sample to a recent level: the mean of the first `k` samples, then an
    /// exponential average with weight 1/k, so a leak that grows keeps showing.
    fn add_recent(&mut self, sample: &HealthSample, k: u32) {
        let k = f64::from(k.max(1));
        for (mean, signal) in self.levels.iter_mut().zip(LEVEL_SIGNALS) {
            if let Some(value) = sample.level(signal) {
                if mean.n < k {
                    mean.n += 1.0;
                    mean.sum += value;
                } else {
                    mean.sum += value - mean.sum / mean.n;
                }
            }
        }
        // Restarts and exposure after a mark are `Track::since`'s.
        self.samples = self.samples.saturating_add(1);
    }

    fn fade(&mut self) {
        if self.samples >= BASELINE_WEIGHT {
            for mean in &mut self.levels {
                mean.n /= 2.0;
                mean.sum /= 2.0;
            }
            self.samples /= 2;
        }
        // Crashes are rare: the rate keeps a day or two of history, not minutes.
        if self.exposure_hours >= 2.0 * RATE_HOURS {
            self.restarts /= 2.0;
            self.exposure_hours /= 2.0;
        }
    }

    pub fn level(&self, signal: HealthSignal) -> Option<f64> {
        let index = LEVEL_SIGNALS.iter().position(|s| *s == signal)?;
        self.levels[index].get()
    }
}

/// One agent's samples around its latest mark.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Track {
    pub version: String,
    /// When (our clock) the mark was set: the install seen, or the group's start.
    pub mark_ms: i64,
    /// Whether the mark is an install (the version changed) rather than a group start.
    pub installed: bool,
    /// The level before the mark (fading).
    pub before: Window,
    /// The recent level since the mark (`Window::add_recent` over `samples_per_agent`).
    pub after: Window,
    /// Restarts and exposure since the mark, growing.
    pub since: Window,
    /// Every recent sample on the current version (fading): the next mark's `before`.
    current: Window,
}

impl Track {
    /// Folds in a sample taken on `version`, arriving at `now_ms`. `reference_ms` is the start
    /// of the agent's group in a running rollout when the agent is not on its target: the
    /// mark moves there, so a not-yet-updated agent shows the drift its peers would.
    pub fn record(
        &mut self,
        now_ms: i64,
        version: &str,
        sample: &HealthSample,
        reference_ms: Option<i64>,
        after_samples: u32,
    ) {
        if self.version != version {
            // A first sample has no "before": it starts the baseline, not a mark.
            if !self.version.is_empty() {
                self.mark(now_ms, true);
            }
            self.version = version.to_string();
        } else if let Some(reference) = reference_ms
            && self.mark_ms < reference
        {
            self.mark(reference, false);
        }
        self.current.add(sample);
        self.current.fade();
        if self.mark_ms > 0 {
            self.after.add_recent(sample, after_samples);
        }
        if self.mark_ms > 0 {
            self.since.add(sample);
        }
    }

    fn mark(&mut self, at_ms: i64, installed: bool) {
        // A group start leaves the version's samples running on: its agent's install, later,
        // takes its baseline from all of them.
        self.before = if installed {
            std::mem::take(&mut self.current)
        } else {
            self.current
        };
        self.after = Window::default();
        self.since = Window::default();
        self.mark_ms = at_ms;
        self.installed = installed;
    }

    /// Its change since its mark in words, for `agents why`; `None` before any mark.
    pub fn describe(&self) -> Option<String> {
        if self.mark_ms == 0 {
            return (self.current.samples > 0).then(|| {
                let rss = self
                    .current
                    .level(HealthSignal::Rss)
                    .map(|l| format!(", RSS {:.0} MiB", l.exp() / 1024.0))
                    .unwrap_or_default();
                format!(
                    "Health: {} sample(s) on {} so far{rss}.",
                    self.current.samples, self.version
                )
            });
        }
        let mut parts = Vec::new();
        for signal in LEVEL_SIGNALS {
            let (Some(before), Some(after)) = (self.before.level(signal), self.after.level(signal))
            else {
                continue;
            };
            parts.push(match signal {
                HealthSignal::Rss => format!(
                    "RSS {:+.1} % ({:.0} → {:.0} MiB)",
                    ((after - before).exp() - 1.0) * 100.0,
                    before.exp() / 1024.0,
                    after.exp() / 1024.0
                ),
                HealthSignal::Cpu => format!("CPU {:+.1} points", after - before),
                HealthSignal::ProbeLatency => format!("probe latency {:+.0} ms", after - before),
                _ => format!("failed probes {:+.1} points", (after - before) * 100.0),
            });
        }
        if self.since.exposure_hours > 0.0 {
            parts.push(format!(
                "{} restart(s) in {:.1} h",
                self.since.restarts, self.since.exposure_hours
            ));
        }
        let since = if self.installed {
            format!("its install of {}", self.version)
        } else {
            "its group started".to_string()
        };
        Some(format!(
            "Health since {since}, against its level before ({} sample(s) after): {}.",
            self.after.samples,
            if parts.is_empty() {
                "nothing measured".to_string()
            } else {
                parts.join(", ")
            }
        ))
    }

    /// Whether the agent sends `signal` at all (before or after any mark).
    pub fn reports(&self, signal: HealthSignal) -> bool {
        [&self.before, &self.since, &self.current]
            .iter()
            .any(|w| w.level(signal).is_some())
    }

    /// Whether it has `after_samples` samples after its mark and any before it.
    pub fn matured(&self, after_samples: u32) -> bool {
        self.mark_ms > 0 && self.after.samples >= after_samples && self.before.samples > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rss(kib: u64) -> HealthSample {
        HealthSample {
            span_ms: 10_000,
            rss_kib: Some(kib),
            ..HealthSample::default()
        }
    }

    #[test]
    fn an_install_marks_the_track_and_keeps_the_old_level_as_baseline() {
        let mut track = Track::default();
        for t in 0..5 {
            track.record(t * 10_000, "1.0.0", &rss(1_000), None, 3);
        }
        assert_eq!(track.mark_ms, 0, "a first version is no mark");
        assert!(!track.matured(3));
        for t in 5..9 {
            track.record(t * 10_000, "1.1.0", &rss(1_250), None, 3);
        }
        assert!(track.installed && track.mark_ms == 50_000);
        assert!(track.matured(3));
        let change = track.after.level(HealthSignal::Rss).unwrap()
            - track.before.level(HealthSignal::Rss).unwrap();
        assert!((change - 1.25f64.ln()).abs() < 1e-9);
        assert_eq!(track.since.samples, 4);
        // A level that keeps growing keeps showing in the recent level.
        for t in 9..40 {
            track.record(t * 10_000, "1.1.0", &rss(2_000), None, 3);
        }
        let recent = track.after.level(HealthSignal::Rss).unwrap();
        assert!((recent - 2_000f64.ln()).abs() < 0.01, "{recent}");
    }

    #[test]
    fn a_group_start_marks_an_agent_not_updated_once() {
        let mut track = Track::default();
        track.record(0, "1.0.0", &rss(1_000), Some(5), 3);
        track.record(10, "1.0.0", &rss(1_000), Some(5), 3);
        assert_eq!(track.mark_ms, 5);
        assert!(!track.installed);
        track.record(20, "1.0.0", &rss(1_000), Some(5), 3);
        assert_eq!(track.before.samples, 1);
        assert_eq!(track.after.samples, 2);
        assert!(track.matured(2) && !track.matured(3));
    }

    #[test]
    fn a_baseline_fades_but_keeps_its_level() {
        let mut track = Track::default();
        for t in 0..1_000 {
            track.record(t, "1.0.0", &rss(2_000), None, 3);
        }
        track.record(1_000, "1.1.0", &rss(2_000), None, 3);
        assert!(track.before.samples <= BASELINE_WEIGHT);
        let level = track.before.level(HealthSignal::Rss).unwrap();
        assert!((level - 2_000f64.ln()).abs() < 1e-9);
    }
}
