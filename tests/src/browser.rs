//! The dashboard's browser script (`tests/browser/dashboard.mjs`: Debian's chromium driven
//! by playwright-core), run against a coordinator the harness started.

use std::{path::Path, time::Duration};

use serde_json::Value;

use crate::{CoordinatorProcess, bin, profile_for, token_for};

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
}

/// Runs the browser script in `mode` (`full` or `filter`) with `viewer`'s token and more
/// environment (`DROVER_EXPECT_AGENTS`, …); returns its JSON report, asserting it passed.
/// Screenshots go to target/screenshots.
pub async fn dashboard_script(
    c: &CoordinatorProcess,
    mode: &str,
    viewer: &str,
    env: &[(&str, &str)],
) -> Value {
    let shots = workspace().join("target/screenshots");
    std::fs::create_dir_all(&shots).expect("target/screenshots");
    let script = workspace().join("tests/browser/dashboard.mjs");
    for package in ["playwright-core", "axe-core"] {
        assert!(
            workspace()
                .join("tests/browser/node_modules")
                .join(package)
                .exists(),
            "{package} is missing: run scripts/setup (npm ci in tests/browser)"
        );
    }
    // droverctl as the script runs it: this coordinator, trusted through its profile.
    let mut ctl_args = vec!["--coordinator".to_string(), c.grpc_url()];
    if let Some(profile) = profile_for(&c.grpc_url()) {
        ctl_args.extend(["--profile".into(), profile.display().to_string()]);
    }
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .env("DROVER_CTL", bin("droverctl"))
        .env(
            "DROVER_CTL_ARGS",
            serde_json::to_string(&ctl_args).expect("JSON"),
        )
        .env("DROVER_URL", c.http_url(""))
        // `--insecure` takes no token; any will do.
        .env(
            "DROVER_ADMIN_TOKEN",
            token_for(&c.grpc_url()).unwrap_or_else(|| "insecure".into()),
        )
        .env("DROVER_VIEWER_TOKEN", viewer)
        .env("DROVER_SCREENSHOTS", &shots)
        .env("DROVER_MODE", mode)
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(240), output)
        .await
        .expect("the browser script finishes within 4 minutes")
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON report from the browser script:\n{stdout}\n{stderr}"));
    assert!(
        output.status.success() && report["ok"] == true,
        "the browser script failed ({}):\n{report:#}\n{stderr}\n{}",
        output.status,
        c.log()
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!("browser report: {report:#}");
    report
}
