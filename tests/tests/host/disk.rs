//! Issue #25 item 4: the disk fills under apt's download of the target. That is
//! `disk_full`, nothing is installed or marked broken, and once space returns the retry
//! installs the target.

use std::time::Duration;

use drover_tests::eventually_explained;

use crate::setup::{PACKAGE, setup};

const ARCHIVES: &str = "/var/cache/apt/archives";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_during_the_download_is_disk_full_and_retried() {
    let Some(host) = setup("").await else { return };
    let m = &host.machine;
    host.wait_connected_on("1.0.0").await;
    // apt uses a file: repository's .debs where they are; copy: downloads them into its
    // cache as http: would. That cache on a small tmpfs, filled to the last block.
    m.sh(&format!(
        "sed -i 's| file:| copy:|' /etc/apt/sources.list.d/demo.list && apt-get update -q && \
         mount -t tmpfs -o size=1m,mode=0755 tmpfs {ARCHIVES} && \
         install -d -m 0700 -o _apt -g root {ARCHIVES}/partial && \
         (dd if=/dev/zero of={ARCHIVES}/filler bs=4k 2>/dev/null || true) && \
         test \"$(df --output=avail {ARCHIVES} | tail -1 | tr -d ' ')\" = 0"
    ))
    .await;
    host.ctl(&["channels", "set", "beta", "1.1.0"]).await;

    let state = host.decision("disk_full").await;
    let agent = host.report_for("1.1.0").await;
    let report = &agent["last_report"];
    let error = report["error"].as_str().unwrap_or_default();
    eprintln!("host: the report for 1.1.0 on a full disk: {error}");
    assert_eq!(report["outcome"], "failed", "{agent:#}\n{}", host.explain());
    assert!(
        (error.contains("No space left on device") || error.contains("enough free space"))
            && error.contains("free space on the host"),
        "{error:?}\n{}",
        host.explain()
    );
    assert!(state["broken_versions"]["1.1.0"].is_null(), "{state:#}");
    assert!(state["revert_failure"].is_null(), "{state:#}");
    let (status, version) = host.dpkg_status().await;
    assert_eq!(
        (status.as_str(), version.as_str()),
        ("install ok installed", "1.0.0"),
        "{}",
        host.explain()
    );
    let unpacked = m.sh(&format!("cat /opt/{PACKAGE}/VERSION")).await;
    assert_eq!(unpacked, "1.0.0");
    host.wait_connected_on("1.0.0").await;

    // Space returns: the retry, 30 s after the failure, installs 1.1.0.
    m.sh(&format!("rm {ARCHIVES}/filler")).await;
    let agent = eventually_explained(
        "the retry to install 1.1.0 once space returned",
        Duration::from_secs(90),
        async || {
            let agent = host.agent().await;
            (agent["last_report"]["outcome"] == "succeeded").then_some(agent)
        },
        || host.explain(),
    )
    .await;
    assert_eq!(agent["last_report"]["to_version"], "1.1.0", "{agent:#}");
    let (status, version) = host.dpkg_status().await;
    assert_eq!(
        (status.as_str(), version.as_str()),
        ("hold ok installed", "1.1.0")
    );
    host.wait_connected_on("1.1.0").await;
    host.done("a_full_disk_during_the_download_is_disk_full_and_retried");
}
