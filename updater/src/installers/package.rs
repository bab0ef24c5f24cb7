//! What the apt, dnf and zypper backends share: their configuration, running a package
//! manager's command (bounded in time and in captured output), and reading its failure as
//! an `InstallError` with a clear reason. Signature checks are the package manager's own and
//! are never turned off: no flag here can weaken them.

use std::{path::PathBuf, process::Stdio, time::Duration};

use tokio::io::{AsyncRead, AsyncReadExt};

use super::InstallError;

/// Output kept per stream: the tail, where package managers put their verdict.
const MAX_CAPTURED: usize = 64 * 1024;
/// Output quoted in a report (the tail of the failing command's text).
const MAX_QUOTED: usize = 600;

#[derive(Debug, Clone)]
pub struct PackageConfig {
    /// The agent's package name.
    pub package: String,
    /// Operate on the system under this directory instead of `/` (an image, a test root).
    pub root: Option<PathBuf>,
    /// Extra global options for the package manager, given before its command.
    pub options: Vec<String>,
    /// Bounds each package manager command.
    pub timeout: Duration,
}

impl PackageConfig {
    /// The package name must be a plain name: it becomes an argument, never an option.
    pub fn validate(&self) -> Result<(), String> {
        if plain_word(&self.package) {
            Ok(())
        } else {
            Err(format!(
                "'{}' is not a package name (letters, digits and . + _ - ; not starting with -)",
                self.package
            ))
        }
    }
}

fn plain_word(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 200
        && !text.starts_with('-')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+_-~:".contains(c))
}

/// A target version as the package manager will see it; anything else is refused.
pub fn checked_version(version: &str) -> Result<&str, InstallError> {
    if plain_word(version) {
        Ok(version)
    } else {
        Err(InstallError::Refused(format!(
            "'{version}' is not a package version"
        )))
    }
}

/// What a finished command said: its exit code and its (tail of) stdout and stderr.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub code: Option<i32>,
    pub text: String,
}

impl Output {
    fn tail(&self) -> String {
        quote_tail(&self.text)
    }
}

/// The tail of a command's output as a terminal shows it (dpkg's progress lines use `\r`),
/// on one line.
fn quote_tail(text: &str) -> String {
    drover_rules::text::terminal_text(text.trim(), MAX_QUOTED).replace('\n', " | ")
}

/// Runs `program args` with `env`; a timeout is `TimedOut` (or `Busy` when the partial output
/// shows it was waiting for another process's lock). Exit status is left to the caller.
pub async fn run(
    program: &str,
    args: &[String],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<Output, InstallError> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so a timeout ends the helpers it started too.
        .process_group(0)
        .spawn()
        .map_err(|err| InstallError::Failed(format!("cannot start {program} ({err})")))?;
    let stdout = child.stdout.take().map(read_tail);
    let stderr = child.stderr.take().map(read_tail);
    let (out_task, err_task) = (
        tokio::spawn(async move { maybe(stdout).await }),
        tokio::spawn(async move { maybe(stderr).await }),
    );
    let waited = tokio::time::timeout(timeout, child.wait()).await;
    if waited.is_err() {
        if let Some(pid) = child.id() {
            let _ = tokio::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status()
                .await;
        }
        let _ = child.kill().await;
    }
    // A helper left running (a daemon holding the pipe) must not hold the step forever.
    let collect = |task: tokio::task::JoinHandle<String>| async move {
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    };
    let stdout = collect(out_task).await;
    let stderr = collect(err_task).await;
    let text = format!("{stdout}\n{stderr}");
    if !stderr.trim().is_empty() {
        tracing::info!(program, stderr = %quote_tail(&stderr), "package manager stderr");
    }
    let status = match waited {
        Err(_) => {
            let what = format!(
                "{program} {} did not finish within {} s: {}",
                args.join(" "),
                timeout.as_secs(),
                quote_tail(&text)
            );
            return Err(if is_waiting_for_lock(&text) {
                InstallError::Busy(what)
            } else {
                InstallError::TimedOut(what)
            });
        }
        Ok(status) => status
            .map_err(|err| InstallError::Failed(format!("{program} failed to run ({err})")))?,
    };
    Ok(Output {
        success: status.success(),
        code: status.code(),
        text,
    })
}

async fn maybe(reader: Option<impl Future<Output = String>>) -> String {
    match reader {
        Some(reader) => reader.await,
        None => String::new(),
    }
}

/// Reads a stream to its end, keeping only its last `MAX_CAPTURED` bytes.
async fn read_tail(mut stream: impl AsyncRead + Unpin) -> String {
    let mut kept: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(n) = stream.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&chunk[..n]);
        if kept.len() > 2 * MAX_CAPTURED {
            kept.drain(..kept.len() - MAX_CAPTURED);
        }
    }
    if kept.len() > MAX_CAPTURED {
        kept.drain(..kept.len() - MAX_CAPTURED);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// Texts by which apt, dnf, zypper and rpm say a signature or checksum did not verify.
const REFUSED: &[&str] = &[
    "NO_PUBKEY",
    "BADSIG",
    "GPG error",
    "signature verification",
    "Signature verification failed",
    "signed with an unknown key",
    "is unsigned",
    "GPG check FAILED",
    "signature is not available",
    "Hash Sum mismatch",
    "Hashes of expected file",
    "File has unexpected size",
    "digest: BAD",
    "NOKEY",
    "not signed",
    "no longer signed",
];
/// ... that the version (or the package) is not in any repository.
const NOT_FOUND: &[&str] = &[
    "was not found",
    "Unable to locate package",
    "No match for argument",
    "Unable to find a match",
    "No provider of",
    "Argument resolves to no package",
    "not found in package names",
];
/// ... that another process holds the lock.
const BUSY: &[&str] = &[
    "Could not get lock",
    "Unable to acquire the dpkg frontend lock",
    "Unable to lock directory",
    "System management is locked",
    "Waiting for process with pid",
];
/// ... that the transaction conflicts with installed packages.
const CONFLICT: &[&str] = &[
    "conflicts with",
    "Conflicts:",
    "Breaks:",
    "unmet dependencies",
    "nothing provides",
    "Problem: ",
    "conflicting requests",
];

/// ... that the disk is full (apt: "You don't have enough free space", dpkg and rpm: the
/// errno text; dnf and zypper: "needs … more space").
const DISK_FULL: &[&str] = &[
    "No space left on device",
    "enough free space",
    "more space on the",
    "Disk quota exceeded",
];

fn is_waiting_for_lock(text: &str) -> bool {
    BUSY.iter().any(|p| text.contains(p))
}

/// Reads a failed step's text as the most specific reason: authenticity first (a repository
/// that does not verify also "has no such version"), then lock, missing version, conflict.
pub fn classify(step: &str, output: &Output) -> InstallError {
    let text = &output.text;
    let what = format!(
        "{step} failed (exit {}): {}",
        output
            .code
            .map_or("by signal".to_string(), |c| c.to_string()),
        output.tail()
    );
    if REFUSED.iter().any(|p| text.contains(p)) {
        InstallError::Refused(format!("signature or checksum check: {what}"))
    } else if is_waiting_for_lock(text) {
        InstallError::Busy(what)
    } else if DISK_FULL.iter().any(|p| text.contains(p)) {
        InstallError::DiskFull(format!("{what}; free space on the host (it retries later)"))
    } else if NOT_FOUND.iter().any(|p| text.contains(p)) {
        InstallError::NotFound(what)
    } else if CONFLICT.iter().any(|p| text.contains(p)) {
        InstallError::Conflict(what)
    } else {
        InstallError::Failed(what)
    }
}

/// Runs a step that must succeed; a failure is classified.
pub async fn step(
    name: &str,
    program: &str,
    args: &[String],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<Output, InstallError> {
    let output = run(program, args, env, timeout).await?;
    if output.success {
        Ok(output)
    } else {
        Err(classify(name, &output))
    }
}

/// Runs a step whose exit status cannot be trusted to report a refusal (apt's `update` only
/// warns about a repository whose new index does not verify; zypper's `download` exits 0
/// after aborting or finding nothing): a signature complaint, a held lock or a missing
/// version fails it even on exit 0.
pub async fn strict_step(
    name: &str,
    program: &str,
    args: &[String],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<Output, InstallError> {
    let output = step(name, program, args, env, timeout).await?;
    match classify(name, &output) {
        InstallError::Failed(_) | InstallError::Conflict(_) => Ok(output),
        refused_or_missing => Err(refused_or_missing),
    }
}

/// After an install: the database must show exactly the requested version.
pub fn expect_version(
    manager: &str,
    actual: Option<String>,
    version: &str,
) -> Result<(), InstallError> {
    match actual {
        Some(actual) if actual == version => Ok(()),
        other => Err(InstallError::Failed(format!(
            "{manager} finished but the package database shows {} instead of {version}",
            other.as_deref().unwrap_or("nothing installed")
        ))),
    }
}

/// The rpm database's version of the package (`%{VERSION}`), or `None` when not installed.
pub async fn rpm_version(config: &PackageConfig) -> Result<Option<String>, InstallError> {
    let mut query = Vec::new();
    if let Some(root) = &config.root {
        query.extend(["--root".to_string(), root.display().to_string()]);
    }
    query.extend(["-q", "--qf", "%{VERSION}", config.package.as_str()].map(String::from));
    let output = run("rpm", &query, &[], config.timeout).await?;
    // rpm exits 1 with "package … is not installed".
    Ok(output
        .success
        .then(|| output.text.trim().to_string())
        .filter(|v| !v.is_empty()))
}

/// Makes `args` from string slices and owned strings.
pub fn args<const N: usize>(base: &[String], tail: [&str; N]) -> Vec<String> {
    base.iter()
        .cloned()
        .chain(tail.iter().map(|s| s.to_string()))
        .collect()
}

#[cfg(test)]
mod tests;
