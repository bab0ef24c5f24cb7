//! Reading the directives simulated agents accepted from a `simulate_logging` log, and
//! checking they were fenced: once an agent heard of a verb, nothing computed before it.

use std::collections::HashMap;

/// Each agent's accepted directives in `log`, in order: (target, reason).
pub fn directives_by_agent(log: &str) -> HashMap<String, Vec<(String, String)>> {
    let mut by_agent: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for line in log.lines().filter(|l| l.contains("new directive")) {
        let field = |name: &str| -> Option<String> {
            let at = line.find(name)? + name.len();
            let rest = &line[at..];
            Some(
                rest.split_whitespace()
                    .next()?
                    .trim_end_matches(':')
                    .to_string(),
            )
        };
        let (Some(agent), Some(target), Some(reason)) = (
            field("sim{agent="),
            field("target_version="),
            field("reason="),
        ) else {
            continue;
        };
        by_agent
            .entry(agent.trim_end_matches('}').to_string())
            .or_default()
            .push((target, reason));
    }
    by_agent
}

/// How many agents got a directive with `reason`, and every directive after an agent's first
/// such one that is not `allowed(target, reason)` (described, one a line).
pub struct Fencing {
    pub reached: usize,
    pub violations: Vec<String>,
}

pub fn fencing(log: &str, reason: &str, allowed: impl Fn(&str, &str) -> bool) -> Fencing {
    let mut fencing = Fencing {
        reached: 0,
        violations: Vec::new(),
    };
    for (agent, directives) in directives_by_agent(log) {
        let Some(first) = directives.iter().position(|(_, r)| r == reason) else {
            continue;
        };
        fencing.reached += 1;
        for (target, r) in &directives[first..] {
            if !allowed(target, r) {
                fencing.violations.push(format!(
                    "{agent} was sent {target} ({r}) after its {reason} directive: {directives:?}"
                ));
            }
        }
    }
    fencing
}
