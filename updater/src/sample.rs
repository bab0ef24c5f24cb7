//! Health samples for the coordinator's verdict, as values: what is sampled and from where,
//! the probes' tally between samples, and how one sample is made from two looks at the
//! agent's process (or merged with one the heartbeat has not taken yet). Pure: the task
//! that reads `/proc`, systemd and the Kubernetes API is `sample_task.rs`.

use std::{path::PathBuf, time::Duration};

use drover_proto::v1 as pb;

#[derive(Debug, Clone)]
pub struct SampleConfig {
    pub interval: Duration,
    pub source: SampleSource,
}

#[derive(Debug, Clone)]
pub enum SampleSource {
    /// The agent's process: through its systemd unit (main PID, restart count), else its
    /// pid file (a restart script's); neither: probes only.
    Process {
        pid_file: Option<PathBuf>,
        unit: Option<String>,
    },
    /// A Kubernetes workload: its pods' container restarts (no RSS or CPU without the
    /// metrics API).
    Workload {
        api: crate::kube::KubeApi,
        workload: crate::kube::WorkloadRef,
    },
    /// A simulated agent: steady levels with a little noise, its RSS half as high again on
    /// `leaky_versions` (for demos and tests of the verdict).
    Simulated {
        seed: u64,
        leaky_versions: Vec<String>,
    },
}

/// The health probes' results since the last sample (the health task adds to it).
#[derive(Debug, Default, Clone, Copy)]
pub struct ProbeTally {
    pub ok: u32,
    pub failed: u32,
    pub latency_sum_ms: f64,
}

impl ProbeTally {
    pub fn add(&mut self, ok: bool, latency: Duration) {
        if ok {
            self.ok = self.ok.saturating_add(1);
        } else {
            self.failed = self.failed.saturating_add(1);
        }
        self.latency_sum_ms += latency.as_secs_f64() * 1_000.0;
    }
}

/// What identifies the agent's process between samples.
#[derive(Debug, Default, Clone, Copy)]
pub struct Seen {
    pub pid: u32,
    pub unit_restarts: u64,
    /// `None` when /proc could not be read: no CPU is computed from it.
    pub cpu_ticks: Option<u64>,
    pub rss_kib: Option<u64>,
}

pub fn merged(older: pb::HealthSample, newer: pb::HealthSample) -> pb::HealthSample {
    let weighted = |a: Option<f64>, wa: u32, b: Option<f64>, wb: u32| match (a, b) {
        (Some(a), Some(b)) if wa + wb > 0 => {
            Some((a * f64::from(wa) + b * f64::from(wb)) / f64::from(wa + wb))
        }
        (a, b) => b.or(a),
    };
    let probes = |s: &pb::HealthSample| s.probes_ok + s.probes_failed;
    pb::HealthSample {
        span_ms: older.span_ms.saturating_add(newer.span_ms),
        rss_kib: newer.rss_kib.or(older.rss_kib),
        cpu_percent: weighted(
            older.cpu_percent,
            older.span_ms,
            newer.cpu_percent,
            newer.span_ms,
        ),
        probe_latency_ms: weighted(
            older.probe_latency_ms,
            probes(&older),
            newer.probe_latency_ms,
            probes(&newer),
        ),
        probes_ok: older.probes_ok.saturating_add(newer.probes_ok),
        probes_failed: older.probes_failed.saturating_add(newer.probes_failed),
        restarts: older.restarts.saturating_add(newer.restarts),
    }
}

pub fn sample(
    span: Duration,
    before: Option<Seen>,
    now: Option<Seen>,
    tally: ProbeTally,
) -> pb::HealthSample {
    let span_ms = u32::try_from(span.as_millis()).unwrap_or(u32::MAX);
    let restarts = match (before, now) {
        (Some(b), Some(n)) => {
            let by_unit = n.unit_restarts.saturating_sub(b.unit_restarts);
            let by_pid = u64::from(b.pid != n.pid);
            u32::try_from(by_unit.max(by_pid)).unwrap_or(u32::MAX)
        }
        _ => 0,
    };
    let cpu_percent = match (before, now) {
        (Some(b), Some(n)) if b.pid == n.pid && span_ms > 0 => {
            b.cpu_ticks.zip(n.cpu_ticks).map(|(before, now)| {
                now.saturating_sub(before) as f64 / clock_ticks() * 100_000.0 / f64::from(span_ms)
            })
        }
        _ => None,
    };
    let probes = tally.ok + tally.failed;
    pb::HealthSample {
        // Exposure for the restart rate only while the process is watched: a span without
        // it would claim "no restarts" for time nobody looked.
        span_ms: if before.is_some() && now.is_some() {
            span_ms
        } else {
            0
        },
        rss_kib: now.and_then(|n| n.rss_kib),
        cpu_percent,
        probe_latency_ms: (probes > 0).then(|| tally.latency_sum_ms / f64::from(probes)),
        probes_ok: tally.ok,
        probes_failed: tally.failed,
        restarts,
    }
}

fn clock_ticks() -> f64 {
    // Linux reports CPU time in USER_HZ, 100 on every architecture it runs Drover on.
    100.0
}

/// A seed per agent id, so a simulated agent keeps its levels across restarts.
pub fn seed_of(agent_id: &str) -> u64 {
    agent_id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub fn parse_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name may hold spaces and parentheses: count fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line are the 12th and 13th after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        assert_eq!(
            parse_rss_kib("Name:\tx\nVmRSS:\t  51234 kB\n"),
            Some(51_234)
        );
        assert_eq!(parse_rss_kib("Name:\tx\n"), None);
        let stat = "812 (my (odd) agent) S 1 812 812 0 -1 4194560 120 0 0 0 250 40 0 0 20 0";
        assert_eq!(parse_cpu_ticks(stat), Some(290));
    }

    #[test]
    fn samples_a_heartbeat_has_not_taken_add_up() {
        let one = pb::HealthSample {
            span_ms: 1_000,
            rss_kib: Some(100),
            cpu_percent: Some(10.0),
            probe_latency_ms: Some(10.0),
            probes_ok: 1,
            probes_failed: 0,
            restarts: 2,
        };
        let three = pb::HealthSample {
            span_ms: 3_000,
            rss_kib: Some(200),
            cpu_percent: Some(2.0),
            probe_latency_ms: Some(30.0),
            probes_ok: 2,
            probes_failed: 1,
            restarts: 1,
        };
        let m = merged(one, three);
        assert_eq!((m.span_ms, m.rss_kib, m.restarts), (4_000, Some(200), 3));
        assert_eq!((m.probes_ok, m.probes_failed), (3, 1));
        assert_eq!(m.cpu_percent, Some(4.0));
        assert_eq!(m.probe_latency_ms, Some(25.0));
    }

    #[test]
    fn a_new_pid_is_a_restart_and_cpu_is_per_core_percent() {
        let before = Seen {
            pid: 10,
            unit_restarts: 0,
            cpu_ticks: Some(100),
            rss_kib: None,
        };
        let same = Seen {
            pid: 10,
            unit_restarts: 0,
            cpu_ticks: Some(150),
            rss_kib: None,
        };
        let tally = ProbeTally {
            ok: 3,
            failed: 1,
            latency_sum_ms: 80.0,
        };
        let s = sample(Duration::from_secs(10), Some(before), Some(same), tally);
        assert_eq!(s.restarts, 0);
        assert!((s.cpu_percent.unwrap() - 5.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s.probe_latency_ms, Some(20.0));
        let moved = Seen {
            pid: 11,
            unit_restarts: 2,
            cpu_ticks: Some(5),
            rss_kib: None,
        };
        let s = sample(
            Duration::from_secs(10),
            Some(before),
            Some(moved),
            ProbeTally::default(),
        );
        assert_eq!(
            (s.restarts, s.cpu_percent, s.probe_latency_ms),
            (2, None, None)
        );
        // An unreadable /proc stat gives no CPU, never one computed from zero.
        let unread = Seen {
            cpu_ticks: None,
            ..before
        };
        let s = sample(
            Duration::from_secs(10),
            Some(unread),
            Some(same),
            ProbeTally::default(),
        );
        assert_eq!(s.cpu_percent, None);
    }
}
