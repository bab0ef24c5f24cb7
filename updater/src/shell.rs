//! Running an operator's shell command, bounded in time, for install backends and probes.

use std::time::Duration;

/// Runs `sh -c command` with `env`, bounded by `timeout`; the error carries stderr's tail.
pub async fn run_shell(
    command: &str,
    timeout: Duration,
    env: &[(&str, &str)],
) -> Result<(), String> {
    let mut process = tokio::process::Command::new("sh");
    process
        .arg("-c")
        .arg(command)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = process
        .spawn()
        .map_err(|err| format!("cannot start `{command}` ({err})"))?;
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| format!("`{command}` did not finish within {} s", timeout.as_secs()))?
        .map_err(|err| format!("`{command}` failed to run ({err})"))?;
    if output.status.success() {
        return Ok(());
    }
    // As a terminal shows it (a progress bar's last state), its tail.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail = drover_rules::text::terminal_text(stderr.trim(), 500);
    Err(format!("exited with {}: {tail}", output.status))
}
