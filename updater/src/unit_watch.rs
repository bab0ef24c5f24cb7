//! Whether a systemd unit restarted: its restart counter, main PID and activation time, read
//! with `systemctl show`. A release that exits at once under `Restart=` with `RestartSec=1`
//! looks "active" to most single probes; these three do not lie about it.

/// What identifies one run of a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitRun {
    pub restarts: u64,
    pub main_pid: u64,
    /// `ActiveEnterTimestampMonotonic`: moves on every (re)activation.
    pub active_since_us: u64,
}

impl UnitRun {
    /// `systemctl show -p NRestarts -p MainPID -p ActiveEnterTimestampMonotonic` output.
    pub fn parse(text: &str) -> Result<Self, String> {
        let field = |name: &str| -> Result<u64, String> {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
                .ok_or_else(|| format!("systemctl show printed no {name}"))?
                .trim()
                .parse()
                .map_err(|err| format!("{name} is not a number ({err})"))
        };
        Ok(Self {
            restarts: field("NRestarts")?,
            main_pid: field("MainPID")?,
            active_since_us: field("ActiveEnterTimestampMonotonic")?,
        })
    }

    /// How `now` shows a restart since `self`, in words; `None` when it is the same run.
    pub fn restarted_in(&self, now: &UnitRun) -> Option<String> {
        if now.restarts > self.restarts {
            Some(format!(
                "the unit restarted {} time(s)",
                now.restarts - self.restarts
            ))
        } else if now.main_pid == 0 && self.main_pid != 0 {
            Some(format!(
                "the unit's main process ({}) exited",
                self.main_pid
            ))
        } else if now.main_pid != self.main_pid {
            Some(format!(
                "the unit's main process changed ({} → {})",
                self.main_pid, now.main_pid
            ))
        } else if now.active_since_us != self.active_since_us {
            Some("the unit was activated again".to_string())
        } else {
            None
        }
    }
}

/// Reads `unit`'s current run.
pub async fn read(unit: &str) -> Result<UnitRun, String> {
    let output = tokio::process::Command::new("systemctl")
        .args(["show", "-p", "NRestarts", "-p", "MainPID"])
        .args(["-p", "ActiveEnterTimestampMonotonic", "--", unit])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|err| format!("cannot run systemctl show {unit} ({err})"))?;
    if !output.status.success() {
        return Err(format!(
            "systemctl show {unit} failed: {}",
            drover_rules::text::clean_text(&String::from_utf8_lossy(&output.stderr), 300)
        ));
    }
    UnitRun::parse(&String::from_utf8_lossy(&output.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_shows_in_any_of_the_three() {
        let run =
            UnitRun::parse("NRestarts=0\nMainPID=812\nActiveEnterTimestampMonotonic=5000000\n")
                .unwrap();
        assert_eq!(run.restarted_in(&run), None);
        for later in [
            "NRestarts=2\nMainPID=900\nActiveEnterTimestampMonotonic=7000000",
            "NRestarts=0\nMainPID=901\nActiveEnterTimestampMonotonic=5000000",
            "NRestarts=0\nMainPID=812\nActiveEnterTimestampMonotonic=6000000",
            "NRestarts=0\nMainPID=0\nActiveEnterTimestampMonotonic=5000000",
        ] {
            let later = UnitRun::parse(later).unwrap();
            assert!(run.restarted_in(&later).is_some(), "{later:?}");
        }
        assert!(UnitRun::parse("MainPID=1").is_err());
    }
}
