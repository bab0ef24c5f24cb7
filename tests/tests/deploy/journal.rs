//! Log priorities in the journal, as drover-coordinator.service gets them: systemd connects
//! the service's stderr to journald and sets `JOURNAL_STREAM=DEV:INO` to that stream.
//! Journald files every line at info unless it starts with an sd-daemon prefix (`<4>` …),
//! so without them `journalctl -p warning` shows none of Drover's warnings. Here the
//! stream is the test's log file, named in `JOURNAL_STREAM` by its device and inode as
//! systemd names its socket: the real coordinator must prefix each line with its level's
//! priority, log a clean stop at info, and write plain lines when stderr is not the
//! stream `JOURNAL_STREAM` names (a child with redirected stderr inherits the variable).
//! (A booted Debian under systemd-nspawn checks the real journald: the host test bed.)

use std::{fs, os::unix::fs::MetadataExt, path::Path};

use drover_tests::CoordinatorBuilder;

/// Starts and cleanly stops an `--insecure` coordinator (which warns about plaintext at
/// start) with `journal_stream` (or its stderr's own DEV:INO); returns its log.
async fn run_once(dir: &Path, journal_stream: Option<&str>) -> String {
    let log = dir.join("coordinator.log");
    fs::File::create(&log).unwrap();
    let meta = fs::metadata(&log).unwrap();
    let own = format!("{}:{}", meta.dev(), meta.ino());
    let coordinator = CoordinatorBuilder::sqlite(dir)
        .insecure()
        .env("JOURNAL_STREAM", journal_stream.unwrap_or(&own))
        .start()
        .await;
    let exit = coordinator.terminate().await;
    assert!(exit.success(), "{exit}");
    fs::read_to_string(&log).unwrap()
}

#[tokio::test]
async fn log_lines_carry_journal_priorities_only_when_stderr_is_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let text = run_once(dir.path(), None).await;
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 3, "{text}");
    for line in &lines {
        assert!(
            ["<3>", "<4>", "<6>", "<7>"]
                .iter()
                .any(|prefix| line.starts_with(prefix)),
            "a line without a priority prefix: {line}\n{text}"
        );
    }
    // The plaintext warning is a warning to journald; "serving" is info.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<4>") && l.contains("--insecure")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<6>") && l.contains("coordinator serving")),
        "{text}"
    );
    // A clean stop is no warning (it was: "not ready failed=[shutting down]").
    let stop = lines
        .iter()
        .position(|l| l.contains("shutting down"))
        .unwrap_or_else(|| panic!("no shutdown line:\n{text}"));
    let after: Vec<&&str> = lines[stop..]
        .iter()
        .filter(|l| l.starts_with("<4>") || l.starts_with("<3>"))
        .collect();
    assert!(after.is_empty(), "a clean stop logged {after:?}\n{text}");

    // Another stream's numbers (stderr redirected from the journal): plain lines.
    let other = tempfile::tempdir().unwrap();
    let text = run_once(other.path(), Some(&format!("{}:1", i64::MAX))).await;
    assert!(text.contains("coordinator serving"), "{text}");
    assert!(text.lines().all(|l| !l.starts_with('<')), "{text}");
}
